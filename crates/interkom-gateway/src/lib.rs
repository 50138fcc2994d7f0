//! The OpenID Provider of interkom.
//!
//! Every Fachverfahren delegates login here over OpenID Connect. Nodes keep
//! no state of their own: keys, clients, sessions, codes and refresh tokens
//! live in the database, so any number of nodes serve one issuer.
//!
//! # Layout
//! Arrows point down; no file imports one above it.
//! - Endpoints: `saml` (the SAML identity provider), `forward` (forward authentication: the proxies' checks
//!   and the pages on a protected host), `authorize` (the authorization endpoint, the password form
//!   and the choice of IdP), `second_factor` (`/login/otp`,
//!   `/login/passkey`), `broker` (the upstreams' callbacks), `logout`,
//!   `token`, `endpoints` (discovery, JWKS, userinfo, introspection,
//!   revocation).
//! - `login`: the one login flow — `flow` carries out each step, `plan` is
//!   the pure planner, `state` the login's state and the binding of its
//!   forms, `pages` the login and second-factor pages.
//! - `sources`: identity sources (`password`, `oidc`) behind one trait;
//!   `factors`: second factors (`totp`, `passkey`) behind another.
//! - Building blocks: `session` (single sign-on sessions),
//!   `host_session` (the cookies of protected hosts), `backchannel`
//!   (back-channel logout), `access` (the policy at login), `clients`
//!   (client authentication), `outbound` (calls to registered addresses:
//!   public ones only), [`keys`] and `jws`, `web` and `i18n`,
//!   `params`, `throttle`, `verified`, [`config`], [`error`]. Accounts,
//!   clients, upstreams and enrolments live in `interkom-directory`.
//! - `store`: the one place of the gateway's SQL — sessions, codes, tokens,
//!   login requests, deliveries, brute-force counters, signing keys — over
//!   SQLite or PostgreSQL alike; it imports nothing above it.

mod access;
mod authorize;
mod backchannel;
mod broker;
mod clients;
pub mod config;
mod consent;
mod endpoints;
pub mod error;
mod factors;
mod forward;
mod host_session;
mod i18n;
mod jws;
pub mod keys;
mod login;
mod logout;
mod outbound;
mod params;
mod saml;
mod second_factor;
mod session;
mod sources;
mod store;
mod throttle;
mod token;
mod verified;
mod web;

use std::sync::Arc;

use axum::routing::{any, get, post};
use axum::Router;
use interkom_audit::AuditLog;
use interkom_directory::{Client, Directory, MasterKey, User};
use interkom_policy::TenantTree;
use sqlx::AnyPool;

pub use config::{GatewayConfig, SourcePseudonymisation};
pub use error::{ErrorCode, GatewayError, OAuthError};
pub use interkom_directory::Argon2Config;
pub use interkom_types::Clock;
pub use jws::Signer;
pub use keys::{Alg, KeyInfo};
pub use sources::directory_sync::{SyncError, SyncReport};
pub use store::migrate;
pub use throttle::BruteForceConfig;

/// The gateway: shared state of every OIDC endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

/// The gateway's state behind [`Gateway`]; its fields are private.
pub struct Inner {
    pub(crate) cfg: GatewayConfig,
    /// Sessions, codes, tokens and everything else the gateway keeps.
    pub(crate) store: store::Store,
    pub(crate) audit: AuditLog,
    pub(crate) keys: keys::KeyStore,
    pub(crate) master: MasterKey,
    pub(crate) tenants: Arc<TenantTree>,
    pub(crate) clock: Clock,
    /// Accounts, clients, upstreams and enrolments.
    pub(crate) dir: Directory,
    pub(crate) templates: minijinja::Environment<'static>,
    pub(crate) policy: Arc<interkom_policy::PolicyEngine>,
    pub(crate) verified: verified::VerifiedTokens,
    /// Outbound calls (back-channel logout): no redirects followed, bounded.
    pub(crate) http: reqwest::Client,
    /// Wakes the back-channel logout sender when a session ends.
    pub(crate) logout_wake: tokio::sync::Notify,
    /// Calls to upstream OpenID Providers: no redirects followed, bounded.
    pub(crate) upstream_http: reqwest::Client,
    /// Discovery documents of upstreams (see `sources::oidc`).
    pub(crate) discovery: sources::oidc::DiscoveryCache,
    /// The WebAuthn relying party (none when the issuer is an address).
    pub(crate) webauthn: Option<webauthn_rs::Webauthn>,
    /// Host sessions of forward authentication read recently.
    pub(crate) host_sessions: host_session::HostSessionCache,
}

impl std::ops::Deref for Gateway {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Gateway {
    /// Builds the gateway and makes sure a signing key exists for every
    /// algorithm (the first start of a fresh installation creates them).
    pub async fn new(
        cfg: GatewayConfig,
        pool: AnyPool,
        audit: AuditLog,
        dir: Directory,
        policy: Arc<interkom_policy::PolicyEngine>,
        clock: Clock,
    ) -> Result<Gateway, GatewayError> {
        cfg.validate().map_err(GatewayError::Config)?;
        let master = dir.master().clone();
        let tenants = dir.tenants_arc();
        let store = store::Store::new(pool);
        let keys = keys::KeyStore::new(store.clone(), master.clone(), cfg.key_reload_interval);
        keys.ensure(clock.now()).await?;
        let templates = web::templates()?;
        let http = outbound::client(
            cfg.backchannel_allow_loopback,
            backchannel::TIMEOUT,
            backchannel::TIMEOUT,
        )?;
        let upstream_http = outbound::client(
            cfg.upstream_allow_loopback,
            std::time::Duration::from_secs(3),
            std::time::Duration::from_secs(30),
        )?;
        Ok(Gateway(Arc::new(Inner {
            http,
            upstream_http,
            discovery: Default::default(),
            webauthn: factors::passkey::relying_party(&cfg.issuer),
            logout_wake: tokio::sync::Notify::new(),
            host_sessions: Default::default(),
            dir,
            cfg,
            store,
            audit,
            keys,
            master,
            tenants,
            clock,
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
            .route("/login/otp", post(second_factor::otp))
            .route("/login/consent", post(consent::login_consent))
            .route(
                "/account/consents",
                get(consent::consents_page).post(consent::consents_post),
            )
            .route(sources::oidc::CALLBACK, get(broker::callback))
            .route(sources::oidc::LOGGED_OUT, get(broker::logged_out))
            .route(
                "/account/totp",
                get(factors::totp::enrol_get).post(factors::totp::enrol_post),
            )
            .route("/account/passkey", get(factors::passkey::enrol_page))
            .route(
                "/account/passkey/begin",
                post(factors::passkey::enrol_begin),
            )
            .route(
                "/account/passkey/finish",
                post(factors::passkey::enrol_finish),
            )
            .route("/login/passkey/begin", post(factors::passkey::login_begin))
            .route("/login/passkey", post(second_factor::passkey))
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
            // Forward authentication: the proxies' checks, and the pages
            // they pass on from a protected host's `/.interkom/`.
            .route("/forward-auth/nginx", any(forward::check_nginx))
            .route("/forward-auth/check", any(forward::check_redirect))
            .route("/forward-auth/start", get(forward::start))
            .route("/forward-auth/callback", get(forward::callback))
            .route("/forward-auth/denied", any(forward::denied))
            .route("/forward-auth/assets/interkom.css", get(web::stylesheet))
            .route(
                "/forward-auth/logout",
                get(forward::logout).post(forward::logout),
            )
            .with_state(self.clone())
    }

    /// The SAML routes, relative to the issuer's path: a node takes larger
    /// bodies here than elsewhere (a Response with complex attributes), and
    /// the SAML module refuses anything over its cap with a page and an
    /// audit event.
    pub fn saml_router(&self) -> Router {
        Router::new()
            // SAML identity provider.
            .route("/saml/metadata", get(saml::metadata))
            .route("/saml/sso", get(saml::sso_get).post(saml::sso_post))
            .route("/saml/return", get(saml::saml_return))
            .route("/saml/start", get(saml::idp_initiated))
            .route("/saml/slo", get(saml::slo_get).post(saml::slo_post))
            .route("/assets/saml-post.js", get(web::saml_post_script))
            // SAML service provider of the identity sources (BundID, MUK).
            .route("/saml/sp/metadata", get(saml::sp_metadata))
            .route("/saml/sp/acs", post(saml::acs))
            .route("/saml/sp/continue", get(saml::sp_continue))
            .route(
                "/saml/sp/slo",
                get(saml::sp_slo_get).post(saml::sp_slo_post),
            )
            .route("/login/saml", post(saml::choose_source))
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
        if !self.0.store.backend().is_postgres() {
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

    /// Fetches the metadata of every SAML source that has a URL again and
    /// keeps it (a source whose metadata cannot be fetched keeps the copy
    /// it has); how many were refreshed.
    pub async fn refresh_saml_sources(&self) -> Result<usize, GatewayError> {
        let mut n = 0;
        for s in self.dir.saml_sources().await?.iter() {
            let Some(url) = &s.cfg.metadata_url else {
                continue;
            };
            match self.fetch_saml_metadata(url).await {
                Ok(md) if md != s.metadata => {
                    match self.dir.refresh_saml_metadata(&s.cfg.id, &s.cfg, &md).await {
                        Ok(()) => n += 1,
                        Err(e) => {
                            tracing::warn!(source = %s.cfg.id, error = %e, "refreshed SAML metadata refused; the copy kept stays")
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(source = %s.cfg.id, error = %e, "SAML metadata could not be refreshed; the copy kept stays")
                }
            }
        }
        Ok(n)
    }

    /// A partner's SAML metadata fetched once from `url`: https and public
    /// addresses only (the rule for upstream issuers), no redirects, at
    /// most 1 MiB.
    pub async fn fetch_saml_metadata(&self, url: &str) -> Result<String, String> {
        interkom_directory::clients::check_outbound_uri(url, self.cfg.upstream_allow_loopback)?;
        let res = self
            .upstream_http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("`{url}` could not be fetched: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("`{url}` answered {}", res.status()));
        }
        if res.content_length().is_some_and(|l| l > 1 << 20) {
            return Err(format!("`{url}`: metadata larger than 1 MiB"));
        }
        let body = res
            .bytes()
            .await
            .map_err(|e| format!("`{url}` could not be read: {e}"))?;
        if body.len() > 1 << 20 {
            return Err(format!("`{url}`: metadata larger than 1 MiB"));
        }
        String::from_utf8(body.to_vec()).map_err(|_| format!("`{url}`: not UTF-8"))
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

    /// The directory the gateway reads at every login.
    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    /// A client, through the directory's short-lived cache.
    pub(crate) async fn client(&self, id: &str) -> Result<Option<Arc<Client>>, GatewayError> {
        // A SAML service provider's logins run as its login client, whose
        // code comes back to the gateway's own return URL.
        if let Some(sp) =
            id.strip_prefix(interkom_directory::service_providers::LOGIN_CLIENT_PREFIX)
        {
            return Ok(self
                .dir
                .service_provider(sp)
                .await?
                .map(|sp| Arc::new(sp.login_client(saml::return_url(self)))));
        }
        Ok(self.dir.login_client(id).await?)
    }

    /// `ev` about this account: its subject, and the tenant it belongs to
    /// (whose subtree sees the event).
    pub(crate) fn about(
        &self,
        ev: interkom_audit::AuditEvent,
        user: &User,
    ) -> interkom_audit::AuditEvent {
        if !user.is_staff() {
            return self.about_person(ev, user);
        }
        let ev = ev.subject(&user.id, Some(user.tenant.to_string()));
        match self.tenants.get(&user.tenant) {
            Some(t) => ev.tenant(&t.id, t.path_string()),
            None => ev,
        }
    }

    /// `ev` about a citizen or business, pseudonymised: the subject is a
    /// keyed hash of the account under a key of the tenant that offers the
    /// event's Leistung (else of the tenant whose source made the account),
    /// so the trails of two Kommunen cannot be joined on it; no name, no
    /// address, no account id.
    fn about_person(
        &self,
        ev: interkom_audit::AuditEvent,
        user: &User,
    ) -> interkom_audit::AuditEvent {
        let tenant = ev
            .actor_client
            .as_deref()
            .and_then(|c| {
                self.policy
                    .snapshot()
                    .leistung_for_client(c)
                    .map(|l| l.tenant.clone())
            })
            .unwrap_or_else(|| user.tenant.to_string());
        let subject = self.person_pseudonym(&tenant, &user.id);
        let ev = ev.subject(&subject, None);
        match self.tenants.get(&tenant) {
            Some(t) => ev.tenant(&t.id, t.path_string()),
            None => ev,
        }
    }

    /// The audit pseudonym of a person's account for `tenant`.
    pub(crate) fn person_pseudonym(&self, tenant: &str, user_id: &str) -> String {
        let h = self
            .master
            .keyed_hash(&format!("audit-pseudonym|{tenant}|{user_id}"));
        format!("pseudonym:{}", &h[..22])
    }

    /// Deletes the accounts of citizens and businesses without a login for
    /// `idle_seconds` (DSGVO), each audited pseudonymously; how many went.
    pub async fn delete_idle_people(&self, idle_seconds: i64) -> Result<u64, GatewayError> {
        let before = self.clock.now() - idle_seconds;
        let mut n = 0;
        for p in self.dir.idle_people(before, 500).await? {
            if !self.dir.delete_person(&p.user_id).await? {
                continue;
            }
            let ev = interkom_audit::AuditEvent::new(
                interkom_audit::Action::AccountDeleted,
                interkom_audit::Outcome::Success,
            )
            .reason("no_login_within_retention")
            .subject(self.person_pseudonym(&p.tenant, &p.user_id), None)
            .details(serde_json::json!({
                "source": p.source,
                "population": p.population,
                "idle_seconds": idle_seconds,
            }));
            let ev = match self.tenants.get(&p.tenant) {
                Some(t) => ev.tenant(&t.id, t.path_string()),
                None => ev,
            };
            self.audit.append(ev).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Gives an account a new random password (returned once, for handing
    /// over on a separate channel) and ends its sessions and tokens.
    pub async fn reset_password(&self, id: &str) -> Result<interkom_types::Secret, GatewayError> {
        let password = self.dir.new_password(id).await?;
        self.end_sessions_of(id).await?;
        Ok(password)
    }

    /// Locks or unlocks an account; locking ends its sessions and tokens.
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> Result<(), GatewayError> {
        self.dir.set_disabled(id, disabled).await?;
        if disabled {
            self.end_sessions_of(id).await?;
        }
        Ok(())
    }

    /// Removes an account's second factors (an administrator's reset after
    /// a lost phone) and ends its sessions; true if there was anything to
    /// remove.
    pub async fn reset_second_factors(&self, id: &str) -> Result<bool, GatewayError> {
        let removed = self.dir.remove_second_factors(id).await?;
        self.end_sessions_of(id).await?;
        Ok(removed)
    }

    /// Enrols TOTP for an account with a secret the operator hands over
    /// (given, base32, or made here); the secret, or `None` if the account
    /// has TOTP already.
    pub async fn enrol_totp(
        &self,
        id: &str,
        secret_b32: Option<&str>,
    ) -> Result<Option<String>, GatewayError> {
        factors::totp::enrol_known(self, id, secret_b32).await
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
        Ok(self
            .store
            .purge_expired(now, self.cfg.brute_force.window_seconds)
            .await?)
    }
}
