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
