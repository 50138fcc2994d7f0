//! Tenants, clients and signing keys as the admin API shows them.

use interkom_directory::Client;
use interkom_gateway::KeyInfo;
use serde::Serialize;
use utoipa::ToSchema;

/// A tenant of the administrative tree.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TenantView {
    /// The tenant's stable id (a slug).
    pub(crate) id: String,
    pub(crate) name: String,
    /// `kreis`, `samtgemeinde` or `gemeinde`.
    pub(crate) level: String,
    /// The parent tenant; none for a Kreis.
    pub(crate) parent: Option<String>,
    /// The ids from the Kreis down to this one: `/kreis/samtgemeinde/gemeinde/`.
    pub(crate) path: String,
}

/// The caller's subtree, root first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TenantList {
    pub(crate) tenants: Vec<TenantView>,
}

/// A registered Fachverfahren (an OAuth client); never its secret.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ClientDoc {
    /// The client id.
    id: String,
    /// The owning tenant.
    tenant: String,
    name: String,
    /// Exact redirect URIs.
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    grant_types: Vec<crate::docs::GrantTypeDoc>,
    scopes: Vec<String>,
    auth_method: crate::docs::AuthMethodDoc,
    /// Its public keys (`private_key_jwt`), a JWK Set.
    #[schema(value_type = Option<Object>)]
    jwks: Option<serde_json::Value>,
    /// The algorithm of its ID tokens.
    id_token_alg: crate::docs::AlgDoc,
    /// Logs people in without a consent page (the county's own).
    first_party: bool,
    /// May introspect tokens of its tenant's subtree issued to others.
    resource_server: bool,
    /// Where a logout token is sent when a session it had tokens in ends.
    backchannel_logout_uri: Option<String>,
}

/// One page of clients, by id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClientPage {
    #[schema(value_type = Vec<ClientDoc>)]
    pub(crate) clients: Vec<Client>,
    /// The `cursor` of the next page; none on the last.
    pub(crate) next_cursor: Option<String>,
}

/// A client just registered.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClientCreated {
    #[schema(value_type = ClientDoc)]
    pub(crate) client: Client,
    /// The generated secret, shown this once (secret methods only).
    pub(crate) client_secret: Option<String>,
}

/// A new client secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClientSecret {
    /// Shown this once.
    pub(crate) client_secret: String,
}

/// A signing key (public information).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct KeyDoc {
    /// The key id (`kid`).
    kid: String,
    /// `RS256`, `ES256` or `EdDSA`.
    alg: String,
    /// Unix time of its creation.
    created_at: i64,
    /// Unix time from which it signs (it is published before).
    sign_from: i64,
    /// Unix time at which it is retired.
    retire_at: Option<i64>,
}

/// The signing keys.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct KeyList {
    #[schema(value_type = Vec<KeyDoc>)]
    pub(crate) keys: Vec<KeyInfo>,
}

/// A rotation of the signing keys.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct KeysRotated {
    /// The ids of the new keys.
    pub(crate) new_kids: Vec<String>,
    /// The signing keys after the rotation.
    #[schema(value_type = Vec<KeyDoc>)]
    pub(crate) keys: Vec<KeyInfo>,
}
