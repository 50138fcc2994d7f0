//! Protected applications (forward authentication) of a subtree.
//!
//! An application lies in its tenant's subtree and maps to a resource the
//! caller administers: a Gemeinde cannot put its own web application under
//! the Kreis's resource (and so learn who the Kreis's people are). An
//! origin belongs to one tenant: another tenant's application cannot claim
//! a path on it. A change that lets any path on an origin be reached with
//! a lower protection need than before — a new mapping, a narrower prefix,
//! a removal that leaves a path to a weaker application — is a proposal a
//! second administrator approves, like a change to a `sehr_hoch` resource.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use interkom_directory::applications::{Application, ApplicationConfig, ApplicationIndex};
use interkom_policy::ProtectionNeed;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) mod view;

use view::{ApplicationDoc, ApplicationList};

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
}

async fn all(state: &AdminState) -> Result<Vec<ApplicationConfig>, AdminError> {
    let idx = state
        .0
        .directory
        .applications_now()
        .await
        .map_err(AdminError::from)?;
    let mut v: Vec<ApplicationConfig> = idx.all().map(|a| a.cfg.clone()).collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(v)
}

fn tag(a: &ApplicationConfig) -> String {
    api::etag(a)
}

fn covers(state: &AdminState, scope: &Scope, tenant: &str) -> bool {
    scope.covers_id(&state.0.tenants, tenant)
}

/// The application `id` of the caller's subtree, or the error to answer.
async fn in_scope(
    state: &AdminState,
    caller: &Caller,
    c: &AdminChange<'_>,
    id: &str,
) -> Result<(Scope, ApplicationConfig), AdminError> {
    let scope = admin_scope(state, caller, c).await?;
    let a = all(state)
        .await?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("no application `{id}`")))?;
    if !covers(state, &scope, &a.tenant) {
        return Err(refuse(
            state,
            caller,
            c,
            "the application is outside the caller's subtree",
        )
        .await);
    }
    Ok((scope, a))
}

/// `GET /applications`: the protected applications of the caller's subtree.
#[utoipa::path(
    get,
    path = "/applications",
    tag = "admin",
    responses(
        (status = 200, description = "applications of the subtree, by id", body = ApplicationList),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("application.list", "applications", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let applications = all(&state)
        .await?
        .into_iter()
        .filter(|a| covers(&state, &scope, &a.tenant))
        .collect();
    Ok(api::json(StatusCode::OK, &ApplicationList { applications }))
}

/// `GET /applications/{id}`.
#[utoipa::path(
    get,
    path = "/applications/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    responses(
        (status = 200, description = "the application (ETag)", body = ApplicationDoc),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("application.read", format!("applications/{id}"), None);
    let (_, a) = in_scope(&state, &caller, &c, &id).await?;
    Ok(api::tagged(StatusCode::OK, &a))
}

/// `PUT /applications/{id}`: creates or replaces an application (with
/// `If-Match` when it exists). A change that lowers the protection need of
/// any path is a proposal.
#[utoipa::path(
    put,
    path = "/applications/{id}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id"),
        ("If-Match" = Option<String>, Header, description = "the entity's ETag")
    ),
    request_body(content = ApplicationDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced", body = ApplicationDoc),
        (status = 201, description = "created", body = ApplicationDoc),
        (status = 202, description = "lowers the protection need of a path: proposed, applied when a second administrator approves", body = Proposed),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ApplicationConfig>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new(
        "application.put",
        format!("applications/{id}"),
        Some(body.tenant.clone()),
    );
    let scope = admin_scope(&state, &caller, &c).await?;
    if body.id != id {
        return Err(AdminError::bad_request(
            "the body's id differs from the path's",
        ));
    }
    let mut body = body;
    body.validate(&state.0.tenants)
        .map_err(AdminError::bad_request)?;
    let current = all(&state).await?;
    let before = current.iter().find(|a| a.id == id).cloned();
    if let Some(b) = &before {
        api::check_if_match_sent(&headers, &tag(b))?;
    }
    check_application(
        &state,
        &caller,
        &scope,
        &current,
        before.as_ref(),
        Some(&body),
        &c,
    )
    .await?;
    c.before = serde_json::to_value(&before).unwrap_or(Value::Null);
    c.after = serde_json::to_value(&body).unwrap_or(Value::Null);
    let proposed = propose_if_weaker(
        &state,
        &caller,
        &current,
        &id,
        Some(&body),
        before.as_ref(),
        &mut c,
    )
    .await?;
    if let Some(res) = proposed {
        return Ok(res);
    }
    let created = store(&state, body.clone()).await?;
    record(&state, &caller, &c).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(api::tagged(status, &body))
}

/// Whether the caller may make this change (the requester, and again the
/// approver of a proposal): tenant before and after in the subtree, the
/// resource the caller's, every origin the tenant's alone.
pub(crate) async fn check_application(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    current: &[ApplicationConfig],
    before: Option<&ApplicationConfig>,
    after: Option<&ApplicationConfig>,
    c: &AdminChange<'_>,
) -> Result<(), AdminError> {
    for t in before.iter().chain(after.iter()).map(|a| a.tenant.as_str()) {
        if !covers(state, scope, t) {
            return Err(refuse(
                state,
                caller,
                c,
                "the application's tenant is outside the caller's subtree",
            )
            .await);
        }
    }
    let Some(a) = after else {
        return Ok(());
    };
    let snap = state.0.gateway.policy().snapshot();
    let Some(resource) = snap.resource(&a.resource) else {
        return Err(AdminError::bad_request(format!(
            "unknown resource `{}`",
            a.resource
        )));
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
    if let Some(other) = current.iter().find(|o| {
        o.id != a.id && o.tenant != a.tenant && o.origins.iter().any(|x| a.origins.contains(x))
    }) {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            format!(
                "an origin of the application belongs to `{}` of another tenant",
                other.id
            ),
        ));
    }
    Ok(())
}

/// The paths whose protection need a change lowers (`None`: none). Every
/// registered prefix on the origins concerned is compared before and
/// after; a path no application answers any more is denied, not weaker.
pub(crate) fn weakened(
    state: &AdminState,
    current: &[ApplicationConfig],
    id: &str,
    after: Option<&ApplicationConfig>,
) -> Option<Vec<String>> {
    let snap = state.0.gateway.policy().snapshot();
    let need = |a: &Application| {
        snap.resource(&a.cfg.resource)
            .map_or(ProtectionNeed::SehrHoch, |r| r.protection.overall())
    };
    let as_apps = |v: Vec<ApplicationConfig>| {
        v.into_iter()
            .map(|cfg| Application { cfg, updated_at: 0 })
            .collect::<Vec<_>>()
    };
    let before_idx = ApplicationIndex::new(as_apps(current.to_vec()));
    let mut next: Vec<ApplicationConfig> = current.iter().filter(|a| a.id != id).cloned().collect();
    next.extend(after.cloned());
    let after_idx = ApplicationIndex::new(as_apps(next.clone()));
    let old = current.iter().find(|a| a.id == id);
    let origins: BTreeSet<&String> = old
        .iter()
        .chain(after.iter())
        .flat_map(|a| a.origins.iter())
        .collect();
    let mut weaker = Vec::new();
    for o in origins {
        let paths: BTreeSet<&String> = current
            .iter()
            .chain(next.iter())
            .filter(|a| a.origins.contains(o))
            .flat_map(|a| a.paths.iter())
            .collect();
        for p in paths {
            let (Some(b), Some(a)) = (before_idx.route(o, p), after_idx.route(o, p)) else {
                continue;
            };
            if need(a) < need(b) {
                weaker.push(format!("{o}{p}"));
            }
        }
    }
    (!weaker.is_empty()).then_some(weaker)
}

/// A change (`after`; `None`: the removal of `id`) that lowers a path's
/// protection need is recorded as a proposal: its answer (202). `None`:
/// apply it.
async fn propose_if_weaker(
    state: &AdminState,
    caller: &Caller,
    current: &[ApplicationConfig],
    id: &str,
    after: Option<&ApplicationConfig>,
    before: Option<&ApplicationConfig>,
    c: &mut AdminChange<'_>,
) -> Result<Option<Response>, AdminError> {
    let Some(weaker) = weakened(state, current, id, after) else {
        return Ok(None);
    };
    let payload = json!({
        "id": id,
        "config": after,
        "before_etag": before.map(tag),
        "weakened": weaker,
    });
    let tenant = after
        .or(before)
        .map(|a| a.tenant.clone())
        .unwrap_or_default();
    let pid = propose(
        state,
        caller,
        "application",
        &payload,
        &Place::Tenant(tenant),
        &[],
        c,
    )
    .await?;
    Ok(Some(api::json(
        StatusCode::ACCEPTED,
        &Proposed::new(pid, None),
    )))
}

/// Stores a checked registration; true when it is new.
pub(crate) async fn store(state: &AdminState, cfg: ApplicationConfig) -> Result<bool, AdminError> {
    state
        .0
        .directory
        .put_application(cfg)
        .await
        .map_err(AdminError::registration)
}

/// `DELETE /applications/{id}`: the proxy's checks for it are refused from
/// now on (a removal that leaves a path to a weaker application is a
/// proposal).
#[utoipa::path(
    delete,
    path = "/applications/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 202, description = "leaves a path to a weaker application: proposed", body = Proposed),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("application.delete", format!("applications/{id}"), None);
    let (_, a) = in_scope(&state, &caller, &c, &id).await?;
    c.tenant = Some(a.tenant.clone());
    c.before = serde_json::to_value(&a).unwrap_or(Value::Null);
    let current = all(&state).await?;
    if let Some(res) =
        propose_if_weaker(&state, &caller, &current, &id, None, Some(&a), &mut c).await?
    {
        return Ok(res);
    }
    remove(&state, &id).await?;
    record(&state, &caller, &c).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn remove(state: &AdminState, id: &str) -> Result<(), AdminError> {
    state
        .0
        .directory
        .delete_application(id)
        .await
        .map_err(AdminError::from)?;
    Ok(())
}

/// An approved application proposal, checked for its approver on the
/// state as it is now: the configuration to store (`None`: remove `id`).
pub(crate) async fn prepare(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    payload: &Value,
    c: &AdminChange<'_>,
) -> Result<(String, Option<ApplicationConfig>), AdminError> {
    let id = payload["id"]
        .as_str()
        .ok_or_else(|| AdminError::internal("malformed application proposal"))?
        .to_owned();
    let after: Option<ApplicationConfig> = match &payload["config"] {
        Value::Null => None,
        v => Some(serde_json::from_value(v.clone()).map_err(AdminError::from)?),
    };
    let current = all(state).await?;
    let before = current.iter().find(|a| a.id == id);
    if before.map(tag).as_deref() != payload["before_etag"].as_str() {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "the application changed since the proposal: propose again",
        ));
    }
    check_application(state, caller, scope, &current, before, after.as_ref(), c).await?;
    Ok((id, after))
}
