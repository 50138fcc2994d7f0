//! Single sign-on sessions: found by the keyed hash of their cookie handle,
//! created at the end of a login, stepped up in place (a new handle, the
//! same `sid`), ended by logout, a lock or a reset.

use interkom_types::AccountId;
use sqlx::AnyConnection;

use super::Store;

/// A browser session (single sign-on).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct Session {
    pub(crate) sid: String,
    pub(crate) user_id: AccountId,
    pub(crate) auth_time: i64,
    pub(crate) acr: String,
    /// The methods used, as a JSON array.
    pub(crate) amr: String,
    pub(crate) expires_at: i64,
    /// The upstream the login came from.
    pub(crate) upstream: Option<String>,
}

/// A step-up of session `sid`: its new handle and what the login reached.
pub(crate) struct StepUp<'a> {
    pub(crate) sid: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) handle_hash: &'a str,
    pub(crate) acr: &'a str,
    /// JSON array.
    pub(crate) amr: &'a str,
    pub(crate) auth_time: i64,
    pub(crate) upstream: Option<&'a str>,
}

/// What an upstream's logout needs of a session made by its login.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SessionUpstream<'a> {
    /// The upstream's sealed ID token, or how a SAML source names the login.
    pub(crate) token: Option<&'a str>,
    /// The login's subject at the upstream (hashed).
    pub(crate) subject: Option<&'a str>,
}

impl Store {
    /// The session whose handle hashes to `handle_hash`, if it has not
    /// expired by `now`.
    pub(crate) async fn session(
        &self,
        handle_hash: &str,
        now: i64,
    ) -> Result<Option<Session>, sqlx::Error> {
        let s: Option<Session> = sqlx::query_as(
            "SELECT sid, user_id, auth_time, acr, amr, expires_at, upstream FROM sessions WHERE handle_hash = $1",
        )
        .bind(handle_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(s.filter(|s| s.expires_at > now))
    }

    /// Creates session `s` with its handle's hash, on the caller's
    /// transaction; `upstream` is what an upstream's logout needs of it
    /// (its sealed ID token or the name of the login, the login's subject
    /// hashed).
    pub(crate) async fn insert_session(
        &self,
        conn: &mut AnyConnection,
        handle_hash: &str,
        s: &Session,
        now: i64,
        upstream: SessionUpstream<'_>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO sessions (handle_hash, sid, user_id, auth_time, acr, amr, created_at, expires_at, upstream, \
             upstream_token, upstream_subject) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(handle_hash)
        .bind(&s.sid)
        .bind(&s.user_id)
        .bind(s.auth_time)
        .bind(&s.acr)
        .bind(&s.amr)
        .bind(now)
        .bind(s.expires_at)
        .bind(&s.upstream)
        .bind(upstream.token)
        .bind(upstream.subject)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Raises a live session of this user to what the step-up reached and
    /// gives it the new handle (the old one finds nothing from now on), on
    /// the caller's transaction; `None` if it ended meanwhile.
    pub(crate) async fn step_up_session(
        &self,
        conn: &mut AnyConnection,
        up: &StepUp<'_>,
        now: i64,
    ) -> Result<Option<Session>, sqlx::Error> {
        let expires_at: Option<i64> = sqlx::query_scalar(
            "UPDATE sessions SET handle_hash = $1, acr = $2, amr = $3, auth_time = $4, upstream = $5 \
             WHERE sid = $6 AND user_id = $7 AND expires_at > $8 RETURNING expires_at",
        )
        .bind(up.handle_hash)
        .bind(up.acr)
        .bind(up.amr)
        .bind(up.auth_time)
        .bind(up.upstream)
        .bind(up.sid)
        .bind(up.user_id)
        .bind(now)
        .fetch_optional(conn)
        .await?;
        Ok(expires_at.map(|expires_at| Session {
            sid: up.sid.to_owned(),
            user_id: up.user_id.to_owned().into(),
            auth_time: up.auth_time,
            acr: up.acr.to_owned(),
            amr: up.amr.to_owned(),
            expires_at,
            upstream: up.upstream.map(str::to_owned),
        }))
    }

    /// Keeps the upstream's sealed ID token with session `sid`, on the
    /// caller's transaction.
    pub(crate) async fn set_upstream_token(
        &self,
        conn: &mut AnyConnection,
        sid: &str,
        sealed: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE sessions SET upstream_token = $1 WHERE sid = $2")
            .bind(sealed)
            .bind(sid)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Keeps how the upstream names the login of session `sid` (hashed).
    pub(crate) async fn set_upstream_subject(
        &self,
        conn: &mut AnyConnection,
        sid: &str,
        subject: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE sessions SET upstream_subject = $1 WHERE sid = $2")
            .bind(subject)
            .bind(sid)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The sessions whose upstream names their login `subject`, with the
    /// account and the sealed token kept with each.
    pub(crate) async fn sessions_by_upstream_subject(
        &self,
        subject: &str,
    ) -> Result<Vec<(String, String, Option<String>)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT sid, user_id, upstream_token FROM sessions WHERE upstream_subject = $1",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await
    }

    /// The upstream's sealed ID token kept with session `sid`, if any.
    pub(crate) async fn upstream_token(&self, sid: &str) -> Result<Option<String>, sqlx::Error> {
        let t: Option<Option<String>> =
            sqlx::query_scalar("SELECT upstream_token FROM sessions WHERE sid = $1")
                .bind(sid)
                .fetch_optional(&self.pool)
                .await?;
        Ok(t.flatten())
    }

    /// The account of session `sid`, while it lasts.
    pub(crate) async fn session_user(&self, sid: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT user_id FROM sessions WHERE sid = $1")
            .bind(sid)
            .fetch_optional(&self.pool)
            .await
    }

    /// Whether session `sid` still exists, seen from the caller's
    /// transaction.
    pub(crate) async fn session_exists(
        &self,
        conn: &mut AnyConnection,
        sid: &str,
    ) -> Result<bool, sqlx::Error> {
        let live: Option<i64> = sqlx::query_scalar("SELECT 1 FROM sessions WHERE sid = $1")
            .bind(sid)
            .fetch_optional(conn)
            .await?;
        Ok(live.is_some())
    }

    /// Ends session `sid` on the caller's transaction; its user, if it
    /// still existed. A write, so a transaction may begin with it: on
    /// SQLite a transaction that read first cannot take the write lock once
    /// another connection has written.
    pub(crate) async fn end_session(
        &self,
        conn: &mut AnyConnection,
        sid: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("DELETE FROM sessions WHERE sid = $1 RETURNING user_id")
            .bind(sid)
            .fetch_optional(conn)
            .await
    }

    /// Ends every session of user `user_id` on the caller's transaction;
    /// the `sid`s of those it ended (a write, see [`Store::end_session`]).
    pub(crate) async fn end_sessions_of(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("DELETE FROM sessions WHERE user_id = $1 RETURNING sid")
            .bind(user_id)
            .fetch_all(conn)
            .await
    }
}
