//! Resources (Fachverfahren and object types) with their protection needs.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use interkom_policy::{ProtectionNeed, ResourceSpec};
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{self, check_if_match, record, refuse, AdminChange, Ids, JsonBody};
use crate::auth::Caller;
use crate::policy::rules::resources;
use crate::proposals::store::propose;
use crate::proposals::view::Proposed;
use crate::scope::admin_scope;
use crate::scope::{may_change, resource_place};
use crate::{AdminError, AdminState};

pub(crate) mod rules;
pub(crate) mod view;

use rules::{check_client, check_resource, put_resource, slug, ResourceBody};
use view::{ResourceDoc, ResourcePage};

/// The routes of the resources, with their OpenAPI annotations.
pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list_resources))
        .routes(routes!(get_resource, put_resource_handler))
}

/// `GET /resources`: the resources the caller administers.
#[utoipa::path(
    get,
    path = "/resources",
    tag = "admin",
    params(
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<String>, Query, description = "1..=1000, default 100"),
        ("tenant" = Option<String>, Query, description = "only resources this tenant owns")
    ),
    responses(
        (status = 200, description = "resources of the subtree, by id", body = ResourcePage),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_resources(
    State(state): State<AdminState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let q: api::ListQuery = api::parse_query(raw)?;
    let c = AdminChange::new("resource.list", "resources", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let list: Vec<ResourceSpec> = resources(&state)
        .await?
        .into_iter()
        .filter(|r| may_change(&state, &scope, &resource_place(r)))
        .filter(|r| q.tenant.is_none() || r.owner == q.tenant)
        .collect();
    let (resources, next_cursor) = api::page(list, |r| r.id.clone(), &q)?;
    Ok(api::json(
        StatusCode::OK,
        &ResourcePage {
            resources,
            next_cursor,
        },
    ))
}

/// `GET /resources/{id}`.
#[utoipa::path(
    get,
    path = "/resources/{id}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id")
    ),
    responses(
        (status = 200, description = "the resource (ETag)", body = ResourceDoc),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_resource(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("resource.read", format!("resources/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let r = resources(&state)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("no resource `{id}`")))?;
    if !may_change(&state, &scope, &resource_place(&r)) {
        return Err(refuse(
            &state,
            &caller,
            &c,
            "the resource is outside the caller's subtree",
        )
        .await);
    }
    Ok(api::tagged(StatusCode::OK, &r))
}

/// `PUT /resources/{id}`: creates or replaces a resource (with `If-Match`
/// when it exists). Anything that is or becomes `sehr_hoch` is a proposal.
#[utoipa::path(
    put,
    path = "/resources/{id}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id"),
        ("If-Match" = Option<String>, Header, description = "the entity's ETag")
    ),
    request_body(content = ResourceBody, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced", body = ResourceDoc),
        (status = 201, description = "created", body = ResourceDoc),
        (status = 202, description = "touches sehr_hoch: recorded as a proposal", body = Proposed),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put_resource_handler(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ResourceBody>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new(
        "resource.put",
        format!("resources/{id}"),
        body.owner.clone(),
    );
    let scope = admin_scope(&state, &caller, &c).await?;
    if !slug(&id) || !slug(&body.kind) {
        return Err(AdminError::bad_request(
            "resource id and kind: letters, digits and - _ ., at most 128 characters",
        ));
    }
    if body.name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(AdminError::bad_request("`name`: at most 200 characters"));
    }
    if let Some(o) = &body.owner {
        if state.0.tenants.get(o).is_none() {
            return Err(AdminError::bad_request(format!("unknown tenant `{o}`")));
        }
    }
    let spec = ResourceSpec {
        id: id.clone(),
        name: body.name.clone(),
        kind: body.kind.clone(),
        owner: body.owner.clone(),
        client: body.client.clone(),
        protection: body.protection,
    };
    c.after = serde_json::to_value(&spec).unwrap_or(Value::Null);
    let all = resources(&state).await?;
    let before = all.iter().find(|r| r.id == id).cloned();
    if let Some(b) = &before {
        c.before = serde_json::to_value(b).unwrap_or(Value::Null);
        check_if_match(&headers, &api::etag(b))?;
        if !may_change(&state, &scope, &resource_place(b)) {
            return Err(refuse(
                &state,
                &caller,
                &c,
                "the resource is outside the caller's subtree",
            )
            .await);
        }
    }
    let place = resource_place(&spec);
    if !may_change(&state, &scope, &place) {
        return Err(refuse(
            &state,
            &caller,
            &c,
            "the new owner is outside the caller's subtree",
        )
        .await);
    }
    check_client(&state, &caller, &scope, &spec, &c).await?;
    check_resource(&state, &all, &spec)?;
    let sehr_hoch = |r: &ResourceSpec| r.protection.overall() == ProtectionNeed::SehrHoch;
    if before.as_ref().is_some_and(sehr_hoch) || sehr_hoch(&spec) {
        let change = interkom_policy::Change {
            put_resources: vec![spec.clone()],
            ..Default::default()
        };
        let flips = state
            .0
            .gateway
            .policy()
            .what_if(&change, state.0.gateway.clock().now())
            .await
            .map_err(AdminError::from)?
            .flips;
        let payload = json!({ "spec": spec, "before_etag": before.as_ref().map(api::etag) });
        let pid = propose(
            &state, &caller, "resource", &payload, &place, &flips, &mut c,
        )
        .await?;
        return Ok(api::json(
            StatusCode::ACCEPTED,
            &Proposed::new(pid, Some(flips)),
        ));
    }
    put_resource(&state, &spec).await?;
    record(&state, &caller, &c).await?;
    let status = if before.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(api::tagged(status, &spec))
}
