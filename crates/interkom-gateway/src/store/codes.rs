//! Authorization codes: stored as keyed hashes with everything the token
//! endpoint needs, redeemed once.

use interkom_types::{AccountId, ClientId};
use sqlx::AnyConnection;

use super::Store;

/// An authorization code as stored (without the code itself).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct AuthCode {
    pub(crate) client_id: ClientId,
    pub(crate) redirect_uri: String,
    pub(crate) user_id: AccountId,
    pub(crate) sid: String,
    /// Space-separated.
    pub(crate) scope: String,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) auth_time: i64,
    pub(crate) acr: String,
    /// JSON array.
    pub(crate) amr: String,
    /// The token family everything issued from the code belongs to.
    pub(crate) family_id: String,
    pub(crate) expires_at: i64,
    /// When it was redeemed (`None` for a new code).
    pub(crate) used_at: Option<i64>,
}

impl Store {
    /// Stores a new, unused code on the caller's connection or
    /// transaction.
    pub(crate) async fn insert_code(
        &self,
        conn: &mut AnyConnection,
        code_hash: &str,
        c: &AuthCode,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO auth_codes (code_hash, client_id, redirect_uri, user_id, sid, scope, nonce, code_challenge, \
             auth_time, acr, amr, family_id, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL)",
        )
        .bind(code_hash)
        .bind(&c.client_id)
        .bind(&c.redirect_uri)
        .bind(&c.user_id)
        .bind(&c.sid)
        .bind(&c.scope)
        .bind(&c.nonce)
        .bind(&c.code_challenge)
        .bind(c.auth_time)
        .bind(&c.acr)
        .bind(&c.amr)
        .bind(&c.family_id)
        .bind(c.expires_at)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The code that hashes to `code_hash`, used or not, expired or not.
    pub(crate) async fn code(&self, code_hash: &str) -> Result<Option<AuthCode>, sqlx::Error> {
        sqlx::query_as(
            "SELECT client_id, redirect_uri, user_id, sid, scope, nonce, code_challenge, auth_time, acr, amr, \
             family_id, expires_at, used_at FROM auth_codes WHERE code_hash = $1",
        )
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await
    }

    /// Marks the code used, in the caller's transaction; false when it was
    /// used already (a replay). The conditional UPDATE is atomic on both
    /// databases, so of two concurrent redemptions exactly one wins.
    pub(crate) async fn use_up_code(
        &self,
        conn: &mut AnyConnection,
        code_hash: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(code_hash)
        .execute(conn)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
