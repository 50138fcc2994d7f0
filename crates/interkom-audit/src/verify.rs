//! Recomputes the hash chain and reports the first event that does not fit.

use sqlx::AnyPool;

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

const PAGE: i64 = 5000;

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
    let mut expected = from;
    while expected <= to {
        let sql = format!(
            "SELECT {} FROM audit_events WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT {PAGE}",
            crate::event::COLUMNS
        );
        let rows: Vec<StoredEvent> = sqlx::query_as(&sql)
            .bind(expected)
            .bind(to)
            .fetch_all(pool)
            .await?;
        if rows.is_empty() {
            report.first_bad = Some((expected, "event missing".into()));
            return Ok(report);
        }
        for row in &rows {
            if row.seq != expected {
                report.first_bad = Some((expected, "event missing".into()));
                return Ok(report);
            }
            if row.prev_hash != prev {
                report.first_bad = Some((row.seq, "does not chain to the previous event".into()));
                return Ok(report);
            }
            if crate::event::split_path(row.tenant_path.as_deref())
                != [
                    row.path_kreis.clone(),
                    row.path_samtgemeinde.clone(),
                    row.path_gemeinde.clone(),
                ]
            {
                report.first_bad =
                    Some((row.seq, "level columns do not match the tenant path".into()));
                return Ok(report);
            }
            let canonical = Canonical::from(row);
            if row.pruned_at.is_none() {
                if canonical.personal_digest()? != row.personal_digest {
                    report.first_bad =
                        Some((row.seq, "personal fields do not match their digest".into()));
                    return Ok(report);
                }
            } else if !crate::prune::is_erased(row) {
                // A pruned event only ever has its personal fields erased;
                // anything else there was written afterwards.
                report.first_bad = Some((row.seq, "pruned event carries personal data".into()));
                return Ok(report);
            }
            let hash = canonical.chain_hash(&prev, &row.personal_digest)?;
            if hash != row.hash {
                report.first_bad = Some((row.seq, "content does not match its hash".into()));
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
            prev = hash;
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
