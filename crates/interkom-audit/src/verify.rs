//! Recomputes the hash chain and reports the first event that does not fit.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AnyPool, ConnectOptions};

use crate::chain::{Canonical, GENESIS};
use crate::{AuditError, StoredEvent};

/// The result of a verification run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Events checked.
    pub checked: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The first bad sequence number and what is wrong with it.
    pub first_bad: Option<(i64, String)>,
    /// The newest signed checkpoint (the sequence number it covers).
    pub newest_checkpoint: Option<i64>,
    /// Events after the newest signed checkpoint: the chain alone vouches
    /// for them, so they could be cut off unnoticed until the next one.
    pub unanchored: i64,
}

/// When a pruned event is in order: before the newest recorded prune's
/// cutoff, and (given the retention) before the retention's.
#[derive(Debug, Clone, Default)]
struct PruneRule {
    recorded_before: Option<String>,
    retention_before: Option<String>,
}

impl PruneRule {
    fn problem(&self, ts: &str) -> Option<&'static str> {
        match (&self.recorded_before, &self.retention_before) {
            (None, _) => Some("pruned without a prune on record"),
            (Some(c), _) if ts >= c.as_str() => Some("pruned after the recorded cutoff"),
            (_, Some(r)) if ts >= r.as_str() => Some("pruned before its retention ended"),
            _ => None,
        }
    }
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

const PAGE: i64 = 20_000;

/// An event's columns, borrowed (from a `StoredEvent` or straight from a
/// SQLite row).
struct View<'a> {
    seq: i64,
    ts: &'a str,
    tenant: Option<&'a str>,
    tenant_path: Option<&'a str>,
    levels: [Option<&'a str>; 3],
    actor_subject: Option<&'a str>,
    actor_tenant: Option<&'a str>,
    actor_client: Option<&'a str>,
    action: &'a str,
    target: Option<&'a str>,
    outcome: &'a str,
    reason: Option<&'a str>,
    correlation_id: Option<&'a str>,
    source: Option<&'a str>,
    details: &'a str,
    personal_digest: &'a str,
    pruned: bool,
    prev_hash: &'a str,
    hash: &'a str,
}

impl<'a> View<'a> {
    fn of(e: &'a StoredEvent) -> View<'a> {
        View {
            seq: e.seq,
            ts: &e.ts,
            tenant: e.tenant.as_deref(),
            tenant_path: e.tenant_path.as_deref(),
            levels: [
                e.path_kreis.as_deref(),
                e.path_samtgemeinde.as_deref(),
                e.path_gemeinde.as_deref(),
            ],
            actor_subject: e.actor_subject.as_deref(),
            actor_tenant: e.actor_tenant.as_deref(),
            actor_client: e.actor_client.as_deref(),
            action: &e.action,
            target: e.target.as_deref(),
            outcome: &e.outcome,
            reason: e.reason.as_deref(),
            correlation_id: e.correlation_id.as_deref(),
            source: e.source.as_deref(),
            details: &e.details,
            personal_digest: &e.personal_digest,
            pruned: e.pruned_at.is_some(),
            prev_hash: &e.prev_hash,
            hash: &e.hash,
        }
    }

    fn canonical(&self) -> Canonical<'a> {
        Canonical {
            seq: self.seq,
            ts: self.ts,
            tenant: self.tenant,
            tenant_path: self.tenant_path,
            actor_subject: self.actor_subject,
            actor_tenant: self.actor_tenant,
            actor_client: self.actor_client,
            action: self.action,
            target: self.target,
            outcome: self.outcome,
            reason: self.reason,
            correlation_id: self.correlation_id,
            source: self.source,
            details: self.details,
        }
    }

    /// What is wrong with this event on its own (its hash is computed from
    /// the predecessor hash it names; whether that is right is checked in
    /// order).
    fn problem(&self, rule: &PruneRule) -> Option<&'static str> {
        let mut parts = self
            .tenant_path
            .unwrap_or("")
            .split('/')
            .filter(|p| !p.is_empty());
        let derived = [parts.next(), parts.next(), parts.next()];
        if derived != self.levels {
            return Some("level columns do not match the tenant path");
        }
        let canonical = self.canonical();
        if !self.pruned {
            if !canonical.personal_digest_is(self.personal_digest) {
                return Some("personal fields do not match their digest");
            }
        } else if !(self.actor_subject.is_none()
            && self.target.is_none()
            && self.reason.is_none()
            && self.source.is_none()
            && self.details == crate::prune::ERASED_DETAILS)
        {
            // A pruned event only ever has its personal fields erased;
            // anything else there was written afterwards.
            return Some("pruned event carries personal data");
        } else if let Some(why) = rule.problem(self.ts) {
            return Some(why);
        }
        if !canonical.chain_hash_is(self.prev_hash, self.personal_digest, self.hash) {
            return Some("content does not match its hash");
        }
        None
    }

    fn link(&self, rule: &PruneRule) -> Link {
        Link {
            seq: self.seq,
            prev: hex_array(self.prev_hash),
            hash: hex_array(self.hash),
            problem: self.problem(rule),
        }
    }
}

/// A hash as stored: 64 hex digits (anything else cannot match one).
fn hex_array(s: &str) -> [u8; 64] {
    let mut a = [0u8; 64];
    if s.len() == 64 {
        a.copy_from_slice(s.as_bytes());
    }
    a
}

/// One checked event: what the in-order pass needs of it.
struct Link {
    seq: i64,
    prev: [u8; 64],
    hash: [u8; 64],
    problem: Option<&'static str>,
}

/// The in-order pass: contiguity, links between neighbours, checkpoints.
struct InOrder {
    expected: i64,
    prev: [u8; 64],
    checkpoints: Vec<crate::checkpoint::Checkpoint>,
    next_cp: usize,
    keys: Vec<Vec<u8>>,
    report: VerifyReport,
}

impl InOrder {
    /// False once something is wrong (recorded in the report).
    fn accept(&mut self, l: &Link) -> bool {
        let bad = |r: &mut VerifyReport, seq: i64, why: &str| {
            r.first_bad = Some((seq, why.to_owned()));
            false
        };
        if l.seq != self.expected {
            return bad(&mut self.report, self.expected, "event missing");
        }
        if l.prev != self.prev {
            return bad(
                &mut self.report,
                l.seq,
                "does not chain to the previous event",
            );
        }
        if let Some(why) = l.problem {
            return bad(&mut self.report, l.seq, why);
        }
        while let Some(cp) = self
            .checkpoints
            .get(self.next_cp)
            .filter(|cp| cp.seq <= l.seq)
        {
            if cp.seq != l.seq || cp.hash.as_bytes() != l.hash.as_slice() {
                let seq = cp.seq;
                return bad(
                    &mut self.report,
                    seq,
                    "event differs from its signed checkpoint",
                );
            }
            if !self.keys.is_empty() && !self.keys.iter().any(|k| cp.verify(k)) {
                let seq = cp.seq;
                return bad(&mut self.report, seq, "checkpoint signature invalid");
            }
            self.report.checkpoints += 1;
            self.next_cp += 1;
        }
        self.prev = l.hash;
        self.expected += 1;
        self.report.checked += 1;
        true
    }
}

/// Checks pages of a SQLite store on two connections at once, hashing the
/// borrowed columns of each row where they lie (no per-column allocation).
fn scan_sqlite(
    path: &str,
    to: i64,
    mut order: InOrder,
    rule: &PruneRule,
) -> Result<InOrder, AuditError> {
    let open = || {
        rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    };
    let err = |e: rusqlite::Error| AuditError::Database(sqlx::Error::Protocol(e.to_string()));
    let mut conns = [open().map_err(err)?, open().map_err(err)?];
    let mut next = order.expected;
    while next <= to {
        let ranges: Vec<(i64, i64)> = (0..2)
            .map(|k| {
                let a = next + k * PAGE;
                (a, (a + PAGE - 1).min(to))
            })
            .filter(|(a, _)| *a <= to)
            .collect();
        let pages: Vec<rusqlite::Result<Vec<Link>>> = std::thread::scope(|s| {
            let handles: Vec<_> = ranges
                .iter()
                .zip(conns.iter_mut())
                .map(|((a, b), c)| s.spawn(move || sqlite_links(c, *a, *b, rule)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(rusqlite::Error::InvalidQuery))
                })
                .collect()
        });
        for page in pages {
            for l in &page.map_err(err)? {
                if !order.accept(l) {
                    return Ok(order);
                }
            }
        }
        next = ranges.last().map(|r| r.1 + 1).unwrap_or(to + 1);
    }
    Ok(order)
}

fn sqlite_links(
    c: &rusqlite::Connection,
    from: i64,
    to: i64,
    rule: &PruneRule,
) -> rusqlite::Result<Vec<Link>> {
    let sql = format!(
        "SELECT {} FROM audit_events WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq",
        crate::event::COLUMNS
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let mut rows = stmt.query([from, to])?;
    let mut out = Vec::with_capacity((to - from + 1).clamp(0, PAGE) as usize);
    while let Some(r) = rows.next()? {
        let s = |i: usize| -> rusqlite::Result<&str> { r.get_ref(i)?.as_str().map_err(Into::into) };
        let o = |i: usize| -> rusqlite::Result<Option<&str>> {
            r.get_ref(i)?.as_str_or_null().map_err(Into::into)
        };
        let v = View {
            seq: r.get(0)?,
            ts: s(1)?,
            tenant: o(2)?,
            tenant_path: o(3)?,
            levels: [o(4)?, o(5)?, o(6)?],
            actor_subject: o(7)?,
            actor_tenant: o(8)?,
            actor_client: o(9)?,
            action: s(10)?,
            target: o(11)?,
            outcome: s(12)?,
            reason: o(13)?,
            correlation_id: o(14)?,
            source: o(15)?,
            details: s(16)?,
            personal_digest: s(17)?,
            pruned: o(18)?.is_some(),
            prev_hash: s(19)?,
            hash: s(20)?,
        };
        out.push(v.link(rule));
    }
    Ok(out)
}

/// Checks a page of rows on all cores.
fn check_rows(rows: &[StoredEvent], rule: &PruneRule) -> Vec<Link> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let chunk = rows.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = rows
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(|r| View::of(r).link(rule)).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The file of a `sqlite:` URL.
fn sqlite_path(url: &str) -> &str {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}

/// Events `from..=to`, at most one page, in order. The page is a closed
/// range of the primary key (not `LIMIT`), so every planner walks the index.
async fn pg_page(
    mut conn: PgConnection,
    from: i64,
    to: i64,
) -> Result<(PgConnection, Vec<StoredEvent>), AuditError> {
    let to = to.min(from.saturating_add(PAGE - 1));
    let sql = format!(
        "SELECT {} FROM audit_events WHERE seq >= $1 AND seq <= $2 ORDER BY seq",
        crate::event::COLUMNS
    );
    let rows = sqlx::query_as(&sql)
        .bind(from)
        .bind(to)
        .fetch_all(&mut conn)
        .await?;
    Ok((conn, rows))
}

/// PostgreSQL: the next page is fetched while the current one is checked
/// on all cores.
async fn scan_postgres(
    url: &str,
    to: i64,
    mut order: InOrder,
    rule: PruneRule,
) -> Result<InOrder, AuditError> {
    let rule = std::sync::Arc::new(rule);
    let conn = PgConnectOptions::from_str(url)?.connect().await?;
    let mut pending =
        (order.expected <= to).then(|| tokio::spawn(pg_page(conn, order.expected, to)));
    while let Some(job) = pending.take() {
        let (conn, rows) = job.await.map_err(|_| AuditError::WriterStopped)??;
        let Some(last) = rows.last().map(|r| r.seq) else {
            break;
        };
        let page_end = to
            .min(rows[0].seq.max(order.expected).saturating_add(PAGE - 1))
            .max(last);
        if page_end < to {
            pending = Some(tokio::spawn(pg_page(conn, page_end + 1, to)));
        }
        let rule = rule.clone();
        let links = tokio::task::spawn_blocking(move || check_rows(&rows, &rule))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        for l in &links {
            if !order.accept(l) {
                return Ok(order);
            }
        }
    }
    Ok(order)
}

/// The newest cutoff a recorded prune names (its event is checked with the
/// chain like any other).
async fn recorded_prune(pool: &AnyPool) -> Result<Option<String>, AuditError> {
    let records: Vec<String> =
        sqlx::query_scalar("SELECT details FROM audit_events WHERE action = 'audit_pruned'")
            .fetch_all(pool)
            .await?;
    Ok(records
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|d| d.get("before").and_then(|b| b.as_str()).map(str::to_owned))
        .max())
}

/// Verifies the chain over `from..=to` (all when `None`), without checking
/// checkpoint signatures; see [`verify_with_keys`].
pub async fn verify(
    pool: &AnyPool,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<VerifyReport, AuditError> {
    verify_with_keys(pool, from, to, &[], None).await
}

/// Verifies events `from..=to` (all when `None`). Detects modified, deleted,
/// inserted and reordered events, and a truncated tail (against the head and
/// against the signed checkpoints). Each checkpoint in the range must match
/// the event it names and carry a signature by one of `public_keys` (raw
/// Ed25519; when empty, signatures are not checked). A pruned event must
/// lie before the newest recorded prune's cutoff and, with
/// `retention_days`, be older than the retention.
pub async fn verify_with_keys(
    pool: &AnyPool,
    from: Option<i64>,
    to: Option<i64>,
    public_keys: &[Vec<u8>],
    retention_days: Option<u32>,
) -> Result<VerifyReport, AuditError> {
    let (head_seq, head_hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(pool)
            .await?;
    let from = from.unwrap_or(1).max(1);
    let to = to.unwrap_or(head_seq).min(head_seq);
    // A checkpoint beyond the head: events were cut off the end.
    let newest_cp: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints")
        .fetch_one(pool)
        .await?;
    let mut report = VerifyReport {
        newest_checkpoint: newest_cp,
        unanchored: head_seq - newest_cp.unwrap_or(0).min(head_seq),
        ..VerifyReport::default()
    };
    let rule = PruneRule {
        recorded_before: recorded_prune(pool).await?,
        retention_before: retention_days.and_then(crate::prune::retention_cutoff),
    };
    if let Some(cp) = newest_cp.filter(|cp| *cp > head_seq) {
        report.first_bad = Some((
            head_seq + 1,
            format!("chain truncated: a signed checkpoint covers seq {cp}"),
        ));
        return Ok(report);
    }
    let checkpoints = crate::checkpoint::list(pool, from, to).await?;

    // The hash the first checked event must chain to.
    let prev: String = if from == 1 {
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
    let mut order = InOrder {
        expected: from,
        prev: hex_array(&prev),
        checkpoints,
        next_cp: 0,
        keys: public_keys.to_vec(),
        report,
    };
    let url = pool.connect_options().database_url.to_string();
    if interkom_types::Backend::of(pool).is_postgres() {
        order = scan_postgres(&url, to, order, rule).await?;
    } else {
        let path = sqlite_path(&url).to_owned();
        order = tokio::task::spawn_blocking(move || scan_sqlite(&path, to, order, &rule))
            .await
            .map_err(|_| AuditError::WriterStopped)??;
    }
    if order.report.first_bad.is_none() && order.expected <= to {
        order.report.first_bad = Some((order.expected, "event missing".into()));
    }
    let mut report = order.report;
    if report.first_bad.is_some() {
        return Ok(report);
    }
    let prev = String::from_utf8_lossy(&order.prev).into_owned();
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
