//! Four-eyes proposals: list, read, approve (by a second administrator)
//! or reject.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{self, record, refuse, AdminChange, Ids};
use crate::auth::Caller;
use crate::scope::admin_scope;
use crate::scope::may_change;
use crate::scope::Scope;
use crate::{AdminError, AdminState};

pub(crate) mod apply;
pub(crate) mod store;
pub(crate) mod view;

use apply::{apply_approved, prepare_approval};
use store::ProposalRow;
use view::{Approved, ProposalPage, ProposalView, Rejected};

/// The routes of the proposals, with their OpenAPI annotations.
pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(proposals))
        .routes(routes!(proposal))
        .routes(routes!(approve))
        .routes(routes!(reject))
}

/// `GET /proposals[?status=pending|applied|rejected]`: the proposals of the
/// caller's subtree, newest first.
#[utoipa::path(
    get,
    path = "/proposals",
    tag = "admin",
    params(
        ("status" = Option<String>, Query, description = "pending, applied or rejected"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<String>, Query, description = "1..=1000, default 100")
    ),
    responses(
        (status = 200, description = "proposals of the subtree", body = ProposalPage),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn proposals(
    State(state): State<AdminState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let q: api::ListQuery = api::parse_query(raw)?;
    if let Some(s) = &q.status {
        if !matches!(s.as_str(), "pending" | "applied" | "rejected") {
            return Err(AdminError::bad_request(
                "`status` must be pending, applied or rejected",
            ));
        }
    }
    let c = AdminChange::new("proposal.list", "proposals", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let rows = store::recent(&state.0.pool).await?;
    let list: Vec<ProposalView> = rows
        .iter()
        .filter(|p| q.status.as_ref().is_none_or(|s| *s == p.status))
        .filter(|p| may_change(&state, &scope, &p.place()))
        .map(ProposalRow::view)
        .collect();
    let (proposals, next_cursor) = api::page(
        list,
        |p| format!("{:020}-{}", i64::MAX - p.created_at, p.id),
        &q,
    )?;
    Ok(api::json(
        StatusCode::OK,
        &ProposalPage {
            proposals,
            next_cursor,
        },
    ))
}

pub(crate) async fn proposal_in_scope(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    id: &str,
    c: &AdminChange<'_>,
) -> Result<ProposalRow, AdminError> {
    let row = store::get(&state.0.pool, id)
        .await?
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("no proposal `{id}`")))?;
    if !may_change(state, scope, &row.place()) {
        return Err(refuse(
            state,
            caller,
            c,
            "the proposal is outside the caller's subtree",
        )
        .await);
    }
    Ok(row)
}

/// `GET /proposals/{id}`.
#[utoipa::path(
    get,
    path = "/proposals/{id}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id")
    ),
    responses(
        (status = 200, description = "the proposal (ETag)", body = ProposalView),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn proposal(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("proposal.read", format!("proposals/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let row = proposal_in_scope(&state, &caller, &scope, &id, &c).await?;
    Ok(api::tagged(StatusCode::OK, &row.view()))
}

/// `POST /proposals/{id}/approve`: a second administrator (not the
/// proposer, with the same reach over the change) applies it.
#[utoipa::path(
    post,
    path = "/proposals/{id}/approve",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id")
    ),
    responses(
        (status = 200, description = "approved by a second administrator and applied", body = Approved),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn approve(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("proposal.approve", format!("proposals/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let row = proposal_in_scope(&state, &caller, &scope, &id, &c).await?;
    c.tenant = row.tenant.clone();
    if row.status != "pending" {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            format!("the proposal is {} already", row.status),
        ));
    }
    if row.proposer == caller.subject {
        return Err(refuse(
            &state,
            &caller,
            &c,
            "a proposal needs a second administrator: the proposer cannot approve it",
        )
        .await);
    }
    // Changes to sehr_hoch data (policy lines, a resource's protection)
    // are approved only with a fresh login.
    if matches!(row.kind.as_str(), "policy_change" | "resource") {
        caller.fresh_within(&state, state.rules().approval_max_age)?;
    }
    let payload: Value = serde_json::from_str(&row.payload).map_err(AdminError::from)?;
    c.approver = Some(caller.subject.clone());
    c.extra = json!({ "proposal": id, "proposer": row.proposer });
    // The approver must be able to make the change themselves, on the
    // state as it is now (not as it was proposed).
    let prepared = prepare_approval(&state, &caller, &scope, &row.kind, &payload, &mut c).await?;
    // Claim it: of two approvers at once, one applies it.
    let now = state.0.gateway.clock().now();
    let claimed = store::decide(&state.0.pool, &id, "applied", &caller.subject, now).await?;
    if !claimed {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "the proposal was decided meanwhile",
        ));
    }
    match apply_approved(&state, &caller, prepared, &mut c).await {
        Ok(result) => Ok(api::json(
            StatusCode::OK,
            &Approved {
                applied: true,
                proposal: id,
                result,
            },
        )),
        Err(p) => {
            // Not applied: it stays pending.
            store::reopen(&state.0.pool, &id).await;
            Err(p)
        }
    }
}

/// `POST /proposals/{id}/reject`: any administrator of its subtree
/// (the proposer too: withdrawing).
#[utoipa::path(
    post,
    path = "/proposals/{id}/reject",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id")
    ),
    responses(
        (status = 200, description = "rejected", body = Rejected),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn reject(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("proposal.reject", format!("proposals/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let row = proposal_in_scope(&state, &caller, &scope, &id, &c).await?;
    c.tenant = row.tenant.clone();
    let now = state.0.gateway.clock().now();
    let decided = store::decide(&state.0.pool, &id, "rejected", &caller.subject, now).await?;
    if !decided {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            format!("the proposal is {} already", row.status),
        ));
    }
    c.before = json!({ "status": "pending" });
    c.after = json!({ "status": "rejected" });
    record(&state, &caller, &c).await?;
    Ok(api::json(
        StatusCode::OK,
        &Rejected {
            rejected: true,
            proposal: id,
        },
    ))
}
