//! The state of a login in progress: the pending authorization request,
//! what the login has established so far ([`Login`]), kept with the login
//! request in the database between steps (any node takes the next step),
//! and the binding of every form of the login to this browser (CSRF).

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use interkom_directory::Client;
use interkom_types::{AccountId, ClientId, Loa};
use serde::{Deserialize, Serialize};

use crate::i18n::{Lang, LangTexts};
use crate::store::NewLoginRequest;
use crate::web::{self, Meta};
use crate::{Gateway, GatewayError};
use interkom_directory::crypto::{ct_eq, random_token};

/// The cookie that binds a login request to this browser.
pub(crate) const BROWSER_COOKIE: &str = "interkom_browser";

/// A validated authorization request, kept while the user logs in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AuthRequest {
    pub(crate) client_id: ClientId,
    pub(crate) redirect_uri: String,
    pub(crate) scope: Vec<String>,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) prompt_none: bool,
    pub(crate) prompt_login: bool,
    /// `prompt=consent`: ask again, even if agreed before.
    #[serde(default)]
    pub(crate) prompt_consent: bool,
    pub(crate) max_age: Option<i64>,
    pub(crate) login_hint: Option<String>,
    /// The lowest of the requested, known `acr_values`.
    pub(crate) min_acr: Option<Loa>,
    pub(crate) ui_locales: Option<String>,
    /// The upstream to send the user to without asking (`idp_hint`).
    #[serde(default)]
    pub(crate) idp_hint: Option<String>,
    /// The policy action the login is decided for (`None`: `login`); a
    /// protected application's login is decided for the action of the
    /// request that led to it.
    #[serde(default)]
    pub(crate) action: Option<String>,
}

/// What a login has established so far (kept with the login request
/// between steps).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Login {
    pub(crate) user_id: AccountId,
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
    /// The person agreed on the consent page of this login.
    #[serde(default)]
    pub(crate) consented: bool,
    /// How the upstream names this login, hashed (a SAML source's NameID):
    /// its logout request finds the session by it.
    #[serde(default)]
    pub(crate) upstream_subject: Option<String>,
}

/// What an identity source established about the person logging in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Authentication {
    pub(crate) user_id: AccountId,
    pub(crate) loa: Loa,
    pub(crate) amr: Vec<String>,
    pub(crate) auth_time: i64,
    /// The upstream the authentication came from (`None`: verified here).
    pub(crate) upstream: Option<String>,
    /// How the login records the source as used (per level asked).
    pub(crate) method: String,
    /// The upstream's ID token, sealed (its hint when logging out there).
    pub(crate) upstream_token: Option<String>,
    /// How the upstream names this login, hashed (see [`Login`]).
    #[serde(default)]
    pub(crate) upstream_subject: Option<String>,
}

impl Login {
    /// The start of a login, from what an identity source established.
    pub(crate) fn authenticated(a: Authentication, before: Option<&Login>) -> Login {
        let mut tried = before.map(|p| p.tried.clone()).unwrap_or_default();
        tried.push(a.method);
        Login {
            user_id: a.user_id,
            acr: a.loa.acr().to_owned(),
            amr: a.amr,
            auth_time: a.auth_time,
            sid: before.and_then(|p| p.sid.clone()),
            upstream: a.upstream,
            tried,
            otp_failures: 0,
            offer: Vec::new(),
            passkey_state: None,
            upstream_token: a.upstream_token,
            consented: false,
            upstream_subject: a.upstream_subject,
        }
    }

    /// The login of an existing single sign-on session, to be checked
    /// against what this client needs.
    pub(crate) fn from_session(s: &crate::store::Session) -> Login {
        Login {
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
            consented: false,
            upstream_subject: None,
        }
    }

    /// The level reached so far.
    pub(crate) fn loa(&self) -> Loa {
        Loa::from_acr(&self.acr).unwrap_or(Loa::Low)
    }

    /// Whether `method` was used in this login already.
    pub(crate) fn tried(&self, method: &str) -> bool {
        self.tried.iter().any(|t| t == method)
    }

    /// The login after a second factor of `kind` reached `loa` with these
    /// methods, now.
    pub(crate) fn with_factor(&self, kind: &str, loa: Loa, amr: &[&str], now: i64) -> Login {
        let mut next = self.clone();
        next.acr = self.loa().max(loa).acr().to_owned();
        for m in amr {
            if !next.amr.iter().any(|a| a == m) {
                next.amr.push((*m).to_owned());
            }
        }
        next.auth_time = now;
        next.tried.push(kind.to_owned());
        next
    }
}

/// Whether the page of this login offers `method` now: a local factor of a
/// local login, offered by the plan and not used yet. The endpoints check
/// it too, so a login the plan sent to an upstream cannot take a local
/// factor instead.
pub(crate) fn offered(p: &Login, method: &str) -> bool {
    p.upstream.is_none()
        && p.offer.iter().any(|o| o == method)
        && !p.tried.iter().any(|t| t == method)
}

/// How `tried` records a login at an upstream: per level asked (`None`:
/// chosen by the user, nothing asked).
pub(crate) fn upstream_key(id: &str, asked: Option<Loa>) -> String {
    format!("upstream:{id}:{}", asked.map_or("any", Loa::acr))
}

/// Stores a login request bound to this browser; returns its id.
pub(crate) async fn new_login_request(
    gw: &Gateway,
    browser: &str,
    req: &AuthRequest,
    pending: Option<&Login>,
) -> Result<String, GatewayError> {
    let id = random_token(24);
    let pending = match pending {
        Some(p) => Some(serde_json::to_string(p)?),
        None => None,
    };
    gw.store
        .insert_login_request(&NewLoginRequest {
            id: &id,
            browser_hash: &gw.master.keyed_hash(browser),
            params: &serde_json::to_string(req)?,
            expires_at: gw.clock.now() + gw.cfg.login_request_ttl,
            pending: pending.as_deref(),
        })
        .await?;
    Ok(id)
}

/// A login request that has not expired, with what it has established.
pub(crate) async fn login_request(
    gw: &Gateway,
    id: &str,
    now: i64,
) -> Result<Option<(AuthRequest, Option<Login>)>, GatewayError> {
    let Some(row) = gw.store.login_request(id, now).await? else {
        return Ok(None);
    };
    let Ok(req) = serde_json::from_str::<AuthRequest>(&row.params) else {
        return Ok(None);
    };
    let pending = row.pending.and_then(|p| serde_json::from_str(&p).ok());
    Ok(Some((req, pending)))
}

/// A login request in progress, bound to this browser: where each step of
/// the login answers to.
pub(crate) struct LoginRequest {
    /// Its id (a hidden field of every form of the login).
    pub(crate) lr: String,
    /// This browser's binding cookie.
    pub(crate) browser: String,
    pub(crate) req: AuthRequest,
    pub(crate) client: Arc<Client>,
    /// The request's language (`ui_locales`, else `Accept-Language`).
    pub(crate) lang: Lang,
}

/// A form posted within a login in progress (password, choice of IdP,
/// second factor): its own fields, the login request it names (checked
/// against this browser) and what the login has established so far.
pub(crate) struct Posted<T> {
    pub(crate) form: T,
    pub(crate) at: LoginRequest,
    pub(crate) pending: Option<Login>,
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
    let row = gw
        .store
        .login_request_browser(&lr, now)
        .await
        .map_err(|e| web::internal(gw, lang, e.into()))?;
    let Some(browser_hash) = row else {
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
    match resume(gw, meta, lr, browser, now).await {
        Ok(Ok((at, pending))) => Ok(Posted { form, at, pending }),
        Ok(Err(Gone::Expired)) => Err(bad(StatusCode::BAD_REQUEST, |t| t.expired)),
        Ok(Err(Gone::UnknownClient)) => Err(bad(StatusCode::BAD_REQUEST, |t| t.bad_client)),
        Err(e) => Err(web::internal(gw, lang, e)),
    }
}

/// Why a login request cannot be taken up again.
pub(crate) enum Gone {
    Expired,
    /// Its client was removed meanwhile.
    UnknownClient,
}

/// A login request taken up again by a later step of this browser, with
/// what the login established so far.
pub(crate) type Resumed = Result<(LoginRequest, Option<Login>), Gone>;

/// Takes login request `lr` up again (its binding to `browser` checked by
/// the caller), in the language the request asked for.
pub(crate) async fn resume(
    gw: &Gateway,
    meta: &Meta,
    lr: String,
    browser: String,
    now: i64,
) -> Result<Resumed, GatewayError> {
    let Some((req, pending)) = login_request(gw, &lr, now).await? else {
        return Ok(Err(Gone::Expired));
    };
    let Some(client) = gw.client(&req.client_id).await? else {
        return Ok(Err(Gone::UnknownClient));
    };
    let lang = Lang::negotiate(req.ui_locales.as_deref(), meta.accept_language.as_deref());
    Ok(Ok((
        LoginRequest {
            lr,
            browser,
            req,
            client,
            lang,
        },
        pending,
    )))
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

pub(crate) fn csrf_token(gw: &Gateway, browser: &str, login_request: &str) -> String {
    gw.master
        .keyed_hash(&format!("csrf|{browser}|{login_request}"))
}

pub(crate) async fn save(gw: &Gateway, lr: &str, p: &Login) -> Result<(), GatewayError> {
    gw.store.save_login(lr, &serde_json::to_string(p)?).await?;
    Ok(())
}

/// What a step of a login came to (a password, a second factor): the
/// login with what it established, or the page to answer with (a wrong
/// code, the login void).
pub(crate) enum Checked {
    Passed(Login),
    Page(Response),
}

/// Ends a login request (used up, or void).
pub(crate) async fn discard(gw: &Gateway, lr: &str) -> Result<(), GatewayError> {
    gw.store.discard_login_request(lr).await?;
    Ok(())
}
