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
    /// Only events at or after this time (RFC 3339, UTC, as stored).
    pub from_ts: Option<String>,
    /// Only events before this time.
    pub to_ts: Option<String>,
    /// Cursor: only events with a smaller sequence number.
    pub before_seq: Option<i64>,
    /// Page size, 1..=1000.
    pub limit: i64,
}

/// One page of events, newest first.
pub async fn query(pool: &AnyPool, q: &AuditQuery) -> Result<Vec<StoredEvent>, AuditError> {
    let mut sql = format!(
        "SELECT {} FROM audit_events WHERE 1 = 1",
        crate::event::COLUMNS
    );
    let mut binds: Vec<String> = Vec::new();
    let mut add = |sql: &mut String, cond: &str, v: &str| {
        binds.push(v.to_owned());
        sql.push_str(&format!(" AND {cond} ${}", binds.len()));
    };
    if let Some(v) = &q.action {
        add(&mut sql, "action =", v);
    }
    if let Some(v) = &q.actor_subject {
        add(&mut sql, "actor_subject =", v);
    }
    if let Some(v) = &q.actor_client {
        add(&mut sql, "actor_client =", v);
    }
    if let Some(v) = &q.outcome {
        add(&mut sql, "outcome =", v);
    }
    if let Some(v) = &q.correlation_id {
        add(&mut sql, "correlation_id =", v);
    }
    if let Some(prefix) = &q.tenant_path_prefix {
        let levels = crate::event::split_path(Some(prefix));
        let (column, id) = match levels {
            [_, _, Some(g)] => ("path_gemeinde =", g),
            [_, Some(sg), None] => ("path_samtgemeinde =", sg),
            [Some(k), None, None] => ("path_kreis =", k),
            _ => return Ok(Vec::new()),
        };
        add(&mut sql, column, &id);
    }
    // Time never decreases along the chain, so a time range is a range of
    // sequence numbers: its bounds come from the index on `ts`, and the
    // scan then walks the primary key (an index on `ts` alone cannot give
    // "newest first" without sorting the whole range).
    if let Some(v) = &q.from_ts {
        let lower: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM audit_events WHERE ts >= $1 ORDER BY ts, seq LIMIT 1",
        )
        .bind(v)
        .fetch_optional(pool)
        .await?;
        match lower {
            Some(l) => sql.push_str(&format!(" AND seq >= {l}")),
            None => return Ok(Vec::new()),
        }
        add(&mut sql, "ts >=", v);
    }
    if let Some(v) = &q.to_ts {
        let upper: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM audit_events WHERE ts < $1 ORDER BY ts DESC, seq DESC LIMIT 1",
        )
        .bind(v)
        .fetch_optional(pool)
        .await?;
        match upper {
            Some(u) => sql.push_str(&format!(" AND seq <= {u}")),
            None => return Ok(Vec::new()),
        }
        add(&mut sql, "ts <", v);
    }
    if let Some(seq) = q.before_seq {
        sql.push_str(&format!(" AND seq < {seq}"));
    }
    sql.push_str(&format!(
        " ORDER BY seq DESC LIMIT {}",
        q.limit.clamp(1, 1000)
    ));
    let mut query = sqlx::query_as::<_, StoredEvent>(&sql);
    for b in &binds {
        query = query.bind(b);
    }
    Ok(query.fetch_all(pool).await?)
}

/// Parses a filter timestamp (RFC 3339, any offset) into the stored form.
pub fn normalize_ts(s: &str) -> Option<String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC).format(&fmt).ok()
}
