//! Signing keys: generated here, stored encrypted in the database, parsed
//! once and kept in memory, rotated with overlap.
//!
//! Rotation publishes a new key in the JWKS `publish_lead` before it signs
//! anything, and keeps the old key published until every token it signed
//! has expired. A rotation on one node (or by the CLI) reaches all: on
//! PostgreSQL it is announced and every node reloads at once; on both
//! databases each node also reloads periodically.

use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};

use crate::store::{NewSigningKey, Store, StoredKey};
use crate::GatewayError;
use interkom_directory::crypto::MasterKey;

pub use crate::store::KeyInfo;
pub use interkom_types::Alg;

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A parsed key pair with its publication window.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) alg: Alg,
    pair: Pair,
    public_jwk: Value,
    /// Signs from this time on (published before it).
    sign_from: i64,
    /// Unpublished from this time on.
    retire_at: Option<i64>,
    created_at: i64,
    /// An RSA key also signs SAML messages, with a certificate made for it.
    pub(crate) saml: Option<interkom_saml::dsig::SigningKey>,
}

impl SigningKey {
    pub(crate) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, GatewayError> {
        let rng = SystemRandom::new();
        let sig = match &self.pair {
            Pair::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| GatewayError::Crypto("RSA signing failed"))?;
                sig
            }
            Pair::Ec(k) => k
                .sign(&rng, msg)
                .map_err(|_| GatewayError::Crypto("ECDSA signing failed"))?
                .as_ref()
                .to_vec(),
            Pair::Ed(k) => k.sign(msg).as_ref().to_vec(),
        };
        Ok(sig)
    }

    /// Verifies a signature made with this key (the public half).
    pub(crate) fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match &self.pair {
            Pair::Rsa(k) => {
                let pk = k.public();
                signature::UnparsedPublicKey::new(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    pk.as_ref(),
                )
                .verify(msg, sig)
                .is_ok()
            }
            Pair::Ec(k) => signature::UnparsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                k.public_key().as_ref(),
            )
            .verify(msg, sig)
            .is_ok(),
            Pair::Ed(k) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, k.public_key().as_ref())
                    .verify(msg, sig)
                    .is_ok()
            }
        }
    }
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn parse_pair(alg: Alg, der: &[u8]) -> Result<Pair, GatewayError> {
    let bad = |_| GatewayError::Crypto("stored key does not parse");
    Ok(match alg {
        Alg::RS256 => Pair::Rsa(RsaKeyPair::from_pkcs8(der).map_err(bad)?),
        Alg::ES256 => Pair::Ec(
            EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
                &SystemRandom::new(),
            )
            .map_err(bad)?,
        ),
        Alg::EdDSA => Pair::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(bad)?),
    })
}

/// Generates a key pair: PKCS#8 DER and its public JWK.
fn generate(alg: Alg, kid: &str) -> Result<(Vec<u8>, Value), GatewayError> {
    let rng = SystemRandom::new();
    let der = match alg {
        Alg::RS256 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                .map_err(|_| GatewayError::Crypto("RSA key generation failed"))?;
            key.to_pkcs8_der()
                .map_err(|_| GatewayError::Crypto("RSA key encoding failed"))?
                .as_bytes()
                .to_vec()
        }
        Alg::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| GatewayError::Crypto("EC key generation failed"))?
                .as_ref()
                .to_vec()
        }
        Alg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| GatewayError::Crypto("Ed25519 key generation failed"))?
            .as_ref()
            .to_vec(),
    };
    let jwk = match parse_pair(alg, &der)? {
        Pair::Rsa(k) => {
            let pk = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
            json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": b64(&pk.n),
                "e": b64(&pk.e),
            })
        }
        Pair::Ec(k) => {
            let p = k.public_key().as_ref();
            json!({
                "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                "x": b64(&p[1..33]), "y": b64(&p[33..65]),
            })
        }
        Pair::Ed(k) => json!({
            "kty": "OKP", "use": "sig", "alg": "EdDSA", "kid": kid, "crv": "Ed25519",
            "x": b64(k.public_key().as_ref()),
        }),
    };
    Ok((der, jwk))
}

/// The SAML signing key of an RSA key: the key with a self-signed
/// certificate made from it alone (serial from the kid, validity from its
/// creation), so every node makes the same certificate.
fn saml_key(
    kid: &str,
    der: &[u8],
    created_at: i64,
) -> Result<interkom_saml::dsig::SigningKey, GatewayError> {
    use sha2::{Digest, Sha256};
    let bad = |_| GatewayError::Crypto("cannot make the SAML certificate");
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(der.to_vec()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .map_err(bad)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("interkom SAML {kid}"));
    let mut serial = Sha256::digest(kid.as_bytes())[..16].to_vec();
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let from = time::OffsetDateTime::from_unix_timestamp(created_at)
        .map_err(|_| GatewayError::Crypto("a key's creation time"))?;
    params.not_before = from;
    params.not_after = from + time::Duration::days(365 * 20);
    let cert = params.self_signed(&kp).map_err(bad)?;
    interkom_saml::dsig::SigningKey::new(der, interkom_saml::dsig::Certificate(cert.der().to_vec()))
        .map_err(|_| GatewayError::Crypto("cannot load the SAML signing key"))
}

/// The keys known to this node at one moment.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<Arc<SigningKey>>,
    loaded_at: i64,
}

impl KeySet {
    /// The key that signs for `alg` now: the newest whose signing time came.
    pub(crate) fn signing(&self, alg: Alg, now: i64) -> Option<&Arc<SigningKey>> {
        self.keys
            .iter()
            .filter(|k| k.alg == alg && k.sign_from <= now && k.retire_at.is_none_or(|r| r > now))
            .max_by_key(|k| (k.sign_from, k.created_at))
    }

    /// The SAML signing key now (the RS256 key that signs).
    pub(crate) fn saml(&self, now: i64) -> Option<&interkom_saml::dsig::SigningKey> {
        self.signing(Alg::RS256, now).and_then(|k| k.saml.as_ref())
    }

    /// The SAML keys not retired, the one that signs now first: an IdP may
    /// encrypt to any certificate our metadata lists.
    pub(crate) fn saml_keys(&self, now: i64) -> Vec<&interkom_saml::dsig::SigningKey> {
        let current = self.saml(now);
        let mut out: Vec<_> = current.into_iter().collect();
        for k in &self.keys {
            if let Some(s) = &k.saml {
                if k.retire_at.is_none_or(|r| r > now) && current.is_none_or(|c| c.cert != s.cert) {
                    out.push(s);
                }
            }
        }
        out
    }

    /// The certificates of the SAML keys published now: the one that
    /// signs first, then one published ahead of a rotation.
    pub(crate) fn saml_certs(&self, now: i64) -> Vec<interkom_saml::dsig::Certificate> {
        let current = self.saml(now).map(|k| k.cert.clone());
        let mut certs: Vec<_> = current.iter().cloned().collect();
        for k in &self.keys {
            if let Some(s) = &k.saml {
                if k.retire_at.is_none_or(|r| r > now) && Some(&s.cert) != current.as_ref() {
                    certs.push(s.cert.clone());
                }
            }
        }
        certs
    }

    pub(crate) fn by_kid(&self, kid: &str, now: i64) -> Option<&Arc<SigningKey>> {
        self.keys
            .iter()
            .find(|k| k.kid == kid && k.retire_at.is_none_or(|r| r > now))
    }

    pub(crate) fn jwks(&self, now: i64) -> Value {
        let keys: Vec<&Value> = self
            .keys
            .iter()
            .filter(|k| k.retire_at.is_none_or(|r| r > now))
            .map(|k| &k.public_jwk)
            .collect();
        json!({ "keys": keys })
    }
}

/// The node's view of the keys, reloaded from the database.
pub(crate) struct KeyStore {
    store: Store,
    master: MasterKey,
    set: RwLock<Arc<KeySet>>,
    reload_every: i64,
    reloading: tokio::sync::Mutex<()>,
}

impl KeyStore {
    pub(crate) fn new(store: Store, master: MasterKey, reload_every: i64) -> KeyStore {
        KeyStore {
            store,
            master,
            set: RwLock::new(Arc::new(KeySet::default())),
            reload_every,
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn current(&self) -> Arc<KeySet> {
        match self.set.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The current set, reloaded first when it is older than the reload
    /// interval (one node's rotation reaches the others this way).
    pub(crate) async fn fresh(&self, now: i64) -> Result<Arc<KeySet>, GatewayError> {
        let cur = self.current();
        if now - cur.loaded_at < self.reload_every {
            return Ok(cur);
        }
        // One reload at a time; whoever waited for another's finds the set
        // fresh and takes it.
        let _guard = self.reloading.lock().await;
        let cur = self.current();
        if now - cur.loaded_at < self.reload_every {
            return Ok(cur);
        }
        self.reload(now).await
    }

    pub(crate) async fn reload(&self, now: i64) -> Result<Arc<KeySet>, GatewayError> {
        let rows = self.store.signing_keys().await?;
        let mut keys = Vec::with_capacity(rows.len());
        for StoredKey {
            kid,
            alg,
            private_enc: enc,
            public_jwk: jwk,
            created_at,
            sign_from,
            retire_at,
        } in rows
        {
            if retire_at.is_some_and(|r| r <= now) {
                continue;
            }
            let alg =
                Alg::parse(&alg).ok_or(GatewayError::Crypto("stored key has an unknown alg"))?;
            let der = self.master.decrypt(&enc, &kid).map_err(|_| {
                GatewayError::Crypto("stored key does not decrypt: wrong key-encryption key?")
            })?;
            let saml = match alg {
                Alg::RS256 => Some(saml_key(&kid, &der, created_at)?),
                _ => None,
            };
            keys.push(Arc::new(SigningKey {
                saml,
                pair: parse_pair(alg, &der)?,
                public_jwk: serde_json::from_str(&jwk)?,
                kid,
                alg,
                sign_from,
                retire_at,
                created_at,
            }));
        }
        let set = Arc::new(KeySet {
            keys,
            loaded_at: now,
        });
        match self.set.write() {
            Ok(mut g) => *g = set.clone(),
            Err(p) => *p.into_inner() = set.clone(),
        }
        Ok(set)
    }

    /// Reloads on every announced rotation until the connection fails.
    pub(crate) async fn listen(&self, url: &str, clock: &crate::Clock) -> Result<(), GatewayError> {
        let mut listener = Store::rotation_listener(url).await?;
        // Whatever was rotated while not listening.
        {
            let _guard = self.reloading.lock().await;
            self.reload(clock.now()).await?;
        }
        loop {
            // `None`: the connection dropped and came back; announcements in
            // between are lost, so reload anyway.
            listener.try_recv().await?;
            // After any reload already under way (which may have read the
            // rows before the rotation), never alongside it.
            let _guard = self.reloading.lock().await;
            if let Err(e) = self.reload(clock.now()).await {
                tracing::warn!(error = %e, "key reload failed; keeping the current keys");
            }
        }
    }

    /// Creates a first key for every algorithm that has none.
    pub(crate) async fn ensure(&self, now: i64) -> Result<(), GatewayError> {
        let set = self.reload(now).await?;
        for alg in Alg::ALL {
            if set.signing(alg, now).is_none() && !set.keys.iter().any(|k| k.alg == alg) {
                self.insert(alg, now, now).await?;
            }
        }
        self.reload(now).await?;
        Ok(())
    }

    async fn insert(&self, alg: Alg, now: i64, sign_from: i64) -> Result<String, GatewayError> {
        let kid = format!(
            "{}-{}",
            alg.as_str().to_ascii_lowercase(),
            interkom_directory::crypto::random_token(9)
        );
        let (der, jwk) = tokio::task::spawn_blocking({
            let kid = kid.clone();
            move || generate(alg, &kid)
        })
        .await
        .map_err(|_| GatewayError::Crypto("key generation task failed"))??;
        let enc = self
            .master
            .encrypt(&der, &kid)
            .map_err(|_| GatewayError::Crypto("key encryption failed"))?;
        self.store
            .insert_signing_key(&NewSigningKey {
                kid: &kid,
                alg,
                private_enc: &enc,
                public_jwk: &jwk.to_string(),
                created_at: now,
                sign_from,
            })
            .await?;
        Ok(kid)
    }

    /// Rotates every algorithm's key: the new key is published now and signs
    /// from `now + publish_lead`; the keys it replaces stay published until
    /// `max_token_ttl` after that.
    pub(crate) async fn rotate(
        &self,
        now: i64,
        publish_lead: i64,
        max_token_ttl: i64,
    ) -> Result<Vec<String>, GatewayError> {
        let sign_from = now + publish_lead;
        let mut kids = Vec::new();
        for alg in Alg::ALL {
            self.store
                .retire_signing_keys(alg, sign_from + max_token_ttl)
                .await?;
            kids.push(self.insert(alg, now, sign_from).await?);
        }
        {
            let _guard = self.reloading.lock().await;
            self.reload(now).await?;
        }
        // The rotation is committed: a lost announcement only delays the
        // other nodes until their periodic reload.
        if let Err(e) = self.store.announce_rotation().await {
            tracing::warn!(error = %e, "key rotation not announced; other nodes reload periodically");
        }
        Ok(kids)
    }

    pub(crate) async fn list(&self) -> Result<Vec<KeyInfo>, GatewayError> {
        Ok(self.store.list_signing_keys().await?)
    }
}

impl KeySet {
    /// A set of one fresh key of `alg`, kept in memory only (tests,
    /// benchmarks, tools).
    pub(crate) fn standalone(alg: Alg) -> Result<KeySet, GatewayError> {
        let kid = format!("{}-standalone", alg.as_str().to_ascii_lowercase());
        let (der, public_jwk) = generate(alg, &kid)?;
        let saml = match alg {
            Alg::RS256 => Some(saml_key(&kid, &der, 0)?),
            _ => None,
        };
        let key = SigningKey {
            saml,
            pair: parse_pair(alg, &der)?,
            public_jwk,
            kid,
            alg,
            sign_from: 0,
            retire_at: None,
            created_at: 0,
        };
        Ok(KeySet {
            keys: vec![Arc::new(key)],
            loaded_at: 0,
        })
    }

    /// The first key of the set.
    pub(crate) fn first(&self) -> Option<&Arc<SigningKey>> {
        self.keys.first()
    }
}

impl SigningKey {
    /// Its public key as a JWK.
    pub(crate) fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }
}
