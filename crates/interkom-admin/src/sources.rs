//! The rules every registration of an identity source follows (upstream
//! IdPs, directories): it lies in the caller's subtree before and after the
//! change; what reaches beyond its tenant is the Kreis's decision; its group
//! mapping hands out only roles the caller holds there; and a mapping to a
//! role that administers others is a proposal a second administrator
//! approves, as a direct assignment would be.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use interkom_directory::roles::new_four_eyes_mappings;
use serde::Serialize;
use serde_json::json;

use crate::api::{self, refuse, AdminChange};
use crate::auth::Caller;
use crate::proposals::store::{propose, Place};
use crate::proposals::view::Proposed;
use crate::scope::Scope;
use crate::{AdminError, AdminState};

/// What the rules look at in a registration.
pub(crate) struct Registration<'a> {
    /// `upstream`, `directory` (messages and the proposal's kind).
    pub(crate) kind: &'static str,
    /// Its tenant before the change (none: a new one) and after.
    pub(crate) before: Option<&'a str>,
    pub(crate) tenant: &'a str,
    /// Why the change is the Kreis's decision, if it is.
    pub(crate) kreis_only: Option<&'static str>,
    /// Group → role, before and after.
    pub(crate) roles_before: Option<&'a BTreeMap<String, String>>,
    pub(crate) roles: &'a BTreeMap<String, String>,
}

/// Whether the caller may make this change (the requester, and again the
/// approver of a proposal).
pub(crate) async fn check(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    r: &Registration<'_>,
    c: &AdminChange<'_>,
) -> Result<(), AdminError> {
    for tenant in r.before.into_iter().chain([r.tenant]) {
        if state.0.tenants.get(tenant).is_none() {
            return Err(AdminError::bad_request(format!(
                "unknown tenant `{tenant}`"
            )));
        }
        if !scope.covers_id(&state.0.tenants, tenant) {
            let why = format!("the {}'s tenant is outside the caller's subtree", r.kind);
            return Err(refuse(state, caller, c, &why).await);
        }
    }
    if let Some(why) = r.kreis_only {
        let kreis = state
            .0
            .tenants
            .get(r.tenant)
            .and_then(|t| t.path.first())
            .cloned()
            .unwrap_or_default();
        if !scope.covers_id(&state.0.tenants, &kreis) {
            return Err(refuse(state, caller, c, why).await);
        }
    }
    if let Some(t) = state.0.tenants.get(r.tenant) {
        for role in r.roles.values() {
            if !scope.holds_at_or_above(role, t) {
                let why = format!("the caller does not hold the role `{role}` there");
                return Err(refuse(state, caller, c, &why).await);
            }
        }
    }
    Ok(())
}

/// A change that maps a group to a four-eyes role is proposed (answered
/// 202) rather than applied; `None`: apply it. A proposal holds no secret.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn propose_four_eyes(
    state: &AdminState,
    caller: &Caller,
    r: &Registration<'_>,
    config: &impl Serialize,
    before_etag: Option<String>,
    secret: Option<&'static str>,
    c: &mut AdminChange<'_>,
) -> Result<Option<Response>, AdminError> {
    // In another tenant every mapping hands out roles anew.
    let before = r.roles_before.filter(|_| r.before == Some(r.tenant));
    let four_eyes = new_four_eyes_mappings(before, r.roles);
    if four_eyes.is_empty() {
        return Ok(None);
    }
    if let Some(name) = secret {
        return Err(AdminError::bad_request(format!(
            "a mapping to a four-eyes role is a proposal, which holds no secret: \
             set the {name} in a request of its own"
        )));
    }
    let place = Place::Tenant(r.tenant.to_owned());
    let payload = json!({
        "config": config,
        "before_etag": before_etag,
        "mappings": four_eyes,
    });
    let pid = propose(state, caller, r.kind, &payload, &place, &[], c).await?;
    Ok(Some(api::json(
        StatusCode::ACCEPTED,
        &Proposed::new(pid, None),
    )))
}
