//! Consents: what a person agreed a client may receive (the scopes),
//! remembered per account and client, and withdrawn by the person. Clients
//! the county marks first-party (its own Fachverfahren) need none.

use interkom_types::{AccountId, ClientId};

use crate::{Directory, DirectoryError};

/// A consent as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub client: ClientId,
    pub scopes: Vec<String>,
    pub granted_at: i64,
}

fn joined(scopes: &[String]) -> String {
    let mut s: Vec<&str> = scopes.iter().map(String::as_str).collect();
    s.sort_unstable();
    s.dedup();
    s.join(" ")
}

impl Directory {
    /// Whether `account` agreed that `client` receives every one of
    /// `scopes`.
    pub async fn has_consented(
        &self,
        account: &str,
        client: &str,
        scopes: &[String],
    ) -> Result<bool, DirectoryError> {
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT scopes FROM consents WHERE account_id = $1 AND client_id = $2",
        )
        .bind(account)
        .bind(client)
        .fetch_optional(&self.0.pool)
        .await?;
        Ok(stored.is_some_and(|s| {
            let granted: Vec<&str> = s.split(' ').collect();
            scopes.iter().all(|w| granted.contains(&w.as_str()))
        }))
    }

    /// Records that `account` agreed to `scopes` for `client` (with what it
    /// agreed to before).
    pub async fn grant_consent(
        &self,
        account: &str,
        client: &str,
        scopes: &[String],
    ) -> Result<(), DirectoryError> {
        let mut all: Vec<String> = scopes.to_vec();
        if let Some(c) = self
            .consents_of(account)
            .await?
            .into_iter()
            .find(|c| *c.client == *client)
        {
            all.extend(c.scopes);
        }
        let now = self.0.clock.now();
        let scopes = joined(&all);
        let updated = sqlx::query(
            "UPDATE consents SET scopes = $1, granted_at = $2 WHERE account_id = $3 AND client_id = $4",
        )
        .bind(&scopes)
        .bind(now)
        .bind(account)
        .bind(client)
        .execute(&self.0.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            let r = sqlx::query(
                "INSERT INTO consents (account_id, client_id, scopes, granted_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(account)
            .bind(client)
            .bind(&scopes)
            .bind(now)
            .execute(&self.0.pool)
            .await;
            // Granted at the same moment in another tab: that one stands.
            crate::inserted(r)?;
        }
        Ok(())
    }

    /// The consents of an account, by client.
    pub async fn consents_of(&self, account: &str) -> Result<Vec<Consent>, DirectoryError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT client_id, scopes, granted_at FROM consents WHERE account_id = $1 ORDER BY client_id",
        )
        .bind(account)
        .fetch_all(&self.0.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(client, scopes, granted_at)| Consent {
                client: client.into(),
                scopes: scopes
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                granted_at,
            })
            .collect())
    }

    /// Withdraws a consent; false if there was none.
    pub async fn revoke_consent(
        &self,
        account: &AccountId,
        client: &str,
    ) -> Result<bool, DirectoryError> {
        let n = sqlx::query("DELETE FROM consents WHERE account_id = $1 AND client_id = $2")
            .bind(account)
            .bind(client)
            .execute(&self.0.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }
}
