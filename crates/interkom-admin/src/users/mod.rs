//! Users of a subtree: create, read, lock and unlock, password reset, role
//! assignments. Nobody hands out a role they do not hold at or above the
//! tenant concerned, and nobody changes their own roles or account state.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use interkom_directory::{NewUser, User};
use serde::Deserialize;
use serde_json::{json, Value};

pub(crate) mod view;

pub(crate) use view::UserView;
use view::{NewPassword, RoleView, SecondFactorReset, UserCreated, UserPage};

use crate::api::{self, check_if_match, record, refuse, AdminChange, Ids, JsonBody};
use crate::auth::Caller;
use crate::proposals::store::{propose, Place};
use crate::proposals::view::Proposed;
use crate::scope::admin_scope;
use crate::scope::Scope;
use crate::{AdminError, AdminState};
use interkom_directory::needs_four_eyes;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this resource, with their OpenAPI annotations (one list
/// for both).
pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, patch))
        .routes(routes!(reset_password))
        .routes(routes!(reset_second_factor))
        .routes(routes!(add_role, remove_role))
}

async fn view(state: &AdminState, u: User) -> Result<UserView, AdminError> {
    let mut roles: Vec<RoleView> = interkom_policy::roles::held_by(&state.0.pool, &u.id)
        .await?
        .into_iter()
        .map(|(tenant, role)| RoleView { tenant, role })
        .collect();
    roles.sort();
    Ok(UserView {
        id: u.id.to_string(),
        tenant: u.tenant.to_string(),
        username: u.username,
        name: u.name,
        email: u.email,
        locked: u.disabled != 0,
        roles,
    })
}

/// The user, if it exists (404) and lies in the caller's subtree (403,
/// audited).
async fn user_in_scope(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    id: &str,
    write: bool,
    c: &AdminChange<'_>,
) -> Result<User, AdminError> {
    let user = state
        .0
        .directory
        .user(id)
        .await
        .map_err(AdminError::from)?
        // Citizens and businesses are no staff accounts: not administered
        // here (no roles, no passwords, no locks).
        .filter(User::is_staff)
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("no user `{id}`")))?;
    let inside = state
        .0
        .tenants
        .get(&user.tenant)
        .is_some_and(|t| scope.covers(t));
    if !inside {
        return Err(refuse(state, caller, c, "the user is outside the caller's subtree").await);
    }
    // Acting on an account (its password, lock, roles) is acting as it:
    // only for someone who administers and holds every role it has.
    if write {
        let held = interkom_policy::roles::held_by(&state.0.pool, id).await?;
        for (tenant, role) in held {
            let ok = state
                .0
                .tenants
                .get(&tenant)
                .is_some_and(|t| scope.covers(t) && scope.holds_at_or_above(&role, t));
            if !ok {
                let why = format!(
                    "the user holds `{role}` in `{tenant}`, which the caller does not hold or administer"
                );
                return Err(refuse(state, caller, c, &why).await);
            }
        }
    }
    Ok(user)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    tenant: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /users`: the users of the caller's subtree (or of one tenant in
/// it), by username, paged.
#[utoipa::path(
    get,
    path = "/users",
    tag = "admin",
    params(
        ("tenant" = Option<String>, Query, description = "one tenant of the subtree"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<String>, Query, description = "1..=1000")
    ),
    responses(
        (status = 200, description = "users by username", body = UserPage),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let q: ListQuery = api::parse_query(raw)?;
    let limit = api::page_limit(q.limit.as_deref())?;
    let c = AdminChange::new("user.list", "users", q.tenant.clone());
    let scope = admin_scope(&state, &caller, &c).await?;
    let tenants: Vec<String> = match &q.tenant {
        Some(t) => {
            let tenant = state
                .0
                .tenants
                .get(t)
                .ok_or_else(|| AdminError::bad_request(format!("unknown tenant `{t}`")))?;
            if !scope.covers(tenant) {
                return Err(refuse(&state, &caller, &c, "outside the caller's subtree").await);
            }
            vec![t.clone()]
        }
        None => state
            .0
            .tenants
            .iter()
            .filter(|t| scope.covers(t))
            .map(|t| t.id.clone())
            .collect(),
    };
    if tenants.is_empty() {
        return Ok(api::json(
            StatusCode::OK,
            &UserPage {
                users: Vec::new(),
                next_cursor: None,
            },
        ));
    }
    let mut rows = state
        .0
        .directory
        .users_in(&tenants, q.cursor.as_deref(), limit + 1)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|u| u.username.clone()))
        .flatten();
    let mut users = Vec::with_capacity(rows.len());
    for u in rows {
        users.push(view(&state, u).await?);
    }
    Ok(api::json(
        StatusCode::OK,
        &UserPage {
            users,
            next_cursor: next,
        },
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUserBody {
    tenant: String,
    username: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    /// Roles in the user's home tenant.
    #[serde(default)]
    roles: Vec<String>,
}

fn check_profile(name: Option<&str>, email: Option<&str>) -> Result<(), AdminError> {
    if name.is_some_and(|n| n.chars().count() > 200 || n.chars().any(char::is_control)) {
        return Err(AdminError::bad_request(
            "`name`: at most 200 characters, no control characters",
        ));
    }
    if let Some(e) = email {
        let ok = e.len() <= 254
            && e.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            && !e.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(AdminError::bad_request("`email` is not an e-mail address"));
        }
    }
    Ok(())
}

/// A role the policy knows, or 400.
fn known_role(state: &AdminState, role: &str) -> Result<(), AdminError> {
    if state
        .0
        .gateway
        .policy()
        .policy_set()
        .roles
        .contains_key(role)
    {
        Ok(())
    } else {
        Err(AdminError::bad_request(format!("unknown role `{role}`")))
    }
}

/// `POST /users`: a new account in the subtree, with an initial password
/// that is shown once.
#[utoipa::path(
    post,
    path = "/users",
    tag = "admin",
    request_body(content = NewUserBody, content_type = "application/json"),
    responses(
        (status = 201, description = "created; the initial password is shown once", body = UserCreated),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<NewUserBody>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("user.create", "users", Some(body.tenant.clone()));
    c.after = json!({ "tenant": body.tenant, "username": body.username, "roles": body.roles });
    let scope = admin_scope(&state, &caller, &c).await?;
    let tenant = state
        .0
        .tenants
        .get(&body.tenant)
        .ok_or_else(|| AdminError::bad_request(format!("unknown tenant `{}`", body.tenant)))?;
    if !scope.covers(tenant) {
        return Err(refuse(
            &state,
            &caller,
            &c,
            "the tenant is outside the caller's subtree",
        )
        .await);
    }
    check_profile(body.name.as_deref(), body.email.as_deref())?;
    if let Some(role) = body.roles.iter().find(|r| needs_four_eyes(r)) {
        return Err(AdminError::bad_request(format!(
            "assign `{role}` separately: it takes effect when a second administrator approves"
        )));
    }
    for role in &body.roles {
        known_role(&state, role)?;
        if !scope.holds_at_or_above(role, tenant) {
            let why = format!("the caller does not hold the role `{role}` there");
            return Err(refuse(&state, &caller, &c, &why).await);
        }
    }
    let password = interkom_directory::crypto::random_token(15);
    let id = state
        .0
        .directory
        .add_user(NewUser {
            tenant: body.tenant.clone().into(),
            username: body.username.clone(),
            password: password.clone().into(),
            name: body.name.clone().filter(|n| !n.is_empty()),
            email: body.email.clone().filter(|e| !e.is_empty()),
            roles: body.roles.clone(),
        })
        .await
        .map_err(AdminError::registration)?;
    let user = state
        .0
        .directory
        .user(&id)
        .await
        .map_err(AdminError::from)?
        .ok_or(AdminError::Internal)?;
    let v = view(&state, user).await?;
    c.target = format!("users/{id}");
    c.after = serde_json::to_value(&v).unwrap_or(Value::Null);
    record(&state, &caller, &c).await?;
    let tag = api::etag(&v);
    let mut r = api::json(
        StatusCode::CREATED,
        &UserCreated {
            user: v,
            initial_password: password,
        },
    );
    if let Ok(t) = axum::http::HeaderValue::from_str(&tag) {
        r.headers_mut().insert(axum::http::header::ETAG, t);
    }
    if let Ok(l) = axum::http::HeaderValue::from_str(&format!("users/{id}")) {
        r.headers_mut().insert(axum::http::header::LOCATION, l);
    }
    Ok(r)
}

/// `GET /users/{id}`.
#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id")
    ),
    responses(
        (status = 200, description = "the user (ETag)", body = UserView),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("user.read", format!("users/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let user = user_in_scope(&state, &caller, &scope, &id, false, &c).await?;
    Ok(api::tagged(StatusCode::OK, &view(&state, user).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserPatch {
    /// New display name; "" clears it.
    #[serde(default)]
    name: Option<String>,
    /// New e-mail address; "" clears it.
    #[serde(default)]
    email: Option<String>,
    /// Lock (true) or unlock (false) the account.
    #[serde(default)]
    locked: Option<bool>,
}

/// `PATCH /users/{id}` with `If-Match`: profile, lock and unlock.
#[utoipa::path(
    patch,
    path = "/users/{id}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id"),
        ("If-Match" = String, Header, description = "the entity's ETag")
    ),
    request_body(content = UserPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "changed (ETag)", body = UserView),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn patch(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UserPatch>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("user.update", format!("users/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let user = user_in_scope(&state, &caller, &scope, &id, true, &c).await?;
    c.tenant = Some(user.tenant.to_string());
    let before = view(&state, user).await?;
    check_if_match(&headers, &api::etag(&before))?;
    check_profile(body.name.as_deref(), body.email.as_deref())?;
    c.before = serde_json::to_value(&before).unwrap_or(Value::Null);
    if body.locked.is_some() && id == caller.subject {
        return Err(refuse(
            &state,
            &caller,
            &c,
            "nobody locks or unlocks their own account",
        )
        .await);
    }
    let g = &state.0.gateway;
    if body.name.is_some() || body.email.is_some() {
        let name = body
            .name
            .as_deref()
            .map_or(before.name.as_deref(), |n| (!n.is_empty()).then_some(n));
        let email = body
            .email
            .as_deref()
            .map_or(before.email.as_deref(), |e| (!e.is_empty()).then_some(e));
        state
            .0
            .directory
            .set_profile(&id, name, email)
            .await
            .map_err(AdminError::from)?;
    }
    if let Some(locked) = body.locked {
        g.set_disabled(&id, locked)
            .await
            .map_err(AdminError::from)?;
    }
    let after = view(
        &state,
        state
            .0
            .directory
            .user(&id)
            .await
            .map_err(AdminError::from)?
            .ok_or(AdminError::Internal)?,
    )
    .await?;
    c.after = serde_json::to_value(&after).unwrap_or(Value::Null);
    c.op = match body.locked {
        Some(true) => "user.lock",
        Some(false) => "user.unlock",
        None => "user.update",
    };
    record(&state, &caller, &c).await?;
    Ok(api::tagged(StatusCode::OK, &after))
}

/// `POST /users/{id}/password-reset`: a new initial password, shown once;
/// the account's sessions and refresh tokens end.
#[utoipa::path(
    post,
    path = "/users/{id}/password-reset",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id")
    ),
    responses(
        (status = 200, description = "a new initial password, shown once", body = NewPassword),
        (status = 202, description = "the account administers others: proposed, applied when a second administrator approves", body = Proposed),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn reset_password(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("user.password_reset", format!("users/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let user = user_in_scope(&state, &caller, &scope, &id, true, &c).await?;
    c.tenant = Some(user.tenant.to_string());
    if id == caller.subject {
        return Err(refuse(&state, &caller, &c, "nobody resets their own password here").await);
    }
    // Whoever learns an administrator's new password could act as a
    // second administrator: such a reset needs one.
    if holds_admin(&state, &id).await? {
        let place = Place::Tenant(user.tenant.to_string());
        let payload = json!({ "user": id });
        let pid = propose(
            &state,
            &caller,
            "password_reset",
            &payload,
            &place,
            &[],
            &mut c,
        )
        .await?;
        return Ok(api::json(StatusCode::ACCEPTED, &Proposed::new(pid, None)));
    }
    let password = state
        .0
        .gateway
        .reset_password(&id)
        .await
        .map_err(AdminError::from)?;
    let initial_password = password.expose().to_owned();
    record(&state, &caller, &c).await?;
    Ok(api::json(StatusCode::OK, &NewPassword { initial_password }))
}

/// `POST /users/{id}/second-factor-reset`: removes the account's TOTP
/// credential, recovery codes and passkeys (a lost phone); the account's
/// sessions and refresh tokens end, so the next login starts from the
/// password.
#[utoipa::path(
    post,
    path = "/users/{id}/second-factor-reset",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id")
    ),
    responses(
        (status = 200, description = "whether there was a second factor to remove", body = SecondFactorReset),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn reset_second_factor(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("user.second_factor_reset", format!("users/{id}"), None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let user = user_in_scope(&state, &caller, &scope, &id, true, &c).await?;
    c.tenant = Some(user.tenant.to_string());
    if id == caller.subject {
        return Err(refuse(
            &state,
            &caller,
            &c,
            "nobody resets their own second factor here",
        )
        .await);
    }
    let removed = state
        .0
        .gateway
        .reset_second_factors(&id)
        .await
        .map_err(AdminError::from)?;
    c.extra = json!({ "removed": removed });
    record(&state, &caller, &c).await?;
    Ok(api::json(StatusCode::OK, &SecondFactorReset { removed }))
}

/// `PUT /users/{id}/roles/{tenant}/{role}`: assigns a role.
#[utoipa::path(
    put,
    path = "/users/{id}/roles/{tenant}/{role}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id"),
        ("tenant" = String, Path, description = "tenant"),
        ("role" = String, Path, description = "role")
    ),
    responses(
        (status = 200, description = "assigned", body = UserView),
        (status = 202, description = "a role that administers others: proposed, applied when a second administrator approves", body = Proposed),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn add_role(
    State(state): State<AdminState>,
    caller: Caller,
    Ids((id, tenant, role)): Ids<(String, String, String)>,
) -> Result<Response, AdminError> {
    change_role(state, caller, id, tenant, role, true).await
}

/// `DELETE /users/{id}/roles/{tenant}/{role}`: takes a role away.
#[utoipa::path(
    delete,
    path = "/users/{id}/roles/{tenant}/{role}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id"),
        ("tenant" = String, Path, description = "tenant"),
        ("role" = String, Path, description = "role")
    ),
    responses(
        (status = 200, description = "taken away", body = UserView),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn remove_role(
    State(state): State<AdminState>,
    caller: Caller,
    Ids((id, tenant, role)): Ids<(String, String, String)>,
) -> Result<Response, AdminError> {
    change_role(state, caller, id, tenant, role, false).await
}

async fn holds_admin(state: &AdminState, id: &str) -> Result<bool, AdminError> {
    Ok(interkom_policy::roles::holds_anywhere(&state.0.pool, id, "admin").await?)
}

/// The checks of a role change by `caller` (also when a second
/// administrator approves one): returns the user's current view.
pub(crate) async fn check_role_change(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    id: &str,
    tenant_id: &str,
    role: &str,
    c: &mut AdminChange<'_>,
) -> Result<UserView, AdminError> {
    let user = user_in_scope(state, caller, scope, id, true, c).await?;
    let tenant = state
        .0
        .tenants
        .get(tenant_id)
        .ok_or_else(|| AdminError::bad_request(format!("unknown tenant `{tenant_id}`")))?;
    known_role(state, role)?;
    let home = user.tenant.clone();
    let before = view(state, user).await?;
    c.before = serde_json::to_value(&before.roles).unwrap_or(Value::Null);
    if id == caller.subject {
        return Err(refuse(state, caller, c, "nobody changes their own roles").await);
    }
    if !scope.covers(tenant) {
        return Err(refuse(
            state,
            caller,
            c,
            "the tenant is outside the caller's subtree",
        )
        .await);
    }
    // Roles act where they are held: in the user's home tenant or below.
    if !tenant.path.iter().any(|p| *p == home) {
        return Err(AdminError::bad_request(format!(
            "`{tenant_id}` is not in the subtree of the user's home tenant `{home}`"
        )));
    }
    if !scope.holds_at_or_above(role, tenant) {
        let why = format!("the caller does not hold the role `{role}` at or above `{tenant_id}`");
        return Err(refuse(state, caller, c, &why).await);
    }
    Ok(before)
}

/// Assigns or removes a role; records the change. Returns the new view.
pub(crate) async fn apply_role_change(
    state: &AdminState,
    caller: &Caller,
    before: &UserView,
    tenant_id: &str,
    role: &str,
    add: bool,
    c: &mut AdminChange<'_>,
) -> Result<UserView, AdminError> {
    let id = &before.id;
    let pool = &state.0.pool;
    let changed = if add {
        let had = before
            .roles
            .iter()
            .any(|r| r.tenant == tenant_id && r.role == role);
        interkom_policy::roles::assign(pool, id, tenant_id, role)
            .await
            .map_err(AdminError::from)?;
        !had
    } else {
        interkom_policy::roles::unassign(pool, id, tenant_id, role)
            .await
            .map_err(AdminError::from)?
    };
    if !add && !changed {
        return Err(AdminError::new(
            StatusCode::NOT_FOUND,
            format!("`{id}` does not hold `{role}` in `{tenant_id}`"),
        ));
    }
    state
        .0
        .gateway
        .policy()
        .reload()
        .await
        .map_err(AdminError::from)?;
    let after = view(
        state,
        state
            .0
            .directory
            .user(id)
            .await
            .map_err(AdminError::from)?
            .ok_or(AdminError::Internal)?,
    )
    .await?;
    if changed {
        c.after = serde_json::to_value(&after.roles).unwrap_or(Value::Null);
        record(state, caller, c).await?;
    }
    Ok(after)
}

/// A password reset approved by a second administrator, who receives the
/// new password.
pub(crate) async fn apply_password_reset(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    id: &str,
    c: &mut AdminChange<'_>,
) -> Result<String, AdminError> {
    let user = user_in_scope(state, caller, scope, id, true, c).await?;
    c.tenant = Some(user.tenant.to_string());
    if id == caller.subject {
        return Err(refuse(state, caller, c, "nobody resets their own password here").await);
    }
    state
        .0
        .gateway
        .reset_password(id)
        .await
        .map(|p| p.expose().to_owned())
        .map_err(AdminError::from)
}

async fn change_role(
    state: AdminState,
    caller: Caller,
    id: String,
    tenant_id: String,
    role: String,
    add: bool,
) -> Result<Response, AdminError> {
    let op = if add {
        "user.roles.add"
    } else {
        "user.roles.remove"
    };
    let mut c = AdminChange::new(
        op,
        format!("users/{id}/roles/{tenant_id}/{role}"),
        Some(tenant_id.clone()),
    );
    let scope = admin_scope(&state, &caller, &c).await?;
    let before = check_role_change(&state, &caller, &scope, &id, &tenant_id, &role, &mut c).await?;
    // A new administrator is a second pair of eyes: it takes two.
    if add && needs_four_eyes(&role) {
        let place = Place::Tenant(tenant_id.clone());
        let payload = json!({ "user": id, "tenant": tenant_id, "role": role });
        let pid = propose(
            &state,
            &caller,
            "role_assignment",
            &payload,
            &place,
            &[],
            &mut c,
        )
        .await?;
        return Ok(api::json(StatusCode::ACCEPTED, &Proposed::new(pid, None)));
    }
    let after = apply_role_change(&state, &caller, &before, &tenant_id, &role, add, &mut c).await?;
    Ok(api::tagged(StatusCode::OK, &after))
}
