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

/// An AuthnRequest sent to a SAML identity source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentRequest {
    pub(crate) login_request: String,
    pub(crate) source: String,
    /// The level asked (`acr`), if one was.
    pub(crate) asked: Option<String>,
    pub(crate) browser_hash: String,
    pub(crate) expires_at: i64,
}

impl Store {
    pub(crate) async fn insert_sp_request(
        &self,
        request_id: &str,
        r: &SentRequest,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO saml_sp_requests (request_id, login_request, source, asked, browser_hash, result, expires_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6)",
        )
        .bind(request_id)
        .bind(&r.login_request)
        .bind(&r.source)
        .bind(&r.asked)
        .bind(&r.browser_hash)
        .bind(r.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The request a Response answers, not answered yet.
    pub(crate) async fn sp_request(
        &self,
        request_id: &str,
    ) -> Result<Option<SentRequest>, sqlx::Error> {
        let row: Option<(String, String, Option<String>, String, i64)> = sqlx::query_as(
            "SELECT login_request, source, asked, browser_hash, expires_at FROM saml_sp_requests \
             WHERE request_id = $1 AND result IS NULL",
        )
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(login_request, source, asked, browser_hash, expires_at)| SentRequest {
                login_request,
                source,
                asked,
                browser_hash,
                expires_at,
            },
        ))
    }

    /// Marks the request answered with `result`; false when it was
    /// answered before (a Response posted twice).
    pub(crate) async fn answer_sp_request(
        &self,
        request_id: &str,
        result: &str,
    ) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE saml_sp_requests SET result = $1 WHERE request_id = $2 AND result IS NULL",
        )
        .bind(result)
        .bind(request_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Takes an answered request's result with the request: once.
    pub(crate) async fn take_sp_result(
        &self,
        request_id: &str,
    ) -> Result<Option<(SentRequest, String)>, sqlx::Error> {
        let row: Option<(String, String, Option<String>, String, i64, String)> = sqlx::query_as(
            "DELETE FROM saml_sp_requests WHERE request_id = $1 AND result IS NOT NULL \
             RETURNING login_request, source, asked, browser_hash, expires_at, result",
        )
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(login_request, source, asked, browser_hash, expires_at, result)| {
                (
                    SentRequest {
                        login_request,
                        source,
                        asked,
                        browser_hash,
                        expires_at,
                    },
                    result,
                )
            },
        ))
    }

    /// Records assertion `id` of `source`; false when it was seen before.
    pub(crate) async fn first_assertion(
        &self,
        source: &str,
        id: &str,
        expires_at: i64,
    ) -> Result<bool, sqlx::Error> {
        let r = sqlx::query(
            "INSERT INTO saml_assertions (source, assertion_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (source, assertion_id) DO NOTHING",
        )
        .bind(source)
        .bind(id)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
