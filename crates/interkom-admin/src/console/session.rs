//! The console's sessions (table `console_sessions`): first a login in
//! progress (its `state` and sealed PKCE verifier), then the
//! administrator's tokens, sealed under the session's handle.

use sqlx::AnyPool;

/// A logged-in console session.
pub(crate) struct Session {
    pub(crate) handle_hash: String,
    pub(crate) token: String,
    pub(crate) csrf: String,
    pub(crate) request_id: Option<String>,
}

/// The sealed access token, sealed refresh token, CSRF token and expiry
/// of a session.
pub(crate) async fn tokens(
    pool: &AnyPool,
    hash: &str,
) -> Result<Option<(Option<String>, Option<String>, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT access_token, refresh_token, csrf, expires_at FROM console_sessions WHERE handle_hash = $1",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await
}

/// Stores renewed (sealed) tokens.
pub(crate) async fn renew(
    pool: &AnyPool,
    hash: &str,
    access: &str,
    refresh: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE console_sessions SET access_token = $1, refresh_token = $2, expires_at = $3 WHERE handle_hash = $4",
    )
    .bind(access)
    .bind(refresh)
    .bind(expires_at)
    .bind(hash)
    .execute(pool)
    .await?;
    Ok(())
}

/// A login begins (ten minutes to finish it); stale sessions go on the way.
pub(crate) async fn begin(
    pool: &AnyPool,
    hash: &str,
    state: &str,
    sealed_verifier: &str,
    csrf: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let _ = sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
        .bind(now)
        .execute(pool)
        .await;
    sqlx::query(
        "INSERT INTO console_sessions (handle_hash, state, verifier, csrf, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash)
    .bind(state)
    .bind(sealed_verifier)
    .bind(csrf)
    .bind(now + 600)
    .execute(pool)
    .await?;
    Ok(())
}

/// A login in progress: its state, sealed verifier and expiry.
pub(crate) async fn started(
    pool: &AnyPool,
    hash: &str,
) -> Result<Option<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT state, verifier, expires_at FROM console_sessions WHERE handle_hash = $1 AND access_token IS NULL",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await
}

/// The login in progress becomes a session under a new handle with a new
/// CSRF token (no fixation); false when it was finished already.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn log_in(
    pool: &AnyPool,
    hash: &str,
    new_hash: &str,
    access: &str,
    refresh: Option<&str>,
    csrf: &str,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE console_sessions SET handle_hash = $1, access_token = $2, refresh_token = $3, csrf = $4, \
         state = '', verifier = '', expires_at = $5 WHERE handle_hash = $6 AND access_token IS NULL",
    )
    .bind(new_hash)
    .bind(access)
    .bind(refresh)
    .bind(csrf)
    .bind(expires_at)
    .bind(hash)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Ends a session.
pub(crate) async fn end(pool: &AnyPool, hash: &str) {
    let _ = sqlx::query("DELETE FROM console_sessions WHERE handle_hash = $1")
        .bind(hash)
        .execute(pool)
        .await;
}
