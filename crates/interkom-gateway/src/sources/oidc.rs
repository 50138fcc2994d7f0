//! An upstream OpenID Provider as identity source (brokering): a
//! municipality's own IdP vouches for its staff, interkom is its relying
//! party (the `openidconnect` crate: discovery, authorization code with
//! PKCE, state and nonce, ID-token validation against the upstream's JWKS).
//! Its `acr` values map to interkom's levels only as far as its
//! registration trusts it. Everything that can go wrong at the upstream
//! ends on an error page that names it, and in the audit trail.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use futures_util::future::BoxFuture;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::crypto::ct_eq;
use interkom_directory::upstreams::{check_endpoint, norm_issuer};
use interkom_directory::Upstream;
use interkom_types::{Loa, SECOND_FACTOR_AMR};
use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    LoginHint, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    TokenResponse,
};
use openidconnect::{LogoutRequest, PostLogoutRedirectUrl, ProviderMetadataWithLogout};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::oidc_account;
use super::oidc_answer::{claim_str, Asserted, Failure};
use super::{Authentication, IdentitySource, SourceAsk};
use crate::i18n::{Lang, LangTexts};
use crate::login::state::{
    self, upstream_key, AuthRequest, Gone, Login, LoginRequest, BROWSER_COOKIE,
};
use crate::store::UpstreamLogin;
use crate::web::{self, Meta};
use crate::{Gateway, GatewayError};

/// The upstream chosen last in this browser (shown first next time).
pub(crate) const IDP_COOKIE: &str = "interkom_idp";
/// The redirect URI interkom registers at every upstream.
pub(crate) const CALLBACK: &str = "/broker/callback";
/// Where an upstream sends the browser back after logging out (its
/// `post_logout_redirect_uri`).
pub(crate) const LOGGED_OUT: &str = "/broker/logged-out";
/// How long a login may stay at the upstream.
const PENDING_TTL: i64 = 600;
/// Discovery documents and keys are fetched again after this long (and at
/// once when a token names a key not seen yet).
const METADATA_TTL: Duration = Duration::from_secs(300);

/// Discovery documents cached on this node, keyed by upstream and issuer,
/// valid while the upstreams do not change here.
pub(crate) type DiscoveryCache = std::sync::Mutex<(
    u64,
    HashMap<String, (Instant, Arc<ProviderMetadataWithLogout>)>,
)>;

/// An upstream OpenID Provider of a tenant as identity source.
pub(crate) struct OidcUpstream(pub(crate) Arc<Upstream>);

impl IdentitySource for OidcUpstream {
    /// Per level asked (`any`: chosen by the user, nothing asked).
    fn method(&self, asked: Option<Loa>) -> String {
        upstream_key(&self.0.cfg.id, asked)
    }

    fn max_loa(&self) -> Option<Loa> {
        self.0.max_loa()
    }

    /// Sends the browser to the upstream, or shows why that failed. The
    /// client's own demands travel on: `prompt=login` as a fresh login
    /// there, `max_age` (else the session's lifetime, so that the upstream
    /// must state `auth_time`); a `login_hint` in its domain too.
    fn begin<'a>(
        &'a self,
        gw: &'a Gateway,
        ask: &'a SourceAsk<'a>,
    ) -> BoxFuture<'a, Result<Response, GatewayError>> {
        Box::pin(async move {
            let idp = &self.0;
            let req = &ask.at.req;
            let acr_values = match ask.asked {
                Some(l) => idp.acr_values_for(l),
                None => Vec::new(),
            };
            let hint = req
                .login_hint
                .as_deref()
                .filter(|h| hint_domain(h).is_some());
            let params = Ask {
                acr_values: &acr_values,
                asked: ask.asked,
                login_hint: hint,
                fresh: ask.fresh,
                max_age: req.max_age.unwrap_or(gw.cfg.session_ttl),
            };
            match begin(gw, idp, &ask.at.lr, &ask.at.browser, &params).await {
                Ok(url) => {
                    let mut res = web::see_other(&url);
                    res.headers_mut().append(
                        axum::http::header::SET_COOKIE,
                        web::set_cookie(gw, IDP_COOKIE, &idp.cfg.id, 365 * 86_400),
                    );
                    Ok(res)
                }
                Err(Failure::Internal(e)) => Err(e),
                Err(f) => {
                    audit_failure(gw, ask.meta, idp, Some(&ask.at.client.id), &f).await?;
                    Ok(failure_page(gw, ask.at.lang, idp, &f))
                }
            }
        })
    }
}

/// The upstream's discovery document (with its keys), cached; `refresh`
/// fetches it again (a token signed with a key not seen yet).
async fn metadata(
    gw: &Gateway,
    idp: &Upstream,
    refresh: bool,
) -> Result<Arc<ProviderMetadataWithLogout>, Failure> {
    if !refresh {
        if let Ok(m) = gw.discovery.lock() {
            if let Some((at, md)) =
                m.1.get(&cache_key(idp))
                    .filter(|_| m.0 == gw.dir.upstream_generation())
            {
                if at.elapsed() < METADATA_TTL {
                    return Ok(md.clone());
                }
            }
        }
    }
    let issuer = IssuerUrl::new(idp.cfg.issuer.clone())
        .map_err(|e| Failure::Unreachable(format!("issuer: {e}")))?;
    let md = tokio::time::timeout(
        idp.timeout(),
        ProviderMetadataWithLogout::discover_async(issuer, &gw.upstream_http),
    )
    .await
    .map_err(|_| Failure::Unreachable("discovery timed out".into()))?
    .map_err(|e| Failure::Unreachable(format!("discovery: {}", error_chain(&e))))?;
    // The discovered endpoints obey the issuer's rules (no detour to an
    // internal address through the discovery document).
    let allow = gw.cfg.upstream_allow_loopback;
    let mut endpoints = vec![
        md.authorization_endpoint().url().as_str(),
        md.jwks_uri().url().as_str(),
    ];
    if let Some(t) = md.token_endpoint() {
        endpoints.push(t.url().as_str());
    }
    if let Some(e) = &md.additional_metadata().end_session_endpoint {
        endpoints.push(e.url().as_str());
    }
    for e in endpoints {
        check_endpoint(e, allow).map_err(|e| Failure::Unreachable(format!("discovery: {e}")))?;
    }
    let md = Arc::new(md);
    if let Ok(mut m) = gw.discovery.lock() {
        // Upstreams changed on this node: what was discovered before goes.
        let generation = gw.dir.upstream_generation();
        if m.0 != generation {
            *m = (generation, HashMap::new());
        }
        m.1.insert(cache_key(idp), (Instant::now(), md.clone()));
    }
    Ok(md)
}

/// Discovery is cached per upstream and issuer: a changed issuer is never
/// paired with the old one's keys.
fn cache_key(idp: &Upstream) -> String {
    format!("{}|{}", idp.cfg.id, idp.cfg.issuer)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn callback_url(gw: &Gateway) -> Result<RedirectUrl, Failure> {
    RedirectUrl::new(gw.cfg.endpoint(CALLBACK)).map_err(|_| {
        Failure::Internal(GatewayError::Config(
            "the issuer makes no callback URL".into(),
        ))
    })
}

/// What interkom keeps while the user is at the upstream.
#[derive(Serialize, Deserialize)]
struct Secrets {
    nonce: String,
    verifier: String,
    /// When a fresh login (`prompt=login`) was asked for.
    #[serde(default)]
    fresh_since: Option<i64>,
    /// The level asked for with `acr_values` (`None`: chosen by the user).
    asked: Option<Loa>,
}

/// What a login at an upstream asks for.
pub(crate) struct Ask<'a> {
    pub(crate) acr_values: &'a [String],
    /// The level `acr_values` stand for (`None`: the user chose the IdP).
    pub(crate) asked: Option<Loa>,
    pub(crate) login_hint: Option<&'a str>,
    /// A fresh authentication (`prompt=login`).
    pub(crate) fresh: bool,
    /// Sent as `max_age`: the upstream must then say when the user
    /// authenticated (OIDC Core §3.1.2.1).
    pub(crate) max_age: i64,
}

/// Sends the login to the upstream: returns the URL to redirect to.
async fn begin(
    gw: &Gateway,
    idp: &Upstream,
    login_request: &str,
    browser: &str,
    ask: &Ask<'_>,
) -> Result<String, Failure> {
    let md = metadata(gw, idp, false).await?;
    let client = CoreClient::from_provider_metadata(
        (*md).clone(),
        ClientId::new(idp.cfg.client_id.clone()),
        idp.secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().to_owned())),
    )
    .set_redirect_uri(callback_url(gw)?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut auth = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in idp.cfg.scopes.iter().filter(|s| *s != "openid") {
        auth = auth.add_scope(Scope::new(s.clone()));
    }
    for a in ask.acr_values {
        auth = auth.add_auth_context_value(AuthenticationContextClass::new(a.clone()));
    }
    if let Some(h) = ask.login_hint {
        auth = auth.set_login_hint(LoginHint::new(h.to_owned()));
    }
    auth = auth.set_max_age(Duration::from_secs(ask.max_age.max(0) as u64));
    if ask.fresh {
        auth = auth.add_prompt(CoreAuthPrompt::Login);
    }
    let (url, state, nonce) = auth.url();
    let secrets = serde_json::to_string(&Secrets {
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        fresh_since: ask.fresh.then(|| gw.clock.now()),
        asked: ask.asked,
    })
    .map_err(GatewayError::from)?;
    let state_hash = gw
        .master
        .keyed_hash(&format!("upstream-state|{}", state.secret()));
    let sealed = gw
        .master
        .encrypt(secrets.as_bytes(), &state_hash)
        .map_err(|_| GatewayError::Crypto("cannot seal the upstream login"))?;
    let sent = UpstreamLogin {
        login_request: login_request.to_owned(),
        upstream: idp.cfg.id.clone(),
        browser_hash: gw.master.keyed_hash(browser),
        secrets_enc: sealed,
        expires_at: gw.clock.now() + PENDING_TTL,
    };
    gw.store
        .insert_upstream_login(&state_hash, &sent)
        .await
        .map_err(GatewayError::from)?;
    metrics::counter!("interkom_upstream_logins_total", "upstream" => idp.cfg.id.clone(), "result" => "sent")
        .increment(1);
    Ok(url.to_string())
}

#[derive(Deserialize)]
struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// A valid answer: who it is, for which login request, and what that
/// login had established before (a step-up).
pub(crate) struct Answered {
    pub(crate) at: LoginRequest,
    pub(crate) before: Option<Login>,
    pub(crate) auth: Authentication,
}

/// What an upstream's answer came to.
pub(crate) enum Answer {
    /// A valid answer: who it is, for which login request, and what that
    /// login had established before (a step-up).
    Authenticated(Box<Answered>),
    /// The page to show (the failure is counted, logged and audited).
    Page(Response),
}

/// Checks the upstream's answer at the callback: single use, this browser's
/// login, the code redeemed, the ID token valid, the account resolved.
pub(crate) async fn answer(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Answer {
    Answer::Page(match answer_inner(gw, meta, headers, query).await {
        Ok(a) => return a,
        Err(page) => page,
    })
}

async fn answer_inner(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Answer, Response> {
    let gw = gw.clone();
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    let expired = |status| web::error_page(&gw, lang, status, lang.texts().expired, None);
    let Ok(cb) = serde_urlencoded::from_str::<CallbackParams>(query.unwrap_or("")) else {
        return Err(expired(StatusCode::BAD_REQUEST));
    };
    let Some(state) = cb.state.as_deref().filter(|s| s.len() <= 512) else {
        return Err(expired(StatusCode::BAD_REQUEST));
    };
    let state_hash = gw.master.keyed_hash(&format!("upstream-state|{state}"));
    // Single use: whoever comes second (a replayed answer) finds nothing.
    let row = match gw.store.take_upstream_login(&state_hash).await {
        Ok(r) => r,
        Err(e) => return Err(web::internal(&gw, lang, e.into())),
    };
    let now = gw.clock.now();
    let Some(UpstreamLogin {
        login_request: lr,
        upstream: idp_id,
        browser_hash,
        secrets_enc: sealed,
        expires_at,
    }) = row
    else {
        return Err(replayed(&gw, meta, lang, cb.iss.as_deref()).await);
    };
    let idp = match gw.dir.upstream(&idp_id).await {
        Ok(Some(i)) => i,
        Ok(None) => return Err(expired(StatusCode::BAD_REQUEST)),
        Err(e) => return Err(web::internal(&gw, lang, e.into())),
    };
    let browser = web::cookie(headers, BROWSER_COOKIE).unwrap_or_default();
    if expires_at <= now
        || browser.is_empty()
        || !ct_eq(&gw.master.keyed_hash(&browser), &browser_hash)
    {
        return Err(fail(&gw, meta, lang, &idp, None, Failure::Expired).await);
    }
    let (at, pending) = match state::resume(&gw, meta, lr, browser, now).await {
        Ok(Ok(found)) => found,
        Ok(Err(Gone::Expired)) => {
            return Err(fail(&gw, meta, lang, &idp, None, Failure::Expired).await)
        }
        Ok(Err(Gone::UnknownClient)) => return Err(expired(StatusCode::BAD_REQUEST)),
        Err(e) => return Err(web::internal(&gw, lang, e)),
    };
    let (lang, client) = (at.lang, at.client.clone());
    let outcome = async {
        let secrets: Secrets = gw
            .master
            .decrypt(&sealed, &state_hash)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Failure::Internal(GatewayError::Crypto(
                "upstream login cannot be opened",
            )))?;
        let asked = secrets.asked;
        // One deadline for the whole exchange (discovery, token, keys).
        let asserted = tokio::time::timeout(idp.timeout() * 2, complete(&gw, &idp, &cb, secrets))
            .await
            .map_err(|_| Failure::Unreachable("the upstream took too long".into()))??;
        // A step-up must come back as the same person: checked before
        // anything is linked, created or brought in step.
        if let Some(p) = &pending {
            let same = oidc_account::linked_account(&gw, &idp, &asserted.subject)
                .await?
                .is_some_and(|u| u.id == p.user_id);
            if !same {
                return Err(Failure::WrongAccount);
            }
        }
        let user = oidc_account::resolve_account(&gw, meta, &idp, &asserted).await?;
        Ok((asserted, user, asked))
    }
    .await;
    match outcome {
        Ok((asserted, user, asked)) => {
            metrics::counter!("interkom_upstream_logins_total", "upstream" => idp.cfg.id.clone(), "result" => "success")
                .increment(1);
            let source = OidcUpstream(idp.clone());
            let auth = Authentication {
                user_id: user.id.clone(),
                loa: asserted.loa,
                amr: asserted.amr,
                auth_time: asserted.auth_time,
                upstream: Some(idp.cfg.id.clone()),
                method: source.method(asked),
                upstream_token: gw.seal(&asserted.id_token, &token_aad(&user.id)),
                upstream_subject: None,
            };
            Ok(Answer::Authenticated(Box::new(Answered {
                at,
                before: pending,
                auth,
            })))
        }
        Err(f) => Err(fail(&gw, meta, lang, &idp, Some(&client.id), f).await),
    }
}

/// An answer for no login in progress (replayed, or never sent): named
/// after the issuer it claims, if interkom knows it; audited either way.
async fn replayed(gw: &Gateway, meta: &Meta, lang: Lang, iss: Option<&str>) -> Response {
    let named = match iss {
        Some(iss) => gw
            .dir
            .upstreams()
            .await
            .ok()
            .and_then(|l| l.iter().find(|u| same_issuer(&u.cfg.issuer, iss)).cloned()),
        None => None,
    };
    if let Some(idp) = named {
        return fail(gw, meta, lang, &idp, None, Failure::Replayed).await;
    }
    let ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
        .reason(Failure::Replayed.reason())
        .correlation(meta.request_id.clone())
        .source(meta.source.clone());
    if let Err(e) = gw.audit.append(ev).await {
        return web::internal(gw, lang, e.into());
    }
    web::error_page(
        gw,
        lang,
        StatusCode::BAD_REQUEST,
        lang.texts().expired,
        None,
    )
}

/// Counts, logs and audits a failed upstream login; the page naming the
/// Kommune's IdP.
async fn fail(
    gw: &Gateway,
    meta: &Meta,
    lang: Lang,
    idp: &Upstream,
    client_id: Option<&str>,
    f: Failure,
) -> Response {
    if let Failure::Internal(e) = f {
        return web::internal(gw, lang, e);
    }
    metrics::counter!("interkom_upstream_logins_total", "upstream" => idp.cfg.id.clone(), "result" => f.reason())
        .increment(1);
    tracing::warn!(upstream = %idp.cfg.id, reason = f.reason(), detail = %f.detail(), "upstream login failed");
    if let Err(e) = audit_failure(gw, meta, idp, client_id, &f).await {
        return web::internal(gw, lang, e);
    }
    failure_page(gw, lang, idp, &f)
}

fn same_issuer(a: &str, b: &str) -> bool {
    norm_issuer(a) == norm_issuer(b)
}

fn token_aad(user_id: &str) -> String {
    format!("upstream-id-token|{user_id}")
}

/// Where to send the browser so that the upstream ends its session too:
/// its end-session endpoint with its ID token as hint, back to
/// `/broker/logged-out` with `continue_to` (a verified URI, or the logged-out
/// page) sealed into the state. `None` when the upstream offers no logout,
/// is not reachable now, or propagation is off.
pub(crate) async fn logout_url(
    gw: &Gateway,
    upstream_id: &str,
    user_id: &str,
    sealed_token: Option<&str>,
    continue_to: Option<&str>,
) -> Option<String> {
    let idp = gw.dir.upstream(upstream_id).await.ok().flatten()?;
    if !idp.cfg.propagate_logout {
        return None;
    }
    let md = metadata(gw, &idp, false).await.ok()?;
    let endpoint = md.additional_metadata().end_session_endpoint.clone()?;
    let state = gw.seal(
        &json!({ "to": continue_to, "exp": gw.clock.now() + PENDING_TTL }).to_string(),
        "upstream-logout",
    )?;
    let back = PostLogoutRedirectUrl::new(gw.cfg.endpoint(LOGGED_OUT)).ok()?;
    let mut req = LogoutRequest::from(endpoint)
        .set_client_id(ClientId::new(idp.cfg.client_id.clone()))
        .set_post_logout_redirect_uri(back)
        .set_state(CsrfToken::new(state));
    let token = sealed_token
        .and_then(|t| gw.open(t, &token_aad(user_id)))
        .and_then(|t| t.parse::<CoreIdToken>().ok());
    if let Some(t) = &token {
        req = req.set_id_token_hint(t);
    }
    Some(req.http_get_url().to_string())
}

/// Back from the upstream's logout: where the logout was going (already
/// verified when it began), if the state is this node's and fresh.
pub(crate) fn logged_out_to(gw: &Gateway, query: Option<&str>) -> Option<String> {
    let state = serde_urlencoded::from_str::<HashMap<String, String>>(query.unwrap_or(""))
        .ok()
        .and_then(|q| q.get("state").cloned())
        .and_then(|s| gw.open(&s, "upstream-logout"))
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .filter(|v| v["exp"].as_i64().is_some_and(|e| e > gw.clock.now()));
    state
        .as_ref()
        .and_then(|v| v["to"].as_str())
        .map(str::to_owned)
}

/// The error page naming the municipality's IdP as the cause.
fn failure_page(gw: &Gateway, lang: Lang, idp: &Upstream, f: &Failure) -> Response {
    let status = match f {
        Failure::Unreachable(_) => StatusCode::BAD_GATEWAY,
        Failure::NoAccount(_) | Failure::WrongAccount | Failure::Rejected(_) => {
            StatusCode::FORBIDDEN
        }
        Failure::Expired | Failure::Replayed => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    };
    let message = f.message(lang).replace("{idp}", &idp.cfg.name);
    web::error_page(gw, lang, status, &message, Some(f.reason()))
}

async fn audit_failure(
    gw: &Gateway,
    meta: &Meta,
    idp: &Upstream,
    client_id: Option<&str>,
    f: &Failure,
) -> Result<(), GatewayError> {
    let mut ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
        .reason(f.reason())
        .correlation(meta.request_id.clone())
        .source(meta.source.clone())
        .details(
            json!({ "upstream": idp.cfg.id, "upstream_name": idp.cfg.name, "detail": f.detail() }),
        );
    if let Some(c) = client_id {
        ev = ev.client(c);
    }
    if let Some(t) = gw.tenants.get(&idp.cfg.tenant) {
        ev = ev.tenant(&t.id, t.path_string());
    }
    gw.audit.append(ev).await?;
    Ok(())
}

/// Redeems the code and validates the ID token.
async fn complete(
    gw: &Gateway,
    idp: &Upstream,
    cb: &CallbackParams,
    secrets: Secrets,
) -> Result<Asserted, Failure> {
    // RFC 9207: an answer that names another issuer is a mix-up.
    if let Some(iss) = &cb.iss {
        if !same_issuer(iss, &idp.cfg.issuer) {
            return Err(Failure::Mixup);
        }
    }
    if let Some(e) = &cb.error {
        let d = cb.error_description.as_deref().unwrap_or("");
        return Err(Failure::Rejected(format!("{e}: {d}")));
    }
    let code = cb
        .code
        .clone()
        .ok_or_else(|| Failure::Rejected("no code in the answer".into()))?;
    let fresh_since = secrets.fresh_since;
    let md = metadata(gw, idp, false).await?;
    let client = |md: &ProviderMetadataWithLogout| -> Result<_, Failure> {
        Ok(CoreClient::from_provider_metadata(
            md.clone(),
            ClientId::new(idp.cfg.client_id.clone()),
            idp.secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_owned())),
        )
        .set_auth_type(auth_type(md))
        .set_redirect_uri(callback_url(gw)?))
    };
    let c = client(&md)?;
    let request = c
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| Failure::Unreachable(format!("token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(secrets.verifier));
    let response = tokio::time::timeout(idp.timeout(), request.request_async(&gw.upstream_http))
        .await
        .map_err(|_| Failure::Unreachable("token request timed out".into()))?
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => {
                Failure::Rejected(format!("token endpoint: {}", r.error().as_ref()))
            }
            RequestTokenError::Parse(e, _) => Failure::InvalidToken(format!("token response: {e}")),
            other => Failure::Unreachable(format!("token endpoint: {}", error_chain(&other))),
        })?;
    let id_token = response
        .id_token()
        .ok_or_else(|| Failure::InvalidToken("no ID token".into()))?;
    let nonce = Nonce::new(secrets.nonce);
    let algs = vec![
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::EcdsaP384Sha384,
        CoreJwsSigningAlgorithm::EdDsa,
    ];
    let verify = |c: &CoreClient<_, _, _, _, _, _>| {
        id_token
            .claims(
                &c.id_token_verifier().set_allowed_algs(algs.clone()),
                &nonce,
            )
            .cloned()
    };
    let claims = match verify(&c) {
        Ok(claims) => claims,
        // A key not seen yet: the upstream rotated. Fetch its keys again,
        // once.
        Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
            let md = metadata(gw, idp, true).await?;
            let c = client(&md)?;
            verify(&c).map_err(|e| classify(&e))?
        }
        Err(e) => return Err(classify(&e)),
    };
    // The token is verified: its payload can be read for mapped claims.
    let raw: Value = id_token
        .to_string()
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Failure::InvalidToken("unreadable payload".into()))?;
    let (loa, amr) = level_and_methods(idp, &claims)?;
    let auth_time = authenticated_at(&claims, fresh_since, gw.clock.now())?;
    let subject = claim_str(&raw, &idp.cfg.claims.subject)
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or(Failure::NoAccount("the subject claim is missing"))?;
    Ok(Asserted {
        id_token: id_token.to_string(),
        subject,
        claims: raw,
        loa,
        amr,
        auth_time,
    })
}

/// The level this upstream's `acr` stands for here, and the methods it
/// names — a second factor only as far as the upstream is trusted.
fn level_and_methods(
    idp: &Upstream,
    claims: &openidconnect::core::CoreIdTokenClaims,
) -> Result<(Loa, Vec<String>), Failure> {
    let loa = match claims.auth_context_ref().map(|a| a.to_string()) {
        Some(a) => *idp.cfg.acr.get(&a).ok_or(Failure::UnknownAcr(a))?,
        None => idp
            .cfg
            .default_loa
            .ok_or_else(|| Failure::UnknownAcr("(none)".into()))?,
    };
    let mut amr: Vec<String> = claims
        .auth_method_refs()
        .map(|v| v.iter().map(|m| m.to_string()).collect())
        .unwrap_or_default();
    amr.retain(|m| RFC8176.contains(&m.as_str()));
    // A second factor counts only as far as the upstream is trusted: one
    // trusted for `low` does not vouch for its `otp`.
    if loa < Loa::Substantial {
        amr.retain(|m| !SECOND_FACTOR_AMR.contains(&m.as_str()));
    }
    // A level from `substantial` up means two factors (eIDAS); the policy
    // looks for them in `amr`.
    if loa >= Loa::Substantial && !amr.iter().any(|m| SECOND_FACTOR_AMR.contains(&m.as_str())) {
        amr.push("mfa".into());
    }
    if amr.is_empty() {
        amr.push("fed".into());
    }
    Ok((loa, amr))
}

/// When the person authenticated at the upstream: required (`max_age` is
/// always sent), and recent when a fresh login was asked for.
fn authenticated_at(
    claims: &openidconnect::core::CoreIdTokenClaims,
    fresh_since: Option<i64>,
    now: i64,
) -> Result<i64, Failure> {
    let auth_time = claims
        .auth_time()
        .map(|t| t.timestamp())
        .filter(|t| *t <= now + 60);
    // A fresh login was asked for: the upstream must say it happened.
    if let Some(sent) = fresh_since {
        if auth_time.is_none_or(|t| t + 60 < sent) {
            return Err(Failure::InvalidToken(
                "a fresh authentication was asked for, but auth_time is older or missing".into(),
            ));
        }
    }
    // Asked with `max_age`, the upstream must say when: a login of unknown
    // age never passes as a fresh one.
    auth_time.ok_or_else(|| {
        Failure::InvalidToken("the ID token has no auth_time although max_age was sent".into())
    })
}

/// The client authentication the upstream accepts: HTTP Basic (the
/// default of OAuth 2.0), or the secret in the form when it says it only
/// takes that.
fn auth_type(md: &ProviderMetadataWithLogout) -> openidconnect::AuthType {
    use openidconnect::core::CoreClientAuthMethod as M;
    match md.token_endpoint_auth_methods_supported() {
        Some(m) if !m.contains(&M::ClientSecretBasic) && m.contains(&M::ClientSecretPost) => {
            openidconnect::AuthType::RequestBody
        }
        _ => openidconnect::AuthType::BasicAuth,
    }
}

/// Authentication method references of RFC 8176, and `fed` for a login
/// federated without one.
const RFC8176: &[&str] = &[
    "face", "fpt", "geo", "hwk", "iris", "kba", "mca", "mfa", "otp", "pin", "pwd", "rba", "retina",
    "sc", "sms", "swk", "tel", "user", "vbm", "wia",
];

fn classify(e: &openidconnect::ClaimsVerificationError) -> Failure {
    match e {
        openidconnect::ClaimsVerificationError::InvalidNonce(_) => Failure::Nonce,
        other => Failure::InvalidToken(other.to_string()),
    }
}

/// The domain of a `login_hint` that is an address.
pub(crate) fn hint_domain(login_hint: &str) -> Option<&str> {
    login_hint.rsplit_once('@').map(|(_, d)| d)
}

/// The upstream a `login_hint` (an address in one of its domains) or an
/// `idp_hint` names.
pub(crate) fn chosen<'a>(
    list: &'a [Arc<Upstream>],
    req: &AuthRequest,
) -> Option<&'a Arc<Upstream>> {
    if let Some(h) = &req.idp_hint {
        if let Some(u) = list.iter().find(|u| &u.cfg.id == h) {
            return Some(u);
        }
    }
    let domain = req.login_hint.as_deref().and_then(hint_domain)?;
    list.iter()
        .find(|u| u.cfg.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
}
