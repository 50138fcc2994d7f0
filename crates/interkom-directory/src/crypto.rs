//! Small cryptographic helpers: random tokens, keyed hashes, and the
//! encryption of signing keys at rest.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use ring::aead;
use sha2::Sha256;

/// A random token of `bytes` bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The server's root secret (the key-encryption key) and what is derived
/// from it. `Debug` never prints key material.
#[derive(Clone)]
pub struct MasterKey {
    kek: [u8; 32],
    /// Key of the keyed hash over client secrets and bearer handles: an
    /// HMAC, because these are random, high-entropy values (a password hash
    /// would cap machine clients at a few dozen requests per second).
    hash_key: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl MasterKey {
    pub fn from_bytes(kek: [u8; 32]) -> MasterKey {
        let hash_key = hmac(&kek, b"interkom/v1/keyed-hash");
        MasterKey { kek, hash_key }
    }

    /// A fresh random key.
    pub fn generate() -> MasterKey {
        let mut kek = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut kek);
        MasterKey::from_bytes(kek)
    }

    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.kek)
    }

    pub fn from_base64(s: &str) -> Option<MasterKey> {
        let s = s.trim();
        let bytes = URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(s))
            .ok()?;
        let kek: [u8; 32] = bytes.try_into().ok()?;
        Some(MasterKey::from_bytes(kek))
    }

    /// Keyed hash (HMAC-SHA-256, base64url) of a secret or bearer handle.
    pub fn keyed_hash(&self, data: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac(&self.hash_key, data.as_bytes()))
    }

    /// AES-256-GCM with a random nonce; `aad` binds the ciphertext to its row.
    pub fn encrypt(&self, plaintext: &[u8], aad: &str) -> Result<String, ring::error::Unspecified> {
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &self.kek)?);
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad.as_bytes()),
            &mut buf,
        )?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    pub fn decrypt(
        &self,
        ciphertext: &str,
        aad: &str,
    ) -> Result<Vec<u8>, ring::error::Unspecified> {
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &self.kek)?);
        let data = URL_SAFE_NO_PAD
            .decode(ciphertext)
            .map_err(|_| ring::error::Unspecified)?;
        if data.len() < 12 {
            return Err(ring::error::Unspecified);
        }
        let (nonce, rest) = data.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| ring::error::Unspecified)?;
        let mut buf = rest.to_vec();
        let plain = key.open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad.as_bytes()),
            &mut buf,
        )?;
        Ok(plain.to_vec())
    }
}

/// Constant-time comparison of two strings.
pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_round_trips_and_binds_aad() {
        let k = MasterKey::generate();
        let c = k.encrypt(b"secret key", "kid-1").unwrap();
        assert_eq!(k.decrypt(&c, "kid-1").unwrap(), b"secret key");
        assert!(k.decrypt(&c, "kid-2").is_err());
        assert!(MasterKey::generate().decrypt(&c, "kid-1").is_err());
    }

    #[test]
    fn keyed_hash_depends_on_key() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_eq!(a.keyed_hash("x"), a.keyed_hash("x"));
        assert_ne!(a.keyed_hash("x"), b.keyed_hash("x"));
        assert_eq!(format!("{a:?}"), "MasterKey([redacted])");
    }
}
