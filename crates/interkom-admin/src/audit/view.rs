//! The audit trail as the admin API shows it, and the details of the
//! events that reading it writes.

use interkom_audit::checkpoint::Checkpoint;
use interkom_audit::StoredEvent;
use serde::Serialize;
use utoipa::ToSchema;

/// An audit event as stored: with its sequence number, time and chain
/// hashes.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct AuditEventDoc {
    /// Its place in the chain.
    seq: i64,
    /// RFC 3339 time (UTC).
    ts: String,
    /// The tenant it belongs to.
    tenant: Option<String>,
    /// That tenant's path, `/kreis/samtgemeinde/gemeinde/`.
    tenant_path: Option<String>,
    path_kreis: Option<String>,
    path_samtgemeinde: Option<String>,
    path_gemeinde: Option<String>,
    /// Who acted (erased by retention).
    actor_subject: Option<String>,
    /// The actor's home tenant.
    actor_tenant: Option<String>,
    /// The client that acted or was used.
    actor_client: Option<String>,
    /// What happened (`login`, `token_issued`, `admin_change`, …).
    action: String,
    /// What it happened to.
    target: Option<String>,
    /// `success`, `failure` or `denied`.
    outcome: String,
    /// Why (for a failure or a denial).
    reason: Option<String>,
    /// The request it belongs to.
    correlation_id: Option<String>,
    /// The client address (erased by retention).
    source: Option<String>,
    /// The details object as JSON text, exactly as hashed.
    details: String,
    /// SHA-256 over the personal fields: what the chain hash covers of them.
    personal_digest: String,
    /// When retention erased the personal fields.
    pruned_at: Option<String>,
    /// The hash of the event before.
    prev_hash: String,
    /// This event's chain hash.
    hash: String,
}

/// One page of audit events, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct EventsPage {
    #[schema(value_type = Vec<AuditEventDoc>)]
    pub(crate) events: Vec<StoredEvent>,
    /// The `cursor` of the next (older) page; none on the last.
    pub(crate) next_cursor: Option<String>,
}

/// Whether the audit chain is intact.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct VerifyStatus {
    /// Whether every event and checkpoint checked out.
    pub(crate) ok: bool,
    /// Events checked.
    pub(crate) checked: u64,
    /// Signed checkpoints checked.
    pub(crate) checkpoints: u64,
    /// The first event that does not check out.
    pub(crate) first_bad_seq: Option<i64>,
    /// What is wrong with it.
    pub(crate) reason: Option<String>,
    /// The sequence number the newest signed checkpoint covers.
    pub(crate) newest_checkpoint: Option<i64>,
    /// Events after the newest signed checkpoint (the chain alone vouches
    /// for them).
    pub(crate) unanchored: i64,
}

/// A signed checkpoint of the chain.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct CheckpointDoc {
    /// The sequence number it covers.
    seq: i64,
    /// RFC 3339 time of the signature.
    ts: String,
    /// The chain hash at `seq`.
    hash: String,
    /// The signing key's id.
    key_id: String,
    /// Ed25519 signature, base64url.
    signature: String,
}

/// The signed checkpoints, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct CheckpointList {
    #[schema(value_type = Vec<CheckpointDoc>)]
    pub(crate) checkpoints: Vec<Checkpoint>,
}

/// The filter of a read or export, as its audit event keeps it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FilterDetails {
    pub(crate) tenant_path: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) outcome: Option<String>,
    pub(crate) client: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) cursor: Option<i64>,
}

/// The details of an `audit_read` event.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReadDetails {
    pub(crate) filter: FilterDetails,
    /// How many events left.
    pub(crate) events: usize,
}

/// The details of an `audit_export` event.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExportDetails {
    pub(crate) filter: FilterDetails,
    /// `jsonl` or `csv`.
    pub(crate) format: String,
}

/// The details of a refused read.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RefusedDetails {
    /// The tenant asked for.
    pub(crate) tenant: Option<String>,
}
