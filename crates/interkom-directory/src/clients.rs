//! Registered Fachverfahren (OAuth clients): what a registration may say,
//! its storage, and a short-lived cache per node.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use interkom_types::{ClientId, Secret, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

pub use interkom_types::Alg;

use crate::crypto::{ct_eq, random_token};
use crate::{Directory, DirectoryError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
    pub fn parse(s: &str) -> Option<GrantType> {
        [
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ]
        .into_iter()
        .find(|g| g.as_str() == s)
    }
}

/// `token_endpoint_auth_method` (OIDC Dynamic Client Registration names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A secret, sent by HTTP Basic or in the form body.
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// A public client (PKCE required).
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }
    pub fn parse(s: &str) -> Option<AuthMethod> {
        [
            AuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost,
            AuthMethod::PrivateKeyJwt,
            AuthMethod::None,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

/// A registered client.
#[derive(Debug, Clone, Serialize)]
pub struct Client {
    pub id: ClientId,
    pub tenant: TenantId,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub auth_method: AuthMethod,
    #[serde(skip)]
    pub(crate) secret_hash: Option<String>,
    pub jwks: Option<Value>,
    pub id_token_alg: Alg,
    pub first_party: bool,
    /// May introspect tokens of its tenant's subtree issued to others.
    pub resource_server: bool,
    /// Where a logout token is sent when a session it had tokens in ends.
    pub backchannel_logout_uri: Option<String>,
}

impl Client {
    /// Whether `secret` is this client's (a client of a secret method only).
    pub fn secret_matches(&self, dir: &Directory, secret: &str) -> bool {
        self.auth_method.uses_secret()
            && self
                .secret_hash
                .as_deref()
                .is_some_and(|h| ct_eq(&dir.0.master.keyed_hash(secret), h))
    }
    pub fn is_public(&self) -> bool {
        self.auth_method == AuthMethod::None
    }
    pub fn allows(&self, g: GrantType) -> bool {
        self.grant_types.contains(&g)
    }
}

/// What an administrator registers.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub id: ClientId,
    pub tenant: TenantId,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub auth_method: AuthMethod,
    /// For secret methods: the secret to store (hashed); generated when None.
    pub secret: Option<Secret>,
    pub jwks: Option<Value>,
    pub id_token_alg: Alg,
    /// OpenID Connect Back-Channel Logout 1.0 (https, or http on loopback).
    pub backchannel_logout_uri: Option<String>,
    /// Logs people in without a consent page: the county's own
    /// Fachverfahren only (the demo's, the console).
    pub first_party: bool,
    /// May introspect the tokens of people of its tenant's subtree, not
    /// only its own (RFC 7662 §4).
    pub resource_server: bool,
}

/// Scopes interkom knows.
pub const SUPPORTED_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "roles",
    "offline_access",
    // Asking the AuthZEN PDP (client credentials).
    "authzen",
];

fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Redirect URIs must be absolute, without fragment; http only on loopback
/// (RFC 9700 §2.1, RFC 8252 §7.3).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let u = Url::parse(uri).map_err(|_| format!("`{uri}` is not an absolute URL"))?;
    if u.fragment().is_some() {
        return Err(format!("`{uri}` must not contain a fragment"));
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" => match u.host_str() {
            Some("localhost" | "127.0.0.1" | "[::1]") => Ok(()),
            _ => Err(format!(
                "`{uri}`: http is allowed only for loopback addresses"
            )),
        },
        s if s.contains('.') => Ok(()),
        _ => Err(format!(
            "`{uri}`: scheme must be https, loopback http or a private-use scheme"
        )),
    }
}

/// Where interkom itself sends requests (back-channel logout): https only,
/// never to an address that names this machine or the link (cloud
/// metadata services live there); loopback only when allowed (tests and
/// local setups). Private networks are allowed: Fachverfahren run there.
pub fn check_outbound_uri(uri: &str, allow_loopback: bool) -> Result<(), String> {
    let u = Url::parse(uri).map_err(|_| format!("`{uri}` is not an absolute URL"))?;
    if u.fragment().is_some() || !u.username().is_empty() || u.password().is_some() {
        return Err(format!("`{uri}` must have no fragment and no user name"));
    }
    // Names are checked again where they are resolved, at every connect
    // (the gateway's resolver yields public addresses only).
    let literal = |ip: std::net::IpAddr| {
        if crate::upstreams::public_ip(ip, true) {
            Ok(ip.to_canonical().is_loopback())
        } else {
            Err(format!("`{uri}`: not an address to send to (internal)"))
        }
    };
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => literal(ip.into())?,
        Some(url::Host::Ipv6(ip)) => literal(ip.into())?,
        None => return Err(format!("`{uri}` has no host")),
    };
    match (u.scheme(), loopback) {
        (_, true) if !allow_loopback => Err(format!(
            "`{uri}` is this machine (allowed only with backchannel.allow_loopback, or brokering.allow_loopback for upstreams and SAML metadata)"
        )),
        ("https", _) | ("http", true) => Ok(()),
        _ => Err(format!("`{uri}`: must be https")),
    }
}

impl Directory {
    /// Checks a registration: id, tenant, grant types, redirect URIs,
    /// scopes and authentication method fit together.
    fn check_client_spec(&self, spec: &ClientSpec) -> Result<(), DirectoryError> {
        let bad = |m: String| Err(DirectoryError::Invalid(m));
        if !valid_client_id(&spec.id) {
            return bad("client id: letters, digits and . - _, at most 128 characters".into());
        }
        if self.0.tenants.get(&spec.tenant).is_none() {
            return bad(format!("unknown tenant `{}`", spec.tenant));
        }
        if spec.grant_types.is_empty() {
            return bad("at least one grant type is needed".into());
        }
        if spec.grant_types.contains(&GrantType::AuthorizationCode) && spec.redirect_uris.is_empty()
        {
            return bad("the authorization_code grant needs a redirect URI".into());
        }
        for uri in spec
            .redirect_uris
            .iter()
            .chain(&spec.post_logout_redirect_uris)
        {
            check_redirect_uri(uri).map_err(DirectoryError::Invalid)?;
        }
        if let Some(uri) = &spec.backchannel_logout_uri {
            check_outbound_uri(uri, self.0.cfg.backchannel_allow_loopback)
                .map_err(|e| DirectoryError::Invalid(format!("backchannel_logout_uri: {e}")))?;
        }
        if let Some(s) = spec
            .scopes
            .iter()
            .find(|s| !SUPPORTED_SCOPES.contains(&s.as_str()))
        {
            return bad(format!("unknown scope `{s}`"));
        }
        if spec.auth_method == AuthMethod::None
            && spec.grant_types.contains(&GrantType::ClientCredentials)
        {
            return bad("a public client cannot use client_credentials".into());
        }
        if spec.auth_method == AuthMethod::PrivateKeyJwt {
            let ok = spec
                .jwks
                .as_ref()
                .and_then(|j| j.get("keys"))
                .and_then(Value::as_array)
                .is_some_and(|k| !k.is_empty());
            if !ok {
                return bad("private_key_jwt needs a JWKS with at least one key".into());
            }
        }
        Ok(())
    }

    /// Registers a client. Returns the generated secret, if one was made.
    pub async fn register_client(
        &self,
        spec: ClientSpec,
    ) -> Result<Option<String>, DirectoryError> {
        let bad = |m: String| Err(DirectoryError::Invalid(m));
        self.check_client_spec(&spec)?;
        // A client's own tokens carry its id as `sub`: it must never read as
        // a person's account id or username.
        if uuid::Uuid::parse_str(&spec.id).is_ok() || self.find_user(&spec.id).await?.is_some() {
            return bad(format!("client id `{}` would name a person", spec.id));
        }
        let mut generated = None;
        let secret_hash = if spec.auth_method.uses_secret() {
            let secret = match spec.secret {
                Some(s) if s.expose().len() >= 32 => s.expose().to_owned(),
                Some(_) => return bad("a client secret must have at least 32 characters".into()),
                None => {
                    // 32 random bytes: 256 bits of entropy.
                    let s = random_token(32);
                    generated = Some(s.clone());
                    s
                }
            };
            Some(self.0.master.keyed_hash(&secret))
        } else {
            None
        };
        let res = sqlx::query(
            "INSERT INTO clients (id, tenant, name, redirect_uris, post_logout_redirect_uris, grant_types, \
             scopes, auth_method, secret_hash, jwks, id_token_alg, first_party, created_at, \
             backchannel_logout_uri, resource_server) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&spec.id)
        .bind(&spec.tenant)
        .bind(&spec.name)
        .bind(serde_json::to_string(&spec.redirect_uris)?)
        .bind(serde_json::to_string(&spec.post_logout_redirect_uris)?)
        .bind(serde_json::to_string(&spec.grant_types)?)
        .bind(serde_json::to_string(&spec.scopes)?)
        .bind(spec.auth_method.as_str())
        .bind(secret_hash)
        .bind(spec.jwks.as_ref().map(Value::to_string))
        .bind(spec.id_token_alg.as_str())
        .bind(i64::from(spec.first_party))
        .bind(self.0.clock.now())
        .bind(&spec.backchannel_logout_uri)
        .bind(i64::from(spec.resource_server))
        .execute(&self.0.pool)
        .await;
        if !crate::inserted(res)? {
            return Err(DirectoryError::Taken(format!(
                "client `{}` exists already",
                spec.id
            )));
        }
        Ok(generated)
    }

    /// Every registered client, by id.
    pub async fn list_clients(&self) -> Result<Vec<Client>, DirectoryError> {
        let rows: Vec<ClientRow> = sqlx::query_as(
            "SELECT id, tenant, name, redirect_uris, post_logout_redirect_uris, grant_types, scopes, \
             auth_method, secret_hash, jwks, id_token_alg, first_party, backchannel_logout_uri, resource_server FROM clients ORDER BY id",
        )
        .fetch_all(&self.0.pool)
        .await?;
        rows.into_iter().map(ClientRow::into_client).collect()
    }

    /// Changes a registration (not its id, tenant, authentication method,
    /// secret or first-party standing). Other nodes see it within their client cache's lifetime.
    pub async fn update_client(&self, spec: ClientSpec) -> Result<(), DirectoryError> {
        self.check_client_spec(&spec)?;
        sqlx::query(
            "UPDATE clients SET name = $1, redirect_uris = $2, post_logout_redirect_uris = $3, \
             grant_types = $4, scopes = $5, jwks = $6, id_token_alg = $7, backchannel_logout_uri = $8, \
             resource_server = $9 WHERE id = $10",
        )
        .bind(&spec.name)
        .bind(serde_json::to_string(&spec.redirect_uris)?)
        .bind(serde_json::to_string(&spec.post_logout_redirect_uris)?)
        .bind(serde_json::to_string(&spec.grant_types)?)
        .bind(serde_json::to_string(&spec.scopes)?)
        .bind(spec.jwks.as_ref().map(Value::to_string))
        .bind(spec.id_token_alg.as_str())
        .bind(&spec.backchannel_logout_uri)
        .bind(i64::from(spec.resource_server))
        .bind(&spec.id)
        .execute(&self.0.pool)
        .await?;
        self.0.clients.forget(&spec.id);
        Ok(())
    }

    /// Makes a client first-party (no consent page) or takes that away.
    pub async fn set_first_party(&self, id: &str, first_party: bool) -> Result<(), DirectoryError> {
        sqlx::query("UPDATE clients SET first_party = $1 WHERE id = $2")
            .bind(i64::from(first_party))
            .bind(id)
            .execute(&self.0.pool)
            .await?;
        self.0.clients.forget(id);
        Ok(())
    }

    /// A new secret for a confidential client (returned once; the old one
    /// stops working at once on this node, on others within the cache's
    /// lifetime).
    pub async fn rotate_client_secret(&self, id: &str) -> Result<String, DirectoryError> {
        let secret = random_token(32);
        sqlx::query("UPDATE clients SET secret_hash = $1 WHERE id = $2")
            .bind(self.0.master.keyed_hash(&secret))
            .bind(id)
            .execute(&self.0.pool)
            .await?;
        self.0.clients.forget(id);
        Ok(secret)
    }

    /// Looks a client up (through the node's short-lived cache).
    pub async fn client(&self, id: &str) -> Result<Option<Arc<Client>>, DirectoryError> {
        let now = self.0.clock.now();
        if let Some(c) = self.0.clients.get(id, now) {
            return Ok(Some(c));
        }
        let row: Option<ClientRow> = sqlx::query_as(
            "SELECT id, tenant, name, redirect_uris, post_logout_redirect_uris, grant_types, scopes, \
             auth_method, secret_hash, jwks, id_token_alg, first_party, backchannel_logout_uri, resource_server FROM clients WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.0.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let client = Arc::new(row.into_client()?);
        self.0.clients.put(client.clone(), now);
        Ok(Some(client))
    }
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: String,
    tenant: String,
    name: String,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    grant_types: String,
    scopes: String,
    auth_method: String,
    pub(crate) secret_hash: Option<String>,
    jwks: Option<String>,
    id_token_alg: String,
    first_party: i64,
    backchannel_logout_uri: Option<String>,
    resource_server: i64,
}

impl ClientRow {
    fn into_client(self) -> Result<Client, DirectoryError> {
        Ok(Client {
            redirect_uris: serde_json::from_str(&self.redirect_uris)?,
            post_logout_redirect_uris: serde_json::from_str(&self.post_logout_redirect_uris)?,
            grant_types: serde_json::from_str(&self.grant_types)?,
            scopes: serde_json::from_str(&self.scopes)?,
            auth_method: AuthMethod::parse(&self.auth_method)
                .ok_or(DirectoryError::Corrupt("client auth method"))?,
            jwks: self.jwks.as_deref().map(serde_json::from_str).transpose()?,
            id_token_alg: Alg::parse(&self.id_token_alg)
                .ok_or(DirectoryError::Corrupt("client ID token algorithm"))?,
            first_party: self.first_party != 0,
            resource_server: self.resource_server != 0,
            backchannel_logout_uri: self.backchannel_logout_uri,
            secret_hash: self.secret_hash,
            id: self.id.into(),
            tenant: self.tenant.into(),
            name: self.name,
        })
    }
}

/// Clients cached per node for a few seconds: the client_credentials path
/// then needs no database read.
pub(crate) struct ClientCache {
    ttl: i64,
    map: RwLock<HashMap<ClientId, (Arc<Client>, i64)>>,
}

impl ClientCache {
    pub(crate) fn new(ttl: i64) -> ClientCache {
        ClientCache {
            ttl,
            map: RwLock::new(HashMap::new()),
        }
    }
    pub(crate) fn get(&self, id: &str, now: i64) -> Option<Arc<Client>> {
        let map = self.map.read().ok()?;
        map.get(id)
            .filter(|(_, at)| now - at < self.ttl)
            .map(|(c, _)| c.clone())
    }
    pub(crate) fn forget(&self, id: &str) {
        if let Ok(mut map) = self.map.write() {
            map.remove(id);
        }
    }
    pub(crate) fn put(&self, c: Arc<Client>, now: i64) {
        if let Ok(mut map) = self.map.write() {
            if map.len() > 100_000 {
                map.clear();
            }
            map.insert(c.id.clone(), (c, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_rules() {
        assert!(check_redirect_uri("https://fv.example/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:9000/cb").is_ok());
        assert!(check_redirect_uri("http://fv.example/cb").is_err());
        assert!(check_redirect_uri("https://fv.example/cb#x").is_err());
        assert!(check_redirect_uri("/relative").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
        assert!(check_redirect_uri("de.landkreis.app:/cb").is_ok());
    }

    #[test]
    fn a_spec_never_prints_its_secret() {
        let spec = ClientSpec {
            id: "fv".into(),
            tenant: "lk".into(),
            name: "FV".into(),
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec![],
            auth_method: AuthMethod::ClientSecretBasic,
            secret: Some(Secret::new("sehr-geheimes-client-secret-2026-xyz")),
            jwks: None,
            id_token_alg: Alg::RS256,
            backchannel_logout_uri: None,
            first_party: false,
            resource_server: false,
        };
        assert!(!format!("{spec:?}").contains("sehr-geheimes"));
    }
}
