//! SAML identity providers interkom is a service provider of: the federal
//! accounts for citizens (BundID) and businesses (Mein Unternehmenskonto),
//! and eIDAS. Every name the IdP uses — entity id, attribute names, level
//! names — is configuration, not code.
//!
//! The IdP's metadata is kept with the registration: given as XML, or
//! fetched from a URL (https and public addresses only, like an upstream
//! issuer) and refreshed by the gateway.

use std::collections::BTreeMap;
use std::sync::Arc;

use interkom_policy::Population;
use interkom_saml::metadata::PartnerIdp;
use interkom_types::Loa;
use serde::{Deserialize, Serialize};

use crate::{Directory, DirectoryError};

/// One of the IdP's level names and the interkom level it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelName {
    /// As the IdP writes it: `STORK-QAA-Level-4`,
    /// `http://eidas.europa.eu/LoA/high`.
    pub name: String,
    pub loa: Loa,
}

/// How AuthnRequests travel to the IdP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RequestBinding {
    /// HTTP-POST with an enveloped signature (BundID's preference).
    #[default]
    Post,
    /// HTTP-Redirect with the query signed.
    Redirect,
}

/// What an administrator registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlSourceConfig {
    /// A slug, e.g. `bundid`.
    pub id: String,
    /// The tenant that registered it (the people it vouches for are no
    /// members of it).
    pub tenant: String,
    /// Shown on the login page, e.g. "BundID".
    pub name: String,
    /// Shown under the name, e.g. "Online-Ausweis, ELSTER-Zertifikat".
    #[serde(default)]
    pub description: String,
    /// Whom it vouches for.
    pub population: Population,
    /// Where its metadata is fetched (https; refreshed). Without it, the
    /// metadata is given with the registration.
    #[serde(default)]
    pub metadata_url: Option<String>,
    /// A file with the metadata (the configuration file's way to give it;
    /// read at start, not kept).
    #[serde(default, skip_serializing)]
    pub metadata_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub binding: RequestBinding,
    /// The IdP's level names, lowest first as they should be asked for.
    pub levels: Vec<LevelName>,
    /// An attribute that also states the level (BundID's
    /// EID-CITIZEN-QAA-LEVEL); the lower of it and the AuthnContextClassRef
    /// counts.
    #[serde(default)]
    pub level_attribute: Option<String>,
    /// The attribute with the stable pseudonym accounts are linked on
    /// (BundID: bPK2). The NameID never links.
    pub pseudonym_attribute: String,
    /// Claim (see `interkom_policy::leistungen::CLAIMS`) → attribute
    /// `Name`. Matched on `Name`, never on `FriendlyName`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The content of `<samlp:Extensions>` sent with every request, with
    /// `{requested_attributes}`, `{online_service_id}`, `{organisation}`
    /// and `{lang}` filled in (the AKDB extension of BundID).
    #[serde(default)]
    pub extensions: Option<String>,
    /// One requested attribute inside `{requested_attributes}`, with
    /// `{name}` and `{required}` (`true` for the pseudonym).
    #[serde(default)]
    pub requested_attribute: Option<String>,
    /// `ForceAuthn` on every request (BundID's samples set it).
    #[serde(default)]
    pub force_authn: bool,
    /// Seconds of clock difference tolerated on the IdP's times.
    #[serde(default = "default_skew")]
    pub clock_skew: i64,
}

fn default_skew() -> i64 {
    60
}

fn slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl SamlSourceConfig {
    pub fn validate(
        &self,
        tenants: &interkom_policy::TenantTree,
        allow_loopback: bool,
    ) -> Result<(), String> {
        if !slug(&self.id) {
            return Err("id: a-z, 0-9 and -, at most 64 characters".into());
        }
        if tenants.get(&self.tenant).is_none() {
            return Err(format!("unknown tenant `{}`", self.tenant));
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return Err("name: 1 to 200 characters".into());
        }
        if self.levels.is_empty() {
            return Err("levels: at least one level name".into());
        }
        if self.pseudonym_attribute.trim().is_empty() {
            return Err("pseudonym_attribute: the attribute accounts are linked on".into());
        }
        for claim in self.attributes.keys() {
            if !interkom_policy::leistungen::CLAIMS.contains(&claim.as_str()) {
                return Err(format!("attributes: unknown claim `{claim}`"));
            }
        }
        if !(0..=600).contains(&self.clock_skew) {
            return Err("clock_skew: 0 to 600 seconds".into());
        }
        if let Some(u) = &self.metadata_url {
            crate::upstreams::check_endpoint(u, allow_loopback)
                .map_err(|e| format!("metadata_url: {e}"))?;
        }
        for x in self
            .extensions
            .iter()
            .chain(self.requested_attribute.iter())
        {
            if x.len() > 16 * 1024 {
                return Err("extensions: at most 16 KiB".into());
            }
            interkom_saml::xml::check_untrusted(x).map_err(|e| format!("extensions: {e}"))?;
        }
        Ok(())
    }

    /// The highest level this source can vouch for.
    pub fn max_loa(&self) -> Option<Loa> {
        self.levels.iter().map(|l| l.loa).max()
    }

    /// The name to ask for a level with (comparison `minimum`): the first
    /// of the lowest level that reaches it.
    pub fn ask_name(&self, loa: Loa) -> Option<&str> {
        self.levels
            .iter()
            .filter(|l| l.loa >= loa)
            .min_by_key(|l| l.loa)
            .map(|l| l.name.as_str())
    }

    /// The interkom level of one of the IdP's level names.
    pub fn loa_of(&self, name: &str) -> Option<Loa> {
        self.levels.iter().find(|l| l.name == name).map(|l| l.loa)
    }
}

/// An IdP's metadata as a source needs it: signing keys and an SSO
/// endpoint.
fn read_metadata(metadata: &str) -> Result<PartnerIdp, DirectoryError> {
    let idp = PartnerIdp::read(metadata)
        .map_err(|e| DirectoryError::Invalid(format!("the IdP's metadata: {e}")))?;
    if idp.signing.is_empty() {
        return Err(DirectoryError::Invalid(
            "the IdP's metadata names no signing certificate".into(),
        ));
    }
    if idp.sso.is_empty() {
        return Err(DirectoryError::Invalid(
            "the IdP's metadata names no SingleSignOnService".into(),
        ));
    }
    Ok(idp)
}

/// A registered source with its IdP's metadata, read.
#[derive(Debug, Clone)]
pub struct SamlSource {
    pub cfg: SamlSourceConfig,
    pub idp: PartnerIdp,
    /// The metadata as kept (what `idp` was read from).
    pub metadata: String,
    pub fetched_at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    config: String,
    metadata: String,
    fetched_at: i64,
}

/// The sources, by name.
pub type SamlSourceList = Arc<Vec<Arc<SamlSource>>>;

/// The sources as last read: every login page lists them.
#[derive(Default)]
pub(crate) struct SamlSourceCache {
    current: std::sync::RwLock<Option<(i64, SamlSourceList)>>,
}

impl Directory {
    /// Every SAML source, by name, within the cache's lifetime.
    pub async fn saml_sources(&self) -> Result<SamlSourceList, DirectoryError> {
        let now = self.0.clock.now();
        if let Ok(cur) = self.0.saml_sources.current.read() {
            if let Some((at, list)) = cur.as_ref() {
                if now - at < self.0.cfg.cache_ttl.max(1) {
                    return Ok(list.clone());
                }
            }
        }
        let rows: Vec<Row> =
            sqlx::query_as("SELECT config, metadata, fetched_at FROM saml_sources")
                .fetch_all(&self.0.pool)
                .await?;
        let mut list = Vec::with_capacity(rows.len());
        for r in rows {
            let Ok(cfg) = serde_json::from_str::<SamlSourceConfig>(&r.config) else {
                tracing::error!("stored SAML source configuration unreadable");
                continue;
            };
            match PartnerIdp::read(&r.metadata) {
                Ok(idp) => list.push(Arc::new(SamlSource {
                    cfg,
                    idp,
                    metadata: r.metadata,
                    fetched_at: r.fetched_at,
                })),
                Err(e) => {
                    tracing::error!(source = %cfg.id, error = %e, "stored SAML metadata unreadable")
                }
            }
        }
        list.sort_by(|a, b| a.cfg.name.cmp(&b.cfg.name));
        let list = Arc::new(list);
        if let Ok(mut cur) = self.0.saml_sources.current.write() {
            *cur = Some((now, list.clone()));
        }
        Ok(list)
    }

    pub async fn saml_source(&self, id: &str) -> Result<Option<Arc<SamlSource>>, DirectoryError> {
        Ok(self
            .saml_sources()
            .await?
            .iter()
            .find(|s| s.cfg.id == id)
            .cloned())
    }

    fn forget_saml_sources(&self) {
        if let Ok(mut cur) = self.0.saml_sources.current.write() {
            *cur = None;
        }
    }

    /// Checks a registration as storing it would (before it is proposed):
    /// the configuration, the metadata, and its entity id no other
    /// source's.
    pub async fn check_saml_source(
        &self,
        cfg: &SamlSourceConfig,
        metadata: &str,
    ) -> Result<(), DirectoryError> {
        cfg.validate(&self.0.tenants, self.0.cfg.upstream_allow_loopback)
            .map_err(DirectoryError::Invalid)?;
        let idp = read_metadata(metadata)?;
        let other: Option<String> =
            sqlx::query_scalar("SELECT id FROM saml_sources WHERE entity_id = $1 AND id <> $2")
                .bind(&idp.entity_id)
                .bind(&cfg.id)
                .fetch_optional(&self.0.pool)
                .await?;
        match other {
            Some(_) => Err(DirectoryError::Taken(format!(
                "entity id `{}` is another source's",
                idp.entity_id
            ))),
            None => Ok(()),
        }
    }

    /// Registers or replaces a source with its IdP's metadata (read and
    /// checked here: an entity id is one source's).
    pub async fn put_saml_source(
        &self,
        cfg: SamlSourceConfig,
        metadata: &str,
    ) -> Result<(), DirectoryError> {
        cfg.validate(&self.0.tenants, self.0.cfg.upstream_allow_loopback)
            .map_err(DirectoryError::Invalid)?;
        let idp = read_metadata(metadata)?;
        let now = self.0.clock.now();
        let config = serde_json::to_string(&cfg)?;
        let mut tx = self.0.pool.begin().await?;
        sqlx::query("DELETE FROM saml_sources WHERE id = $1")
            .bind(&cfg.id)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query(
            "INSERT INTO saml_sources (id, tenant, entity_id, config, metadata, fetched_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&cfg.id)
        .bind(&cfg.tenant)
        .bind(&idp.entity_id)
        .bind(&config)
        .bind(metadata)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await;
        if !crate::inserted(r)? {
            return Err(DirectoryError::Taken(format!(
                "entity id `{}` is another source's",
                idp.entity_id
            )));
        }
        tx.commit().await?;
        self.forget_saml_sources();
        Ok(())
    }

    /// Keeps the refreshed metadata of a source (fetched from its URL), as
    /// long as it is still registered as `fetched_for` says: a change made
    /// meanwhile (another URL, approved by a second administrator) is not
    /// undone by a refresh of the old one.
    pub async fn refresh_saml_metadata(
        &self,
        id: &str,
        fetched_for: &SamlSourceConfig,
        metadata: &str,
    ) -> Result<(), DirectoryError> {
        let idp = PartnerIdp::read(metadata)
            .map_err(|e| DirectoryError::Invalid(format!("the IdP's metadata: {e}")))?;
        if idp.signing.is_empty() {
            return Err(DirectoryError::Invalid(
                "the IdP's metadata names no signing certificate".into(),
            ));
        }
        let now = self.0.clock.now();
        let config = serde_json::to_string(fetched_for)?;
        sqlx::query(
            "UPDATE saml_sources SET metadata = $1, entity_id = $2, fetched_at = $3 \
             WHERE id = $4 AND config = $5",
        )
        .bind(metadata)
        .bind(&idp.entity_id)
        .bind(now)
        .bind(id)
        .bind(config)
        .execute(&self.0.pool)
        .await?;
        self.forget_saml_sources();
        Ok(())
    }

    pub async fn delete_saml_source(&self, id: &str) -> Result<bool, DirectoryError> {
        let n = sqlx::query("DELETE FROM saml_sources WHERE id = $1")
            .bind(id)
            .execute(&self.0.pool)
            .await?
            .rows_affected();
        self.forget_saml_sources();
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundid() -> SamlSourceConfig {
        SamlSourceConfig {
            id: "bundid".into(),
            tenant: "kreis".into(),
            name: "BundID".into(),
            description: String::new(),
            population: Population::Citizen,
            metadata_url: None,
            metadata_file: None,
            binding: RequestBinding::Post,
            levels: vec![
                LevelName {
                    name: "STORK-QAA-Level-1".into(),
                    loa: Loa::Low,
                },
                LevelName {
                    name: "STORK-QAA-Level-3".into(),
                    loa: Loa::Substantial,
                },
                LevelName {
                    name: "STORK-QAA-Level-4".into(),
                    loa: Loa::High,
                },
            ],
            level_attribute: None,
            pseudonym_attribute: "urn:oid:1.3.6.1.4.1.25484.494450.3".into(),
            attributes: BTreeMap::new(),
            extensions: None,
            requested_attribute: None,
            force_authn: true,
            clock_skew: 60,
        }
    }

    #[test]
    fn levels_are_asked_and_read_in_the_sources_names() {
        let b = bundid();
        assert_eq!(b.ask_name(Loa::Low), Some("STORK-QAA-Level-1"));
        assert_eq!(b.ask_name(Loa::Substantial), Some("STORK-QAA-Level-3"));
        assert_eq!(b.ask_name(Loa::High), Some("STORK-QAA-Level-4"));
        assert_eq!(b.loa_of("STORK-QAA-Level-3"), Some(Loa::Substantial));
        assert_eq!(b.loa_of("STORK-QAA-Level-2"), None);
        assert_eq!(b.max_loa(), Some(Loa::High));
        let low_only = SamlSourceConfig {
            levels: vec![b.levels[0].clone()],
            ..bundid()
        };
        assert_eq!(low_only.ask_name(Loa::High), None);
    }
}
