//! The rules of a resource: its id, kind, owner, client and protection
//! need, and where a change to it applies.

use axum::http::StatusCode;
use interkom_policy::ResourceSpec;
use serde::Deserialize;

use crate::api::{refuse, AdminChange};
use crate::auth::Caller;
use crate::proposals::store::Place;
use crate::scope::may_change;
use crate::scope::Scope;
use crate::{AdminError, AdminState};

pub(crate) async fn put_resource(
    state: &AdminState,
    spec: &ResourceSpec,
) -> Result<(), AdminError> {
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceBody {
    #[serde(default)]
    pub(crate) name: Option<String>,
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) owner: Option<String>,
    #[serde(default)]
    pub(crate) client: Option<String>,
    #[schema(value_type = crate::docs::ProtectionDoc)]
    pub(crate) protection: interkom_policy::Protection,
}

/// Resource ids and kinds share the lines' object namespace: an id must
/// not be a kind (nor a kind an id), or a line would mean both. A client's
/// logins are governed by one resource only.
pub(crate) fn check_resource(
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
pub(crate) async fn check_client(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    spec: &ResourceSpec,
    c: &AdminChange<'_>,
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
    if !may_change(state, scope, &Place::Tenant(client.tenant.to_string())) {
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

pub(crate) fn slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
