//! Access tokens whose signature was verified, until they expire.
//!
//! A Fachverfahren presents the same access token for many calls (the
//! AuthZEN PDP, introspection, userinfo); checking an ES256 signature costs
//! about 55 µs, more than the rest of such a request. The result for the
//! same token bytes cannot change before the token expires (a signing key
//! is retired only after every token it signed has expired), so it is kept.
//! Revocation is not cached: it is checked on every use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// At most this many tokens are kept; a full cache first drops the expired,
/// then everything.
const CAPACITY: usize = 16_384;

/// The verified claims and their `exp`.
type Entry = (Arc<Value>, i64);

#[derive(Default)]
pub(crate) struct VerifiedTokens {
    map: Mutex<HashMap<Box<str>, Entry>>,
}

impl VerifiedTokens {
    /// The verified claims of `token`, if it is known and not expired.
    pub(crate) fn get(&self, token: &str, now: i64) -> Option<Arc<Value>> {
        let map = self.map.lock().ok()?;
        map.get(token)
            .filter(|(_, exp)| *exp > now)
            .map(|(claims, _)| Arc::clone(claims))
    }

    pub(crate) fn put(&self, token: &str, claims: Arc<Value>, exp: i64, now: i64) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= CAPACITY {
            map.retain(|_, (_, e)| *e > now);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(token.into(), (claims, exp));
    }
}
