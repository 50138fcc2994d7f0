//! Host sessions of forward authentication: the cookie a protected host
//! holds, bound to one single sign-on session. Every check of a proxy reads
//! one, so each node keeps them for at most [`CACHE_SECONDS`]: a logout on
//! this node forgets them at once ([`HostSessionCache::forget_sid`]), one on
//! another node is seen when the entry is read again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use interkom_directory::crypto::random_token;
use interkom_types::AccountId;

use crate::{Gateway, GatewayError};

/// The cookie of a protected host.
pub(crate) const HOST_COOKIE: &str = "interkom_app";

/// How long a node trusts what it read of a host session.
pub(crate) const CACHE_SECONDS: i64 = 5;

/// Entries kept at most; a full cache starts again.
const MAX_ENTRIES: usize = 200_000;

/// A host session with its person, as the checks need it.
#[derive(Debug)]
pub(crate) struct HostEntry {
    pub(crate) sid: String,
    pub(crate) origin: String,
    pub(crate) user_id: AccountId,
    pub(crate) username: String,
    pub(crate) tenant: String,
    pub(crate) acr: String,
    pub(crate) amr: Vec<String>,
    pub(crate) auth_time: i64,
    pub(crate) expires_at: i64,
    loaded_at: i64,
    /// (application, action) whose permits were audited for this session
    /// (`sehr_hoch`: once per session, not per request).
    pub(crate) audited: Mutex<Vec<(String, String)>>,
    /// The last JWT made for an application: (application, token, expiry).
    pub(crate) jwt: Mutex<Option<(String, String, i64)>>,
}

/// The host sessions this node read recently, by handle hash.
#[derive(Default)]
pub(crate) struct HostSessionCache {
    map: RwLock<HashMap<String, Arc<HostEntry>>>,
}

impl HostSessionCache {
    fn get(&self, hash: &str) -> Option<Arc<HostEntry>> {
        self.map.read().ok()?.get(hash).cloned()
    }

    fn put(&self, hash: String, e: Arc<HostEntry>) {
        if let Ok(mut m) = self.map.write() {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(hash, e);
        }
    }

    fn forget(&self, hash: &str) {
        if let Ok(mut m) = self.map.write() {
            m.remove(hash);
        }
    }

    /// Forgets the host sessions of single sign-on session `sid` (ended or
    /// stepped up on this node).
    pub(crate) fn forget_sid(&self, sid: &str) {
        if let Ok(mut m) = self.map.write() {
            m.retain(|_, e| e.sid != sid);
        }
    }

    /// Forgets every host session of an account.
    pub(crate) fn forget_user(&self, user_id: &str) {
        if let Ok(mut m) = self.map.write() {
            m.retain(|_, e| *e.user_id != *user_id);
        }
    }
}

/// The live host session behind cookie `handle`: from this node's cache
/// when read within [`CACHE_SECONDS`], else from the database.
pub(crate) async fn find(
    gw: &Gateway,
    handle: &str,
    now: i64,
) -> Result<Option<Arc<HostEntry>>, GatewayError> {
    if handle.len() != 43 {
        return Ok(None);
    }
    let hash = gw.master.keyed_hash(handle);
    let cached = gw.host_sessions.get(&hash);
    if let Some(e) = &cached {
        if now - e.loaded_at < CACHE_SECONDS && e.expires_at > now {
            return Ok(Some(e.clone()));
        }
    }
    let Some(s) = gw.store.host_session(&hash, now).await? else {
        gw.host_sessions.forget(&hash);
        return Ok(None);
    };
    let Some(user) = gw.dir.user(&s.user_id).await?.filter(|u| u.is_enabled()) else {
        gw.host_sessions.forget(&hash);
        return Ok(None);
    };
    // What was audited for this session stays audited across rereads.
    let audited = cached
        .filter(|c| c.sid == s.sid)
        .and_then(|c| c.audited.lock().ok().map(|a| a.clone()))
        .unwrap_or_default();
    let e = Arc::new(HostEntry {
        amr: serde_json::from_str(&s.amr).unwrap_or_default(),
        sid: s.sid,
        origin: s.origin,
        user_id: s.user_id,
        username: user.username.clone(),
        tenant: user.tenant.to_string(),
        acr: s.acr,
        auth_time: s.auth_time,
        expires_at: s.expires_at,
        loaded_at: now,
        audited: Mutex::new(audited),
        jwt: Mutex::new(None),
    });
    gw.host_sessions.put(hash, e.clone());
    Ok(Some(e))
}

/// Creates the host session of `origin` for single sign-on session `sid`
/// on the caller's transaction; returns the cookie handle.
pub(crate) async fn create(
    gw: &Gateway,
    conn: &mut sqlx::AnyConnection,
    sid: &str,
    origin: &str,
    expires_at: i64,
) -> Result<String, GatewayError> {
    let handle = random_token(32);
    gw.store
        .insert_host_session(
            conn,
            &gw.master.keyed_hash(&handle),
            sid,
            origin,
            gw.clock.now(),
            expires_at,
        )
        .await?;
    Ok(handle)
}
