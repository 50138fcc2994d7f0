//! Forward authentication's host sessions: one per protected host and
//! single sign-on session, found by the keyed hash of its cookie handle,
//! alive only while that single sign-on session is.

use interkom_types::AccountId;
use sqlx::AnyConnection;

use super::Store;

/// A host session with what its single sign-on session established.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct HostSession {
    pub(crate) sid: String,
    pub(crate) origin: String,
    pub(crate) user_id: AccountId,
    pub(crate) auth_time: i64,
    pub(crate) acr: String,
    /// JSON array.
    pub(crate) amr: String,
    /// The earlier of the two expiries.
    pub(crate) expires_at: i64,
}

impl Store {
    /// Creates a host session on the caller's transaction.
    pub(crate) async fn insert_host_session(
        &self,
        conn: &mut AnyConnection,
        handle_hash: &str,
        sid: &str,
        origin: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO forward_sessions (handle_hash, sid, origin, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(handle_hash)
        .bind(sid)
        .bind(origin)
        .bind(now)
        .bind(expires_at)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The live host session whose handle hashes to `handle_hash`, with its
    /// single sign-on session's state (none once that has ended).
    pub(crate) async fn host_session(
        &self,
        handle_hash: &str,
        now: i64,
    ) -> Result<Option<HostSession>, sqlx::Error> {
        let s: Option<HostSession> = sqlx::query_as(
            "SELECT f.sid, f.origin, s.user_id, s.auth_time, s.acr, s.amr, \
             CASE WHEN f.expires_at < s.expires_at THEN f.expires_at ELSE s.expires_at END AS expires_at \
             FROM forward_sessions f JOIN sessions s ON s.sid = f.sid WHERE f.handle_hash = $1",
        )
        .bind(handle_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(s.filter(|s| s.expires_at > now))
    }

    /// Removes the host sessions of ended single sign-on sessions and the
    /// expired ones; how many went.
    pub(crate) async fn purge_host_sessions(&self, before: i64) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "DELETE FROM forward_sessions WHERE expires_at < $1 \
             OR NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = forward_sessions.sid)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
