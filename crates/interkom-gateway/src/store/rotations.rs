//! Group commit of refresh-token rotations.
//!
//! A rotation (the old token used up, its successor stored) must be one
//! transaction, and a busy relying party rotates hundreds of times a
//! second. One commit each would make the database's log flush the limit,
//! and on SQLite concurrent write transactions wait on each other's lock.
//! So rotations go to one task per node that writes whatever has queued up
//! while the previous commit ran, in one transaction, and answers each
//! caller only after that commit: a batch of one under light load, larger
//! batches under heavy load, the same guarantee either way. The audit
//! writer does the same for events.
//!
//! Every rotation keeps its own outcome inside the batch: the `UPDATE …
//! WHERE used_at IS NULL` of a reused token changes no row, so that caller
//! hears "reused" and its successor is not stored, while the others of the
//! batch go through. Should the batch's transaction fail as a whole, each
//! rotation is tried again in a transaction of its own, so one bad row
//! cannot fail its neighbours.

use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::tokens::NewRefreshToken;
use super::Store;

/// The most rotations in one transaction.
const MAX_BATCH: usize = 256;
/// Rotations waiting for the writer; beyond, callers wait for room.
const QUEUE: usize = 4096;

/// A refresh token used up and the one that replaces it.
#[derive(Debug, Clone)]
pub(crate) struct Rotation {
    /// The keyed hash of the token presented.
    pub(crate) used: String,
    pub(crate) at: i64,
    pub(crate) next: NewRefreshToken,
}

pub(super) struct Job {
    rotation: Rotation,
    done: oneshot::Sender<Result<bool, sqlx::Error>>,
}

/// The sending half, started with the first rotation (so a store made
/// outside a runtime, by the CLI, never needs one).
pub(super) type Rotations = std::sync::Arc<std::sync::OnceLock<mpsc::Sender<Job>>>;

impl Store {
    /// Uses up the refresh token `r.used` and stores `r.next`, committed
    /// together; false when the token was used already (a reuse), and then
    /// nothing is stored.
    pub(crate) async fn rotate_refresh_token(&self, r: Rotation) -> Result<bool, sqlx::Error> {
        let queue = self.rotations.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write_rotations(self.pool.clone(), rx));
            tx
        });
        let (done, answer) = oneshot::channel();
        let job = Job { rotation: r, done };
        queue.send(job).await.map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

/// The writer: one transaction per batch, until every store is dropped.
async fn write_rotations(pool: AnyPool, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("interkom_rotation_batch_size").record(batch.len() as f64);
        let rotations: Vec<&Rotation> = batch.iter().map(|j| &j.rotation).collect();
        match commit_together(&pool, &rotations).await {
            Ok(outcomes) => {
                for (job, used_up) in batch.drain(..).zip(outcomes) {
                    let _ = job.done.send(Ok(used_up));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "rotation batch failed; one by one");
                for job in batch.drain(..) {
                    let outcome = commit_together(&pool, &[&job.rotation]).await;
                    let _ = job
                        .done
                        .send(outcome.map(|o| o.first().copied().unwrap_or(false)));
                }
            }
        }
    }
}

/// One transaction for `rotations`; per rotation, whether it happened. Set
/// based, so a batch costs four statements however large it is: one
/// `UPDATE … RETURNING` uses up every token still unused, one multi-row
/// `INSERT` per chunk stores the successors of those that were.
async fn commit_together(
    pool: &AnyPool,
    rotations: &[&Rotation],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let used_up = use_up(&mut tx, rotations).await?;
    // A token claimed twice in one batch goes to its first claimant only.
    let mut seen = std::collections::HashSet::new();
    let outcomes: Vec<bool> = rotations
        .iter()
        .map(|r| used_up.contains(r.used.as_str()) && seen.insert(r.used.as_str()))
        .collect();
    let winners: Vec<&NewRefreshToken> = rotations
        .iter()
        .zip(&outcomes)
        .filter(|(_, won)| **won)
        .map(|(r, _)| &r.next)
        .collect();
    for chunk in winners.chunks(INSERT_ROWS) {
        super::tokens::insert_refresh_tokens(&mut tx, chunk).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Rows per multi-row `INSERT` (ten parameters each).
const INSERT_ROWS: usize = 32;

/// Marks every token of `rotations` used that was not; returns their
/// hashes. One statement per distinct time (a batch spans a second or two).
async fn use_up(
    conn: &mut AnyConnection,
    rotations: &[&Rotation],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let mut times: Vec<i64> = rotations.iter().map(|r| r.at).collect();
    times.sort_unstable();
    times.dedup();
    let mut used_up = std::collections::HashSet::new();
    for at in times {
        let hashes: Vec<&str> = rotations
            .iter()
            .filter(|r| r.at == at)
            .map(|r| r.used.as_str())
            .collect();
        let mut sql = String::from(
            "UPDATE refresh_tokens SET used_at = $1 WHERE used_at IS NULL AND token_hash IN (",
        );
        for i in 0..hashes.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", i + 2));
        }
        sql.push_str(") RETURNING token_hash");
        let mut q = sqlx::query_scalar::<_, String>(&sql).bind(at);
        for h in &hashes {
            q = q.bind(*h);
        }
        used_up.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(used_up)
}
