//! What a login keeps between two requests, so that any node takes the
//! next step: the login request (the pending authorization request and
//! what the login established so far), a login sent to an upstream and not
//! yet back, and a WebAuthn registration under way. Each is bound to the
//! browser or account that began it and used up once.
//!
//! The login flow owns the format of what it keeps: the store takes and
//! gives the JSON text as it is.

use sqlx::AnyConnection;

use super::Store;

/// A new login request.
pub(crate) struct NewLoginRequest<'a> {
    pub(crate) id: &'a str,
    /// Keyed hash of the browser cookie it is bound to.
    pub(crate) browser_hash: &'a str,
    /// The authorization request, JSON.
    pub(crate) params: &'a str,
    pub(crate) expires_at: i64,
    /// What the login established so far, JSON.
    pub(crate) pending: Option<&'a str>,
}

/// A login request as stored (unexpired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredLoginRequest {
    /// The authorization request, JSON.
    pub(crate) params: String,
    /// What the login established so far, JSON.
    pub(crate) pending: Option<String>,
}

/// A login sent to an upstream and not yet back, under the keyed hash of
/// its `state` (no `Debug`: it carries the sealed nonce and verifier).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct UpstreamLogin {
    pub(crate) login_request: String,
    pub(crate) upstream: String,
    pub(crate) browser_hash: String,
    /// Nonce and PKCE verifier, sealed.
    pub(crate) secrets_enc: String,
    pub(crate) expires_at: i64,
}

/// A WebAuthn ceremony under way (no `Debug`: it carries the challenge).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Ceremony {
    pub(crate) user_id: String,
    /// webauthn-rs's state, JSON.
    pub(crate) state: String,
    pub(crate) expires_at: i64,
}

impl Store {
    /// Stores a new login request.
    pub(crate) async fn insert_login_request(
        &self,
        r: &NewLoginRequest<'_>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO login_requests (id, csrf_hash, params, expires_at, pending) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(r.id)
        .bind(r.browser_hash)
        .bind(r.params)
        .bind(r.expires_at)
        .bind(r.pending)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Login request `id`, if it has not expired by `now`.
    pub(crate) async fn login_request(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<StoredLoginRequest>, sqlx::Error> {
        let row: Option<(String, i64, Option<String>)> =
            sqlx::query_as("SELECT params, expires_at, pending FROM login_requests WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row
            .filter(|r| r.1 > now)
            .map(|(params, _, pending)| StoredLoginRequest { params, pending }))
    }

    /// The keyed hash of the browser login request `id` is bound to, if
    /// it has not expired by `now`.
    pub(crate) async fn login_request_browser(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<String>, sqlx::Error> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT csrf_hash FROM login_requests WHERE id = $1 AND expires_at > $2",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(h,)| h))
    }

    /// Keeps what login request `id` has established so far (JSON).
    pub(crate) async fn save_login(&self, id: &str, pending: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE login_requests SET pending = $1 WHERE id = $2")
            .bind(pending)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Uses login request `id` up on the caller's transaction; false if it
    /// was gone already (a second submission of the same form).
    pub(crate) async fn take_login_request(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<bool, sqlx::Error> {
        let deleted = sqlx::query("DELETE FROM login_requests WHERE id = $1")
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    /// Ends login request `id` (void, or used up), on its own.
    pub(crate) async fn discard_login_request(&self, id: &str) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        self.take_login_request(&mut conn, id).await?;
        Ok(())
    }

    /// Stores a login sent to an upstream under the hash of its `state`.
    pub(crate) async fn insert_upstream_login(
        &self,
        state_hash: &str,
        l: &UpstreamLogin,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO upstream_logins (state_hash, login_request, upstream, browser_hash, secrets_enc, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(state_hash)
        .bind(&l.login_request)
        .bind(&l.upstream)
        .bind(&l.browser_hash)
        .bind(&l.secrets_enc)
        .bind(l.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes the login sent to an upstream with this `state` hash, expired
    /// or not. Single use: whoever comes second (a replayed answer) finds
    /// nothing.
    pub(crate) async fn take_upstream_login(
        &self,
        state_hash: &str,
    ) -> Result<Option<UpstreamLogin>, sqlx::Error> {
        let row: Option<(String, String, String, String, i64)> = sqlx::query_as(
            "DELETE FROM upstream_logins WHERE state_hash = $1 \
             RETURNING login_request, upstream, browser_hash, secrets_enc, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(login_request, upstream, browser_hash, secrets_enc, expires_at)| UpstreamLogin {
                login_request,
                upstream,
                browser_hash,
                secrets_enc,
                expires_at,
            },
        ))
    }

    /// Stores a WebAuthn ceremony under `id`.
    pub(crate) async fn insert_ceremony(&self, id: &str, c: &Ceremony) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (id, user_id, state, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(&c.user_id)
        .bind(&c.state)
        .bind(c.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes ceremony `id`, expired or not: single use.
    pub(crate) async fn take_ceremony(&self, id: &str) -> Result<Option<Ceremony>, sqlx::Error> {
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "DELETE FROM webauthn_ceremonies WHERE id = $1 RETURNING user_id, state, expires_at",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(user_id, state, expires_at)| Ceremony {
            user_id,
            state,
            expires_at,
        }))
    }
}
