//! Retention: erasing the personal fields of old events while the chain
//! stays verifiable (the chain covers their digest, which is kept).
//!
//! A prune is itself on the record: before anything is erased, an
//! `audit_pruned` event naming the cutoff is appended to the chain (and
//! checkpointed like every security-relevant event). `verify` accepts a
//! pruned event only before the newest such cutoff and, given the
//! retention, only once it is older than that.

use serde_json::json;

use crate::{Action, AuditError, AuditEvent, AuditLog, Outcome};

/// What an erased event's details read.
pub(crate) const ERASED_DETAILS: &str = "{}";

/// The timestamp format of the chain (sortable as text).
pub(crate) fn ts(t: time::OffsetDateTime) -> Option<String> {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&fmt).ok()
}

/// The oldest timestamp a retention of `days` keeps whole.
pub fn retention_cutoff(days: u32) -> Option<String> {
    ts(time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days)))
}

impl AuditLog {
    /// Erases actor subject, target, reason, source and details of every
    /// event older than `days` days, after recording the prune in the
    /// chain; returns how many were pruned.
    pub async fn prune_older_than(&self, days: u32) -> Result<u64, AuditError> {
        let now = time::OffsetDateTime::now_utc();
        let (Some(cutoff), Some(now)) = (retention_cutoff(days), ts(now)) else {
            return Ok(0);
        };
        let due: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_events WHERE ts < $1 AND pruned_at IS NULL",
        )
        .bind(&cutoff)
        .fetch_one(self.pool())
        .await?;
        if due == 0 {
            return Ok(0);
        }
        self.append(
            AuditEvent::new(Action::AuditPruned, Outcome::Success).details(json!({
                "before": cutoff,
                "days": days,
                "events": due,
            })),
        )
        .await?;
        let res = sqlx::query(
            "UPDATE audit_events SET actor_subject = NULL, target = NULL, reason = NULL, source = NULL, \
             details = $1, pruned_at = $2 WHERE ts < $3 AND pruned_at IS NULL",
        )
        .bind(ERASED_DETAILS)
        .bind(now)
        .bind(cutoff)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected())
    }
}
