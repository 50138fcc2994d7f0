//! The four-eyes proposals as stored (table `admin_proposals`): a change
//! that needs a second administrator, with its what-if.

use interkom_policy::Flip;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::AnyPool;

use crate::api::{record, AdminChange};
use crate::auth::Caller;
use crate::proposals::view::ProposalView;
pub(crate) use crate::scope::Place;
use crate::{AdminError, AdminState};

/// Stores a proposal; audited as a change of its own.
pub(crate) async fn propose(
    state: &AdminState,
    caller: &Caller,
    kind: &str,
    payload: &Value,
    place: &Place,
    flips: &[Flip],
    c: &mut AdminChange<'_>,
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

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub(crate) struct ProposalRow {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) payload: String,
    pub(crate) tenant: Option<String>,
    pub(crate) proposer: String,
    what_if: String,
    pub(crate) status: String,
    decided_by: Option<String>,
    created_at: i64,
    decided_at: Option<i64>,
}

impl ProposalRow {
    pub(crate) fn view(&self) -> ProposalView {
        ProposalView {
            id: self.id.clone(),
            kind: self.kind.clone(),
            change: serde_json::from_str(&self.payload).unwrap_or(Value::Null),
            tenant: self.tenant.clone(),
            proposer: self.proposer.clone(),
            flips: serde_json::from_str(&self.what_if).unwrap_or(Value::Null),
            status: self.status.clone(),
            decided_by: self.decided_by.clone(),
            created_at: self.created_at,
            decided_at: self.decided_at,
        }
    }
    pub(crate) fn place(&self) -> Place {
        match &self.tenant {
            Some(t) => Place::Tenant(t.clone()),
            None => Place::Everywhere,
        }
    }
}

const PROPOSAL_COLUMNS: &str =
    "id, kind, payload, tenant, proposer, what_if, status, decided_by, created_at, decided_at";

/// The latest proposals, newest first (a thousand at most).
pub(crate) async fn recent(pool: &AnyPool) -> Result<Vec<ProposalRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {PROPOSAL_COLUMNS} FROM admin_proposals ORDER BY created_at DESC, id LIMIT 1000"
    ))
    .fetch_all(pool)
    .await
}

pub(crate) async fn get(pool: &AnyPool, id: &str) -> Result<Option<ProposalRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {PROPOSAL_COLUMNS} FROM admin_proposals WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Decides a pending proposal (`applied` or `rejected`); false when it was
/// decided meanwhile: of two administrators at once, one decides.
pub(crate) async fn decide(
    pool: &AnyPool,
    id: &str,
    status: &str,
    by: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE admin_proposals SET status = $1, decided_by = $2, decided_at = $3 \
         WHERE id = $4 AND status = 'pending'",
    )
    .bind(status)
    .bind(by)
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Makes a proposal pending again (it could not be applied after all).
pub(crate) async fn reopen(pool: &AnyPool, id: &str) {
    let _ = sqlx::query(
        "UPDATE admin_proposals SET status = 'pending', decided_by = NULL, decided_at = NULL \
         WHERE id = $1",
    )
    .bind(id)
    .execute(pool)
    .await;
}
