//! Step-up: after every authentication within a login — password, second
//! factor, upstream — the policy is asked again what the client needs, and
//! the login goes on with the method that reaches it: the local second
//! factor, an upstream trusted for the level (asked with `acr_values`), or
//! `unmet_authentication_requirements` when no configured method can.
//! The token then carries the `acr`, `amr` and `auth_time` the login
//! really achieved.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_policy::loa::SECOND_FACTOR_AMR;
use interkom_policy::Loa;
use serde::{Deserialize, Serialize};

use crate::access::{self, Need, Verdict};
use crate::authorize::{self, AuthRequest, LoginOutcome, Posted};
use crate::clients::Client;
use crate::i18n::Lang;
use crate::upstream::{self, Upstream};
use crate::web::{self, Meta};
use crate::{mfa, throttle, Gateway, GatewayError};

/// What a login has established so far (kept with the login request
/// between steps).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) user_id: String,
    pub(crate) acr: String,
    pub(crate) amr: Vec<String>,
    pub(crate) auth_time: i64,
    /// The single sign-on session being stepped up (it keeps its `sid`
    /// and gets a new handle).
    pub(crate) sid: Option<String>,
    /// The upstream the authentication came from.
    pub(crate) upstream: Option<String>,
    /// Methods used in this login: each at most once, so no loop.
    pub(crate) tried: Vec<String>,
    #[serde(default)]
    pub(crate) otp_failures: u32,
    /// The second factors offered on the current page: "totp", "passkey".
    #[serde(default)]
    pub(crate) offer: Vec<String>,
    /// A passkey ceremony begun for this login (webauthn-rs state).
    #[serde(default)]
    pub(crate) passkey_state: Option<String>,
    /// The upstream's ID token, sealed (the hint for logging out there).
    #[serde(default)]
    pub(crate) upstream_token: Option<String>,
}

/// Wrong second-factor codes per login request before it is void.
const MAX_OTP_FAILURES: u32 = 5;

/// What comes next.
pub(crate) enum Step {
    Issue,
    Deny,
    /// A fresh password login (only the authentication's age fell short).
    Password,
    /// A local second factor: the methods that reach the level.
    SecondFactor(Vec<String>),
    Upstream {
        idp: Arc<Upstream>,
        acr_values: Vec<String>,
        /// The level asked for (each upstream is asked once per level).
        asked: Loa,
        fresh: bool,
    },
    Unmet,
}

/// Whether the page of this login offers `method` now: a local factor of a
/// local login, offered by the plan and not used yet. The endpoints check
/// it too, so a login the plan sent to an upstream cannot take a local
/// factor instead.
pub(crate) fn offered(p: &Pending, method: &str) -> bool {
    p.upstream.is_none()
        && p.offer.iter().any(|o| o == method)
        && !p.tried.iter().any(|t| t == method)
}

/// How `tried` records a login at an upstream: per level asked (`None`:
/// chosen by the user, nothing asked).
pub(crate) fn upstream_key(id: &str, asked: Option<Loa>) -> String {
    format!("upstream:{id}:{}", asked.map_or("any", Loa::acr))
}

fn has_second_factor(amr: &[String]) -> bool {
    amr.iter().any(|m| SECOND_FACTOR_AMR.contains(&m.as_str()))
}

/// Decides the next step for what `p` established.
pub(crate) async fn plan(
    gw: &Gateway,
    meta: Option<&Meta>,
    req: &AuthRequest,
    p: &Pending,
) -> Result<Step, GatewayError> {
    let (verdict, _) = access::check(
        gw,
        meta,
        &req.client_id,
        &p.user_id,
        &p.acr,
        &p.amr,
        p.auth_time,
    )
    .await?;
    let have = Loa::from_acr(&p.acr).unwrap_or(Loa::Low);
    let mut need = match verdict {
        Verdict::Deny => return Ok(Step::Deny),
        Verdict::Allow => Need {
            loa: have,
            second_factor: false,
            fresh: false,
        },
        Verdict::StepUp(n) => n,
    };
    // `acr_values` the client asked for count as required.
    if let Some(r) = req.min_acr.and_then(|r| Loa::ALL.get(r).copied()) {
        need.loa = need.loa.max(r);
    }
    if need.second_factor {
        need.loa = need.loa.max(Loa::Substantial);
    }
    let tried = |m: &str| p.tried.iter().any(|t| t == m);
    let level_ok = need.loa <= have && (!need.second_factor || has_second_factor(&p.amr));
    if level_ok && !need.fresh {
        return Ok(Step::Issue);
    }
    // Too old: the same kind of login again, fresh.
    if need.fresh {
        if let Some(id) = &p.upstream {
            if let (false, Some(idp)) = (
                tried(&upstream_key(id, Some(have))),
                upstream::upstream(gw, id).await?,
            ) {
                return Ok(Step::Upstream {
                    acr_values: idp.acr_values_for(have),
                    idp,
                    asked: have,
                    fresh: true,
                });
            }
        } else if !tried("password") {
            return Ok(Step::Password);
        }
        if level_ok {
            return Ok(Step::Unmet);
        }
    }
    // A local second factor: TOTP reaches `substantial`, a passkey what
    // its kind is configured to reach.
    // Only for a login with the local password: staff who come through
    // their Kommune's IdP step up there, so a low-trust IdP cannot climb
    // by a factor enrolled here.
    let local = p.upstream.is_none();
    let mut offer = Vec::new();
    if local
        && need.loa <= Loa::Substantial
        && !has_second_factor(&p.amr)
        && !tried("totp")
        && mfa::has_totp(gw, &p.user_id).await?
    {
        offer.push("totp".to_owned());
    }
    if local
        && !tried("passkey")
        && crate::passkey::best_level(gw, &p.user_id)
            .await?
            .is_some_and(|l| l >= need.loa)
    {
        offer.push("passkey".to_owned());
    }
    if !offer.is_empty() {
        return Ok(Step::SecondFactor(offer));
    }
    // An upstream of this account trusted for the level; the one the
    // login came from first.
    let mut idps = upstream::linked(gw, &p.user_id).await?;
    idps.sort_by_key(|u| Some(&u.cfg.id) != p.upstream.as_ref());
    for idp in idps {
        if tried(&upstream_key(&idp.cfg.id, Some(need.loa)))
            || idp.max_loa().is_none_or(|m| m < need.loa)
        {
            continue;
        }
        return Ok(Step::Upstream {
            acr_values: idp.acr_values_for(need.loa),
            idp,
            asked: need.loa,
            fresh: need.fresh,
        });
    }
    Ok(Step::Unmet)
}

/// Goes on with a login after an authentication: issues, asks for the
/// next factor, or ends it with the client's error.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn advance(
    gw: &Gateway,
    meta: &Meta,
    lang: Lang,
    lr: &str,
    browser: &str,
    req: &AuthRequest,
    client: &Client,
    p: Pending,
) -> Result<Response, GatewayError> {
    match plan(gw, Some(meta), req, &p).await? {
        Step::Issue => {
            authorize::finish_login(gw, meta, lr, req, client, &p, LoginOutcome::Issue).await
        }
        Step::Deny => {
            authorize::finish_login(gw, meta, lr, req, client, &p, LoginOutcome::Deny).await
        }
        // A password was just entered: asking again would change nothing.
        Step::Password | Step::Unmet => {
            authorize::finish_login(gw, meta, lr, req, client, &p, LoginOutcome::Unmet).await
        }
        Step::SecondFactor(offer) => {
            let mut p = p;
            p.offer = offer;
            save(gw, lr, &p).await?;
            second_factor_page(gw, lang, StatusCode::OK, client, lr, browser, &p, None).await
        }
        Step::Upstream {
            idp,
            acr_values,
            asked,
            fresh,
        } => {
            let mut p = p;
            p.offer.clear();
            save(gw, lr, &p).await?;
            go_upstream(
                gw,
                meta,
                lang,
                lr,
                browser,
                req,
                client,
                &idp,
                &acr_values,
                Some(asked),
                fresh,
            )
            .await
        }
    }
}

/// Sends the browser to an upstream, or shows why that failed.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn go_upstream(
    gw: &Gateway,
    meta: &Meta,
    lang: Lang,
    lr: &str,
    browser: &str,
    req: &AuthRequest,
    client: &Client,
    idp: &Upstream,
    acr_values: &[String],
    asked: Option<Loa>,
    fresh: bool,
) -> Result<Response, GatewayError> {
    let hint = req
        .login_hint
        .as_deref()
        .filter(|h| upstream::hint_domain(h).is_some());
    // The client's own demands travel on: `prompt=login` as a fresh login
    // there, `max_age` (else the session's lifetime, so that the upstream
    // must state `auth_time`).
    let ask = upstream::Ask {
        acr_values,
        asked,
        login_hint: hint,
        fresh: fresh || req.prompt_login,
        max_age: req.max_age.unwrap_or(gw.cfg.session_ttl),
    };
    match upstream::begin(gw, idp, lr, browser, &ask).await {
        Ok(url) => {
            let mut res = web::see_other(&url);
            res.headers_mut().append(
                axum::http::header::SET_COOKIE,
                web::set_cookie(gw, authorize::IDP_COOKIE, &idp.cfg.id, 365 * 86_400),
            );
            Ok(res)
        }
        Err(upstream::Failure::Internal(e)) => Err(e),
        Err(f) => {
            upstream::audit_failure(gw, meta, idp, Some(&client.id), &f).await?;
            Ok(upstream::failure_page(gw, lang, idp, &f))
        }
    }
}

pub(crate) async fn save(gw: &Gateway, lr: &str, p: &Pending) -> Result<(), GatewayError> {
    sqlx::query("UPDATE login_requests SET pending = $1 WHERE id = $2")
        .bind(serde_json::to_string(p)?)
        .bind(lr)
        .execute(&gw.pool)
        .await?;
    Ok(())
}

/// The page asking for a second factor: the methods `p` offers.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn second_factor_page(
    gw: &Gateway,
    lang: Lang,
    status: StatusCode,
    client: &Client,
    lr: &str,
    browser: &str,
    p: &Pending,
    error: Option<&str>,
) -> Result<Response, GatewayError> {
    let offers = |m: &str| offered(p, m);
    Ok(web::page(
        gw,
        status,
        "otp.html",
        minijinja::context! {
            lang => lang.code(),
            base => gw.cfg.base_path(),
            t => minijinja::Value::from_serialize(lang.texts()),
            client_name => &client.name,
            login_request => lr,
            csrf_token => authorize::csrf_token(gw, browser, lr),
            error => error,
            totp => offers("totp"),
            passkey => offers("passkey"),
        },
    ))
}

#[derive(Deserialize)]
struct OtpForm {
    code: Option<String>,
}

/// `POST /login/otp`: the second factor of a login in progress.
pub(crate) async fn otp(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Posted {
        form,
        lr,
        browser,
        req,
        pending,
        client,
        lang,
    } = match authorize::posted::<OtpForm>(&gw, &meta, &headers, &body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(mut p) = pending.filter(|p| offered(p, "totp")) else {
        return authorize::out_of_step(&gw, lang);
    };
    match check_code(
        &gw,
        &meta,
        lang,
        &lr,
        &browser,
        &req,
        &client,
        &mut p,
        form.code.as_deref().unwrap_or(""),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => authorize::internal(&gw, lang, e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn check_code(
    gw: &Gateway,
    meta: &Meta,
    lang: Lang,
    lr: &str,
    browser: &str,
    req: &AuthRequest,
    client: &Client,
    p: &mut Pending,
    code: &str,
) -> Result<Response, GatewayError> {
    // Counted per account like passwords: six digits must not be guessed.
    let key = format!("o:{}", gw.master.keyed_hash(&format!("otp|{}", p.user_id)));
    let cfg = &gw.cfg.brute_force;
    let now = gw.clock.now();
    let attempt = throttle::begin(&gw.pool, cfg, &key, None, now).await?;
    let verified = if attempt.locked || code.len() > 64 {
        None
    } else {
        mfa::verify(gw, &p.user_id, code).await?
    };
    let user = crate::accounts::user_by_id(&gw.pool, &p.user_id).await?;
    let Some(kind) = verified else {
        let locks = throttle::failed(&gw.pool, cfg, &attempt, false, &key, None, now).await?;
        p.otp_failures += 1;
        let mut ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
            .client(&client.id)
            .reason(if attempt.locked {
                "locked"
            } else {
                "invalid_second_factor"
            })
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(serde_json::json!({ "method": "totp", "failures": p.otp_failures }));
        if let Some(u) = &user {
            ev = gw.about(ev, u);
        }
        gw.audit.append(ev).await?;
        for (_, until) in locks {
            let ev = AuditEvent::new(Action::LoginLocked, Outcome::Denied)
                .client(&client.id)
                .reason("too_many_second_factor_failures")
                .correlation(meta.request_id.clone())
                .source(meta.source.clone())
                .details(serde_json::json!({ "scope": "second_factor", "locked_until": until }));
            gw.audit
                .append(ev.subject(&p.user_id, user.as_ref().map(|u| u.tenant.clone())))
                .await?;
        }
        tokio::time::sleep(attempt.delay(cfg)).await;
        if p.otp_failures >= MAX_OTP_FAILURES {
            sqlx::query("DELETE FROM login_requests WHERE id = $1")
                .bind(lr)
                .execute(&gw.pool)
                .await?;
            return Ok(web::error_page(
                gw,
                lang,
                StatusCode::UNAUTHORIZED,
                lang.texts().expired,
                None,
            ));
        }
        save(gw, lr, p).await?;
        return second_factor_page(
            gw,
            lang,
            StatusCode::UNAUTHORIZED,
            client,
            lr,
            browser,
            p,
            Some(lang.texts().code_wrong),
        )
        .await;
    };
    throttle::succeeded(&gw.pool, &key, None, now).await?;
    let have = Loa::from_acr(&p.acr).unwrap_or(Loa::Low);
    let mut next = p.clone();
    next.acr = have.max(Loa::Substantial).acr().to_owned();
    for m in ["otp", "mfa"] {
        if !next.amr.iter().any(|a| a == m) {
            next.amr.push(m.to_owned());
        }
    }
    next.auth_time = now;
    next.tried.push("totp".into());
    if kind == mfa::Verified::RecoveryCode {
        tracing::info!(user = %p.user_id, "recovery code used");
    }
    advance(gw, meta, lang, lr, browser, req, client, next).await
}
