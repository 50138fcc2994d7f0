//! Filtered reads of the audit trail, newest first, with a stable cursor
//! (the sequence number of the last event seen: events appended meanwhile
//! have larger numbers and never shift a page).

use sqlx::AnyPool;

use crate::{AuditError, StoredEvent};

/// A filter; every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub actor_subject: Option<String>,
    pub actor_client: Option<String>,
    pub outcome: Option<String>,
    pub correlation_id: Option<String>,
    /// Only events in a tenant subtree: the subtree root's stored path
    /// (`/kreis/samtgemeinde/`); answered by the level column of its depth.
    pub tenant_path_prefix: Option<String>,
    /// With a subtree: also the events that belong to no tenant (refused
    /// requests nobody could be attributed for, locks of unknown names),
    /// for the security staff of a Kreis.
    pub with_untenanted: bool,
    /// Only events at or after this time (RFC 3339, UTC, as stored).
    pub from_ts: Option<String>,
    /// Only events before this time.
    pub to_ts: Option<String>,
    /// Cursor: only events with a smaller sequence number.
    pub before_seq: Option<i64>,
    /// Page size, 1..=1000.
    pub limit: i64,
}

/// Sequence numbers per block of the secondary indexes (migration 1004).
const BLOCK: i64 = 2048;

/// Most blocks one query looks at; a key that is rare grows its window
/// 1, 2, 4, … blocks up to this.
const MAX_BLOCKS_PER_QUERY: i64 = 1024;

/// One page of events, newest first.
///
/// Every index leads with the event's block (`seq / 2048`), so a filter is
/// answered block by block from the newest: a frequent key fills the page
/// from the first block, a rare one is sought in ever wider windows of
/// blocks, a few index seeks each.
pub async fn query(pool: &AnyPool, q: &AuditQuery) -> Result<Vec<StoredEvent>, AuditError> {
    if !(q.with_untenanted && q.tenant_path_prefix.is_some()) {
        return query_where(pool, q, false).await;
    }
    // The subtree's page and the untenanted page, merged newest first.
    let mut page = query_where(pool, q, false).await?;
    let loose = AuditQuery {
        tenant_path_prefix: None,
        ..q.clone()
    };
    page.extend(query_where(pool, &loose, true).await?);
    page.sort_by_key(|e| std::cmp::Reverse(e.seq));
    page.truncate(q.limit.clamp(1, 1000) as usize);
    Ok(page)
}

/// One page of the filter; `untenanted`: only events without a tenant.
async fn query_where(
    pool: &AnyPool,
    q: &AuditQuery,
    untenanted: bool,
) -> Result<Vec<StoredEvent>, AuditError> {
    let limit = q.limit.clamp(1, 1000);
    let (lo, hi) = seq_range(pool, q).await?;
    if lo >= hi {
        return Ok(Vec::new());
    }
    // SQLite seeks block by block (block-led indexes); PostgreSQL, whose
    // B-tree inserts cost no page copy per commit, keeps plain indexes
    // (`pg_indexes`) and answers in one query.
    let plain = interkom_types::Backend::of(pool).is_postgres();
    let Some(mut keys) = index_keys(q, plain) else {
        return Ok(Vec::new());
    };
    let indexed = !keys.is_empty();
    let driver = keys.first().map(|(c, _)| *c);
    if let Some(v) = &q.outcome {
        keys.push(("outcome", v.clone()));
    }
    let (mut filter, binds) = conditions(keys, driver, q);
    if untenanted {
        filter.push_str(" AND tenant_path IS NULL");
    }
    if !indexed || plain {
        // Nothing to seek by, or PostgreSQL: one query, newest first.
        let sql = format!(
            "SELECT {} FROM audit_events WHERE seq >= {lo} AND seq < {hi}{filter} \
             ORDER BY seq DESC LIMIT {limit}",
            crate::event::COLUMNS
        );
        return fetch(pool, &sql, &binds).await;
    }
    by_blocks(pool, (lo, hi), limit, &filter, &binds).await
}

/// The range of sequence numbers `[lo, hi)` the query's cursor and time
/// bounds leave.
async fn seq_range(pool: &AnyPool, q: &AuditQuery) -> Result<(i64, i64), AuditError> {
    let head: i64 = sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1")
        .fetch_one(pool)
        .await?;
    let mut hi = head + 1;
    if let Some(b) = q.before_seq {
        hi = hi.min(b);
    }
    if let Some(t) = &q.to_ts {
        hi = hi.min(first_at_or_after(pool, t, head).await?);
    }
    let mut lo = 1;
    if let Some(t) = &q.from_ts {
        lo = lo.max(first_at_or_after(pool, t, head).await?);
    }
    Ok((lo, hi))
}

/// The indexed filters, the most selective first: it drives (its index is
/// sought block by block). `None`: the tenant path names no subtree, so
/// nothing matches.
fn index_keys(q: &AuditQuery, plain: bool) -> Option<Vec<(&'static str, String)>> {
    let mut keys: Vec<(&str, String)> = Vec::new();
    if let Some(v) = &q.correlation_id {
        keys.push(("correlation_id", v.clone()));
    }
    if let Some(v) = &q.actor_subject {
        keys.push(("actor_subject", v.clone()));
    }
    if let Some(v) = &q.actor_client {
        keys.push(("actor_client", v.clone()));
    }
    if let Some(prefix) = &q.tenant_path_prefix {
        let levels = crate::event::split_path(Some(prefix));
        // Without a Kreis the path names no subtree.
        levels[0].as_ref()?;
        let columns = ["path_kreis", "path_samtgemeinde", "path_gemeinde"];
        if plain {
            // Tenant ids are unique: the deepest level names the subtree.
            if let Some((column, id)) = columns
                .into_iter()
                .zip(levels)
                .filter_map(|(c, id)| id.map(|id| (c, id)))
                .next_back()
            {
                keys.push((column, id));
            }
        } else {
            for (column, id) in columns.into_iter().zip(levels) {
                if let Some(id) = id {
                    keys.push((column, id));
                }
            }
        }
    }
    if let Some(v) = &q.action {
        keys.push(("action", v.clone()));
    }
    Some(keys)
}

/// The `WHERE` conditions after the sequence range, and their binds. The
/// filters that do not drive are checked on the rows found; `|| ''` keeps
/// the planner from picking their (less selective) index instead.
fn conditions(
    keys: Vec<(&str, String)>,
    driver: Option<&str>,
    q: &AuditQuery,
) -> (String, Vec<String>) {
    let mut conds: Vec<String> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    for (column, v) in keys {
        binds.push(v);
        let n = binds.len();
        let drives =
            Some(column) == driver || (driver == Some("path_kreis") && column.starts_with("path_"));
        conds.push(if drives {
            format!("{column} = ${n}")
        } else {
            format!("{column} || '' = ${n}")
        });
    }
    // The time bounds again, on the rows: a safeguard should the order of
    // time along the chain ever be broken (which `verify` reports).
    for (op, t) in [(">=", &q.from_ts), ("<", &q.to_ts)] {
        if let Some(t) = t {
            binds.push(t.clone());
            conds.push(format!("ts {op} ${}", binds.len()));
        }
    }
    let mut filter = String::new();
    for c in &conds {
        filter.push_str(" AND ");
        filter.push_str(c);
    }
    (filter, binds)
}

/// Up to `limit` events of `[lo, hi)` that pass `filter`, sought from the
/// newest block down in windows of 1, 2, 4, … blocks.
async fn by_blocks(
    pool: &AnyPool,
    (lo, hi): (i64, i64),
    limit: i64,
    filter: &str,
    binds: &[String],
) -> Result<Vec<StoredEvent>, AuditError> {
    let mut out: Vec<StoredEvent> = Vec::new();
    let bottom = lo / BLOCK;
    let mut top = (hi - 1) / BLOCK;
    let mut width = 1;
    while top >= bottom && (out.len() as i64) < limit {
        let first = (top - width + 1).max(bottom);
        let blocks: Vec<String> = (first..=top).map(|b| b.to_string()).collect();
        // The inner query reads only the index; the outer one the rows.
        let sql = format!(
            "SELECT {cols} FROM audit_events WHERE seq IN (\
               SELECT seq FROM audit_events WHERE (seq / {BLOCK}) IN ({blocks}){filter} \
               AND seq >= {lo} AND seq < {hi} ORDER BY seq DESC LIMIT {rest}) \
             ORDER BY seq DESC",
            cols = crate::event::COLUMNS,
            blocks = blocks.join(","),
            rest = limit - out.len() as i64,
        );
        out.extend(fetch(pool, &sql, binds).await?);
        top = first - 1;
        width = (width * 2).min(MAX_BLOCKS_PER_QUERY);
    }
    Ok(out)
}

async fn fetch(
    pool: &AnyPool,
    sql: &str,
    binds: &[String],
) -> Result<Vec<StoredEvent>, AuditError> {
    let mut query = sqlx::query_as::<_, StoredEvent>(sql);
    for b in binds {
        query = query.bind(b);
    }
    Ok(query.fetch_all(pool).await?)
}

/// The first sequence number whose time is `t` or later (`head + 1` if
/// none): time never decreases along the chain, so a binary search on the
/// primary key finds it. A missing row (the chain was tampered with, which
/// `verify` reports) counts as its next present one.
async fn first_at_or_after(pool: &AnyPool, t: &str, head: i64) -> Result<i64, AuditError> {
    let (mut lo, mut hi) = (1_i64, head + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, ts FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT 1")
                .bind(mid)
                .fetch_optional(pool)
                .await?;
        match row {
            Some((_, ts)) if ts.as_str() >= t => hi = mid,
            Some((seq, _)) => lo = seq + 1,
            None => hi = mid,
        }
    }
    Ok(lo)
}

/// Parses a filter timestamp (RFC 3339, any offset) into the stored form.
pub fn normalize_ts(s: &str) -> Option<String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC).format(&fmt).ok()
}
