//! The Kommunen's directories (Active Directory, LDAP) of a subtree, and
//! the connection test of the console.
//!
//! A directory vouches for accounts of its tenant's subtree, so only an
//! administrator of that tenant configures it. As for upstream IdPs, what
//! reaches beyond the tenant needs more: login domains and linking existing
//! accounts are the Kreis's decision; the group mapping hands out only
//! roles the caller holds there, and a mapping to a four-eyes role is a
//! proposal a second administrator approves.
//!
//! Where interkom connects is the Kreis's decision too: directories sit on
//! the Kommunen's internal networks, which an upstream's public-address
//! rule cannot protect, so a Gemeinde's administrator who could name any
//! server could use interkom (and the connection test) to probe the
//! county's network. The Kreis registers the servers and their CA; the
//! tenant's administrators map groups, test, and keep the rest in step.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use interkom_directory::ldap::entry::norm_dn;
use interkom_directory::ldap::DirectorySourceConfig;
use interkom_directory::{Directory, DirectoryError};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) mod view;

pub use view::{ConnectionTest, PersonFound};
use view::{DirectoryConfigDoc, DirectoryList, DirectoryView};

use crate::api::{self, record, refuse, AdminChange, Ids, JsonBody};
use crate::auth::Caller;
use crate::proposals::view::Proposed;
use crate::scope::{admin_scope, Scope};
use crate::{sources, AdminError, AdminState};

pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get, put, delete))
        .routes(routes!(test))
}

type Stored = (DirectorySourceConfig, bool);

fn view(d: &Stored) -> DirectoryView {
    DirectoryView {
        config: d.0.clone(),
        has_bind_password: d.1,
    }
}

fn audited(d: &Stored) -> Value {
    serde_json::to_value(view(d)).unwrap_or(Value::Null)
}

fn tag(d: &Stored) -> String {
    api::etag(&audited(d))
}

async fn all(state: &AdminState) -> Result<Vec<Stored>, AdminError> {
    Ok(state
        .0
        .directory
        .directory_sources()
        .await
        .map_err(AdminError::from)?
        .iter()
        .map(|s| (s.cfg.clone(), s.secret.is_some()))
        .collect())
}

async fn find(state: &AdminState, id: &str) -> Result<Option<Stored>, AdminError> {
    Ok(all(state).await?.into_iter().find(|(d, _)| d.id == id))
}

fn covers(state: &AdminState, scope: &Scope, tenant: &str) -> bool {
    scope.covers_id(&state.0.tenants, tenant)
}

/// The directory `id` of the caller's subtree, or the error to answer.
async fn in_scope(
    state: &AdminState,
    caller: &Caller,
    c: &AdminChange<'_>,
    id: &str,
) -> Result<Stored, AdminError> {
    let scope = admin_scope(state, caller, c).await?;
    let d = find(state, id)
        .await?
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("no directory `{id}`")))?;
    if !covers(state, &scope, &d.0.tenant) {
        return Err(refuse(
            state,
            caller,
            c,
            "the directory is outside the caller's subtree",
        )
        .await);
    }
    Ok(d)
}

/// `GET /directories`: the directories of the caller's subtree.
#[utoipa::path(
    get,
    path = "/directories",
    tag = "admin",
    responses(
        (status = 200, description = "directories of the subtree", body = DirectoryList),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("directory.list", "directories", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let directories = all(&state)
        .await?
        .iter()
        .filter(|(d, _)| covers(&state, &scope, &d.tenant))
        .map(view)
        .collect();
    Ok(api::json(StatusCode::OK, &DirectoryList { directories }))
}

/// `GET /directories/{id}`.
#[utoipa::path(
    get,
    path = "/directories/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    responses(
        (status = 200, description = "the directory", body = DirectoryView),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("directory.read", format!("directories/{id}"), None);
    let d = in_scope(&state, &caller, &c, &id).await?;
    Ok(api::json(StatusCode::OK, &view(&d)))
}

/// `PUT /directories/{id}`: creates or replaces a directory. A missing
/// `bind_password` keeps the stored one (for the same bind DN).
#[utoipa::path(
    put,
    path = "/directories/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    request_body(content = DirectoryConfigDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced", body = DirectoryView),
        (status = 201, description = "created", body = DirectoryView),
        (status = 202, description = "a mapping to a four-eyes role: proposed, applied when a second administrator approves", body = Proposed),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
    JsonBody(body): JsonBody<DirectorySourceConfig>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new(
        "directory.put",
        format!("directories/{id}"),
        Some(body.tenant.to_string()),
    );
    let scope = admin_scope(&state, &caller, &c).await?;
    if body.id != id {
        return Err(AdminError::bad_request(
            "the body's id differs from the path's",
        ));
    }
    let before = find(&state, &id).await?;
    check_directory(&state, &caller, &scope, before.as_ref(), &body, &c).await?;
    let secret = body.bind_password.is_some().then_some("bind password");
    let r = registration(before.as_ref(), &body);
    let etag = before.as_ref().map(tag);
    if let Some(proposed) =
        sources::propose_four_eyes(&state, &caller, &r, &body, etag, secret, &mut c).await?
    {
        return Ok(proposed);
    }
    let after = store_directory(&state, &caller, before.as_ref(), body, &mut c).await?;
    let status = if before.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(api::json(status, &after))
}

/// Whether the caller may give a directory this configuration (the
/// requester of a change, and again its approver).
pub(crate) async fn check_directory(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    before: Option<&Stored>,
    body: &DirectorySourceConfig,
    c: &AdminChange<'_>,
) -> Result<(), AdminError> {
    sources::check(state, caller, scope, &registration(before, body), c).await
}

/// What the rules of every source registration look at; where interkom
/// connects, login domains and taking over accounts are the Kreis's.
fn registration<'a>(
    before: Option<&'a Stored>,
    body: &'a DirectorySourceConfig,
) -> sources::Registration<'a> {
    // Decided once by the Kreis, kept by the tenant's administrators.
    let changed =
        |f: &dyn Fn(&DirectorySourceConfig) -> bool| before.is_none_or(|b| f(&b.0) != f(body));
    let kreis_only = if before.is_none_or(|b| reach(&b.0) != reach(body)) {
        Some(
            "where interkom connects and what it reads there (servers, CA, bind DN, \
             search bases, filters, attributes) is for an administrator of the Kreis",
        )
    } else if body.link_existing && changed(&|d| d.link_existing) {
        Some("linking existing accounts is for an administrator of its Kreis")
    } else if before.is_none_or(|b| b.0.domains != body.domains) && !body.domains.is_empty() {
        Some("claiming login domains is for an administrator of its Kreis")
    } else {
        None
    };
    sources::Registration {
        kind: "directory",
        before: before.map(|b| b.0.tenant.as_str()),
        tenant: body.tenant.as_str(),
        kreis_only,
        roles_before: before.map(|b| &b.0.roles),
        roles: &body.roles,
    }
}

/// Where interkom connects, as whom, and which part of a (perhaps
/// county-wide) directory it reads: the Kreis's settings. The CA compared
/// as text without line-ending differences (a browser's form sends CRLF).
#[allow(clippy::type_complexity)]
fn reach(
    d: &DirectorySourceConfig,
) -> (
    &[String],
    Option<String>,
    bool,
    &str,
    &str,
    Option<&str>,
    Option<&str>,
    Option<&str>,
    &interkom_directory::ldap::AttributeNames,
) {
    (
        &d.servers,
        d.ca_pem
            .as_deref()
            .map(|p| p.replace("\r\n", "\n").trim().to_owned()),
        d.allow_plain,
        &d.bind_dn,
        &d.base_dn,
        d.group_base_dn.as_deref(),
        d.user_filter.as_deref(),
        d.users_filter.as_deref(),
        &d.attributes,
    )
}

/// Stores a checked configuration and records the change.
pub(crate) async fn store_directory(
    state: &AdminState,
    caller: &Caller,
    before: Option<&Stored>,
    body: DirectorySourceConfig,
    c: &mut AdminChange<'_>,
) -> Result<DirectoryView, AdminError> {
    let id = body.id.clone();
    let secret_changed = body.bind_password.is_some();
    state
        .0
        .directory
        .put_directory_source(body)
        .await
        .map_err(AdminError::registration)?;
    c.before = before.map(audited).unwrap_or(Value::Null);
    let after = find(state, &id).await?.ok_or(AdminError::Internal)?;
    c.after = audited(&after);
    c.extra = json!({ "bind_password_changed": secret_changed });
    record(state, caller, c).await?;
    Ok(view(&after))
}

/// The directory `id` as shown, with its tag (for proposals).
pub(crate) async fn current(
    state: &AdminState,
    id: &str,
) -> Result<Option<(Stored, String)>, AdminError> {
    Ok(find(state, id).await?.map(|d| {
        let tag = tag(&d);
        (d, tag)
    }))
}

/// `DELETE /directories/{id}`: its logins stop; its links stay.
#[utoipa::path(
    delete,
    path = "/directories/{id}",
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
    let mut c = AdminChange::new("directory.delete", format!("directories/{id}"), None);
    let d = in_scope(&state, &caller, &c, &id).await?;
    c.tenant = Some(d.0.tenant.to_string());
    state
        .0
        .directory
        .delete_directory_source(&id)
        .await
        .map_err(AdminError::from)?;
    c.before = audited(&d);
    record(&state, &caller, &c).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What the connection test looks up.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestRequest {
    /// A person to find (their groups and mapped roles are shown).
    username: Option<String>,
}

/// `POST /directories/{id}/test`: binds as the service account, searches
/// the base, finds the person (if named) and shows the roles their groups
/// map to. Nothing is changed.
#[utoipa::path(
    post,
    path = "/directories/{id}/test",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    request_body(content = TestRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "what the test found (`ok` false: what failed)", body = ConnectionTest),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn test(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
    JsonBody(body): JsonBody<TestRequest>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("directory.test", format!("directories/{id}"), None);
    in_scope(&state, &caller, &c, &id).await?;
    let username = body.username.filter(|u| !u.trim().is_empty());
    if username.as_ref().is_some_and(|u| u.len() > 256) {
        return Err(AdminError::bad_request("username is too long"));
    }
    // Bounded, whatever the directory's timeouts and number of servers.
    let report = match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        test_connection(&state.0.directory, &id, username.as_deref()),
    )
    .await
    {
        Ok(r) => r.map_err(AdminError::from)?,
        Err(_) => ConnectionTest {
            ok: false,
            failure: Some("timeout".into()),
            message: Some("no answer within 10 s".into()),
            person: None,
        },
    };
    Ok(api::json(StatusCode::OK, &report))
}

/// The connection test (console, admin API and CLI): bind, search the
/// base, find `username`, map their groups.
pub async fn test_connection(
    dir: &Directory,
    id: &str,
    username: Option<&str>,
) -> Result<ConnectionTest, DirectoryError> {
    let Some(source) = dir.directory_source(id).await? else {
        return Err(DirectoryError::Invalid(format!("no directory `{id}`")));
    };
    let failed = |kind: &str, message: String| ConnectionTest {
        ok: false,
        failure: Some(kind.to_owned()),
        message: Some(message),
        person: None,
    };
    if let Err(f) = source.ping().await {
        return Ok(failed(f.kind(), f.to_string()));
    }
    let Some(username) = username else {
        return Ok(ConnectionTest {
            ok: true,
            failure: None,
            message: None,
            person: None,
        });
    };
    match source.find(username).await {
        Err(f) => Ok(failed(f.kind(), f.to_string())),
        Ok(None) => Ok(failed(
            "not_found",
            format!("nobody (or more than one) matches `{username}`"),
        )),
        Ok(Some(p)) => {
            let roles = source
                .cfg
                .roles
                .iter()
                .filter(|(g, _)| p.groups.contains(&norm_dn(g)))
                .map(|(_, r)| r.clone())
                .collect();
            Ok(ConnectionTest {
                ok: true,
                failure: None,
                message: None,
                person: Some(PersonFound {
                    dn: p.dn,
                    id: p.id,
                    username: p.username,
                    name: p.name,
                    mail: p.mail,
                    refusal: p.refusal.map(str::to_owned),
                    groups: p.groups,
                    roles,
                }),
            })
        }
    }
}
