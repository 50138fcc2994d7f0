//! Brute-force protection for the login form. Failures are counted per
//! account name and per source within a window; from `delay_after` failures
//! on every further failure is answered later (doubling up to `max_delay_ms`),
//! and at `lock_after` (per account) or `source_lock_after` (per source) the
//! login is refused for `lock_seconds`, even with the right password.
//!
//! No enumeration: names that do not exist are counted and locked the same
//! way, every refusal shows the same message, and the password hash is
//! checked on every attempt, locked or not. The counters live in the
//! database, so every node sees the same ones.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::AnyPool;

use crate::GatewayError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BruteForceConfig {
    /// Seconds over which failures are counted.
    pub window_seconds: i64,
    /// Failures answered at once; later ones wait.
    pub delay_after: i64,
    /// The first delay; it doubles with every further failure.
    pub delay_ms: u64,
    pub max_delay_ms: u64,
    /// Failures of one account name that lock it.
    pub lock_after: i64,
    /// Failures from one source (pseudonymised address) that lock it.
    pub source_lock_after: i64,
    pub lock_seconds: i64,
}

impl Default for BruteForceConfig {
    fn default() -> Self {
        BruteForceConfig {
            window_seconds: 15 * 60,
            delay_after: 3,
            delay_ms: 500,
            max_delay_ms: 8_000,
            lock_after: 10,
            source_lock_after: 100,
            lock_seconds: 15 * 60,
        }
    }
}

impl BruteForceConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.window_seconds < 1 || self.lock_seconds < 1 {
            return Err("brute_force: window_seconds and lock_seconds must be at least 1".into());
        }
        if self.lock_after < 1 || self.source_lock_after < 1 || self.delay_after < 0 {
            return Err("brute_force: lock_after and source_lock_after must be at least 1".into());
        }
        Ok(())
    }

    /// How long to hold back the answer to the `failures`-th failure.
    pub(crate) fn delay(&self, failures: i64) -> Duration {
        let over = failures - self.delay_after;
        if over <= 0 {
            return Duration::ZERO;
        }
        let ms = self
            .delay_ms
            .saturating_mul(1u64 << (over - 1).min(20))
            .min(self.max_delay_ms);
        Duration::from_millis(ms)
    }
}

/// What one counted failure did.
pub(crate) struct Failure {
    pub(crate) failures: i64,
    /// The key was locked by this failure, until then.
    pub(crate) locked_until: Option<i64>,
}

/// Whether any of the keys is locked now.
pub(crate) async fn locked(pool: &AnyPool, keys: &[&str], now: i64) -> Result<bool, GatewayError> {
    for key in keys {
        let until: Option<i64> =
            sqlx::query_scalar("SELECT locked_until FROM login_throttle WHERE key = $1")
                .bind(*key)
                .fetch_optional(pool)
                .await?;
        if until.is_some_and(|u| u > now) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Counts a failure for `key`; locks it when it reaches `limit`. One
/// statement each, so nodes counting at once never lose a failure.
pub(crate) async fn fail(
    pool: &AnyPool,
    cfg: &BruteForceConfig,
    key: &str,
    limit: i64,
    now: i64,
) -> Result<Failure, GatewayError> {
    let (failures, locked_until): (i64, i64) = sqlx::query_as(
        "INSERT INTO login_throttle (key, failures, window_start, locked_until) VALUES ($1, 1, $2, 0) \
         ON CONFLICT (key) DO UPDATE SET \
           failures = CASE WHEN login_throttle.window_start < $3 THEN 1 ELSE login_throttle.failures + 1 END, \
           window_start = CASE WHEN login_throttle.window_start < $3 THEN $2 ELSE login_throttle.window_start END \
         RETURNING failures, locked_until",
    )
    .bind(key)
    .bind(now)
    .bind(now - cfg.window_seconds)
    .fetch_one(pool)
    .await?;
    if failures < limit || locked_until > now {
        return Ok(Failure {
            failures,
            locked_until: None,
        });
    }
    // Only the failure that moves the lock forward reports it (audited once).
    let until = now + cfg.lock_seconds;
    let moved = sqlx::query(
        "UPDATE login_throttle SET locked_until = $2, failures = 0, window_start = $3 \
         WHERE key = $1 AND locked_until <= $3",
    )
    .bind(key)
    .bind(until)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(Failure {
        failures,
        locked_until: (moved > 0).then_some(until),
    })
}

/// A successful login clears the account's count (not the source's).
pub(crate) async fn succeed(pool: &AnyPool, key: &str) -> Result<(), GatewayError> {
    sqlx::query("DELETE FROM login_throttle WHERE key = $1")
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Drops counters whose window and lock have passed.
pub(crate) async fn purge(
    pool: &AnyPool,
    cfg: &BruteForceConfig,
    now: i64,
) -> Result<u64, GatewayError> {
    Ok(
        sqlx::query("DELETE FROM login_throttle WHERE window_start < $1 AND locked_until < $2")
            .bind(now - cfg.window_seconds)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap() {
        let c = BruteForceConfig::default();
        let ms: Vec<u128> = (1..=10).map(|n| c.delay(n).as_millis()).collect();
        assert_eq!(ms, [0, 0, 0, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(c.delay(i64::MAX).as_millis(), 8000);
    }
}
