//! The live policy: lines, resources with their protection needs, and the
//! four-eyes proposals for whatever touches a `sehr_hoch` resource.
//!
//! Every change is previewed by the engine's what-if (the decisions it
//! would flip) before it is applied; a change that touches a `sehr_hoch`
//! resource is stored as a proposal and applied only when a second
//! administrator approves it.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use interkom_policy::{Flip, ProtectionNeed, ResourceSpec, RuleLine};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{self, check_if_match, record, refuse, Change, Ids, JsonBody};
use crate::auth::Caller;
use crate::proposals::{self, ProposalRow};
pub(crate) use crate::proposals::{propose, Place};
use crate::scope::admin_scope;
use crate::scope::Scope;
use crate::{AdminError, AdminState};

/// Most lines in one change.
const MAX_LINES: usize = 100;

async fn resources(state: &AdminState) -> Result<Vec<ResourceSpec>, AdminError> {
    Ok(interkom_policy::records::resources(&state.0.pool).await?)
}

/// Whether the caller administers `place`.
fn may_change(state: &AdminState, scope: &Scope, place: &Place) -> bool {
    match place {
        Place::Tenant(t) => scope.covers_id(&state.0.tenants, t),
        Place::Everywhere => scope.covers_every_kreis(&state.0.tenants),
    }
}

/// The place of a policy line: `p` lines by their object (a resource's
/// owner; a kind or `*` is everywhere, also when a resource's id happens
/// to equal a kind), `g` lines by their Samtgemeinde.
fn line_place(
    state: &AdminState,
    all: &[ResourceSpec],
    line: &RuleLine,
) -> Result<Place, AdminError> {
    let v = |i: usize| line.values.get(i).map(String::as_str).unwrap_or("");
    if line.ptype == "g" {
        return match state.0.tenants.get(v(0)) {
            Some(t) => Ok(Place::Tenant(t.id.clone())),
            None => Err(AdminError::bad_request(format!(
                "`{}`: unknown tenant `{}`",
                line.to_csv(),
                v(0)
            ))),
        };
    }
    if v(1) == "*" || all.iter().any(|r| r.kind == v(1)) {
        return Ok(Place::Everywhere);
    }
    Ok(match all.iter().find(|r| r.id == v(1)) {
        Some(ResourceSpec { owner: Some(o), .. }) => Place::Tenant(o.clone()),
        _ => Place::Everywhere,
    })
}

/// Whether a line or the flips of a change concern a `sehr_hoch` resource.
fn touches_sehr_hoch(all: &[ResourceSpec], lines: &[&RuleLine], flips: &[Flip]) -> bool {
    let sehr_hoch = |r: &&ResourceSpec| r.protection.overall() == ProtectionNeed::SehrHoch;
    let by_line = lines.iter().any(|l| {
        l.ptype == "p"
            && all
                .iter()
                .filter(sehr_hoch)
                .any(|r| l.values[1] == "*" || l.values[1] == r.id || l.values[1] == r.kind)
    });
    let by_flip = flips
        .iter()
        .any(|f| all.iter().filter(sehr_hoch).any(|r| r.id == f.resource));
    by_line || by_flip
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyChangeBody {
    /// Lines to add, as in `baseline.csv` (`p, role, object, action, reach, effect, condition`).
    #[serde(default)]
    add: Vec<String>,
    /// Lines to remove.
    #[serde(default)]
    remove: Vec<String>,
    /// Why (kept with the change).
    #[serde(default)]
    comment: Option<String>,
}

struct Lines {
    add: Vec<RuleLine>,
    remove: Vec<RuleLine>,
}

fn parse_lines(body: &PolicyChangeBody) -> Result<Lines, AdminError> {
    if body.add.is_empty() && body.remove.is_empty() {
        return Err(AdminError::bad_request("name lines to `add` or `remove`"));
    }
    if body.add.len() + body.remove.len() > MAX_LINES {
        return Err(AdminError::bad_request(format!(
            "at most {MAX_LINES} lines per change"
        )));
    }
    if body
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > 500)
    {
        return Err(AdminError::bad_request("`comment`: at most 500 characters"));
    }
    let parse = |s: &String| {
        let line =
            RuleLine::parse(s).map_err(|e| AdminError::bad_request(format!("`{s}`: {e}")))?;
        // What is stored must read back as the same line.
        if RuleLine::parse(&line.to_csv()).as_ref() != Ok(&line) {
            return Err(AdminError::bad_request(format!(
                "`{s}` is not a policy line"
            )));
        }
        Ok(line)
    };
    Ok(Lines {
        add: body.add.iter().map(parse).collect::<Result<_, _>>()?,
        remove: body.remove.iter().map(parse).collect::<Result<_, _>>()?,
    })
}

/// The what-if of a change of lines, and whether it needs four eyes.
async fn preview(
    state: &AdminState,
    all: &[ResourceSpec],
    lines: &Lines,
) -> Result<(Vec<Flip>, bool), AdminError> {
    let change = interkom_policy::Change {
        add: lines.add.clone(),
        remove: lines.remove.clone(),
        ..Default::default()
    };
    let now = state.0.gateway.clock().now();
    let flips = state
        .0
        .gateway
        .policy()
        .what_if(&change, now)
        .await
        .map_err(AdminError::from)?;
    let touched: Vec<&RuleLine> = lines.add.iter().chain(&lines.remove).collect();
    let four_eyes = touches_sehr_hoch(all, &touched, &flips);
    Ok((flips, four_eyes))
}

/// Checks that the caller may change every line; returns the change's
/// place (the common tenant, or everywhere).
async fn authorize_lines(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    all: &[ResourceSpec],
    lines: &Lines,
    c: &Change<'_>,
) -> Result<Place, AdminError> {
    let mut places = Vec::new();
    for line in lines.add.iter().chain(&lines.remove) {
        let place = line_place(state, all, line)?;
        if !may_change(state, scope, &place) {
            let why = match &place {
                Place::Tenant(t) => format!("`{}` belongs to `{t}`, outside the caller's subtree", line.to_csv()),
                Place::Everywhere => format!(
                    "`{}` applies to every tenant: only an administrator of the whole Kreis may change it",
                    line.to_csv()
                ),
            };
            return Err(refuse(state, caller, c, &why).await);
        }
        places.push(place);
    }
    Ok(common_place(state, &places))
}

/// The smallest place holding all of `places`: their lowest common
/// ancestor, or everywhere.
fn common_place(state: &AdminState, places: &[Place]) -> Place {
    let mut common: Option<Vec<String>> = None;
    for p in places {
        let Place::Tenant(t) = p else {
            return Place::Everywhere;
        };
        let Some(path) = state.0.tenants.get(t).map(|t| t.path.clone()) else {
            return Place::Everywhere;
        };
        common = Some(match common {
            None => path,
            Some(c) => c
                .iter()
                .zip(&path)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a.clone())
                .collect(),
        });
    }
    match common.and_then(|c| c.last().cloned()) {
        Some(t) => Place::Tenant(t),
        None => Place::Everywhere,
    }
}

/// The decisions a change flips must all concern resources the caller
/// administers (a line can reach further than its object suggests).
async fn authorize_flips(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    all: &[ResourceSpec],
    flips: &[Flip],
    c: &Change<'_>,
) -> Result<(), AdminError> {
    for f in flips {
        let place = match all.iter().find(|r| r.id == f.resource) {
            Some(r) => resource_place(r),
            None => Place::Everywhere,
        };
        if !may_change(state, scope, &place) {
            let why = format!(
                "the change would alter access to `{}`, outside the caller's subtree",
                f.resource
            );
            return Err(refuse(state, caller, c, &why).await);
        }
    }
    Ok(())
}

/// Nobody hands out a permission they do not hold: an added allow line
/// needs the caller to be allowed the same action on every resource the
/// line's object covers (judged by the rules alone, strongest login).
async fn authorize_allows(
    state: &AdminState,
    caller: &Caller,
    all: &[ResourceSpec],
    lines: &Lines,
    c: &Change<'_>,
) -> Result<(), AdminError> {
    let snap = state.0.gateway.policy().snapshot();
    let now = state.0.gateway.clock().now();
    let ctx = interkom_policy::engine::AuthContext {
        acr: Some(interkom_policy::Loa::High),
        auth_time: Some(now),
        second_factor: true,
        now,
    };
    for line in lines
        .add
        .iter()
        .filter(|l| l.ptype == "p" && l.values[4] == "allow")
    {
        let (obj, act) = (&line.values[1], &line.values[2]);
        for r in all
            .iter()
            .filter(|r| obj == "*" || r.id == *obj || r.kind == *obj)
        {
            let d = snap.decide(
                interkom_policy::engine::SubjectRef::User(&caller.subject),
                act,
                interkom_policy::engine::ResourceRef::id(&r.id),
                &ctx,
            );
            if !d.allowed() {
                let why = format!(
                    "`{}` would allow `{act}` on `{}`, which the caller may not do",
                    line.to_csv(),
                    r.id
                );
                return Err(refuse(state, caller, c, &why).await);
            }
        }
    }
    Ok(())
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
    let c = Change::new("policy.read", "policy/lines", None);
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
    let c = Change::new("policy.what_if", "policy/lines", None);
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
    let mut c = Change::new("policy.change", "policy/lines", None);
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

struct Applied {
    added: Vec<String>,
    removed: Vec<String>,
}

async fn apply_lines(state: &AdminState, lines: &Lines) -> Result<Applied, AdminError> {
    let pool = &state.0.pool;
    let now = state.0.gateway.clock().now();
    let mut out = Applied {
        added: Vec::new(),
        removed: Vec::new(),
    };
    for l in &lines.remove {
        if interkom_policy::store::remove_rule(pool, l)
            .await
            .map_err(AdminError::from)?
        {
            out.removed.push(l.to_csv());
        }
    }
    for l in &lines.add {
        if interkom_policy::store::add_rule(pool, l, "admin", now)
            .await
            .map_err(|e| match e {
                interkom_policy::PolicyError::Invalid(m) => AdminError::bad_request(m),
                e => AdminError::from(e),
            })?
        {
            out.added.push(l.to_csv());
        }
    }
    state
        .0
        .gateway
        .policy()
        .reload()
        .await
        .map_err(AdminError::from)?;
    Ok(out)
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
        (status = 200, description = "proposals of the subtree", body = serde_json::Value),
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
    let c = Change::new("proposal.list", "proposals", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let rows = proposals::recent(&state.0.pool).await?;
    let list: Vec<Value> = rows
        .iter()
        .filter(|p| q.status.as_ref().is_none_or(|s| *s == p.status))
        .filter(|p| may_change(&state, &scope, &p.place()))
        .map(ProposalRow::view)
        .collect();
    let (list, next) = api::page(
        list,
        |p| {
            format!(
                "{:020}-{}",
                i64::MAX - p["created_at"].as_i64().unwrap_or(0),
                p["id"].as_str().unwrap_or_default()
            )
        },
        &q,
    )?;
    Ok(api::json(
        StatusCode::OK,
        json!({ "proposals": list, "next_cursor": next }),
    ))
}

async fn proposal_in_scope(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    id: &str,
    c: &Change<'_>,
) -> Result<ProposalRow, AdminError> {
    let row = proposals::get(&state.0.pool, id)
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
        (status = 200, description = "the proposal (ETag)", body = serde_json::Value),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn proposal(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let c = Change::new("proposal.read", format!("proposals/{id}"), None);
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
        (status = 200, description = "approved by a second administrator and applied", body = serde_json::Value),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn approve(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let mut c = Change::new("proposal.approve", format!("proposals/{id}"), None);
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
    let payload: Value = serde_json::from_str(&row.payload).map_err(AdminError::from)?;
    c.approver = Some(caller.subject.clone());
    c.extra = json!({ "proposal": id, "proposer": row.proposer });
    // The approver must be able to make the change themselves, on the
    // state as it is now (not as it was proposed).
    let prepared = prepare_approval(&state, &caller, &scope, &row.kind, &payload, &mut c).await?;
    // Claim it: of two approvers at once, one applies it.
    let now = state.0.gateway.clock().now();
    let claimed = proposals::decide(&state.0.pool, &id, "applied", &caller.subject, now).await?;
    if !claimed {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "the proposal was decided meanwhile",
        ));
    }
    match apply_approved(&state, &caller, prepared, &mut c).await {
        Ok(result) => Ok(api::json(
            StatusCode::OK,
            json!({ "applied": true, "proposal": id, "result": result }),
        )),
        Err(p) => {
            // Not applied: it stays pending.
            proposals::reopen(&state.0.pool, &id).await;
            Err(p)
        }
    }
}

/// A proposal, checked for its approver and ready to apply.
enum Prepared {
    Lines(Lines, Option<String>),
    Resource(ResourceSpec),
    Role(crate::users::UserView, String, String),
    PasswordReset(String),
}

async fn prepare_approval(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    kind: &str,
    payload: &Value,
    c: &mut Change<'_>,
) -> Result<Prepared, AdminError> {
    let field = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_owned);
    match kind {
        "policy_change" => {
            let body: PolicyChangeBody =
                serde_json::from_value(payload.clone()).map_err(AdminError::from)?;
            let lines = parse_lines(&body)?;
            let all = resources(state).await?;
            authorize_lines(state, caller, scope, &all, &lines, c).await?;
            let (flips, _) = preview(state, &all, &lines).await?;
            authorize_flips(state, caller, scope, &all, &flips, c).await?;
            Ok(Prepared::Lines(lines, body.comment))
        }
        "resource" => {
            let spec: ResourceSpec =
                serde_json::from_value(payload["spec"].clone()).map_err(AdminError::from)?;
            let all = resources(state).await?;
            let current = all.iter().find(|r| r.id == spec.id);
            let now_tag = current.map(api::etag);
            if now_tag.as_deref() != payload["before_etag"].as_str() {
                return Err(AdminError::new(
                    StatusCode::CONFLICT,
                    "the resource changed since the proposal: propose again",
                ));
            }
            if let Some(cur) = current {
                if !may_change(state, scope, &resource_place(cur)) {
                    return Err(refuse(
                        state,
                        caller,
                        c,
                        "the resource is outside the approver's subtree",
                    )
                    .await);
                }
            }
            if !may_change(state, scope, &resource_place(&spec)) {
                return Err(refuse(
                    state,
                    caller,
                    c,
                    "the new owner is outside the approver's subtree",
                )
                .await);
            }
            check_resource(state, &all, &spec)?;
            check_client(state, caller, scope, &spec, c).await?;
            c.before = serde_json::to_value(current).unwrap_or(Value::Null);
            Ok(Prepared::Resource(spec))
        }
        "role_assignment" => {
            let (Some(user), Some(tenant), Some(role)) =
                (field("user"), field("tenant"), field("role"))
            else {
                return Err(AdminError::internal("malformed role proposal"));
            };
            let before =
                crate::users::check_role_change(state, caller, scope, &user, &tenant, &role, c)
                    .await?;
            Ok(Prepared::Role(before, tenant, role))
        }
        "password_reset" => {
            let user =
                field("user").ok_or_else(|| AdminError::internal("malformed reset proposal"))?;
            Ok(Prepared::PasswordReset(user))
        }
        other => Err(AdminError::internal(format!(
            "unknown proposal kind {other}"
        ))),
    }
}

async fn apply_approved(
    state: &AdminState,
    caller: &Caller,
    prepared: Prepared,
    c: &mut Change<'_>,
) -> Result<Value, AdminError> {
    match prepared {
        Prepared::Lines(lines, comment) => {
            let applied = apply_lines(state, &lines).await?;
            c.op = "policy.change";
            c.target = "policy/lines".into();
            c.before = json!({ "present": applied.removed });
            c.after =
                json!({ "added": applied.added, "removed": applied.removed, "comment": comment });
            record(state, caller, c).await?;
            Ok(json!({ "added": applied.added, "removed": applied.removed }))
        }
        Prepared::Resource(spec) => {
            put_resource(state, &spec).await?;
            c.op = "resource.put";
            c.target = format!("resources/{}", spec.id);
            c.after = serde_json::to_value(&spec).unwrap_or(Value::Null);
            record(state, caller, c).await?;
            Ok(json!({ "resource": spec }))
        }
        Prepared::Role(before, tenant, role) => {
            c.op = "user.roles.add";
            c.target = format!("users/{}/roles/{tenant}/{role}", before.id);
            let after =
                crate::users::apply_role_change(state, caller, &before, &tenant, &role, true, c)
                    .await?;
            Ok(serde_json::to_value(after).unwrap_or(Value::Null))
        }
        Prepared::PasswordReset(user) => {
            let scope = Scope::load(&state.0.pool, caller).await?;
            c.op = "user.password_reset";
            c.target = format!("users/{user}");
            let password =
                crate::users::apply_password_reset(state, caller, &scope, &user, c).await?;
            record(state, caller, c).await?;
            Ok(json!({ "initial_password": password }))
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
        (status = 200, description = "rejected", body = serde_json::Value),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn reject(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let mut c = Change::new("proposal.reject", format!("proposals/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let row = proposal_in_scope(&state, &caller, &scope, &id, &c).await?;
    c.tenant = row.tenant.clone();
    let now = state.0.gateway.clock().now();
    let decided = proposals::decide(&state.0.pool, &id, "rejected", &caller.subject, now).await?;
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
        json!({ "rejected": true, "proposal": id }),
    ))
}

async fn put_resource(state: &AdminState, spec: &ResourceSpec) -> Result<(), AdminError> {
    let now = state.0.gateway.clock().now();
    interkom_policy::store::put_resource(&state.0.pool, spec, "admin", now)
        .await
        .map_err(AdminError::from)?;
    state
        .0
        .gateway
        .policy()
        .reload()
        .await
        .map_err(AdminError::from)
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
        (status = 200, description = "resources of the subtree", body = serde_json::Value),
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
    let c = Change::new("resource.list", "resources", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let list: Vec<ResourceSpec> = resources(&state)
        .await?
        .into_iter()
        .filter(|r| may_change(&state, &scope, &resource_place(r)))
        .filter(|r| q.tenant.is_none() || r.owner == q.tenant)
        .collect();
    let (list, next) = api::page(list, |r| r.id.clone(), &q)?;
    Ok(api::json(
        StatusCode::OK,
        json!({ "resources": list, "next_cursor": next }),
    ))
}

fn resource_place(r: &ResourceSpec) -> Place {
    match &r.owner {
        Some(o) => Place::Tenant(o.clone()),
        None => Place::Everywhere,
    }
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
        (status = 200, description = "the resource (ETag)", body = serde_json::Value),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_resource(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let c = Change::new("resource.read", format!("resources/{id}"), None);
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceBody {
    #[serde(default)]
    name: Option<String>,
    kind: String,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    client: Option<String>,
    #[schema(value_type = crate::docs::ProtectionDoc)]
    protection: interkom_policy::Protection,
}

/// Resource ids and kinds share the lines' object namespace: an id must
/// not be a kind (nor a kind an id), or a line would mean both. A client's
/// logins are governed by one resource only.
fn check_resource(
    state: &AdminState,
    all: &[ResourceSpec],
    spec: &ResourceSpec,
) -> Result<(), AdminError> {
    let _ = state;
    let others = || all.iter().filter(|r| r.id != spec.id);
    if others().any(|r| r.kind == spec.id) || spec.id == "*" {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            format!("`{}` is the name of a kind of resource", spec.id),
        ));
    }
    if others().any(|r| r.id == spec.kind) {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            format!("`{}` is the id of a resource, not a kind", spec.kind),
        ));
    }
    if let Some(cl) = &spec.client {
        if others().any(|r| r.client.as_deref() == Some(cl)) {
            return Err(AdminError::new(
                StatusCode::CONFLICT,
                format!("the logins of `{cl}` are governed by another resource"),
            ));
        }
    }
    Ok(())
}

/// The client a resource governs must exist and be the caller's to bind.
async fn check_client(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    spec: &ResourceSpec,
    c: &Change<'_>,
) -> Result<(), AdminError> {
    let Some(cl) = &spec.client else {
        return Ok(());
    };
    let client = state
        .0
        .directory
        .client(cl)
        .await
        .map_err(AdminError::from)?
        .ok_or_else(|| AdminError::bad_request(format!("unknown client `{cl}`")))?;
    if !may_change(state, scope, &Place::Tenant(client.tenant.clone())) {
        return Err(refuse(
            state,
            caller,
            c,
            "the client is outside the caller's subtree",
        )
        .await);
    }
    Ok(())
}

fn slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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
        (status = 200, description = "replaced", body = serde_json::Value),
        (status = 201, description = "created", body = serde_json::Value),
        (status = 202, description = "touches sehr_hoch: recorded as a proposal", body = serde_json::Value),
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
    let mut c = Change::new(
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
            .map_err(AdminError::from)?;
        let payload = json!({ "spec": spec, "before_etag": before.as_ref().map(api::etag) });
        let pid = propose(
            &state, &caller, "resource", &payload, &place, &flips, &mut c,
        )
        .await?;
        return Ok(api::json(
            StatusCode::ACCEPTED,
            json!({ "applied": false, "proposal": pid, "flips": flips, "requires_approval": true }),
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
