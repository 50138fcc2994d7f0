//! Brute-force protection for the login form. Attempts are counted per
//! account name and per source network (/24, /64) within a window, before
//! the password is checked; a successful login takes its count back. From
//! `delay_after` failures on every refusal is answered later (doubling up
//! to `max_delay_ms`), and at `lock_after` (per account) or
//! `source_lock_after` (per source) the login is refused for `lock_seconds`,
//! even with the right password.
//!
//! No enumeration: names that do not exist are counted and locked the same
//! way, every refusal shows the same message, and the password hash is
//! checked on every attempt, locked or not. The counters live in the
//! database (`crate::store`), so every node sees the same ones.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::Store;
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
            source_lock_after: 1000,
            lock_seconds: 15 * 60,
        }
    }
}

impl BruteForceConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.window_seconds < 1 || self.lock_seconds < 1 {
            return Err("brute_force: window_seconds and lock_seconds must be at least 1".into());
        }
        if self.lock_after < 1 || self.source_lock_after < 1 {
            return Err("brute_force: lock_after and source_lock_after must be at least 1".into());
        }
        if self.delay_after < 0 {
            return Err("brute_force: delay_after must not be negative".into());
        }
        // Under the 30 s request timeout, so a held-back refusal still
        // arrives as the login page.
        if self.max_delay_ms > 20_000 {
            return Err("brute_force: max_delay_ms must be at most 20000".into());
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

/// One login attempt, counted before the password is checked: attempts
/// sent in parallel each take their own count, so none slips past a limit.
pub(crate) struct Attempt {
    account_failures: i64,
    source_failures: i64,
    /// Refused whatever the password: a lock is set or the count is over.
    pub(crate) locked: bool,
}

pub(crate) async fn begin(
    store: &Store,
    cfg: &BruteForceConfig,
    account_key: &str,
    source_key: Option<&str>,
    now: i64,
) -> Result<Attempt, GatewayError> {
    let keys: Vec<&str> = std::iter::once(account_key).chain(source_key).collect();
    let counts = store.count_attempts(&keys, now, cfg.window_seconds).await?;
    let (account_failures, account_lock) = counts.first().copied().unwrap_or((1, 0));
    let mut locked = account_lock > now || account_failures > cfg.lock_after;
    let mut source_failures = 0;
    if let Some((n, lock)) = counts.get(1).copied() {
        source_failures = n;
        locked |= lock > now || n > cfg.source_lock_after;
    }
    Ok(Attempt {
        account_failures,
        source_failures,
        locked,
    })
}

impl Attempt {
    /// How long to hold back a refusal: by the account's count, or the
    /// source's scaled to the account's limit. A locked attempt keeps
    /// counting, so it waits as long as the failures before it.
    pub(crate) fn delay(&self, cfg: &BruteForceConfig) -> Duration {
        // Every locked answer alike: how long it takes tells nothing about
        // the guesses made meanwhile.
        if self.locked {
            return cfg.delay(cfg.lock_after + 1);
        }
        let scaled =
            self.source_failures.saturating_mul(cfg.lock_after) / cfg.source_lock_after.max(1);
        cfg.delay(self.account_failures.max(scaled))
    }
}

/// The right password, not refused: the account's count goes, the source
/// gets its count back (a busy office must not lock itself out by logging in).
pub(crate) async fn succeeded(
    store: &Store,
    account_keys: &[&str],
    source_key: Option<&str>,
    now: i64,
) -> Result<(), GatewayError> {
    store.attempt_passed(account_keys, source_key, now).await?;
    Ok(())
}

/// A refused attempt. With a wrong password: locks what reached its limit,
/// returning the locks this attempt set (scope and end; only the attempt
/// that sets a lock reports it, so each is audited once). With the right
/// password, refused only for the lock or the count: its count is given
/// back and nothing is locked, so parallel logins of one account do not
/// lock it (they are refused while more than `lock_after` are in flight).
pub(crate) async fn failed(
    store: &Store,
    cfg: &BruteForceConfig,
    attempt: &Attempt,
    password_ok: bool,
    account_key: &str,
    source_key: Option<&str>,
    now: i64,
) -> Result<Vec<(&'static str, i64)>, GatewayError> {
    if password_ok {
        for key in std::iter::once(account_key).chain(source_key) {
            store.give_back_attempt(key).await?;
        }
        return Ok(Vec::new());
    }
    let until = now + cfg.lock_seconds;
    let mut set = Vec::new();
    let due = [
        (attempt.account_failures >= cfg.lock_after).then_some((account_key, "account")),
        source_key
            .filter(|_| attempt.source_failures >= cfg.source_lock_after)
            .map(|k| (k, "source")),
    ];
    for (key, scope) in due.into_iter().flatten() {
        if store.lock(key, until, now).await? {
            set.push((scope, until));
        }
    }
    Ok(set)
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
