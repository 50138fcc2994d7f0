//! The login flow: after every authentication the planner says what comes
//! next, and this module carries it out — issue the code, ask for a second
//! factor, send the browser to an identity source, or tell the client why
//! not. The single place where a login ends ([`finish_login`]): the login
//! request is used up, the session created or stepped up, the code issued.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::crypto::random_token;
use interkom_directory::Client;
use interkom_types::Loa;
use url::Url;

use super::plan::{self, Available, Step};
use super::state::{self, AuthRequest, Checked, Login, LoginRequest};
use super::{consent, leistung, pages};
use crate::error::ErrorCode;
use crate::session::{self, Session};
use crate::sources::saml::UPSTREAM_PREFIX;
use crate::sources::{IdentitySource, LocalPassword, OidcUpstream, SamlIdp, SourceAsk};
use crate::store::{AuthCode, SessionUpstream};
use crate::web::{self, Meta};
use crate::{access, factors, Gateway, GatewayError};

pub(crate) const ACCESS_DENIED: &str =
    "the access policy does not permit this user to use this service";
pub(crate) const DECLINED: &str = "the user did not agree that this service receives their data";
pub(crate) const UNREACHABLE: &str =
    "this service's protection need requires a level of assurance no available login method reaches";

/// Decides the next step for what `p` established: asks the policy, and
/// only when the login falls short, what this account can still use.
pub(crate) async fn plan(
    gw: &Gateway,
    meta: Option<&Meta>,
    req: &AuthRequest,
    p: &Login,
) -> Result<Step, GatewayError> {
    let (verdict, _) = access::check(
        gw,
        meta,
        &req.client_id,
        req.action.as_deref().unwrap_or(access::LOGIN),
        &p.user_id,
        &p.acr,
        &p.amr,
        p.auth_time,
    )
    .await?;
    let need = plan::target(verdict, p.loa(), req.min_acr);
    // A Leistung: its level, reached at a source it accepts.
    if let Some(l) = gw.policy.snapshot().leistung_for_client(&req.client_id) {
        return Ok(match need {
            None => Step::Deny,
            Some(n)
                if plan::level_ok(&n, p)
                    && !n.fresh
                    && leistung::from_accepted(gw, l, p).await? =>
            {
                Step::Issue
            }
            Some(n) => leistung::step_up(gw, l, p, leistung::need(l, Some(n.loa))).await?,
        });
    }
    if need.is_none_or(|n| plan::level_ok(&n, p) && !n.fresh) {
        return Ok(plan::next(need, p, &Available::default()));
    }
    let mut available = Available::default();
    // Local factors only count for a login with the local password.
    if p.upstream.is_none() {
        for f in factors::ALL {
            if let Some(l) = f.reaches(gw, &p.user_id).await? {
                available.factors.push((f.kind(), l));
            }
        }
    }
    if let Some(id) = &p.upstream {
        available.origin_exists = gw.dir.upstream(id).await?.is_some();
    }
    let mut idps = gw.dir.linked_upstreams(&p.user_id).await?;
    // The upstream the login came from first.
    idps.sort_by_key(|u| Some(&u.cfg.id) != p.upstream.as_ref());
    available.linked = idps
        .into_iter()
        .map(|u| (u.cfg.id.clone(), OidcUpstream(u).max_loa()))
        .collect();
    Ok(plan::next(need, p, &available))
}

/// Goes on with a login after an authentication: issues, asks for the
/// next factor, or ends it with the client's error.
pub(crate) async fn advance(
    gw: &Gateway,
    meta: &Meta,
    at: &LoginRequest,
    p: Login,
) -> Result<Response, GatewayError> {
    let outcome = match plan(gw, Some(meta), &at.req, &p).await? {
        Step::Issue if !p.consented && consent::needed(gw, &at.client, &p, &at.req).await? => {
            state::save(gw, &at.lr, &p).await?;
            return Ok(pages::consent_page(gw, at));
        }
        Step::Issue => LoginOutcome::Issue,
        Step::Deny => LoginOutcome::Deny,
        // A password was just entered: asking again would change nothing.
        Step::Password | Step::Unmet => LoginOutcome::Unmet,
        Step::SecondFactor(offer) => {
            let mut p = p;
            p.offer = offer.into_iter().map(str::to_owned).collect();
            state::save(gw, &at.lr, &p).await?;
            return Ok(pages::second_factor_page(gw, at, StatusCode::OK, &p, None));
        }
        Step::Upstream { id, asked, fresh } => {
            let mut p = p;
            p.offer.clear();
            state::save(gw, &at.lr, &p).await?;
            return go_upstream(gw, meta, at, &id, Some(asked), fresh).await;
        }
    };
    finish_login(gw, meta, at, &p, outcome).await
}

/// Goes on after a step's check: the next step of the flow, or the step's
/// own page; an internal failure answers with the error page.
pub(crate) async fn go_on(
    gw: &Gateway,
    meta: &Meta,
    at: &LoginRequest,
    checked: Result<Checked, GatewayError>,
) -> Response {
    let answer = match checked {
        Ok(Checked::Passed(next)) => advance(gw, meta, at, next).await,
        Ok(Checked::Page(page)) => Ok(page),
        Err(e) => Err(e),
    };
    answer.unwrap_or_else(|e| web::internal(gw, at.lang, e))
}

/// Sends the login to an upstream, asked for a level (`None`: the user
/// chose it), or shows why that failed.
pub(crate) async fn go_upstream(
    gw: &Gateway,
    meta: &Meta,
    at: &LoginRequest,
    id: &str,
    asked: Option<Loa>,
    fresh: bool,
) -> Result<Response, GatewayError> {
    if let Some(source) = id.strip_prefix(UPSTREAM_PREFIX) {
        let Some(src) = gw.dir.saml_source(source).await? else {
            return finish_unmet(gw, at);
        };
        return go_to(gw, meta, at, &SamlIdp(src), asked, fresh).await;
    }
    let Some(idp) = gw.dir.upstream(id).await? else {
        return finish_unmet(gw, at);
    };
    go_to(gw, meta, at, &OidcUpstream(idp), asked, fresh).await
}

/// Sends the login to an identity source.
pub(crate) async fn go_to(
    gw: &Gateway,
    meta: &Meta,
    at: &LoginRequest,
    source: &dyn IdentitySource,
    asked: Option<Loa>,
    fresh: bool,
) -> Result<Response, GatewayError> {
    let ask = SourceAsk {
        meta,
        at,
        asked,
        fresh: fresh || at.req.prompt_login,
    };
    source.begin(gw, &ask).await
}

/// The login form of the local password (a new login, or a fresh one);
/// `last_idp`: the upstream this browser chose last.
pub(crate) async fn password_form(
    gw: &Gateway,
    meta: &Meta,
    at: &LoginRequest,
    last_idp: Option<String>,
) -> Result<Response, GatewayError> {
    go_to(gw, meta, at, &LocalPassword { last_idp }, None, false).await
}

fn finish_unmet(gw: &Gateway, at: &LoginRequest) -> Result<Response, GatewayError> {
    Ok(to_client(
        gw,
        &at.req,
        ErrorCode::UnmetAuthenticationRequirements,
        UNREACHABLE,
    ))
}

/// Appends parameters to a verified redirect URI (keeping its own query).
fn with_params(redirect_uri: &str, params: &[(&str, Option<&str>)]) -> String {
    match Url::parse(redirect_uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    if let Some(v) = v {
                        q.append_pair(k, v);
                    }
                }
            }
            u.to_string()
        }
        Err(_) => redirect_uri.to_owned(),
    }
}

pub(crate) fn error_redirect(
    gw: &Gateway,
    redirect_uri: &str,
    state: Option<&str>,
    error: ErrorCode,
    description: &str,
) -> Response {
    web::see_other(&with_params(
        redirect_uri,
        &[
            ("error", Some(error.as_str())),
            ("error_description", Some(description)),
            ("state", state),
            ("iss", Some(gw.cfg.issuer_str())),
        ],
    ))
}

/// Stores a new authorization code for the session (on the caller's
/// connection or transaction) and returns it.
pub(crate) async fn issue_code(
    gw: &Gateway,
    conn: &mut sqlx::AnyConnection,
    req: &AuthRequest,
    s: &Session,
) -> Result<String, GatewayError> {
    let now = gw.clock.now();
    let code = random_token(32);
    let stored = AuthCode {
        client_id: req.client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        user_id: s.user_id.clone(),
        sid: s.sid.clone(),
        scope: req.scope.join(" "),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        auth_time: s.auth_time,
        acr: s.acr.clone(),
        amr: s.amr.clone(),
        family_id: uuid::Uuid::new_v4().to_string(),
        expires_at: now + gw.cfg.code_ttl,
        used_at: None,
    };
    gw.store
        .insert_code(conn, &gw.master.keyed_hash(&code), &stored)
        .await?;
    Ok(code)
}

/// Sends the browser back to the client with the code, `state` and `iss`.
pub(crate) fn code_redirect(gw: &Gateway, req: &AuthRequest, code: &str) -> Response {
    web::see_other(&with_params(
        &req.redirect_uri,
        &[
            ("code", Some(code)),
            ("state", req.state.as_deref()),
            ("iss", Some(gw.cfg.issuer_str())),
        ],
    ))
}

/// How a login ends for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginOutcome {
    Issue,
    Deny,
    Unmet,
    /// The person did not agree to the client receiving their data.
    Declined,
}

/// Ends a login: the login request is used up, the session is created (or
/// the stepped-up one gets its new level and a new handle), the code is
/// issued or the client told why not.
pub(crate) async fn finish_login(
    gw: &Gateway,
    meta: &Meta,
    at: &LoginRequest,
    p: &Login,
    outcome: LoginOutcome,
) -> Result<Response, GatewayError> {
    let (lr, req, client): (&str, &AuthRequest, &Client) = (&at.lr, &at.req, &at.client);
    let user = gw.dir.user(&p.user_id).await?.filter(|u| u.is_enabled());
    // Locked while the login was under way: it ends here.
    let Some(user) = user else {
        state::discard(gw, lr).await?;
        return Ok(to_client(
            gw,
            req,
            ErrorCode::AccessDenied,
            "the account is locked",
        ));
    };
    let amr: Vec<&str> = p.amr.iter().map(String::as_str).collect();
    // One transaction: the login request is used up, the session and the
    // code are created, or nothing happens.
    let mut tx = gw.store.begin().await?;
    // Single use: a second submission of the same form finds nothing.
    if !gw.store.take_login_request(&mut tx, lr).await? {
        return Err(GatewayError::LoginRequestUsed);
    }
    // A step-up keeps the session (and its sid) with a new handle; a
    // login starts a new one (no session fixation either way).
    let stepped = match &p.sid {
        Some(sid) => {
            session::step_up_session(
                gw,
                &mut tx,
                sid,
                &p.user_id,
                &p.acr,
                &amr,
                p.auth_time,
                p.upstream.as_deref(),
            )
            .await?
        }
        None => None,
    };
    let (handle, session) = match stepped {
        Some(s) => s,
        // The session being stepped up ended meanwhile (logout, a lock, a
        // reset): nothing of it comes back.
        None if p.sid.is_some() => {
            drop(tx);
            return Ok(to_client(
                gw,
                req,
                ErrorCode::LoginRequired,
                "the session ended during the step-up",
            ));
        }
        None => {
            let login = SessionUpstream {
                token: p.upstream_token.as_deref(),
                subject: p.upstream_subject.as_deref(),
            };
            session::create_session(
                gw,
                &mut tx,
                &user.id,
                &p.acr,
                &amr,
                p.auth_time,
                p.upstream.as_deref(),
                login,
            )
            .await?
        }
    };
    // A stepped-up session keeps its row: the upstream's part is updated.
    if p.sid.is_some() {
        if let Some(t) = &p.upstream_token {
            gw.store
                .set_upstream_token(&mut tx, &session.sid, t)
                .await?;
        }
        if let Some(subject) = &p.upstream_subject {
            gw.store
                .set_upstream_subject(&mut tx, &session.sid, subject)
                .await?;
        }
    }
    let code = match outcome {
        LoginOutcome::Issue => Some(issue_code(gw, &mut tx, req, &session).await?),
        _ => None,
    };
    tx.commit().await?;
    let ev = gw.about(
        AuditEvent::new(Action::Login, Outcome::Success)
            .client(&client.id)
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(serde_json::json!({
                "acr": p.acr,
                "amr": p.amr,
                "sid": session.sid,
                "upstream": p.upstream,
                "step_up": p.sid.is_some(),
            })),
        &user,
    );
    gw.audit.append(ev).await?;
    let mut res = match (code, outcome) {
        (Some(code), _) => code_redirect(gw, req, &code),
        (None, LoginOutcome::Deny) => to_client(gw, req, ErrorCode::AccessDenied, ACCESS_DENIED),
        (None, LoginOutcome::Declined) => to_client(gw, req, ErrorCode::AccessDenied, DECLINED),
        (None, _) => to_client(
            gw,
            req,
            ErrorCode::UnmetAuthenticationRequirements,
            UNREACHABLE,
        ),
    };
    res.headers_mut().append(
        header::SET_COOKIE,
        web::set_cookie(gw, session::SESSION_COOKIE, &handle, gw.cfg.session_ttl),
    );
    Ok(res.into_response())
}

/// The client's error for this request, at its verified redirect URI.
pub(crate) fn to_client(
    gw: &Gateway,
    req: &AuthRequest,
    error: ErrorCode,
    description: &str,
) -> Response {
    error_redirect(
        gw,
        &req.redirect_uri,
        req.state.as_deref(),
        error,
        description,
    )
}
