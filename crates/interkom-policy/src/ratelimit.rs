//! A token bucket per caller: how often one client may ask the PDP. A
//! client a Gemeinde administrator registers must not be able to fill the
//! audit trail or take the PDP's time from every other Fachverfahren.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Requests per second and burst per key; `per_second == 0` switches the
/// limit off.
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimit {
    pub fn new(per_second: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(per_second).max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request of `key`'s allowance; `Err(seconds)` when there is
    /// none left (the `Retry-After` to answer).
    pub fn take(&self, key: &str) -> Result<(), u64> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        let refilled = now.saturating_duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refilled).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *tokens) / self.per_second;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate_per_key() {
        let limit = RateLimit::new(10, 20);
        let t0 = Instant::now();
        for _ in 0..20 {
            assert_eq!(limit.take_at("a", t0), Ok(()));
        }
        assert_eq!(limit.take_at("a", t0), Err(1));
        // Another client has its own allowance.
        assert_eq!(limit.take_at("b", t0), Ok(()));
        // A tenth of a second brings one request back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(limit.take_at("a", t1), Ok(()));
        assert!(limit.take_at("a", t1).is_err());
    }

    #[test]
    fn zero_switches_the_limit_off() {
        let limit = RateLimit::new(0, 0);
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| limit.take_at("a", t0).is_ok()));
    }
}
