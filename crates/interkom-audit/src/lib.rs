//! The shared audit-log store of interkom.
//!
//! Every security-relevant event of the gateway, the policy engine and the
//! admin API is appended here, to one insert-only table in the same database
//! as everything else. Each event carries the SHA-256 hash of its canonical
//! encoding chained to the previous event's hash, so a modified, deleted,
//! inserted or reordered event is found by [`verify`].
//!
//! # Layout
//! - [`event`]: the event type, its closed set of actions and outcomes.
//! - [`chain`]: the canonical encoding and the hash chain.
//! - [`writer`]: [`AuditLog`], the durable appender with group commit: many
//!   concurrent callers are committed in one transaction, and each caller
//!   continues only after its event is committed.
//! - [`query`]: filtered, cursor-paginated reads, newest first.
//! - [`export`]: streamed JSON Lines and CSV.
//! - [`forward`]: delivery to a SIEM (syslog or JSON lines over TCP),
//!   decoupled from appends, catching up after outages.
//! - [`checkpoint`]: Ed25519-signed checkpoints of the chain head.
//! - [`verify`](mod@verify): recomputes the chain and checks the
//!   checkpoints over a range.
//! - [`prune`]: retention; erases personal fields, keeps the chain.

pub mod chain;
pub mod checkpoint;
pub mod event;
pub mod export;
pub mod forward;
pub mod prune;
pub mod query;
pub mod verify;
pub mod writer;

pub use checkpoint::{Checkpoint, CheckpointKey};
pub use event::{Action, AuditEvent, Outcome, StoredEvent};
pub use prune::prune_older_than;
pub use query::{normalize_ts, query, AuditQuery};
pub use verify::{verify, verify_with_keys, VerifyReport};
pub use writer::{AuditConfig, AuditLog};

use sqlx::AnyPool;

/// Errors of the audit store.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("audit writer has stopped")]
    WriterStopped,
    #[error("audit event could not be encoded: {0}")]
    Encoding(#[from] serde_json::Error),
    #[error("audit checkpoint key: {0}")]
    Key(&'static str),
}

/// Applies this crate's migrations (its own version range; other crates'
/// migrations in the same table are left alone).
pub async fn migrate(pool: &AnyPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}
