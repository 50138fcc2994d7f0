//! Forward authentication: web applications with no login protocol sit
//! behind a reverse proxy that asks interkom before it passes a request on
//! (nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`).
//!
//! A protected host holds its own cookie ([`crate::host_session`]), set
//! through a one-time code on the host's callback at the end of a login
//! through the one login flow (the application's login client, PKCE, a
//! state cookie on the host); it is bound to the single sign-on session,
//! so logout anywhere ends it. Every check decides the request's action on
//! the application's resource with the login's level, as a login would.
//!
//! - `check`: the check endpoints (`/forward-auth/nginx`: 401 to ask for a
//!   login; `/forward-auth/check`: a redirect to it).
//! - `host`: the pages on the protected host under `/.interkom/` — start
//!   of a login, callback, denial, logout.
//! - `original`: the request the proxy asks about, the return address,
//!   the host's cookies (building block of both).

mod check;
mod host;
mod original;

pub(crate) use check::{check_nginx, check_redirect};
pub(crate) use host::{callback, denied, logout, start};
