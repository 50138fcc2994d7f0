//! The check endpoints the proxies ask before every request: 200 with the
//! identity headers the application registered, a login asked for (401
//! for nginx, whose `error_page` sends the browser on; a redirect for
//! Traefik and Caddy, which return it as it is) when there is no host
//! session or the login falls short of what the resource needs, 403 with a
//! page when the policy denies.
//!
//! The hot path reads the host session from the node's cache and decides
//! in memory: no database write unless the decision is audited.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use interkom_directory::applications::{Application, IdentityHeader, JWT_HEADER, PROXY_PREFIX};
use interkom_policy::{AuthContext, ResourceRef, Snapshot, SubjectRef};
use serde_json::json;

use super::original::{self, Original};
use crate::access::{self, Decided, Verdict};
use crate::host_session::{self, HostEntry, HOST_COOKIE};
use crate::web::{self, Meta};
use crate::{Gateway, GatewayError};

/// How long the JWT an application receives is valid; a node reuses one
/// while more than half of it is left.
const JWT_SECONDS: i64 = 60;

/// How the proxy wants a login asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proxy {
    /// nginx `auth_request`: 401 (it follows no redirect).
    Nginx,
    /// Traefik, Caddy: a redirect to the start of a login on the host.
    Redirecting,
}

/// `/forward-auth/nginx`.
pub(crate) async fn check_nginx(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
) -> Response {
    answer(&gw, &meta, &headers, Proxy::Nginx).await
}

/// `/forward-auth/check` (Traefik `forwardAuth`, Caddy `forward_auth`).
pub(crate) async fn check_redirect(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
) -> Response {
    answer(&gw, &meta, &headers, Proxy::Redirecting).await
}

async fn answer(gw: &Gateway, meta: &Meta, headers: &HeaderMap, proxy: Proxy) -> Response {
    let Some(orig) = original::original(headers) else {
        count("bad_request");
        return original::page(gw, meta, StatusCode::BAD_REQUEST, |t| t.bad_request);
    };
    match decide(gw, meta, headers, &orig).await {
        Ok(Outcome::Allow(res)) => {
            count("allow");
            res
        }
        Ok(Outcome::Login) => {
            count("login");
            login_needed(proxy, &orig)
        }
        Ok(Outcome::Deny) => {
            count("deny");
            original::page(gw, meta, StatusCode::FORBIDDEN, |t| t.app_denied)
        }
        Ok(Outcome::Unknown) => {
            count("unknown");
            original::page(gw, meta, StatusCode::FORBIDDEN, |t| t.app_unknown)
        }
        Err(e) => {
            count("error");
            tracing::error!(error = %e, "forward-auth check failed");
            original::page(gw, meta, StatusCode::SERVICE_UNAVAILABLE, |t| t.unavailable)
        }
    }
}

fn count(result: &'static str) {
    metrics::counter!("interkom_forward_checks_total", "result" => result).increment(1);
}

enum Outcome {
    Allow(Response),
    /// A login, or a step-up (the start page decides for the method).
    Login,
    Deny,
    /// No application answers on this host and path.
    Unknown,
}

async fn decide(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    orig: &Original,
) -> Result<Outcome, GatewayError> {
    let now = gw.clock.now();
    let apps = gw.dir.applications().await?;
    let Some(app) = apps.route(&orig.origin, &orig.path) else {
        return Ok(Outcome::Unknown);
    };
    let action = app.cfg.action_for(&orig.method);
    let entry = match web::cookie(headers, HOST_COOKIE) {
        Some(h) => host_session::find(gw, &h, now).await?,
        None => None,
    };
    // A cookie is good on the host it was set for only.
    let Some(e) = entry.filter(|e| e.origin == orig.origin) else {
        return Ok(Outcome::Login);
    };
    let snap = gw.policy.snapshot();
    let amr: Vec<&str> = e.amr.iter().map(String::as_str).collect();
    let ctx = AuthContext::from_claims(Some(&e.acr), &amr, Some(e.auth_time), now);
    let d = snap.decide(
        SubjectRef::User(&e.user_id),
        action,
        ResourceRef::id(&app.cfg.resource),
        &ctx,
    );
    let verdict = access::verdict_of(&d, &e.acr);
    // Denials and step-ups are audited at every check; permits the policy
    // audits (`sehr_hoch`) once per session, application and action.
    if d.audit && (verdict != Verdict::Allow || first_permit(&e, app, action)) {
        let client = app.login_client_id();
        let at = Decided {
            via: "forward_auth",
            client_id: &client,
            user_id: &e.user_id,
            resource: &app.cfg.resource,
            action,
        };
        access::audit(gw, Some(meta), &at, &snap, &d).await?;
    }
    Ok(match verdict {
        Verdict::Allow => Outcome::Allow(allowed(gw, &e, app, &snap, now).await?),
        Verdict::Deny => Outcome::Deny,
        Verdict::StepUp(_) => Outcome::Login,
    })
}

/// Whether this permit is the first of its kind for the session.
fn first_permit(e: &HostEntry, app: &Application, action: &str) -> bool {
    let Ok(mut seen) = e.audited.lock() else {
        return true;
    };
    if seen
        .iter()
        .any(|(a, act)| *a == app.cfg.id && act == action)
    {
        return false;
    }
    seen.push((app.cfg.id.clone(), action.to_owned()));
    true
}

/// 200 with the identity headers the application registered.
async fn allowed(
    gw: &Gateway,
    e: &HostEntry,
    app: &Arc<Application>,
    snap: &Snapshot,
    now: i64,
) -> Result<Response, GatewayError> {
    let mut res = StatusCode::OK.into_response();
    let h = res.headers_mut();
    for which in &app.cfg.headers {
        let value = match which {
            IdentityHeader::User => e.username.clone(),
            IdentityHeader::Subject => e.user_id.to_string(),
            IdentityHeader::Tenant => e.tenant.clone(),
            IdentityHeader::Roles => snap.roles_for(&e.user_id, &app.cfg.resource).join(","),
            IdentityHeader::Acr => e.acr.clone(),
        };
        // Names may hold umlauts: sent as UTF-8 bytes, never control
        // characters (which would split the header).
        if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
            h.insert(HeaderName::from_static(which.name()), v);
        }
    }
    if app.cfg.jwt {
        let token = jwt(gw, e, app, snap, now).await?;
        if let Ok(v) = HeaderValue::from_str(&token) {
            h.insert(HeaderName::from_static(JWT_HEADER), v);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// A short-lived JWT for applications that verify one (interkom's JWKS),
/// made once per session and application while more than half is left.
async fn jwt(
    gw: &Gateway,
    e: &HostEntry,
    app: &Application,
    snap: &Snapshot,
    now: i64,
) -> Result<String, GatewayError> {
    if let Ok(cached) = e.jwt.lock() {
        if let Some((id, token, exp)) = cached.as_ref() {
            if *id == app.cfg.id && exp - now > JWT_SECONDS / 2 {
                return Ok(token.clone());
            }
        }
    }
    let keys = gw.keys.fresh(now).await?;
    let key = keys
        .signing(gw.cfg.access_token_alg, now)
        .ok_or(GatewayError::Crypto("no signing key"))?;
    let exp = now + JWT_SECONDS;
    let claims = json!({
        "iss": gw.cfg.issuer_str(),
        "sub": e.user_id,
        "aud": app.cfg.id,
        "iat": now,
        "exp": exp.min(e.expires_at),
        "auth_time": e.auth_time,
        "acr": e.acr,
        "amr": e.amr,
        "sid": e.sid,
        "preferred_username": e.username,
        "tenant": e.tenant,
        "roles": snap.roles_for(&e.user_id, &app.cfg.resource),
    });
    let token = crate::jws::sign(key, "JWT", &claims)?;
    if let Ok(mut cached) = e.jwt.lock() {
        *cached = Some((app.cfg.id.clone(), token.clone(), exp));
    }
    Ok(token)
}

/// No host session, or a login short of what the resource needs: a login
/// through the start page on the host (with the request's method).
fn login_needed(proxy: Proxy, orig: &Original) -> Response {
    if proxy == Proxy::Nginx {
        let mut res = StatusCode::UNAUTHORIZED.into_response();
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return res;
    }
    let rd = format!("{}{}", orig.origin, orig.uri);
    let location = format!(
        "{}{PROXY_PREFIX}/start?m={}&rd={}",
        orig.origin,
        urlencoding(&orig.method),
        urlencoding(&rd)
    );
    let mut res = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
