//! Policy lines: read, preview with the engine's what-if (the decisions a
//! change would flip), change — or propose, when a `sehr_hoch` resource is
//! touched and a second administrator must approve.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{self, record, AdminChange, JsonBody};
use crate::auth::Caller;
use crate::proposals::store::propose;
use crate::scope::admin_scope;
use crate::scope::may_change;
use crate::{AdminError, AdminState};

pub(crate) mod rules;

use rules::{
    apply_lines, authorize_allows, authorize_flips, authorize_lines, line_place, parse_lines,
    preview, resources, PolicyChangeBody,
};

/// The routes of the policy lines, with their OpenAPI annotations.
pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(lines))
        .routes(routes!(what_if))
        .routes(routes!(change))
}

/// `GET /policy/lines`: the live policy's lines, with their origin.
#[utoipa::path(
    get,
    path = "/policy/lines",
    tag = "admin",
    params(
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<String>, Query, description = "1..=1000, default 100"),
        ("subject" = Option<String>, Query, description = "only lines of this role or subject"),
        ("resource" = Option<String>, Query, description = "only lines on this object")
    ),
    responses(
        (status = 200, description = "the live policy's lines", body = serde_json::Value),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn lines(
    State(state): State<AdminState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let q: api::ListQuery = api::parse_query(raw)?;
    let c = AdminChange::new("policy.read", "policy/lines", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let all = resources(&state).await?;
    let rows = interkom_policy::records::rule_lines(&state.0.pool).await?;
    // Only the lines the caller administers (the Kreis sees all).
    let lines: Vec<Value> = rows
        .into_iter()
        .filter_map(|r| {
            let line = r.line;
            let place = line_place(&state, &all, &line).ok()?;
            let wanted = q
                .subject
                .as_ref()
                .is_none_or(|s| line.values.first() == Some(s))
                && q.resource
                    .as_ref()
                    .is_none_or(|o| line.values.get(1) == Some(o));
            (wanted && may_change(&state, &scope, &place))
                .then(|| json!({ "line": line.to_csv(), "source": r.source }))
        })
        .collect();
    let version = state.0.gateway.policy().snapshot().version;
    let (lines, next) = api::page(
        lines,
        |l| l["line"].as_str().unwrap_or_default().to_owned(),
        &q,
    )?;
    Ok(api::json(
        StatusCode::OK,
        json!({ "version": version, "lines": lines, "next_cursor": next }),
    ))
}

/// `POST /policy/what-if`: the decisions a change would flip, and whether
/// it would need a second administrator. Changes nothing.
#[utoipa::path(
    post,
    path = "/policy/what-if",
    tag = "admin",
    request_body(content = PolicyChangeBody, content_type = "application/json"),
    responses(
        (status = 200, description = "the decisions the change would flip", body = serde_json::Value),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn what_if(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<PolicyChangeBody>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("policy.what_if", "policy/lines", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let lines = parse_lines(&body)?;
    let all = resources(&state).await?;
    authorize_lines(&state, &caller, &scope, &all, &lines, &c).await?;
    let (flips, four_eyes) = preview(&state, &all, &lines).await?;
    authorize_flips(&state, &caller, &scope, &all, &flips, &c).await?;
    Ok(api::json(
        StatusCode::OK,
        json!({ "flips": flips, "requires_approval": four_eyes }),
    ))
}

/// `POST /policy/changes`: applies a change of lines after its what-if, or
/// (touching `sehr_hoch`) records it as a proposal: 202 with its id.
#[utoipa::path(
    post,
    path = "/policy/changes",
    tag = "admin",
    request_body(content = PolicyChangeBody, content_type = "application/json"),
    responses(
        (status = 200, description = "applied", body = serde_json::Value),
        (status = 202, description = "touches sehr_hoch: recorded as a proposal", body = serde_json::Value),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn change(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<PolicyChangeBody>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("policy.change", "policy/lines", None);
    c.after = serde_json::to_value(&body).unwrap_or(Value::Null);
    let scope = admin_scope(&state, &caller, &c).await?;
    let lines = parse_lines(&body)?;
    let all = resources(&state).await?;
    let place = authorize_lines(&state, &caller, &scope, &all, &lines, &c).await?;
    c.tenant = place.tenant();
    authorize_allows(&state, &caller, &all, &lines, &c).await?;
    let (flips, four_eyes) = preview(&state, &all, &lines).await?;
    authorize_flips(&state, &caller, &scope, &all, &flips, &c).await?;
    if four_eyes {
        let payload = serde_json::to_value(&body).unwrap_or(Value::Null);
        let id = propose(
            &state,
            &caller,
            "policy_change",
            &payload,
            &place,
            &flips,
            &mut c,
        )
        .await?;
        return Ok(api::json(
            StatusCode::ACCEPTED,
            json!({ "applied": false, "proposal": id, "flips": flips, "requires_approval": true }),
        ));
    }
    let result = apply_lines(&state, &lines).await?;
    c.before = json!({ "present": result.removed });
    c.after = json!({ "added": result.added, "removed": result.removed, "comment": body.comment });
    c.extra = json!({ "flips": flips });
    record(&state, &caller, &c).await?;
    Ok(api::json(
        StatusCode::OK,
        json!({ "applied": true, "added": result.added, "removed": result.removed, "flips": flips }),
    ))
}
