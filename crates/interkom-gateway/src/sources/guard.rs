//! Brute-force protection of every password a login form takes (the local
//! password and a directory's): counted by the name as typed and by source
//! network, shared by every node, checked before the password is — so for
//! a directory, before interkom binds there, and guessing at interkom can
//! never trip the directory's own lockout. Every refusal is audited alike.

use std::net::IpAddr;

use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::User;
use serde_json::Value;

use crate::login::state::LoginRequest;
use crate::throttle::{self, Attempt};
use crate::web::Meta;
use crate::{Gateway, GatewayError};

/// One password attempt, begun.
pub(crate) struct Guard {
    account_key: String,
    source_key: Option<String>,
    attempt: Attempt,
    now: i64,
}

impl Guard {
    /// Counts an attempt at `account` (the name as typed, with its realm)
    /// from this request's network.
    pub(crate) async fn begin(
        gw: &Gateway,
        meta: &Meta,
        account: &str,
    ) -> Result<Guard, GatewayError> {
        let now = gw.clock.now();
        let account_key = format!(
            "a:{}",
            gw.master
                .keyed_hash(&format!("login|{}", account.to_lowercase()))
        );
        let source_key = meta.ip.map(|ip| {
            format!(
                "s:{}",
                gw.master
                    .keyed_hash(&format!("login-source|{}", network(ip)))
            )
        });
        let attempt = throttle::begin(
            &gw.store,
            &gw.cfg.brute_force,
            &account_key,
            source_key.as_deref(),
            now,
        )
        .await?;
        Ok(Guard {
            account_key,
            source_key,
            attempt,
            now,
        })
    }

    /// Refused whatever the password (a lock is set or the count is over).
    pub(crate) fn locked(&self) -> bool {
        self.attempt.locked
    }

    /// The password was right: the counts start again.
    pub(crate) async fn passed(&self, gw: &Gateway) -> Result<(), GatewayError> {
        self.passed_with(gw, None).await
    }

    /// The password was right: the counts start again, the person's of a
    /// directory (`also`) with them, in one commit.
    pub(crate) async fn passed_with(
        &self,
        gw: &Gateway,
        also: Option<&KeyCount>,
    ) -> Result<(), GatewayError> {
        let keys: Vec<&str> = std::iter::once(self.account_key.as_str())
            .chain(also.map(|k| k.key.as_str()))
            .collect();
        throttle::succeeded(&gw.store, &keys, self.source_key.as_deref(), self.now).await
    }

    /// The attempt failed: counted (a right password while locked counts
    /// as such), audited (`login_locked` when a lock begins, then
    /// `login_failed` with `reason`), and answered only after the delay.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn refused(
        &self,
        gw: &Gateway,
        meta: &Meta,
        at: &LoginRequest,
        user: Option<&User>,
        right_password: bool,
        reason: &str,
        details: Value,
    ) -> Result<(), GatewayError> {
        let cfg = &gw.cfg.brute_force;
        let locks = throttle::failed(
            &gw.store,
            cfg,
            &self.attempt,
            right_password,
            &self.account_key,
            self.source_key.as_deref(),
            self.now,
        )
        .await?;
        let about = |ev: AuditEvent| match user {
            // The account's tenant reads it; a name nobody has is the
            // Kreis's security staff's.
            Some(u) => gw.about(ev, u),
            None => ev,
        };
        for (scope, until) in locks {
            let mut d = details.clone();
            if let Value::Object(m) = &mut d {
                m.insert("scope".into(), scope.into());
                m.insert("locked_until".into(), until.into());
            }
            let ev = AuditEvent::new(Action::LoginLocked, Outcome::Denied)
                .client(&at.client.id)
                .reason(if scope == "account" {
                    "too_many_failures_for_account"
                } else {
                    "too_many_failures_from_source"
                })
                .correlation(meta.request_id.clone())
                .source(meta.source.clone())
                .details(d);
            gw.audit.append(about(ev)).await?;
        }
        let ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
            .client(&at.client.id)
            .reason(if self.attempt.locked {
                "locked"
            } else {
                reason
            })
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(details);
        gw.audit.append(about(ev)).await?;
        tokio::time::sleep(self.attempt.delay(cfg)).await;
        Ok(())
    }
}

/// The wrong passwords for one key alone (a directory's person, whatever
/// name reached them), within the brute-force window. Read before the
/// password is checked, counted only when it was wrong: a person's own
/// logins, even many at once, never lock them.
pub(crate) struct KeyCount {
    key: String,
    failures: i64,
    locked_until: i64,
    now: i64,
}

impl KeyCount {
    /// Reads the count of `raw` (hashed with the key-encryption key).
    pub(crate) async fn read(gw: &Gateway, raw: &str) -> Result<KeyCount, GatewayError> {
        let now = gw.clock.now();
        let key = format!("e:{}", gw.master.keyed_hash(&format!("login-entry|{raw}")));
        let (failures, locked_until) = gw
            .store
            .peek_attempts(&key, now, gw.cfg.brute_force.window_seconds)
            .await?;
        Ok(KeyCount {
            key,
            failures,
            locked_until,
            now,
        })
    }

    /// `max` wrong passwords within the window already, or a lock.
    pub(crate) fn over(&self, max: i64) -> bool {
        self.failures >= max || self.locked_until > self.now
    }

    /// A wrong password (or one the directory refused): counted.
    pub(crate) async fn failed(&self, gw: &Gateway) -> Result<(), GatewayError> {
        gw.store
            .count_attempt(&self.key, self.now, gw.cfg.brute_force.window_seconds)
            .await?;
        Ok(())
    }
}

/// The network a source is counted by: one /24 or one /64, so that one
/// host cannot dodge the count by switching addresses within its network.
fn network(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}
