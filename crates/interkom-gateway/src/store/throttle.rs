//! The brute-force counters of the login form, shared by every node: per
//! key (a keyed hash of an account name or a source network) the failures
//! within the current window and the end of a lock. The rules that read
//! them live in `crate::throttle`.

use super::Store;

impl Store {
    /// Adds one to `key`'s count (a new window if the old one began more
    /// than `window_seconds` before `now`); the count and the lock's end.
    /// One statement, so attempts sent in parallel each take their own
    /// count.
    pub(crate) async fn count_attempt(
        &self,
        key: &str,
        now: i64,
        window_seconds: i64,
    ) -> Result<(i64, i64), sqlx::Error> {
        sqlx::query_as(
            "INSERT INTO login_throttle (key, failures, window_start, locked_until) VALUES ($1, 1, $2, 0) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN login_throttle.window_start < $3 THEN 1 ELSE login_throttle.failures + 1 END, \
               window_start = CASE WHEN login_throttle.window_start < $3 THEN $2 ELSE login_throttle.window_start END \
             RETURNING failures, locked_until",
        )
        .bind(key)
        .bind(now)
        .bind(now - window_seconds)
        .fetch_one(&self.pool)
        .await
    }

    /// [`Store::count_attempt`] for several keys in one statement (the
    /// account's and the source's: one commit per login, not two); the
    /// count and the lock's end of each, in the order given.
    pub(crate) async fn count_attempts(
        &self,
        keys: &[&str],
        now: i64,
        window_seconds: i64,
    ) -> Result<Vec<(i64, i64)>, sqlx::Error> {
        if keys.len() == 1 {
            return Ok(vec![
                self.count_attempt(keys[0], now, window_seconds).await?,
            ]);
        }
        // Rows in the order given, so two logins lock them in one order.
        let values: Vec<String> = (0..keys.len())
            .map(|i| format!("(${}, 1, $1, 0)", i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO login_throttle (key, failures, window_start, locked_until) VALUES {} \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN login_throttle.window_start < $2 THEN 1 ELSE login_throttle.failures + 1 END, \
               window_start = CASE WHEN login_throttle.window_start < $2 THEN $1 ELSE login_throttle.window_start END \
             RETURNING key, failures, locked_until",
            values.join(", ")
        );
        let mut q = sqlx::query_as::<_, (String, i64, i64)>(&sql)
            .bind(now)
            .bind(now - window_seconds);
        for k in keys {
            q = q.bind(*k);
        }
        let rows = q.fetch_all(&self.pool).await?;
        Ok(keys
            .iter()
            .map(|k| {
                rows.iter()
                    .find(|(key, _, _)| key == k)
                    .map(|(_, f, l)| (*f, *l))
                    .unwrap_or((1, 0))
            })
            .collect())
    }

    /// `key`'s count within the window and the lock's end, without
    /// counting.
    pub(crate) async fn peek_attempts(
        &self,
        key: &str,
        now: i64,
        window_seconds: i64,
    ) -> Result<(i64, i64), sqlx::Error> {
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT failures, window_start, locked_until FROM login_throttle WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some((f, start, lock)) if start >= now - window_seconds => (f, lock),
            Some((_, _, lock)) => (0, lock),
            None => (0, 0),
        })
    }

    /// A successful login: the account's counts go (unless locked; the
    /// name typed, and for a directory the person), the source gets one
    /// back; one commit.
    pub(crate) async fn attempt_passed(
        &self,
        account_keys: &[&str],
        source_key: Option<&str>,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for key in account_keys {
            sqlx::query("DELETE FROM login_throttle WHERE key = $1 AND locked_until <= $2")
                .bind(*key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(key) = source_key {
            sqlx::query(
                "UPDATE login_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0",
            )
            .bind(key)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Takes one back from `key`'s count (never below zero).
    pub(crate) async fn give_back_attempt(&self, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE login_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0",
        )
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Locks `key` until `until` unless it is locked at `now` already;
    /// true if this call set the lock.
    pub(crate) async fn lock(&self, key: &str, until: i64, now: i64) -> Result<bool, sqlx::Error> {
        let moved = sqlx::query(
            "UPDATE login_throttle SET locked_until = $2 WHERE key = $1 AND locked_until <= $3",
        )
        .bind(key)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(moved > 0)
    }

    /// Drops counters whose window (`window_seconds`) and lock have passed
    /// by `now`; how many.
    pub(crate) async fn purge_counters(
        &self,
        now: i64,
        window_seconds: i64,
    ) -> Result<u64, sqlx::Error> {
        Ok(
            sqlx::query("DELETE FROM login_throttle WHERE window_start < $1 AND locked_until < $2")
                .bind(now - window_seconds)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
