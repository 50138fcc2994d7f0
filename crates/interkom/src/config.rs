//! Configuration in two layers: the file form (TOML, overridable by
//! `INTERKOM_*` environment variables, unknown keys rejected) and the typed
//! configuration the server runs with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use interkom_audit::forward::ForwardFormat;
use interkom_audit::CheckpointKey;
use interkom_directory::MasterKey;
use interkom_gateway::{Alg, Argon2Config, GatewayConfig, SourcePseudonymisation};
use interkom_policy::TenantSpec;
use interkom_types::Secret;
use serde::Deserialize;
use url::Url;

/// Top-level keys that environment variables may set (`INTERKOM_<KEY>`,
/// nested keys with `__`, e.g. `INTERKOM_TOKENS__ACCESS_TOKEN_TTL`).
const ENV_KEYS: &[&str] = &[
    "listen",
    "issuer",
    "database_url",
    "key_encryption_key",
    "key_encryption_key_file",
    "log",
    "tokens",
    "password",
    "brute_force",
    "backchannel",
    "authzen",
    "admin",
    "brokering",
    "passkeys",
    "audit",
    "demo",
    "policy_dir",
    "policy_poll_seconds",
    "tls",
];

/// A database URL: its password, if it has one, is never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(url.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::db::redact(&self.0))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// The public issuer URL, e.g. `https://login.landkreis.example`.
    pub issuer: String,
    /// `sqlite://data/interkom.db` or `postgres://user@host/db`.
    pub database_url: DatabaseUrl,
    /// The key-encryption key (32 bytes, base64). Takes precedence over the file.
    #[serde(default)]
    pub key_encryption_key: Option<Secret>,
    /// A file holding the key-encryption key; created on first start if missing.
    #[serde(default)]
    pub key_encryption_key_file: Option<PathBuf>,
    /// Log filter, e.g. `info` or `interkom=debug,info`.
    #[serde(default = "default_log")]
    pub log: String,
    #[serde(default)]
    pub tokens: TokensConfig,
    #[serde(default)]
    pub password: Argon2Config,
    /// Growing delays and temporary lockout after failed logins.
    #[serde(default)]
    pub brute_force: interkom_gateway::BruteForceConfig,
    #[serde(default)]
    pub backchannel: BackchannelFileConfig,
    #[serde(default)]
    pub authzen: AuthzenConfig,
    /// Administration as a resource: what a person's login must show.
    #[serde(default)]
    pub admin: AdminFileConfig,
    #[serde(default)]
    pub brokering: BrokeringFileConfig,
    #[serde(default)]
    pub passkeys: PasskeysFileConfig,
    /// The municipalities' own OpenID Providers (identity brokering); more
    /// can be added through the admin API.
    #[serde(default)]
    pub upstreams: Vec<interkom_directory::UpstreamConfig>,
    /// The municipalities' Active Directories and LDAP servers (staff
    /// accounts); more can be added through the admin API.
    #[serde(default)]
    pub directories: Vec<interkom_directory::ldap::DirectorySourceConfig>,
    /// SAML identity sources of citizens and businesses (BundID, Mein
    /// Unternehmenskonto), with `metadata_file` or `metadata_url`.
    #[serde(default)]
    pub saml_sources: Vec<interkom_directory::saml_sources::SamlSourceConfig>,
    /// Accounts of citizens and businesses.
    #[serde(default)]
    pub people: PeopleFileConfig,
    #[serde(default)]
    pub audit: AuditFileConfig,
    /// The administrative tree.
    #[serde(default)]
    pub tenants: Vec<TenantSpec>,
    #[serde(default)]
    pub demo: DemoConfig,
    /// The policy directory: casbin model, baseline policy, protection-need
    /// mapping (INTERKOM_POLICY_DIR).
    #[serde(default = "default_policy_dir")]
    pub policy_dir: PathBuf,
    /// How often a node checks the live policy's version for changes made on
    /// other nodes (on PostgreSQL they are also announced at once).
    #[serde(default = "default_policy_poll")]
    pub policy_poll_seconds: u64,
    #[serde(default)]
    pub tls: TlsFileConfig,
}

/// `[people]`: accounts of citizens and businesses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeopleFileConfig {
    /// Days without a login after which such an account is deleted
    /// (DSGVO; default 12 months).
    pub delete_after_days: i64,
}

impl Default for PeopleFileConfig {
    fn default() -> Self {
        PeopleFileConfig {
            delete_after_days: 365,
        }
    }
}

/// Passkeys (WebAuthn) as the local second factor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasskeysFileConfig {
    /// What a passkey that cannot leave its device (a security key, a
    /// TPM) reaches: `substantial`, or `high` by the operator's decision.
    /// Synced passkeys reach `substantial`.
    pub device_bound_loa: interkom_policy::Loa,
}

impl Default for PasskeysFileConfig {
    fn default() -> Self {
        PasskeysFileConfig {
            device_bound_loa: interkom_policy::Loa::Substantial,
        }
    }
}

/// Identity brokering.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokeringFileConfig {
    /// Allow upstream IdPs over plain HTTP on this machine (tests and local
    /// setups only; everywhere else an upstream is https).
    pub allow_loopback: bool,
}

/// Back-channel logout.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackchannelFileConfig {
    /// Allow `backchannel_logout_uri`s on this machine (tests and local
    /// setups only: in production a client there is a way into the host).
    pub allow_loopback: bool,
}

/// `[admin]`: the console and the admin API as a resource with a
/// protection need.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminFileConfig {
    /// The least level of an administrator's login (`substantial`: a
    /// second factor).
    pub required_acr: interkom_policy::Loa,
    /// Seconds a login may be old to approve a change to `sehr_hoch` data.
    pub approval_max_age_seconds: i64,
}

impl Default for AdminFileConfig {
    fn default() -> Self {
        AdminFileConfig {
            required_acr: interkom_policy::Loa::Substantial,
            approval_max_age_seconds: 900,
        }
    }
}

/// The AuthZEN PDP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthzenConfig {
    /// Requests per second one client may make (0: no limit).
    pub rate_limit: u32,
    /// Requests one client may make at once after a pause.
    pub burst: u32,
}

impl Default for AuthzenConfig {
    fn default() -> Self {
        AuthzenConfig {
            rate_limit: 200,
            burst: 400,
        }
    }
}

/// TLS (rustls): certificate and key files, reloaded when they change.
/// Without them interkom speaks plain HTTP, which it does only on a
/// loopback address or behind a proxy that terminates TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFileConfig {
    /// PEM certificate chain.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// How often the files are checked for changes, in seconds (default 10).
    pub reload_seconds: Option<u64>,
    /// Plain HTTP on a non-loopback address, because a proxy in front
    /// terminates TLS.
    pub behind_proxy: bool,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the
    /// client: audit events and logs then record the client, not the proxy.
    pub trusted_proxies: Vec<String>,
}

/// The TLS the node serves with.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub reload: std::time::Duration,
}

fn default_policy_poll() -> u64 {
    1
}

fn default_policy_dir() -> PathBuf {
    PathBuf::from("policies")
}

fn default_log() -> String {
    "info".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    pub code_ttl: i64,
    pub access_token_ttl: i64,
    pub id_token_ttl: i64,
    pub refresh_token_ttl: i64,
    pub session_ttl: i64,
    pub login_request_ttl: i64,
    pub key_publish_lead: i64,
    pub key_reload_interval: i64,
    pub client_cache_ttl: i64,
    pub access_token_alg: String,
}

impl Default for TokensConfig {
    fn default() -> Self {
        let d =
            GatewayConfig::new(Url::parse("http://localhost").unwrap_or_else(|_| unreachable!()));
        TokensConfig {
            code_ttl: d.code_ttl,
            access_token_ttl: d.access_token_ttl,
            id_token_ttl: d.id_token_ttl,
            refresh_token_ttl: d.refresh_token_ttl,
            session_ttl: d.session_ttl,
            login_request_ttl: d.login_request_ttl,
            key_publish_lead: d.key_publish_lead,
            key_reload_interval: d.key_reload_interval,
            client_cache_ttl: d.client_cache_ttl,
            access_token_alg: "ES256".into(),
        }
    }
}

/// The audit store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditFileConfig {
    /// The Ed25519 key that signs checkpoints (PKCS#8, base64url); takes
    /// precedence over the file.
    pub checkpoint_key: Option<String>,
    /// A file holding that key; created on first start if missing.
    pub checkpoint_key_file: Option<PathBuf>,
    /// A checkpoint after this many events …
    pub checkpoint_every_events: i64,
    /// … or after this many seconds, whichever comes first.
    pub checkpoint_every_seconds: u64,
    /// A checkpoint at most this many seconds after a security-relevant
    /// event (an administrative change, a replay, a lock, a prune): the
    /// window in which the newest such events could be cut off unnoticed.
    pub security_checkpoint_seconds: u64,
    /// Days events keep their personal fields; `audit prune` erases them
    /// after this and `audit verify` refuses events pruned before.
    pub retention_days: u32,
    /// Most events committed in one transaction.
    pub max_batch: usize,
    /// How source addresses are recorded: `truncate` (IPv4 /24, IPv6 /48)
    /// or `keyed_hash`.
    pub source_pseudonymisation: SourcePseudonymisation,
    /// Forwarding to a SIEM; off when absent.
    pub forward: Option<ForwardFileConfig>,
}

/// `[audit.forward]`: where and how the trail goes to a SIEM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardFileConfig {
    /// `host:port` of the SIEM's TCP input.
    pub target: String,
    /// `syslog` (RFC 5424, octet counting) or `json_lines`.
    #[serde(default = "default_forward_format")]
    pub format: ForwardFormat,
    /// HOSTNAME in syslog messages.
    #[serde(default)]
    pub hostname: String,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_seconds: u64,
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_forward_format() -> ForwardFormat {
    ForwardFormat::Syslog
}
fn default_max_backoff() -> u64 {
    30
}
fn default_poll_ms() -> u64 {
    500
}

impl Default for AuditFileConfig {
    fn default() -> Self {
        AuditFileConfig {
            checkpoint_key: None,
            checkpoint_key_file: None,
            checkpoint_every_events: 1000,
            checkpoint_every_seconds: 60,
            security_checkpoint_seconds: 5,
            retention_days: 365,
            max_batch: 1000,
            source_pseudonymisation: SourcePseudonymisation::Truncate,
            forward: None,
        }
    }
}

/// Demo accounts and clients, created on start when enabled and missing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub users: Vec<DemoUser>,
    #[serde(default)]
    pub clients: Vec<DemoClient>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoUser {
    pub tenant: String,
    pub username: String,
    pub password: Secret,
    pub name: Option<String>,
    pub email: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// A TOTP secret (base32) enrolled for the account, so that the demo's
    /// administrators can reach the console (printed in the README).
    #[serde(default)]
    pub totp_secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoClient {
    pub id: String,
    pub tenant: String,
    pub name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    pub auth_method: String,
    pub secret: Option<Secret>,
    /// OpenID Connect Back-Channel Logout 1.0.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// May introspect the tokens of people of its tenant's subtree.
    #[serde(default)]
    pub resource_server: bool,
}

pub fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email", "roles"]
        .map(String::from)
        .to_vec()
}

/// The typed configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: DatabaseUrl,
    pub master_key: MasterKey,
    pub log: String,
    pub gateway: GatewayConfig,
    pub audit: interkom_audit::AuditConfig,
    pub forward: Option<interkom_audit::forward::ForwardConfig>,
    pub tenants: Vec<TenantSpec>,
    pub upstreams: Vec<interkom_directory::UpstreamConfig>,
    pub directories: Vec<interkom_directory::ldap::DirectorySourceConfig>,
    pub saml_sources: Vec<interkom_directory::saml_sources::SamlSourceConfig>,
    /// Seconds without login after which a citizen's or business's
    /// account is deleted.
    pub people_delete_after: i64,
    pub demo: DemoConfig,
    pub authzen: AuthzenConfig,
    pub admin: interkom_admin::AdminRules,
    pub policy: interkom_policy::PolicySet,
    pub policy_poll_seconds: u64,
    /// TLS, when interkom terminates it itself.
    pub tls: Option<TlsConfig>,
    /// Whether responses say HSTS (TLS here or at the proxy in front).
    pub hsts: bool,
    pub trusted_proxies: crate::proxy::TrustedProxies,
}

impl FileConfig {
    /// Reads the TOML file and applies the environment on top.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        if !path.exists() {
            bail!(
                "configuration file {} not found (set INTERKOM_CONFIG)",
                path.display()
            );
        }
        let env = Env::prefixed("INTERKOM_").split("__").filter(|k| {
            let top = k.as_str().split('.').next().unwrap_or("");
            ENV_KEYS.iter().any(|e| e.eq_ignore_ascii_case(top))
        });
        Figment::new()
            .merge(Toml::file(path))
            .merge(env)
            .extract()
            .with_context(|| format!("configuration {}", path.display()))
    }

    /// Parses configuration text alone, without the environment.
    pub fn from_toml(text: &str) -> anyhow::Result<FileConfig> {
        Figment::new()
            .merge(Toml::string(text))
            .extract()
            .context("configuration")
    }

    /// Validates everything at once and reports every problem.
    pub fn validate(self) -> anyhow::Result<Config> {
        let mut errs: Vec<String> = Vec::new();
        let listen = self
            .listen
            .parse::<SocketAddr>()
            .map_err(|_| errs.push(format!("listen: `{}` is not host:port", self.listen)))
            .ok();
        let issuer = Url::parse(&self.issuer)
            .map_err(|_| errs.push(format!("issuer: `{}` is not a URL", self.issuer)))
            .ok();
        let url = self.database_url.as_str();
        if interkom_types::Backend::from_url(url).is_none() {
            errs.push("database_url must start with sqlite: or postgres:".into());
        }
        let alg = Alg::parse(&self.tokens.access_token_alg);
        if alg.is_none() {
            errs.push(format!(
                "tokens.access_token_alg: `{}` (ES256 or EdDSA)",
                self.tokens.access_token_alg
            ));
        }
        let master = self.master_key(&mut errs);
        let audit = self.audit_config(&mut errs);
        let policy = self.policy(&mut errs);
        let gateway = issuer.map(|issuer| self.gateway_config(issuer, alg));
        if let Some(Err(e)) = gateway.as_ref().map(GatewayConfig::validate) {
            errs.push(e);
        }
        let tls = self.tls_config(listen, &mut errs);
        let hsts = tls.is_some() || self.tls.behind_proxy;
        let trusted_proxies = self.trusted_proxies(&mut errs);
        match (listen, gateway, master, policy) {
            (Some(listen), Some(gateway), Some(master_key), Some(policy)) if errs.is_empty() => {
                Ok(Config {
                    listen,
                    database_url: self.database_url,
                    master_key,
                    log: self.log,
                    gateway,
                    audit,
                    forward: self.audit.forward.map(forward_config),
                    tenants: self.tenants,
                    upstreams: self.upstreams,
                    directories: self.directories,
                    saml_sources: self.saml_sources,
                    people_delete_after: self.people.delete_after_days.clamp(1, 3650) * 86_400,
                    demo: self.demo,
                    authzen: self.authzen,
                    admin: interkom_admin::AdminRules {
                        required_acr: self.admin.required_acr,
                        approval_max_age: self.admin.approval_max_age_seconds.max(60),
                    },
                    policy,
                    policy_poll_seconds: self.policy_poll_seconds.clamp(1, 3600),
                    tls,
                    hsts,
                    trusted_proxies,
                })
            }
            _ => bail!("invalid configuration:\n  - {}", errs.join("\n  - ")),
        }
    }

    /// The key-encryption key: given, or from its file (created if missing).
    fn master_key(&self, errs: &mut Vec<String>) -> Option<MasterKey> {
        match (&self.key_encryption_key, &self.key_encryption_key_file) {
            (Some(k), _) => MasterKey::from_base64(k.expose())
                .ok_or_else(|| errs.push("key_encryption_key must be 32 bytes, base64".into()))
                .ok(),
            (None, Some(f)) => match load_or_create_key(f) {
                Ok(k) => Some(k),
                Err(e) => {
                    errs.push(format!("key_encryption_key_file: {e:#}"));
                    None
                }
            },
            (None, None) => {
                errs.push("set key_encryption_key or key_encryption_key_file".into());
                None
            }
        }
    }

    /// `[audit]`: the checkpoint key (given, from its file, or none) and the
    /// checkpoint intervals.
    fn audit_config(&self, errs: &mut Vec<String>) -> interkom_audit::AuditConfig {
        let a = &self.audit;
        let checkpoint_key = match (&a.checkpoint_key, &a.checkpoint_key_file) {
            (Some(k), _) => CheckpointKey::from_base64(k)
                .map_err(|e| errs.push(format!("audit.checkpoint_key: {e}")))
                .ok(),
            (None, Some(f)) => match load_or_create_checkpoint_key(f) {
                Ok(k) => Some(k),
                Err(e) => {
                    errs.push(format!("audit.checkpoint_key_file: {e:#}"));
                    None
                }
            },
            (None, None) => None,
        };
        if a.checkpoint_every_events < 1 || a.checkpoint_every_seconds < 1 {
            errs.push("audit: checkpoint intervals must be at least 1".into());
        }
        interkom_audit::AuditConfig {
            max_batch: a.max_batch.max(1),
            checkpoint_key: checkpoint_key.map(std::sync::Arc::new),
            checkpoint_every_events: a.checkpoint_every_events,
            checkpoint_every: std::time::Duration::from_secs(a.checkpoint_every_seconds),
            security_checkpoint_within: std::time::Duration::from_secs(
                a.security_checkpoint_seconds.max(1),
            ),
            retention_days: a.retention_days,
            ..Default::default()
        }
    }

    /// The tenant tree (checked) and the policy directory (parsed).
    fn policy(&self, errs: &mut Vec<String>) -> Option<interkom_policy::PolicySet> {
        if let Err(e) = interkom_policy::TenantTree::from_specs(&self.tenants) {
            errs.push(format!("tenants: {e}"));
        }
        interkom_policy::PolicySet::load(&self.policy_dir)
            .map_err(|es| {
                for e in es {
                    errs.push(format!("policy_dir: {e}"));
                }
            })
            .ok()
    }

    /// The gateway's configuration: tokens, passwords, brute force,
    /// back-channel logout, brokering, passkeys.
    fn gateway_config(&self, issuer: Url, alg: Option<Alg>) -> GatewayConfig {
        let t = &self.tokens;
        let mut g =
            GatewayConfig::new(Url::parse(issuer.as_str().trim_end_matches('/')).unwrap_or(issuer));
        g.code_ttl = t.code_ttl;
        g.access_token_ttl = t.access_token_ttl;
        g.id_token_ttl = t.id_token_ttl;
        g.refresh_token_ttl = t.refresh_token_ttl;
        g.session_ttl = t.session_ttl;
        g.login_request_ttl = t.login_request_ttl;
        g.key_publish_lead = t.key_publish_lead;
        g.key_reload_interval = t.key_reload_interval;
        g.client_cache_ttl = t.client_cache_ttl;
        g.access_token_alg = alg.unwrap_or(Alg::ES256);
        g.argon2 = self.password.clone();
        g.brute_force = self.brute_force.clone();
        g.backchannel_allow_loopback = self.backchannel.allow_loopback;
        g.upstream_allow_loopback = self.brokering.allow_loopback;
        g.passkey_device_bound_loa = self.passkeys.device_bound_loa;
        g.source_pseudonymisation = self.audit.source_pseudonymisation;
        g
    }

    /// `[tls]`: both files or neither; plain HTTP only on loopback or
    /// behind a proxy.
    fn tls_config(&self, listen: Option<SocketAddr>, errs: &mut Vec<String>) -> Option<TlsConfig> {
        let tls = match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert_file), Some(key_file)) => Some(TlsConfig {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                reload: std::time::Duration::from_secs(
                    self.tls.reload_seconds.unwrap_or(10).max(1),
                ),
            }),
            (None, None) => None,
            _ => {
                errs.push("tls: set both cert_file and key_file".into());
                None
            }
        };
        if let Some(l) = listen {
            if tls.is_none() && !l.ip().is_loopback() && !self.tls.behind_proxy {
                errs.push(format!(
                    "listen: plain HTTP on {l} is not loopback: set tls.cert_file and tls.key_file, \
                     or tls.behind_proxy = true behind a TLS-terminating proxy"
                ));
            }
        }
        tls
    }

    /// The proxies whose `X-Forwarded-For` names the client.
    fn trusted_proxies(&self, errs: &mut Vec<String>) -> crate::proxy::TrustedProxies {
        let trusted_proxies = crate::proxy::TrustedProxies::parse(&self.tls.trusted_proxies)
            .unwrap_or_else(|e| {
                errs.push(e);
                Default::default()
            });
        // Otherwise every client would be the proxy: one audit source and
        // one brute-force count for everyone.
        if self.tls.behind_proxy && self.tls.trusted_proxies.is_empty() {
            errs.push(
                "tls.behind_proxy needs tls.trusted_proxies: the proxy's addresses, whose \
                 X-Forwarded-For names the client"
                    .into(),
            );
        }
        trusted_proxies
    }
}

impl Config {
    /// The directory's rules, from the gateway's configuration.
    pub fn directory(&self) -> interkom_directory::DirectoryConfig {
        let g = &self.gateway;
        interkom_directory::DirectoryConfig {
            cache_ttl: g.client_cache_ttl,
            argon2: g.argon2.clone(),
            backchannel_allow_loopback: g.backchannel_allow_loopback,
            upstream_allow_loopback: g.upstream_allow_loopback,
        }
    }
}

/// `[audit.forward]` as the forwarder runs it.
fn forward_config(f: ForwardFileConfig) -> interkom_audit::forward::ForwardConfig {
    interkom_audit::forward::ForwardConfig {
        target: f.target,
        format: f.format,
        name: "siem".into(),
        hostname: f.hostname,
        max_backoff: std::time::Duration::from_secs(f.max_backoff_seconds.max(1)),
        poll: std::time::Duration::from_millis(f.poll_ms.max(10)),
    }
}

fn load_or_create_checkpoint_key(path: &Path) -> anyhow::Result<CheckpointKey> {
    use base64::Engine;
    if path.exists() {
        let s =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(CheckpointKey::from_base64(&s)?);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let der = CheckpointKey::generate_pkcs8()?;
    write_private(
        path,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&der),
    )?;
    Ok(CheckpointKey::from_pkcs8(&der)?)
}

fn load_or_create_key(path: &Path) -> anyhow::Result<MasterKey> {
    if path.exists() {
        let s =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return MasterKey::from_base64(&s).context("the file must hold 32 bytes, base64");
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = MasterKey::generate();
    write_private(path, &key.to_base64())?;
    Ok(key)
}

#[cfg(unix)]
pub(crate) fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn no_configuration_prints_a_secret() {
        let demo = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/interkom.toml"),
        )
        .unwrap();
        let text = demo.replace(
            "database_url = ",
            "database_url = \"postgres://interkom:db-kennwort-2026@db/interkom\"\n# ",
        );
        let mut fc = FileConfig::from_toml(&text).unwrap();
        fc.key_encryption_key = Some(Secret::new("kek-geheim-base64"));
        let printed = format!("{fc:?}");
        assert!(
            printed.contains("postgres://interkom:***@db/interkom"),
            "{printed}"
        );
        for secret in ["db-kennwort-2026", "kek-geheim-base64"] {
            assert!(!printed.contains(secret), "{secret}");
        }
        // The demo's passwords and client secrets neither.
        for u in &fc.demo.users {
            assert!(!printed.contains(u.password.expose()), "{}", u.username);
        }
        for c in fc.demo.clients.iter().filter_map(|c| c.secret.as_ref()) {
            assert!(!printed.contains(c.expose()));
        }
        assert!(!fc.demo.users.is_empty());
    }
}
