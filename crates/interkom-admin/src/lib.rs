//! The admin REST API of interkom under `/admin/v1`.
//!
//! Callers authenticate with a bearer access token issued by interkom's own
//! gateway; what they may do is decided from their role assignments in the
//! administrative tree. Errors are RFC 9457 problem+json.
//!
//! # Layout
//! One folder per resource, each with its handlers, its rules and its
//! OpenAPI annotations, its answers as typed views (`view.rs`, whose
//! schemas the document names), and a `routes()` that [`router`] and the
//! OpenAPI document are both made from (utoipa-axum: one list):
//! `users`, `clients` (with tenants and keys), `applications` (protected
//! by forward authentication), `service_providers` (SAML), `leistungen` (online services for citizens and businesses), `saml_sources` (the identity services citizens and businesses log in at), `upstreams`, `directories`, `grants`,
//! `audit`, `policy` (lines: read, what-if, change), `resources` (with
//! their protection needs), `proposals` (four eyes: `store`, `apply`).
//!
//! Below them: `scope` (whom an administrator may administer: their `admin`
//! subtree, only roles they hold themselves, never their own roles; where
//! a change applies), `api` (strict JSON bodies, ETag/If-Match, the
//! `admin_change` event), `auth` (the bearer token and who the caller is),
//! [`AdminError`] (`error`: what can go wrong, mapped once to [`Problem`],
//! the RFC 9457 problem+json body), `docs` (schemas the document declares
//! once), `openapi` (the document), and [`console`] (the admin console).

mod api;
mod applications;
mod audit;
mod auth;
mod clients;
pub mod console;
pub mod directories;
mod docs;
mod error;
mod grants;
mod leistungen;
mod openapi;
mod policy;
mod proposals;
mod resources;
mod saml_sources;
mod scope;
mod service_providers;
mod sources;
mod upstreams;
mod users;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use interkom_audit::AuditLog;
use interkom_directory::Directory;
use interkom_gateway::Gateway;
use interkom_policy::TenantTree;
use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use error::AdminError;
use sqlx::AnyPool;

/// An RFC 9457 problem detail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).unwrap_or_default();
        let mut res = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"interkom-admin\""),
            );
        }
        res
    }
}

/// Administration as a resource with a protection need: what a person's
/// login must have shown for the console and the admin API. Machine
/// clients (client credentials) are bound by their roles instead.
#[derive(Debug, Clone, Copy)]
pub struct AdminRules {
    /// The least level of a person's login (default: substantial, a
    /// second factor).
    pub required_acr: interkom_types::Loa,
    /// Approving a change to `sehr_hoch` data needs a login at most this
    /// many seconds old.
    pub approval_max_age: i64,
}

impl Default for AdminRules {
    fn default() -> Self {
        AdminRules {
            required_acr: interkom_types::Loa::Substantial,
            approval_max_age: 900,
        }
    }
}

/// What the admin API works with.
#[derive(Clone)]
pub struct AdminState(Arc<Inner>);

struct Inner {
    gateway: Gateway,
    directory: Directory,
    audit: AuditLog,
    pool: AnyPool,
    tenants: Arc<TenantTree>,
    rules: AdminRules,
}

impl AdminState {
    pub fn new(
        gateway: Gateway,
        audit: AuditLog,
        pool: AnyPool,
        tenants: Arc<TenantTree>,
        rules: AdminRules,
    ) -> AdminState {
        AdminState(Arc::new(Inner {
            directory: gateway.directory().clone(),
            gateway,
            audit,
            pool,
            tenants,
            rules,
        }))
    }

    pub fn rules(&self) -> AdminRules {
        self.0.rules
    }
}

/// Applies this crate's migrations (its own version range).
pub async fn migrate(pool: &AnyPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

/// Every resource's routes with their OpenAPI annotations: the one list
/// from which both the router and the OpenAPI document are made.
pub(crate) fn resources() -> OpenApiRouter<AdminState> {
    OpenApiRouter::with_openapi(openapi::AdminApi::openapi())
        .merge(audit::routes())
        .merge(clients::routes())
        .merge(applications::routes())
        .merge(service_providers::routes())
        .merge(leistungen::routes())
        .merge(saml_sources::routes())
        .merge(upstreams::routes())
        .merge(directories::routes())
        .merge(users::routes())
        .merge(grants::routes())
        .merge(policy::routes())
        .merge(proposals::routes())
        .merge(resources::routes())
}

/// The admin routes, to be nested under `/admin/v1`.
pub fn router(state: AdminState) -> Router {
    let (api, _) = resources().split_for_parts();
    api.route("/openapi.json", get(openapi::document))
        .fallback(|| async { AdminError::new(StatusCode::NOT_FOUND, "no such admin resource") })
        .method_not_allowed_fallback(|| async {
            AdminError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this method is not allowed on this admin resource",
            )
        })
        // Bodies above 64 KiB: the JSON reader answers 413 problem+json.
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}
