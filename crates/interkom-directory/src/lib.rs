//! The directory of interkom: who and what can log in, with the storage and
//! the rules of each. The gateway reads it at every login; the admin API
//! and the CLI change it through the same functions.
//!
//! # Layout
//! - [`crypto`]: the key-encryption key, keyed hashes, sealing, random
//!   tokens (building block of everything below).
//! - [`accounts`]: accounts and their passwords (argon2id).
//! - [`clients`]: registered Fachverfahren (OAuth clients).
//! - [`applications`]: protected applications (forward authentication)
//!   and the login client each one's logins run as.
//! - [`consents`]: what a person agreed a client may receive.
//! - [`upstreams`]: registered upstream OpenID Providers and the links of
//!   their identities to accounts.
//! - [`ldap`]: the Kommunen's directories (AD, OpenLDAP) as identity
//!   sources: registrations, the LDAP client, links of entries to accounts.
//! - [`factors`]: second-factor enrolments (TOTP, recovery codes,
//!   passkeys).
//! - [`service_providers`]: SAML service providers and the login client
//!   each one's logins run as.
//! - [`saml_sources`]: SAML identity providers interkom is a service
//!   provider of (BundID, Mein Unternehmenskonto, eIDAS).
//! - [`people`]: citizens and businesses, a population apart from staff,
//!   linked on a source's pseudonym.
//! - [`roles`]: the rule for roles identity sources hand out (four-eyes
//!   roles, role changes at login).
//! - `error`: what can go wrong ([`DirectoryError`]).
//!
//! Tables are reached through [`Directory`] only; each module owns its
//! tables' SQL, and [`migrate`] their schema (from version 5001; the
//! first tables came with the gateway's migrations 3001 and 3004).

pub mod accounts;
pub mod applications;
pub mod clients;
pub mod consents;
pub mod crypto;
pub mod error;
pub mod factors;
pub mod ldap;
pub mod people;
pub mod roles;
pub mod saml_sources;
pub mod service_providers;
pub mod upstreams;

use std::sync::Arc;

use interkom_policy::{PolicyEngine, TenantTree};
use interkom_types::Clock;
use sqlx::AnyPool;

pub use accounts::{Argon2Config, NewUser, User};
pub use clients::{Alg, AuthMethod, Client, ClientSpec, GrantType, SUPPORTED_SCOPES};
pub use crypto::MasterKey;
pub use error::{is_outage, DirectoryError};
pub use roles::{needs_four_eyes, RoleChange};
pub use upstreams::{ClaimMapping, Upstream, UpstreamConfig};

/// Applies the directory's migrations (its own version range; other
/// crates' migrations in the same table are left alone). Runs after the
/// gateway's, which created the directory's first tables.
pub async fn migrate(pool: &AnyPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

/// The rules of the directory that come from configuration.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// Seconds a node keeps clients and upstreams before reading them again.
    pub cache_ttl: i64,
    pub argon2: Argon2Config,
    /// Back-channel logout URIs may name this machine (tests).
    pub backchannel_allow_loopback: bool,
    /// Upstream issuers may name this machine (tests).
    pub upstream_allow_loopback: bool,
}

/// The directory: cheap to clone, shared by the gateway and the admin API.
#[derive(Clone)]
pub struct Directory(Arc<Inner>);

struct Inner {
    cfg: DirectoryConfig,
    pool: AnyPool,
    master: MasterKey,
    tenants: Arc<TenantTree>,
    policy: Arc<PolicyEngine>,
    clock: Clock,
    hasher: accounts::PasswordHasher,
    clients: clients::ClientCache,
    upstreams: upstreams::UpstreamCache,
    directories: ldap::store::SourceCache,
    applications: applications::ApplicationCache,
    service_providers: service_providers::ServiceProviderCache,
    saml_sources: saml_sources::SamlSourceCache,
}

impl Directory {
    pub fn new(
        cfg: DirectoryConfig,
        pool: AnyPool,
        master: MasterKey,
        tenants: Arc<TenantTree>,
        policy: Arc<PolicyEngine>,
        clock: Clock,
    ) -> Result<Directory, DirectoryError> {
        let hasher = accounts::PasswordHasher::new(&cfg.argon2)?;
        Ok(Directory(Arc::new(Inner {
            clients: clients::ClientCache::new(cfg.cache_ttl),
            upstreams: upstreams::UpstreamCache::default(),
            directories: ldap::store::SourceCache::default(),
            applications: applications::ApplicationCache::default(),
            service_providers: service_providers::ServiceProviderCache::default(),
            saml_sources: saml_sources::SamlSourceCache::default(),
            cfg,
            pool,
            master,
            tenants,
            policy,
            clock,
            hasher,
        })))
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.0.cfg
    }

    /// The key-encryption key (for what other contexts seal or hash).
    pub fn master(&self) -> &MasterKey {
        &self.0.master
    }

    pub fn tenants(&self) -> &TenantTree {
        &self.0.tenants
    }

    pub fn tenants_arc(&self) -> Arc<TenantTree> {
        self.0.tenants.clone()
    }

    /// The policy is reloaded on every node when what it knows of accounts
    /// changes (it decides by account, username and e-mail address).
    async fn policy_changed(&self) -> Result<(), DirectoryError> {
        interkom_policy::store::touch(&self.0.pool).await?;
        self.0.policy.reload().await?;
        Ok(())
    }
}

/// Whether an insert made a new row: `false` when a unique key had it
/// already (two nodes, or two requests, at the same moment).
pub(crate) fn inserted(
    r: Result<sqlx::any::AnyQueryResult, sqlx::Error>,
) -> Result<bool, DirectoryError> {
    match r {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}
