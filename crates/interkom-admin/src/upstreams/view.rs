//! Upstream identity providers as the admin API shows them.

use std::collections::BTreeMap;

use interkom_directory::UpstreamConfig;
use serde::Serialize;
use utoipa::ToSchema;

use crate::docs::LoaDoc;

/// An upstream: its configuration, without its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct UpstreamView {
    #[serde(flatten)]
    #[schema(value_type = UpstreamConfigDoc)]
    pub(crate) config: UpstreamConfig,
    /// Whether a client secret is stored (it is never shown).
    pub(crate) has_client_secret: bool,
}

impl UpstreamView {
    pub(crate) fn new((config, has_client_secret): &(UpstreamConfig, bool)) -> UpstreamView {
        UpstreamView {
            config: config.clone(),
            has_client_secret: *has_client_secret,
        }
    }
}

/// The upstreams of the caller's subtree.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct UpstreamList {
    pub(crate) upstreams: Vec<UpstreamView>,
}

/// An upstream OpenID Provider of a tenant.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct UpstreamConfigDoc {
    /// A slug, e.g. `idp-hitzacker`.
    id: String,
    /// The tenant whose staff it vouches for (accounts in its subtree).
    tenant: String,
    /// Shown on the login page.
    name: String,
    /// The upstream's issuer (discovery at `/.well-known/openid-configuration`).
    issuer: String,
    client_id: String,
    /// Write-only: kept sealed, never shown; a PUT without it keeps the
    /// stored one.
    #[schema(write_only)]
    client_secret: Option<String>,
    /// Default `openid profile email`.
    scopes: Option<Vec<String>>,
    /// E-mail domains of its staff: a `login_hint` in one goes straight
    /// to this upstream (the Kreis's decision).
    domains: Option<Vec<String>>,
    /// Which claims of its ID token mean what.
    claims: Option<ClaimMappingDoc>,
    /// Upstream group → interkom role in `tenant`.
    roles: Option<BTreeMap<String, String>>,
    /// Upstream `acr` value → interkom level (above `low`: the Kreis's
    /// decision).
    acr: Option<BTreeMap<String, LoaDoc>>,
    /// The level of a login without `acr`.
    default_loa: Option<LoaDoc>,
    /// Link a first login to the existing account of the same username
    /// (the Kreis's decision).
    link_existing: Option<bool>,
    /// Create an account on first login (default true).
    create_accounts: Option<bool>,
    /// Upper bound for each call to the upstream, in seconds (default 10).
    timeout_seconds: Option<u64>,
    /// End the upstream's session too at logout (default true).
    propagate_logout: Option<bool>,
}

/// Which claims of an upstream's ID token mean what.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ClaimMappingDoc {
    /// The stable identifier of the person (default `sub`).
    subject: Option<String>,
    /// Matched against usernames when linking (default `preferred_username`).
    username: Option<String>,
    /// Default `name`.
    name: Option<String>,
    /// Default `email`.
    email: Option<String>,
    /// A claim with the person's groups (array or space-separated string).
    groups: Option<String>,
}
