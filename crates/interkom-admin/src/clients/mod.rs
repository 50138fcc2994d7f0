//! Fachverfahren (OAuth clients) of a subtree, the tenant tree, and the
//! signing keys (whose rotation concerns every tenant: Kreis administrators
//! only).

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use interkom_directory::{Alg, AuthMethod, Client, ClientSpec, GrantType};
use serde::Deserialize;
use serde_json::{json, Value};

pub(crate) mod view;

use view::{ClientCreated, ClientDoc, ClientPage, ClientSecret, KeyList, KeysRotated};
use view::{TenantList, TenantView};

use crate::api::{self, check_if_match, record, refuse, AdminChange, Ids, JsonBody};
use crate::auth::Caller;
use crate::proposals::store::{propose, Place};
use crate::proposals::view::Proposed;
use crate::scope::admin_scope;
use crate::scope::Scope;
use crate::{AdminError, AdminState};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this resource, with their OpenAPI annotations (one list
/// for both).
pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(tenants))
        .routes(routes!(list, create))
        .routes(routes!(get, patch))
        .routes(routes!(rotate_secret))
        .routes(routes!(keys))
        .routes(routes!(rotate_keys))
}

fn covers_tenant(state: &AdminState, scope: &Scope, tenant: &str) -> bool {
    scope.covers_id(&state.0.tenants, tenant)
}

/// Whether the caller administers every Kreis (what concerns all tenants).
fn covers_all(state: &AdminState, scope: &Scope) -> bool {
    scope.covers_every_kreis(&state.0.tenants)
}

/// `GET /tenants`: the caller's subtree, root first.
#[utoipa::path(
    get,
    path = "/tenants",
    tag = "admin",
    responses(
        (status = 200, description = "the caller's subtree", body = TenantList),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn tenants(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("tenant.list", "tenants", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let tenants = state
        .0
        .tenants
        .iter()
        .filter(|t| scope.covers(t))
        .map(|t| TenantView {
            id: t.id.clone(),
            name: t.name.clone(),
            level: t.level.as_str().to_owned(),
            parent: t.parent.clone(),
            path: t.path_string(),
        })
        .collect();
    Ok(api::json(StatusCode::OK, &TenantList { tenants }))
}

/// `GET /clients`: the Fachverfahren of the caller's subtree.
#[utoipa::path(
    get,
    path = "/clients",
    tag = "admin",
    params(
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<String>, Query, description = "1..=1000, default 100"),
        ("tenant" = Option<String>, Query, description = "only this tenant's")
    ),
    responses(
        (status = 200, description = "clients of the subtree, by id", body = ClientPage),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let q: api::ListQuery = api::parse_query(raw)?;
    let c = AdminChange::new("client.list", "clients", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let all = state
        .0
        .directory
        .list_clients()
        .await
        .map_err(AdminError::from)?;
    let list: Vec<Client> = all
        .into_iter()
        .filter(|cl| covers_tenant(&state, &scope, &cl.tenant))
        .filter(|cl| q.tenant.as_ref().is_none_or(|t| *t == cl.tenant))
        .collect();
    let (clients, next_cursor) = api::page(list, |cl| cl.id.to_string(), &q)?;
    Ok(api::json(
        StatusCode::OK,
        &ClientPage {
            clients,
            next_cursor,
        },
    ))
}

async fn client_in_scope(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    id: &str,
    c: &AdminChange<'_>,
) -> Result<Client, AdminError> {
    if id == crate::console::CONSOLE_CLIENT {
        return Err(refuse(
            state,
            caller,
            c,
            "the console's registration is interkom's own",
        )
        .await);
    }
    let client = state
        .0
        .directory
        .client(id)
        .await
        .map_err(AdminError::from)?
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("no client `{id}`")))?;
    if !covers_tenant(state, scope, &client.tenant) {
        return Err(refuse(
            state,
            caller,
            c,
            "the client is outside the caller's subtree",
        )
        .await);
    }
    Ok((*client).clone())
}

/// `GET /clients/{id}`.
#[utoipa::path(
    get,
    path = "/clients/{id}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id")
    ),
    responses(
        (status = 200, description = "the client (ETag)", body = ClientDoc),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("client.read", format!("clients/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let client = client_in_scope(&state, &caller, &scope, &id, &c).await?;
    Ok(api::tagged(StatusCode::OK, &client))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewClient {
    id: String,
    tenant: String,
    name: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[schema(value_type = Vec<crate::docs::GrantTypeDoc>)]
    grant_types: Vec<GrantType>,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    #[schema(value_type = crate::docs::AuthMethodDoc)]
    auth_method: AuthMethod,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    jwks: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<crate::docs::AlgDoc>)]
    id_token_alg: Option<Alg>,
    /// Where a logout token is sent when a user's session ends
    /// (OpenID Connect Back-Channel Logout 1.0; https, or http on loopback).
    #[serde(default)]
    backchannel_logout_uri: Option<String>,
    /// May introspect the tokens of people of its tenant's subtree, not
    /// only its own (a resource server, RFC 7662 §4).
    #[serde(default)]
    resource_server: bool,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}

fn check_name(name: &str) -> Result<(), AdminError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(AdminError::bad_request("`name`: 1 to 200 characters"));
    }
    Ok(())
}

/// `POST /clients`: registers a Fachverfahren; a generated secret is shown
/// once.
#[utoipa::path(
    post,
    path = "/clients",
    tag = "admin",
    request_body(content = NewClient, content_type = "application/json"),
    responses(
        (status = 201, description = "registered; a generated secret is shown once", body = ClientCreated),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<NewClient>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new(
        "client.create",
        format!("clients/{}", body.id),
        Some(body.tenant.clone()),
    );
    if body.id == crate::console::CONSOLE_CLIENT {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            format!("`{}` is reserved for interkom's console", body.id),
        ));
    }
    let scope = admin_scope(&state, &caller, &c).await?;
    check_name(&body.name)?;
    if state.0.tenants.get(&body.tenant).is_none() {
        return Err(AdminError::bad_request(format!(
            "unknown tenant `{}`",
            body.tenant
        )));
    }
    if !covers_tenant(&state, &scope, &body.tenant) {
        return Err(refuse(
            &state,
            &caller,
            &c,
            "the tenant is outside the caller's subtree",
        )
        .await);
    }
    let spec = ClientSpec {
        id: body.id.clone().into(),
        tenant: body.tenant.clone().into(),
        name: body.name.clone(),
        redirect_uris: body.redirect_uris,
        post_logout_redirect_uris: body.post_logout_redirect_uris,
        grant_types: body.grant_types,
        scopes: body.scopes,
        auth_method: body.auth_method,
        secret: None,
        jwks: body.jwks,
        id_token_alg: body.id_token_alg.unwrap_or(Alg::RS256),
        backchannel_logout_uri: body.backchannel_logout_uri,
        // Registered by an administrator of a subtree: people are asked.
        first_party: false,
        resource_server: body.resource_server,
    };
    let secret = state
        .0
        .directory
        .register_client(spec)
        .await
        .map_err(AdminError::registration)?;
    let client = state
        .0
        .directory
        .client(&body.id)
        .await
        .map_err(AdminError::from)?
        .ok_or(AdminError::Internal)?;
    c.after = serde_json::to_value(&*client).unwrap_or(Value::Null);
    record(&state, &caller, &c).await?;
    let tag = api::etag(&*client);
    let mut r = api::json(
        StatusCode::CREATED,
        &ClientCreated {
            client: (*client).clone(),
            client_secret: secret,
        },
    );
    if let Ok(t) = axum::http::HeaderValue::from_str(&tag) {
        r.headers_mut().insert(axum::http::header::ETAG, t);
    }
    Ok(r)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    redirect_uris: Option<Vec<String>>,
    #[serde(default)]
    post_logout_redirect_uris: Option<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::docs::GrantTypeDoc>>)]
    grant_types: Option<Vec<GrantType>>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    jwks: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<crate::docs::AlgDoc>)]
    id_token_alg: Option<Alg>,
    /// A new back-channel logout URI; the empty string removes it.
    #[serde(default)]
    backchannel_logout_uri: Option<String>,
    #[serde(default)]
    resource_server: Option<bool>,
    /// Logs people in without a consent page: the Kreis's decision, in a
    /// request of its own, applied when a second administrator of the
    /// Kreis approves (202 and a proposal).
    #[serde(default)]
    first_party: Option<bool>,
}

impl ClientPatch {
    /// Whether anything but `first_party` is to change.
    fn more_than_first_party(&self) -> bool {
        self.name.is_some()
            || self.redirect_uris.is_some()
            || self.post_logout_redirect_uris.is_some()
            || self.grant_types.is_some()
            || self.scopes.is_some()
            || self.jwks.is_some()
            || self.id_token_alg.is_some()
            || self.backchannel_logout_uri.is_some()
            || self.resource_server.is_some()
    }
}

/// Whether the caller administers the Kreis of a client's tenant: who
/// decides that a client is the county's own.
pub(crate) fn covers_kreis(state: &AdminState, scope: &Scope, tenant: &str) -> bool {
    let kreis = state
        .0
        .tenants
        .get(tenant)
        .and_then(|t| t.path.first())
        .cloned()
        .unwrap_or_default();
    scope.covers_id(&state.0.tenants, &kreis)
}

/// `PATCH /clients/{id}` with `If-Match`.
#[utoipa::path(
    patch,
    path = "/clients/{id}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id"),
        ("If-Match" = String, Header, description = "the entity's ETag")
    ),
    request_body(content = ClientPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "changed (ETag)", body = ClientDoc),
        (status = 202, description = "first_party: proposed, applied when a second administrator of the Kreis approves", body = Proposed),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn patch(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ClientPatch>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("client.update", format!("clients/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let before = client_in_scope(&state, &caller, &scope, &id, &c).await?;
    c.tenant = Some(before.tenant.to_string());
    check_if_match(&headers, &api::etag(&before))?;
    if let Some(first_party) = body.first_party.filter(|f| *f != before.first_party) {
        if body.more_than_first_party() {
            return Err(AdminError::bad_request(
                "change `first_party` in a request of its own",
            ));
        }
        // Taking the standing away makes the client ask again: the
        // tenant's administrator may do that at once.
        if !first_party {
            state
                .0
                .directory
                .set_first_party(&before.id, false)
                .await
                .map_err(AdminError::from)?;
            c.op = "client.first_party";
            c.before = json!({ "first_party": true });
            c.after = json!({ "first_party": false });
            record(&state, &caller, &c).await?;
            let after = state
                .0
                .directory
                .client(&before.id)
                .await
                .map_err(AdminError::from)?
                .ok_or(AdminError::Internal)?;
            return Ok(api::tagged(StatusCode::OK, &*after));
        }
        if !covers_kreis(&state, &scope, &before.tenant) {
            let why = "whether a client asks for consent is for an administrator of its Kreis";
            return Err(refuse(&state, &caller, &c, why).await);
        }
        let place = Place::Tenant(before.tenant.to_string());
        let payload = json!({ "client": before.id, "first_party": first_party });
        let pid = propose(
            &state,
            &caller,
            "client_first_party",
            &payload,
            &place,
            &[],
            &mut c,
        )
        .await?;
        return Ok(api::json(StatusCode::ACCEPTED, &Proposed::new(pid, None)));
    }
    if let Some(n) = &body.name {
        check_name(n)?;
    }
    let spec = ClientSpec {
        id: before.id.clone(),
        tenant: before.tenant.clone(),
        name: body.name.unwrap_or_else(|| before.name.clone()),
        redirect_uris: body
            .redirect_uris
            .unwrap_or_else(|| before.redirect_uris.clone()),
        post_logout_redirect_uris: body
            .post_logout_redirect_uris
            .unwrap_or_else(|| before.post_logout_redirect_uris.clone()),
        grant_types: body
            .grant_types
            .unwrap_or_else(|| before.grant_types.clone()),
        scopes: body.scopes.unwrap_or_else(|| before.scopes.clone()),
        auth_method: before.auth_method,
        secret: None,
        jwks: body.jwks.or_else(|| before.jwks.clone()),
        id_token_alg: body.id_token_alg.unwrap_or(before.id_token_alg),
        backchannel_logout_uri: match body.backchannel_logout_uri {
            Some(u) if u.is_empty() => None,
            Some(u) => Some(u),
            None => before.backchannel_logout_uri.clone(),
        },
        first_party: before.first_party,
        resource_server: body.resource_server.unwrap_or(before.resource_server),
    };
    state
        .0
        .directory
        .update_client(spec)
        .await
        .map_err(AdminError::registration)?;
    let after = state
        .0
        .directory
        .client(&id)
        .await
        .map_err(AdminError::from)?
        .ok_or(AdminError::Internal)?;
    c.before = serde_json::to_value(&before).unwrap_or(Value::Null);
    c.after = serde_json::to_value(&*after).unwrap_or(Value::Null);
    record(&state, &caller, &c).await?;
    Ok(api::tagged(StatusCode::OK, &*after))
}

/// `POST /clients/{id}/secret`: a new client secret, shown once.
#[utoipa::path(
    post,
    path = "/clients/{id}/secret",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id")
    ),
    responses(
        (status = 200, description = "the new secret, shown once", body = ClientSecret),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn rotate_secret(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("client.secret_rotate", format!("clients/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let client = client_in_scope(&state, &caller, &scope, &id, &c).await?;
    c.tenant = Some(client.tenant.to_string());
    if !client.auth_method.uses_secret() {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            format!("`{id}` authenticates without a secret"),
        ));
    }
    let client_secret = state
        .0
        .directory
        .rotate_client_secret(&id)
        .await
        .map_err(AdminError::from)?;
    record(&state, &caller, &c).await?;
    Ok(api::json(StatusCode::OK, &ClientSecret { client_secret }))
}

/// `GET /keys`: the signing keys (public information).
#[utoipa::path(
    get,
    path = "/keys",
    tag = "admin",
    responses(
        (status = 200, description = "signing keys", body = KeyList),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn keys(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("key.list", "keys", None);
    admin_scope(&state, &caller, &c).await?;
    let keys = state
        .0
        .gateway
        .list_keys()
        .await
        .map_err(AdminError::from)?;
    Ok(api::json(StatusCode::OK, &KeyList { keys }))
}

/// `POST /keys/rotate`: new signing keys, published before they sign.
#[utoipa::path(
    post,
    path = "/keys/rotate",
    tag = "admin",
    responses(
        (status = 200, description = "rotated", body = KeysRotated),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn rotate_keys(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("key.rotate", "keys", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    if !covers_all(&state, &scope) {
        return Err(refuse(&state, &caller, &c, "the signing keys serve every tenant: only an administrator of the whole Kreis rotates them").await);
    }
    let before = state
        .0
        .gateway
        .list_keys()
        .await
        .map_err(AdminError::from)?;
    let kids = state
        .0
        .gateway
        .rotate_keys()
        .await
        .map_err(AdminError::from)?;
    let after = state
        .0
        .gateway
        .list_keys()
        .await
        .map_err(AdminError::from)?;
    c.before = serde_json::to_value(&before).unwrap_or(Value::Null);
    c.after = serde_json::to_value(&after).unwrap_or(Value::Null);
    record(&state, &caller, &c).await?;
    Ok(api::json(
        StatusCode::OK,
        &KeysRotated {
            new_kids: kids,
            keys: after,
        },
    ))
}
