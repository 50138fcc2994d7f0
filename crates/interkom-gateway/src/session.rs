//! Browser sessions (single sign-on): created at the end of a login,
//! stepped up in place (a new handle, the same `sid`), ended by logout, a
//! lock or a reset — with their refresh tokens revoked and the clients
//! told (back-channel logout) in the same transaction.

use interkom_directory::crypto::{random_token, MasterKey};
use sqlx::AnyPool;

use crate::{Gateway, GatewayError};

impl Gateway {
    /// Ends every session of an account, revokes its refresh tokens and
    /// tells the clients that asked to hear (back-channel logout).
    pub async fn end_sessions_of(&self, id: &str) -> Result<(), GatewayError> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        // Writing first (see `end_session`); the sessions deleted are the
        // ones announced, whatever starts meanwhile.
        let sids: Vec<String> =
            sqlx::query_scalar("DELETE FROM sessions WHERE user_id = $1 RETURNING sid")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        for sid in &sids {
            crate::backchannel::queue(&mut tx, id, sid, now).await?;
        }
        sqlx::query(
            "UPDATE token_families SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.logout_wake.notify_one();
        Ok(())
    }
}

/// A browser session (single sign-on).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Session {
    pub(crate) sid: String,
    pub(crate) user_id: String,
    pub(crate) auth_time: i64,
    pub(crate) acr: String,
    pub(crate) amr: String,
    pub(crate) expires_at: i64,
    /// The upstream the login came from.
    pub(crate) upstream: Option<String>,
}

pub(crate) const SESSION_COOKIE: &str = "interkom_session";

pub(crate) async fn session_by_handle(
    pool: &AnyPool,
    master: &MasterKey,
    handle: &str,
    now: i64,
) -> Result<Option<Session>, GatewayError> {
    let s: Option<Session> = sqlx::query_as(
        "SELECT sid, user_id, auth_time, acr, amr, expires_at, upstream FROM sessions WHERE handle_hash = $1",
    )
    .bind(master.keyed_hash(handle))
    .fetch_optional(pool)
    .await?;
    Ok(s.filter(|s| s.expires_at > now))
}

/// Creates a session on `conn` (the caller's transaction); returns
/// (cookie handle, session).
pub(crate) async fn create_session(
    gw: &Gateway,
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    acr: &str,
    amr: &[&str],
    auth_time: i64,
    upstream: Option<&str>,
) -> Result<(String, Session), GatewayError> {
    let now = gw.clock.now();
    let handle = random_token(32);
    let session = Session {
        sid: random_token(16),
        user_id: user_id.to_owned(),
        auth_time,
        acr: acr.to_owned(),
        amr: serde_json::to_string(amr)?,
        expires_at: now + gw.cfg.session_ttl,
        upstream: upstream.map(str::to_owned),
    };
    sqlx::query(
        "INSERT INTO sessions (handle_hash, sid, user_id, auth_time, acr, amr, created_at, expires_at, upstream) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(gw.master.keyed_hash(&handle))
    .bind(&session.sid)
    .bind(&session.user_id)
    .bind(session.auth_time)
    .bind(&session.acr)
    .bind(&session.amr)
    .bind(now)
    .bind(session.expires_at)
    .bind(&session.upstream)
    .execute(conn)
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
    let expires_at: Option<i64> = sqlx::query_scalar(
        "UPDATE sessions SET handle_hash = $1, acr = $2, amr = $3, auth_time = $4, upstream = $5 \
         WHERE sid = $6 AND user_id = $7 AND expires_at > $8 RETURNING expires_at",
    )
    .bind(gw.master.keyed_hash(&handle))
    .bind(acr)
    .bind(&amr)
    .bind(auth_time)
    .bind(upstream)
    .bind(sid)
    .bind(user_id)
    .bind(gw.clock.now())
    .fetch_optional(conn)
    .await?;
    Ok(expires_at.map(|expires_at| {
        (
            handle,
            Session {
                sid: sid.to_owned(),
                user_id: user_id.to_owned(),
                auth_time,
                acr: acr.to_owned(),
                amr,
                expires_at,
                upstream: upstream.map(str::to_owned),
            },
        )
    }))
}

/// Ends a session and revokes the token families issued under it.
pub(crate) async fn end_session(gw: &Gateway, sid: &str) -> Result<(), GatewayError> {
    let now = gw.clock.now();
    let mut tx = gw.pool.begin().await?;
    // Writing first: on SQLite a transaction that read first cannot take
    // the write lock once another connection has written.
    let user: Option<String> =
        sqlx::query_scalar("DELETE FROM sessions WHERE sid = $1 RETURNING user_id")
            .bind(sid)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(user) = &user {
        crate::backchannel::queue(&mut tx, user, sid, now).await?;
    }
    sqlx::query("UPDATE token_families SET revoked_at = $1 WHERE sid = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(sid)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    gw.logout_wake.notify_one();
    Ok(())
}
