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
pub use prune::retention_cutoff;
pub use query::{normalize_ts, query, AuditQuery};
pub use verify::{verify, verify_with_keys, VerifyReport};
pub use writer::{AuditConfig, AuditLog};

use interkom_types::Backend;
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
    migrator.run(pool).await?;
    if Backend::of(pool).is_postgres() {
        pg_indexes(pool).await?;
    }
    Ok(())
}

/// PostgreSQL's secondary indexes. The portable migrations create
/// block-led ones, which spare SQLite a page copy per event and commit;
/// PostgreSQL logs index inserts by tuple, so plain indexes cost it little
/// on append and let a rare actor be found in one descent instead of one
/// per block. Idempotent; serialised between nodes by an advisory lock.
async fn pg_indexes(pool: &AnyPool) -> Result<(), sqlx::Error> {
    const LOCK: i64 = 0x696b_6175_6469_7431; // "ikaudit1"
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await?;
    let mut result = Ok(());
    for sql in [
        "DROP INDEX IF EXISTS audit_events_b_actor",
        "DROP INDEX IF EXISTS audit_events_b_action",
        "DROP INDEX IF EXISTS audit_events_b_client",
        "DROP INDEX IF EXISTS audit_events_b_correlation",
        "DROP INDEX IF EXISTS audit_events_b_tenant",
        "CREATE INDEX IF NOT EXISTS audit_events_pg_actor ON audit_events (actor_subject, seq)",
        "CREATE INDEX IF NOT EXISTS audit_events_pg_action ON audit_events (action, seq)",
        "CREATE INDEX IF NOT EXISTS audit_events_pg_client ON audit_events (actor_client, seq)",
        "CREATE INDEX IF NOT EXISTS audit_events_pg_correlation ON audit_events (correlation_id, seq)",
        "CREATE INDEX IF NOT EXISTS audit_events_pg_kreis ON audit_events (path_kreis, seq)",
        "CREATE INDEX IF NOT EXISTS audit_events_pg_samtgemeinde ON audit_events (path_samtgemeinde, seq)",
        "CREATE INDEX IF NOT EXISTS audit_events_pg_gemeinde ON audit_events (path_gemeinde, seq)",
    ] {
        if let Err(e) = sqlx::query(sql).execute(&mut *conn).await {
            result = Err(e);
            break;
        }
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await?;
    result
}
