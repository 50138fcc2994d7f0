//! Enforcement at login: before a code or token is issued for a client that
//! is a registered resource, the policy engine decides whether the user may
//! use it (action `login`; for a protected application the action of the
//! request that led to the login) with the authentication at hand. The
//! checks of forward authentication use the same verdict and audit.

use interkom_policy::{AuthContext, Decision, Effect, Loa, ResourceRef, Snapshot, SubjectRef};
use serde_json::{json, Value};

use interkom_directory::applications::LOGIN_CLIENT_PREFIX;
use interkom_directory::service_providers::LOGIN_CLIENT_PREFIX as SAML_PREFIX;

use crate::web::Meta;
use crate::{Gateway, GatewayError};

/// The action a login to a Fachverfahren is decided for.
pub(crate) const LOGIN: &str = "login";

/// What the gateway does with a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Issue the code or token.
    Allow,
    /// `access_denied` to the client.
    Deny,
    /// Allowed once the user authenticates as `Need` says (see `stepup`).
    StepUp(Need),
}

/// What a step-up must achieve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Need {
    /// The lowest level that suffices.
    pub(crate) loa: Loa,
    pub(crate) second_factor: bool,
    /// The authentication is too old: a fresh one is due.
    pub(crate) fresh: bool,
}

/// Decides whether `user_id` may do `action` with what `client_id`'s
/// logins are governed by — its resource, or for a protected
/// application's login client the application's resource — and audits the
/// decision if the policy says so.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn check(
    gw: &Gateway,
    meta: Option<&Meta>,
    client_id: &str,
    action: &str,
    user_id: &str,
    acr: &str,
    amr: &[String],
    auth_time: i64,
) -> Result<(Verdict, Vec<String>), GatewayError> {
    let snap = gw.policy.snapshot();
    if let Some(l) = snap.leistung_for_client(client_id) {
        return leistung(gw, l, user_id, acr).await;
    }
    let resource = match snap.resource_for_client(client_id) {
        Some(r) => r.id.clone(),
        None => match client_id.strip_prefix(LOGIN_CLIENT_PREFIX) {
            Some(app) => match gw.dir.applications().await?.get(app) {
                Some(a) => a.cfg.resource.clone(),
                None => {
                    return Ok((
                        Verdict::Deny,
                        vec!["the application is no longer registered".into()],
                    ))
                }
            },
            None => match client_id.strip_prefix(SAML_PREFIX) {
                Some(sp) => match gw
                    .dir
                    .service_provider(sp)
                    .await?
                    .and_then(|s| s.cfg.resource)
                {
                    Some(r) => r,
                    None => return unbound(gw, &snap, client_id, user_id).await,
                },
                None => return unbound(gw, &snap, client_id, user_id).await,
            },
        },
    };
    let amr: Vec<&str> = amr.iter().map(String::as_str).collect();
    let ctx = AuthContext::from_claims(Some(acr), &amr, Some(auth_time), gw.clock.now());
    let d = snap.decide(
        SubjectRef::User(user_id),
        action,
        ResourceRef::id(&resource),
        &ctx,
    );
    let verdict = verdict_of(&d, acr);
    metrics::counter!("interkom_decisions_total", "via" => "login", "result" => verdict.as_str())
        .increment(1);
    if d.audit {
        let at = Decided {
            via: "login",
            client_id,
            user_id,
            resource: &resource,
            action,
        };
        audit(gw, meta, &at, &snap, &d).await?;
    }
    Ok((verdict, reason_messages(&snap, &d)))
}

/// A Leistung admits the accounts of the populations it serves, at the
/// level it requires (staff accounts never: they log in to Fachverfahren).
async fn leistung(
    gw: &Gateway,
    l: &interkom_policy::LeistungSpec,
    user_id: &str,
    acr: &str,
) -> Result<(Verdict, Vec<String>), GatewayError> {
    let population = gw
        .dir
        .user(user_id)
        .await?
        .and_then(|u| interkom_policy::Population::parse(&u.population));
    let (verdict, reasons) = match population {
        Some(p) if l.populations.contains(&p) => {
            let have = Loa::from_acr(acr).unwrap_or(Loa::Low);
            if have >= l.loa {
                (Verdict::Allow, Vec::new())
            } else {
                (
                    Verdict::StepUp(Need {
                        loa: l.loa,
                        second_factor: false,
                        fresh: false,
                    }),
                    vec![format!("the Leistung requires {}", l.loa.acr())],
                )
            }
        }
        _ => (
            Verdict::Deny,
            vec!["the Leistung serves no account of this kind".to_owned()],
        ),
    };
    metrics::counter!("interkom_decisions_total", "via" => "leistung", "result" => verdict.as_str())
        .increment(1);
    Ok((verdict, reasons))
}

/// What the gateway does with the policy's decision for a login at `acr`.
pub(crate) fn verdict_of(d: &Decision, acr: &str) -> Verdict {
    match d.effect {
        Effect::Allow => Verdict::Allow,
        Effect::Deny => Verdict::Deny,
        Effect::StepUp { required_acr, .. } => {
            let have = Loa::from_acr(acr).unwrap_or(Loa::Low);
            Verdict::StepUp(Need {
                loa: required_acr.map_or(have, |r| r.max(have)),
                second_factor: d
                    .reasons
                    .iter()
                    .any(|r| matches!(r, interkom_policy::Reason::SecondFactorMissing)),
                fresh: d
                    .reasons
                    .iter()
                    .any(|r| matches!(r, interkom_policy::Reason::AuthTooOld { .. })),
            })
        }
    }
}

impl Verdict {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::StepUp(_) => "step_up",
        }
    }
}

/// A client bound to no resource admits the accounts of its own tenant's
/// subtree only: a client any administrator may register never sees the
/// rest of the county. (Bound to a resource, the policy decides.)
async fn unbound(
    gw: &Gateway,
    snap: &Snapshot,
    client_id: &str,
    user_id: &str,
) -> Result<(Verdict, Vec<String>), GatewayError> {
    let tenant = gw.client(client_id).await?.map(|c| c.tenant.to_string());
    let home = snap.subject_home(user_id);
    let inside = matches!((home, &tenant), (Some(h), Some(t)) if snap.within(h, t));
    if inside {
        return Ok((Verdict::Allow, Vec::new()));
    }
    metrics::counter!("interkom_decisions_total", "via" => "login", "result" => "deny")
        .increment(1);
    Ok((
        Verdict::Deny,
        vec!["the account lies outside the subtree of the client's tenant".into()],
    ))
}

fn reason_messages(snap: &Snapshot, d: &Decision) -> Vec<String> {
    d.reasons
        .iter()
        .filter_map(|r| {
            snap.describe(r)
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// What a decision was about, for its audit event.
pub(crate) struct Decided<'a> {
    /// `login`, `forward_auth`.
    pub(crate) via: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) action: &'a str,
}

/// Appends the decision's event (the policy said it is audited).
pub(crate) async fn audit(
    gw: &Gateway,
    meta: Option<&Meta>,
    at: &Decided<'_>,
    snap: &Snapshot,
    d: &Decision,
) -> Result<(), GatewayError> {
    let details = json!({ "via": at.via, "action": at.action, "resource": at.resource });
    let Some(mut ev) = snap.decision_event(d, &ResourceRef::id(at.resource), details) else {
        return Ok(());
    };
    ev = ev.client(at.client_id);
    if let Some(m) = meta {
        ev = ev
            .correlation(m.request_id.clone())
            .source(m.source.clone());
    }
    let home = gw.dir.user(at.user_id).await?.map(|u| u.tenant);
    gw.audit
        .append(ev.subject(at.user_id, home.map(String::from)))
        .await?;
    Ok(())
}
