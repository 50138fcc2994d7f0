//! The `interkom` binary's library: configuration, the database pool and
//! migrations, and the composition of the routers.
//!
//! # Layout
//! - [`config`]: the file form and the validated [`Config`].
//! - [`db`]: connecting to SQLite or PostgreSQL and migrating.
//! - [`authzen`]: the HTTP routes of the AuthZEN PDP (its logic is the
//!   policy crate's).
//! - [`metrics`]: the Prometheus metrics and the route tags they carry.
//! - [`start`]: the start page at `/`.
//! - [`proxy`]: the client's address behind trusted proxies.
//! - [`tls`]: rustls with certificate reload, and `dev-cert`.
//! - [`App`]: one node — pool, audit writer, gateway — and its router;
//!   [`serve`] runs it on a bound listener until a shutdown future resolves,
//!   so tests start real nodes on ephemeral ports.

pub mod authzen;
pub mod config;
pub mod db;
pub mod metrics;
pub mod proxy;
pub mod start;
pub mod tls;
pub mod trace;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::routing::get;
use axum::Router;
use interkom_audit::AuditLog;
use interkom_directory::{AuthMethod, ClientSpec, Directory, GrantType};
use interkom_gateway::{Alg, Clock, Gateway};
use interkom_policy::{PolicyEngine, Severity, TenantTree};
use sqlx::AnyPool;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use config::{Config, FileConfig};

/// One interkom node.
#[derive(Clone)]
pub struct App {
    pub config: Config,
    pub pool: AnyPool,
    pub audit: AuditLog,
    pub gateway: Gateway,
    /// Accounts, clients, upstreams and enrolments (shared by the gateway
    /// and the admin API).
    pub directory: Directory,
    pub tenants: Arc<TenantTree>,
    pub policy: Arc<PolicyEngine>,
    /// The migrations applied when this node started: readiness requires
    /// every one of them still to be there (a restored older backup is not).
    pub migrations: Arc<Vec<i64>>,
    /// Each client's allowance at the PDP, shared by every router built.
    pub pdp_limit: Arc<interkom_policy::ratelimit::RateLimit>,
}

impl App {
    /// Connects, migrates, stores the configured tenant tree, starts the
    /// audit writer, loads or creates the signing keys and seeds the demo.
    pub async fn open(config: Config, clock: Clock) -> anyhow::Result<App> {
        let pool = db::connect(config.database_url.as_str()).await?;
        db::migrate(&pool).await?;
        let migrations = Arc::new(db::applied_migrations(&pool).await?);
        let configured = TenantTree::from_specs(&config.tenants)?;
        configured.store(&pool).await?;
        let tenants = Arc::new(TenantTree::load(&pool).await?);
        let audit = AuditLog::start(pool.clone(), config.audit.clone());
        let policy = PolicyEngine::start(pool.clone(), config.policy.clone(), clock.clone())
            .await
            .context("policy")?;
        let directory = Directory::new(
            config.directory(),
            pool.clone(),
            config.master_key.clone(),
            tenants.clone(),
            policy.clone(),
            clock.clone(),
        )?;
        let gateway = Gateway::new(
            config.gateway.clone(),
            pool.clone(),
            audit.clone(),
            directory.clone(),
            policy.clone(),
            clock,
        )
        .await?;
        let pdp_limit = Arc::new(interkom_policy::ratelimit::RateLimit::new(
            config.authzen.rate_limit,
            config.authzen.burst,
        ));
        let app = App {
            pdp_limit,
            migrations,
            config,
            pool,
            audit,
            gateway,
            directory,
            tenants,
            policy,
        };
        if app.config.demo.enabled {
            app.seed_demo().await?;
        }
        // Upstreams of the configuration file: it is authoritative for them.
        for u in &app.config.upstreams {
            app.directory
                .put_upstream(u.clone())
                .await
                .with_context(|| format!("upstream {}", u.id))?;
        }
        // Directories likewise.
        for d in &app.config.directories {
            app.directory
                .put_directory_source(d.clone())
                .await
                .with_context(|| format!("directory {}", d.id))?;
        }
        // SAML identity sources likewise, their metadata from the file or
        // fetched (a source whose metadata cannot be had now keeps the copy
        // it has).
        for s in &app.config.saml_sources {
            let metadata = match (&s.metadata_file, &s.metadata_url) {
                (Some(f), _) => std::fs::read_to_string(f)
                    .with_context(|| format!("SAML source {}: {}", s.id, f.display()))?,
                (None, Some(url)) => match app.gateway.fetch_saml_metadata(url).await {
                    Ok(md) => md,
                    Err(e) => {
                        tracing::error!(source = %s.id, error = %e, "SAML metadata could not be fetched; the copy kept (if any) stays");
                        continue;
                    }
                },
                (None, None) => anyhow::bail!(
                    "SAML source {}: metadata_file or metadata_url is needed",
                    s.id
                ),
            };
            app.directory
                .put_saml_source(s.clone(), &metadata)
                .await
                .with_context(|| format!("SAML source {}", s.id))?;
        }
        // The admin console is a Fachverfahren of the gateway like others.
        interkom_admin::console::ensure_client(&app.directory, app.config.gateway.issuer_str())
            .await
            .context("registering the admin console")?;
        for p in app.policy.problems().iter() {
            match p.severity {
                Severity::Error => {
                    tracing::error!(at = %p.subject, "policy: {} (left out)", p.message)
                }
                Severity::Warning => tracing::warn!(at = %p.subject, "policy: {}", p.message),
            }
        }
        Ok(app)
    }

    async fn seed_demo(&self) -> anyhow::Result<()> {
        for u in &self.config.demo.users {
            if self.directory.find_user(&u.username).await?.is_none() {
                let created = self
                    .directory
                    .add_user(interkom_directory::NewUser {
                        tenant: u.tenant.clone().into(),
                        username: u.username.clone(),
                        password: u.password.clone(),
                        name: u.name.clone(),
                        email: u.email.clone(),
                        roles: u.roles.clone(),
                    })
                    .await;
                // Another node may have created it a moment ago.
                if let Err(e) = created {
                    if self.directory.find_user(&u.username).await?.is_none() {
                        return Err(
                            anyhow::Error::new(e).context(format!("demo user {}", u.username))
                        );
                    }
                }
            }
            if let (Some(secret), Some(user)) =
                (&u.totp_secret, self.directory.find_user(&u.username).await?)
            {
                self.gateway
                    .enrol_totp(&user.id, Some(secret))
                    .await
                    .with_context(|| format!("demo user {}: TOTP", u.username))?;
            }
        }
        for c in &self.config.demo.clients {
            if self.directory.client(&c.id).await?.is_some() {
                continue;
            }
            let grant_types = c
                .grant_types
                .iter()
                .map(|g| {
                    GrantType::parse(g).with_context(|| format!("demo client {}: grant {g}", c.id))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let auth_method = AuthMethod::parse(&c.auth_method)
                .with_context(|| format!("demo client {}: auth_method {}", c.id, c.auth_method))?;
            let registered = self
                .directory
                .register_client(ClientSpec {
                    id: c.id.clone().into(),
                    tenant: c.tenant.clone().into(),
                    name: c.name.clone(),
                    redirect_uris: c.redirect_uris.clone(),
                    post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
                    grant_types,
                    scopes: c.scopes.clone(),
                    auth_method,
                    secret: c.secret.clone(),
                    jwks: None,
                    id_token_alg: Alg::RS256,
                    backchannel_logout_uri: c.backchannel_logout_uri.clone(),
                    first_party: true,
                    resource_server: c.resource_server,
                })
                .await;
            if let Err(e) = registered {
                if self.directory.client(&c.id).await?.is_none() {
                    return Err(anyhow::Error::new(e).context(format!("demo client {}", c.id)));
                }
            }
        }
        Ok(())
    }

    /// The whole HTTP surface of a node.
    pub fn router(&self) -> Router {
        let pdp = authzen::router(interkom_policy::authzen::Pdp {
            engine: self.policy.clone(),
            audit: self.audit.clone(),
            authenticate: authzen::authenticate(self.gateway.clone()),
            issuer: self.config.gateway.issuer_str().to_owned(),
            clock: self.gateway.clock().clone(),
            limit: self.pdp_limit.clone(),
        });
        // The PDP sits beside the OpenID Provider, under the issuer's path.
        let tag = || axum::middleware::from_fn(metrics::tag_route);
        let gateway = self
            .gateway
            .router()
            .layer(RequestBodyLimitLayer::new(64 * 1024))
            .merge(
                self.gateway
                    .saml_router()
                    .layer(RequestBodyLimitLayer::new(1024 * 1024)),
            )
            .merge(pdp)
            .route_layer(tag());
        let base = self.config.gateway.base_path().to_owned();
        let oidc = if base.is_empty() {
            gateway
        } else {
            Router::new().nest(&base, gateway)
        };
        let pool = self.pool.clone();
        let migrations = self.migrations.clone();
        let admin = interkom_admin::AdminState::new(
            self.gateway.clone(),
            self.audit.clone(),
            self.pool.clone(),
            self.tenants.clone(),
            self.config.admin,
        );
        let console =
            interkom_admin::console::router(admin.clone(), self.config.gateway.issuer_str())
                .route_layer(tag());
        let (metrics_pool, metrics_audit) = (self.pool.clone(), self.audit.clone());
        // Installed with the first router, so every metric from then on counts.
        let _ = metrics::handle();
        oidc.nest(
            "/admin/v1",
            interkom_admin::router(admin).route_layer(tag()),
        )
        .merge(console)
        .route(
            "/metrics",
            get(move || {
                let (pool, audit) = (metrics_pool.clone(), metrics_audit.clone());
                async move { metrics::render(&pool, &audit) }
            }),
        )
        .route(
            "/",
            get(start::handler(start::page(
                self.config.gateway.issuer_str(),
                self.config.demo.enabled,
            ))),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || ready(pool.clone(), migrations.clone())),
        )
        .route_layer(tag())
        .layer(axum::middleware::from_fn_with_state(self.config.hsts, hsts))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        // Outside the timeout, so that timed-out requests count too.
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http().make_span_with(trace::request_span))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(PropagateRequestIdLayer::new(HeaderName::from_static(
            "x-request-id",
        )))
        .layer(SetRequestIdLayer::new(
            HeaderName::from_static("x-request-id"),
            TimeOrderedRequestId,
        ))
        // Outermost: every layer and handler sees the client's address.
        .layer(axum::middleware::from_fn_with_state(
            self.config.trusted_proxies.clone(),
            proxy::client_address,
        ))
    }
}

/// Readiness: the database answers, within two seconds, and still has every
/// migration this node started with.
async fn ready(pool: AnyPool, migrations: Arc<Vec<i64>>) -> (StatusCode, &'static str) {
    // Bounded: an unreachable database must turn the node unready quickly,
    // not after the pool's acquire timeout.
    let check = tokio::time::timeout(Duration::from_secs(2), db::applied_migrations(&pool));
    match check.await {
        Ok(Ok(v)) if migrations.iter().all(|m| v.binary_search(m).is_ok()) => {
            (StatusCode::OK, "ready")
        }
        Ok(Ok(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database schema older than this node's",
        ),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

/// HSTS on every response when the node (or the proxy in front) speaks TLS.
async fn hsts(
    axum::extract::State(on): axum::extract::State<bool>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut res = next.run(req).await;
    if on {
        res.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    res
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Request ids are UUIDv7: time-ordered, so the audit trail's index on the
/// correlation id grows at its end instead of touching a random page per
/// event.
#[derive(Clone, Copy)]
struct TimeOrderedRequestId;

impl MakeRequestId for TimeOrderedRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        axum::http::HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves. While serving, the
/// node deletes expired codes, login requests, sessions and replay records
/// every ten minutes.
pub async fn serve(
    app: &App,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = app.router();
    let gateway = app.gateway.clone();
    let delete_after = app.config.people_delete_after;
    let purger = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(600));
        let mut round: u64 = 0;
        loop {
            every.tick().await;
            if let Err(e) = gateway.purge_expired().await {
                tracing::warn!(error = %e, "purging expired records failed");
            }
            if let Err(e) = gateway.delete_idle_people(delete_after).await {
                tracing::warn!(error = %e, "deleting idle accounts of citizens and businesses failed");
            }
            // SAML metadata every six hours (the first round at start).
            if round.is_multiple_of(36) {
                if let Err(e) = gateway.refresh_saml_sources().await {
                    tracing::warn!(error = %e, "refreshing SAML metadata failed");
                }
            }
            round += 1;
        }
    });
    let _stop_purger = AbortOnDrop(purger);
    // A policy change on another node reaches this one at once (PostgreSQL)
    // or within the poll interval.
    let _stop_watch = AbortOnDrop(app.policy.spawn_watch(
        Duration::from_secs(app.config.policy_poll_seconds),
        app.config.database_url.as_str(),
    ));
    let _stop_key_watch = app
        .gateway
        .spawn_key_watch(app.config.database_url.as_str())
        .map(AbortOnDrop);
    let _stop_logout_sender = AbortOnDrop(app.gateway.spawn_logout_sender());
    let _stop_directory_sync = AbortOnDrop(app.gateway.spawn_directory_sync());
    let _stop_forwarder = app
        .config
        .forward
        .clone()
        .map(|f| AbortOnDrop(interkom_audit::forward::start(app.pool.clone(), f)));
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    match &app.config.tls {
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await?
        }
        Some(tls) => {
            let config = tls::load(tls).await?;
            let _stop_reload = AbortOnDrop(tls::spawn_reload(config.clone(), tls.clone()));
            // In-flight requests get 30 s to finish after the signal.
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopper.graceful_shutdown(Some(Duration::from_secs(30)));
            });
            axum_server::from_tcp_rustls(listener.into_std()?, config)
                .handle(handle)
                .serve(service)
                .await?;
        }
    }
    Ok(())
}
