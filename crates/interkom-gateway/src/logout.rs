//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
//!
//! With a valid `id_token_hint` for the current session the session ends at
//! once; without one the user confirms (a CSRF-protected form), so a foreign
//! page cannot log people out. Redirects go only to a
//! `post_logout_redirect_uri` registered for the client, matched exactly.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use interkom_audit::{Action, AuditEvent, Outcome};
use serde_json::Value;

use crate::i18n::{Lang, LangTexts};
use crate::params::Params;
use crate::session::{self, SESSION_COOKIE};
use crate::web::{self, Meta};
use crate::{jws, Gateway};
use interkom_directory::crypto::ct_eq;

pub(crate) async fn logout_get(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    logout(gw, meta, headers, q.unwrap_or_default().as_bytes(), false).await
}

pub(crate) async fn logout_post(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    logout(gw, meta, headers, &body, true).await
}

const PASSED_ON: [&str; 5] = [
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
];

async fn logout(
    gw: Gateway,
    meta: Meta,
    headers: HeaderMap,
    raw: &[u8],
    is_post: bool,
) -> Response {
    let p = Params::parse(raw).ok();
    let get = |n: &str| {
        p.as_ref()
            .and_then(|p| p.get(n).ok().flatten())
            .map(str::to_owned)
    };
    let lang = Lang::negotiate(
        get("ui_locales").as_deref(),
        meta.accept_language.as_deref(),
    );
    let bad = |msg: &str| {
        web::error_page(
            &gw,
            lang,
            StatusCode::BAD_REQUEST,
            lang.texts().bad_request,
            Some(msg),
        )
    };
    let Some(p) = p.as_ref() else {
        return bad("invalid_request");
    };
    if PASSED_ON.iter().any(|n| p.get(n).is_err()) {
        return bad("invalid_request: repeated parameter");
    }
    let now = gw.clock.now();

    // The hint is checked for our signature only: an expired ID token is a
    // fine hint (OIDC RP-Initiated Logout §2).
    let hint: Option<Value> = match get("id_token_hint") {
        Some(t) => match gw.keys.fresh(now).await {
            Ok(keys) => match jws::verify(&keys, &t, "JWT", now) {
                Ok(c) if c.get("iss").and_then(Value::as_str) == Some(gw.cfg.issuer_str()) => {
                    Some(c)
                }
                _ => return bad("invalid_request: id_token_hint is not valid"),
            },
            Err(e) => return web::internal(&gw, lang, e),
        },
        None => None,
    };
    let hint_aud = hint.as_ref().and_then(|h| match h.get("aud") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    });
    let client_id = match (get("client_id"), hint_aud) {
        (Some(c), Some(a)) if c != a => {
            return bad("invalid_request: client_id does not match id_token_hint")
        }
        (c, a) => c.or(a),
    };
    let redirect = match get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let Some(cid) = &client_id else {
                return bad(
                    "invalid_request: post_logout_redirect_uri needs client_id or id_token_hint",
                );
            };
            let client = match gw.client(cid).await {
                Ok(Some(c)) => c,
                Ok(None) => return bad("invalid_client"),
                Err(e) => return web::internal(&gw, lang, e),
            };
            if !client.post_logout_redirect_uris.contains(&uri) {
                return bad("invalid_request: post_logout_redirect_uri is not registered");
            }
            Some(uri)
        }
    };

    let handle = web::cookie(&headers, SESSION_COOKIE);
    let session = match &handle {
        Some(h) => match session::session_by_handle(&gw, h, now).await {
            Ok(s) => s,
            Err(e) => return web::internal(&gw, lang, e),
        },
        None => None,
    };

    // The upstream the session came from, to log out there too.
    let mut upstream_logout: Option<(String, String, Option<String>)> = None;
    if let (Some(s), Some(h)) = (&session, &handle) {
        let hint_matches = hint.as_ref().is_some_and(|c| {
            c.get("sid").and_then(Value::as_str) == Some(s.sid.as_str())
                || c.get("sub").and_then(Value::as_str) == Some(s.user_id.as_str())
        });
        let csrf = gw.master.keyed_hash(&format!("logout|{h}"));
        let confirmed = is_post
            && get("confirm").as_deref() == Some("yes")
            && get("csrf_token").is_some_and(|t| ct_eq(&t, &csrf));
        if !hint_matches && !confirmed {
            let hidden: Vec<(String, String)> = PASSED_ON
                .iter()
                .filter_map(|n| get(n).map(|v| ((*n).to_owned(), v)))
                .collect();
            return web::page(
                &gw,
                StatusCode::OK,
                "logout.html",
                minijinja::context! {
                    lang => lang.code(),
                    base => gw.cfg.base_path(),
                    t => minijinja::Value::from_serialize(lang.texts()),
                    done => false,
                    csrf_token => csrf,
                    hidden => hidden,
                },
            );
        }
        let upstream_token = match gw.store.upstream_token(&s.sid).await {
            Ok(t) => t,
            Err(e) => return web::internal(&gw, lang, e.into()),
        };
        if let Err(e) = session::end_session(&gw, &s.sid).await {
            return web::internal(&gw, lang, e);
        }
        upstream_logout = s
            .upstream
            .clone()
            .map(|u| (u, s.user_id.clone(), upstream_token));
        let user = gw.dir.user(&s.user_id).await.ok().flatten();
        let mut ev = AuditEvent::new(Action::Logout, Outcome::Success)
            .subject(&s.user_id, user.as_ref().map(|u| u.tenant.clone()))
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(serde_json::json!({ "sid": s.sid }));
        if let Some(c) = &client_id {
            ev = ev.client(c);
        }
        if let Some(t) = user.as_ref().and_then(|u| gw.tenants.get(&u.tenant)) {
            ev = ev.tenant(&t.id, t.path_string());
        }
        if let Err(e) = gw.audit.append(ev).await {
            return web::internal(&gw, lang, e.into());
        }
    }

    let continue_to = match redirect {
        Some(uri) => {
            let mut u = uri.clone();
            if let Some(state) = get("state") {
                let mut parsed = match url::Url::parse(&uri) {
                    Ok(x) => x,
                    Err(_) => return bad("invalid_request"),
                };
                parsed.query_pairs_mut().append_pair("state", &state);
                u = parsed.to_string();
            }
            Some(u)
        }
        None => None,
    };
    // Logged in through an upstream: end its session too, then on.
    let upstream_url = match &upstream_logout {
        Some((up, user, token)) => {
            crate::sources::oidc::logout_url(
                &gw,
                up,
                user,
                token.as_deref(),
                continue_to.as_deref(),
            )
            .await
        }
        None => None,
    };
    let mut res = match (upstream_url, continue_to) {
        (Some(u), _) | (None, Some(u)) => web::see_other(&u),
        (None, None) => web::logged_out_page(&gw, lang),
    };
    res.headers_mut().append(
        header::SET_COOKIE,
        web::set_cookie(&gw, SESSION_COOKIE, "", 0),
    );
    res
}
