//! interkom's pages on a protected host, which the proxy passes on under
//! `/.interkom/` without asking first:
//!
//! - `start`: a login begins. A state cookie on the host keeps the state,
//!   the PKCE verifier and the return address (sealed, bound to the
//!   origin); the browser goes to the authorization endpoint as the
//!   application's login client — the one login flow decides, steps up,
//!   asks for second factors or sends to an identity source.
//! - `callback`: the login ends with a one-time code on this host. It is
//!   redeemed here (the state cookie matching, the code this host's and
//!   unused, PKCE), the host session created and its cookie set; then back
//!   to the return address, which is on this host only.
//! - `denied`: the page nginx shows for a 403 of the check.
//! - `logout`: ends the single sign-on session, so every host's cookie.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::applications::{Application, LOGIN_CLIENT_PREFIX, PROXY_PREFIX};
use interkom_directory::crypto::{ct_eq, random_token};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::original::{self, host_cookie, return_to};
use crate::host_session::{self, HOST_COOKIE};
use crate::i18n::{Lang, Texts};
use crate::web::{self, Meta};
use crate::{session, Gateway, GatewayError};

/// The state cookie of a login begun on the host.
const STATE_COOKIE: &str = "interkom_app_login";

/// What the state cookie keeps (sealed, bound to the origin).
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    verifier: String,
    rd: String,
    exp: i64,
}

fn aad(origin: &str) -> String {
    format!("forward-login|{origin}")
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The return address of a start: what follows `rd=`, taken as it is when
/// it begins with a scheme (nginx cannot encode it, so it comes last and
/// raw), else decoded.
fn raw_rd(raw: &str) -> Option<String> {
    let at = if raw.starts_with("rd=") {
        0
    } else {
        raw.find("&rd=")? + 1
    };
    let v = &raw[at + 3..];
    if v.starts_with("http://") || v.starts_with("https://") {
        return Some(v.to_owned());
    }
    url::form_urlencoded::parse(format!("rd={v}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

fn fail(gw: &Gateway, meta: &Meta, status: StatusCode, m: fn(&Texts) -> &'static str) -> Response {
    original::page(gw, meta, status, m)
}

/// `/.interkom/start?m=METHOD&rd=URL`.
pub(crate) async fn start(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(origin) = original::origin(&headers) else {
        return fail(&gw, &meta, StatusCode::BAD_REQUEST, |t| t.bad_request);
    };
    let apps = match gw.dir.applications().await {
        Ok(a) => a,
        Err(e) => return internal(&gw, &meta, e.into()),
    };
    let rd = raw
        .as_deref()
        .and_then(raw_rd)
        .and_then(|rd| return_to(&rd, &origin));
    let Some(rd) = rd else {
        return fail(&gw, &meta, StatusCode::BAD_REQUEST, |t| t.app_bad_return);
    };
    let path = url::Url::parse(&rd)
        .ok()
        .and_then(|u| original::normalize_path(u.path()));
    let Some(app) = path.and_then(|p| apps.route(&origin, &p).cloned()) else {
        return fail(&gw, &meta, StatusCode::BAD_REQUEST, |t| t.app_unknown);
    };
    let method = query_pairs(raw.as_deref())
        .into_iter()
        .find(|(k, _)| k == "m")
        .map(|(_, v)| v)
        .filter(|m| m.len() <= 16 && m.bytes().all(|b| b.is_ascii_uppercase()))
        .unwrap_or_else(|| "GET".to_owned());
    let now = gw.clock.now();
    let pending = Pending {
        state: random_token(16),
        verifier: random_token(32),
        rd,
        exp: now + gw.cfg.login_request_ttl,
    };
    let Some(sealed) = serde_json::to_string(&pending)
        .ok()
        .and_then(|p| gw.seal(&p, &aad(&origin)))
    else {
        return internal(
            &gw,
            &meta,
            GatewayError::Crypto("cannot seal the login state"),
        );
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
    let mut authorize = match url::Url::parse(&format!("{}/authorize", gw.cfg.issuer_str())) {
        Ok(u) => u,
        Err(_) => return internal(&gw, &meta, GatewayError::Crypto("issuer URL")),
    };
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &app.login_client_id())
        .append_pair("redirect_uri", &Application::callback(&origin))
        .append_pair("scope", "openid")
        .append_pair("state", &pending.state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("interkom_action", app.cfg.action_for(&method));
    let mut res = web::see_other(authorize.as_str());
    res.headers_mut().append(
        header::SET_COOKIE,
        host_cookie(
            &origin,
            STATE_COOKIE,
            &sealed,
            &format!("{PROXY_PREFIX}/"),
            gw.cfg.login_request_ttl,
        ),
    );
    res
}

/// `/.interkom/callback?code=…&state=…` (or `error=…` from the flow).
pub(crate) async fn callback(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    match redeem(&gw, &meta, &headers, raw.as_deref()).await {
        Ok(res) => res,
        Err(e) => internal(&gw, &meta, e),
    }
}

async fn redeem(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<Response, GatewayError> {
    let Some(origin) = original::origin(headers) else {
        return Ok(fail(gw, meta, StatusCode::BAD_REQUEST, |t| t.bad_request));
    };
    let now = gw.clock.now();
    let q = query_pairs(raw);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    // The login must be the one this browser began on this host.
    let pending = web::cookie(headers, STATE_COOKIE)
        .and_then(|c| gw.open(&c, &aad(&origin)))
        .and_then(|p| serde_json::from_str::<Pending>(&p).ok())
        .filter(|p| p.exp > now)
        .filter(|p| get("state").is_some_and(|s| ct_eq(s, &p.state)));
    let Some(pending) = pending else {
        return Ok(fail(gw, meta, StatusCode::BAD_REQUEST, |t| t.expired));
    };
    let clear_state = host_cookie(&origin, STATE_COOKIE, "", &format!("{PROXY_PREFIX}/"), 0);
    if let Some(error) = get("error") {
        let mut res = match error {
            "access_denied" => fail(gw, meta, StatusCode::FORBIDDEN, |t| t.app_denied),
            "unmet_authentication_requirements" => {
                fail(gw, meta, StatusCode::FORBIDDEN, |t| t.signin_first)
            }
            _ => fail(gw, meta, StatusCode::BAD_REQUEST, |t| t.expired),
        };
        res.headers_mut().append(header::SET_COOKIE, clear_state);
        return Ok(res);
    }
    let Some(code) = get("code") else {
        return Ok(fail(gw, meta, StatusCode::BAD_REQUEST, |t| t.bad_request));
    };
    let code_hash = gw.master.keyed_hash(code);
    let stored = gw.store.code(&code_hash).await?;
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
    let apps = gw.dir.applications().await?;
    // The code was issued to an application on this host, for this
    // host's callback, with this browser's verifier, and is fresh.
    let valid = stored.filter(|c| {
        let app = c
            .client_id
            .strip_prefix(LOGIN_CLIENT_PREFIX)
            .and_then(|id| apps.get(id));
        app.is_some_and(|a| a.cfg.origins.contains(&origin))
            && c.redirect_uri == Application::callback(&origin)
            && c.code_challenge.as_deref() == Some(challenge.as_str())
            && c.expires_at > now
            && c.used_at.is_none()
    });
    let Some(c) = valid else {
        return Ok(fail(gw, meta, StatusCode::BAD_REQUEST, |t| t.expired));
    };
    let mut tx = gw.store.begin().await?;
    if !gw.store.use_up_code(&mut tx, &code_hash, now).await?
        || !gw.store.session_exists(&mut tx, &c.sid).await?
    {
        return Ok(fail(gw, meta, StatusCode::BAD_REQUEST, |t| t.expired));
    }
    let handle =
        host_session::create(gw, &mut tx, &c.sid, &origin, now + gw.cfg.session_ttl).await?;
    tx.commit().await?;
    let ev = AuditEvent::new(Action::TokenIssued, Outcome::Success)
        .client(&c.client_id)
        .correlation(meta.request_id.clone())
        .source(meta.source.clone())
        .details(serde_json::json!({
            "via": "forward_auth",
            "origin": origin,
            "sid": c.sid,
            "acr": c.acr,
        }));
    let ev = match gw.dir.user(&c.user_id).await? {
        Some(u) => gw.about(ev, &u),
        None => ev,
    };
    gw.audit.append(ev).await?;
    let mut res = web::see_other(&pending.rd);
    res.headers_mut().append(header::SET_COOKIE, clear_state);
    res.headers_mut().append(
        header::SET_COOKIE,
        host_cookie(&origin, HOST_COOKIE, &handle, "/", gw.cfg.session_ttl),
    );
    Ok(res)
}

/// `/.interkom/denied`: the page for a request the policy denied.
pub(crate) async fn denied(State(gw): State<Gateway>, meta: Meta) -> Response {
    fail(&gw, &meta, StatusCode::FORBIDDEN, |t| t.app_denied)
}

/// `/.interkom/logout`: ends the single sign-on session behind the host's
/// cookie (every host's cookie and every client's tokens with it) and
/// deletes the cookie. Not from another site's page.
pub(crate) async fn logout(State(gw): State<Gateway>, meta: Meta, headers: HeaderMap) -> Response {
    let Some(origin) = original::origin(&headers) else {
        return fail(&gw, &meta, StatusCode::BAD_REQUEST, |t| t.bad_request);
    };
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    if cross_site {
        return fail(&gw, &meta, StatusCode::FORBIDDEN, |t| t.bad_request);
    }
    let now = gw.clock.now();
    if let Some(h) = web::cookie(&headers, HOST_COOKIE) {
        match host_session::find(&gw, &h, now).await {
            Ok(Some(e)) if e.origin == origin => {
                if let Err(e) = session::end_session(&gw, &e.sid).await {
                    return internal(&gw, &meta, e);
                }
                let ev = AuditEvent::new(Action::Logout, Outcome::Success)
                    .subject(&e.user_id, Some(e.tenant.clone()))
                    .source(meta.source.clone())
                    .details(serde_json::json!({ "via": "forward_auth", "origin": origin, "sid": e.sid }));
                if let Err(e) = gw.audit.append(ev).await {
                    return internal(&gw, &meta, e.into());
                }
            }
            Ok(_) => {}
            Err(e) => return internal(&gw, &meta, e),
        }
    }
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    let mut res = web::logged_out_page_at(&gw, lang, PROXY_PREFIX);
    res.headers_mut().append(
        header::SET_COOKIE,
        host_cookie(&origin, HOST_COOKIE, "", "/", 0),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.into_response()
}

fn internal(gw: &Gateway, meta: &Meta, e: GatewayError) -> Response {
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    web::internal(gw, lang, e)
}

#[cfg(test)]
mod tests {
    use super::raw_rd;

    #[test]
    fn the_return_address_comes_last_and_raw_or_encoded() {
        assert_eq!(
            raw_rd("m=GET&rd=http://a.localhost:1/x?y=1&z=2").as_deref(),
            Some("http://a.localhost:1/x?y=1&z=2")
        );
        assert_eq!(
            raw_rd("m=GET&rd=https%3A%2F%2Fa.example%2Fx%3Fy%3D1").as_deref(),
            Some("https://a.example/x?y=1")
        );
        assert_eq!(
            raw_rd("rd=https://a.example/").as_deref(),
            Some("https://a.example/")
        );
        assert_eq!(raw_rd("m=GET"), None);
    }
}
