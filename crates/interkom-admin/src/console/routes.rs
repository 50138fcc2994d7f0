//! The console's routes.

use std::sync::Arc;

use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;

use super::auth::{callback, login, logout};
use super::client::{origin, MOUNT};
use super::pages::applications::{applications, applications_post};
use super::pages::audit::{audit, audit_export};
use super::pages::clients::{clients, clients_post};
use super::pages::directories::{directories, directories_post};
use super::pages::grants::{grants, grants_post};
use super::pages::leistungen::{leistungen, leistungen_post};
use super::pages::overview::{not_found, overview, stylesheet};
use super::pages::policy::{policy, policy_post};
use super::pages::proposals::{proposals, proposals_post};
use super::pages::resources::{resources, resources_post};
use super::pages::saml_sources::{saml_sources, saml_sources_post};
use super::pages::service_providers::{service_providers, service_providers_post};
use super::pages::upstreams::{upstreams, upstreams_post};
use super::pages::users::{users, users_post};
use super::state::{templates, Console, Inner};
use crate::AdminState;

/// The console's routes, at [`MOUNT`] (merged into the node's router).
pub fn router(admin: AdminState, issuer: &str) -> Router {
    let issuer = issuer.trim_end_matches('/').to_owned();
    let origin = origin(&issuer);
    let console = Console(Arc::new(Inner {
        api: crate::router(admin.clone()),
        gateway: admin.0.gateway.router(),
        env: templates(),
        secure_cookie: issuer.starts_with("https://"),
        redirect_uri: format!("{origin}{MOUNT}/callback"),
        authorize: format!("{issuer}/authorize"),
        logout: format!("{issuer}/logout"),
        base: MOUNT.to_owned(),
        admin,
    }));
    let at = |p: &str| format!("{MOUNT}{p}");
    Router::new()
        .route(MOUNT, get(|| async { Redirect::to(&format!("{MOUNT}/")) }))
        .route(&at("/"), get(overview))
        .route(&at("/login"), get(login))
        .route(&at("/callback"), get(callback))
        .route(&at("/logout"), post(logout))
        .route(&at("/console.css"), get(stylesheet))
        .route(&at("/users"), get(users).post(users_post))
        .route(&at("/policy"), get(policy).post(policy_post))
        .route(&at("/proposals"), get(proposals).post(proposals_post))
        .route(&at("/grants"), get(grants).post(grants_post))
        .route(&at("/resources"), get(resources).post(resources_post))
        .route(&at("/clients"), get(clients).post(clients_post))
        .route(&at("/upstreams"), get(upstreams).post(upstreams_post))
        .route(&at("/directories"), get(directories).post(directories_post))
        .route(
            &at("/applications"),
            get(applications).post(applications_post),
        )
        .route(&at("/leistungen"), get(leistungen).post(leistungen_post))
        .route(
            &at("/saml-sources"),
            get(saml_sources).post(saml_sources_post),
        )
        .route(
            &at("/service-providers"),
            get(service_providers).post(service_providers_post),
        )
        .route(&at("/audit"), get(audit))
        .route(&at("/audit/export"), get(audit_export))
        .route(&at("/{*rest}"), get(not_found))
        .with_state(console)
}
