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
use axum::response::Response;
use interkom_directory::applications::LOGIN_CLIENT_PREFIX;
use interkom_directory::crypto::random_token;
use interkom_directory::{Client, GrantType, SUPPORTED_SCOPES};
use interkom_types::Loa;
use serde::Deserialize;

use crate::error::ErrorCode;
use crate::i18n::{Lang, LangTexts};
use crate::login::pages::{self, Chooser};
use crate::login::plan::Step;
use crate::login::state::{self, AuthRequest, Login, LoginRequest, Posted, BROWSER_COOKIE};
use crate::login::{consent, flow, leistung};
use crate::params::Params;
use crate::session::{self, SESSION_COOKIE};
use crate::sources::oidc::{self, IDP_COOKIE};
use crate::sources::{self, DirectoryLogin, LocalPassword, PasswordSource};
use crate::web::{self, Meta};
use crate::{Gateway, GatewayError};

/// The scope that asks for a refresh token (OIDC Core §11).
const OFFLINE_ACCESS: &str = "offline_access";

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
        error: ErrorCode,
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
        } => flow::error_redirect(gw, &redirect_uri, state.as_deref(), error, &description),
        Fail::Internal(e) => web::internal(gw, lang, e),
    }
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

/// Starts the one login flow for a request another answering protocol
/// validated itself (a SAML AuthnRequest), as if it had come here.
pub(crate) async fn begin(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    lang: Lang,
    client: Arc<Client>,
    req: AuthRequest,
) -> Response {
    match proceed(gw, meta, headers, lang, client, req).await {
        Ok(r) => r,
        Err(f) => fail_response(gw, lang, f),
    }
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
    match proceed(&gw, &meta, &headers, lang, client, req).await {
        Ok(r) => r,
        Err(f) => fail_response(&gw, lang, f),
    }
}

async fn validate(gw: &Gateway, p: &Params) -> Result<(Arc<Client>, AuthRequest), Fail> {
    let (client, redirect_uri) = trusted_client(gw, p).await?;
    let state = p.get("state").ok().flatten().map(str::to_owned);
    let r = Redirected {
        p,
        redirect_uri,
        state: state.clone(),
    };
    if p.pairs().iter().filter(|(k, _)| k == "state").count() > 1 {
        return Err(r.fail(ErrorCode::InvalidRequest, "parameter `state` repeated"));
    }
    r.check_response_type(&client)?;
    let scope = r.scope(&client)?;
    let code_challenge = r.pkce(&client)?;
    let (prompt_none, prompt_login, prompt_consent) = r.prompt()?;
    let max_age = match r.get("max_age")? {
        None => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
            r.fail(
                ErrorCode::InvalidRequest,
                "max_age must be a non-negative integer",
            )
        })?),
    };
    let min_acr = r
        .get("acr_values")?
        .and_then(|v| v.split(' ').filter_map(Loa::from_acr).min());
    let nonce = r.get("nonce")?.map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > 512)
        || state.as_ref().is_some_and(|s| s.len() > 2048)
    {
        return Err(r.fail(ErrorCode::InvalidRequest, "state or nonce too long"));
    }
    let req = AuthRequest {
        client_id: client.id.clone(),
        redirect_uri: r.redirect_uri.to_owned(),
        scope,
        state,
        nonce,
        code_challenge,
        prompt_none,
        prompt_login,
        prompt_consent,
        max_age,
        login_hint: r.get("login_hint")?.map(|h| h.chars().take(128).collect()),
        min_acr,
        ui_locales: r.get("ui_locales")?.map(str::to_owned),
        idp_hint: r.get("idp_hint")?.map(|h| h.chars().take(64).collect()),
        action: login_action(&client, r.get("interkom_action")?),
    };
    Ok((client, req))
}

/// The action a login is decided for: for a protected application's
/// login client the request's (`read` unless a valid name is given; its
/// every later request is decided again anyway), else `login`.
fn login_action(client: &Client, asked: Option<&str>) -> Option<String> {
    if !client.id.starts_with(LOGIN_CLIENT_PREFIX) {
        return None;
    }
    let valid = |a: &&str| {
        !a.is_empty()
            && a.len() <= 64
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    Some(asked.filter(valid).unwrap_or("read").to_owned())
}

/// The client and its exact redirect URI (RFC 9700 §4.1.3); until both
/// are verified, errors are a page and nobody is redirected.
async fn trusted_client<'p>(gw: &Gateway, p: &'p Params) -> Result<(Arc<Client>, &'p str), Fail> {
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
    // Exact string comparison, as registered.
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(page(
            |t| t.bad_redirect,
            "invalid_request: redirect_uri not registered",
        ));
    }
    Ok((client, redirect_uri))
}

/// The rest of an authorization request, once its redirect URI is
/// verified: every error goes back there with `state`.
struct Redirected<'p> {
    p: &'p Params,
    redirect_uri: &'p str,
    state: Option<String>,
}

impl<'p> Redirected<'p> {
    fn fail(&self, error: ErrorCode, description: &str) -> Fail {
        Fail::Redirect {
            redirect_uri: self.redirect_uri.to_owned(),
            state: self.state.clone(),
            error,
            description: description.to_owned(),
        }
    }

    fn get(&self, name: &str) -> Result<Option<&'p str>, Fail> {
        self.p
            .get(name)
            .map_err(|e| self.fail(ErrorCode::InvalidRequest, &e.description))
    }

    /// `code` only, in the query; no request objects; the grant allowed.
    fn check_response_type(&self, client: &Client) -> Result<(), Fail> {
        if self.get("request")?.is_some() {
            return Err(self.fail(
                ErrorCode::RequestNotSupported,
                "request objects are not supported",
            ));
        }
        if self.get("request_uri")?.is_some() {
            return Err(self.fail(
                ErrorCode::RequestUriNotSupported,
                "request_uri is not supported",
            ));
        }
        match self.get("response_type")? {
            None => return Err(self.fail(ErrorCode::InvalidRequest, "response_type is missing")),
            Some("code") => {}
            Some(_) => {
                return Err(self.fail(
                    ErrorCode::UnsupportedResponseType,
                    "only response_type=code is supported",
                ))
            }
        }
        if let Some(mode) = self.get("response_mode")? {
            if mode != "query" {
                return Err(self.fail(
                    ErrorCode::InvalidRequest,
                    "only response_mode=query is supported",
                ));
            }
        }
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(self.fail(
                ErrorCode::UnauthorizedClient,
                "the client may not use the authorization code grant",
            ));
        }
        Ok(())
    }

    /// The scopes asked for: each known and allowed to this client.
    fn scope(&self, client: &Client) -> Result<Vec<String>, Fail> {
        let mut scope: Vec<String> = self
            .get("scope")?
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        // `offline_access` (OIDC Core §11) asks for a refresh token: granted
        // with the refresh_token grant, and ignored, not failed, without it.
        let offline = client.allows(GrantType::RefreshToken);
        scope.retain(|s| s != OFFLINE_ACCESS || offline);
        if let Some(s) = scope.iter().find(|s| {
            !SUPPORTED_SCOPES.contains(&s.as_str())
                || !(client.scopes.contains(s) || *s == OFFLINE_ACCESS)
        }) {
            return Err(self.fail(
                ErrorCode::InvalidScope,
                &format!("scope `{s}` is not available to this client"),
            ));
        }
        Ok(scope)
    }

    /// PKCE: S256 only, required for public clients.
    fn pkce(&self, client: &Client) -> Result<Option<String>, Fail> {
        let code_challenge = self.get("code_challenge")?;
        match (code_challenge, self.get("code_challenge_method")?) {
            (Some(c), Some("S256")) => {
                if c.len() != 43
                    || !c
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(self.fail(
                        ErrorCode::InvalidRequest,
                        "code_challenge must be a base64url SHA-256 value",
                    ));
                }
            }
            (Some(_), None) | (Some(_), Some("plain")) => {
                return Err(self.fail(
                    ErrorCode::InvalidRequest,
                    "code_challenge_method must be S256 (plain is not allowed)",
                ))
            }
            (_, Some(_)) => {
                return Err(self.fail(
                    ErrorCode::InvalidRequest,
                    "unsupported or unused code_challenge_method",
                ))
            }
            (None, None) => {
                if client.is_public() {
                    return Err(self.fail(
                        ErrorCode::InvalidRequest,
                        "PKCE (code_challenge with S256) is required for public clients",
                    ));
                }
            }
        }
        Ok(code_challenge.map(str::to_owned))
    }

    /// `prompt`: (none, login, consent); `consent` asks again, except at
    /// a first-party client, which never asks.
    fn prompt(&self) -> Result<(bool, bool, bool), Fail> {
        let (mut none, mut login, mut consent) = (false, false, false);
        let Some(prompt) = self.get("prompt")? else {
            return Ok((none, login, consent));
        };
        for v in prompt.split(' ').filter(|v| !v.is_empty()) {
            match v {
                "none" => none = true,
                "login" | "select_account" => login = true,
                "consent" => consent = true,
                _ => {
                    return Err(self.fail(
                        ErrorCode::InvalidRequest,
                        &format!("unsupported prompt value `{v}`"),
                    ))
                }
            }
        }
        if none && prompt.split(' ').filter(|v| !v.is_empty()).count() > 1 {
            return Err(self.fail(
                ErrorCode::InvalidRequest,
                "prompt=none cannot be combined with other values",
            ));
        }
        Ok((none, login, consent))
    }
}

/// Decides between single sign-on, a step-up, the login form and an error.
async fn proceed(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    lang: Lang,
    client: Arc<Client>,
    req: AuthRequest,
) -> Result<Response, Fail> {
    let now = gw.clock.now();
    let session = match web::cookie(headers, SESSION_COOKIE) {
        Some(h) => session::session_by_handle(gw, &h, now).await?,
        None => None,
    };
    let redirect_fail = |error: ErrorCode, description: &str| Fail::Redirect {
        redirect_uri: req.redirect_uri.clone(),
        state: req.state.clone(),
        error,
        description: description.to_owned(),
    };
    let session =
        session.filter(|s| !req.prompt_login && req.max_age.is_none_or(|m| now - s.auth_time <= m));
    // A staff session is no login for a Leistung, a citizen's none for a
    // Fachverfahren or a business's Leistung: such a login starts afresh.
    let session = match (
        session,
        gw.policy.snapshot().leistung_for_client(&req.client_id),
    ) {
        // People come only from SAML sources: other sessions are staff's.
        (Some(s), None)
            if !s
                .upstream
                .as_deref()
                .is_some_and(|u| u.starts_with(sources::saml::UPSTREAM_PREFIX)) =>
        {
            Some(s)
        }
        (Some(s), leistung) => {
            let population = gw
                .dir
                .user(&s.user_id)
                .await
                .map_err(GatewayError::from)?
                .map(|u| u.population);
            let fits = match (population.as_deref(), leistung) {
                (Some("staff"), None) => true,
                (Some(p), Some(l)) => interkom_policy::Population::parse(p)
                    .is_some_and(|p| l.populations.contains(&p)),
                _ => false,
            };
            fits.then_some(s)
        }
        (None, _) => None,
    };
    let browser = web::cookie(headers, BROWSER_COOKIE)
        .filter(|b| b.len() == 43)
        .unwrap_or_else(|| random_token(32));
    let last_idp = web::cookie(headers, IDP_COOKIE);
    let mut res = match session {
        // Single sign-on still asks the policy: this client may need more
        // than the session offers.
        Some(s) => {
            let p = Login::from_session(&s);
            let step = flow::plan(gw, Some(meta), &req, &p).await?;
            let need_interaction = !matches!(step, Step::Issue | Step::Deny | Step::Unmet);
            if need_interaction && req.prompt_none {
                return Err(redirect_fail(
                    ErrorCode::UnmetAuthenticationRequirements,
                    "this service needs a further authentication and prompt=none forbids it",
                ));
            }
            let consent = step == Step::Issue && consent::needed(gw, &client, &p, &req).await?;
            if consent && req.prompt_none {
                return Err(redirect_fail(
                    ErrorCode::ConsentRequired,
                    "the user has not agreed that this service receives their data",
                ));
            }
            match step {
                Step::Issue if consent => {
                    let at = new_login(gw, &browser, req, client, lang, Some(&p)).await?;
                    state::save(gw, &at.lr, &p).await?;
                    pages::consent_page(gw, &at)
                }
                Step::Issue => {
                    let mut conn = gw.store.acquire().await.map_err(GatewayError::from)?;
                    let code = flow::issue_code(gw, &mut conn, &req, &s).await?;
                    return Ok(flow::code_redirect(gw, &req, &code));
                }
                Step::Deny => {
                    return Err(redirect_fail(ErrorCode::AccessDenied, flow::ACCESS_DENIED))
                }
                Step::Unmet => {
                    return Err(redirect_fail(
                        ErrorCode::UnmetAuthenticationRequirements,
                        flow::UNREACHABLE,
                    ))
                }
                // A fresh password login: the form.
                // A fresh login, as if there were no session.
                Step::Password => {
                    new_login_page(gw, meta, &browser, req, client, lang, last_idp).await?
                }
                Step::SecondFactor(offer) => {
                    let mut p = p;
                    p.offer = offer.into_iter().map(str::to_owned).collect();
                    let at = new_login(gw, &browser, req, client, lang, Some(&p)).await?;
                    pages::second_factor_page(gw, &at, StatusCode::OK, &p, None)
                }
                Step::Upstream { id, asked, fresh } => {
                    let at = new_login(gw, &browser, req, client, lang, Some(&p)).await?;
                    flow::go_upstream(gw, meta, &at, &id, Some(asked), fresh).await?
                }
            }
        }
        None => {
            if req.prompt_none {
                return Err(redirect_fail(
                    ErrorCode::LoginRequired,
                    "the user must log in",
                ));
            }
            new_login_page(gw, meta, &browser, req, client, lang, last_idp).await?
        }
    };
    res.headers_mut().append(
        header::SET_COOKIE,
        web::set_cookie(gw, BROWSER_COOKIE, &browser, gw.cfg.login_request_ttl),
    );
    Ok(res)
}

/// A new login: home-realm discovery (`idp_hint`, or a `login_hint` in a
/// domain of one upstream, goes there directly), else the login form.
async fn new_login_page(
    gw: &Gateway,
    meta: &Meta,
    browser: &str,
    req: AuthRequest,
    client: Arc<Client>,
    lang: Lang,
    last_idp: Option<String>,
) -> Result<Response, GatewayError> {
    // A Leistung: its own page, with the sources that reach its level.
    if let Some(l) = gw.policy.snapshot().leistung_for_client(&req.client_id) {
        let at = new_login(gw, browser, req, client, lang, None).await?;
        return leistung::page(gw, &at, l, StatusCode::OK, None, None).await;
    }
    let idps = gw.dir.upstreams().await?;
    let chosen = oidc::chosen(&idps, &req).map(|u| u.cfg.id.clone());
    let at = new_login(gw, browser, req, client, lang, None).await?;
    match chosen {
        Some(id) => flow::go_upstream(gw, meta, &at, &id, None, false).await,
        None => flow::password_form(gw, meta, &at, last_idp).await,
    }
}

/// A new login request of this browser for `req`.
async fn new_login(
    gw: &Gateway,
    browser: &str,
    req: AuthRequest,
    client: Arc<Client>,
    lang: Lang,
    p: Option<&Login>,
) -> Result<LoginRequest, GatewayError> {
    let lr = state::new_login_request(gw, browser, &req, p).await?;
    Ok(LoginRequest {
        lr,
        browser: browser.to_owned(),
        req,
        client,
        lang,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    username: Option<String>,
    password: Option<String>,
    /// The directory chosen on the login page.
    directory: Option<String>,
}

/// `POST /login`: checks the CSRF binding, then the password.
pub(crate) async fn login(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Posted { form, at, pending } =
        match state::posted::<LoginForm>(&gw, &meta, &headers, &body).await {
            Ok(p) => p,
            Err(r) => return r,
        };
    // A login past its first factor takes no password any more.
    if pending.is_some() {
        return state::out_of_step(&gw, at.lang);
    }
    let username = form.username.unwrap_or_default();
    let password = form.password.unwrap_or_default();
    let checked = match sources::password_source(&gw, form.directory.as_deref(), &username).await {
        Ok(PasswordSource::Local) => {
            let source = LocalPassword {
                last_idp: web::cookie(&headers, IDP_COOKIE),
            };
            source.verify(&gw, &meta, &at, &username, password).await
        }
        Ok(PasswordSource::Directory(d)) => {
            DirectoryLogin(d)
                .verify(&gw, &meta, &at, &username, password)
                .await
        }
        Ok(PasswordSource::Unknown) => {
            return web::error_page(
                &gw,
                at.lang,
                StatusCode::BAD_REQUEST,
                at.lang.texts().bad_request,
                None,
            )
        }
        Err(e) => Err(e),
    };
    flow::go_on(&gw, &meta, &at, checked).await
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
    let Posted { form, at, pending } =
        match state::posted::<IdpForm>(&gw, &meta, &headers, &body).await {
            Ok(p) => p,
            Err(r) => return r,
        };
    let lang = at.lang;
    // A step-up goes where the planner decides, not where the form says.
    if pending.is_some() {
        return state::out_of_step(&gw, lang);
    }
    let idps = match gw.dir.upstreams().await {
        Ok(l) => l,
        Err(e) => return web::internal(&gw, lang, e.into()),
    };
    let dirs = match gw.dir.directory_sources().await {
        Ok(l) => l,
        Err(e) => return web::internal(&gw, lang, e.into()),
    };
    if let Some(id) = form
        .idp
        .as_deref()
        .and_then(|i| i.strip_prefix(pages::DIRECTORY_CHOICE))
    {
        let Some(d) = dirs.iter().find(|d| d.cfg.id == id) else {
            return web::error_page(
                &gw,
                lang,
                StatusCode::BAD_REQUEST,
                lang.texts().bad_request,
                None,
            );
        };
        return flow::go_to(&gw, &meta, &at, &DirectoryLogin(d.clone()), None, false)
            .await
            .unwrap_or_else(|e| web::internal(&gw, lang, e));
    }
    if let Some(id) = &form.idp {
        if !idps.iter().any(|u| &u.cfg.id == id) {
            return web::error_page(
                &gw,
                lang,
                StatusCode::BAD_REQUEST,
                lang.texts().bad_request,
                None,
            );
        }
        return flow::go_upstream(&gw, &meta, &at, id, None, false)
            .await
            .unwrap_or_else(|e| web::internal(&gw, lang, e));
    }
    pages::login_form(
        &gw,
        &at,
        StatusCode::OK,
        None,
        None,
        &Chooser::new(
            &idps,
            &dirs,
            web::cookie(&headers, IDP_COOKIE).as_deref(),
            form.q.as_deref(),
        ),
    )
}
