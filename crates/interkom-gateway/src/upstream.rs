//! Identity brokering: a municipality's own OpenID Provider vouches for its
//! staff, interkom is its relying party (the `openidconnect` crate:
//! discovery, authorization code with PKCE, state and nonce, ID-token
//! validation against the upstream's JWKS).
//!
//! Each upstream belongs to a tenant: the accounts it vouches for live in
//! that tenant's subtree, its groups map to roles there, and its `acr`
//! values map to interkom's levels of assurance only as far as the
//! configuration trusts it. Everything that can go wrong at the upstream
//! ends on an error page that names it, and in the audit trail.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_policy::Loa;
use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    LoginHint, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    TokenResponse,
};
use openidconnect::{LogoutRequest, PostLogoutRedirectUrl, ProviderMetadataWithLogout};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::accounts::{self, User};
use crate::authorize::{self, AuthRequest};
use crate::crypto::ct_eq;
use crate::i18n::Lang;
use crate::stepup::{self, Pending};
use crate::web::{self, Meta};
use crate::{Gateway, GatewayError};

/// The redirect URI interkom registers at every upstream.
pub(crate) const CALLBACK: &str = "/broker/callback";
/// Where an upstream sends the browser back after logging out (its
/// `post_logout_redirect_uri`).
pub(crate) const LOGGED_OUT: &str = "/broker/logged-out";
/// How long a login may stay at the upstream.
const PENDING_TTL: i64 = 600;
/// Discovery documents and keys are fetched again after this long (and at
/// once when a token names a key not seen yet).
const METADATA_TTL: Duration = Duration::from_secs(300);

/// Which claims of the upstream's ID token mean what.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMapping {
    /// The stable, never reassigned identifier of the person.
    pub subject: String,
    /// Matched against local usernames when linking, and the base of the
    /// username of an account created on first login.
    pub username: String,
    pub name: String,
    pub email: String,
    /// A claim with the person's groups (array or space-separated string).
    pub groups: Option<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            subject: "sub".into(),
            username: "preferred_username".into(),
            name: "name".into(),
            email: "email".into(),
            groups: None,
        }
    }
}

/// One upstream OpenID Provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// A slug, e.g. `idp-hitzacker`.
    pub id: String,
    /// The tenant whose staff it vouches for (accounts in its subtree).
    pub tenant: String,
    /// Shown on the login page, e.g. "Stadt Hitzacker (Elbe)".
    pub name: String,
    /// The upstream's issuer (discovery at `/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// Kept sealed in the database, never in the stored configuration.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// E-mail domains of its staff: a `login_hint` in one of them goes
    /// straight to this upstream.
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Upstream group → interkom role in `tenant`. Roles named here are
    /// kept in step with the groups at every login; others stay untouched.
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
    /// Upstream `acr` value → interkom level. An `acr` not listed is
    /// refused; the levels say how far this upstream is trusted.
    #[serde(default)]
    pub acr: BTreeMap<String, Loa>,
    /// The level of a login without `acr`; without it such logins fail.
    #[serde(default)]
    pub default_loa: Option<Loa>,
    /// Link a first login to the existing account whose username equals
    /// the `username` claim (only accounts in `tenant`'s subtree).
    #[serde(default)]
    pub link_existing: bool,
    /// Create an account on first login (just in time).
    #[serde(default = "yes")]
    pub create_accounts: bool,
    /// Upper bound for each call to the upstream, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// End the upstream's session too when the user logs out here (if it
    /// offers RP-initiated logout).
    #[serde(default = "yes")]
    pub propagate_logout: bool,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}
fn yes() -> bool {
    true
}
fn default_timeout() -> u64 {
    10
}

fn valid_slug(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl UpstreamConfig {
    /// Checks what can be checked without the network.
    pub fn validate(
        &self,
        tenants: &interkom_policy::TenantTree,
        allow_loopback: bool,
    ) -> Result<(), String> {
        let mut errs = Vec::new();
        if !valid_slug(&self.id) {
            errs.push(format!(
                "upstream id `{}` must be a slug of a-z, 0-9 and '-'",
                self.id
            ));
        }
        if tenants.get(&self.tenant).is_none() {
            errs.push(format!("unknown tenant `{}`", self.tenant));
        }
        if self.name.trim().is_empty() || self.client_id.is_empty() {
            errs.push("name and client_id are required".into());
        }
        if let Err(e) = check_endpoint(&self.issuer, allow_loopback) {
            errs.push(format!("issuer: {e}"));
        }
        if let Ok(u) = url::Url::parse(&self.issuer) {
            if u.query().is_some() || u.fragment().is_some() {
                errs.push("issuer must not have a query or fragment".into());
            }
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            errs.push("scopes must include openid".into());
        }
        if let Some(r) = self
            .roles
            .values()
            .find(|r| !interkom_policy::roles::valid_role(r))
        {
            errs.push(format!("invalid role name `{r}`"));
        }
        if self.acr.is_empty() && self.default_loa.is_none() {
            errs.push("map at least one acr value, or set default_loa".into());
        }
        if !(1..=20).contains(&self.timeout_seconds) {
            errs.push("timeout_seconds must be between 1 and 20".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!("upstream `{}`: {}", self.id, errs.join("; ")))
        }
    }
}

/// Where interkom may call an upstream: https to a name or a public
/// address; never this machine, a private or link-local network (cloud
/// metadata) — except loopback over http with `brokering.allow_loopback`
/// (tests, local setups).
pub(crate) fn check_endpoint(raw: &str, allow_loopback: bool) -> Result<(), String> {
    use std::net::IpAddr;
    let u = url::Url::parse(raw).map_err(|e| format!("`{raw}`: {e}"))?;
    let ip: Option<IpAddr> = match u.host() {
        Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            (d == "localhost" || d.ends_with(".localhost"))
                .then_some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        }
        None => return Err(format!("`{raw}` has no host")),
    };
    let loopback = ip.is_some_and(|a| a.to_canonical().is_loopback());
    if loopback {
        return if allow_loopback && matches!(u.scheme(), "http" | "https") {
            Ok(())
        } else {
            Err(format!(
                "`{raw}` is this machine (only with brokering.allow_loopback)"
            ))
        };
    }
    if u.scheme() != "https" {
        return Err(format!("`{raw}` must be https"));
    }
    if ip.is_some_and(|a| !public_ip(a, false)) {
        return Err(format!(
            "`{raw}` is a private, shared or link-local address"
        ));
    }
    Ok(())
}

/// Whether interkom may connect to this address for an upstream: not an
/// internal one (private, carrier-grade NAT, link-local — cloud metadata —,
/// unspecified, broadcast, multicast), loopback only when allowed. IPv4
/// mapped into IPv6 counts as the IPv4 address.
pub(crate) fn public_ip(ip: std::net::IpAddr, allow_loopback: bool) -> bool {
    use std::net::IpAddr;
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        return allow_loopback;
    }
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(a) => {
            let s0 = a.segments()[0];
            !(a.is_unspecified()
                || a.is_multicast()
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80)
        }
    }
}

/// Name resolution for calls to upstreams: only public addresses (so a
/// name that points inside — or is made to, later — reaches nothing there).
pub(crate) struct PublicResolver {
    pub(crate) allow_loopback: bool,
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let ok: Vec<std::net::SocketAddr> =
                found.filter(|a| public_ip(a.ip(), allow)).collect();
            if ok.is_empty() {
                return Err(format!("`{host}` resolves to no address interkom may call").into());
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An upstream as loaded, with its secret opened.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) cfg: UpstreamConfig,
    secret: Option<String>,
}

impl Upstream {
    /// The highest level a login there can reach here.
    pub(crate) fn max_loa(&self) -> Option<Loa> {
        self.cfg
            .acr
            .values()
            .chain(self.cfg.default_loa.iter())
            .max()
            .copied()
    }

    /// The upstream `acr` values worth asking for to reach `need`, the
    /// weakest sufficient first.
    pub(crate) fn acr_values_for(&self, need: Loa) -> Vec<String> {
        let mut v: Vec<(Loa, &String)> = self
            .cfg
            .acr
            .iter()
            .filter(|(_, l)| **l >= need)
            .map(|(a, l)| (*l, a))
            .collect();
        v.sort();
        v.into_iter().map(|(_, a)| a.clone()).collect()
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.timeout_seconds)
    }
}

/// Every upstream, ordered by name.
pub(crate) type UpstreamList = Arc<Vec<Arc<Upstream>>>;

/// The configured upstreams (read from the database, briefly cached) and
/// their discovery documents.
#[derive(Default)]
pub(crate) struct Registry {
    list: RwLock<Option<(i64, UpstreamList)>>,
    metadata: Mutex<HashMap<String, (Instant, Arc<ProviderMetadataWithLogout>)>>,
}

/// The secret is bound to the upstream and its issuer: configured anew
/// for another issuer, the old secret opens no more (it is never sent to
/// another IdP).
fn secret_aad(id: &str, issuer: &str) -> String {
    format!("upstream|{id}|{}", norm_issuer(issuer))
}

/// An issuer as compared and stored with links: without a trailing slash.
fn norm_issuer(issuer: &str) -> &str {
    issuer.trim_end_matches('/')
}

impl Gateway {
    /// Creates or replaces an upstream; the secret is kept when the new
    /// configuration has none.
    pub async fn put_upstream(&self, cfg: UpstreamConfig) -> Result<(), GatewayError> {
        cfg.validate(&self.tenants, self.cfg.upstream_allow_loopback)
            .map_err(GatewayError::Invalid)?;
        let sealed = match &cfg.client_secret {
            Some(s) => Some(
                self.master
                    .encrypt(s.as_bytes(), &secret_aad(&cfg.id, &cfg.issuer))
                    .map_err(|_| GatewayError::Crypto("cannot seal the upstream secret"))?,
            ),
            None => None,
        };
        // A domain names one upstream, or `login_hint` would be ambiguous.
        let others = upstreams(self).await?;
        if let Some(d) = cfg.domains.iter().find(|d| {
            others.iter().any(|o| {
                o.cfg.id != cfg.id && o.cfg.domains.iter().any(|x| x.eq_ignore_ascii_case(d))
            })
        }) {
            return Err(GatewayError::Invalid(format!(
                "domain `{d}` belongs to another upstream"
            )));
        }
        // The stored secret stays only for the same issuer.
        let stored: Option<String> =
            sqlx::query_scalar("SELECT config FROM upstream_idps WHERE id = $1")
                .bind(&cfg.id)
                .fetch_optional(&self.pool)
                .await?;
        let same_issuer_as_stored = stored
            .and_then(|c| serde_json::from_str::<UpstreamConfig>(&c).ok())
            .is_some_and(|old| norm_issuer(&old.issuer) == norm_issuer(&cfg.issuer));
        let json = serde_json::to_string(&cfg)?;
        let now = self.clock.now();
        sqlx::query(
            "INSERT INTO upstream_idps (id, tenant, config, secret_enc, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET tenant = $2, config = $3, \
             secret_enc = COALESCE($4, CASE WHEN $6 THEN upstream_idps.secret_enc END), updated_at = $5",
        )
        .bind(&cfg.id)
        .bind(&cfg.tenant)
        .bind(json)
        .bind(sealed)
        .bind(now)
        .bind(same_issuer_as_stored)
        .execute(&self.pool)
        .await?;
        self.forget_upstreams(&cfg.id);
        Ok(())
    }

    /// Removes an upstream (its links stay, so that it can come back).
    pub async fn delete_upstream(&self, id: &str) -> Result<bool, GatewayError> {
        let n = sqlx::query("DELETE FROM upstream_idps WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        self.forget_upstreams(id);
        Ok(n > 0)
    }

    /// Every configured upstream, without its secret, and whether it has
    /// one.
    pub async fn list_upstreams(&self) -> Result<Vec<(UpstreamConfig, bool)>, GatewayError> {
        Ok(upstreams(self)
            .await?
            .iter()
            .map(|u| (u.cfg.clone(), u.secret.is_some()))
            .collect())
    }

    fn forget_upstreams(&self, id: &str) {
        if let Ok(mut l) = self.upstreams.list.write() {
            *l = None;
        }
        if let Ok(mut m) = self.upstreams.metadata.lock() {
            m.retain(|k, _| !k.starts_with(&format!("{id}|")));
        }
    }
}

/// All upstreams, ordered by name; cached for a few seconds.
pub(crate) async fn upstreams(gw: &Gateway) -> Result<UpstreamList, GatewayError> {
    let now = gw.clock.now();
    if let Ok(l) = gw.upstreams.list.read() {
        if let Some((at, list)) = l.as_ref() {
            if now - at < gw.cfg.client_cache_ttl {
                return Ok(list.clone());
            }
        }
    }
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT id, config, secret_enc FROM upstream_idps")
            .fetch_all(&gw.pool)
            .await?;
    let mut list = Vec::with_capacity(rows.len());
    for (id, config, sealed) in rows {
        let cfg: UpstreamConfig = match serde_json::from_str(&config) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(upstream = %id, error = %e, "stored upstream configuration unreadable");
                continue;
            }
        };
        let secret = sealed.and_then(|s| gw.open(&s, &secret_aad(&id, &cfg.issuer)));
        list.push(Arc::new(Upstream { cfg, secret }));
    }
    list.sort_by(|a, b| a.cfg.name.cmp(&b.cfg.name));
    let list = Arc::new(list);
    if let Ok(mut l) = gw.upstreams.list.write() {
        *l = Some((now, list.clone()));
    }
    Ok(list)
}

pub(crate) async fn upstream(
    gw: &Gateway,
    id: &str,
) -> Result<Option<Arc<Upstream>>, GatewayError> {
    Ok(upstreams(gw)
        .await?
        .iter()
        .find(|u| u.cfg.id == id)
        .cloned())
}

/// The upstreams an account is linked to.
pub(crate) async fn linked(
    gw: &Gateway,
    user_id: &str,
) -> Result<Vec<Arc<Upstream>>, GatewayError> {
    let links: Vec<(String, String)> =
        sqlx::query_as("SELECT upstream, issuer FROM upstream_links WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&gw.pool)
            .await?;
    let all = upstreams(gw).await?;
    Ok(all
        .iter()
        .filter(|u| {
            links
                .iter()
                .any(|(id, iss)| *id == u.cfg.id && iss == norm_issuer(&u.cfg.issuer))
        })
        .cloned()
        .collect())
}

/// What went wrong at an upstream, for the page, the audit trail and the
/// metrics.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Not reachable, or no answer in time.
    Unreachable(String),
    /// The upstream said no (an `error` in the answer or at its token
    /// endpoint).
    Rejected(String),
    /// The ID token failed validation (signature, issuer, audience, expiry).
    InvalidToken(String),
    /// The nonce is not the one sent.
    Nonce,
    /// An `acr` the configuration does not map.
    UnknownAcr(String),
    /// The answer names another issuer (RFC 9207 mix-up).
    Mixup,
    /// No account may be used for this upstream identity.
    NoAccount(&'static str),
    /// A step-up at the upstream came back as somebody else.
    WrongAccount,
    /// An answer to a login that is no longer waiting (too late, another
    /// browser, the login request gone).
    Expired,
    /// An answer seen before, or to a login never sent.
    Replayed,
    Internal(GatewayError),
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Self {
        Failure::Internal(e)
    }
}

impl Failure {
    fn reason(&self) -> &'static str {
        match self {
            Failure::Unreachable(_) => "upstream_unreachable",
            Failure::Rejected(_) => "upstream_rejected",
            Failure::InvalidToken(_) => "upstream_invalid_token",
            Failure::Nonce => "upstream_wrong_nonce",
            Failure::UnknownAcr(_) => "upstream_unknown_acr",
            Failure::Mixup => "upstream_issuer_mismatch",
            Failure::NoAccount(_) => "upstream_no_account",
            Failure::WrongAccount => "upstream_wrong_account",
            Failure::Expired => "upstream_login_expired",
            Failure::Replayed => "upstream_response_unknown_or_replayed",
            Failure::Internal(_) => "internal",
        }
    }

    fn detail(&self) -> String {
        match self {
            Failure::Unreachable(d) | Failure::Rejected(d) | Failure::InvalidToken(d) => {
                d.chars().take(300).collect()
            }
            Failure::UnknownAcr(a) => a.chars().take(200).collect(),
            Failure::NoAccount(d) => (*d).to_owned(),
            Failure::Nonce
            | Failure::Mixup
            | Failure::WrongAccount
            | Failure::Expired
            | Failure::Replayed
            | Failure::Internal(_) => String::new(),
        }
    }

    fn message(&self, lang: Lang) -> &'static str {
        let t = lang.texts();
        match self {
            Failure::Unreachable(_) => t.upstream_unreachable,
            Failure::Rejected(_) => t.upstream_rejected,
            Failure::InvalidToken(_) | Failure::Nonce | Failure::Mixup => t.upstream_invalid,
            Failure::UnknownAcr(_) => t.upstream_unknown_acr,
            Failure::NoAccount(_) | Failure::WrongAccount => t.upstream_no_account,
            Failure::Expired | Failure::Replayed => t.upstream_expired,
            Failure::Internal(_) => t.unavailable,
        }
    }
}

/// The upstream's discovery document (with its keys), cached; `refresh`
/// fetches it again (a token signed with a key not seen yet).
async fn metadata(
    gw: &Gateway,
    idp: &Upstream,
    refresh: bool,
) -> Result<Arc<ProviderMetadataWithLogout>, Failure> {
    if !refresh {
        if let Ok(m) = gw.upstreams.metadata.lock() {
            if let Some((at, md)) = m.get(&cache_key(idp)) {
                if at.elapsed() < METADATA_TTL {
                    return Ok(md.clone());
                }
            }
        }
    }
    let issuer = IssuerUrl::new(idp.cfg.issuer.clone())
        .map_err(|e| Failure::Unreachable(format!("issuer: {e}")))?;
    let md = tokio::time::timeout(
        idp.timeout(),
        ProviderMetadataWithLogout::discover_async(issuer, &gw.upstream_http),
    )
    .await
    .map_err(|_| Failure::Unreachable("discovery timed out".into()))?
    .map_err(|e| Failure::Unreachable(format!("discovery: {}", error_chain(&e))))?;
    // The discovered endpoints obey the issuer's rules (no detour to an
    // internal address through the discovery document).
    let allow = gw.cfg.upstream_allow_loopback;
    let mut endpoints = vec![
        md.authorization_endpoint().url().as_str(),
        md.jwks_uri().url().as_str(),
    ];
    if let Some(t) = md.token_endpoint() {
        endpoints.push(t.url().as_str());
    }
    if let Some(e) = &md.additional_metadata().end_session_endpoint {
        endpoints.push(e.url().as_str());
    }
    for e in endpoints {
        check_endpoint(e, allow).map_err(|e| Failure::Unreachable(format!("discovery: {e}")))?;
    }
    let md = Arc::new(md);
    if let Ok(mut m) = gw.upstreams.metadata.lock() {
        m.insert(cache_key(idp), (Instant::now(), md.clone()));
    }
    Ok(md)
}

/// Discovery is cached per upstream and issuer: a changed issuer is never
/// paired with the old one's keys.
fn cache_key(idp: &Upstream) -> String {
    format!("{}|{}", idp.cfg.id, idp.cfg.issuer)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn callback_url(gw: &Gateway) -> Result<RedirectUrl, Failure> {
    RedirectUrl::new(gw.cfg.endpoint(CALLBACK))
        .map_err(|_| Failure::Internal(GatewayError::Invalid("callback URL".into())))
}

/// What interkom keeps while the user is at the upstream.
#[derive(Serialize, Deserialize)]
struct Secrets {
    nonce: String,
    verifier: String,
    /// When a fresh login (`prompt=login`) was asked for.
    #[serde(default)]
    fresh_since: Option<i64>,
    /// The level asked for with `acr_values` (`None`: chosen by the user).
    asked: Option<Loa>,
}

/// What a login at an upstream asks for.
pub(crate) struct Ask<'a> {
    pub(crate) acr_values: &'a [String],
    /// The level `acr_values` stand for (`None`: the user chose the IdP).
    pub(crate) asked: Option<Loa>,
    pub(crate) login_hint: Option<&'a str>,
    /// A fresh authentication (`prompt=login`).
    pub(crate) fresh: bool,
    /// Sent as `max_age`: the upstream must then say when the user
    /// authenticated (OIDC Core §3.1.2.1).
    pub(crate) max_age: i64,
}

/// Sends the login to the upstream: returns the URL to redirect to.
pub(crate) async fn begin(
    gw: &Gateway,
    idp: &Upstream,
    login_request: &str,
    browser: &str,
    ask: &Ask<'_>,
) -> Result<String, Failure> {
    let md = metadata(gw, idp, false).await?;
    let client = CoreClient::from_provider_metadata(
        (*md).clone(),
        ClientId::new(idp.cfg.client_id.clone()),
        idp.secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(callback_url(gw)?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut auth = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in idp.cfg.scopes.iter().filter(|s| *s != "openid") {
        auth = auth.add_scope(Scope::new(s.clone()));
    }
    for a in ask.acr_values {
        auth = auth.add_auth_context_value(AuthenticationContextClass::new(a.clone()));
    }
    if let Some(h) = ask.login_hint {
        auth = auth.set_login_hint(LoginHint::new(h.to_owned()));
    }
    auth = auth.set_max_age(Duration::from_secs(ask.max_age.max(0) as u64));
    if ask.fresh {
        auth = auth.add_prompt(CoreAuthPrompt::Login);
    }
    let (url, state, nonce) = auth.url();
    let secrets = serde_json::to_string(&Secrets {
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        fresh_since: ask.fresh.then(|| gw.clock.now()),
        asked: ask.asked,
    })
    .map_err(GatewayError::from)?;
    let state_hash = gw
        .master
        .keyed_hash(&format!("upstream-state|{}", state.secret()));
    let sealed = gw
        .master
        .encrypt(secrets.as_bytes(), &state_hash)
        .map_err(|_| GatewayError::Crypto("cannot seal the upstream login"))?;
    sqlx::query(
        "INSERT INTO upstream_logins (state_hash, login_request, upstream, browser_hash, secrets_enc, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&state_hash)
    .bind(login_request)
    .bind(&idp.cfg.id)
    .bind(gw.master.keyed_hash(browser))
    .bind(sealed)
    .bind(gw.clock.now() + PENDING_TTL)
    .execute(&gw.pool)
    .await
    .map_err(GatewayError::from)?;
    metrics::counter!("interkom_upstream_logins_total", "upstream" => idp.cfg.id.clone(), "result" => "sent")
        .increment(1);
    Ok(url.to_string())
}

#[derive(Deserialize)]
struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// What a valid answer of the upstream established.
struct Asserted {
    /// The upstream's ID token (its `id_token_hint` at logout).
    id_token: String,
    subject: String,
    claims: Value,
    loa: Loa,
    amr: Vec<String>,
    auth_time: i64,
}

/// `GET /broker/callback`: the upstream's answer.
pub(crate) async fn callback(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    let expired = |status| web::error_page(&gw, lang, status, lang.texts().expired, None);
    let Ok(cb) = serde_urlencoded::from_str::<CallbackParams>(query.as_deref().unwrap_or(""))
    else {
        return expired(StatusCode::BAD_REQUEST);
    };
    let Some(state) = cb.state.as_deref().filter(|s| s.len() <= 512) else {
        return expired(StatusCode::BAD_REQUEST);
    };
    let state_hash = gw.master.keyed_hash(&format!("upstream-state|{state}"));
    // Single use: whoever comes second (a replayed answer) finds nothing.
    let row: Option<(String, String, String, String, i64)> = match sqlx::query_as(
        "DELETE FROM upstream_logins WHERE state_hash = $1 \
         RETURNING login_request, upstream, browser_hash, secrets_enc, expires_at",
    )
    .bind(&state_hash)
    .fetch_optional(&gw.pool)
    .await
    {
        Ok(r) => r,
        Err(e) => return authorize::internal(&gw, lang, e.into()),
    };
    let now = gw.clock.now();
    let Some((lr, idp_id, browser_hash, sealed, expires_at)) = row else {
        // Replayed, or never sent: named after the issuer it claims, if any.
        let named = match &cb.iss {
            Some(iss) => upstreams(&gw)
                .await
                .ok()
                .and_then(|l| l.iter().find(|u| same_issuer(&u.cfg.issuer, iss)).cloned()),
            None => None,
        };
        return match named {
            Some(idp) => fail(&gw, &meta, lang, &idp, None, Failure::Replayed).await,
            None => {
                let ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
                    .reason(Failure::Replayed.reason())
                    .correlation(meta.request_id.clone())
                    .source(meta.source.clone());
                if let Err(e) = gw.audit.append(ev).await {
                    return authorize::internal(&gw, lang, e.into());
                }
                expired(StatusCode::BAD_REQUEST)
            }
        };
    };
    let idp = match upstream(&gw, &idp_id).await {
        Ok(Some(i)) => i,
        Ok(None) => return expired(StatusCode::BAD_REQUEST),
        Err(e) => return authorize::internal(&gw, lang, e),
    };
    let browser = web::cookie(&headers, authorize::BROWSER_COOKIE).unwrap_or_default();
    if expires_at <= now
        || browser.is_empty()
        || !ct_eq(&gw.master.keyed_hash(&browser), &browser_hash)
    {
        return fail(&gw, &meta, lang, &idp, None, Failure::Expired).await;
    }
    let lr_row = match authorize::login_request(&gw, &lr, now).await {
        Ok(Some(r)) => r,
        Ok(None) => return fail(&gw, &meta, lang, &idp, None, Failure::Expired).await,
        Err(e) => return authorize::internal(&gw, lang, e),
    };
    let (req, pending) = lr_row;
    let lang = Lang::negotiate(req.ui_locales.as_deref(), meta.accept_language.as_deref());
    let client = match gw.client(&req.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return expired(StatusCode::BAD_REQUEST),
        Err(e) => return authorize::internal(&gw, lang, e),
    };
    let outcome = async {
        let secrets: Secrets = gw
            .master
            .decrypt(&sealed, &state_hash)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Failure::Internal(GatewayError::Crypto(
                "upstream login cannot be opened",
            )))?;
        let asked = secrets.asked;
        // One deadline for the whole exchange (discovery, token, keys).
        let asserted = tokio::time::timeout(idp.timeout() * 2, complete(&gw, &idp, &cb, secrets))
            .await
            .map_err(|_| Failure::Unreachable("the upstream took too long".into()))??;
        // A step-up must come back as the same person: checked before
        // anything is linked, created or brought in step.
        if let Some(p) = &pending {
            let same = linked_account(&gw, &idp, &asserted.subject)
                .await?
                .is_some_and(|u| u.id == p.user_id);
            if !same {
                return Err(Failure::WrongAccount);
            }
        }
        let user = resolve_account(&gw, &meta, &idp, &asserted).await?;
        Ok((asserted, user, asked))
    }
    .await;
    match outcome {
        Ok((asserted, user, asked)) => {
            metrics::counter!("interkom_upstream_logins_total", "upstream" => idp.cfg.id.clone(), "result" => "success")
                .increment(1);
            let mut tried = pending
                .as_ref()
                .map(|p| p.tried.clone())
                .unwrap_or_default();
            tried.push(stepup::upstream_key(&idp.cfg.id, asked));
            let p = Pending {
                user_id: user.id.clone(),
                acr: asserted.loa.acr().to_owned(),
                amr: asserted.amr,
                auth_time: asserted.auth_time,
                sid: pending.as_ref().and_then(|p| p.sid.clone()),
                upstream: Some(idp.cfg.id.clone()),
                tried,
                otp_failures: 0,
                offer: Vec::new(),
                passkey_state: None,
                upstream_token: gw.seal(&asserted.id_token, &token_aad(&user.id)),
            };
            match stepup::advance(&gw, &meta, lang, &lr, &browser, &req, &client, p).await {
                Ok(r) => r,
                Err(e) => authorize::internal(&gw, lang, e),
            }
        }
        Err(f) => fail(&gw, &meta, lang, &idp, Some(&client.id), f).await,
    }
}

/// Counts, logs and audits a failed upstream login; the page naming the
/// Kommune's IdP.
async fn fail(
    gw: &Gateway,
    meta: &Meta,
    lang: Lang,
    idp: &Upstream,
    client_id: Option<&str>,
    f: Failure,
) -> Response {
    if let Failure::Internal(e) = f {
        return authorize::internal(gw, lang, e);
    }
    metrics::counter!("interkom_upstream_logins_total", "upstream" => idp.cfg.id.clone(), "result" => f.reason())
        .increment(1);
    tracing::warn!(upstream = %idp.cfg.id, reason = f.reason(), detail = %f.detail(), "upstream login failed");
    if let Err(e) = audit_failure(gw, meta, idp, client_id, &f).await {
        return authorize::internal(gw, lang, e);
    }
    failure_page(gw, lang, idp, &f)
}

fn same_issuer(a: &str, b: &str) -> bool {
    norm_issuer(a) == norm_issuer(b)
}

fn token_aad(user_id: &str) -> String {
    format!("upstream-id-token|{user_id}")
}

/// Where to send the browser so that the upstream ends its session too:
/// its end-session endpoint with its ID token as hint, back to
/// `/broker/logged-out` with `continue_to` (a verified URI, or the logged-out
/// page) sealed into the state. `None` when the upstream offers no logout,
/// is not reachable now, or propagation is off.
pub(crate) async fn logout_url(
    gw: &Gateway,
    upstream_id: &str,
    user_id: &str,
    sealed_token: Option<&str>,
    continue_to: Option<&str>,
) -> Option<String> {
    let idp = upstream(gw, upstream_id).await.ok().flatten()?;
    if !idp.cfg.propagate_logout {
        return None;
    }
    let md = metadata(gw, &idp, false).await.ok()?;
    let endpoint = md.additional_metadata().end_session_endpoint.clone()?;
    let state = gw.seal(
        &json!({ "to": continue_to, "exp": gw.clock.now() + PENDING_TTL }).to_string(),
        "upstream-logout",
    )?;
    let back = PostLogoutRedirectUrl::new(gw.cfg.endpoint(LOGGED_OUT)).ok()?;
    let mut req = LogoutRequest::from(endpoint)
        .set_client_id(ClientId::new(idp.cfg.client_id.clone()))
        .set_post_logout_redirect_uri(back)
        .set_state(CsrfToken::new(state));
    let token = sealed_token
        .and_then(|t| gw.open(t, &token_aad(user_id)))
        .and_then(|t| t.parse::<CoreIdToken>().ok());
    if let Some(t) = &token {
        req = req.set_id_token_hint(t);
    }
    Some(req.http_get_url().to_string())
}

/// `GET /broker/logged-out`: back from the upstream's logout; on to where
/// the logout was going (already verified when it began).
pub(crate) async fn logged_out(
    State(gw): State<Gateway>,
    meta: Meta,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    let state =
        serde_urlencoded::from_str::<HashMap<String, String>>(query.as_deref().unwrap_or(""))
            .ok()
            .and_then(|q| q.get("state").cloned())
            .and_then(|s| gw.open(&s, "upstream-logout"))
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .filter(|v| v["exp"].as_i64().is_some_and(|e| e > gw.clock.now()));
    match state.as_ref().and_then(|v| v["to"].as_str()) {
        Some(to) => web::see_other(to),
        None => crate::logout::logged_out_page(&gw, lang),
    }
}

/// The error page naming the municipality's IdP as the cause.
pub(crate) fn failure_page(gw: &Gateway, lang: Lang, idp: &Upstream, f: &Failure) -> Response {
    let status = match f {
        Failure::Unreachable(_) => StatusCode::BAD_GATEWAY,
        Failure::NoAccount(_) | Failure::WrongAccount | Failure::Rejected(_) => {
            StatusCode::FORBIDDEN
        }
        Failure::Expired | Failure::Replayed => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    };
    let message = f.message(lang).replace("{idp}", &idp.cfg.name);
    web::error_page(gw, lang, status, &message, Some(f.reason()))
}

pub(crate) async fn audit_failure(
    gw: &Gateway,
    meta: &Meta,
    idp: &Upstream,
    client_id: Option<&str>,
    f: &Failure,
) -> Result<(), GatewayError> {
    let mut ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
        .reason(f.reason())
        .correlation(meta.request_id.clone())
        .source(meta.source.clone())
        .details(
            json!({ "upstream": idp.cfg.id, "upstream_name": idp.cfg.name, "detail": f.detail() }),
        );
    if let Some(c) = client_id {
        ev = ev.client(c);
    }
    if let Some(t) = gw.tenants.get(&idp.cfg.tenant) {
        ev = ev.tenant(&t.id, t.path_string());
    }
    gw.audit.append(ev).await?;
    Ok(())
}

/// Redeems the code and validates the ID token.
async fn complete(
    gw: &Gateway,
    idp: &Upstream,
    cb: &CallbackParams,
    secrets: Secrets,
) -> Result<Asserted, Failure> {
    // RFC 9207: an answer that names another issuer is a mix-up.
    if let Some(iss) = &cb.iss {
        if !same_issuer(iss, &idp.cfg.issuer) {
            return Err(Failure::Mixup);
        }
    }
    if let Some(e) = &cb.error {
        let d = cb.error_description.as_deref().unwrap_or("");
        return Err(Failure::Rejected(format!("{e}: {d}")));
    }
    let code = cb
        .code
        .clone()
        .ok_or_else(|| Failure::Rejected("no code in the answer".into()))?;
    let fresh_since = secrets.fresh_since;
    let md = metadata(gw, idp, false).await?;
    let client = |md: &ProviderMetadataWithLogout| -> Result<_, Failure> {
        Ok(CoreClient::from_provider_metadata(
            md.clone(),
            ClientId::new(idp.cfg.client_id.clone()),
            idp.secret.clone().map(ClientSecret::new),
        )
        .set_auth_type(auth_type(md))
        .set_redirect_uri(callback_url(gw)?))
    };
    let c = client(&md)?;
    let request = c
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| Failure::Unreachable(format!("token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(secrets.verifier));
    let response = tokio::time::timeout(idp.timeout(), request.request_async(&gw.upstream_http))
        .await
        .map_err(|_| Failure::Unreachable("token request timed out".into()))?
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => {
                Failure::Rejected(format!("token endpoint: {}", r.error().as_ref()))
            }
            RequestTokenError::Parse(e, _) => Failure::InvalidToken(format!("token response: {e}")),
            other => Failure::Unreachable(format!("token endpoint: {}", error_chain(&other))),
        })?;
    let id_token = response
        .id_token()
        .ok_or_else(|| Failure::InvalidToken("no ID token".into()))?;
    let nonce = Nonce::new(secrets.nonce);
    let algs = vec![
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::EcdsaP384Sha384,
        CoreJwsSigningAlgorithm::EdDsa,
    ];
    let verify = |c: &CoreClient<_, _, _, _, _, _>| {
        id_token
            .claims(
                &c.id_token_verifier().set_allowed_algs(algs.clone()),
                &nonce,
            )
            .cloned()
    };
    let claims = match verify(&c) {
        Ok(claims) => claims,
        // A key not seen yet: the upstream rotated. Fetch its keys again,
        // once.
        Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
            let md = metadata(gw, idp, true).await?;
            let c = client(&md)?;
            verify(&c).map_err(|e| classify(&e))?
        }
        Err(e) => return Err(classify(&e)),
    };
    // The token is verified: its payload can be read for mapped claims.
    let raw: Value = id_token
        .to_string()
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Failure::InvalidToken("unreadable payload".into()))?;
    let loa = match claims.auth_context_ref().map(|a| a.to_string()) {
        Some(a) => *idp.cfg.acr.get(&a).ok_or(Failure::UnknownAcr(a))?,
        None => idp
            .cfg
            .default_loa
            .ok_or_else(|| Failure::UnknownAcr("(none)".into()))?,
    };
    let mut amr: Vec<String> = claims
        .auth_method_refs()
        .map(|v| v.iter().map(|m| m.to_string()).collect())
        .unwrap_or_default();
    amr.retain(|m| RFC8176.contains(&m.as_str()));
    // A second factor counts only as far as the upstream is trusted: one
    // trusted for `low` does not vouch for its `otp`.
    if loa < Loa::Substantial {
        amr.retain(|m| !interkom_policy::loa::SECOND_FACTOR_AMR.contains(&m.as_str()));
    }
    // A level from `substantial` up means two factors (eIDAS); the policy
    // looks for them in `amr`.
    if loa >= Loa::Substantial
        && !amr
            .iter()
            .any(|m| interkom_policy::loa::SECOND_FACTOR_AMR.contains(&m.as_str()))
    {
        amr.push("mfa".into());
    }
    if amr.is_empty() {
        amr.push("fed".into());
    }
    let now = gw.clock.now();
    let auth_time = claims
        .auth_time()
        .map(|t| t.timestamp())
        .filter(|t| *t <= now + 60);
    // A fresh login was asked for: the upstream must say it happened.
    if let Some(sent) = fresh_since {
        if auth_time.is_none_or(|t| t + 60 < sent) {
            return Err(Failure::InvalidToken(
                "a fresh authentication was asked for, but auth_time is older or missing".into(),
            ));
        }
    }
    // Asked with `max_age`, the upstream must say when: a login of unknown
    // age never passes as a fresh one.
    let auth_time = auth_time.ok_or_else(|| {
        Failure::InvalidToken("the ID token has no auth_time although max_age was sent".into())
    })?;
    let subject = claim_str(&raw, &idp.cfg.claims.subject)
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or(Failure::NoAccount("the subject claim is missing"))?;
    Ok(Asserted {
        id_token: id_token.to_string(),
        subject,
        claims: raw,
        loa,
        amr,
        auth_time,
    })
}

/// The client authentication the upstream accepts: HTTP Basic (the
/// default of OAuth 2.0), or the secret in the form when it says it only
/// takes that.
fn auth_type(md: &ProviderMetadataWithLogout) -> openidconnect::AuthType {
    use openidconnect::core::CoreClientAuthMethod as M;
    match md.token_endpoint_auth_methods_supported() {
        Some(m) if !m.contains(&M::ClientSecretBasic) && m.contains(&M::ClientSecretPost) => {
            openidconnect::AuthType::RequestBody
        }
        _ => openidconnect::AuthType::BasicAuth,
    }
}

/// Authentication method references of RFC 8176, and `fed` for a login
/// federated without one.
const RFC8176: &[&str] = &[
    "face", "fpt", "geo", "hwk", "iris", "kba", "mca", "mfa", "otp", "pin", "pwd", "rba", "retina",
    "sc", "sms", "swk", "tel", "user", "vbm", "wia",
];

fn classify(e: &openidconnect::ClaimsVerificationError) -> Failure {
    match e {
        openidconnect::ClaimsVerificationError::InvalidNonce(_) => Failure::Nonce,
        other => Failure::InvalidToken(other.to_string()),
    }
}

fn claim_str(claims: &Value, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn claim_list(claims: &Value, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The interkom account of an upstream identity: linked before, linked now
/// to an existing account, or created; profile and roles brought in step.
/// Whatever the link says, the account must lie in the upstream's subtree.
async fn resolve_account(
    gw: &Gateway,
    meta: &Meta,
    idp: &Upstream,
    a: &Asserted,
) -> Result<User, Failure> {
    let user = match linked_account(gw, idp, &a.subject).await? {
        Some(u) => u,
        None => link_or_create(gw, meta, idp, a).await?,
    };
    if !in_subtree(gw, &user.tenant, &idp.cfg.tenant) {
        return Err(Failure::NoAccount(
            "the linked account lies outside this upstream's tenant",
        ));
    }
    if user.disabled != 0 {
        return Err(Failure::NoAccount("the account is locked"));
    }
    // The upstream is the source of truth for what it asserts.
    let name = claim_str(&a.claims, &idp.cfg.claims.name);
    let email = claim_str(&a.claims, &idp.cfg.claims.email);
    if name.is_some() && name != user.name || email.is_some() && email != user.email {
        gw.set_profile(
            &user.id,
            name.as_deref().or(user.name.as_deref()),
            email.as_deref().or(user.email.as_deref()),
        )
        .await?;
    }
    sync_roles(gw, idp, &user, &a.claims).await?;
    Ok(accounts::user_by_id(&gw.pool, &user.id)
        .await?
        .unwrap_or(user))
}

/// The account linked to this subject by this upstream's issuer (a link
/// made by another IdP under the same id counts for nothing).
async fn linked_account(
    gw: &Gateway,
    idp: &Upstream,
    subject: &str,
) -> Result<Option<User>, Failure> {
    let linked: Option<String> = sqlx::query_scalar(
        "SELECT user_id FROM upstream_links WHERE upstream = $1 AND subject = $2 AND issuer = $3",
    )
    .bind(&idp.cfg.id)
    .bind(subject)
    .bind(norm_issuer(&idp.cfg.issuer))
    .fetch_optional(&gw.pool)
    .await
    .map_err(GatewayError::from)?;
    match linked {
        Some(id) => {
            Ok(Some(accounts::user_by_id(&gw.pool, &id).await?.ok_or(
                Failure::NoAccount("the linked account no longer exists"),
            )?))
        }
        None => Ok(None),
    }
}

async fn link_or_create(
    gw: &Gateway,
    meta: &Meta,
    idp: &Upstream,
    a: &Asserted,
) -> Result<User, Failure> {
    let username_claim = claim_str(&a.claims, &idp.cfg.claims.username);
    let existing = match (&username_claim, idp.cfg.link_existing) {
        (Some(u), true) => accounts::user_by_username(&gw.pool, u)
            .await?
            .filter(|u| in_subtree(gw, &u.tenant, &idp.cfg.tenant)),
        _ => None,
    };
    let (user, action) = match existing {
        Some(u) => (u, Action::AccountLinked),
        None if idp.cfg.create_accounts => {
            let base = username_claim.unwrap_or_else(|| a.subject.clone());
            let name = claim_str(&a.claims, &idp.cfg.claims.name);
            let email = claim_str(&a.claims, &idp.cfg.claims.email);
            (
                provision(gw, idp, &base, name.as_deref(), email.as_deref()).await?,
                Action::AccountProvisioned,
            )
        }
        None => return Err(Failure::NoAccount("no account is linked to this identity")),
    };
    let inserted = sqlx::query(
        "INSERT INTO upstream_links (upstream, subject, issuer, user_id, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&idp.cfg.id)
    .bind(&a.subject)
    .bind(norm_issuer(&idp.cfg.issuer))
    .bind(&user.id)
    .bind(gw.clock.now())
    .execute(&gw.pool)
    .await;
    match inserted {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            // Another first login of this identity won the race: its link
            // stands, the account made here goes.
            if action == Action::AccountProvisioned {
                discard(gw, &user.id).await?;
            }
            return linked_account(gw, idp, &a.subject)
                .await?
                .ok_or(Failure::NoAccount(
                    "the account is linked to another identity of this upstream",
                ));
        }
        Err(e) => return Err(GatewayError::from(e).into()),
    }
    let ev = gw.about(
        AuditEvent::new(action, Outcome::Success)
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(json!({ "upstream": idp.cfg.id, "username": user.username })),
        &user,
    );
    gw.audit.append(ev).await.map_err(GatewayError::from)?;
    Ok(user)
}

/// Removes an account created for a first login that lost a race (it has
/// no roles, sessions or links yet).
async fn discard(gw: &Gateway, user_id: &str) -> Result<(), Failure> {
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user_id)
        .execute(&gw.pool)
        .await
        .map_err(GatewayError::from)?;
    Ok(())
}

fn in_subtree(gw: &Gateway, tenant: &str, root: &str) -> bool {
    gw.tenants
        .get(tenant)
        .is_some_and(|t| t.path.iter().any(|p| p == root))
}

/// Creates the account of a first login: in the upstream's tenant, without
/// a local password, named `<username>@<upstream>`.
async fn provision(
    gw: &Gateway,
    idp: &Upstream,
    base: &str,
    name: Option<&str>,
    email: Option<&str>,
) -> Result<User, Failure> {
    let clean: String = base
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(80)
        .collect();
    let clean = if clean.is_empty() {
        "konto".to_owned()
    } else {
        clean
    };
    let now = gw.clock.now();
    for n in 0..5 {
        let username = if n == 0 {
            format!("{clean}@{}", idp.cfg.id)
        } else {
            format!("{clean}-{n}@{}", idp.cfg.id)
        };
        let id = uuid::Uuid::new_v4().to_string();
        let inserted = sqlx::query(
            "INSERT INTO users (id, tenant, username, password_hash, name, email, disabled, created_at) \
             VALUES ($1, $2, $3, NULL, $4, $5, 0, $6)",
        )
        .bind(&id)
        .bind(&idp.cfg.tenant)
        .bind(&username)
        .bind(name)
        .bind(email)
        .bind(now)
        .execute(&gw.pool)
        .await;
        match inserted {
            Ok(_) => {
                interkom_policy::store::touch(&gw.pool)
                    .await
                    .map_err(GatewayError::from)?;
                gw.policy.reload().await.map_err(GatewayError::from)?;
                return accounts::user_by_id(&gw.pool, &id)
                    .await?
                    .ok_or(Failure::NoAccount("the new account vanished"));
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
            Err(e) => return Err(GatewayError::from(e).into()),
        }
    }
    Err(Failure::NoAccount("no free username for the new account"))
}

/// Roles the mapping names follow the upstream's groups; others stay.
async fn sync_roles(
    gw: &Gateway,
    idp: &Upstream,
    user: &User,
    claims: &Value,
) -> Result<(), Failure> {
    let Some(claim) = &idp.cfg.claims.groups else {
        return Ok(());
    };
    if idp.cfg.roles.is_empty() {
        return Ok(());
    }
    let groups = claim_list(claims, claim);
    let wanted: std::collections::BTreeSet<&String> = idp
        .cfg
        .roles
        .iter()
        .filter(|(g, _)| groups.contains(g))
        .map(|(_, r)| r)
        .collect();
    let managed: std::collections::BTreeSet<&String> = idp.cfg.roles.values().collect();
    let held = interkom_policy::roles::roles_in(&gw.pool, &user.id, &idp.cfg.tenant)
        .await
        .map_err(GatewayError::from)?;
    let mut changed = false;
    for role in managed {
        let has = held.contains(role);
        if wanted.contains(role) && !has {
            interkom_policy::roles::assign(&gw.pool, &user.id, &idp.cfg.tenant, role)
                .await
                .map_err(GatewayError::from)?;
            changed = true;
        } else if !wanted.contains(role) && has {
            interkom_policy::roles::unassign(&gw.pool, &user.id, &idp.cfg.tenant, role)
                .await
                .map_err(GatewayError::from)?;
            changed = true;
        }
    }
    if changed {
        gw.policy.reload().await.map_err(GatewayError::from)?;
    }
    Ok(())
}

/// The domain of a `login_hint` that is an address.
pub(crate) fn hint_domain(login_hint: &str) -> Option<&str> {
    login_hint.rsplit_once('@').map(|(_, d)| d)
}

/// The upstream a `login_hint` (an address in one of its domains) or an
/// `idp_hint` names.
pub(crate) fn chosen<'a>(
    list: &'a [Arc<Upstream>],
    req: &AuthRequest,
) -> Option<&'a Arc<Upstream>> {
    if let Some(h) = &req.idp_hint {
        if let Some(u) = list.iter().find(|u| &u.cfg.id == h) {
            return Some(u);
        }
    }
    let domain = req.login_hint.as_deref().and_then(hint_domain)?;
    list.iter()
        .find(|u| u.cfg.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_endpoints_stay_off_this_machine_and_internal_networks() {
        assert!(check_endpoint("https://login.hitzacker.example", false).is_ok());
        assert!(check_endpoint("https://203.0.113.7/idp", false).is_ok());
        for bad in [
            "http://login.hitzacker.example",
            "https://127.0.0.1:8443",
            "https://localhost",
            "https://10.1.2.3",
            "https://192.168.0.1",
            "https://172.16.5.5",
            "https://169.254.169.254/latest/meta-data",
            "https://[fd00::1]",
            "https://[fe80::1]",
            "https://0.0.0.0",
            "https://[::ffff:169.254.169.254]",
            "https://[::ffff:10.0.0.1]",
            "https://100.64.0.1",
            "https://224.0.0.1",
            "https://localhost.",
            "https://idp.localhost",
            "not a url",
        ] {
            assert!(check_endpoint(bad, false).is_err(), "{bad}");
        }
        // Loopback over http only when allowed (tests, local setups).
        assert!(check_endpoint("http://127.0.0.1:9000", true).is_ok());
        assert!(check_endpoint("http://localhost:9000", true).is_ok());
        assert!(check_endpoint("http://10.0.0.1", true).is_err());
        // What the resolver lets through.
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(public_ip(ip("203.0.113.7"), false));
        assert!(public_ip(ip("2001:db8::1"), false));
        assert!(!public_ip(ip("::ffff:127.0.0.1"), false));
        assert!(public_ip(ip("::ffff:127.0.0.1"), true));
        assert!(!public_ip(ip("::ffff:192.168.1.1"), true));
        assert!(!public_ip(ip("169.254.169.254"), true));
    }
}
