//! Policy lines: read, preview with the engine's what-if (the decisions a
//! change would flip), change — or propose, when a `sehr_hoch` resource is
//! touched and a second administrator must approve.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use interkom_policy::records::{LineFilter, Reach};
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{self, record, AdminChange, JsonBody};
use crate::auth::Caller;
use crate::proposals::store::propose;
use crate::proposals::view::Proposed;
use crate::scope::admin_scope;
use crate::{AdminError, AdminState};

pub(crate) mod rules;
pub(crate) mod view;

use rules::{
    apply_lines, authorize_allows, authorize_flips, authorize_lines, parse_lines, preview,
    resources, PolicyChangeBody,
};
use view::{LineView, LinesChanged, LinesPage, WhatIf};

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
        (status = 200, description = "the live policy's lines, in the order of their text", body = LinesPage),
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
    let limit = api::page_limit(q.limit.as_deref())?;
    let c = AdminChange::new("policy.read", "policy/lines", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    // Only the lines the caller administers, where they apply (see
    // `rules::line_place`): the Kreis sees all.
    let tenants = scope.tenant_ids(&state.0.tenants);
    let filter = LineFilter {
        reach: Reach {
            tenants: &tenants,
            everywhere: scope.covers_every_kreis(&state.0.tenants),
        },
        subject: q.subject.as_deref(),
        object: q.resource.as_deref(),
    };
    let rows = interkom_policy::records::rule_lines_page(
        &state.0.pool,
        &filter,
        q.cursor.as_deref(),
        limit + 1,
    )
    .await?;
    let lines: Vec<LineView> = rows
        .into_iter()
        .map(|r| LineView {
            line: r.line.to_csv(),
            source: r.source,
        })
        .collect();
    let (lines, next_cursor) = api::keyset_page(lines, limit, |l| l.line.clone());
    Ok(api::json(
        StatusCode::OK,
        &LinesPage {
            version: state.0.gateway.policy().snapshot().version,
            lines,
            next_cursor,
        },
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
        (status = 200, description = "the decisions the change would flip", body = WhatIf),
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
        &WhatIf {
            flips,
            requires_approval: four_eyes,
        },
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
        (status = 200, description = "applied", body = LinesChanged),
        (status = 202, description = "touches sehr_hoch: recorded as a proposal", body = Proposed),
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
            &Proposed::new(id, Some(flips)),
        ));
    }
    let result = apply_lines(&state, &lines).await?;
    c.before = json!({ "present": result.removed });
    c.after = json!({ "added": result.added, "removed": result.removed, "comment": body.comment });
    c.extra = json!({ "flips": flips });
    record(&state, &caller, &c).await?;
    Ok(api::json(
        StatusCode::OK,
        &LinesChanged {
            applied: true,
            added: result.added,
            removed: result.removed,
            flips,
        },
    ))
}
