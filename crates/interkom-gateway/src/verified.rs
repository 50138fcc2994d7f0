//! Access tokens whose signature was verified, until they expire.
//!
//! A Fachverfahren presents the same access token for many calls (the
//! AuthZEN PDP, introspection, userinfo); checking an ES256 signature costs
//! about 55 µs, more than the rest of such a request. The result for the
//! same token bytes cannot change before the token expires (a signing key
//! is retired only after every token it signed has expired), so it is kept.
//!
//! Revocation is checked in the database on every use, with one exception:
//! a client's own token (client credentials, revocable only by its jti) that
//! was found unrevoked less than [`UNREVOKED_FOR`] ago. A revocation on this
//! node forgets the token at once; one on another node takes effect here
//! within that second, the same window as a policy change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// At most this many tokens are kept; a full cache first drops the expired,
/// then everything.
const CAPACITY: usize = 16_384;

/// How long a client token's "not revoked" stands without asking again.
pub(crate) const UNREVOKED_FOR: Duration = Duration::from_secs(1);

struct Entry {
    claims: Arc<Value>,
    exp: i64,
    /// When the database last said this (client) token is not revoked.
    unrevoked_at: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct VerifiedTokens {
    map: Mutex<HashMap<Box<str>, Entry>>,
}

impl VerifiedTokens {
    /// The verified claims of `token`, if it is known and not expired, and
    /// whether it was found unrevoked within the last second.
    pub(crate) fn get(&self, token: &str, now: i64) -> Option<(Arc<Value>, bool)> {
        let map = self.map.lock().ok()?;
        map.get(token).filter(|e| e.exp > now).map(|e| {
            let fresh = e.unrevoked_at.is_some_and(|t| t.elapsed() < UNREVOKED_FOR);
            (Arc::clone(&e.claims), fresh)
        })
    }

    pub(crate) fn put(&self, token: &str, claims: Arc<Value>, exp: i64, now: i64) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= CAPACITY {
            map.retain(|_, e| e.exp > now);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(
            token.into(),
            Entry {
                claims,
                exp,
                unrevoked_at: None,
            },
        );
    }

    /// The database said, in a query begun at `checked`, that this client
    /// token is not revoked. Only the entry that query was about is marked:
    /// if the token was forgotten (revoked here) or re-entered meanwhile,
    /// the answer may be stale and is dropped.
    pub(crate) fn mark_unrevoked(&self, token: &str, claims: &Arc<Value>, checked: Instant) {
        if let Ok(mut map) = self.map.lock() {
            if let Some(e) = map.get_mut(token) {
                if Arc::ptr_eq(&e.claims, claims) {
                    e.unrevoked_at = Some(checked);
                }
            }
        }
    }

    /// A token revoked on this node: forgotten at once.
    pub(crate) fn forget(&self, token: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(token);
        }
    }
}
