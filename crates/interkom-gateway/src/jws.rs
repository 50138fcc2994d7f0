//! Compact JWS: signing with the parsed keys kept in memory, and strict
//! verification of interkom's own tokens (known `kid`, the key's own `alg`,
//! so `none` and HMAC-over-a-public-key are rejected by construction).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::keys::{Alg, KeySet, SigningKey};
use crate::GatewayError;

#[derive(Serialize, Deserialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Signs `claims` as a compact JWS with `typ` (`JWT`, `at+jwt`, …).
pub(crate) fn sign(
    key: &SigningKey,
    typ: &str,
    claims: &impl Serialize,
) -> Result<String, GatewayError> {
    let header = serde_json::to_vec(&Header {
        alg: key.alg.as_str(),
        typ,
        kid: &key.kid,
    })?;
    let payload = serde_json::to_vec(claims)?;
    let mut out = String::with_capacity(64 + payload.len() * 4 / 3 + 120);
    URL_SAFE_NO_PAD.encode_string(header, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    let sig = key.sign(out.as_bytes())?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    Ok(out)
}

/// Why a token was not accepted (never shown in detail to the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    Malformed,
    UnknownKey,
    WrongAlg,
    WrongType,
    BadSignature,
}

/// Verifies a token signed by one of `keys`, returning its claims. Expiry is
/// checked by the caller, which knows the clock and the token kind.
pub(crate) fn verify(keys: &KeySet, token: &str, typ: &str, now: i64) -> Result<Value, Rejection> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed);
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Rejection::Malformed)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(Rejection::UnknownKey)?;
    let key = keys.by_kid(kid, now).ok_or(Rejection::UnknownKey)?;
    if header.get("alg").and_then(Value::as_str) != Some(key.alg.as_str()) {
        return Err(Rejection::WrongAlg);
    }
    if !header
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case(typ))
    {
        return Err(Rejection::WrongType);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| Rejection::Malformed)?;
    let signed_len = h.len() + 1 + p.len();
    if !key.verify(&token.as_bytes()[..signed_len], &sig) {
        return Err(Rejection::BadSignature);
    }
    URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Rejection::Malformed)
}

/// A standalone signer with one key held in memory (tests, benchmarks,
/// tools); the gateway itself signs with the key store.
pub struct Signer {
    set: KeySet,
}

impl Signer {
    pub fn generate(alg: Alg) -> Result<Signer, GatewayError> {
        Ok(Signer {
            set: KeySet::standalone(alg)?,
        })
    }

    /// Signs `claims` as a compact JWS of type `typ`.
    pub fn sign(&self, typ: &str, claims: &Value) -> Result<String, GatewayError> {
        let key = self.set.first().ok_or(GatewayError::Crypto("no key"))?;
        sign(key, typ, claims)
    }

    /// Verifies a token made by [`Signer::sign`]; returns its claims.
    pub fn verify(&self, token: &str, typ: &str) -> Option<Value> {
        verify(&self.set, token, typ, 0).ok()
    }

    pub fn public_jwk(&self) -> Option<&Value> {
        self.set.first().map(|k| k.public_jwk())
    }
}
