//! The registration of a Kommune's directory (Active Directory or an
//! OpenLDAP/Univention server): where it is, how interkom finds a person
//! there, and what their groups mean here. The kind sets the defaults of
//! everything the two differ in; each default can be overridden.

use std::collections::BTreeMap;
use std::time::Duration;

use interkom_types::{Secret, TenantId};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

/// Which kind of server: it picks the default filters and attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryKind {
    /// Microsoft Active Directory or Samba AD.
    ActiveDirectory,
    /// OpenLDAP, Univention, 389 DS and others of the RFC 4519 schema.
    Openldap,
}

/// How the groups of a person are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupLookup {
    /// AD's in-chain rule (1.2.840.113556.1.4.1941): every group, nested
    /// ones included, in one search.
    InChain,
    /// The groups naming the person as `member`, and the groups naming
    /// those, level by level (a cycle ends the walk).
    GroupSearch,
    /// The person's `memberOf` values only (no nesting).
    MemberOf,
}

/// Attribute names where they differ from the kind's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributeNames {
    /// The immutable id the account is linked on (`objectGUID`, `entryUUID`).
    pub id: Option<String>,
    /// The login name (`sAMAccountName`, `uid`).
    pub username: Option<String>,
    pub name: Option<String>,
    pub mail: Option<String>,
}

/// One directory of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySourceConfig {
    /// A slug, e.g. `ad-hitzacker`; accounts made from it are named
    /// `<username>@<id>`.
    pub id: String,
    /// The tenant whose staff it holds (accounts in its subtree).
    pub tenant: TenantId,
    /// Shown on the login page, e.g. "Stadt Hitzacker (Elbe)".
    pub name: String,
    pub kind: DirectoryKind,
    /// Tried in order; the next one on a connection failure. `ldaps://`,
    /// or `ldap://` with StartTLS (or plain, see `allow_plain`).
    pub servers: Vec<String>,
    /// The Kommune's own CA (PEM); without it the system's roots.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Plain `ldap://` without TLS, only to this machine (tests).
    #[serde(default)]
    pub allow_plain: bool,
    /// Where people are searched.
    pub base_dn: String,
    /// The service account of the search bind.
    pub bind_dn: String,
    /// Kept sealed in the database, never in the stored configuration.
    #[serde(default, skip_serializing)]
    pub bind_password: Option<Secret>,
    /// Finds one person; `{username}` is the name typed (without a
    /// domain), `{login}` as typed, both escaped (RFC 4515).
    #[serde(default)]
    pub user_filter: Option<String>,
    /// Finds every person (provisioning).
    #[serde(default)]
    pub users_filter: Option<String>,
    #[serde(default)]
    pub attributes: AttributeNames,
    #[serde(default)]
    pub groups: Option<GroupLookup>,
    /// Where groups are searched (default: `base_dn`).
    #[serde(default)]
    pub group_base_dn: Option<String>,
    /// A person this filter matches (as a base search on their entry) may
    /// not log in, e.g. `(memberOf=cn=gesperrt,ou=groups,dc=…)`.
    #[serde(default)]
    pub disabled_filter: Option<String>,
    /// Group DN → interkom role in `tenant`. Roles named here are kept in
    /// step with the groups at every login and sync; others stay.
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
    /// Login domains (UPN suffixes): `name@domain` typed on the login form
    /// goes to this directory.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Link a first login to the existing account whose username equals the
    /// directory's (only accounts in `tenant`'s subtree).
    #[serde(default)]
    pub link_existing: bool,
    /// Create an account on first login (and at a sync).
    #[serde(default = "yes")]
    pub create_accounts: bool,
    /// Connecting to one server, in milliseconds.
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Each operation, in milliseconds.
    #[serde(default = "default_op_ms")]
    pub timeout_ms: u64,
    /// Failed passwords for one person within the brute-force window
    /// before interkom stops asking the directory (below the directory's
    /// own lockout threshold, so guessing here never locks them out there).
    #[serde(default = "default_max_failures")]
    pub max_failures: i64,
    /// Connections kept open per node (for searches, and again for binds).
    #[serde(default = "default_pool")]
    pub pool_size: usize,
    /// Import people and groups every this many seconds (none: only at
    /// login and by `interkom directory sync`).
    #[serde(default)]
    pub sync_interval_seconds: Option<u64>,
}

fn yes() -> bool {
    true
}
fn default_connect_ms() -> u64 {
    3000
}
fn default_op_ms() -> u64 {
    3000
}
fn default_pool() -> usize {
    4
}
fn default_max_failures() -> i64 {
    4
}

/// The names a directory of this kind uses, with the overrides applied.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub user_filter: String,
    pub users_filter: String,
    pub id: String,
    pub username: String,
    pub name: String,
    pub mail: String,
    pub groups: GroupLookup,
    pub group_filter: &'static str,
}

impl DirectorySourceConfig {
    /// The kind's defaults with this registration's overrides.
    pub fn resolved(&self) -> Resolved {
        let a = &self.attributes;
        let pick = |o: &Option<String>, d: &str| o.clone().unwrap_or_else(|| d.to_owned());
        match self.kind {
            DirectoryKind::ActiveDirectory => Resolved {
                user_filter: pick(
                    &self.user_filter,
                    "(&(objectCategory=person)(objectClass=user)(|(sAMAccountName={username})(userPrincipalName={login})))",
                ),
                users_filter: pick(&self.users_filter, "(&(objectCategory=person)(objectClass=user))"),
                id: pick(&a.id, "objectGUID"),
                username: pick(&a.username, "sAMAccountName"),
                name: pick(&a.name, "displayName"),
                mail: pick(&a.mail, "mail"),
                groups: self.groups.unwrap_or(GroupLookup::InChain),
                group_filter: "(objectClass=group)",
            },
            DirectoryKind::Openldap => Resolved {
                user_filter: pick(&self.user_filter, "(&(objectClass=inetOrgPerson)(uid={username}))"),
                users_filter: pick(&self.users_filter, "(objectClass=inetOrgPerson)"),
                id: pick(&a.id, "entryUUID"),
                username: pick(&a.username, "uid"),
                name: pick(&a.name, "cn"),
                mail: pick(&a.mail, "mail"),
                groups: self.groups.unwrap_or(GroupLookup::GroupSearch),
                group_filter: "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
            },
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Whether `domain` (of a name typed as `name@domain`) is one of this
    /// directory's.
    pub fn has_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self, tenants: &interkom_policy::TenantTree) -> Result<(), String> {
        let mut errs = Vec::new();
        if !crate::upstreams::valid_slug(&self.id) {
            errs.push(format!(
                "directory id `{}` must be a slug of a-z, 0-9 and '-'",
                self.id
            ));
        }
        if tenants.get(&self.tenant).is_none() {
            errs.push(format!("unknown tenant `{}`", self.tenant));
        }
        if self.name.trim().is_empty() {
            errs.push("name is required".into());
        }
        if self.servers.is_empty() || self.servers.len() > 8 {
            errs.push("one to eight servers".into());
        }
        for s in &self.servers {
            if let Err(e) = check_server(s, self.allow_plain) {
                errs.push(e);
            }
        }
        if let Some(pem) = &self.ca_pem {
            if parse_ca(pem).is_err() {
                errs.push("ca_pem holds no readable certificate".into());
            }
        }
        for (what, dn) in [("base_dn", &self.base_dn), ("bind_dn", &self.bind_dn)] {
            if dn.trim().is_empty() || dn.len() > 1024 {
                errs.push(format!("{what} is required"));
            }
        }
        let r = self.resolved();
        for (what, f) in [
            ("user_filter", r.user_filter.as_str()),
            ("users_filter", r.users_filter.as_str()),
        ] {
            // The placeholders stand for escaped values: parse with a sample.
            let sample = f.replace("{username}", "x").replace("{login}", "x");
            if ldap3::parse_filter(&sample).is_err() {
                errs.push(format!("{what} is not an LDAP filter (RFC 4515)"));
            }
        }
        if !r.user_filter.contains("{username}") && !r.user_filter.contains("{login}") {
            errs.push("user_filter must use {username} or {login}".into());
        }
        if let Some(f) = &self.disabled_filter {
            if ldap3::parse_filter(f).is_err() {
                errs.push("disabled_filter is not an LDAP filter (RFC 4515)".into());
            }
        }
        if let Some(r) = self
            .roles
            .values()
            .find(|r| !interkom_policy::roles::valid_role(r))
        {
            errs.push(format!("invalid role name `{r}`"));
        }
        if !(100..=20_000).contains(&self.connect_timeout_ms)
            || !(100..=20_000).contains(&self.timeout_ms)
        {
            errs.push("timeouts must be between 100 and 20000 ms".into());
        }
        if !(1..=50).contains(&self.max_failures) {
            errs.push("max_failures must be between 1 and 50".into());
        }
        if !(1..=32).contains(&self.pool_size) {
            errs.push("pool_size must be between 1 and 32".into());
        }
        if self.sync_interval_seconds.is_some_and(|s| s < 60) {
            errs.push("sync_interval_seconds must be at least 60".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!("directory `{}`: {}", self.id, errs.join("; ")))
        }
    }
}

/// The certificates of a PEM bundle.
pub(crate) fn parse_ca(pem: &str) -> Result<Vec<CertificateDer<'static>>, ()> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| ())?;
    if certs.is_empty() {
        return Err(());
    }
    Ok(certs)
}

/// A server URL interkom may use: `ldaps://`, or `ldap://` (StartTLS);
/// without TLS only when allowed, and only to this machine.
pub fn check_server(raw: &str, allow_plain: bool) -> Result<(), String> {
    let u = url::Url::parse(raw).map_err(|e| format!("server `{raw}`: {e}"))?;
    // Exactly as the parser reads it: `LDAP://`, spaces or tabs would be
    // read one way here and another by the connection (no TLS at all).
    if u.as_str().trim_end_matches('/') != raw.trim_end_matches('/') {
        return Err(format!(
            "server `{raw}`: write it as `{}` (lower-case scheme, no spaces)",
            u.as_str().trim_end_matches('/')
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("server `{raw}` has no host"));
    }
    if !u.path().is_empty() && u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
        return Err(format!("server `{raw}`: only scheme, host and port"));
    }
    match u.scheme() {
        "ldaps" => Ok(()),
        "ldap" if !allow_plain => Ok(()),
        "ldap" if loopback(&u) => Ok(()),
        "ldap" => Err(format!(
            "server `{raw}`: plain LDAP only to this machine (tests)"
        )),
        s => Err(format!("server `{raw}`: scheme `{s}` is not ldaps or ldap")),
    }
}

/// For `ldap:` URLs (not a special scheme) the host is opaque text.
fn loopback(u: &url::Url) -> bool {
    let host = u.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ldap_only_to_this_machine_and_only_when_allowed() {
        assert!(check_server("ldaps://dc1.hitzacker.example", false).is_ok());
        assert!(check_server("ldaps://10.1.2.3:636", false).is_ok());
        // ldap:// without allow_plain means StartTLS.
        assert!(check_server("ldap://dc1.hitzacker.example", false).is_ok());
        assert!(check_server("ldap://127.0.0.1:3890", true).is_ok());
        assert!(check_server("ldap://dc1.hitzacker.example", true).is_err());
        assert!(check_server("ldap://10.0.0.1", true).is_err());
        assert!(check_server("ldap://[::1]:3890", true).is_ok());
        assert!(check_server("ldap://localhost:3890", true).is_ok());
        assert!(check_server("ldap://127.0.0.1.example:3890", true).is_err());
        assert!(check_server("http://dc1.hitzacker.example", false).is_err());
        assert!(check_server("ldaps://dc1/dc=x?cn", false).is_err());
        assert!(check_server("ldaps://", false).is_err());
        // Read differently by another parser: refused, never plain.
        assert!(check_server("LDAP://dc1.hitzacker.example", false).is_err());
        assert!(check_server(" ldap://dc1.hitzacker.example", false).is_err());
        assert!(check_server("ld\tap://dc1.hitzacker.example", false).is_err());
        // (The host's case changes nothing: names compare case-blind.)
        assert!(check_server("ldaps://DC1.hitzacker.example", false).is_ok());
    }
}
