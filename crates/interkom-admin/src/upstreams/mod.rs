//! Upstream identity providers (a municipality's own IdP) of a subtree, and
//! second-factor resets.
//!
//! An upstream vouches for accounts of its tenant's subtree, so only an
//! administrator of that tenant configures it. Two things in it are more
//! than the tenant's own business and need more:
//! - trusting it above `low` lets its logins meet the protection needs of
//!   the whole county: only an administrator of its Kreis decides that;
//! - its group mapping hands out roles: only roles the caller holds at or
//!   above the tenant (as for role assignments).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use interkom_directory::UpstreamConfig;
use interkom_policy::Loa;
use serde_json::{json, Value};

pub(crate) mod view;

use view::{UpstreamConfigDoc, UpstreamList, UpstreamView};

use crate::api::{self, record, refuse, AdminChange, Ids, JsonBody};
use crate::auth::Caller;
use crate::proposals::view::Proposed;
use crate::scope::admin_scope;
use crate::scope::Scope;
use crate::{sources, AdminError, AdminState};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this resource, with their OpenAPI annotations (one list
/// for both).
pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get, put, delete))
}

/// An upstream as shown: the configuration without its secret.
fn view(u: &(UpstreamConfig, bool)) -> UpstreamView {
    UpstreamView::new(u)
}

/// An upstream as the audit trail keeps it.
fn audited(u: &(UpstreamConfig, bool)) -> Value {
    serde_json::to_value(view(u)).unwrap_or(Value::Null)
}

/// The entity tag of an upstream as shown (over its JSON object with the
/// keys in order, as proposals made before have it).
fn tag(u: &(UpstreamConfig, bool)) -> String {
    api::etag(&audited(u))
}

async fn find(state: &AdminState, id: &str) -> Result<Option<(UpstreamConfig, bool)>, AdminError> {
    Ok(state
        .0
        .directory
        .list_upstreams()
        .await
        .map_err(AdminError::from)?
        .into_iter()
        .find(|(u, _)| u.id == id))
}

fn covers(state: &AdminState, scope: &Scope, tenant: &str) -> bool {
    scope.covers_id(&state.0.tenants, tenant)
}

/// `GET /upstreams`: the upstream IdPs of the caller's subtree.
#[utoipa::path(
    get,
    path = "/upstreams",
    tag = "admin",
    responses(
        (status = 200, description = "upstreams of the subtree", body = UpstreamList),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("upstream.list", "upstreams", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let upstreams = state
        .0
        .directory
        .list_upstreams()
        .await
        .map_err(AdminError::from)?
        .iter()
        .filter(|(u, _)| covers(&state, &scope, &u.tenant))
        .map(view)
        .collect();
    Ok(api::json(StatusCode::OK, &UpstreamList { upstreams }))
}

/// `GET /upstreams/{id}`.
#[utoipa::path(
    get,
    path = "/upstreams/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    responses(
        (status = 200, description = "the upstream", body = UpstreamView),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("upstream.read", format!("upstreams/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let u = find(&state, &id)
        .await?
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("no upstream `{id}`")))?;
    if !covers(&state, &scope, &u.0.tenant) {
        return Err(refuse(
            &state,
            &caller,
            &c,
            "the upstream is outside the caller's subtree",
        )
        .await);
    }
    Ok(api::json(StatusCode::OK, &view(&u)))
}

/// `PUT /upstreams/{id}`: creates or replaces an upstream. A missing
/// `client_secret` keeps the stored one.
#[utoipa::path(
    put,
    path = "/upstreams/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    request_body(content = UpstreamConfigDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced", body = UpstreamView),
        (status = 201, description = "created", body = UpstreamView),
        (status = 202, description = "a mapping to a four-eyes role: proposed, applied when a second administrator approves", body = Proposed),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
    JsonBody(body): JsonBody<UpstreamConfig>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new(
        "upstream.put",
        format!("upstreams/{id}"),
        Some(body.tenant.to_string()),
    );
    let scope = admin_scope(&state, &caller, &c).await?;
    if body.id != id {
        return Err(AdminError::bad_request(
            "the body's id differs from the path's",
        ));
    }
    let before = find(&state, &id).await?;
    check_upstream(&state, &caller, &scope, before.as_ref(), &body, &c).await?;
    // A mapping to a role that administers others hands it to everyone the
    // upstream puts in that group: a second administrator approves it.
    let secret = body.client_secret.is_some().then_some("client secret");
    let r = registration(before.as_ref(), &body);
    let etag = before.as_ref().map(tag);
    if let Some(proposed) =
        sources::propose_four_eyes(&state, &caller, &r, &body, etag, secret, &mut c).await?
    {
        return Ok(proposed);
    }
    let after = store_upstream(&state, &caller, before.as_ref(), body, &mut c).await?;
    let status = if before.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(api::json(status, &after))
}

/// Whether the caller may give an upstream this configuration (the
/// requester of a change, and again its approver).
pub(crate) async fn check_upstream(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    before: Option<&(UpstreamConfig, bool)>,
    body: &UpstreamConfig,
    c: &AdminChange<'_>,
) -> Result<(), AdminError> {
    sources::check(state, caller, scope, &registration(before, body), c).await
}

/// What the rules of every source registration look at.
fn registration<'a>(
    before: Option<&'a (UpstreamConfig, bool)>,
    body: &'a UpstreamConfig,
) -> sources::Registration<'a> {
    sources::Registration {
        kind: "upstream",
        before: before.map(|b| b.0.tenant.as_str()),
        tenant: body.tenant.as_str(),
        kreis_only: kreis_only(body),
        roles_before: before.map(|b| &b.0.roles),
        roles: &body.roles,
    }
}

/// Three settings reach beyond the tenant and are the Kreis's decision:
/// trust above `low` (it meets protection needs across the county),
/// linking existing accounts (it takes them over, whatever roles they
/// hold), and e-mail domains (a `login_hint` there goes to this IdP).
fn kreis_only(body: &UpstreamConfig) -> Option<&'static str> {
    let trusted_above_low = body
        .acr
        .values()
        .chain(body.default_loa.iter())
        .any(|l| *l > Loa::Low);
    if trusted_above_low {
        Some("trusting an upstream above `low` is for an administrator of its Kreis")
    } else if body.link_existing {
        Some("linking existing accounts is for an administrator of its Kreis")
    } else if !body.domains.is_empty() {
        Some("claiming e-mail domains is for an administrator of its Kreis")
    } else {
        None
    }
}

/// Stores a checked configuration and records the change; returns the
/// upstream as shown.
pub(crate) async fn store_upstream(
    state: &AdminState,
    caller: &Caller,
    before: Option<&(UpstreamConfig, bool)>,
    body: UpstreamConfig,
    c: &mut AdminChange<'_>,
) -> Result<UpstreamView, AdminError> {
    let id = body.id.clone();
    let secret_changed = body.client_secret.is_some();
    state
        .0
        .directory
        .put_upstream(body)
        .await
        .map_err(AdminError::registration)?;
    c.before = before.map(audited).unwrap_or(Value::Null);
    let after = find(state, &id).await?.ok_or(AdminError::Internal)?;
    c.after = audited(&after);
    c.extra = json!({ "client_secret_changed": secret_changed });
    record(state, caller, c).await?;
    Ok(view(&after))
}

/// The upstream `id` as shown, with its tag (what a proposal checks is
/// unchanged when it is approved).
pub(crate) async fn current(
    state: &AdminState,
    id: &str,
) -> Result<Option<((UpstreamConfig, bool), String)>, AdminError> {
    Ok(find(state, id).await?.map(|u| {
        let tag = tag(&u);
        (u, tag)
    }))
}

/// `DELETE /upstreams/{id}`: its logins stop; its links stay, so that it
/// can return.
#[utoipa::path(
    delete,
    path = "/upstreams/{id}",
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
    let mut c = AdminChange::new("upstream.delete", format!("upstreams/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let u = find(&state, &id)
        .await?
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("no upstream `{id}`")))?;
    c.tenant = Some(u.0.tenant.to_string());
    if !covers(&state, &scope, &u.0.tenant) {
        return Err(refuse(
            &state,
            &caller,
            &c,
            "the upstream is outside the caller's subtree",
        )
        .await);
    }
    state
        .0
        .directory
        .delete_upstream(&id)
        .await
        .map_err(AdminError::from)?;
    c.before = audited(&u);
    record(&state, &caller, &c).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
