//! SAML service providers: Fachverfahren that speak only SAML 2.0 and log
//! in through interkom as their identity provider. Each belongs to a
//! tenant and maps to a policy resource (whose protection need sets the
//! level), like an OIDC client; its logins run through the one login flow
//! as its login client ([`ServiceProvider::login_client`], id `saml:<id>`).

use serde::{Deserialize, Serialize};
use url::Url;

use crate::clients::{Alg, AuthMethod, Client, GrantType};
use crate::{Directory, DirectoryError};

/// The prefix of the login clients of service providers.
pub const LOGIN_CLIENT_PREFIX: &str = "saml:";

/// What the Response's subject is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NameIdFormat {
    /// Pairwise per SP, stable (a keyed hash of the account and the SP).
    #[default]
    Persistent,
    /// New at every login.
    Transient,
    /// The account's mail address.
    Email,
    /// The username.
    Unspecified,
}

/// An attribute an SP may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum SamlAttribute {
    Username,
    Name,
    Mail,
    Tenant,
    TenantPath,
    Level,
    Roles,
}

impl SamlAttribute {
    pub const ALL: [SamlAttribute; 7] = [
        SamlAttribute::Username,
        SamlAttribute::Name,
        SamlAttribute::Mail,
        SamlAttribute::Tenant,
        SamlAttribute::TenantPath,
        SamlAttribute::Level,
        SamlAttribute::Roles,
    ];

    /// Its `Name` (a URI) and `FriendlyName`.
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            SamlAttribute::Username => ("urn:oid:0.9.2342.19200300.100.1.1", "uid"),
            SamlAttribute::Name => ("urn:oid:2.16.840.1.113730.3.1.241", "displayName"),
            SamlAttribute::Mail => ("urn:oid:0.9.2342.19200300.100.1.3", "mail"),
            SamlAttribute::Tenant => ("urn:interkom:tenant", "tenant"),
            SamlAttribute::TenantPath => ("urn:interkom:tenant_path", "tenantPath"),
            SamlAttribute::Level => ("urn:interkom:acr", "acr"),
            SamlAttribute::Roles => ("urn:interkom:roles", "roles"),
        }
    }
}

/// How assertions to an SP are encrypted (none: not at all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `aes256-gcm` (default), `aes128-gcm`, `aes256-cbc`, `aes128-cbc`.
    #[serde(default = "default_content")]
    pub content: String,
    /// `rsa-oaep-mgf1p` (default) or `rsa-oaep` (xmlenc11, SHA-256).
    #[serde(default = "default_key_transport")]
    pub key_transport: String,
}

fn default_content() -> String {
    "aes256-gcm".into()
}
fn default_key_transport() -> String {
    "rsa-oaep-mgf1p".into()
}
fn yes() -> bool {
    true
}
fn all_attributes() -> Vec<SamlAttribute> {
    SamlAttribute::ALL.to_vec()
}

/// What an administrator registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceProviderConfig {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub entity_id: String,
    /// Assertion consumer service URLs (HTTP-POST), the default first. A
    /// request naming another is refused.
    pub acs_urls: Vec<String>,
    /// Where interkom sends a LogoutRequest (HTTP-Redirect), if anywhere.
    #[serde(default)]
    pub slo_url: Option<String>,
    /// The SP's signing certificates (base64 DER or PEM).
    #[serde(default)]
    pub signing_certs: Vec<String>,
    /// Its encryption certificate; with `encryption`, assertions are
    /// encrypted to it.
    #[serde(default)]
    pub encryption_cert: Option<String>,
    #[serde(default)]
    pub encryption: Option<Encryption>,
    #[serde(default)]
    pub name_id_format: NameIdFormat,
    #[serde(default = "all_attributes")]
    pub attributes: Vec<SamlAttribute>,
    /// The policy resource logins are decided on (none: the tenant's
    /// subtree only, as for an OIDC client bound to no resource).
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default = "yes")]
    pub sign_response: bool,
    #[serde(default = "yes")]
    pub sign_assertion: bool,
    /// AuthnRequests must be signed.
    #[serde(default)]
    pub require_signed_requests: bool,
    /// Logins that start at interkom, without a request of the SP.
    #[serde(default)]
    pub idp_initiated: bool,
}

fn slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ServiceProviderConfig {
    pub fn validate(&self, tenants: &interkom_policy::TenantTree) -> Result<(), String> {
        if !slug(&self.id) {
            return Err("id: letters, digits and - _ ., at most 64 characters".into());
        }
        if tenants.get(&self.tenant).is_none() {
            return Err(format!("unknown tenant `{}`", self.tenant));
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return Err("name: 1 to 200 characters".into());
        }
        if self.entity_id.is_empty() || self.entity_id.len() > 1024 {
            return Err("entity_id: 1 to 1024 characters".into());
        }
        if self.acs_urls.is_empty() || self.acs_urls.len() > 16 {
            return Err("acs_urls: 1 to 16".into());
        }
        for u in self.acs_urls.iter().chain(self.slo_url.iter()) {
            crate::clients::check_redirect_uri(u)?;
            if Url::parse(u).is_ok_and(|u| !matches!(u.scheme(), "https" | "http")) {
                return Err(format!("`{u}`: https (http on loopback)"));
            }
        }
        for c in self.signing_certs.iter().chain(self.encryption_cert.iter()) {
            interkom_saml::dsig::Certificate::parse(c)
                .map_err(|e| format!("a certificate does not read: {e}"))?;
        }
        if let Some(e) = &self.encryption {
            if self.encryption_cert.is_none() {
                return Err("encryption needs encryption_cert".into());
            }
            if interkom_saml::enc::Method::parse(&e.content, &e.key_transport).is_none() {
                return Err("encryption: content aes256-gcm|aes128-gcm|aes256-cbc|aes128-cbc, key_transport rsa-oaep-mgf1p|rsa-oaep".into());
            }
        }
        if self.require_signed_requests && self.signing_certs.is_empty() {
            return Err("require_signed_requests needs signing_certs".into());
        }
        Ok(())
    }

    /// A registration from the SP's metadata (ACS over HTTP-POST, the
    /// Redirect SLO endpoint, certificates, a NameID format it names).
    pub fn from_metadata(
        id: &str,
        tenant: &str,
        name: &str,
        xml: &str,
    ) -> Result<ServiceProviderConfig, String> {
        use interkom_saml::authn::{BINDING_POST, BINDING_REDIRECT};
        let md = interkom_saml::metadata::SpMetadata::read(xml).map_err(|e| e.to_string())?;
        let mut acs: Vec<_> = md
            .acs
            .iter()
            .filter(|e| e.binding == BINDING_POST)
            .collect();
        acs.sort_by_key(|e| (!e.is_default, e.index.unwrap_or(u32::MAX)));
        let name_id_format = if md
            .name_id_formats
            .iter()
            .any(|f| f.ends_with(":persistent"))
            || md.name_id_formats.is_empty()
        {
            NameIdFormat::Persistent
        } else if md
            .name_id_formats
            .iter()
            .any(|f| f.ends_with(":emailAddress"))
        {
            NameIdFormat::Email
        } else if md.name_id_formats.iter().any(|f| f.ends_with(":transient")) {
            NameIdFormat::Transient
        } else {
            NameIdFormat::Unspecified
        };
        Ok(ServiceProviderConfig {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            entity_id: md.entity_id,
            acs_urls: acs.iter().map(|e| e.location.clone()).collect(),
            slo_url: md
                .slo
                .iter()
                .find(|e| e.binding == BINDING_REDIRECT)
                .map(|e| e.location.clone()),
            signing_certs: md.signing.iter().map(|c| c.base64()).collect(),
            encryption_cert: md.encryption.first().map(|c| c.base64()),
            encryption: None,
            name_id_format,
            attributes: all_attributes(),
            resource: None,
            sign_response: true,
            sign_assertion: true,
            require_signed_requests: md.authn_requests_signed,
            idp_initiated: false,
        })
    }
}

/// A registered service provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceProvider {
    pub cfg: ServiceProviderConfig,
    pub updated_at: i64,
}

impl ServiceProvider {
    pub fn login_client_id(&self) -> String {
        format!("{LOGIN_CLIENT_PREFIX}{}", self.cfg.id)
    }

    /// The client its logins run as: public, PKCE, `return_uri` (the
    /// gateway's, where the flow's code is turned into a Response), no
    /// consent page (what it receives is what its tenant registered).
    pub fn login_client(&self, return_uri: String) -> Client {
        Client {
            id: self.login_client_id().into(),
            tenant: self.cfg.tenant.clone().into(),
            name: self.cfg.name.clone(),
            redirect_uris: vec![return_uri],
            post_logout_redirect_uris: Vec::new(),
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: vec!["openid".to_owned()],
            auth_method: AuthMethod::None,
            secret_hash: None,
            jwks: None,
            id_token_alg: Alg::ES256,
            first_party: true,
            resource_server: false,
            backchannel_logout_uri: None,
        }
    }

    pub fn signing_certs(&self) -> Vec<interkom_saml::dsig::Certificate> {
        self.cfg
            .signing_certs
            .iter()
            .filter_map(|c| interkom_saml::dsig::Certificate::parse(c).ok())
            .collect()
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    config: String,
    updated_at: i64,
}

fn row(r: Row) -> Result<ServiceProvider, DirectoryError> {
    Ok(ServiceProvider {
        cfg: serde_json::from_str(&r.config)
            .map_err(|_| DirectoryError::Corrupt("service provider"))?,
        updated_at: r.updated_at,
    })
}

/// The service providers as last read, with the time of reading: every
/// SAML login reads its SP several times.
#[derive(Default)]
pub(crate) struct ServiceProviderCache {
    current: std::sync::RwLock<Option<(i64, std::sync::Arc<Vec<ServiceProvider>>)>>,
}

impl Directory {
    /// Every service provider, by id, read now (what administrators see).
    pub async fn service_providers(&self) -> Result<Vec<ServiceProvider>, DirectoryError> {
        let rows: Vec<Row> =
            sqlx::query_as("SELECT config, updated_at FROM service_providers ORDER BY id")
                .fetch_all(&self.0.pool)
                .await?;
        rows.into_iter().map(row).collect()
    }

    /// Every service provider as read within the cache's lifetime (a change
    /// on another node is seen within it; on this node at once).
    async fn service_providers_cached(
        &self,
    ) -> Result<std::sync::Arc<Vec<ServiceProvider>>, DirectoryError> {
        let now = self.0.clock.now();
        if let Ok(cur) = self.0.service_providers.current.read() {
            if let Some((at, list)) = cur.as_ref() {
                if now - at < self.0.cfg.cache_ttl.max(1) {
                    return Ok(list.clone());
                }
            }
        }
        let list = std::sync::Arc::new(self.service_providers().await?);
        if let Ok(mut cur) = self.0.service_providers.current.write() {
            *cur = Some((now, list.clone()));
        }
        Ok(list)
    }

    fn forget_service_providers(&self) {
        if let Ok(mut cur) = self.0.service_providers.current.write() {
            *cur = None;
        }
    }

    pub async fn service_provider(
        &self,
        id: &str,
    ) -> Result<Option<ServiceProvider>, DirectoryError> {
        Ok(self
            .service_providers_cached()
            .await?
            .iter()
            .find(|s| s.cfg.id == id)
            .cloned())
    }

    /// The SP with this entity id (an AuthnRequest's Issuer).
    pub async fn service_provider_by_entity(
        &self,
        entity_id: &str,
    ) -> Result<Option<ServiceProvider>, DirectoryError> {
        Ok(self
            .service_providers_cached()
            .await?
            .iter()
            .find(|s| s.cfg.entity_id == entity_id)
            .cloned())
    }

    /// Creates or replaces an SP; true when it is new.
    pub async fn put_service_provider(
        &self,
        cfg: ServiceProviderConfig,
    ) -> Result<bool, DirectoryError> {
        cfg.validate(&self.0.tenants)
            .map_err(DirectoryError::Invalid)?;
        let now = self.0.clock.now();
        let config = serde_json::to_string(&cfg)?;
        let updated = sqlx::query(
            "UPDATE service_providers SET tenant = $1, entity_id = $2, config = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(&cfg.tenant)
        .bind(&cfg.entity_id)
        .bind(&config)
        .bind(now)
        .bind(&cfg.id)
        .execute(&self.0.pool)
        .await;
        let taken =
            || DirectoryError::Taken(format!("entity id `{}` is another SP's", cfg.entity_id));
        self.forget_service_providers();
        match updated {
            Ok(r) if r.rows_affected() == 1 => return Ok(false),
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(taken()),
            Err(e) => return Err(e.into()),
        }
        let r = sqlx::query(
            "INSERT INTO service_providers (id, tenant, entity_id, config, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&cfg.id)
        .bind(&cfg.tenant)
        .bind(&cfg.entity_id)
        .bind(&config)
        .bind(now)
        .execute(&self.0.pool)
        .await;
        self.forget_service_providers();
        if crate::inserted(r)? {
            Ok(true)
        } else {
            Err(taken())
        }
    }

    pub async fn delete_service_provider(&self, id: &str) -> Result<bool, DirectoryError> {
        let n = sqlx::query("DELETE FROM service_providers WHERE id = $1")
            .bind(id)
            .execute(&self.0.pool)
            .await?
            .rows_affected();
        self.forget_service_providers();
        Ok(n == 1)
    }
}
