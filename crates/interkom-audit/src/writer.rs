//! [`AuditLog`]: the durable appender.
//!
//! One writer task per process owns the appends. Callers send their event
//! and wait for the acknowledgement, which comes only after the transaction
//! holding it has committed. Whatever arrives while a transaction commits is
//! gathered into the next one (group commit), so durability costs one commit
//! per batch, not per event. Several processes on one PostgreSQL serialise on
//! the row lock of `audit_head`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyPool, ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot};

use crate::chain::Canonical;
use crate::{AuditError, AuditEvent, StoredEvent};

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Most events committed in one transaction.
    pub max_batch: usize,
    /// Capacity of the queue in front of the writer; appends wait when full.
    pub queue: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            max_batch: 1000,
            queue: 16_384,
        }
    }
}

struct Pending {
    event: AuditEvent,
    ack: oneshot::Sender<Result<i64, String>>,
}

/// Handle to the audit store; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
    pool: AnyPool,
}

/// Rows per INSERT statement: 18 parameters each stays far below the bind
/// limits of SQLite (32766) and PostgreSQL (65535).
const ROWS_PER_STATEMENT: usize = 100;

impl AuditLog {
    /// Starts the writer task on the current runtime.
    pub fn start(pool: AnyPool, config: AuditConfig) -> AuditLog {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let url = pool.connect_options().database_url.to_string();
        tokio::spawn(run_writer(url, rx, config.max_batch.max(1)));
        AuditLog { tx, pool }
    }

    /// The pool the store reads from.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Appends one event and returns its sequence number once it is committed.
    pub async fn append(&self, event: AuditEvent) -> Result<i64, AuditError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Pending { event, ack })
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        match done.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(msg)) => Err(AuditError::Database(sqlx::Error::Protocol(msg))),
            Err(_) => Err(AuditError::WriterStopped),
        }
    }
}

/// The writer's own connection, of the native driver: it is the only
/// writer of this node, needs no pool, and skips the `Any` driver's argument
/// conversions on the hottest write path.
enum WriterConn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl WriterConn {
    async fn open(url: &str) -> Result<WriterConn, sqlx::Error> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full);
            Ok(WriterConn::Sqlite(opts.connect().await?))
        } else {
            Ok(WriterConn::Postgres(
                PgConnectOptions::from_str(url)?.connect().await?,
            ))
        }
    }

    async fn write(&mut self, batch: &[Pending]) -> Result<i64, AuditError> {
        match self {
            WriterConn::Sqlite(c) => write_sqlite(c, batch).await,
            WriterConn::Postgres(c) => write_postgres(c, batch).await,
        }
    }
}

async fn run_writer(url: String, mut rx: mpsc::Receiver<Pending>, max_batch: usize) {
    let mut conn: Option<WriterConn> = None;
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut attempt = 0;
        let result = loop {
            let res = match conn.as_mut() {
                Some(c) => c.write(&batch).await,
                None => match WriterConn::open(&url).await {
                    Ok(c) => conn.insert(c).write(&batch).await,
                    Err(e) => Err(e.into()),
                },
            };
            match res {
                Ok(first_seq) => break Ok(first_seq),
                // Another node holds the chain head, SQLite is busy, or the
                // connection broke: reconnect and retry before failing.
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    conn = None;
                    tracing::warn!(error = %e, attempt, "audit batch failed, retrying");
                    tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                }
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(first_seq) => {
                for (i, p) in batch.drain(..).enumerate() {
                    let _ = p.ack.send(Ok(first_seq + i as i64));
                }
            }
            Err(e) => {
                conn = None;
                tracing::error!(error = %e, events = batch.len(), "audit batch could not be committed");
                for p in batch.drain(..) {
                    let _ = p.ack.send(Err("audit store unavailable".into()));
                }
            }
        }
    }
}

fn now_ts() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    now.format(&fmt).unwrap_or_default()
}

/// Chains the batch onto the head: sequence numbers, timestamp, hashes.
fn chain(
    head_seq: i64,
    head_hash: String,
    batch: &[Pending],
) -> Result<Vec<StoredEvent>, AuditError> {
    let ts = now_ts();
    let mut rows = Vec::with_capacity(batch.len());
    let mut prev = head_hash;
    for (i, p) in batch.iter().enumerate() {
        let e = &p.event;
        let details = serde_json::to_string(&e.details)?;
        let seq = head_seq + 1 + i as i64;
        let canonical = Canonical {
            seq,
            ts: &ts,
            tenant: e.tenant.as_deref(),
            tenant_path: e.tenant_path.as_deref(),
            actor_subject: e.actor_subject.as_deref(),
            actor_tenant: e.actor_tenant.as_deref(),
            actor_client: e.actor_client.as_deref(),
            action: e.action.as_str(),
            target: e.target.as_deref(),
            outcome: e.outcome.as_str(),
            reason: e.reason.as_deref(),
            correlation_id: e.correlation_id.as_deref(),
            source: e.source.as_deref(),
            details: &details,
        };
        let personal_digest = canonical.personal_digest()?;
        let hash = canonical.chain_hash(&prev, &personal_digest)?;
        rows.push(StoredEvent {
            seq,
            ts: ts.clone(),
            tenant: e.tenant.clone(),
            tenant_path: e.tenant_path.clone(),
            actor_subject: e.actor_subject.clone(),
            actor_tenant: e.actor_tenant.clone(),
            actor_client: e.actor_client.clone(),
            action: e.action.as_str().to_owned(),
            target: e.target.clone(),
            outcome: e.outcome.as_str().to_owned(),
            reason: e.reason.clone(),
            correlation_id: e.correlation_id.clone(),
            source: e.source.clone(),
            details,
            personal_digest,
            pruned_at: None,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    Ok(rows)
}

/// A multi-row INSERT for `n` events. SQLite resolves a numbered parameter
/// (`$7`) by scanning the statement's parameter names, which makes a
/// 1,600-parameter statement quadratic; there `?` binds by position.
/// PostgreSQL needs `$n`.
fn insert_sql(n: usize, numbered: bool) -> String {
    let mut sql = format!(
        "INSERT INTO audit_events ({}) VALUES ",
        crate::event::COLUMNS
    );
    for r in 0..n {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..crate::event::COLUMN_COUNT {
            if c > 0 {
                sql.push(',');
            }
            if numbered {
                sql.push_str(&format!("${}", r * crate::event::COLUMN_COUNT + c + 1));
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

/// One transaction per batch; returns the first sequence number. The same
/// code for both drivers, which differ only in their types.
macro_rules! write_batch {
    ($name:ident, $conn:ty, $numbered:expr) => {
        async fn $name(conn: &mut $conn, batch: &[Pending]) -> Result<i64, AuditError> {
            let mut tx = conn.begin().await?;
            // Taking the write lock first: a row lock on PostgreSQL, the
            // database write lock on SQLite. Every writer of every node goes
            // through it, so the chain has one order.
            sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            let (head_seq, head_hash): (i64, String) =
                sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await?;
            let rows = chain(head_seq, head_hash, batch)?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let sql = insert_sql(chunk.len(), $numbered);
                let mut q = sqlx::query(&sql);
                for e in chunk {
                    q = q
                        .bind(e.seq)
                        .bind(&e.ts)
                        .bind(&e.tenant)
                        .bind(&e.tenant_path)
                        .bind(&e.actor_subject)
                        .bind(&e.actor_tenant)
                        .bind(&e.actor_client)
                        .bind(&e.action)
                        .bind(&e.target)
                        .bind(&e.outcome)
                        .bind(&e.reason)
                        .bind(&e.correlation_id)
                        .bind(&e.source)
                        .bind(&e.details)
                        .bind(&e.personal_digest)
                        .bind(&e.pruned_at)
                        .bind(&e.prev_hash)
                        .bind(&e.hash);
                }
                q.execute(&mut *tx).await?;
            }
            if let Some(last) = rows.last() {
                sqlx::query(if $numbered {
                    "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1"
                } else {
                    "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"
                })
                .bind(last.seq)
                .bind(&last.hash)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(head_seq + 1)
        }
    };
}

write_batch!(write_sqlite, SqliteConnection, false);
write_batch!(write_postgres, PgConnection, true);
