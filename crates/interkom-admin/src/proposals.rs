//! Four-eyes proposals: a change that needs a second administrator is
//! stored with its what-if and audited, then approved or rejected (the
//! handlers in `policy`).

use interkom_policy::Flip;
use serde_json::{json, Value};

use crate::api::{record, Change};
use crate::auth::Caller;
use crate::{AdminError, AdminState};

/// Where a change applies: inside one tenant's subtree, or everywhere
/// (lines for `*` or a kind, resources of no tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    Tenant(String),
    Everywhere,
}

impl Place {
    pub(crate) fn tenant(&self) -> Option<String> {
        match self {
            Place::Tenant(t) => Some(t.clone()),
            Place::Everywhere => None,
        }
    }
}

/// Stores a proposal; audited as a change of its own.
pub(crate) async fn propose(
    state: &AdminState,
    caller: &Caller,
    kind: &str,
    payload: &Value,
    place: &Place,
    flips: &[Flip],
    c: &mut Change<'_>,
) -> Result<String, AdminError> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO admin_proposals (id, kind, payload, tenant, proposer, what_if, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)",
    )
    .bind(&id)
    .bind(kind)
    .bind(payload.to_string())
    .bind(place.tenant())
    .bind(&caller.subject)
    .bind(serde_json::to_string(flips).unwrap_or_default())
    .bind(state.0.gateway.clock().now())
    .execute(&state.0.pool)
    .await
    .map_err(AdminError::from)?;
    c.op = "proposal.create";
    c.target = format!("proposals/{id}");
    c.extra = json!({ "kind": kind, "flips": flips });
    record(state, caller, c).await?;
    Ok(id)
}
