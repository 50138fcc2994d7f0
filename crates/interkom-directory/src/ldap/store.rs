//! Directory registrations and the links of their entries to accounts.
//! Each node keeps one [`DirectorySource`] per registration, with its
//! connections, for as long as the registration is unchanged.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use interkom_types::Secret;

use super::client::DirectorySource;
use super::config::DirectorySourceConfig;
use crate::{Directory, DirectoryError, User};

/// Every registered directory, ordered by name.
pub type SourceList = Arc<Vec<Arc<DirectorySource>>>;

/// The sources as last read, with the time of reading.
#[derive(Default)]
pub(crate) struct SourceCache {
    list: RwLock<Option<(i64, SourceList)>>,
    /// By id, with the registration's `updated_at`: kept across rereads so
    /// a source keeps its open connections.
    built: RwLock<HashMap<String, (i64, Arc<DirectorySource>)>>,
}

/// The secret is bound to the source and its bind DN: configured for
/// another account, the old password opens no more.
fn secret_aad(id: &str, bind_dn: &str) -> String {
    format!("directory|{id}|{}", super::entry::norm_dn(bind_dn))
}

impl Directory {
    /// Creates or replaces a directory registration; the password is kept
    /// when the new configuration has none and the bind DN is the same.
    pub async fn put_directory_source(
        &self,
        cfg: DirectorySourceConfig,
    ) -> Result<(), DirectoryError> {
        cfg.validate(&self.0.tenants)
            .map_err(DirectoryError::Invalid)?;
        let others = self.directory_sources().await?;
        if let Some(d) = cfg.domains.iter().find(|d| {
            others
                .iter()
                .any(|o| o.cfg.id != cfg.id && o.cfg.has_domain(d))
        }) {
            return Err(DirectoryError::Invalid(format!(
                "domain `{d}` belongs to another directory"
            )));
        }
        let sealed = match &cfg.bind_password {
            Some(s) if !s.is_empty() => Some(
                self.0
                    .master
                    .encrypt(s.expose().as_bytes(), &secret_aad(&cfg.id, &cfg.bind_dn))
                    .map_err(|_| DirectoryError::Crypto("cannot seal the directory password"))?,
            ),
            _ => None,
        };
        let same_bind_dn = others.iter().any(|o| {
            o.cfg.id == cfg.id
                && super::entry::norm_dn(&o.cfg.bind_dn) == super::entry::norm_dn(&cfg.bind_dn)
        });
        let json = serde_json::to_string(&cfg)?;
        let now = self.0.clock.now();
        // `updated_at` moves on at every change, so every node rebuilds
        // the source (a change within the same second counts too).
        sqlx::query(
            "INSERT INTO directory_sources (id, tenant, config, secret_enc, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET tenant = $2, config = $3, \
             secret_enc = COALESCE($4, CASE WHEN $6 THEN directory_sources.secret_enc END), \
             updated_at = CASE WHEN directory_sources.updated_at >= $5 \
                 THEN directory_sources.updated_at + 1 ELSE $5 END",
        )
        .bind(&cfg.id)
        .bind(&cfg.tenant)
        .bind(json)
        .bind(sealed)
        .bind(now)
        .bind(same_bind_dn)
        .execute(&self.0.pool)
        .await?;
        self.forget_directory_sources();
        Ok(())
    }

    /// Removes a registration (its links stay, so that it can come back).
    pub async fn delete_directory_source(&self, id: &str) -> Result<bool, DirectoryError> {
        let n = sqlx::query("DELETE FROM directory_sources WHERE id = $1")
            .bind(id)
            .execute(&self.0.pool)
            .await?
            .rows_affected();
        self.forget_directory_sources();
        Ok(n > 0)
    }

    fn forget_directory_sources(&self) {
        if let Ok(mut l) = self.0.directories.list.write() {
            *l = None;
        }
    }

    /// Every registered directory, ordered by name; read again after a few
    /// seconds (changes on other nodes), rebuilt only when changed.
    pub async fn directory_sources(&self) -> Result<SourceList, DirectoryError> {
        let now = self.0.clock.now();
        if let Ok(l) = self.0.directories.list.read() {
            if let Some((at, list)) = l.as_ref() {
                if now - at < self.0.cfg.cache_ttl {
                    return Ok(list.clone());
                }
            }
        }
        let rows: Vec<(String, String, Option<String>, i64)> =
            sqlx::query_as("SELECT id, config, secret_enc, updated_at FROM directory_sources")
                .fetch_all(&self.0.pool)
                .await?;
        let mut list = Vec::with_capacity(rows.len());
        let mut built = HashMap::new();
        for (id, config, sealed, updated_at) in rows {
            let kept = self.0.directories.built.read().ok().and_then(|b| {
                b.get(&id)
                    .filter(|(u, _)| *u == updated_at)
                    .map(|(_, s)| s.clone())
            });
            let source = match kept {
                Some(s) => s,
                None => match self.build_source(&id, &config, sealed) {
                    Some(s) => Arc::new(s),
                    None => continue,
                },
            };
            built.insert(id, (updated_at, source.clone()));
            list.push(source);
        }
        list.sort_by(|a, b| a.cfg.name.cmp(&b.cfg.name));
        let list = Arc::new(list);
        if let Ok(mut b) = self.0.directories.built.write() {
            *b = built;
        }
        if let Ok(mut l) = self.0.directories.list.write() {
            *l = Some((now, list.clone()));
        }
        Ok(list)
    }

    fn build_source(
        &self,
        id: &str,
        config: &str,
        sealed: Option<String>,
    ) -> Option<DirectorySource> {
        let cfg: DirectorySourceConfig = match serde_json::from_str(config) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(directory = %id, error = %e, "stored directory configuration unreadable");
                return None;
            }
        };
        let secret = sealed
            .and_then(|s| {
                self.0
                    .master
                    .decrypt(&s, &secret_aad(id, &cfg.bind_dn))
                    .ok()
            })
            .and_then(|p| String::from_utf8(p).ok())
            .map(Secret::from);
        match DirectorySource::new(cfg, secret) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(directory = %id, error = %e, "directory not usable");
                None
            }
        }
    }

    pub async fn directory_source(
        &self,
        id: &str,
    ) -> Result<Option<Arc<DirectorySource>>, DirectoryError> {
        Ok(self
            .directory_sources()
            .await?
            .iter()
            .find(|s| s.cfg.id == id)
            .cloned())
    }

    /// The account linked to a directory entry (one query: every login
    /// asks). The link's foreign key keeps its account from going away.
    pub async fn directory_account(
        &self,
        source: &str,
        entry_id: &str,
    ) -> Result<Option<User>, DirectoryError> {
        Ok(sqlx::query_as(
            "SELECT u.id, u.tenant, u.username, u.password_hash, u.name, u.email, u.disabled, u.population \
             FROM directory_links l JOIN users u ON u.id = l.user_id \
             WHERE l.source = $1 AND l.entry_id = $2",
        )
        .bind(source)
        .bind(entry_id)
        .fetch_optional(&self.0.pool)
        .await?)
    }

    /// The account of a directory entry's first login: made and linked in
    /// one transaction, as `<name>` of the first free of `candidates`.
    /// A concurrent first login of the same entry gets the account the
    /// other made (`false`: not made here); `None` when no name is free.
    pub async fn provision_for_entry(
        &self,
        source: &str,
        entry_id: &str,
        tenant: &str,
        candidates: &[String],
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<Option<(User, bool)>, DirectoryError> {
        let now = self.0.clock.now();
        let made = self
            .provision_linked(tenant, candidates, name, email, |conn, user_id| {
                let (source, entry_id) = (source.to_owned(), entry_id.to_owned());
                Box::pin(async move {
                    let r = sqlx::query(
                        "INSERT INTO directory_links (source, entry_id, user_id, created_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(source)
                    .bind(entry_id)
                    .bind(user_id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await;
                    crate::inserted(r)
                })
            })
            .await?;
        match made {
            Some(Ok(u)) => Ok(Some((u, true))),
            // The other login's account.
            Some(Err(())) => Ok(self
                .directory_account(source, entry_id)
                .await?
                .map(|u| (u, false))),
            None => Ok(None),
        }
    }

    /// Links a directory entry to an account; false when it is linked
    /// already (another first login won the race).
    pub async fn link_directory_entry(
        &self,
        source: &str,
        entry_id: &str,
        user_id: &str,
    ) -> Result<bool, DirectoryError> {
        let r = sqlx::query(
            "INSERT INTO directory_links (source, entry_id, user_id, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(source)
        .bind(entry_id)
        .bind(user_id)
        .bind(self.0.clock.now())
        .execute(&self.0.pool)
        .await;
        crate::inserted(r)
    }

    /// The directory an account comes from, if any.
    pub async fn directory_of(&self, user_id: &str) -> Result<Option<String>, DirectoryError> {
        Ok(sqlx::query_scalar(
            "SELECT source FROM directory_links WHERE user_id = $1 ORDER BY created_at LIMIT 1",
        )
        .bind(user_id)
        .fetch_optional(&self.0.pool)
        .await?)
    }

    /// Every account linked to a directory: (entry id, account id,
    /// deactivated by a sync).
    pub async fn directory_links(
        &self,
        source: &str,
    ) -> Result<Vec<(String, String, bool)>, DirectoryError> {
        let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT entry_id, user_id, deactivated_at FROM directory_links \
             WHERE source = $1 ORDER BY entry_id",
        )
        .bind(source)
        .fetch_all(&self.0.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(e, u, d)| (e, u, d.is_some()))
            .collect())
    }

    /// Marks a link as deactivated by a sync (`true`) or active again;
    /// false when it was so already (another node).
    pub async fn set_directory_link_deactivated(
        &self,
        source: &str,
        entry_id: &str,
        deactivated: bool,
    ) -> Result<bool, DirectoryError> {
        let q = if deactivated {
            sqlx::query(
                "UPDATE directory_links SET deactivated_at = $3 \
                 WHERE source = $1 AND entry_id = $2 AND deactivated_at IS NULL",
            )
            .bind(source)
            .bind(entry_id)
            .bind(self.0.clock.now())
        } else {
            sqlx::query(
                "UPDATE directory_links SET deactivated_at = NULL \
                 WHERE source = $1 AND entry_id = $2 AND deactivated_at IS NOT NULL",
            )
            .bind(source)
            .bind(entry_id)
        };
        let n = q.execute(&self.0.pool).await?.rows_affected();
        Ok(n == 1)
    }

    /// Claims the next provisioning sync of a source for this node: true
    /// when its interval has passed and no other node claimed it first.
    pub async fn claim_directory_sync(
        &self,
        source: &str,
        interval: i64,
    ) -> Result<bool, DirectoryError> {
        let now = self.0.clock.now();
        let n = sqlx::query(
            "UPDATE directory_sources SET synced_at = $2 \
             WHERE id = $1 AND (synced_at IS NULL OR synced_at <= $3)",
        )
        .bind(source)
        .bind(now)
        .bind(now - interval)
        .execute(&self.0.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
