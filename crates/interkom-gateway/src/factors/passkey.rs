//! Passkeys (WebAuthn, webauthn-rs) as the local second factor.
//!
//! The relying party is the issuer's host: passkeys need a domain name
//! (browsers refuse IP addresses), so an installation whose issuer is an
//! address offers none. Every passkey requires user verification. One that
//! cannot leave its device (not backup-eligible: a security key, a TPM)
//! counts as `passkeys.device_bound_loa` — `high` if the operator decides
//! so — a synced one as `substantial`. The ceremony state lives in the
//! database, so any node finishes what another began.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::crypto::{ct_eq, random_token};
use interkom_directory::User;
use interkom_types::Loa;
use serde::Deserialize;
use serde_json::json;
use webauthn_rs::prelude::{
    Credential, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use super::enrol::enrolling_user;
use super::SecondFactor;
use crate::i18n::{Lang, LangTexts};
use crate::login::pages;
use crate::login::state::{self, Checked, Login, LoginRequest, Posted};
use crate::store::Ceremony;
use crate::web::{self, Meta};
use crate::{Gateway, GatewayError};

/// How the login records and offers it.
pub(crate) const KIND: &str = "passkey";

/// A passkey as second factor: what its kind is configured to reach.
pub(crate) struct PasskeyFactor;

impl SecondFactor for PasskeyFactor {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn reaches<'a>(
        &'a self,
        gw: &'a Gateway,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Loa>, GatewayError>> {
        Box::pin(best_level(gw, user_id))
    }
}

/// How long a ceremony may take.
const CEREMONY_TTL: i64 = 300;

/// The relying party for the issuer, if its host is a domain name.
pub(crate) fn relying_party(issuer: &url::Url) -> Option<Webauthn> {
    let host = issuer.domain()?;
    let origin = Url::parse(&issuer.origin().ascii_serialization()).ok()?;
    WebauthnBuilder::new(host, &origin)
        .ok()?
        .rp_name("interkom")
        .build()
        .ok()
}

/// How a credential id is stored: base64url.
fn cred_key(id: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

/// A registered passkey.
pub(crate) struct Stored {
    pub(crate) passkey: Passkey,
    pub(crate) device_bound: bool,
}

pub(crate) async fn passkeys(gw: &Gateway, user_id: &str) -> Result<Vec<Stored>, GatewayError> {
    Ok(gw
        .dir
        .passkeys(user_id)
        .await?
        .into_iter()
        .filter_map(|s| {
            serde_json::from_str(&s.passkey).ok().map(|passkey| Stored {
                passkey,
                device_bound: s.device_bound,
            })
        })
        .collect())
}

/// The level a passkey reaches.
pub(crate) fn level(gw: &Gateway, device_bound: bool) -> Loa {
    if device_bound {
        gw.cfg.passkey_device_bound_loa
    } else {
        Loa::Substantial
    }
}

/// The highest level the account's passkeys reach.
pub(crate) async fn best_level(gw: &Gateway, user_id: &str) -> Result<Option<Loa>, GatewayError> {
    if gw.webauthn.is_none() {
        return Ok(None);
    }
    Ok(passkeys(gw, user_id)
        .await?
        .iter()
        .map(|p| level(gw, p.device_bound))
        .max())
}

fn enrol_csrf(gw: &Gateway, handle: &str) -> String {
    gw.master.keyed_hash(&format!("passkey-enrol|{handle}"))
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    let mut res = (status, axum::Json(v)).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

fn json_error(status: StatusCode, error: &str) -> Response {
    json_response(status, json!({ "error": error }))
}

/// `GET /account/passkey`: the page that registers a passkey.
pub(crate) async fn enrol_page(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    let user = match enrolling_user(&gw, &headers).await {
        Ok(u) => u,
        Err(e) => return web::internal(&gw, lang, e),
    };
    let Some((handle, user)) = user else {
        return web::error_page(
            &gw,
            lang,
            StatusCode::UNAUTHORIZED,
            lang.texts().signin_first,
            None,
        );
    };
    let count = match passkeys(&gw, &user.id).await {
        Ok(p) => p.len(),
        Err(e) => return web::internal(&gw, lang, e),
    };
    web::page(
        &gw,
        StatusCode::OK,
        "passkey.html",
        minijinja::context! {
            lang => lang.code(), base => gw.cfg.base_path(),
            t => minijinja::Value::from_serialize(lang.texts()),
            available => gw.webauthn.is_some(),
            count => count,
            csrf_token => enrol_csrf(&gw, &handle),
        },
    )
}

#[derive(Deserialize)]
struct BeginForm {
    csrf_token: Option<String>,
}

/// `POST /account/passkey/begin`: the creation options for the browser.
pub(crate) async fn enrol_begin(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answered(begin_registration(&gw, &headers, &body).await)
}

/// A JSON answer, or 503 for an internal failure (logged).
fn answered(r: Result<Response, GatewayError>) -> Response {
    r.unwrap_or_else(|e| {
        tracing::error!(error = %e, "passkey registration failed internally");
        json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
    })
}

/// The user who may enrol, if the form's token is this session's; else
/// the refusal to answer with.
async fn enroller(
    gw: &Gateway,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<Result<User, Response>, GatewayError> {
    let Some((handle, user)) = enrolling_user(gw, headers).await? else {
        return Ok(Err(json_error(StatusCode::UNAUTHORIZED, "login_required")));
    };
    if !csrf.is_some_and(|c| ct_eq(c, &enrol_csrf(gw, &handle))) {
        return Ok(Err(json_error(StatusCode::FORBIDDEN, "invalid_csrf_token")));
    }
    Ok(Ok(user))
}

async fn begin_registration(
    gw: &Gateway,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, GatewayError> {
    let Some(wa) = &gw.webauthn else {
        return Ok(json_error(StatusCode::NOT_FOUND, "passkeys_unavailable"));
    };
    let Ok(form) = serde_urlencoded::from_bytes::<BeginForm>(body) else {
        return Ok(json_error(StatusCode::BAD_REQUEST, "invalid_request"));
    };
    let user = match enroller(gw, headers, form.csrf_token.as_deref()).await? {
        Ok(u) => u,
        Err(refused) => return Ok(refused),
    };
    let existing: Vec<_> = passkeys(gw, &user.id)
        .await?
        .into_iter()
        .map(|p| p.passkey.cred_id().clone())
        .collect();
    let uid = Uuid::parse_str(&user.id).unwrap_or_else(|_| Uuid::new_v4());
    let display = user.name.clone().unwrap_or_else(|| user.username.clone());
    let (options, state) =
        match wa.start_passkey_registration(uid, &user.username, &display, Some(existing)) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "passkey registration could not start");
                return Ok(json_error(StatusCode::BAD_REQUEST, "invalid_request"));
            }
        };
    let id = random_token(16);
    let ceremony = Ceremony {
        user_id: user.id.to_string(),
        state: serde_json::to_string(&state)?,
        expires_at: gw.clock.now() + CEREMONY_TTL,
    };
    gw.store.insert_ceremony(&id, &ceremony).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "ceremony": id, "options": options }),
    ))
}

#[derive(Deserialize)]
struct FinishBody {
    ceremony: String,
    csrf_token: String,
    credential: RegisterPublicKeyCredential,
}

/// `POST /account/passkey/finish`: stores the new passkey.
pub(crate) async fn enrol_finish(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answered(finish_registration(&gw, &meta, &headers, &body).await)
}

async fn finish_registration(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, GatewayError> {
    let Some(wa) = &gw.webauthn else {
        return Ok(json_error(StatusCode::NOT_FOUND, "passkeys_unavailable"));
    };
    let Ok(b) = serde_json::from_slice::<FinishBody>(body) else {
        return Ok(json_error(StatusCode::BAD_REQUEST, "invalid_request"));
    };
    let user = match enroller(gw, headers, Some(&b.csrf_token)).await? {
        Ok(u) => u,
        Err(refused) => return Ok(refused),
    };
    // Single use, this user's, not expired.
    let Some(Ceremony {
        user_id: owner,
        state,
        expires_at,
    }) = gw.store.take_ceremony(&b.ceremony).await?
    else {
        return Ok(json_error(StatusCode::BAD_REQUEST, "unknown_ceremony"));
    };
    if owner != user.id || expires_at <= gw.clock.now() {
        return Ok(json_error(StatusCode::BAD_REQUEST, "unknown_ceremony"));
    }
    let state: PasskeyRegistration = serde_json::from_str(&state)?;
    let passkey = match wa.finish_passkey_registration(&b.credential, &state) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = %e, "passkey registration refused");
            return Ok(json_error(StatusCode::BAD_REQUEST, "registration_refused"));
        }
    };
    let device_bound = !Credential::from(passkey.clone()).backup_eligible;
    // A credential belongs to one account.
    let added = gw
        .dir
        .add_passkey(
            &user.id,
            &cred_key(passkey.cred_id()),
            &serde_json::to_string(&passkey)?,
            device_bound,
        )
        .await?;
    if !added {
        return Ok(json_error(StatusCode::CONFLICT, "credential_registered"));
    }
    let ev = gw.about(
        AuditEvent::new(Action::SecondFactorEnrolled, Outcome::Success)
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(json!({ "method": "passkey", "device_bound": device_bound })),
        &user,
    );
    gw.audit.append(ev).await?;
    Ok(json_response(
        StatusCode::CREATED,
        json!({ "registered": true, "device_bound": device_bound, "level": level(gw, device_bound) }),
    ))
}

/// `POST /login/passkey/begin`: the request options for a login in
/// progress (its state kept with the login request).
pub(crate) async fn login_begin(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bound = state::posted::<serde::de::IgnoredAny>(&gw, &meta, &headers, &body).await;
    let Ok(Posted {
        at,
        pending: Some(mut p),
        ..
    }) = bound
    else {
        return json_error(StatusCode::FORBIDDEN, "invalid_login_request");
    };
    let lr = at.lr;
    let (Some(wa), true) = (&gw.webauthn, state::offered(&p, KIND)) else {
        return json_error(StatusCode::NOT_FOUND, "passkeys_unavailable");
    };
    let result = async {
        let keys: Vec<Passkey> = passkeys(&gw, &p.user_id)
            .await?
            .into_iter()
            .map(|s| s.passkey)
            .collect();
        if keys.is_empty() {
            return Ok(json_error(StatusCode::NOT_FOUND, "no_passkey"));
        }
        let (options, state) = match wa.start_passkey_authentication(&keys) {
            Ok(v) => v,
            Err(_) => return Ok(json_error(StatusCode::BAD_REQUEST, "invalid_request")),
        };
        p.passkey_state = Some(serde_json::to_string(&state)?);
        state::save(&gw, &lr, &p).await?;
        Ok::<_, GatewayError>(json_response(StatusCode::OK, json!({ "options": options })))
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "passkey login failed internally");
        json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
    })
}

/// Checks the passkey's answer during a login (`credential`: the JSON the
/// browser posted). The ceremony state is used once, whatever the answer.
pub(crate) async fn check(
    gw: &Gateway,
    meta: &Meta,
    at: &LoginRequest,
    mut p: Login,
    credential: Option<&str>,
) -> Result<Checked, GatewayError> {
    let Some(wa) = &gw.webauthn else {
        return Ok(Checked::Page(state::out_of_step(gw, at.lang)));
    };
    // The state is used once, whatever the answer.
    let state: Option<PasskeyAuthentication> = p
        .passkey_state
        .take()
        .and_then(|s| serde_json::from_str(&s).ok());
    let credential: Option<PublicKeyCredential> = credential
        .filter(|c| c.len() <= 16 * 1024)
        .and_then(|c| serde_json::from_str(c).ok());
    let result = match (state, credential) {
        (Some(state), Some(cred)) => wa.finish_passkey_authentication(&cred, &state).ok(),
        _ => None,
    };
    async {
        let Some(result) = result else {
            state::save(gw, &at.lr, &p).await?;
            let ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
                .client(&at.client.id)
                .reason("invalid_second_factor")
                .correlation(meta.request_id.clone())
                .source(meta.source.clone())
                .details(json!({ "method": "passkey" }));
            let home = gw.dir.user(&p.user_id).await?.map(|u| u.tenant);
            gw.audit
                .append(ev.subject(&p.user_id, home.map(String::from)))
                .await?;
            return Ok(Checked::Page(pages::second_factor_page(
                gw,
                at,
                StatusCode::UNAUTHORIZED,
                &p,
                Some(at.lang.texts().passkey_failed),
            )));
        };
        // The counter and backup state as the authenticator reports them.
        let cred_id = cred_key(result.cred_id());
        let row = gw.dir.passkey(&p.user_id, &cred_id).await?;
        // Removed meanwhile (a reset): the login cannot go on with it.
        let Some(stored) = row else {
            return Ok(Checked::Page(state::out_of_step(gw, at.lang)));
        };
        let (stored, device_bound) = (stored.passkey, stored.device_bound);
        let mut passkey: Passkey = serde_json::from_str(&stored)?;
        passkey.update_credential(&result);
        gw.dir
            .passkey_used(&cred_id, &serde_json::to_string(&passkey)?)
            .await?;
        Ok(Checked::Passed(p.with_factor(
            KIND,
            level(gw, device_bound),
            &[if device_bound { "hwk" } else { "swk" }, "mfa"],
            gw.clock.now(),
        )))
    }
    .await
}
