//! The removal of rows nobody needs any more: expired codes, login
//! requests, sessions, replay records and ceremonies (an hour after they
//! expired), brute-force counters whose window and lock have passed, and
//! back-channel logout deliveries a day old.

use super::Store;

impl Store {
    /// Deletes what has expired by `now` (brute-force counters by their
    /// window, `throttle_window_seconds`); how many rows went.
    pub(crate) async fn purge_expired(
        &self,
        now: i64,
        throttle_window_seconds: i64,
    ) -> Result<u64, sqlx::Error> {
        let mut n = 0;
        for table in [
            "auth_codes",
            "login_requests",
            "sessions",
            "revoked_tokens",
            "client_assertions",
            "upstream_logins",
            "webauthn_ceremonies",
            "saml_requests",
            "saml_sp_requests",
            "saml_assertions",
        ] {
            n += sqlx::query(&format!("DELETE FROM {table} WHERE expires_at < $1"))
                .bind(now - 3600)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        n += self.purge_host_sessions(now - 3600).await?;
        n += self.purge_counters(now, throttle_window_seconds).await?;
        // Delivered or given up (every retry is over within minutes).
        n += sqlx::query("DELETE FROM logout_deliveries WHERE created_at < $1")
            .bind(now - 86_400)
            .execute(&self.pool)
            .await?
            .rows_affected();
        // The service providers of sessions that ended.
        n += sqlx::query(
            "DELETE FROM saml_sessions WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = saml_sessions.sid)",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }
}
