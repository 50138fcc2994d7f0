//! Leistungen of a subtree: which online service of a tenant serves
//! citizens or businesses, at which Vertrauensniveau, through which
//! identity sources, with which data.
//!
//! A Leistung lies in its tenant's subtree and its client in the same
//! subtree. A change that lowers what a Leistung requires or widens what
//! it receives or accepts (a lower level, more claims, more populations or
//! sources) is a proposal a second administrator approves, as for a
//! `sehr_hoch` resource; the approver is checked again on the state as it
//! is then.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use interkom_policy::LeistungSpec;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) mod view;
mod what_if;

use view::{LeistungDoc, LeistungList};

use crate::api::{self, record, refuse, AdminChange, Ids, JsonBody};
use crate::auth::Caller;
use crate::proposals::store::propose;
use crate::proposals::view::Proposed;
use crate::scope::{admin_scope, Place, Scope};
use crate::{AdminError, AdminState};

pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get, put, delete))
        .routes(routes!(what_if::what_if))
}

async fn all(state: &AdminState) -> Result<Vec<LeistungSpec>, AdminError> {
    interkom_policy::store::leistungen(&state.0.pool)
        .await
        .map_err(AdminError::from)
}

fn tag(l: &LeistungSpec) -> String {
    api::etag(l)
}

fn covers(state: &AdminState, scope: &Scope, tenant: &str) -> bool {
    scope.covers_id(&state.0.tenants, tenant)
}

async fn in_scope(
    state: &AdminState,
    caller: &Caller,
    c: &AdminChange<'_>,
    id: &str,
) -> Result<LeistungSpec, AdminError> {
    let scope = admin_scope(state, caller, c).await?;
    let l = all(state)
        .await?
        .into_iter()
        .find(|l| l.id == id)
        .ok_or_else(|| AdminError::not_found(format!("no Leistung `{id}`")))?;
    if !covers(state, &scope, &l.tenant) {
        return Err(refuse(
            state,
            caller,
            c,
            "the Leistung is outside the caller's subtree",
        )
        .await);
    }
    Ok(l)
}

/// `GET /leistungen`: the Leistungen of the subtree.
#[utoipa::path(
    get,
    path = "/leistungen",
    tag = "admin",
    responses(
        (status = 200, description = "Leistungen of the subtree, by id", body = LeistungList),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("leistung.list", "leistungen", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let leistungen = all(&state)
        .await?
        .into_iter()
        .filter(|l| covers(&state, &scope, &l.tenant))
        .collect();
    Ok(api::json(StatusCode::OK, &LeistungList { leistungen }))
}

/// `GET /leistungen/{id}`.
#[utoipa::path(
    get,
    path = "/leistungen/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    responses(
        (status = 200, description = "the Leistung (ETag)", body = LeistungDoc),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("leistung.read", format!("leistungen/{id}"), None);
    let l = in_scope(&state, &caller, &c, &id).await?;
    Ok(api::tagged(StatusCode::OK, &l))
}

/// `PUT /leistungen/{id}`: registers or replaces a Leistung (`If-Match`
/// checked when sent); a weakening is proposed.
#[utoipa::path(
    put,
    path = "/leistungen/{id}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id"),
        ("If-Match" = Option<String>, Header, description = "the entity's ETag")
    ),
    request_body(content = LeistungDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced", body = LeistungDoc),
        (status = 201, description = "created", body = LeistungDoc),
        (status = 202, description = "lowers what it requires or widens what it receives: proposed", body = Proposed),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LeistungSpec>,
) -> Result<Response, AdminError> {
    if body.id != id {
        return Err(AdminError::bad_request(
            "the body's id differs from the path's",
        ));
    }
    let mut c = AdminChange::new(
        "leistung.put",
        format!("leistungen/{id}"),
        Some(body.tenant.clone()),
    );
    let scope = admin_scope(&state, &caller, &c).await?;
    body.check().map_err(AdminError::bad_request)?;
    let current = all(&state).await?;
    let before = current.iter().find(|l| l.id == id).cloned();
    if let Some(b) = &before {
        api::check_if_match_sent(&headers, &tag(b))?;
    }
    check(&state, &caller, &scope, before.as_ref(), &body, &c).await?;
    c.before = serde_json::to_value(&before).unwrap_or(Value::Null);
    c.after = serde_json::to_value(&body).unwrap_or(Value::Null);
    if before.as_ref().is_some_and(|b| b.weakened_by(&body)) {
        let payload = json!({ "leistung": body, "before_etag": before.as_ref().map(tag) });
        let place = Place::Tenant(body.tenant.clone());
        let pid = propose(&state, &caller, "leistung", &payload, &place, &[], &mut c).await?;
        return Ok(api::json(StatusCode::ACCEPTED, &Proposed::new(pid, None)));
    }
    store(&state, &body).await?;
    record(&state, &caller, &c).await?;
    let status = if before.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(api::tagged(status, &body))
}

/// The requester's and again the approver's check: the tenant before and
/// after in the subtree; the client registered, of the Leistung's subtree;
/// the sources registered.
pub(crate) async fn check(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    before: Option<&LeistungSpec>,
    after: &LeistungSpec,
    c: &AdminChange<'_>,
) -> Result<(), AdminError> {
    if state.0.tenants.get(&after.tenant).is_none() {
        return Err(AdminError::bad_request(format!(
            "unknown tenant `{}`",
            after.tenant
        )));
    }
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
                "the Leistung's tenant is outside the caller's subtree",
            )
            .await);
        }
    }
    let client_tenant = match after.client.strip_prefix("saml:") {
        Some(sp) => state
            .0
            .directory
            .service_provider(sp)
            .await
            .map_err(AdminError::from)?
            .map(|s| s.cfg.tenant),
        None => state
            .0
            .directory
            .client(&after.client)
            .await
            .map_err(AdminError::from)?
            .map(|c| c.tenant.to_string()),
    };
    let Some(client_tenant) = client_tenant else {
        return Err(AdminError::bad_request(format!(
            "unknown client `{}`",
            after.client
        )));
    };
    let inside = state
        .0
        .tenants
        .get(&client_tenant)
        .is_some_and(|t| t.path.iter().any(|p| p == &after.tenant));
    if !inside {
        return Err(refuse(
            state,
            caller,
            c,
            "the client does not belong to the Leistung's tenant or its subtree",
        )
        .await);
    }
    let sources = state
        .0
        .directory
        .saml_sources()
        .await
        .map_err(AdminError::from)?;
    if let Some(s) = after
        .sources
        .iter()
        .find(|s| !sources.iter().any(|r| &r.cfg.id == *s))
    {
        return Err(AdminError::bad_request(format!(
            "unknown identity source `{s}`"
        )));
    }
    Ok(())
}

pub(crate) async fn store(state: &AdminState, l: &LeistungSpec) -> Result<(), AdminError> {
    let now = state.0.gateway.clock().now();
    match interkom_policy::store::put_leistung(&state.0.pool, l, now).await {
        Ok(()) => {}
        Err(interkom_policy::PolicyError::Conflict(m)) => return Err(AdminError::conflict(m)),
        Err(interkom_policy::PolicyError::Invalid(m)) => return Err(AdminError::bad_request(m)),
        Err(e) => return Err(e.into()),
    }
    state
        .0
        .gateway
        .policy()
        .reload()
        .await
        .map_err(AdminError::from)
}

/// `DELETE /leistungen/{id}`: the client is a Fachverfahren for staff
/// again.
#[utoipa::path(
    delete,
    path = "/leistungen/{id}",
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
    let mut c = AdminChange::new("leistung.delete", format!("leistungen/{id}"), None);
    let l = in_scope(&state, &caller, &c, &id).await?;
    c.tenant = Some(l.tenant.clone());
    c.before = serde_json::to_value(&l).unwrap_or(Value::Null);
    interkom_policy::store::delete_leistung(&state.0.pool, &id)
        .await
        .map_err(AdminError::from)?;
    state
        .0
        .gateway
        .policy()
        .reload()
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
) -> Result<LeistungSpec, AdminError> {
    let l: LeistungSpec =
        serde_json::from_value(payload["leistung"].clone()).map_err(AdminError::from)?;
    let current = all(state).await?;
    let before = current.iter().find(|x| x.id == l.id);
    if before.map(tag).as_deref() != payload["before_etag"].as_str() {
        return Err(AdminError::conflict(
            "the Leistung changed since the proposal: propose again",
        ));
    }
    check(state, caller, scope, before, &l, c).await?;
    Ok(l)
}
