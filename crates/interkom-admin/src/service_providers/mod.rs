//! SAML service providers (Fachverfahren that speak only SAML) of a
//! subtree: registered by hand or from their metadata (given, or fetched
//! once from an https URL on a public address — the rule for upstream
//! issuers).
//!
//! An SP lies in its tenant's subtree and maps to a resource the caller
//! administers (or to none: then only accounts of its tenant's subtree log
//! in, as for an OIDC client bound to no resource). A change that lowers
//! the protection need its logins are decided on is a proposal a second
//! administrator approves, like a change to a `sehr_hoch` resource.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use interkom_directory::service_providers::{Encryption, ServiceProviderConfig};
use interkom_policy::ProtectionNeed;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) mod view;

use view::{ServiceProviderDoc, ServiceProviderList};

use crate::api::{self, record, refuse, AdminChange, Ids, JsonBody};
use crate::auth::Caller;
use crate::proposals::store::propose;
use crate::proposals::view::Proposed;
use crate::scope::{admin_scope, may_change, resource_place, Place, Scope};
use crate::{AdminError, AdminState};

pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get, put, delete))
        .routes(routes!(put_from_metadata))
}

async fn all(state: &AdminState) -> Result<Vec<ServiceProviderConfig>, AdminError> {
    Ok(state
        .0
        .directory
        .service_providers()
        .await
        .map_err(AdminError::from)?
        .into_iter()
        .map(|s| s.cfg)
        .collect())
}

fn tag(s: &ServiceProviderConfig) -> String {
    api::etag(s)
}

fn covers(state: &AdminState, scope: &Scope, tenant: &str) -> bool {
    scope.covers_id(&state.0.tenants, tenant)
}

async fn in_scope(
    state: &AdminState,
    caller: &Caller,
    c: &AdminChange<'_>,
    id: &str,
) -> Result<ServiceProviderConfig, AdminError> {
    let scope = admin_scope(state, caller, c).await?;
    let sp = all(state)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| {
            AdminError::new(StatusCode::NOT_FOUND, format!("no service provider `{id}`"))
        })?;
    if !covers(state, &scope, &sp.tenant) {
        return Err(refuse(
            state,
            caller,
            c,
            "the service provider is outside the caller's subtree",
        )
        .await);
    }
    Ok(sp)
}

/// `GET /service-providers`: the SAML service providers of the subtree.
#[utoipa::path(
    get,
    path = "/service-providers",
    tag = "admin",
    responses(
        (status = 200, description = "service providers of the subtree, by id", body = ServiceProviderList),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("sp.list", "service-providers", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let service_providers = all(&state)
        .await?
        .into_iter()
        .filter(|s| covers(&state, &scope, &s.tenant))
        .collect();
    Ok(api::json(
        StatusCode::OK,
        &ServiceProviderList { service_providers },
    ))
}

/// `GET /service-providers/{id}`.
#[utoipa::path(
    get,
    path = "/service-providers/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    responses(
        (status = 200, description = "the service provider (ETag)", body = ServiceProviderDoc),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("sp.read", format!("service-providers/{id}"), None);
    let sp = in_scope(&state, &caller, &c, &id).await?;
    Ok(api::tagged(StatusCode::OK, &sp))
}

/// `PUT /service-providers/{id}`: registers or replaces an SP by hand
/// (`If-Match` checked when sent).
#[utoipa::path(
    put,
    path = "/service-providers/{id}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id"),
        ("If-Match" = Option<String>, Header, description = "the entity's ETag")
    ),
    request_body(content = ServiceProviderDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced", body = ServiceProviderDoc),
        (status = 201, description = "created", body = ServiceProviderDoc),
        (status = 202, description = "lowers the protection need its logins are decided on: proposed", body = Proposed),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ServiceProviderConfig>,
) -> Result<Response, AdminError> {
    if body.id != id {
        return Err(AdminError::bad_request(
            "the body's id differs from the path's",
        ));
    }
    store_checked(&state, &caller, &headers, body).await
}

/// A registration from the SP's metadata.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FromMetadata {
    tenant: String,
    name: String,
    /// The metadata itself, or
    #[serde(default)]
    metadata: Option<String>,
    /// where to fetch it once (https, a public address).
    #[serde(default)]
    metadata_url: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    /// Encrypt assertions to the certificate the metadata names for
    /// encryption (`aes256-gcm` with `rsa-oaep-mgf1p` unless said).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    encryption: Option<Encryption>,
}

/// `PUT /service-providers/{id}/metadata`: registers or replaces an SP from
/// its metadata (entity id, ACS URLs for HTTP-POST, SLO, certificates,
/// whether it signs its requests).
#[utoipa::path(
    put,
    path = "/service-providers/{id}/metadata",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    request_body(content = FromMetadata, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced", body = ServiceProviderDoc),
        (status = 201, description = "created", body = ServiceProviderDoc),
        (status = 202, description = "lowers the protection need its logins are decided on: proposed", body = Proposed),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put_from_metadata(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<FromMetadata>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new(
        "sp.put",
        format!("service-providers/{id}"),
        Some(body.tenant.clone()),
    );
    // The caller's subtree before anything is fetched for them.
    let scope = admin_scope(&state, &caller, &c).await?;
    if state.0.tenants.get(&body.tenant).is_none() || !covers(&state, &scope, &body.tenant) {
        return Err(refuse(
            &state,
            &caller,
            &c,
            "the tenant is outside the caller's subtree",
        )
        .await);
    }
    let xml = match (body.metadata, body.metadata_url) {
        (Some(x), None) => x,
        (None, Some(url)) => state
            .0
            .gateway
            .fetch_saml_metadata(&url)
            .await
            .map_err(AdminError::bad_request)?,
        _ => {
            return Err(AdminError::bad_request(
                "either `metadata` or `metadata_url`",
            ))
        }
    };
    let mut cfg = ServiceProviderConfig::from_metadata(&id, &body.tenant, &body.name, &xml)
        .map_err(|e| AdminError::bad_request(format!("the metadata: {e}")))?;
    cfg.resource = body.resource;
    cfg.encryption = body.encryption;
    store_checked(&state, &caller, &headers, cfg).await
}

async fn store_checked(
    state: &AdminState,
    caller: &Caller,
    headers: &HeaderMap,
    body: ServiceProviderConfig,
) -> Result<Response, AdminError> {
    let id = body.id.clone();
    let mut c = AdminChange::new(
        "sp.put",
        format!("service-providers/{id}"),
        Some(body.tenant.clone()),
    );
    let scope = admin_scope(state, caller, &c).await?;
    body.validate(&state.0.tenants)
        .map_err(AdminError::bad_request)?;
    let current = all(state).await?;
    let before = current.iter().find(|s| s.id == id).cloned();
    if let Some(b) = &before {
        api::check_if_match_sent(headers, &tag(b))?;
    }
    check(state, caller, &scope, before.as_ref(), &body, &c).await?;
    c.before = serde_json::to_value(&before).unwrap_or(Value::Null);
    c.after = serde_json::to_value(&body).unwrap_or(Value::Null);
    if weaker(state, before.as_ref(), &body) {
        let payload = json!({ "config": body, "before_etag": before.as_ref().map(tag) });
        let place = Place::Tenant(body.tenant.clone());
        let pid = propose(
            state,
            caller,
            "service_provider",
            &payload,
            &place,
            &[],
            &mut c,
        )
        .await?;
        return Ok(api::json(StatusCode::ACCEPTED, &Proposed::new(pid, None)));
    }
    let created = store(state, body.clone()).await?;
    record(state, caller, &c).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(api::tagged(status, &body))
}

/// The requester's and again the approver's check: tenant before and
/// after in the subtree, the resource the caller's.
pub(crate) async fn check(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    before: Option<&ServiceProviderConfig>,
    after: &ServiceProviderConfig,
    c: &AdminChange<'_>,
) -> Result<(), AdminError> {
    for t in before
        .iter()
        .map(|b| b.tenant.as_str())
        .chain([after.tenant.as_str()])
    {
        if !covers(state, scope, t) {
            return Err(refuse(
                state,
                caller,
                c,
                "the service provider's tenant is outside the caller's subtree",
            )
            .await);
        }
    }
    if let Some(r) = &after.resource {
        let snap = state.0.gateway.policy().snapshot();
        let Some(resource) = snap.resource(r) else {
            return Err(AdminError::bad_request(format!("unknown resource `{r}`")));
        };
        if !may_change(state, scope, &resource_place(resource)) {
            return Err(refuse(
                state,
                caller,
                c,
                "the resource is outside the caller's subtree",
            )
            .await);
        }
    }
    Ok(())
}

/// Whether the change lowers the protection need the SP's logins are
/// decided on (no resource: the lowest).
fn weaker(
    state: &AdminState,
    before: Option<&ServiceProviderConfig>,
    after: &ServiceProviderConfig,
) -> bool {
    let snap = state.0.gateway.policy().snapshot();
    let need = |s: &ServiceProviderConfig| {
        s.resource
            .as_deref()
            .and_then(|r| snap.resource(r))
            .map(|r| r.protection.overall())
    };
    let lowest = |n: Option<ProtectionNeed>| n.unwrap_or(ProtectionNeed::Normal);
    before.is_some_and(|b| {
        need(b).is_some() && (need(after).is_none() || lowest(need(after)) < lowest(need(b)))
    })
}

pub(crate) async fn store(
    state: &AdminState,
    cfg: ServiceProviderConfig,
) -> Result<bool, AdminError> {
    state
        .0
        .directory
        .put_service_provider(cfg)
        .await
        .map_err(AdminError::registration)
}

/// `DELETE /service-providers/{id}`: its requests are refused from now on.
#[utoipa::path(
    delete,
    path = "/service-providers/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    responses(
        (status = 204, description = "deleted"),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("sp.delete", format!("service-providers/{id}"), None);
    let sp = in_scope(&state, &caller, &c, &id).await?;
    c.tenant = Some(sp.tenant.clone());
    c.before = serde_json::to_value(&sp).unwrap_or(Value::Null);
    state
        .0
        .directory
        .delete_service_provider(&id)
        .await
        .map_err(AdminError::from)?;
    record(&state, &caller, &c).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An approved proposal, checked for its approver on the state as it is.
pub(crate) async fn prepare(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    payload: &Value,
    c: &AdminChange<'_>,
) -> Result<ServiceProviderConfig, AdminError> {
    let cfg: ServiceProviderConfig =
        serde_json::from_value(payload["config"].clone()).map_err(AdminError::from)?;
    let current = all(state).await?;
    let before = current.iter().find(|s| s.id == cfg.id);
    if before.map(tag).as_deref() != payload["before_etag"].as_str() {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "the service provider changed since the proposal: propose again",
        ));
    }
    check(state, caller, scope, before, &cfg, c).await?;
    Ok(cfg)
}
