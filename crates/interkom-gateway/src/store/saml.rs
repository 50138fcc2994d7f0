//! The replay cache of SAML requests: an AuthnRequest's id is accepted
//! once per service provider.

use super::Store;

impl Store {
    /// Records request `id` of `sp`; false when it was seen before.
    pub(crate) async fn first_saml_request(
        &self,
        sp: &str,
        id: &str,
        expires_at: i64,
    ) -> Result<bool, sqlx::Error> {
        let r = sqlx::query(
            "INSERT INTO saml_requests (sp, request_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (sp, request_id) DO NOTHING",
        )
        .bind(sp)
        .bind(id)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}

impl Store {
    /// Records that `sp` got an assertion for `name_id` in session `sid`.
    pub(crate) async fn saml_participant(
        &self,
        sid: &str,
        sp: &str,
        name_id: &str,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO saml_sessions (sid, sp, name_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sid, sp) DO UPDATE SET name_id = $3, created_at = $4",
        )
        .bind(sid)
        .bind(sp)
        .bind(name_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The service providers of session `sid`: (sp, name_id).
    pub(crate) async fn saml_participants(
        &self,
        sid: &str,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        sqlx::query_as("SELECT sp, name_id FROM saml_sessions WHERE sid = $1 ORDER BY created_at")
            .bind(sid)
            .fetch_all(&self.pool)
            .await
    }

    /// Forgets the service providers of session `sid`.
    pub(crate) async fn forget_saml_participants(&self, sid: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM saml_sessions WHERE sid = $1")
            .bind(sid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
