//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
//!
//! With a valid `id_token_hint` for the current session the session ends at
//! once; without one the user confirms (a CSRF-protected form), so a foreign
//! page cannot log people out. Redirects go only to a
//! `post_logout_redirect_uri` registered for the client, matched exactly.
//! The SAML service providers that got an assertion in the session are
//! sent a LogoutRequest each (front channel), the OIDC clients hear by
//! back-channel logout, and an upstream the session came from is logged
//! out at last.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_types::AccountId;
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

/// A logout request as checked: where to go afterwards and who asked.
struct Asked {
    params: Params,
    lang: Lang,
    /// The claims of a valid `id_token_hint`.
    hint: Option<Value>,
    client_id: Option<String>,
    /// A registered `post_logout_redirect_uri`, with `state` appended.
    continue_to: Option<String>,
}

impl Asked {
    fn get(&self, name: &str) -> Option<String> {
        self.params.get(name).ok().flatten().map(str::to_owned)
    }
}

/// The session a logout ends and how it came to be.
struct Ended {
    sid: String,
    /// The SAML service providers told of the session: (SP, NameID).
    saml: Vec<(String, String)>,
    /// The upstream it came from, the account and the sealed ID token of
    /// the upstream (to log out there too).
    upstream: Option<(String, AccountId, Option<String>)>,
}

async fn logout(
    gw: Gateway,
    meta: Meta,
    headers: HeaderMap,
    raw: &[u8],
    is_post: bool,
) -> Response {
    let asked = match check(&gw, &meta, raw).await {
        Ok(a) => a,
        Err(page) => return page,
    };
    let mut ended = match end_session(&gw, &meta, &headers, &asked, is_post).await {
        Ok(Some(e)) => Some(e),
        Ok(None) => None,
        Err(page) => return page,
    };
    // Logged in through an upstream: end its session too, then on.
    let upstream_url = match ended.as_mut().and_then(|e| e.upstream.take()) {
        Some((up, user, token)) if up.starts_with(crate::sources::saml::UPSTREAM_PREFIX) => {
            crate::sources::saml::logout_url(
                &gw,
                &up,
                &user,
                token.as_deref(),
                asked.continue_to.as_deref(),
            )
            .await
        }
        Some((up, user, token)) => {
            crate::sources::oidc::logout_url(
                &gw,
                &up,
                &user,
                token.as_deref(),
                asked.continue_to.as_deref(),
            )
            .await
        }
        None => None,
    };
    let then = upstream_url.or(asked.continue_to);
    // The SAML service providers first: the chain ends at `then`.
    let chain = match ended {
        Some(e) if !e.saml.is_empty() => {
            // The session has ended either way: its cookie goes below.
            match crate::saml::tell_service_providers(&gw, &e.sid, e.saml, then.clone(), asked.lang)
                .await
            {
                Ok(r) => r,
                Err(e) => Some(web::internal(&gw, asked.lang, e)),
            }
        }
        _ => None,
    };
    let mut res = match (chain, then) {
        (Some(r), _) => r,
        (None, Some(u)) => web::see_other(&u),
        (None, None) => web::logged_out_page(&gw, asked.lang),
    };
    res.headers_mut().append(
        header::SET_COOKIE,
        web::set_cookie(&gw, SESSION_COOKIE, "", 0),
    );
    res
}

/// Checks the request: parameters once each, the hint signed by interkom,
/// `client_id` matching it, the redirect registered for that client.
async fn check(gw: &Gateway, meta: &Meta, raw: &[u8]) -> Result<Asked, Response> {
    let p = Params::parse(raw).ok();
    let ui = p
        .as_ref()
        .and_then(|p| p.get("ui_locales").ok().flatten().map(str::to_owned));
    let lang = Lang::negotiate(ui.as_deref(), meta.accept_language.as_deref());
    let bad = |msg: &str| {
        web::error_page(
            gw,
            lang,
            StatusCode::BAD_REQUEST,
            lang.texts().bad_request,
            Some(msg),
        )
    };
    let Some(params) = p else {
        return Err(bad("invalid_request"));
    };
    if PASSED_ON.iter().any(|n| params.get(n).is_err()) {
        return Err(bad("invalid_request: repeated parameter"));
    }
    let mut asked = Asked {
        params,
        lang,
        hint: None,
        client_id: None,
        continue_to: None,
    };
    let now = gw.clock.now();
    // The hint is checked for our signature only: an expired ID token is a
    // fine hint (OIDC RP-Initiated Logout §2).
    if let Some(t) = asked.get("id_token_hint") {
        let keys = gw
            .keys
            .fresh(now)
            .await
            .map_err(|e| web::internal(gw, lang, e))?;
        match jws::verify(&keys, &t, "JWT", now) {
            Ok(c) if c.get("iss").and_then(Value::as_str) == Some(gw.cfg.issuer_str()) => {
                asked.hint = Some(c)
            }
            _ => return Err(bad("invalid_request: id_token_hint is not valid")),
        }
    }
    let hint_aud = asked.hint.as_ref().and_then(|h| match h.get("aud") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    });
    asked.client_id = match (asked.get("client_id"), hint_aud) {
        (Some(c), Some(a)) if c != a => {
            return Err(bad(
                "invalid_request: client_id does not match id_token_hint",
            ))
        }
        (c, a) => c.or(a),
    };
    let Some(uri) = asked.get("post_logout_redirect_uri") else {
        return Ok(asked);
    };
    let Some(cid) = &asked.client_id else {
        return Err(bad(
            "invalid_request: post_logout_redirect_uri needs client_id or id_token_hint",
        ));
    };
    let client = match gw.client(cid).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(bad("invalid_client")),
        Err(e) => return Err(web::internal(gw, lang, e)),
    };
    if !client.post_logout_redirect_uris.contains(&uri) {
        return Err(bad(
            "invalid_request: post_logout_redirect_uri is not registered",
        ));
    }
    asked.continue_to = match asked.get("state") {
        None => Some(uri),
        Some(state) => {
            let mut parsed = url::Url::parse(&uri).map_err(|_| bad("invalid_request"))?;
            parsed.query_pairs_mut().append_pair("state", &state);
            Some(parsed.to_string())
        }
    };
    Ok(asked)
}

/// Ends this browser's session — at once with a hint for it, else after
/// the user confirmed on a CSRF-protected page — and audits it. `None`:
/// no session; `Err`: the page to answer with (the confirmation, or a
/// failure).
async fn end_session(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    asked: &Asked,
    is_post: bool,
) -> Result<Option<Ended>, Response> {
    let lang = asked.lang;
    let now = gw.clock.now();
    let Some(h) = web::cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(s) = session::session_by_handle(gw, &h, now)
        .await
        .map_err(|e| web::internal(gw, lang, e))?
    else {
        return Ok(None);
    };
    let hint_matches = asked.hint.as_ref().is_some_and(|c| {
        c.get("sid").and_then(Value::as_str) == Some(s.sid.as_str())
            || c.get("sub").and_then(Value::as_str) == Some(s.user_id.as_str())
    });
    let csrf = gw.master.keyed_hash(&format!("logout|{h}"));
    let confirmed = is_post
        && asked.get("confirm").as_deref() == Some("yes")
        && asked.get("csrf_token").is_some_and(|t| ct_eq(&t, &csrf));
    // A hint ends the session at once only from one of the county's own
    // clients; any other client's logout is the person's to confirm.
    let trusted = match &asked.client_id {
        Some(c) => gw
            .client(c)
            .await
            .map_err(|e| web::internal(gw, lang, e))?
            .is_some_and(|c| c.first_party),
        None => false,
    };
    if !(confirmed || hint_matches && trusted) {
        return Err(confirmation_page(gw, asked, &csrf));
    }
    let upstream_token = gw
        .store
        .upstream_token(&s.sid)
        .await
        .map_err(|e| web::internal(gw, lang, e.into()))?;
    let saml = gw
        .store
        .saml_participants(&s.sid)
        .await
        .map_err(|e| web::internal(gw, lang, e.into()))?;
    session::end_session(gw, &s.sid)
        .await
        .map_err(|e| web::internal(gw, lang, e))?;
    gw.store
        .forget_saml_participants(&s.sid)
        .await
        .map_err(|e| web::internal(gw, lang, e.into()))?;
    let user = gw.dir.user(&s.user_id).await.ok().flatten();
    let mut ev = AuditEvent::new(Action::Logout, Outcome::Success)
        .correlation(meta.request_id.clone())
        .source(meta.source.clone())
        .details(serde_json::json!({ "sid": s.sid }));
    if let Some(c) = &asked.client_id {
        ev = ev.client(c);
    }
    // The account and its tenant (a citizen's pseudonymised).
    ev = match &user {
        Some(u) => gw.about(ev, u),
        None => ev.subject(&s.user_id, None),
    };
    gw.audit
        .append(ev)
        .await
        .map_err(|e| web::internal(gw, lang, e.into()))?;
    Ok(Some(Ended {
        sid: s.sid.clone(),
        saml,
        upstream: s.upstream.map(|u| (u, s.user_id, upstream_token)),
    }))
}

/// The page asking the user to confirm the logout (the request's own
/// parameters travel on as hidden fields).
fn confirmation_page(gw: &Gateway, asked: &Asked, csrf: &str) -> Response {
    let lang = asked.lang;
    let hidden: Vec<(String, String)> = PASSED_ON
        .iter()
        .filter_map(|n| asked.get(n).map(|v| ((*n).to_owned(), v)))
        .collect();
    web::page(
        gw,
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
    )
}
