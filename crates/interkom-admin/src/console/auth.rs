//! The administrator's login to the console (authorization code flow with
//! PKCE at interkom's own gateway) and logout.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use interkom_directory::crypto::random_token;
use sha2::{Digest, Sha256};

use super::client::CONSOLE_CLIENT;
use super::i18n::{lang_of, texts};
use super::session;
use super::state::{cookie, form, with_lang_cookie, Console};

pub(crate) async fn login(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let gw = &c.0.admin.0.gateway;
    let handle = random_token(32);
    let hash = gw.handle_hash(&handle);
    let state = random_token(16);
    let verifier = random_token(32);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let Some(sealed) = gw.seal(&verifier, &hash) else {
        return c.message(
            lang,
            StatusCode::INTERNAL_SERVER_ERROR,
            texts(lang)["error"].as_str().unwrap_or_default(),
            "",
        );
    };
    let now = c.now();
    let csrf = random_token(24);
    let inserted = session::begin(&c.0.admin.0.pool, &hash, &state, &sealed, &csrf, now).await;
    if let Err(e) = inserted {
        tracing::error!(error = %e, "console login failed");
        return c.message(
            lang,
            StatusCode::SERVICE_UNAVAILABLE,
            texts(lang)["error"].as_str().unwrap_or_default(),
            "",
        );
    }
    let mut url = match url::Url::parse(&c.0.authorize) {
        Ok(u) => u,
        Err(_) => {
            return c.message(
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                texts(lang)["error"].as_str().unwrap_or_default(),
                "",
            )
        }
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CONSOLE_CLIENT)
        .append_pair("redirect_uri", &c.0.redirect_uri)
        .append_pair("scope", "openid profile")
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("ui_locales", lang.code());
    // The login the admin API will ask for: the second factor at once.
    let required = c.0.admin.rules().required_acr;
    if required > interkom_types::Loa::Low {
        url.query_pairs_mut()
            .append_pair("acr_values", required.acr());
    }
    let mut r = Redirect::to(url.as_str()).into_response();
    set_session_cookie(&mut r, &c, &handle);
    with_lang_cookie(r, lang, set, &c)
}

pub(crate) fn set_session_cookie(r: &mut Response, c: &Console, handle: &str) {
    let v = format!(
        "{}={handle}; Path={}; HttpOnly; SameSite=Lax{}",
        c.cookie_name(),
        c.cookie_path(),
        if c.0.secure_cookie { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub(crate) async fn callback(
    State(c): State<Console>,
    parts: axum::http::request::Parts,
) -> Response {
    let headers = &parts.headers;
    let (lang, _) = lang_of(headers, None);
    let t = texts(lang);
    let tx = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
    let failed = |status: StatusCode| c.message(lang, status, &tx("error"), &tx("login_failed"));
    let params: HashMap<String, String> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
    let gw = &c.0.admin.0.gateway;
    let Some(handle) = cookie(headers, c.cookie_name()) else {
        return c.message(lang, StatusCode::BAD_REQUEST, &tx("error"), &tx("expired"));
    };
    let hash = gw.handle_hash(&handle);
    let row = session::started(&c.0.admin.0.pool, &hash)
        .await
        .ok()
        .flatten();
    let (Some((state, sealed, expires_at)), Some(got_state)) = (row, params.get("state")) else {
        return c.message(lang, StatusCode::BAD_REQUEST, &tx("error"), &tx("expired"));
    };
    // The state first: nothing of a response to someone else's login is shown.
    let state_ok = !state.is_empty()
        && state.len() == got_state.len()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            state.as_bytes(),
            got_state.as_bytes(),
        ));
    if !state_ok || expires_at <= c.now() {
        return c.message(lang, StatusCode::BAD_REQUEST, &tx("error"), &tx("expired"));
    }
    let (Some(code), Some(verifier)) = (params.get("code"), gw.open(&sealed, &hash)) else {
        // The gateway answered with an error (e.g. access_denied).
        return failed(StatusCode::FORBIDDEN);
    };
    // The code is redeemed in-process at the gateway's token endpoint, with
    // the browser's address for the audit trail.
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned();
    let (status, tokens) = c
        .token_request(
            &[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", c.0.redirect_uri.as_str()),
                ("client_id", CONSOLE_CLIENT),
                ("code_verifier", verifier.as_str()),
            ],
            peer,
        )
        .await;
    let (true, Some(access), Some(expires_in)) = (
        status == StatusCode::OK,
        tokens["access_token"].as_str(),
        tokens["expires_in"].as_i64(),
    ) else {
        return failed(if status.is_server_error() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::FORBIDDEN
        });
    };
    // A new handle and a new CSRF token once logged in (no fixation).
    let new_handle = random_token(32);
    let new_hash = gw.handle_hash(&new_handle);
    let refresh = tokens["refresh_token"]
        .as_str()
        .and_then(|r| gw.seal(r, &new_hash));
    let Some(sealed_token) = gw.seal(access, &new_hash) else {
        return failed(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let logged_in = session::log_in(
        &c.0.admin.0.pool,
        &hash,
        &new_hash,
        &sealed_token,
        refresh.as_deref(),
        &random_token(24),
        c.now() + expires_in,
    )
    .await;
    if !matches!(logged_in, Ok(true)) {
        return c.message(lang, StatusCode::BAD_REQUEST, &tx("error"), &tx("expired"));
    }
    let mut r = Redirect::to(&format!("{}/", c.0.base)).into_response();
    set_session_cookie(&mut r, &c, &new_handle);
    r
}

pub(crate) async fn logout(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let t = texts(lang);
    let Some(s) = c.session(&headers).await else {
        return Redirect::to(&format!("{}/", c.0.base)).into_response();
    };
    // A logout only from the console's own form.
    if form(&s, &body).is_none() {
        return c.message(
            lang,
            StatusCode::FORBIDDEN,
            t["error"].as_str().unwrap_or_default(),
            t["csrf"].as_str().unwrap_or_default(),
        );
    }
    session::end(&c.0.admin.0.pool, &s.handle_hash).await;
    // The gateway's logout ends the single sign-on session as well.
    let mut url = match url::Url::parse(&c.0.logout) {
        Ok(u) => u,
        Err(_) => return Redirect::to(&format!("{}/", c.0.base)).into_response(),
    };
    url.query_pairs_mut()
        .append_pair("client_id", CONSOLE_CLIENT);
    let mut r = Redirect::to(url.as_str()).into_response();
    let clear = format!("{}=; Path={}; Max-Age=0", c.cookie_name(), c.cookie_path());
    if let Ok(v) = HeaderValue::from_str(&clear) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
