//! The authorization endpoint and the login form.
//!
//! Order of checks (RFC 6749 §4.1.2.1, RFC 9700 §4.1): the client and its
//! exact redirect URI first; while either is unverified, errors are shown as
//! a page and nobody is redirected. After that, errors go back to the
//! client's redirect URI with `state` and `iss` (RFC 9207).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use interkom_audit::{Action, AuditEvent, Outcome};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::accounts::{self, Session, SESSION_COOKIE};
use crate::clients::{Client, GrantType, SUPPORTED_SCOPES};
use crate::crypto::{ct_eq, random_token};
use crate::i18n::Lang;
use crate::params::Params;
use crate::stepup::{self, Pending, Step};
use crate::web::{self, Meta};
use crate::{throttle, upstream, Gateway, GatewayError};

/// Levels of assurance, lowest first.
pub(crate) const ACR_LOW: &str = "urn:interkom:loa:low";
pub(crate) const ACR_VALUES: [&str; 3] = [
    ACR_LOW,
    "urn:interkom:loa:substantial",
    "urn:interkom:loa:high",
];

pub(crate) fn acr_rank(acr: &str) -> Option<usize> {
    ACR_VALUES.iter().position(|a| *a == acr)
}

pub(crate) const BROWSER_COOKIE: &str = "interkom_browser";
/// The upstream chosen last in this browser (shown first next time).
pub(crate) const IDP_COOKIE: &str = "interkom_idp";

const ACCESS_DENIED: &str = "the access policy does not permit this user to use this service";
const UNREACHABLE: &str =
    "this service's protection need requires a level of assurance no available login method reaches";

/// A validated authorization request, kept while the user logs in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AuthRequest {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: Vec<String>,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) prompt_none: bool,
    pub(crate) prompt_login: bool,
    pub(crate) max_age: Option<i64>,
    pub(crate) login_hint: Option<String>,
    /// Lowest rank among the requested, known `acr_values`.
    pub(crate) min_acr: Option<usize>,
    pub(crate) ui_locales: Option<String>,
    /// The upstream to send the user to without asking (`idp_hint`).
    #[serde(default)]
    pub(crate) idp_hint: Option<String>,
}

enum Fail {
    /// Shown as a page: the redirect URI is not (yet) trusted.
    Page(
        StatusCode,
        fn(&crate::i18n::Texts) -> &'static str,
        Option<String>,
    ),
    /// Sent back to the verified redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
    Internal(GatewayError),
}

impl From<GatewayError> for Fail {
    fn from(e: GatewayError) -> Self {
        Fail::Internal(e)
    }
}

fn fail_response(gw: &Gateway, lang: Lang, f: Fail) -> Response {
    match f {
        Fail::Page(status, msg, code) => {
            web::error_page(gw, lang, status, msg(lang.texts()), code.as_deref())
        }
        Fail::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => error_redirect(gw, &redirect_uri, state.as_deref(), error, &description),
        Fail::Internal(e) => internal(gw, lang, e),
    }
}

pub(crate) fn internal(gw: &Gateway, lang: Lang, e: GatewayError) -> Response {
    tracing::error!(error = %e, "authorization failed internally");
    web::error_page(
        gw,
        lang,
        StatusCode::SERVICE_UNAVAILABLE,
        lang.texts().unavailable,
        None,
    )
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

fn error_redirect(
    gw: &Gateway,
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    web::see_other(&with_params(
        redirect_uri,
        &[
            ("error", Some(error)),
            ("error_description", Some(description)),
            ("state", state),
            ("iss", Some(gw.cfg.issuer_str())),
        ],
    ))
}

pub(crate) async fn authorize_get(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(gw, meta, headers, query.unwrap_or_default().as_bytes()).await
}

pub(crate) async fn authorize_post(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    authorize(gw, meta, headers, &body).await
}

async fn authorize(gw: Gateway, meta: Meta, headers: HeaderMap, raw: &[u8]) -> Response {
    let params = Params::parse(raw).ok();
    let ui = params
        .as_ref()
        .and_then(|p| p.get("ui_locales").ok().flatten().map(str::to_owned));
    let lang = Lang::negotiate(ui.as_deref(), meta.accept_language.as_deref());
    let Some(params) = params else {
        return web::error_page(
            &gw,
            lang,
            StatusCode::BAD_REQUEST,
            lang.texts().bad_request,
            None,
        );
    };
    let (client, req) = match validate(&gw, &params).await {
        Ok(v) => v,
        Err(f) => return fail_response(&gw, lang, f),
    };
    match proceed(&gw, &meta, &headers, lang, &client, req).await {
        Ok(r) => r,
        Err(f) => fail_response(&gw, lang, f),
    }
}

async fn validate(gw: &Gateway, p: &Params) -> Result<(Arc<Client>, AuthRequest), Fail> {
    let page = |m: fn(&crate::i18n::Texts) -> &'static str, code: &str| {
        Fail::Page(StatusCode::BAD_REQUEST, m, Some(code.to_owned()))
    };
    let client_id = p
        .get("client_id")
        .map_err(|_| page(|t| t.bad_request, "invalid_request: client_id repeated"))?
        .ok_or_else(|| page(|t| t.bad_client, "invalid_request: client_id missing"))?;
    let client = gw
        .client(client_id)
        .await?
        .ok_or_else(|| page(|t| t.bad_client, "invalid_client"))?;
    let redirect_uri = p
        .get("redirect_uri")
        .map_err(|_| page(|t| t.bad_redirect, "invalid_request: redirect_uri repeated"))?
        .ok_or_else(|| page(|t| t.bad_redirect, "invalid_request: redirect_uri missing"))?;
    // Exact string comparison, as registered (RFC 9700 §4.1.3).
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(page(
            |t| t.bad_redirect,
            "invalid_request: redirect_uri not registered",
        ));
    }
    let state = p.get("state").ok().flatten().map(str::to_owned);
    let fail = |error: &'static str, description: &str| Fail::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state.clone(),
        error,
        description: description.to_owned(),
    };
    let get = |name: &str| {
        p.get(name)
            .map_err(|e| fail("invalid_request", &e.description))
    };
    if p.pairs().iter().filter(|(k, _)| k == "state").count() > 1 {
        return Err(fail("invalid_request", "parameter `state` repeated"));
    }
    if get("request")?.is_some() {
        return Err(fail(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if get("request_uri")?.is_some() {
        return Err(fail(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    match get("response_type")? {
        None => return Err(fail("invalid_request", "response_type is missing")),
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ))
        }
    }
    if let Some(mode) = get("response_mode")? {
        if mode != "query" {
            return Err(fail(
                "invalid_request",
                "only response_mode=query is supported",
            ));
        }
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(fail(
            "unauthorized_client",
            "the client may not use the authorization code grant",
        ));
    }
    let scope: Vec<String> = get("scope")?
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(s) = scope
        .iter()
        .find(|s| !SUPPORTED_SCOPES.contains(&s.as_str()) || !client.scopes.contains(s))
    {
        return Err(fail(
            "invalid_scope",
            &format!("scope `{s}` is not available to this client"),
        ));
    }
    let code_challenge = get("code_challenge")?;
    let method = get("code_challenge_method")?;
    match (code_challenge, method) {
        (Some(c), Some("S256")) => {
            if c.len() != 43
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(fail(
                    "invalid_request",
                    "code_challenge must be a base64url SHA-256 value",
                ));
            }
        }
        (Some(_), None) | (Some(_), Some("plain")) => {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not allowed)",
            ))
        }
        (_, Some(_)) => {
            return Err(fail(
                "invalid_request",
                "unsupported or unused code_challenge_method",
            ))
        }
        (None, None) => {
            if client.is_public() {
                return Err(fail(
                    "invalid_request",
                    "PKCE (code_challenge with S256) is required for public clients",
                ));
            }
        }
    }
    let mut prompt_none = false;
    let mut prompt_login = false;
    if let Some(prompt) = get("prompt")? {
        for v in prompt.split(' ').filter(|v| !v.is_empty()) {
            match v {
                "none" => prompt_none = true,
                "login" | "select_account" => prompt_login = true,
                // First-party clients need no consent screen.
                "consent" => {}
                _ => {
                    return Err(fail(
                        "invalid_request",
                        &format!("unsupported prompt value `{v}`"),
                    ))
                }
            }
        }
        if prompt_none && prompt.split(' ').filter(|v| !v.is_empty()).count() > 1 {
            return Err(fail(
                "invalid_request",
                "prompt=none cannot be combined with other values",
            ));
        }
    }
    let max_age =
        match get("max_age")? {
            None => None,
            Some(v) => Some(v.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
                fail("invalid_request", "max_age must be a non-negative integer")
            })?),
        };
    let min_acr = get("acr_values")?.and_then(|v| v.split(' ').filter_map(acr_rank).min());
    let nonce = get("nonce")?.map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > 512)
        || state.as_ref().is_some_and(|s| s.len() > 2048)
    {
        return Err(fail("invalid_request", "state or nonce too long"));
    }
    let req = AuthRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope,
        state: state.clone(),
        nonce,
        code_challenge: code_challenge.map(str::to_owned),
        prompt_none,
        prompt_login,
        max_age,
        login_hint: get("login_hint")?.map(|h| h.chars().take(128).collect()),
        min_acr,
        ui_locales: get("ui_locales")?.map(str::to_owned),
        idp_hint: get("idp_hint")?.map(|h| h.chars().take(64).collect()),
    };
    Ok((client, req))
}

/// Decides between single sign-on, a step-up, the login form and an error.
async fn proceed(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    lang: Lang,
    client: &Client,
    req: AuthRequest,
) -> Result<Response, Fail> {
    let now = gw.clock.now();
    let session = match web::cookie(headers, SESSION_COOKIE) {
        Some(h) => accounts::session_by_handle(&gw.pool, &gw.master, &h, now).await?,
        None => None,
    };
    let redirect_fail = |error: &'static str, description: &str| Fail::Redirect {
        redirect_uri: req.redirect_uri.clone(),
        state: req.state.clone(),
        error,
        description: description.to_owned(),
    };
    let session =
        session.filter(|s| !req.prompt_login && req.max_age.is_none_or(|m| now - s.auth_time <= m));
    let browser = web::cookie(headers, BROWSER_COOKIE)
        .filter(|b| b.len() == 43)
        .unwrap_or_else(|| random_token(32));
    if let Some(s) = session {
        // Single sign-on still asks the policy: this client may need more
        // than the session offers.
        let p = Pending {
            user_id: s.user_id.clone(),
            acr: s.acr.clone(),
            amr: serde_json::from_str(&s.amr).unwrap_or_default(),
            auth_time: s.auth_time,
            sid: Some(s.sid.clone()),
            upstream: s.upstream.clone(),
            tried: Vec::new(),
            otp_failures: 0,
            offer: Vec::new(),
            passkey_state: None,
            upstream_token: None,
        };
        let step = stepup::plan(gw, Some(meta), &req, &p).await?;
        let need_interaction = !matches!(step, Step::Issue | Step::Deny | Step::Unmet);
        if need_interaction && req.prompt_none {
            return Err(redirect_fail(
                "unmet_authentication_requirements",
                "this service needs a further authentication and prompt=none forbids it",
            ));
        }
        match step {
            Step::Issue => {
                let mut conn = gw.pool.acquire().await.map_err(GatewayError::from)?;
                let code = issue_code(gw, &mut conn, &req, &s).await?;
                return Ok(code_redirect(gw, &req, &code));
            }
            Step::Deny => return Err(redirect_fail("access_denied", ACCESS_DENIED)),
            Step::Unmet => {
                return Err(redirect_fail(
                    "unmet_authentication_requirements",
                    UNREACHABLE,
                ))
            }
            // A fresh password login: the form below.
            Step::Password => {}
            Step::SecondFactor(offer) => {
                let mut p = p;
                p.offer = offer;
                let id = new_login_request(gw, &browser, &req, Some(&p)).await?;
                let mut res = stepup::second_factor_page(
                    gw,
                    lang,
                    StatusCode::OK,
                    client,
                    &id,
                    &browser,
                    &p,
                    None,
                )
                .await?;
                res.headers_mut().append(
                    header::SET_COOKIE,
                    web::set_cookie(gw, BROWSER_COOKIE, &browser, gw.cfg.login_request_ttl),
                );
                return Ok(res);
            }
            Step::Upstream {
                idp,
                acr_values,
                asked,
                fresh,
            } => {
                let id = new_login_request(gw, &browser, &req, Some(&p)).await?;
                let mut res = stepup::go_upstream(
                    gw,
                    meta,
                    lang,
                    &id,
                    &browser,
                    &req,
                    client,
                    &idp,
                    &acr_values,
                    Some(asked),
                    fresh,
                )
                .await?;
                res.headers_mut().append(
                    header::SET_COOKIE,
                    web::set_cookie(gw, BROWSER_COOKIE, &browser, gw.cfg.login_request_ttl),
                );
                return Ok(res);
            }
        }
    }
    if req.prompt_none {
        return Err(redirect_fail("login_required", "the user must log in"));
    }
    let id = new_login_request(gw, &browser, &req, None).await?;
    // Home-realm discovery: `idp_hint`, or a `login_hint` in a domain of
    // one upstream, goes there directly.
    let idps = upstream::upstreams(gw).await?;
    let mut res = match upstream::chosen(&idps, &req) {
        Some(idp) => {
            stepup::go_upstream(
                gw,
                meta,
                lang,
                &id,
                &browser,
                &req,
                client,
                idp,
                &[],
                None,
                false,
            )
            .await?
        }
        None => login_page(
            gw,
            lang,
            StatusCode::OK,
            client,
            &id,
            &browser,
            req.login_hint
                .as_deref()
                .filter(|h| upstream::hint_domain(h).is_none()),
            None,
            &Chooser::new(&idps, web::cookie(headers, IDP_COOKIE).as_deref(), None),
        ),
    };
    res.headers_mut().append(
        header::SET_COOKIE,
        web::set_cookie(gw, BROWSER_COOKIE, &browser, gw.cfg.login_request_ttl),
    );
    Ok(res)
}

/// Stores a login request bound to this browser; returns its id.
async fn new_login_request(
    gw: &Gateway,
    browser: &str,
    req: &AuthRequest,
    pending: Option<&Pending>,
) -> Result<String, GatewayError> {
    let id = random_token(24);
    let pending = match pending {
        Some(p) => Some(serde_json::to_string(p)?),
        None => None,
    };
    sqlx::query(
        "INSERT INTO login_requests (id, csrf_hash, params, expires_at, pending) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(gw.master.keyed_hash(browser))
    .bind(serde_json::to_string(req)?)
    .bind(gw.clock.now() + gw.cfg.login_request_ttl)
    .bind(pending)
    .execute(&gw.pool)
    .await?;
    Ok(id)
}

/// A login request that has not expired, with what it has established.
pub(crate) async fn login_request(
    gw: &Gateway,
    id: &str,
    now: i64,
) -> Result<Option<(AuthRequest, Option<Pending>)>, GatewayError> {
    let row: Option<(String, i64, Option<String>)> =
        sqlx::query_as("SELECT params, expires_at, pending FROM login_requests WHERE id = $1")
            .bind(id)
            .fetch_optional(&gw.pool)
            .await?;
    let Some((params, expires_at, pending)) = row.filter(|r| r.1 > now) else {
        return Ok(None);
    };
    let _ = expires_at;
    let Ok(req) = serde_json::from_str::<AuthRequest>(&params) else {
        return Ok(None);
    };
    let pending = pending.and_then(|p| serde_json::from_str(&p).ok());
    Ok(Some((req, pending)))
}

/// A form posted within a login in progress (password, choice of IdP,
/// second factor): its own fields and the login request it names, checked
/// against this browser.
pub(crate) struct Posted<T> {
    pub(crate) form: T,
    pub(crate) lr: String,
    pub(crate) browser: String,
    pub(crate) req: AuthRequest,
    pub(crate) pending: Option<Pending>,
    pub(crate) client: Arc<Client>,
    /// The request's language (`ui_locales`, else `Accept-Language`).
    pub(crate) lang: Lang,
}

/// The fields every such form carries.
#[derive(Deserialize)]
struct Binding {
    login_request: Option<String>,
    csrf_token: Option<String>,
}

/// Parses a form of a login in progress and checks its binding: the login
/// request exists and is this browser's, and the CSRF token is derived from
/// both. Otherwise the page to answer with.
pub(crate) async fn posted<T: serde::de::DeserializeOwned>(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Posted<T>, Response> {
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    let bad = |status, m: fn(&crate::i18n::Texts) -> &'static str| {
        web::error_page(gw, lang, status, m(lang.texts()), None)
    };
    let (Ok(form), Ok(binding)) = (
        serde_urlencoded::from_bytes::<T>(body),
        serde_urlencoded::from_bytes::<Binding>(body),
    ) else {
        return Err(bad(StatusCode::BAD_REQUEST, |t| t.bad_request));
    };
    let (Some(lr), Some(csrf)) = (binding.login_request, binding.csrf_token) else {
        return Err(bad(StatusCode::BAD_REQUEST, |t| t.expired));
    };
    let now = gw.clock.now();
    let row: Option<(String,)> =
        sqlx::query_as("SELECT csrf_hash FROM login_requests WHERE id = $1 AND expires_at > $2")
            .bind(&lr)
            .bind(now)
            .fetch_optional(&gw.pool)
            .await
            .map_err(|e| internal(gw, lang, e.into()))?;
    let Some((browser_hash,)) = row else {
        return Err(bad(StatusCode::BAD_REQUEST, |t| t.expired));
    };
    // CSRF: the form's token must be derived from this browser's cookie and
    // this login request, and the request must belong to this browser.
    let browser = web::cookie(headers, BROWSER_COOKIE).unwrap_or_default();
    if browser.is_empty()
        || !ct_eq(&gw.master.keyed_hash(&browser), &browser_hash)
        || !ct_eq(&csrf_token(gw, &browser, &lr), &csrf)
    {
        return Err(bad(StatusCode::FORBIDDEN, |t| t.expired));
    }
    let Some((req, pending)) = login_request(gw, &lr, now)
        .await
        .map_err(|e| internal(gw, lang, e))?
    else {
        return Err(bad(StatusCode::BAD_REQUEST, |t| t.expired));
    };
    let client = match gw.client(&req.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(bad(StatusCode::BAD_REQUEST, |t| t.bad_client)),
        Err(e) => return Err(internal(gw, lang, e)),
    };
    let lang = Lang::negotiate(req.ui_locales.as_deref(), meta.accept_language.as_deref());
    Ok(Posted {
        form,
        lr,
        browser,
        req,
        pending,
        client,
        lang,
    })
}

/// The page for a form that does not fit the login's state (sent twice,
/// or at a step the login is not at).
pub(crate) fn out_of_step(gw: &Gateway, lang: Lang) -> Response {
    web::error_page(
        gw,
        lang,
        StatusCode::BAD_REQUEST,
        lang.texts().expired,
        None,
    )
}

/// The upstreams offered on the login page.
#[derive(Serialize)]
pub(crate) struct Chooser {
    idps: Vec<IdpEntry>,
    query: String,
    /// Upstreams exist at all (the section is shown).
    any: bool,
}

#[derive(Serialize)]
struct IdpEntry {
    id: String,
    name: String,
    last: bool,
}

impl Chooser {
    /// The upstreams matching `query` (name, id or domain), the one chosen
    /// last first.
    pub(crate) fn new(
        list: &[Arc<upstream::Upstream>],
        last: Option<&str>,
        query: Option<&str>,
    ) -> Chooser {
        let q = query.unwrap_or("").trim().to_lowercase();
        let mut idps: Vec<IdpEntry> = list
            .iter()
            .filter(|u| {
                q.is_empty()
                    || u.cfg.name.to_lowercase().contains(&q)
                    || u.cfg.id.contains(&q)
                    || u.cfg.domains.iter().any(|d| d.to_lowercase().contains(&q))
            })
            .map(|u| IdpEntry {
                id: u.cfg.id.clone(),
                name: u.cfg.name.clone(),
                last: Some(u.cfg.id.as_str()) == last,
            })
            .collect();
        idps.sort_by_key(|e| !e.last);
        Chooser {
            idps,
            query: query.unwrap_or("").chars().take(100).collect(),
            any: !list.is_empty(),
        }
    }
}

pub(crate) fn csrf_token(gw: &Gateway, browser: &str, login_request: &str) -> String {
    gw.master
        .keyed_hash(&format!("csrf|{browser}|{login_request}"))
}

#[allow(clippy::too_many_arguments)]
fn login_page(
    gw: &Gateway,
    lang: Lang,
    status: StatusCode,
    client: &Client,
    login_request: &str,
    browser: &str,
    username: Option<&str>,
    error: Option<&str>,
    chooser: &Chooser,
) -> Response {
    web::page(
        gw,
        status,
        "login.html",
        minijinja::context! {
            lang => lang.code(),
            base => gw.cfg.base_path(),
            t => minijinja::Value::from_serialize(lang.texts()),
            client_name => &client.name,
            login_request => login_request,
            csrf_token => csrf_token(gw, browser, login_request),
            username => username.unwrap_or(""),
            error => error,
            chooser => minijinja::Value::from_serialize(chooser),
        },
    )
}

/// Stores a new authorization code for the session (on the caller's
/// connection or transaction) and returns it.
async fn issue_code(
    gw: &Gateway,
    conn: &mut sqlx::AnyConnection,
    req: &AuthRequest,
    s: &Session,
) -> Result<String, GatewayError> {
    let now = gw.clock.now();
    let code = random_token(32);
    sqlx::query(
        "INSERT INTO auth_codes (code_hash, client_id, redirect_uri, user_id, sid, scope, nonce, code_challenge, \
         auth_time, acr, amr, family_id, expires_at, used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL)",
    )
    .bind(gw.master.keyed_hash(&code))
    .bind(&req.client_id)
    .bind(&req.redirect_uri)
    .bind(&s.user_id)
    .bind(&s.sid)
    .bind(req.scope.join(" "))
    .bind(&req.nonce)
    .bind(&req.code_challenge)
    .bind(s.auth_time)
    .bind(&s.acr)
    .bind(&s.amr)
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(now + gw.cfg.code_ttl)
    .execute(conn)
    .await?;
    Ok(code)
}

/// Sends the browser back to the client with the code, `state` and `iss`.
fn code_redirect(gw: &Gateway, req: &AuthRequest, code: &str) -> Response {
    web::see_other(&with_params(
        &req.redirect_uri,
        &[
            ("code", Some(code)),
            ("state", req.state.as_deref()),
            ("iss", Some(gw.cfg.issuer_str())),
        ],
    ))
}

#[derive(Deserialize)]
struct LoginForm {
    username: Option<String>,
    password: Option<String>,
}

/// `POST /login`: checks the CSRF binding, then the password.
pub(crate) async fn login(
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
    } = match posted::<LoginForm>(&gw, &meta, &headers, &body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    // A login past its first factor takes no password any more.
    if pending.is_some() {
        return out_of_step(&gw, lang);
    }
    let now = gw.clock.now();
    let username = form.username.unwrap_or_default();
    let password = form.password.unwrap_or_default();
    let user = if username.is_empty() || username.len() > 128 {
        None
    } else {
        match accounts::user_by_username(&gw.pool, &username).await {
            Ok(u) => u,
            Err(e) => return internal(&gw, lang, e),
        }
    };
    let user = user.filter(|u| u.disabled == 0);
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
        match throttle::begin(&gw.pool, cfg, &account_key, source_key.as_deref(), now).await {
            Ok(a) => a,
            Err(e) => return internal(&gw, lang, e),
        };
    // The hash is checked even when locked: the answer takes as long.
    let ok = gw
        .hasher
        .verify(
            user.as_ref().and_then(|u| u.password_hash.clone()),
            password,
        )
        .await;
    let user = match (ok && !attempt.locked, user) {
        (true, Some(u)) => {
            if let Err(e) =
                throttle::succeeded(&gw.pool, &account_key, source_key.as_deref(), now).await
            {
                return internal(&gw, lang, e);
            }
            u
        }
        (_, user) => {
            match throttle::failed(
                &gw.pool,
                cfg,
                &attempt,
                ok && user.is_some(),
                &account_key,
                source_key.as_deref(),
                now,
            )
            .await
            {
                Ok(locks) => {
                    for (scope, until) in locks {
                        let ev = AuditEvent::new(Action::LoginLocked, Outcome::Denied)
                            .client(&client.id)
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
                        if let Err(e) = gw.audit.append(ev).await {
                            return internal(&gw, lang, e.into());
                        }
                    }
                }
                Err(e) => return internal(&gw, lang, e),
            }
            let delay = attempt.delay(cfg);
            let mut ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
                .client(&client.id)
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
            if let Err(e) = gw.audit.append(ev).await {
                return internal(&gw, lang, e.into());
            }
            tokio::time::sleep(delay).await;
            let idps = match upstream::upstreams(&gw).await {
                Ok(l) => l,
                Err(e) => return internal(&gw, lang, e),
            };
            return login_page(
                &gw,
                lang,
                StatusCode::UNAUTHORIZED,
                &client,
                &lr,
                &browser,
                Some(&username),
                Some(lang.texts().login_failed),
                &Chooser::new(&idps, web::cookie(&headers, IDP_COOKIE).as_deref(), None),
            );
        }
    };
    let p = Pending {
        user_id: user.id.clone(),
        acr: ACR_LOW.to_owned(),
        amr: vec!["pwd".to_owned()],
        auth_time: now,
        sid: None,
        upstream: None,
        tried: vec!["password".to_owned()],
        otp_failures: 0,
        offer: Vec::new(),
        passkey_state: None,
        upstream_token: None,
    };
    match stepup::advance(&gw, &meta, lang, &lr, &browser, &req, &client, p).await {
        Ok(r) => r,
        Err(e) => internal(&gw, lang, e),
    }
}

#[derive(Deserialize)]
struct IdpForm {
    /// The upstream chosen (a button).
    idp: Option<String>,
    /// A search for one.
    q: Option<String>,
}

/// `POST /login/idp`: the user chose their Kommune's IdP, or searched.
pub(crate) async fn choose_idp(
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
    } = match posted::<IdpForm>(&gw, &meta, &headers, &body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    // A step-up goes where `stepup` decides, not where the form says.
    if pending.is_some() {
        return out_of_step(&gw, lang);
    }
    let idps = match upstream::upstreams(&gw).await {
        Ok(l) => l,
        Err(e) => return internal(&gw, lang, e),
    };
    if let Some(id) = &form.idp {
        let Some(idp) = idps.iter().find(|u| &u.cfg.id == id) else {
            return web::error_page(
                &gw,
                lang,
                StatusCode::BAD_REQUEST,
                lang.texts().bad_request,
                None,
            );
        };
        return match stepup::go_upstream(
            &gw,
            &meta,
            lang,
            &lr,
            &browser,
            &req,
            &client,
            idp,
            &[],
            None,
            false,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => internal(&gw, lang, e),
        };
    }
    login_page(
        &gw,
        lang,
        StatusCode::OK,
        &client,
        &lr,
        &browser,
        None,
        None,
        &Chooser::new(
            &idps,
            web::cookie(&headers, IDP_COOKIE).as_deref(),
            form.q.as_deref(),
        ),
    )
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

/// How a login ends for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginOutcome {
    Issue,
    Deny,
    Unmet,
}

/// Ends a login: the login request is used up, the session is created (or
/// the stepped-up one gets its new level and a new handle), the code is
/// issued or the client told why not.
pub(crate) async fn finish_login(
    gw: &Gateway,
    meta: &Meta,
    lr: &str,
    req: &AuthRequest,
    client: &Client,
    p: &Pending,
    outcome: LoginOutcome,
) -> Result<Response, GatewayError> {
    let user = accounts::user_by_id(&gw.pool, &p.user_id)
        .await?
        .filter(|u| u.disabled == 0);
    // Locked while the login was under way: it ends here.
    let Some(user) = user else {
        sqlx::query("DELETE FROM login_requests WHERE id = $1")
            .bind(lr)
            .execute(&gw.pool)
            .await?;
        return Ok(error_redirect(
            gw,
            &req.redirect_uri,
            req.state.as_deref(),
            "access_denied",
            "the account is locked",
        ));
    };
    let amr: Vec<&str> = p.amr.iter().map(String::as_str).collect();
    // One transaction: the login request is used up, the session and the
    // code are created, or nothing happens.
    let mut tx = gw.pool.begin().await?;
    // Single use: a second submission of the same form finds nothing.
    let deleted = sqlx::query("DELETE FROM login_requests WHERE id = $1")
        .bind(lr)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(GatewayError::Invalid("login request used twice".into()));
    }
    // A step-up keeps the session (and its sid) with a new handle; a
    // login starts a new one (no session fixation either way).
    let stepped = match &p.sid {
        Some(sid) => {
            accounts::step_up_session(
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
            return Ok(error_redirect(
                gw,
                &req.redirect_uri,
                req.state.as_deref(),
                "login_required",
                "the session ended during the step-up",
            ));
        }
        None => {
            accounts::create_session(
                gw,
                &mut tx,
                &user.id,
                &p.acr,
                &amr,
                p.auth_time,
                p.upstream.as_deref(),
            )
            .await?
        }
    };
    if let Some(t) = &p.upstream_token {
        sqlx::query("UPDATE sessions SET upstream_token = $1 WHERE sid = $2")
            .bind(t)
            .bind(&session.sid)
            .execute(&mut *tx)
            .await?;
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
        (None, LoginOutcome::Deny) => error_redirect(
            gw,
            &req.redirect_uri,
            req.state.as_deref(),
            "access_denied",
            ACCESS_DENIED,
        ),
        (None, _) => error_redirect(
            gw,
            &req.redirect_uri,
            req.state.as_deref(),
            "unmet_authentication_requirements",
            UNREACHABLE,
        ),
    };
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        web::set_cookie(gw, SESSION_COOKIE, &handle, gw.cfg.session_ttl),
    );
    Ok(res.into_response())
}
