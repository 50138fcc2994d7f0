//! Retention: erasing the personal fields of old events while the chain
//! stays verifiable (the chain covers their digest, which is kept).

use sqlx::AnyPool;

use crate::AuditError;

/// What an erased event's details read.
pub(crate) const ERASED_DETAILS: &str = "{}";

/// Erases actor subject, target, reason, source and details of every event
/// older than `days` days; returns how many were pruned.
pub async fn prune_older_than(pool: &AnyPool, days: u32) -> Result<u64, AuditError> {
    let now = time::OffsetDateTime::now_utc();
    let cutoff = now - time::Duration::days(i64::from(days));
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    let (Ok(cutoff), Ok(now)) = (cutoff.format(&fmt), now.format(&fmt)) else {
        return Ok(0);
    };
    let res = sqlx::query(
        "UPDATE audit_events SET actor_subject = NULL, target = NULL, reason = NULL, source = NULL, \
         details = $1, pruned_at = $2 WHERE ts < $3 AND pruned_at IS NULL",
    )
    .bind(ERASED_DETAILS)
    .bind(now)
    .bind(cutoff)
    .execute(pool)
    .await?;
    Ok(res.rows_affected())
}
