//! Browser sessions (single sign-on): created at the end of a login,
//! stepped up in place (a new handle, the same `sid`), ended by logout, a
//! lock or a reset — with their refresh tokens revoked and the clients
//! told (back-channel logout) in the same transaction. The rows are the
//! store's (`crate::store`); here are the handles and what goes with an
//! ending.

use interkom_directory::crypto::random_token;

pub(crate) use crate::store::Session;
use crate::store::{SessionUpstream, StepUp};
use crate::{Gateway, GatewayError};

impl Gateway {
    /// Ends every session of an account, revokes its refresh tokens and
    /// tells the clients that asked to hear (back-channel logout).
    pub async fn end_sessions_of(&self, id: &str) -> Result<(), GatewayError> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        // Writing first (see `end_session`); the sessions deleted are the
        // ones announced, whatever starts meanwhile.
        let sids = self.store.end_sessions_of(&mut tx, id).await?;
        for sid in &sids {
            self.store.queue_logout(&mut tx, id, sid, now).await?;
        }
        self.store.revoke_families_of_user(&mut tx, id, now).await?;
        tx.commit().await?;
        self.host_sessions.forget_user(id);
        self.logout_wake.notify_one();
        Ok(())
    }
}

pub(crate) const SESSION_COOKIE: &str = "interkom_session";

/// The live session whose cookie handle is `handle`.
pub(crate) async fn session_by_handle(
    gw: &Gateway,
    handle: &str,
    now: i64,
) -> Result<Option<Session>, GatewayError> {
    Ok(gw.store.session(&gw.master.keyed_hash(handle), now).await?)
}

/// Creates a session on `conn` (the caller's transaction); returns
/// (cookie handle, session).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn create_session(
    gw: &Gateway,
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    acr: &str,
    amr: &[&str],
    auth_time: i64,
    upstream: Option<&str>,
    login: SessionUpstream<'_>,
) -> Result<(String, Session), GatewayError> {
    let now = gw.clock.now();
    let handle = random_token(32);
    let session = Session {
        sid: random_token(16),
        user_id: user_id.to_owned().into(),
        auth_time,
        acr: acr.to_owned(),
        amr: serde_json::to_string(amr)?,
        expires_at: now + gw.cfg.session_ttl,
        upstream: upstream.map(str::to_owned),
    };
    gw.store
        .insert_session(conn, &gw.master.keyed_hash(&handle), &session, now, login)
        .await?;
    Ok((handle, session))
}

/// Raises a session's level after a step-up and gives it a new handle (the
/// old cookie is worthless from now on); `None` if it ended meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn step_up_session(
    gw: &Gateway,
    conn: &mut sqlx::AnyConnection,
    sid: &str,
    user_id: &str,
    acr: &str,
    amr: &[&str],
    auth_time: i64,
    upstream: Option<&str>,
) -> Result<Option<(String, Session)>, GatewayError> {
    let handle = random_token(32);
    let amr = serde_json::to_string(amr)?;
    let up = StepUp {
        sid,
        user_id,
        handle_hash: &gw.master.keyed_hash(&handle),
        acr,
        amr: &amr,
        auth_time,
        upstream,
    };
    let stepped = gw.store.step_up_session(conn, &up, gw.clock.now()).await?;
    // The hosts' cookies read the new level at once on this node.
    gw.host_sessions.forget_sid(sid);
    Ok(stepped.map(|s| (handle, s)))
}

/// Ends a session and revokes the token families issued under it.
pub(crate) async fn end_session(gw: &Gateway, sid: &str) -> Result<(), GatewayError> {
    let now = gw.clock.now();
    let mut tx = gw.store.begin().await?;
    // Writing first: on SQLite a transaction that read first cannot take
    // the write lock once another connection has written.
    let user = gw.store.end_session(&mut tx, sid).await?;
    if let Some(user) = &user {
        gw.store.queue_logout(&mut tx, user, sid, now).await?;
    }
    gw.store
        .revoke_families_of_session(&mut tx, sid, now)
        .await?;
    tx.commit().await?;
    gw.host_sessions.forget_sid(sid);
    gw.logout_wake.notify_one();
    Ok(())
}
