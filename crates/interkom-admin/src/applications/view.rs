//! Protected applications as the admin API shows them.

use std::collections::BTreeMap;

use interkom_directory::applications::ApplicationConfig;
use serde::Serialize;
use utoipa::ToSchema;

/// The protected applications of the caller's subtree.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ApplicationList {
    #[schema(value_type = Vec<ApplicationDoc>)]
    pub(crate) applications: Vec<ApplicationConfig>,
}

/// A web application behind a reverse proxy that asks interkom before
/// every request (forward authentication).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ApplicationDoc {
    /// A slug, e.g. `intranet-hitzacker`; its logins run as client
    /// `app:<id>`.
    id: String,
    /// The tenant it belongs to.
    tenant: String,
    /// Shown on the login page.
    name: String,
    /// External origins, `https://host[:port]` (http only for loopback).
    /// An origin belongs to one tenant.
    origins: Vec<String>,
    /// Path prefixes on those origins (default `/`); the longest matching
    /// prefix of all applications on an origin decides.
    paths: Option<Vec<String>>,
    /// The policy resource requests are decided on; its protection need
    /// sets the level of assurance.
    resource: String,
    /// HTTP method → policy action, `*` for every other method (default:
    /// GET and HEAD `read`, everything else `write`).
    actions: Option<BTreeMap<String, String>>,
    /// Identity headers sent to the application: `user`, `subject`,
    /// `tenant`, `roles`, `acr` (default all).
    headers: Option<Vec<String>>,
    /// Also a short-lived signed JWT in `X-Interkom-Jwt` (interkom's JWKS).
    jwt: Option<bool>,
}
