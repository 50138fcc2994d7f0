//! Protected applications: web applications with no login protocol of
//! their own, behind a reverse proxy (nginx, Traefik, Caddy) that asks
//! interkom before it passes a request on. Each is registered by a tenant
//! with the external origins and path prefixes it answers on, the policy
//! resource it maps to (whose protection need sets the level) and what it
//! receives about the person.
//!
//! A login to an application runs through the one login flow as the
//! application's login client ([`Application::login_client`], id
//! `app:<id>`, never a registered client's id, which has no `:`), whose
//! redirect URI is the callback on each of its origins.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use interkom_policy::TenantTree;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::clients::{Alg, AuthMethod, Client, GrantType};
use crate::{Directory, DirectoryError};

/// The path prefix under which the proxy passes interkom's own pages of an
/// application's host (start of a login, callback, denial, logout) to
/// interkom without asking it first.
pub const PROXY_PREFIX: &str = "/.interkom";

/// The prefix of the login clients of applications.
pub const LOGIN_CLIENT_PREFIX: &str = "app:";

/// An identity header an application may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum IdentityHeader {
    /// `X-Interkom-User`: the username.
    User,
    /// `X-Interkom-Subject`: the account's id.
    Subject,
    /// `X-Interkom-Tenant`: the account's tenant.
    Tenant,
    /// `X-Interkom-Roles`: the roles the policy gives for the resource.
    Roles,
    /// `X-Interkom-Acr`: the level of assurance of the login.
    Acr,
}

impl IdentityHeader {
    pub const ALL: [IdentityHeader; 5] = [
        IdentityHeader::User,
        IdentityHeader::Subject,
        IdentityHeader::Tenant,
        IdentityHeader::Roles,
        IdentityHeader::Acr,
    ];

    /// The header's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            IdentityHeader::User => "x-interkom-user",
            IdentityHeader::Subject => "x-interkom-subject",
            IdentityHeader::Tenant => "x-interkom-tenant",
            IdentityHeader::Roles => "x-interkom-roles",
            IdentityHeader::Acr => "x-interkom-acr",
        }
    }
}

/// The header carrying the short-lived signed JWT.
pub const JWT_HEADER: &str = "x-interkom-jwt";

fn default_actions() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("GET".to_owned(), "read".to_owned()),
        ("HEAD".to_owned(), "read".to_owned()),
        ("*".to_owned(), "write".to_owned()),
    ])
}

fn default_headers() -> Vec<IdentityHeader> {
    IdentityHeader::ALL.to_vec()
}

fn default_paths() -> Vec<String> {
    vec!["/".to_owned()]
}

/// What an administrator registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationConfig {
    pub id: String,
    pub tenant: String,
    pub name: String,
    /// External origins (`https://host[:port]`); http only on loopback.
    pub origins: Vec<String>,
    /// Path prefixes on those origins (default `/`: the whole host).
    #[serde(default = "default_paths")]
    pub paths: Vec<String>,
    /// The policy resource requests are decided on.
    pub resource: String,
    /// HTTP method → policy action; `*` for every other method (default:
    /// GET and HEAD read, everything else writes).
    #[serde(default = "default_actions")]
    pub actions: BTreeMap<String, String>,
    /// The identity headers the application receives.
    #[serde(default = "default_headers")]
    pub headers: Vec<IdentityHeader>,
    /// Whether it also receives a short-lived signed JWT.
    #[serde(default)]
    pub jwt: bool,
}

fn slug(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `host` names this machine (where plain http is allowed: tests
/// and local setups).
fn loopback_host(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An origin in its one written form (`scheme://host[:port]`, lowercase,
/// no default port), or why it is none.
pub fn normalize_origin(s: &str) -> Result<String, String> {
    let u = Url::parse(s).map_err(|_| format!("origin `{s}` is not an absolute URL"))?;
    if !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
        || !matches!(u.path(), "" | "/")
    {
        return Err(format!(
            "origin `{s}`: scheme, host and port only (no path, query or user)"
        ));
    }
    let host = u
        .host_str()
        .ok_or_else(|| format!("origin `{s}` has no host"))?;
    match u.scheme() {
        "https" => {}
        "http" if loopback_host(host) => {}
        _ => {
            return Err(format!(
                "origin `{s}`: https only (http only for loopback hosts)"
            ))
        }
    }
    Ok(u.origin().ascii_serialization())
}

/// Whether `path` is a usable prefix: absolute, no query, no dot segments,
/// no encoded characters that could mean another path.
fn valid_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 256
        && !path.contains(['?', '#', '%', '\\'])
        && !path.split('/').any(|seg| seg == "." || seg == "..")
        && !path.starts_with(PROXY_PREFIX)
        && path.bytes().all(|b| b.is_ascii_graphic())
}

impl ApplicationConfig {
    /// Checks the registration and brings origins into their one form.
    pub fn validate(&mut self, tenants: &TenantTree) -> Result<(), String> {
        if !slug(&self.id, 64) {
            return Err("id: letters, digits and - _ ., at most 64 characters".into());
        }
        if tenants.get(&self.tenant).is_none() {
            return Err(format!("unknown tenant `{}`", self.tenant));
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return Err("name: 1 to 200 characters".into());
        }
        if self.origins.is_empty() || self.origins.len() > 16 {
            return Err("origins: 1 to 16".into());
        }
        let mut origins = Vec::new();
        for o in &self.origins {
            let n = normalize_origin(o)?;
            if !origins.contains(&n) {
                origins.push(n);
            }
        }
        self.origins = origins;
        if self.paths.is_empty() || self.paths.len() > 16 {
            return Err("paths: 1 to 16 prefixes".into());
        }
        if let Some(p) = self.paths.iter().find(|p| !valid_path(p)) {
            return Err(format!(
                "path `{p}`: an absolute prefix without query, dot segments or escapes, not under {PROXY_PREFIX}"
            ));
        }
        self.paths.sort();
        self.paths.dedup();
        if self.actions.is_empty() || self.actions.len() > 16 {
            return Err("actions: 1 to 16 methods".into());
        }
        for (m, a) in &self.actions {
            let method_ok = m == "*"
                || (!m.is_empty() && m.len() <= 16 && m.bytes().all(|b| b.is_ascii_uppercase()));
            if !method_ok || !slug(a, 64) {
                return Err(format!(
                    "actions: `{m}` → `{a}`: an upper-case method (or *) to an action name"
                ));
            }
        }
        if !self.actions.contains_key("*") {
            return Err("actions: `*` (every other method) must map to an action".into());
        }
        if !slug(&self.resource, 128) {
            return Err("resource: a resource id".into());
        }
        self.headers.sort();
        self.headers.dedup();
        Ok(())
    }

    /// The policy action for a request's method.
    pub fn action_for(&self, method: &str) -> &str {
        self.actions
            .get(method)
            .or_else(|| self.actions.get("*"))
            .map_or("write", String::as_str)
    }
}

/// A registered application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Application {
    pub cfg: ApplicationConfig,
    pub updated_at: i64,
}

impl Application {
    /// The id of the client its logins run as.
    pub fn login_client_id(&self) -> String {
        format!("{LOGIN_CLIENT_PREFIX}{}", self.cfg.id)
    }

    /// The callback on `origin` where a login ends with a one-time code.
    pub fn callback(origin: &str) -> String {
        format!("{origin}{PROXY_PREFIX}/callback")
    }

    /// The client its logins run as through the login flow: public, PKCE,
    /// the callback on each origin as redirect URI, no consent page (what
    /// it receives is what its tenant registered).
    pub fn login_client(&self) -> Client {
        Client {
            id: self.login_client_id().into(),
            tenant: self.cfg.tenant.clone().into(),
            name: self.cfg.name.clone(),
            redirect_uris: self.cfg.origins.iter().map(|o| Self::callback(o)).collect(),
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
}

/// Where each request goes: by origin, the applications' path prefixes,
/// longest first.
#[derive(Debug, Default)]
pub struct ApplicationIndex {
    by_origin: HashMap<String, Vec<(String, Arc<Application>)>>,
    by_id: HashMap<String, Arc<Application>>,
}

impl ApplicationIndex {
    pub fn new(apps: Vec<Application>) -> ApplicationIndex {
        let mut idx = ApplicationIndex::default();
        for a in apps {
            let a = Arc::new(a);
            for o in &a.cfg.origins {
                let routes = idx.by_origin.entry(o.clone()).or_default();
                for p in &a.cfg.paths {
                    routes.push((p.clone(), a.clone()));
                }
            }
            idx.by_id.insert(a.cfg.id.clone(), a);
        }
        for routes in idx.by_origin.values_mut() {
            routes.sort_by(|x, y| y.0.len().cmp(&x.0.len()).then_with(|| x.0.cmp(&y.0)));
        }
        idx
    }

    /// The application a request to `origin` and `path` belongs to: the
    /// longest prefix that matches at a segment boundary.
    pub fn route(&self, origin: &str, path: &str) -> Option<&Arc<Application>> {
        self.by_origin
            .get(origin)?
            .iter()
            .find_map(|(prefix, a)| prefix_matches(prefix, path).then_some(a))
    }

    /// Whether `origin` is one of any application's.
    pub fn knows_origin(&self, origin: &str) -> bool {
        self.by_origin.contains_key(origin)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Application>> {
        self.by_id.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Application>> {
        self.by_id.values()
    }
}

/// `/intranet` covers `/intranet` and `/intranet/…`, not `/intranetx`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes()[prefix.len()] == b'/')
}

/// The index as last read, with the time of reading.
#[derive(Default)]
pub(crate) struct ApplicationCache {
    current: RwLock<Option<(i64, Arc<ApplicationIndex>)>>,
}

#[derive(sqlx::FromRow)]
struct Row {
    config: String,
    updated_at: i64,
}

impl Directory {
    /// Every application, as read within the cache's lifetime (a change on
    /// another node is seen within it; on this node at once).
    pub async fn applications(&self) -> Result<Arc<ApplicationIndex>, DirectoryError> {
        let now = self.0.clock.now();
        if let Ok(cur) = self.0.applications.current.read() {
            if let Some((at, idx)) = cur.as_ref() {
                if now - at < self.0.cfg.cache_ttl.max(1) {
                    return Ok(idx.clone());
                }
            }
        }
        self.applications_now().await
    }

    /// Every application, read now (what administrators change).
    pub async fn applications_now(&self) -> Result<Arc<ApplicationIndex>, DirectoryError> {
        let now = self.0.clock.now();
        let rows: Vec<Row> = sqlx::query_as("SELECT config, updated_at FROM applications")
            .fetch_all(&self.0.pool)
            .await?;
        let mut apps = Vec::with_capacity(rows.len());
        for r in rows {
            let cfg: ApplicationConfig = serde_json::from_str(&r.config)
                .map_err(|_| DirectoryError::Corrupt("application"))?;
            apps.push(Application {
                cfg,
                updated_at: r.updated_at,
            });
        }
        let idx = Arc::new(ApplicationIndex::new(apps));
        if let Ok(mut cur) = self.0.applications.current.write() {
            *cur = Some((now, idx.clone()));
        }
        Ok(idx)
    }

    fn forget_applications(&self) {
        if let Ok(mut cur) = self.0.applications.current.write() {
            *cur = None;
        }
    }

    /// The client a login runs as: a registered client, or a protected
    /// application's login client (`app:<id>`).
    pub async fn login_client(&self, id: &str) -> Result<Option<Arc<Client>>, DirectoryError> {
        let Some(app_id) = id.strip_prefix(LOGIN_CLIENT_PREFIX) else {
            return self.client(id).await;
        };
        let now = self.0.clock.now();
        if let Some(c) = self.0.clients.get(id, now) {
            return Ok(Some(c));
        }
        let idx = self.applications().await?;
        let Some(app) = idx.get(app_id) else {
            return Ok(None);
        };
        let client = Arc::new(app.login_client());
        self.0.clients.put(client.clone(), now);
        Ok(Some(client))
    }

    /// One application, read now.
    pub async fn application(&self, id: &str) -> Result<Option<Application>, DirectoryError> {
        let row: Option<Row> =
            sqlx::query_as("SELECT config, updated_at FROM applications WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.0.pool)
                .await?;
        row.map(|r| {
            Ok(Application {
                cfg: serde_json::from_str(&r.config)
                    .map_err(|_| DirectoryError::Corrupt("application"))?,
                updated_at: r.updated_at,
            })
        })
        .transpose()
    }

    /// Creates or replaces an application (validated here); true when it
    /// is new. An origin and path another application holds is refused.
    pub async fn put_application(
        &self,
        mut cfg: ApplicationConfig,
    ) -> Result<bool, DirectoryError> {
        cfg.validate(&self.0.tenants)
            .map_err(DirectoryError::Invalid)?;
        let now = self.0.clock.now();
        let config = serde_json::to_string(&cfg)?;
        let mut tx = self.0.pool.begin().await?;
        // Writing first (SQLite: a transaction that read first cannot take
        // the write lock once another connection has written).
        let updated = sqlx::query(
            "UPDATE applications SET tenant = $1, config = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(&cfg.tenant)
        .bind(&config)
        .bind(now)
        .bind(&cfg.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let created = updated == 0;
        if created {
            sqlx::query(
                "INSERT INTO applications (id, tenant, config, updated_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&cfg.id)
            .bind(&cfg.tenant)
            .bind(&config)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM application_routes WHERE application = $1")
            .bind(&cfg.id)
            .execute(&mut *tx)
            .await?;
        for o in &cfg.origins {
            for p in &cfg.paths {
                let r = sqlx::query(
                    "INSERT INTO application_routes (origin, path, application) VALUES ($1, $2, $3)",
                )
                .bind(o)
                .bind(p)
                .bind(&cfg.id)
                .execute(&mut *tx)
                .await;
                if !crate::inserted(r)? {
                    return Err(DirectoryError::Taken(format!(
                        "`{o}{p}` belongs to another application"
                    )));
                }
            }
        }
        tx.commit().await?;
        self.forget_applications();
        self.0
            .clients
            .forget(&format!("{LOGIN_CLIENT_PREFIX}{}", cfg.id));
        Ok(created)
    }

    /// Removes an application; true if there was one.
    pub async fn delete_application(&self, id: &str) -> Result<bool, DirectoryError> {
        let mut tx = self.0.pool.begin().await?;
        sqlx::query("DELETE FROM application_routes WHERE application = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM applications WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        self.forget_applications();
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_have_one_form_and_http_only_on_loopback() {
        assert_eq!(
            normalize_origin("HTTPS://Intranet.Example:443/").unwrap(),
            "https://intranet.example"
        );
        assert_eq!(
            normalize_origin("http://app1.localhost:8081").unwrap(),
            "http://app1.localhost:8081"
        );
        assert!(normalize_origin("http://intranet.example").is_err());
        assert!(normalize_origin("https://intranet.example/app").is_err());
        assert!(normalize_origin("https://user@intranet.example").is_err());
        assert!(normalize_origin("javascript:alert(1)").is_err());
    }

    #[test]
    fn the_longest_prefix_at_a_segment_boundary_wins() {
        let app = |id: &str, paths: &[&str]| Application {
            cfg: ApplicationConfig {
                id: id.into(),
                tenant: "t".into(),
                name: id.into(),
                origins: vec!["https://a.example".into()],
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                resource: "r".into(),
                actions: default_actions(),
                headers: default_headers(),
                jwt: false,
            },
            updated_at: 0,
        };
        let idx = ApplicationIndex::new(vec![app("root", &["/"]), app("admin", &["/admin"])]);
        let at = |p: &str| idx.route("https://a.example", p).map(|a| a.cfg.id.as_str());
        assert_eq!(at("/admin"), Some("admin"));
        assert_eq!(at("/admin/users"), Some("admin"));
        assert_eq!(at("/administrator"), Some("root"));
        assert_eq!(at("/"), Some("root"));
        assert_eq!(idx.route("https://b.example", "/"), None);
    }

    #[test]
    fn methods_map_to_actions() {
        let cfg = ApplicationConfig {
            id: "x".into(),
            tenant: "t".into(),
            name: "x".into(),
            origins: vec![],
            paths: default_paths(),
            resource: "r".into(),
            actions: default_actions(),
            headers: default_headers(),
            jwt: false,
        };
        assert_eq!(cfg.action_for("GET"), "read");
        assert_eq!(cfg.action_for("HEAD"), "read");
        assert_eq!(cfg.action_for("POST"), "write");
        assert_eq!(cfg.action_for("DELETE"), "write");
    }

    #[test]
    fn paths_cannot_hide_dot_segments_or_interkoms_own() {
        for bad in [
            "intranet",
            "/a/../b",
            "/a?b",
            "/%2e%2e",
            "/.interkom/x",
            "/a b",
        ] {
            assert!(!valid_path(bad), "{bad}");
        }
        assert!(valid_path("/"));
        assert!(valid_path("/ratsinfo/"));
    }
}
