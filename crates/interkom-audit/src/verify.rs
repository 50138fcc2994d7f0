//! Recomputes the hash chain and reports the first event that does not fit.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AnyPool, ConnectOptions};

use crate::chain::{Canonical, GENESIS};
use crate::{AuditError, StoredEvent};

/// The result of a verification run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events checked.
    pub checked: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The first bad sequence number and what is wrong with it.
    pub first_bad: Option<(i64, String)>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

const PAGE: i64 = 20_000;

/// What is wrong with one event on its own (its hash is computed from the
/// predecessor hash it names; whether that is right is checked in order).
fn check_row(row: &StoredEvent) -> Option<&'static str> {
    if crate::event::split_path(row.tenant_path.as_deref())
        != [
            row.path_kreis.clone(),
            row.path_samtgemeinde.clone(),
            row.path_gemeinde.clone(),
        ]
    {
        return Some("level columns do not match the tenant path");
    }
    let canonical = Canonical::from(row);
    if row.pruned_at.is_none() {
        if !canonical.personal_digest_is(&row.personal_digest) {
            return Some("personal fields do not match their digest");
        }
    } else if !crate::prune::is_erased(row) {
        // A pruned event only ever has its personal fields erased; anything
        // else there was written afterwards.
        return Some("pruned event carries personal data");
    }
    if !canonical.chain_hash_is(&row.prev_hash, &row.personal_digest, &row.hash) {
        return Some("content does not match its hash");
    }
    None
}

/// [`check_row`] for a page, on all cores.
fn check_rows(rows: &[StoredEvent]) -> Vec<Option<&'static str>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let chunk = rows.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = rows
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(check_row).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The scan's own connection. On SQLite a plain synchronous connection on a
/// blocking thread: sqlx hands every row from its worker thread to the async
/// task, which costs more than hashing the row.
enum ScanConn {
    Sqlite(rusqlite::Connection),
    Postgres(PgConnection),
    Taken,
}

/// The file of a `sqlite:` URL.
fn sqlite_path(url: &str) -> &str {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}

impl ScanConn {
    async fn open(url: &str) -> Result<ScanConn, AuditError> {
        Ok(if url.starts_with("sqlite:") {
            let path = sqlite_path(url).to_owned();
            let conn = tokio::task::spawn_blocking(move || {
                rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
            })
            .await
            .map_err(|_| AuditError::WriterStopped)?
            .map_err(|e| AuditError::Database(sqlx::Error::Protocol(e.to_string())))?;
            ScanConn::Sqlite(conn)
        } else {
            ScanConn::Postgres(PgConnectOptions::from_str(url)?.connect().await?)
        })
    }

    fn take(&mut self) -> ScanConn {
        std::mem::replace(self, ScanConn::Taken)
    }
}

/// Events `from..=to`, at most one page, in order. The page is a closed
/// range of the primary key (not `LIMIT`), so every planner walks the index.
async fn fetch(
    mut conn: ScanConn,
    from: i64,
    to: i64,
) -> Result<(ScanConn, Vec<StoredEvent>), AuditError> {
    let to = to.min(from.saturating_add(PAGE - 1));
    let rows = match conn.take() {
        ScanConn::Sqlite(c) => {
            let (c, rows) = tokio::task::spawn_blocking(move || {
                let rows = sqlite_page(&c, from, to);
                (c, rows)
            })
            .await
            .map_err(|_| AuditError::WriterStopped)?;
            conn = ScanConn::Sqlite(c);
            rows.map_err(|e| AuditError::Database(sqlx::Error::Protocol(e.to_string())))?
        }
        ScanConn::Postgres(mut c) => {
            let sql = format!(
                "SELECT {} FROM audit_events WHERE seq >= $1 AND seq <= $2 ORDER BY seq",
                crate::event::COLUMNS
            );
            let rows = sqlx::query_as(&sql)
                .bind(from)
                .bind(to)
                .fetch_all(&mut c)
                .await?;
            conn = ScanConn::Postgres(c);
            rows
        }
        ScanConn::Taken => Vec::new(),
    };
    Ok((conn, rows))
}

/// Verifies the chain over `from..=to` (all when `None`), without checking
/// checkpoint signatures; see [`verify_with_keys`].
pub async fn verify(
    pool: &AnyPool,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<VerifyReport, AuditError> {
    verify_with_keys(pool, from, to, &[]).await
}

/// Verifies events `from..=to` (all when `None`). Detects modified, deleted,
/// inserted and reordered events, and a truncated tail (against the head and
/// against the signed checkpoints). Each checkpoint in the range must match
/// the event it names and carry a signature by one of `public_keys` (raw
/// Ed25519; when empty, signatures are not checked).
pub async fn verify_with_keys(
    pool: &AnyPool,
    from: Option<i64>,
    to: Option<i64>,
    public_keys: &[Vec<u8>],
) -> Result<VerifyReport, AuditError> {
    let (head_seq, head_hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(pool)
            .await?;
    let from = from.unwrap_or(1).max(1);
    let to = to.unwrap_or(head_seq).min(head_seq);
    let mut report = VerifyReport {
        checked: 0,
        checkpoints: 0,
        first_bad: None,
    };
    // A checkpoint beyond the head: events were cut off the end.
    let newest_cp: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints")
        .fetch_one(pool)
        .await?;
    if let Some(cp) = newest_cp.filter(|cp| *cp > head_seq) {
        report.first_bad = Some((
            head_seq + 1,
            format!("chain truncated: a signed checkpoint covers seq {cp}"),
        ));
        return Ok(report);
    }
    let checkpoints = crate::checkpoint::list(pool, from, to).await?;
    let mut next_cp = checkpoints.iter().peekable();

    // The hash the first checked event must chain to.
    let mut prev: String = if from == 1 {
        GENESIS.to_owned()
    } else {
        match sqlx::query_scalar::<_, String>("SELECT hash FROM audit_events WHERE seq = $1")
            .bind(from - 1)
            .fetch_optional(pool)
            .await?
        {
            Some(h) => h,
            None => {
                report.first_bad = Some((from - 1, "event missing".into()));
                return Ok(report);
            }
        }
    };
    let url = pool.connect_options().database_url.to_string();
    let mut conn = ScanConn::open(&url).await?;
    let mut expected = from;
    // Fetching the next page overlaps with hashing the current one, and the
    // hashing of a page is spread over the cores: each event's own hash can
    // be checked independently (it names its predecessor's hash); only the
    // links between neighbours are checked in order.
    let mut pending = Some(tokio::spawn(fetch(conn.take(), expected, to)));
    while let Some(job) = pending.take() {
        let (c, rows) = job.await.map_err(|_| AuditError::WriterStopped)??;
        conn = c;
        if rows.is_empty() {
            if expected <= to {
                report.first_bad = Some((expected, "event missing".into()));
                return Ok(report);
            }
            break;
        }
        let next_from = rows.last().map(|r| r.seq + 1).unwrap_or(expected);
        if next_from <= to {
            pending = Some(tokio::spawn(fetch(conn.take(), next_from, to)));
        }
        let (rows, local) = tokio::task::spawn_blocking(move || {
            let local = check_rows(&rows);
            (rows, local)
        })
        .await
        .map_err(|_| AuditError::WriterStopped)?;
        for (row, problem) in rows.iter().zip(local) {
            if row.seq != expected {
                report.first_bad = Some((expected, "event missing".into()));
                return Ok(report);
            }
            if row.prev_hash != prev {
                report.first_bad = Some((row.seq, "does not chain to the previous event".into()));
                return Ok(report);
            }
            if let Some(why) = problem {
                report.first_bad = Some((row.seq, why.into()));
                return Ok(report);
            }
            while let Some(cp) = next_cp.next_if(|cp| cp.seq <= row.seq) {
                if cp.seq != row.seq || cp.hash != row.hash {
                    report.first_bad =
                        Some((cp.seq, "event differs from its signed checkpoint".into()));
                    return Ok(report);
                }
                if !public_keys.is_empty() && !public_keys.iter().any(|k| cp.verify(k)) {
                    report.first_bad = Some((cp.seq, "checkpoint signature invalid".into()));
                    return Ok(report);
                }
                report.checkpoints += 1;
            }
            prev.clone_from(&row.hash);
            expected += 1;
            report.checked += 1;
        }
    }
    if to == head_seq && head_seq > 0 && prev != head_hash {
        report.first_bad = Some((head_seq, "chain head does not match the last event".into()));
        return Ok(report);
    }
    // Events beyond the head were inserted behind the writer's back.
    let beyond: Option<i64> =
        sqlx::query_scalar("SELECT MIN(seq) FROM audit_events WHERE seq > $1")
            .bind(head_seq)
            .fetch_one(pool)
            .await?;
    if let Some(seq) = beyond {
        report.first_bad = Some((seq, "event beyond the chain head".into()));
    }
    Ok(report)
}

/// One page through rusqlite, columns in the order of [`crate::event::COLUMNS`].
fn sqlite_page(c: &rusqlite::Connection, from: i64, to: i64) -> rusqlite::Result<Vec<StoredEvent>> {
    let sql = format!(
        "SELECT {} FROM audit_events WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq",
        crate::event::COLUMNS
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map([from, to], |r| {
        Ok(StoredEvent {
            seq: r.get(0)?,
            ts: r.get(1)?,
            tenant: r.get(2)?,
            tenant_path: r.get(3)?,
            path_kreis: r.get(4)?,
            path_samtgemeinde: r.get(5)?,
            path_gemeinde: r.get(6)?,
            actor_subject: r.get(7)?,
            actor_tenant: r.get(8)?,
            actor_client: r.get(9)?,
            action: r.get(10)?,
            target: r.get(11)?,
            outcome: r.get(12)?,
            reason: r.get(13)?,
            correlation_id: r.get(14)?,
            source: r.get(15)?,
            details: r.get(16)?,
            personal_digest: r.get(17)?,
            pruned_at: r.get(18)?,
            prev_hash: r.get(19)?,
            hash: r.get(20)?,
        })
    })?;
    rows.collect()
}
