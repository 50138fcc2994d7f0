//! The OpenID Provider of interkom.
//!
//! Every Fachverfahren delegates login here over OpenID Connect. Nodes keep
//! no state of their own: keys, clients, sessions, codes and refresh tokens
//! live in the database, so any number of nodes serve one issuer.
//!
//! # Layout
//! - [`config`]: the gateway's typed configuration.
//! - [`keys`] and `jws`: signing keys (encrypted at rest, rotated with
//!   overlap) and compact JWS signing and verification.
//! - [`clients`]: registered Fachverfahren and client authentication.
//! - [`accounts`]: local accounts (argon2id), sessions.
//! - `authorize`: the authorization endpoint and the login form.
//! - `token`: the token endpoint (authorization code, refresh, client
//!   credentials) and what it issues.
//! - `endpoints`: discovery, JWKS, userinfo, introspection, revocation.
//! - `logout`: RP-initiated logout.
//! - [`error`]: internal errors and their protocol forms.

mod access;
pub mod accounts;
mod authorize;
mod backchannel;
pub mod clients;
pub mod clock;
pub mod config;
pub mod crypto;
mod endpoints;
pub mod error;
mod i18n;
mod jws;
pub mod keys;
mod logout;
mod mfa;
mod params;
mod passkey;
mod stepup;
mod throttle;
mod token;
pub mod upstream;
mod verified;
mod web;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use interkom_audit::AuditLog;
use interkom_policy::TenantTree;
use sqlx::AnyPool;

pub use clock::Clock;
pub use config::{Argon2Config, GatewayConfig, SourcePseudonymisation};
pub use crypto::MasterKey;
pub use error::{GatewayError, OAuthError};
pub use keys::{Alg, KeyInfo, Signer};
pub use throttle::BruteForceConfig;
pub use upstream::{ClaimMapping, UpstreamConfig};

/// The gateway: shared state of every OIDC endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

/// The gateway's state behind [`Gateway`]; its fields are private.
pub struct Inner {
    pub(crate) cfg: GatewayConfig,
    pub(crate) pool: AnyPool,
    pub(crate) audit: AuditLog,
    pub(crate) keys: keys::KeyStore,
    pub(crate) master: MasterKey,
    pub(crate) tenants: Arc<TenantTree>,
    pub(crate) clock: Clock,
    pub(crate) hasher: accounts::PasswordHasher,
    pub(crate) templates: minijinja::Environment<'static>,
    pub(crate) clients: clients::ClientCache,
    pub(crate) policy: Arc<interkom_policy::PolicyEngine>,
    pub(crate) verified: verified::VerifiedTokens,
    /// Outbound calls (back-channel logout): no redirects followed, bounded.
    pub(crate) http: reqwest::Client,
    /// Wakes the back-channel logout sender when a session ends.
    pub(crate) logout_wake: tokio::sync::Notify,
    /// Calls to upstream OpenID Providers: no redirects followed, bounded.
    pub(crate) upstream_http: reqwest::Client,
    pub(crate) upstreams: upstream::Registry,
    /// The WebAuthn relying party (none when the issuer is an address).
    pub(crate) webauthn: Option<webauthn_rs::Webauthn>,
}

impl std::ops::Deref for Gateway {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Applies this crate's migrations.
pub async fn migrate(pool: &AnyPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

impl Gateway {
    /// Builds the gateway and makes sure a signing key exists for every
    /// algorithm (the first start of a fresh installation creates them).
    pub async fn new(
        cfg: GatewayConfig,
        pool: AnyPool,
        audit: AuditLog,
        master: MasterKey,
        tenants: Arc<TenantTree>,
        policy: Arc<interkom_policy::PolicyEngine>,
        clock: Clock,
    ) -> Result<Gateway, GatewayError> {
        cfg.validate().map_err(GatewayError::Invalid)?;
        let keys = keys::KeyStore::new(pool.clone(), master.clone(), cfg.key_reload_interval);
        keys.ensure(clock.now()).await?;
        let hasher = accounts::PasswordHasher::new(&cfg.argon2)?;
        let templates = web::templates()?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(backchannel::TIMEOUT)
            .build()
            .map_err(|e| GatewayError::Invalid(format!("HTTP client: {e}")))?;
        let upstream_http = reqwest::Client::builder()
            .dns_resolver(Arc::new(upstream::PublicResolver {
                allow_loopback: cfg.upstream_allow_loopback,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(3))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| GatewayError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Gateway(Arc::new(Inner {
            http,
            upstream_http,
            upstreams: upstream::Registry::default(),
            webauthn: passkey::relying_party(&cfg.issuer),
            logout_wake: tokio::sync::Notify::new(),
            clients: clients::ClientCache::new(cfg.client_cache_ttl),
            cfg,
            pool,
            audit,
            keys,
            master,
            tenants,
            clock,
            hasher,
            templates,
            policy,
            verified: verified::VerifiedTokens::default(),
        })))
    }

    /// The policy engine the gateway enforces at login.
    pub fn policy(&self) -> &Arc<interkom_policy::PolicyEngine> {
        &self.policy
    }

    /// The OIDC routes, relative to the issuer's path.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(endpoints::discovery),
            )
            .route("/jwks", get(endpoints::jwks))
            .route(
                "/authorize",
                get(authorize::authorize_get).post(authorize::authorize_post),
            )
            .route("/login", post(authorize::login))
            .route("/login/idp", post(authorize::choose_idp))
            .route("/login/otp", post(stepup::otp))
            .route(upstream::CALLBACK, get(upstream::callback))
            .route(upstream::LOGGED_OUT, get(upstream::logged_out))
            .route("/account/totp", get(mfa::enrol_get).post(mfa::enrol_post))
            .route("/account/passkey", get(passkey::enrol_page))
            .route("/account/passkey/begin", post(passkey::enrol_begin))
            .route("/account/passkey/finish", post(passkey::enrol_finish))
            .route("/login/passkey/begin", post(passkey::login_begin))
            .route("/login/passkey", post(passkey::login_finish))
            .route("/assets/webauthn.js", get(web::webauthn_script))
            .route("/token", post(token::token))
            .route(
                "/userinfo",
                get(endpoints::userinfo).post(endpoints::userinfo),
            )
            .route("/introspect", post(endpoints::introspect))
            .route("/revoke", post(endpoints::revoke))
            .route("/logout", get(logout::logout_get).post(logout::logout_post))
            .route("/assets/interkom.css", get(web::stylesheet))
            .with_state(self.clone())
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.cfg
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Rotates the signing keys (see [`keys`]).
    pub async fn rotate_keys(&self) -> Result<Vec<String>, GatewayError> {
        let now = self.clock.now();
        let kids = self
            .keys
            .rotate(
                now,
                self.cfg.key_publish_lead,
                self.cfg.max_signed_token_ttl(),
            )
            .await?;
        self.audit
            .append(
                interkom_audit::AuditEvent::new(
                    interkom_audit::Action::KeyRotated,
                    interkom_audit::Outcome::Success,
                )
                .details(serde_json::json!({ "new_kids": kids })),
            )
            .await?;
        Ok(kids)
    }

    /// Sends back-channel logout tokens: at once when a session on this
    /// node ends, and every second whatever is due (from any node, or a
    /// retry).
    pub fn spawn_logout_sender(&self) -> tokio::task::JoinHandle<()> {
        let gw = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = gw.logout_wake.notified() => {}
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
                if let Err(e) = backchannel::deliver_due(&gw).await {
                    tracing::warn!(error = %e, "back-channel logout delivery failed");
                }
            }
        })
    }

    /// Keeps this node's signing keys current on PostgreSQL: reloads as soon
    /// as another node announces a rotation (the periodic reload stays as the
    /// fallback, and is all there is on SQLite).
    pub fn spawn_key_watch(&self, database_url: &str) -> Option<tokio::task::JoinHandle<()>> {
        if !database_url.starts_with("postgres") {
            return None;
        }
        let gw = self.clone();
        let url = database_url.to_owned();
        Some(tokio::spawn(async move {
            loop {
                if let Err(e) = gw.0.keys.listen(&url, &gw.0.clock).await {
                    tracing::warn!(error = %e, "key announcements lost; reloading periodically until they return");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }))
    }

    /// Validates one of interkom's access tokens (signature, issuer, expiry,
    /// revocation) and returns its claims; `None` when it is not valid.
    pub async fn validate_access_token(
        &self,
        token: &str,
    ) -> Result<Option<serde_json::Value>, GatewayError> {
        endpoints::access_token_claims(self, token).await
    }

    /// Encrypts a value kept at rest for a while (AES-256-GCM under the
    /// key-encryption key), bound to `aad`.
    pub fn seal(&self, plaintext: &str, aad: &str) -> Option<String> {
        self.master.encrypt(plaintext.as_bytes(), aad).ok()
    }

    /// Decrypts what [`Gateway::seal`] made; `None` if it was altered.
    pub fn open(&self, sealed: &str, aad: &str) -> Option<String> {
        let plain = self.master.decrypt(sealed, aad).ok()?;
        String::from_utf8(plain).ok()
    }

    /// Keyed hash of a bearer handle (what the database keeps of it).
    pub fn handle_hash(&self, handle: &str) -> String {
        self.master.keyed_hash(handle)
    }

    pub fn tenants(&self) -> &TenantTree {
        &self.tenants
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, GatewayError> {
        self.keys.list().await
    }

    /// Deletes expired codes, login requests, sessions and replay records.
    pub async fn purge_expired(&self) -> Result<u64, GatewayError> {
        let now = self.clock.now();
        let mut n = 0;
        for table in [
            "auth_codes",
            "login_requests",
            "sessions",
            "revoked_tokens",
            "client_assertions",
            "upstream_logins",
            "webauthn_ceremonies",
        ] {
            n += sqlx::query(&format!("DELETE FROM {table} WHERE expires_at < $1"))
                .bind(now - 3600)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        n += throttle::purge(&self.pool, &self.cfg.brute_force, now).await?;
        // Delivered or given up (every retry is over within minutes).
        n += sqlx::query("DELETE FROM logout_deliveries WHERE created_at < $1")
            .bind(now - 86_400)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n)
    }
}
