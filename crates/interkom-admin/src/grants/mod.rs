//! Grants: access across the levels (upwards, sideways) for a purpose and a
//! time. The administrator of the resource's tenant grants; nobody grants
//! an action they may not perform themselves; a grant on a `sehr_hoch`
//! resource works only once someone other than the grantor approved it.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use interkom_policy::engine::{AuthContext, ResourceRef, SubjectRef};
use interkom_policy::store::Grant;
use interkom_policy::{Loa, PolicyError, ProtectionNeed};
use serde::Deserialize;
use serde_json::{json, Value};

pub(crate) mod view;

use crate::api::{self, record, refuse, AdminChange, Ids, JsonBody};
use crate::auth::Caller;
use crate::scope::admin_scope;
use crate::scope::Scope;
use crate::{AdminError, AdminState};

use interkom_policy::records::{GrantFilter, GrantRecord, Reach};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use view::{GrantChanged, GrantCreated, GrantPage, GrantView};

/// The routes of this resource, with their OpenAPI annotations (one list
/// for both).
pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(approve))
        .routes(routes!(revoke))
}

/// A grant as the audit trail keeps it (as the API shows it).
fn audited(g: &GrantRecord) -> Value {
    serde_json::to_value(GrantView::from(g)).unwrap_or(Value::Null)
}

/// The owner tenant of a resource and its overall protection need.
fn resource_info(state: &AdminState, id: &str) -> Option<(Option<String>, ProtectionNeed)> {
    let snap = state.0.gateway.policy().snapshot();
    snap.resource(id)
        .map(|r| (r.owner.clone(), r.protection.overall()))
}

fn owner_covered(state: &AdminState, scope: &Scope, owner: &Option<String>) -> bool {
    match owner {
        Some(o) => scope.covers_id(&state.0.tenants, o),
        // A resource of no tenant belongs to the administrators of every Kreis.
        None => scope.covers_every_kreis(&state.0.tenants),
    }
}

/// `GET /grants`: the grants on resources the caller administers.
#[utoipa::path(
    get,
    path = "/grants",
    tag = "admin",
    params(
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<String>, Query, description = "1..=1000, default 100"),
        ("resource" = Option<String>, Query, description = "only grants on this resource"),
        ("subject" = Option<String>, Query, description = "only grants to this grantee")
    ),
    responses(
        (status = 200, description = "grants on the subtree's resources, by id", body = GrantPage),
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
    let limit = api::page_limit(q.limit.as_deref())?;
    let c = AdminChange::new("grant.list", "grants", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    // Grants on resources owned in the caller's subtree (and on resources
    // of no tenant for who administers every Kreis).
    let tenants = scope.tenant_ids(&state.0.tenants);
    let filter = GrantFilter {
        reach: Reach {
            tenants: &tenants,
            everywhere: scope.covers_every_kreis(&state.0.tenants),
        },
        resource: q.resource.as_deref(),
        grantee: q.subject.as_deref(),
    };
    let rows = interkom_policy::records::grants_page(
        &state.0.pool,
        &filter,
        q.cursor.as_deref(),
        limit + 1,
    )
    .await?;
    let (rows, next_cursor) = api::keyset_page(rows, limit, |g| g.id.clone());
    Ok(api::json(
        StatusCode::OK,
        &GrantPage {
            grants: rows.iter().map(GrantView::from).collect(),
            next_cursor,
        },
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewGrant {
    /// `user:<username or id>`, `<role>@<tenant>` or `*@<tenant>`.
    grantee: String,
    resource: String,
    actions: Vec<String>,
    purpose: String,
    /// RFC 3339.
    expires_at: String,
    #[serde(default)]
    not_before: Option<String>,
}

fn rfc3339(name: &str, s: &str) -> Result<i64, AdminError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| AdminError::bad_request(format!("`{name}` must be an RFC 3339 time")))
}

async fn check_grantee(state: &AdminState, grantee: &str) -> Result<(), AdminError> {
    let bad = |m: String| Err(AdminError::bad_request(m));
    if let Some(user) = grantee.strip_prefix("user:") {
        let known = match state
            .0
            .directory
            .find_user(user)
            .await
            .map_err(AdminError::from)?
        {
            Some(_) => true,
            None => state
                .0
                .directory
                .user(user)
                .await
                .map_err(AdminError::from)?
                .is_some(),
        };
        return if known {
            Ok(())
        } else {
            bad(format!("unknown user `{user}`"))
        };
    }
    let Some((role, tenant)) = grantee.split_once('@') else {
        return bad("`grantee`: user:<name>, <role>@<tenant> or *@<tenant>".into());
    };
    if state.0.tenants.get(tenant).is_none() {
        return bad(format!("unknown tenant `{tenant}`"));
    }
    if role != "*"
        && !state
            .0
            .gateway
            .policy()
            .policy_set()
            .roles
            .contains_key(role)
    {
        return bad(format!("unknown role `{role}`"));
    }
    Ok(())
}

/// `POST /grants`: records a grant, unapproved; the grantor is the caller.
#[utoipa::path(
    post,
    path = "/grants",
    tag = "admin",
    request_body(content = NewGrant, content_type = "application/json"),
    responses(
        (status = 201, description = "recorded, unapproved", body = GrantCreated),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<NewGrant>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("grant.create", "grants", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let (owner, need) = resource_info(&state, &body.resource)
        .ok_or_else(|| AdminError::bad_request(format!("unknown resource `{}`", body.resource)))?;
    c.tenant = owner.clone();
    if body.purpose.trim().is_empty() || body.purpose.chars().count() > 500 {
        return Err(AdminError::bad_request("`purpose`: 1 to 500 characters"));
    }
    if body.actions.is_empty()
        || body.actions.len() > 20
        || body.actions.iter().any(|a| {
            a.is_empty()
                || a == "*"
                || a.len() > 64
                || !a
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
    {
        return Err(AdminError::bad_request(
            "`actions`: 1 to 20 action names (no `*`)",
        ));
    }
    check_grantee(&state, &body.grantee).await?;
    let now = state.0.gateway.clock().now();
    let expires_at = rfc3339("expires_at", &body.expires_at)?;
    let not_before = body
        .not_before
        .as_deref()
        .map(|s| rfc3339("not_before", s))
        .transpose()?;
    if expires_at <= now {
        return Err(AdminError::bad_request(
            "`expires_at` must lie in the future",
        ));
    }
    if not_before.is_some_and(|n| n >= expires_at) {
        return Err(AdminError::bad_request(
            "`not_before` must come before `expires_at`",
        ));
    }
    c.after = json!({ "grantee": body.grantee, "resource": body.resource, "actions": body.actions, "purpose": body.purpose, "expires_at": expires_at, "not_before": not_before });
    if !owner_covered(&state, &scope, &owner) {
        return Err(refuse(
            &state,
            &caller,
            &c,
            "the resource is outside the caller's subtree",
        )
        .await);
    }
    // Nobody grants what they may not do themselves (judged by the rules
    // alone, as if the caller had the strongest, freshest login).
    let actions: Vec<&str> = body.actions.iter().map(String::as_str).collect();
    if let Some(a) = holds_actions(&state, &caller.subject, &body.resource, &actions) {
        let why = format!(
            "the caller may not `{a}` on `{}` and cannot grant it",
            body.resource
        );
        return Err(refuse(&state, &caller, &c, &why).await);
    }
    let grant = Grant {
        id: uuid::Uuid::new_v4().to_string(),
        grantee: body.grantee.clone(),
        resource: body.resource.clone(),
        actions: body.actions.clone(),
        purpose: body.purpose.clone(),
        not_before,
        expires_at,
        grantor: caller.subject.clone(),
        approver: None,
        approved_at: None,
        revoked_at: None,
    };
    interkom_policy::store::add_grant(&state.0.pool, &grant, "admin", now)
        .await
        .map_err(|e| match e {
            PolicyError::Invalid(m) => AdminError::bad_request(m),
            e => AdminError::from(e),
        })?;
    state
        .0
        .gateway
        .policy()
        .reload()
        .await
        .map_err(AdminError::from)?;
    c.target = format!("grants/{}", grant.id);
    c.after = serde_json::to_value(&grant).unwrap_or(Value::Null);
    record(&state, &caller, &c).await?;
    Ok(api::json(
        StatusCode::CREATED,
        &GrantCreated {
            grant: GrantView::from(&grant),
            requires_approval: need == ProtectionNeed::SehrHoch,
        },
    ))
}

/// Whether `subject` may perform every one of `actions` on `resource`
/// (by the rules alone, as if with the strongest, freshest login); the
/// first one they may not.
fn holds_actions(
    state: &AdminState,
    subject: &str,
    resource: &str,
    actions: &[&str],
) -> Option<String> {
    let snap = state.0.gateway.policy().snapshot();
    let now = state.0.gateway.clock().now();
    let ctx = AuthContext {
        acr: Some(Loa::High),
        auth_time: Some(now),
        second_factor: true,
        now,
    };
    actions
        .iter()
        .find(|a| {
            !snap
                .decide(
                    SubjectRef::User(subject),
                    a,
                    ResourceRef::id(resource),
                    &ctx,
                )
                .allowed()
        })
        .map(|a| (*a).to_owned())
}

/// A person's account id, whichever of their names is given.
async fn person(state: &AdminState, name: &str) -> Result<String, AdminError> {
    if let Some(u) = state
        .0
        .directory
        .find_user(name)
        .await
        .map_err(AdminError::from)?
    {
        return Ok(u.id.to_string());
    }
    Ok(name.to_owned())
}

async fn grant_in_scope(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    id: &str,
    c: &mut AdminChange<'_>,
) -> Result<GrantRecord, AdminError> {
    let row = interkom_policy::records::grant(&state.0.pool, id)
        .await?
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("no grant `{id}`")))?;
    c.before = audited(&row);
    let owner = resource_info(state, &row.resource).and_then(|(o, _)| o);
    c.tenant = owner.clone();
    if !owner_covered(state, scope, &owner) {
        return Err(refuse(
            state,
            caller,
            c,
            "the grant's resource is outside the caller's subtree",
        )
        .await);
    }
    Ok(row)
}

/// `POST /grants/{id}/approve`: the second pair of eyes.
#[utoipa::path(
    post,
    path = "/grants/{id}/approve",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id")
    ),
    responses(
        (status = 200, description = "approved", body = GrantChanged),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn approve(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("grant.approve", format!("grants/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let row = grant_in_scope(&state, &caller, &scope, &id, &mut c).await?;
    // Only grants to sehr_hoch resources wait for approval: a fresh login.
    caller.fresh_within(&state, state.rules().approval_max_age)?;
    if row.approver.is_some() {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "the grant is approved already",
        ));
    }
    if person(&state, &row.grantor).await? == caller.subject {
        return Err(refuse(
            &state,
            &caller,
            &c,
            "the grantor cannot approve their own grant",
        )
        .await);
    }
    // The second pair of eyes must see what the grant gives: they hold it.
    let actions: Vec<&str> = row.actions.split(' ').collect();
    if let Some(a) = holds_actions(&state, &caller.subject, &row.resource, &actions) {
        let why = format!(
            "the approver may not `{a}` on `{}` and cannot approve granting it",
            row.resource
        );
        return Err(refuse(&state, &caller, &c, &why).await);
    }
    let now = state.0.gateway.clock().now();
    match interkom_policy::store::approve_grant(&state.0.pool, &id, &caller.subject, now).await {
        Ok(()) => {}
        Err(PolicyError::Invalid(m)) => return Err(AdminError::new(StatusCode::CONFLICT, m)),
        Err(e) => return Err(AdminError::from(e)),
    }
    state
        .0
        .gateway
        .policy()
        .reload()
        .await
        .map_err(AdminError::from)?;
    let after = refetch(&state, &id).await?;
    c.after = audited(&after);
    c.approver = Some(caller.subject.clone());
    record(&state, &caller, &c).await?;
    Ok(api::json(
        StatusCode::OK,
        &GrantChanged {
            grant: GrantView::from(&after),
        },
    ))
}

/// `POST /grants/{id}/revoke`: ends a grant at once.
#[utoipa::path(
    post,
    path = "/grants/{id}/revoke",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id")
    ),
    responses(
        (status = 200, description = "revoked", body = GrantChanged),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("grant.revoke", format!("grants/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    grant_in_scope(&state, &caller, &scope, &id, &mut c).await?;
    let now = state.0.gateway.clock().now();
    let revoked = interkom_policy::store::revoke_grant(&state.0.pool, &id, now)
        .await
        .map_err(AdminError::from)?;
    if !revoked {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "the grant is revoked already",
        ));
    }
    state
        .0
        .gateway
        .policy()
        .reload()
        .await
        .map_err(AdminError::from)?;
    let after = refetch(&state, &id).await?;
    c.after = audited(&after);
    record(&state, &caller, &c).await?;
    Ok(api::json(
        StatusCode::OK,
        &GrantChanged {
            grant: GrantView::from(&after),
        },
    ))
}

async fn refetch(state: &AdminState, id: &str) -> Result<GrantRecord, AdminError> {
    interkom_policy::records::grant(&state.0.pool, id)
        .await?
        .ok_or(AdminError::Internal)
}
