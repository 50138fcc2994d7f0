//! Filtered reads of the audit trail, newest first, with a stable cursor
//! (the sequence number of the last event seen).

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
    /// Only events in this tenant or below it (by tenant path prefix).
    pub tenant_subtree: Option<String>,
    /// Cursor: only events with a smaller sequence number.
    pub before_seq: Option<i64>,
    pub limit: i64,
}

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
    if let Some(v) = &q.tenant_subtree {
        // Tenant paths are "/kreis/sg/gemeinde/"; a subtree is a prefix.
        add(
            &mut sql,
            "tenant_path LIKE",
            &format!("%/{}/%", v.replace(['%', '_'], "")),
        );
    }
    let mut query_sql = sql;
    if let Some(seq) = q.before_seq {
        query_sql.push_str(&format!(" AND seq < {seq}"));
    }
    query_sql.push_str(&format!(
        " ORDER BY seq DESC LIMIT {}",
        q.limit.clamp(1, 1000)
    ));
    let mut query = sqlx::query_as::<_, StoredEvent>(&query_sql);
    for b in &binds {
        query = query.bind(b);
    }
    Ok(query.fetch_all(pool).await?)
}
