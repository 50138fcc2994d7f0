//! Token families, refresh tokens, revoked access tokens and the `jti`s of
//! client assertions.
//!
//! Everything issued from one authorization code forms a family, revoked as
//! a whole (code replay, refresh-token reuse, logout, revocation). Refresh
//! tokens are stored as keyed hashes and used once (rotation). Access
//! tokens are JWTs, so only a revoked one has a row (by `jti`, until it
//! expires).

use interkom_types::{AccountId, ClientId};
use sqlx::AnyConnection;

use super::Store;

/// A new token family: what one authorization code was issued for.
pub(crate) struct TokenFamily<'a> {
    pub(crate) id: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) sid: &'a str,
}

/// A refresh token as stored (without the token itself).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct RefreshToken {
    pub(crate) family_id: String,
    pub(crate) client_id: ClientId,
    pub(crate) user_id: AccountId,
    pub(crate) sid: String,
    /// Space-separated.
    pub(crate) scope: String,
    pub(crate) auth_time: i64,
    pub(crate) acr: String,
    /// JSON array.
    pub(crate) amr: String,
    pub(crate) expires_at: i64,
    pub(crate) used_at: Option<i64>,
    /// When its family was revoked (logout, reuse, revocation), if it was.
    pub(crate) family_revoked_at: Option<i64>,
}

/// A new refresh token, to be stored with its hash.
#[derive(Debug, Clone)]
pub(crate) struct NewRefreshToken {
    pub(crate) hash: String,
    pub(crate) family_id: String,
    pub(crate) client_id: ClientId,
    pub(crate) user_id: AccountId,
    pub(crate) sid: String,
    pub(crate) scope: String,
    pub(crate) auth_time: i64,
    pub(crate) acr: String,
    pub(crate) amr: String,
    pub(crate) expires_at: i64,
}

/// What introspection shows of a refresh token, with its family's state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct RefreshTokenView {
    pub(crate) client_id: ClientId,
    pub(crate) user_id: AccountId,
    pub(crate) scope: String,
    pub(crate) expires_at: i64,
    pub(crate) used_at: Option<i64>,
    pub(crate) revoked_at: Option<i64>,
}

impl Store {
    /// Creates a token family on the caller's transaction.
    pub(crate) async fn insert_family(
        &self,
        conn: &mut AnyConnection,
        f: &TokenFamily<'_>,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO token_families (id, client_id, user_id, sid, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(f.id)
        .bind(f.client_id)
        .bind(f.user_id)
        .bind(f.sid)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Whether family `id` exists and is not revoked.
    pub(crate) async fn family_is_live(&self, id: &str) -> Result<bool, sqlx::Error> {
        let revoked: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at FROM token_families WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(matches!(revoked, Some(None)))
    }

    /// Revokes family `id` (a family revoked already keeps its time).
    pub(crate) async fn revoke_family(&self, id: &str, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE token_families SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revokes the families issued in session `sid`, on the caller's
    /// transaction.
    pub(crate) async fn revoke_families_of_session(
        &self,
        conn: &mut AnyConnection,
        sid: &str,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE token_families SET revoked_at = $1 WHERE sid = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(sid)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Revokes every family of user `user_id`, on the caller's transaction.
    pub(crate) async fn revoke_families_of_user(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE token_families SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Revokes the families of user `user_id` at one client (a withdrawn
    /// consent); returns how many.
    pub(crate) async fn revoke_families_of_user_at(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> Result<u64, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE token_families SET revoked_at = $1 \
             WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .bind(client_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }

    /// The refresh token that hashes to `hash`, used or not, with its
    /// family's revocation (one read on the refresh path).
    pub(crate) async fn refresh_token(
        &self,
        hash: &str,
    ) -> Result<Option<RefreshToken>, sqlx::Error> {
        sqlx::query_as(
            "SELECT r.family_id, r.client_id, r.user_id, r.sid, r.scope, r.auth_time, r.acr, r.amr, \
             r.expires_at, r.used_at, f.revoked_at AS family_revoked_at \
             FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id WHERE r.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
    }

    /// The refresh token that hashes to `hash` with its family's
    /// revocation (introspection).
    pub(crate) async fn refresh_token_view(
        &self,
        hash: &str,
    ) -> Result<Option<RefreshTokenView>, sqlx::Error> {
        sqlx::query_as(
            "SELECT r.client_id, r.user_id, r.scope, r.expires_at, r.used_at, f.revoked_at \
             FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id WHERE r.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
    }

    /// The family and client of the refresh token that hashes to `hash`
    /// (revocation).
    pub(crate) async fn refresh_token_family(
        &self,
        hash: &str,
    ) -> Result<Option<(String, String)>, sqlx::Error> {
        sqlx::query_as("SELECT family_id, client_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
    }

    /// Stores a new refresh token on the caller's transaction.
    pub(crate) async fn insert_refresh_token(
        &self,
        conn: &mut AnyConnection,
        r: &NewRefreshToken,
    ) -> Result<(), sqlx::Error> {
        insert_refresh_tokens(conn, &[r]).await
    }

    /// Whether the access token `jti` was revoked.
    pub(crate) async fn access_token_revoked(&self, jti: &str) -> Result<bool, sqlx::Error> {
        let revoked: Option<i64> =
            sqlx::query_scalar("SELECT expires_at FROM revoked_tokens WHERE jti = $1")
                .bind(jti)
                .fetch_optional(&self.pool)
                .await?;
        Ok(revoked.is_some())
    }

    /// Revokes the access token `jti` until it expires at `exp` (a second
    /// revocation changes nothing).
    pub(crate) async fn revoke_access_token(&self, jti: &str, exp: i64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
            .bind(jti)
            .bind(exp)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the client assertion `id` (client and `jti`) until
    /// `expires_at`; false if it was recorded before (a replay).
    pub(crate) async fn first_client_assertion(
        &self,
        id: &str,
        expires_at: i64,
    ) -> Result<bool, sqlx::Error> {
        let inserted =
            sqlx::query("INSERT INTO client_assertions (id, expires_at) VALUES ($1, $2)")
                .bind(id)
                .bind(expires_at)
                .execute(&self.pool)
                .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Stores new refresh tokens on `conn`, in one statement.
pub(super) async fn insert_refresh_tokens(
    conn: &mut AnyConnection,
    rows: &[&NewRefreshToken],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, sid, scope, auth_time, acr, amr, \
         expires_at, used_at) VALUES ",
    );
    for i in 0..rows.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        let n = i * 10;
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, NULL)",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5,
            n + 6,
            n + 7,
            n + 8,
            n + 9,
            n + 10
        ));
    }
    let mut q = sqlx::query(&sql);
    for r in rows {
        q = q
            .bind(&r.hash)
            .bind(&r.family_id)
            .bind(&r.client_id)
            .bind(&r.user_id)
            .bind(&r.sid)
            .bind(&r.scope)
            .bind(r.auth_time)
            .bind(&r.acr)
            .bind(&r.amr)
            .bind(r.expires_at);
    }
    q.execute(conn).await?;
    Ok(())
}
