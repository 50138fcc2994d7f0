//! The admin console: server-rendered pages over the admin API.
//!
//! The console is a Fachverfahren of interkom's own gateway: it logs the
//! administrator in with the authorization code flow and PKCE (client
//! `interkom-console`) and then calls the admin API in-process with the
//! administrator's access token, so every page obeys exactly the rules of
//! the API (scope, four eyes, audit). No JavaScript; every form carries a
//! CSRF token; German by default, English on request.
//!
//! # Layout
//! - `routes`: the console's routes (top).
//! - `pages`: one module per resource (users, policy, proposals, grants,
//!   resources, clients, upstreams, directories, applications,
//!   service_providers (SAML), audit, overview).
//! - `auth`: the administrator's login and logout.
//! - `state`: the console's state, templates, secure headers, the
//!   in-process calls of the token endpoint and of the admin API.
//! - `session`: the console's sessions (table `console_sessions`).
//! - `i18n`: the texts; `client`: the console's registration.

/// A page that needs a session: the session, or the way to the login.
macro_rules! session_or_login {
    ($c:expr, $headers:expr) => {
        match $c.session(&$headers).await {
            Some(s) => s,
            None => {
                return axum::response::IntoResponse::into_response(axum::response::Redirect::to(
                    &format!("{}/login", $c.0.base),
                ))
            }
        }
    };
}

mod auth;
mod client;
mod i18n;
mod pages;
mod routes;
mod session;
mod state;

pub use client::{ensure_client, CONSOLE_CLIENT, MOUNT};
pub use routes::router;
