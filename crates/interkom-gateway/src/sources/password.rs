//! The local password: argon2id hashes in the directory, brute-force
//! protection (`throttle`) by the name as typed and by source network,
//! shared by every node, and one message for every refusal.

use axum::http::StatusCode;
use axum::response::Response;
use futures_util::future::BoxFuture;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_types::Loa;

use super::{Authentication, IdentitySource, SourceAsk};
use crate::i18n::LangTexts;
use crate::login::pages::{self, Chooser};
use crate::login::state::{Checked, Login, LoginRequest};
use crate::web::Meta;
use crate::{throttle, Gateway, GatewayError};

/// How `tried` records the local password.
pub(crate) const METHOD: &str = "password";

/// The local password as identity source.
pub(crate) struct LocalPassword {
    /// The upstream chosen last in this browser (offered first on the form).
    pub(crate) last_idp: Option<String>,
}

impl IdentitySource for LocalPassword {
    fn method(&self, _asked: Option<Loa>) -> String {
        METHOD.to_owned()
    }

    fn max_loa(&self) -> Option<Loa> {
        Some(Loa::Low)
    }

    /// The login form, with the upstreams to choose from; a `login_hint`
    /// that is not an address in an upstream's domain fills the name.
    fn begin<'a>(
        &'a self,
        gw: &'a Gateway,
        ask: &'a SourceAsk<'a>,
    ) -> BoxFuture<'a, Result<Response, GatewayError>> {
        Box::pin(async move {
            let idps = gw.dir.upstreams().await?;
            let hint = ask
                .at
                .req
                .login_hint
                .as_deref()
                .filter(|h| super::oidc::hint_domain(h).is_none());
            Ok(pages::login_form(
                gw,
                ask.at,
                StatusCode::OK,
                hint,
                None,
                &Chooser::new(&idps, self.last_idp.as_deref(), None),
            ))
        })
    }
}

impl LocalPassword {
    /// Checks a password typed into the form of login request `at`: the
    /// login it starts, or the form again with the one message for every
    /// refusal.
    pub(crate) async fn verify(
        &self,
        gw: &Gateway,
        meta: &Meta,
        at: &LoginRequest,
        username: &str,
        password: String,
    ) -> Result<Checked, GatewayError> {
        let now = gw.clock.now();
        let user = if username.is_empty() || username.len() > 128 {
            None
        } else {
            gw.dir.find_user(username).await?
        };
        let user = user.filter(|u| u.is_enabled());
        // Brute-force protection (see `throttle`): counted by the name as typed
        // (whether it exists or not) and by source network, shared by every
        // node, before the password is checked.
        let account_key = format!(
            "a:{}",
            gw.master
                .keyed_hash(&format!("login|{}", username.to_lowercase()))
        );
        let source_key = meta.ip.map(|ip| {
            format!(
                "s:{}",
                gw.master
                    .keyed_hash(&format!("login-source|{}", network(ip)))
            )
        });
        let cfg = &gw.cfg.brute_force;
        let attempt =
            throttle::begin(&gw.store, cfg, &account_key, source_key.as_deref(), now).await?;
        // The hash is checked even when locked: the answer takes as long.
        let ok = gw.dir.verify_password(user.as_ref(), password).await;
        let user = match (ok && !attempt.locked, user) {
            (true, Some(u)) => {
                throttle::succeeded(&gw.store, &account_key, source_key.as_deref(), now).await?;
                u
            }
            (_, user) => {
                let locks = throttle::failed(
                    &gw.store,
                    cfg,
                    &attempt,
                    ok && user.is_some(),
                    &account_key,
                    source_key.as_deref(),
                    now,
                )
                .await?;
                {
                    {
                        for (scope, until) in locks {
                            let ev = AuditEvent::new(Action::LoginLocked, Outcome::Denied)
                                .client(&at.client.id)
                                .reason(if scope == "account" {
                                    "too_many_failures_for_account"
                                } else {
                                    "too_many_failures_from_source"
                                })
                                .correlation(meta.request_id.clone())
                                .source(meta.source.clone())
                                .details(serde_json::json!({
                                    "scope": scope,
                                    "username": username,
                                    "locked_until": until,
                                }));
                            // The account's tenant reads it; a name nobody
                            // has is the Kreis's security staff's.
                            let ev = match &user {
                                Some(u) => gw.about(ev, u),
                                None => ev,
                            };
                            gw.audit.append(ev).await?;
                        }
                    }
                }
                let delay = attempt.delay(cfg);
                let mut ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
                    .client(&at.client.id)
                    .reason(if attempt.locked {
                        "locked"
                    } else {
                        "invalid_credentials"
                    })
                    .correlation(meta.request_id.clone())
                    .source(meta.source.clone())
                    .details(serde_json::json!({ "username": username }));
                if let Some(u) = &user {
                    ev = gw.about(ev, u);
                }
                gw.audit.append(ev).await?;
                tokio::time::sleep(delay).await;
                let idps = gw.dir.upstreams().await?;
                return Ok(Checked::Page(pages::login_form(
                    gw,
                    at,
                    StatusCode::UNAUTHORIZED,
                    Some(username),
                    Some(at.lang.texts().login_failed),
                    &Chooser::new(&idps, self.last_idp.as_deref(), None),
                )));
            }
        };
        let auth = Authentication {
            user_id: user.id.clone(),
            loa: Loa::Low,
            amr: vec!["pwd".to_owned()],
            auth_time: now,
            upstream: None,
            method: METHOD.to_owned(),
            upstream_token: None,
        };
        Ok(Checked::Passed(Login::authenticated(auth, None)))
    }
}

/// The network a source is counted by: one /24 or one /64, so that one
/// host cannot dodge the count by switching addresses within its network.
fn network(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}
