//! The outbox of back-channel logout: one row per client to tell about an
//! ended session, written in the transaction that ends it; any node claims
//! a due attempt (a lease), sends it and records how it went.

use sqlx::AnyConnection;

use super::Store;

/// A delivery whose next attempt is due.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct Delivery {
    pub(crate) id: String,
    pub(crate) client_id: String,
    pub(crate) sub: String,
    pub(crate) sid: String,
    /// Attempts made so far.
    pub(crate) attempts: i64,
}

impl Store {
    /// Queues the logout of session `sid` of `sub` for every client that got
    /// tokens in it and wants to hear, on the caller's transaction: one
    /// statement, one row per client (the id makes a second queueing of the
    /// same session by another node a no-op).
    pub(crate) async fn queue_logout(
        &self,
        conn: &mut AnyConnection,
        sub: &str,
        sid: &str,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO logout_deliveries (id, client_id, uri, sub, sid, attempts, next_at, created_at) \
             SELECT $1 || ' ' || c.id, c.id, c.backchannel_logout_uri, $2, $1, 0, $3, $3 FROM clients c \
             WHERE c.backchannel_logout_uri IS NOT NULL \
               AND c.id IN (SELECT client_id FROM token_families WHERE sid = $1) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(sid)
        .bind(sub)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Up to 64 undelivered deliveries with fewer than `max_attempts`
    /// attempts whose next attempt is due at `now`, the longest due first.
    pub(crate) async fn due_deliveries(
        &self,
        max_attempts: i64,
        now: i64,
    ) -> Result<Vec<Delivery>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, client_id, sub, sid, attempts FROM logout_deliveries \
             WHERE delivered_at IS NULL AND attempts < $1 AND next_at <= $2 ORDER BY next_at LIMIT 64",
        )
        .bind(max_attempts)
        .bind(now)
        .fetch_all(&self.pool)
        .await
    }

    /// Claims the next attempt at delivery `d` for this node until
    /// `lease_until` (the attempt counted, the next one put off); false if
    /// another node claimed it first or it was delivered.
    pub(crate) async fn claim_delivery(
        &self,
        d: &Delivery,
        lease_until: i64,
    ) -> Result<bool, sqlx::Error> {
        let claimed = sqlx::query(
            "UPDATE logout_deliveries SET attempts = $1, next_at = $2 \
             WHERE id = $3 AND attempts = $4 AND delivered_at IS NULL",
        )
        .bind(d.attempts + 1)
        .bind(lease_until)
        .bind(&d.id)
        .bind(d.attempts)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(claimed > 0)
    }

    /// Records attempt `attempt` at delivery `id` as delivered; false if
    /// the attempt is no longer this node's.
    pub(crate) async fn delivered(
        &self,
        id: &str,
        attempt: i64,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE logout_deliveries SET delivered_at = $1, last_error = NULL \
             WHERE id = $2 AND attempts = $3 AND delivered_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(attempt)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    /// Records attempt `attempt` at delivery `id` as failed with `error`:
    /// the next one at `next_at`, the attempts counted as `attempts` (the
    /// maximum, to give up); false if the attempt is no longer this node's.
    pub(crate) async fn delivery_failed(
        &self,
        id: &str,
        attempt: i64,
        error: &str,
        next_at: i64,
        attempts: i64,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE logout_deliveries SET next_at = $1, last_error = $2, attempts = $3 \
             WHERE id = $4 AND attempts = $5 AND delivered_at IS NULL",
        )
        .bind(next_at)
        .bind(error)
        .bind(attempts)
        .bind(id)
        .bind(attempt)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }
}
