//! Registered upstream OpenID Providers (a municipality's own IdP) and the
//! links of their identities to accounts.
//!
//! Each upstream belongs to a tenant: the accounts it vouches for live in
//! that tenant's subtree, its groups map to roles there, and its `acr`
//! values map to interkom's levels of assurance only as far as the
//! registration trusts it. Its client secret is sealed, bound to the
//! upstream and its issuer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use interkom_types::{Loa, Secret, TenantId};
use serde::{Deserialize, Serialize};

use crate::{Directory, DirectoryError, User};

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
    pub tenant: TenantId,
    /// Shown on the login page, e.g. "Stadt Hitzacker (Elbe)".
    pub name: String,
    /// The upstream's issuer (discovery at `/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// Kept sealed in the database, never in the stored configuration.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<Secret>,
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

pub(crate) fn valid_slug(id: &str) -> bool {
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
pub fn check_endpoint(raw: &str, allow_loopback: bool) -> Result<(), String> {
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
pub fn public_ip(ip: std::net::IpAddr, allow_loopback: bool) -> bool {
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

/// An upstream as loaded, with its secret opened.
#[derive(Debug)]
pub struct Upstream {
    pub cfg: UpstreamConfig,
    /// The client secret at the upstream, opened.
    pub secret: Option<Secret>,
}

impl Upstream {
    /// The highest level a login there can reach here.
    pub fn max_loa(&self) -> Option<Loa> {
        self.cfg
            .acr
            .values()
            .chain(self.cfg.default_loa.iter())
            .max()
            .copied()
    }

    /// The upstream `acr` values worth asking for to reach `need`, the
    /// weakest sufficient first.
    pub fn acr_values_for(&self, need: Loa) -> Vec<String> {
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

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.timeout_seconds)
    }
}

/// Every upstream, ordered by name.
pub type UpstreamList = Arc<Vec<Arc<Upstream>>>;

/// The upstreams as last read (a few seconds), and a counter of changes
/// made on this node (what is cached about an upstream elsewhere, such as
/// its discovery document, is dropped when it moves).
#[derive(Default)]
pub(crate) struct UpstreamCache {
    list: RwLock<Option<(i64, UpstreamList)>>,
    generation: AtomicU64,
}

/// The secret is bound to the upstream and its issuer: configured anew
/// for another issuer, the old secret opens no more (it is never sent to
/// another IdP).
fn secret_aad(id: &str, issuer: &str) -> String {
    format!("upstream|{id}|{}", norm_issuer(issuer))
}

/// An issuer as compared and stored with links: without a trailing slash.
pub fn norm_issuer(issuer: &str) -> &str {
    issuer.trim_end_matches('/')
}

impl Directory {
    /// Creates or replaces an upstream; the secret is kept when the new
    /// configuration has none.
    pub async fn put_upstream(&self, cfg: UpstreamConfig) -> Result<(), DirectoryError> {
        cfg.validate(&self.0.tenants, self.0.cfg.upstream_allow_loopback)
            .map_err(DirectoryError::Invalid)?;
        let sealed = match &cfg.client_secret {
            Some(s) => Some(
                self.0
                    .master
                    .encrypt(s.expose().as_bytes(), &secret_aad(&cfg.id, &cfg.issuer))
                    .map_err(|_| DirectoryError::Crypto("cannot seal the upstream secret"))?,
            ),
            None => None,
        };
        // A domain names one upstream, or `login_hint` would be ambiguous.
        let others = self.upstreams().await?;
        if let Some(d) = cfg.domains.iter().find(|d| {
            others.iter().any(|o| {
                o.cfg.id != cfg.id && o.cfg.domains.iter().any(|x| x.eq_ignore_ascii_case(d))
            })
        }) {
            return Err(DirectoryError::Invalid(format!(
                "domain `{d}` belongs to another upstream"
            )));
        }
        // The stored secret stays only for the same issuer.
        let stored: Option<String> =
            sqlx::query_scalar("SELECT config FROM upstream_idps WHERE id = $1")
                .bind(&cfg.id)
                .fetch_optional(&self.0.pool)
                .await?;
        let same_issuer_as_stored = stored
            .and_then(|c| serde_json::from_str::<UpstreamConfig>(&c).ok())
            .is_some_and(|old| norm_issuer(&old.issuer) == norm_issuer(&cfg.issuer));
        let json = serde_json::to_string(&cfg)?;
        let now = self.0.clock.now();
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
        .execute(&self.0.pool)
        .await?;
        self.forget_upstreams();
        Ok(())
    }

    /// Removes an upstream (its links stay, so that it can come back).
    pub async fn delete_upstream(&self, id: &str) -> Result<bool, DirectoryError> {
        let n = sqlx::query("DELETE FROM upstream_idps WHERE id = $1")
            .bind(id)
            .execute(&self.0.pool)
            .await?
            .rows_affected();
        self.forget_upstreams();
        Ok(n > 0)
    }

    /// Every configured upstream, without its secret, and whether it has
    /// one.
    pub async fn list_upstreams(&self) -> Result<Vec<(UpstreamConfig, bool)>, DirectoryError> {
        Ok(self
            .upstreams()
            .await?
            .iter()
            .map(|u| (u.cfg.clone(), u.secret.is_some()))
            .collect())
    }

    /// Changes to upstreams made on this node so far.
    pub fn upstream_generation(&self) -> u64 {
        self.0.upstreams.generation.load(Ordering::Relaxed)
    }

    fn forget_upstreams(&self) {
        if let Ok(mut l) = self.0.upstreams.list.write() {
            *l = None;
        }
        self.0.upstreams.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// All upstreams with their secrets opened, ordered by name; cached for
    /// a few seconds.
    pub async fn upstreams(&self) -> Result<UpstreamList, DirectoryError> {
        let now = self.0.clock.now();
        if let Ok(l) = self.0.upstreams.list.read() {
            if let Some((at, list)) = l.as_ref() {
                if now - at < self.0.cfg.cache_ttl {
                    return Ok(list.clone());
                }
            }
        }
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT id, config, secret_enc FROM upstream_idps")
                .fetch_all(&self.0.pool)
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
            let secret = sealed
                .and_then(|s| {
                    self.0
                        .master
                        .decrypt(&s, &secret_aad(&id, &cfg.issuer))
                        .ok()
                })
                .and_then(|p| String::from_utf8(p).ok())
                .map(Secret::from);
            list.push(Arc::new(Upstream { cfg, secret }));
        }
        list.sort_by(|a, b| a.cfg.name.cmp(&b.cfg.name));
        let list = Arc::new(list);
        if let Ok(mut l) = self.0.upstreams.list.write() {
            *l = Some((now, list.clone()));
        }
        Ok(list)
    }

    pub async fn upstream(&self, id: &str) -> Result<Option<Arc<Upstream>>, DirectoryError> {
        Ok(self
            .upstreams()
            .await?
            .iter()
            .find(|u| u.cfg.id == id)
            .cloned())
    }

    /// The upstreams an account is linked to.
    pub async fn linked_upstreams(
        &self,
        user_id: &str,
    ) -> Result<Vec<Arc<Upstream>>, DirectoryError> {
        let links: Vec<(String, String)> =
            sqlx::query_as("SELECT upstream, issuer FROM upstream_links WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&self.0.pool)
                .await?;
        let all = self.upstreams().await?;
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

    /// The account linked to `subject` by this upstream's issuer (a link
    /// made by another IdP under the same id counts for nothing): `Some(None)`
    /// when the link names an account that no longer exists.
    pub async fn linked_account(
        &self,
        idp: &Upstream,
        subject: &str,
    ) -> Result<Option<Option<User>>, DirectoryError> {
        let linked: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM upstream_links WHERE upstream = $1 AND subject = $2 AND issuer = $3",
        )
        .bind(&idp.cfg.id)
        .bind(subject)
        .bind(norm_issuer(&idp.cfg.issuer))
        .fetch_optional(&self.0.pool)
        .await?;
        match linked {
            Some(id) => Ok(Some(self.user(&id).await?)),
            None => Ok(None),
        }
    }

    /// Links an upstream identity to an account; false when the identity
    /// is linked already (another first login won the race).
    pub async fn link(
        &self,
        idp: &Upstream,
        subject: &str,
        user_id: &str,
    ) -> Result<bool, DirectoryError> {
        let inserted = sqlx::query(
            "INSERT INTO upstream_links (upstream, subject, issuer, user_id, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&idp.cfg.id)
        .bind(subject)
        .bind(norm_issuer(&idp.cfg.issuer))
        .bind(user_id)
        .bind(self.0.clock.now())
        .execute(&self.0.pool)
        .await;
        crate::inserted(inserted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_never_prints_its_secret() {
        let cfg: UpstreamConfig = serde_json::from_value(serde_json::json!({
            "id": "idp-hitzacker", "tenant": "hitzacker", "name": "Hitzacker",
            "issuer": "https://login.hitzacker.example", "client_id": "interkom",
            "client_secret": "upstream-geheimnis-2026", "default_loa": "low",
        }))
        .unwrap();
        assert!(!format!("{cfg:?}").contains("upstream-geheimnis"));
        assert!(!serde_json::to_string(&cfg)
            .unwrap()
            .contains("upstream-geheimnis"));
    }

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
