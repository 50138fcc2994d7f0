//! The gateway's typed configuration (validated; the binary builds it from
//! the configuration file and the environment).

use serde::{Deserialize, Serialize};
use url::Url;

use interkom_directory::Argon2Config;

use crate::keys::Alg;

/// How source addresses enter the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourcePseudonymisation {
    /// IPv4 /24, IPv6 /48.
    Truncate,
    /// HMAC-SHA-256 under a key derived from the key-encryption key.
    KeyedHash,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The issuer, byte for byte as it appears in tokens (no trailing slash).
    pub issuer: Url,
    /// Seconds.
    pub code_ttl: i64,
    pub access_token_ttl: i64,
    pub id_token_ttl: i64,
    pub refresh_token_ttl: i64,
    pub session_ttl: i64,
    pub login_request_ttl: i64,
    /// How long a new key is published before it signs.
    pub key_publish_lead: i64,
    /// How often a node reloads the keys from the database.
    pub key_reload_interval: i64,
    /// How long a node trusts its cached copy of a client.
    pub client_cache_ttl: i64,
    pub access_token_alg: Alg,
    pub argon2: Argon2Config,
    pub source_pseudonymisation: SourcePseudonymisation,
    pub brute_force: crate::BruteForceConfig,
    /// Back-channel logout URIs on this machine (tests, local setups).
    pub backchannel_allow_loopback: bool,
    /// Upstream IdPs over plain HTTP on this machine (tests, local setups).
    pub upstream_allow_loopback: bool,
    /// The level a passkey that cannot leave its device reaches
    /// (`substantial` or, by the operator's decision, `high`).
    pub passkey_device_bound_loa: interkom_policy::Loa,
}

impl GatewayConfig {
    pub fn new(issuer: Url) -> GatewayConfig {
        GatewayConfig {
            issuer,
            code_ttl: 60,
            access_token_ttl: 300,
            id_token_ttl: 300,
            refresh_token_ttl: 8 * 3600,
            session_ttl: 8 * 3600,
            login_request_ttl: 15 * 60,
            key_publish_lead: 600,
            key_reload_interval: 30,
            client_cache_ttl: 5,
            access_token_alg: Alg::ES256,
            argon2: Argon2Config::default(),
            source_pseudonymisation: SourcePseudonymisation::Truncate,
            brute_force: crate::BruteForceConfig::default(),
            backchannel_allow_loopback: false,
            upstream_allow_loopback: false,
            passkey_device_bound_loa: interkom_policy::Loa::Substantial,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        if !matches!(self.issuer.scheme(), "https" | "http") {
            errs.push("issuer must be an http(s) URL".to_owned());
        }
        if self.passkey_device_bound_loa == interkom_policy::Loa::Low {
            errs.push("a passkey with user verification is at least `substantial`".to_owned());
        }
        if let Err(e) = self.brute_force.validate() {
            errs.push(e);
        }
        if self.issuer.query().is_some() || self.issuer.fragment().is_some() {
            errs.push("issuer must not have a query or fragment".to_owned());
        }
        if self.issuer.as_str().ends_with('/') && self.issuer.path() != "/" {
            errs.push("issuer must not end with '/'".to_owned());
        }
        if self.access_token_alg == Alg::RS256 {
            errs.push("access tokens are signed with ES256 or EdDSA".to_owned());
        }
        let a = &self.argon2;
        if a.memory_kib < 19 * 1024 || a.iterations < 2 || a.parallelism < 1 {
            errs.push(
                "argon2 parameters must be at least m=19456 KiB, t=2, p=1 (OWASP)".to_owned(),
            );
        }
        for (name, v) in [
            ("code_ttl", self.code_ttl),
            ("access_token_ttl", self.access_token_ttl),
            ("id_token_ttl", self.id_token_ttl),
            ("refresh_token_ttl", self.refresh_token_ttl),
            ("session_ttl", self.session_ttl),
            ("login_request_ttl", self.login_request_ttl),
        ] {
            if v <= 0 {
                errs.push(format!("{name} must be positive"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// The issuer as a string without a trailing slash.
    pub fn issuer_str(&self) -> &str {
        self.issuer.as_str().trim_end_matches('/')
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer_str(), path)
    }

    /// Path prefix of the issuer ("" at the root) for links in pages.
    pub fn base_path(&self) -> &str {
        self.issuer.path().trim_end_matches('/')
    }

    pub fn secure_cookies(&self) -> bool {
        self.issuer.scheme() == "https"
    }

    pub(crate) fn max_signed_token_ttl(&self) -> i64 {
        self.access_token_ttl.max(self.id_token_ttl)
    }
}
