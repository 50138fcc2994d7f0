//! Signed checkpoints: an Ed25519 signature over the sequence number and
//! hash of the newest event, every N events or T seconds.
//!
//! The hash chain shows that nothing changed *relative to the chain*; a
//! checkpoint signed with a key the database does not hold, and exported to
//! somewhere else, shows that the chain itself was not rewritten or cut off.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::AnyPool;

use crate::AuditError;

/// The key that signs checkpoints. `Debug` prints only its id.
pub struct CheckpointKey {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointKey({})", self.key_id)
    }
}

impl CheckpointKey {
    /// A new key as PKCS#8 (to be stored by the operator).
    pub fn generate_pkcs8() -> Result<Vec<u8>, AuditError> {
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| AuditError::Key("Ed25519 key generation failed"))
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<CheckpointKey, AuditError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| AuditError::Key("not an Ed25519 PKCS#8 key"))?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(CheckpointKey { pair, key_id })
    }

    /// The key as base64url PKCS#8, or from it.
    pub fn from_base64(s: &str) -> Result<CheckpointKey, AuditError> {
        let der = URL_SAFE_NO_PAD
            .decode(s.trim().trim_end_matches('='))
            .map_err(|_| AuditError::Key("checkpoint key is not base64url"))?;
        CheckpointKey::from_pkcs8(&der)
    }

    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public key, base64url: what verifiers need.
    pub fn public_key_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key())
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn sign(&self, seq: i64, ts: &str, hash: &str) -> Checkpoint {
        let sig = self.pair.sign(&message(seq, ts, hash));
        Checkpoint {
            seq,
            ts: ts.to_owned(),
            hash: hash.to_owned(),
            key_id: self.key_id.clone(),
            signature: URL_SAFE_NO_PAD.encode(sig.as_ref()),
        }
    }
}

/// First 16 hex digits of SHA-256 of the public key.
fn key_id(public: &[u8]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

fn message(seq: i64, ts: &str, hash: &str) -> Vec<u8> {
    format!("interkom-audit-checkpoint/v1\n{seq}\n{ts}\n{hash}").into_bytes()
}

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Checkpoint {
    pub seq: i64,
    pub ts: String,
    pub hash: String,
    pub key_id: String,
    pub signature: String,
}

impl Checkpoint {
    /// True when `public_key` (raw Ed25519) signed this checkpoint.
    pub fn verify(&self, public_key: &[u8]) -> bool {
        if key_id(public_key) != self.key_id {
            return false;
        }
        let Ok(sig) = URL_SAFE_NO_PAD.decode(&self.signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&message(self.seq, &self.ts, &self.hash), &sig)
            .is_ok()
    }
}

/// Stored checkpoints with `from <= seq <= to`, in order.
pub async fn list(pool: &AnyPool, from: i64, to: i64) -> Result<Vec<Checkpoint>, AuditError> {
    Ok(sqlx::query_as(
        "SELECT seq, ts, hash, key_id, signature FROM audit_checkpoints WHERE seq >= $1 AND seq <= $2 ORDER BY seq",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_key_and_content() {
        let k = CheckpointKey::from_pkcs8(&CheckpointKey::generate_pkcs8().unwrap()).unwrap();
        let cp = k.sign(42, "2026-11-29T12:00:00.000000Z", "ab");
        assert!(cp.verify(k.public_key()));
        let other = CheckpointKey::from_pkcs8(&CheckpointKey::generate_pkcs8().unwrap()).unwrap();
        assert!(!cp.verify(other.public_key()));
        for forged in [
            Checkpoint {
                seq: 43,
                ..cp.clone()
            },
            Checkpoint {
                hash: "ac".into(),
                ..cp.clone()
            },
            Checkpoint {
                ts: "2026-11-29T12:00:01.000000Z".into(),
                ..cp.clone()
            },
        ] {
            assert!(!forged.verify(k.public_key()));
        }
        let again = CheckpointKey::from_base64(
            &URL_SAFE_NO_PAD.encode(CheckpointKey::generate_pkcs8().unwrap()),
        );
        assert!(again.is_ok());
        assert!(format!("{k:?}").starts_with("CheckpointKey("));
    }
}
