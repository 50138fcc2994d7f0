//! [`AuditLog`]: the durable appender.
//!
//! One writer task per process owns the appends. Callers send their event
//! and wait for the acknowledgement, which comes only after the transaction
//! holding it has committed. Whatever arrives while a transaction commits is
//! gathered into the next one (group commit), so durability costs one commit
//! per batch, not per event. Several processes on one PostgreSQL serialise on
//! the row lock of `audit_head`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyPool, ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot};

use crate::chain::Canonical;
use crate::checkpoint::CheckpointKey;
use crate::{AuditError, AuditEvent, StoredEvent};

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Most events committed in one transaction.
    pub max_batch: usize,
    /// Capacity of the queue in front of the writer; appends wait when full.
    pub queue: usize,
    /// Signs checkpoints; none are written without it.
    pub checkpoint_key: Option<Arc<CheckpointKey>>,
    /// A checkpoint after this many events …
    pub checkpoint_every_events: i64,
    /// … or after this long, whichever comes first.
    pub checkpoint_every: Duration,
    /// At most this long after a security-relevant event.
    pub security_checkpoint_within: Duration,
    /// Days events keep their personal fields (read by `verify`).
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            max_batch: 1000,
            queue: 16_384,
            checkpoint_key: None,
            checkpoint_every_events: 1000,
            checkpoint_every: Duration::from_secs(60),
            security_checkpoint_within: Duration::from_secs(5),
            retention_days: 365,
        }
    }
}

/// When the next checkpoint is due.
struct Checkpoints {
    key: Option<Arc<CheckpointKey>>,
    every_events: i64,
    every: Duration,
    /// How soon after a security-relevant event.
    security_within: Duration,
    /// Since when a security-relevant event waits for a checkpoint.
    security_since: Option<Instant>,
    /// Sequence number of the newest checkpoint, once read from the store.
    last_seq: Option<i64>,
    last_at: Instant,
    /// The chain head this writer last committed.
    head: i64,
}

impl Checkpoints {
    fn due(&self, head: i64, last_seq: i64) -> bool {
        let security = self
            .security_since
            .is_some_and(|t| t.elapsed() >= self.security_within / 2);
        head > last_seq
            && (head - last_seq >= self.every_events
                || self.last_at.elapsed() >= self.every
                || security)
    }

    /// Notes the security-relevant events of a committed batch.
    fn saw(&mut self, batch: &[Pending]) {
        if self.security_since.is_none() && batch.iter().any(|p| p.event.action.is_security()) {
            self.security_since = Some(Instant::now());
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

/// Rows per INSERT statement: 21 parameters each stays far below the bind
/// limits of SQLite (32766) and PostgreSQL (65535).
const ROWS_PER_STATEMENT: usize = 100;

impl AuditLog {
    /// Starts the writer task on the current runtime.
    pub fn start(pool: AnyPool, config: AuditConfig) -> AuditLog {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let url = pool.connect_options().database_url.to_string();
        let checkpoints = Checkpoints {
            key: config.checkpoint_key.clone(),
            every_events: config.checkpoint_every_events.max(1),
            every: config.checkpoint_every,
            security_within: config.security_checkpoint_within,
            security_since: None,
            last_seq: None,
            last_at: Instant::now(),
            head: 0,
        };
        tokio::spawn(run_writer(url, rx, config.max_batch.max(1), checkpoints));
        AuditLog { tx, pool }
    }

    /// The pool the store reads from.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Appends one event and returns its sequence number once it is committed.
    pub async fn append(&self, event: AuditEvent) -> Result<i64, AuditError> {
        let started = Instant::now();
        let (action, outcome) = (event.action.as_str(), event.outcome.as_str());
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Pending { event, ack })
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        let result = match done.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(msg)) => Err(AuditError::Database(sqlx::Error::Protocol(msg))),
            Err(_) => Err(AuditError::WriterStopped),
        };
        // Logins by outcome, tokens issued, decisions audited, …: every
        // event counts; the latency is the caller's wait for durability.
        let committed = if result.is_ok() { "true" } else { "false" };
        metrics::counter!("interkom_audit_events_total", "action" => action, "outcome" => outcome, "committed" => committed)
            .increment(1);
        metrics::histogram!("interkom_audit_append_seconds")
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Events waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// The writer's own connection, of the native driver: it is the only
/// writer of this node, needs no pool, and skips the `Any` driver's argument
/// conversions on the hottest write path.
enum WriterConn {
    Sqlite(SqliteConnection, #[allow(dead_code)] Checkpointer),
    Postgres(PgConnection),
}

/// Copies SQLite's write-ahead log into the database file on a thread of
/// its own (PASSIVE: it never blocks the writer), so the writer's commits
/// only append to the log. The writer's own automatic checkpoint stays as a
/// backstop that bounds the log (it finds most of the work done). Stops
/// when the writer's connection is dropped.
struct Checkpointer {
    _stop: std::sync::mpsc::Sender<()>,
}

/// The writer checkpoints itself only beyond this many log pages.
const WRITER_AUTOCHECKPOINT_PAGES: &str = "8192";

impl Checkpointer {
    fn start(path: std::path::PathBuf) -> Checkpointer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let run = move || {
            let conn = match rusqlite::Connection::open(&path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "audit log checkpointer not started");
                    return;
                }
            };
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(50))
            {
                let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                if let Err(e) = r {
                    tracing::debug!(error = %e, "audit log checkpoint skipped");
                }
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("audit-checkpoint".into())
            .spawn(run)
        {
            tracing::warn!(error = %e, "audit log checkpointer not started");
        }
        Checkpointer { _stop: stop }
    }
}

impl WriterConn {
    async fn open(url: &str) -> Result<WriterConn, sqlx::Error> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES);
            let conn = opts.connect().await?;
            let checkpointer = Checkpointer::start(opts.get_filename().to_path_buf());
            Ok(WriterConn::Sqlite(conn, checkpointer))
        } else {
            Ok(WriterConn::Postgres(
                PgConnectOptions::from_str(url)?.connect().await?,
            ))
        }
    }

    async fn write(&mut self, batch: &[Pending], cps: &mut Checkpoints) -> Result<i64, AuditError> {
        match self {
            WriterConn::Sqlite(c, _) => write_sqlite(c, batch, cps).await,
            WriterConn::Postgres(c) => write_postgres(c, batch, cps).await,
        }
    }

    async fn checkpoint(&mut self, cps: &mut Checkpoints) -> Result<(), AuditError> {
        match self {
            WriterConn::Sqlite(c, _) => checkpoint_sqlite(c, cps).await,
            WriterConn::Postgres(c) => checkpoint_postgres(c, cps).await,
        }
    }
}

async fn run_writer(
    url: String,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
    mut cps: Checkpoints,
) {
    let mut conn: Option<WriterConn> = None;
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    // Time-based checkpoints also when no event arrives.
    let mut ticker = tokio::time::interval(
        cps.every
            .min(cps.security_within)
            .max(Duration::from_millis(100))
            / 2,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            p = rx.recv() => match p {
                Some(p) => p,
                None => break,
            },
            _ = ticker.tick() => {
                let due = cps.key.is_some() && cps.last_seq.is_some_and(|l| cps.due(cps.head, l));
                if due {
                    if let Some(c) = conn.as_mut() {
                        if let Err(e) = c.checkpoint(&mut cps).await {
                            tracing::warn!(error = %e, "audit checkpoint failed");
                            conn = None;
                        }
                    }
                }
                continue;
            }
        };
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
                Some(c) => c.write(&batch, &mut cps).await,
                None => match WriterConn::open(&url).await {
                    Ok(c) => conn.insert(c).write(&batch, &mut cps).await,
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
    head_ts: &str,
    batch: &[Pending],
) -> Result<Vec<StoredEvent>, AuditError> {
    // Never earlier than the head: another node's clock may run ahead of
    // ours, and time must not go backwards along the chain.
    let ts = now_ts().max(head_ts.to_owned());
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
        let personal_digest = canonical.personal_digest();
        let hash = canonical.chain_hash(&prev, &personal_digest);
        let [path_kreis, path_samtgemeinde, path_gemeinde] =
            crate::event::split_path(e.tenant_path.as_deref());
        rows.push(StoredEvent {
            seq,
            ts: ts.clone(),
            tenant: e.tenant.clone(),
            tenant_path: e.tenant_path.clone(),
            path_kreis,
            path_samtgemeinde,
            path_gemeinde,
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
    ($name:ident, $cp_name:ident, $conn:ty, $numbered:expr) => {
        async fn $name(
            conn: &mut $conn,
            batch: &[Pending],
            cps: &mut Checkpoints,
        ) -> Result<i64, AuditError> {
            let mut tx = conn.begin().await?;
            // Taking the write lock first: a row lock on PostgreSQL, the
            // database write lock on SQLite. Every writer of every node goes
            // through it, so the chain has one order.
            sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            let (head_seq, head_hash, head_ts): (i64, String, String) =
                sqlx::query_as("SELECT seq, hash, ts FROM audit_head WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await?;
            let rows = chain(head_seq, head_hash, &head_ts, batch)?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let sql = insert_sql(chunk.len(), $numbered);
                let mut q = sqlx::query(&sql);
                for e in chunk {
                    q = q
                        .bind(e.seq)
                        .bind(&e.ts)
                        .bind(&e.tenant)
                        .bind(&e.tenant_path)
                        .bind(&e.path_kreis)
                        .bind(&e.path_samtgemeinde)
                        .bind(&e.path_gemeinde)
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
            let mut signed = None;
            if let Some(last) = rows.last() {
                sqlx::query(if $numbered {
                    "UPDATE audit_head SET seq = $1, hash = $2, ts = $3 WHERE id = 1"
                } else {
                    "UPDATE audit_head SET seq = ?, hash = ?, ts = ? WHERE id = 1"
                })
                .bind(last.seq)
                .bind(&last.hash)
                .bind(&last.ts)
                .execute(&mut *tx)
                .await?;
                if let Some(key) = cps.key.clone() {
                    let last_cp = match cps.last_seq {
                        Some(l) => l,
                        None => sqlx::query_scalar::<_, Option<i64>>(
                            "SELECT MAX(seq) FROM audit_checkpoints",
                        )
                        .fetch_one(&mut *tx)
                        .await?
                        .unwrap_or(0),
                    };
                    cps.last_seq = Some(last_cp);
                    if cps.due(last.seq, last_cp) {
                        let cp = key.sign(last.seq, &last.ts, &last.hash);
                        insert_checkpoint!(&mut *tx, &cp, $numbered);
                        signed = Some(cp.seq);
                    }
                }
            }
            tx.commit().await?;
            if let Some(last) = rows.last() {
                cps.head = last.seq;
            }
            if let Some(seq) = signed {
                cps.last_seq = Some(seq);
                cps.last_at = Instant::now();
                cps.security_since = None;
            } else {
                cps.saw(batch);
            }
            Ok(head_seq + 1)
        }

        /// A checkpoint of the current head, when time says so.
        async fn $cp_name(conn: &mut $conn, cps: &mut Checkpoints) -> Result<(), AuditError> {
            let Some(key) = cps.key.clone() else {
                return Ok(());
            };
            let (seq, hash): (i64, String) =
                sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                    .fetch_one(&mut *conn)
                    .await?;
            if seq == 0 || cps.last_seq.is_some_and(|l| l >= seq) {
                return Ok(());
            }
            let ts: String = sqlx::query_scalar(if $numbered {
                "SELECT ts FROM audit_events WHERE seq = $1"
            } else {
                "SELECT ts FROM audit_events WHERE seq = ?"
            })
            .bind(seq)
            .fetch_one(&mut *conn)
            .await?;
            let cp = key.sign(seq, &ts, &hash);
            insert_checkpoint!(&mut *conn, &cp, $numbered);
            cps.head = cps.head.max(seq);
            cps.last_seq = Some(seq);
            cps.last_at = Instant::now();
            cps.security_since = None;
            Ok(())
        }
    };
}

/// Several nodes may sign the same head: the first one stays.
macro_rules! insert_checkpoint {
    ($exec:expr, $cp:expr, $numbered:expr) => {
        sqlx::query(if $numbered {
            "INSERT INTO audit_checkpoints (seq, ts, hash, key_id, signature) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (seq) DO NOTHING"
        } else {
            "INSERT INTO audit_checkpoints (seq, ts, hash, key_id, signature) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (seq) DO NOTHING"
        })
        .bind($cp.seq)
        .bind(&$cp.ts)
        .bind(&$cp.hash)
        .bind(&$cp.key_id)
        .bind(&$cp.signature)
        .execute($exec)
        .await?;
    };
}

write_batch!(write_sqlite, checkpoint_sqlite, SqliteConnection, false);
write_batch!(write_postgres, checkpoint_postgres, PgConnection, true);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_fall_due_by_count_or_time() {
        let mut c = Checkpoints {
            key: None,
            every_events: 10,
            every: Duration::from_secs(3600),
            security_within: Duration::from_secs(3600),
            security_since: None,
            last_seq: Some(0),
            last_at: Instant::now(),
            head: 0,
        };
        assert!(!c.due(9, 0));
        assert!(c.due(10, 0));
        assert!(!c.due(10, 10), "nothing new since the last checkpoint");
        // A security-relevant event waits at most half its window here.
        c.security_since = Some(Instant::now());
        assert!(!c.due(11, 10));
        c.security_within = Duration::ZERO;
        assert!(c.due(11, 10), "a security event is anchored soon");
        c.security_since = None;
        c.every = Duration::ZERO;
        assert!(c.due(11, 10), "time has come with one new event");
        assert!(!c.due(10, 10));
    }

    #[test]
    fn insert_placeholders_follow_the_driver() {
        assert!(insert_sql(2, false).ends_with("(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
        let pg = insert_sql(2, true);
        assert!(pg.contains("($1,") && pg.ends_with("$42)"));
    }
}
