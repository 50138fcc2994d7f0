//! Local second factor: TOTP (RFC 6238, SHA-1, 6 digits, 30 s — what every
//! authenticator app speaks) with one-time recovery codes.
//!
//! The secret is sealed under the key-encryption key. A code counts once:
//! the last time step used is kept and only a later one is accepted, so a
//! code seen over a shoulder cannot be replayed within its window.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::crypto::ct_eq;
use interkom_types::Loa;
use serde::Deserialize;
use totp_rs::{Algorithm, Secret, TOTP};

use super::enrol::enrolling_user;
use super::SecondFactor;
use crate::i18n::{Lang, LangTexts};
use crate::login::pages;
use crate::login::state::{self, Checked, Login, LoginRequest};
use crate::web::{self, Meta};
use crate::{throttle, Gateway, GatewayError};

/// How the login records and offers it.
pub(crate) const KIND: &str = "totp";

/// Wrong second-factor codes per login request before it is void.
const MAX_OTP_FAILURES: u32 = 5;

/// TOTP as second factor: `substantial` with the password.
pub(crate) struct Totp;

impl SecondFactor for Totp {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn reaches<'a>(
        &'a self,
        gw: &'a Gateway,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Loa>, GatewayError>> {
        Box::pin(async move { Ok(gw.dir.has_totp(user_id).await?.then_some(Loa::Substantial)) })
    }
}

const STEP: u64 = 30;
/// One step either side: clocks of phones drift.
const SKEW: i64 = 1;
const RECOVERY_CODES: usize = 10;

fn totp(secret: Vec<u8>) -> TOTP {
    TOTP::new_unchecked(Algorithm::SHA1, 6, 0, STEP, secret)
}

/// The time step a code matches (within the skew), if any.
fn matching_step(secret: Vec<u8>, code: &str, now: i64) -> Option<i64> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret);
    let current = now.max(0) / STEP as i64;
    let mut found = None;
    // Every candidate is computed and compared: no early exit to time.
    for step in current - SKEW..=current + SKEW {
        let expected = t.generate(step.max(0) as u64 * STEP);
        if ct_eq(&expected, code) {
            found = Some(step);
        }
    }
    found
}

/// What verified a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verified {
    Totp,
    RecoveryCode,
}

/// Checks a TOTP code or a recovery code of a confirmed credential; each
/// counts once.
pub(crate) async fn verify(
    gw: &Gateway,
    user_id: &str,
    input: &str,
) -> Result<Option<Verified>, GatewayError> {
    let now = gw.clock.now();
    let code: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() == 6 {
        let Some((secret, last_step)) = gw.dir.totp_secret(user_id).await? else {
            return Ok(None);
        };
        let Some(step) = matching_step(secret, &code, now).filter(|s| *s > last_step) else {
            return Ok(None);
        };
        // Only a later step than any used before.
        let fresh = gw.dir.use_totp_step(user_id, step).await?;
        return Ok(fresh.then_some(Verified::Totp));
    }
    let normalised = normalise_recovery(&code);
    if normalised.len() != 16 {
        return Ok(None);
    }
    let used = gw.dir.use_recovery_code(user_id, &normalised).await?;
    Ok(used.then_some(Verified::RecoveryCode))
}

fn normalise_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Ten codes of 16 base32 characters (80 bits), shown as XXXX-XXXX-XXXX-XXXX.
fn new_recovery_codes() -> Vec<String> {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::rngs::OsRng;
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw: String = (0..16)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect();
            format!(
                "{}-{}-{}-{}",
                &raw[..4],
                &raw[4..8],
                &raw[8..12],
                &raw[12..]
            )
        })
        .collect()
}

/// Checks the code typed in during a login: counted like passwords,
/// audited, the login void after five wrong codes.
pub(crate) async fn check(
    gw: &Gateway,
    meta: &Meta,
    at: &LoginRequest,
    p: &mut Login,
    code: &str,
) -> Result<Checked, GatewayError> {
    let lang = at.lang;
    // Counted per account like passwords: six digits must not be guessed.
    let key = format!("o:{}", gw.master.keyed_hash(&format!("otp|{}", p.user_id)));
    let cfg = &gw.cfg.brute_force;
    let now = gw.clock.now();
    let attempt = throttle::begin(&gw.store, cfg, &key, None, now).await?;
    let verified = if attempt.locked || code.len() > 64 {
        None
    } else {
        verify(gw, &p.user_id, code).await?
    };
    let user = gw.dir.user(&p.user_id).await?;
    let Some(kind) = verified else {
        let locks = throttle::failed(&gw.store, cfg, &attempt, false, &key, None, now).await?;
        p.otp_failures += 1;
        let mut ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
            .client(&at.client.id)
            .reason(if attempt.locked {
                "locked"
            } else {
                "invalid_second_factor"
            })
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(serde_json::json!({ "method": "totp", "failures": p.otp_failures }));
        if let Some(u) = &user {
            ev = gw.about(ev, u);
        }
        gw.audit.append(ev).await?;
        for (_, until) in locks {
            let ev = AuditEvent::new(Action::LoginLocked, Outcome::Denied)
                .client(&at.client.id)
                .reason("too_many_second_factor_failures")
                .correlation(meta.request_id.clone())
                .source(meta.source.clone())
                .details(serde_json::json!({ "scope": "second_factor", "locked_until": until }));
            let ev = match &user {
                Some(u) => gw.about(ev, u),
                None => ev.subject(&p.user_id, None),
            };
            gw.audit.append(ev).await?;
        }
        tokio::time::sleep(attempt.delay(cfg)).await;
        if p.otp_failures >= MAX_OTP_FAILURES {
            state::discard(gw, &at.lr).await?;
            return Ok(Checked::Page(web::error_page(
                gw,
                lang,
                StatusCode::UNAUTHORIZED,
                lang.texts().expired,
                None,
            )));
        }
        state::save(gw, &at.lr, p).await?;
        return Ok(Checked::Page(pages::second_factor_page(
            gw,
            at,
            StatusCode::UNAUTHORIZED,
            p,
            Some(lang.texts().code_wrong),
        )));
    };
    throttle::succeeded(&gw.store, &[key.as_str()], None, now).await?;
    if kind == Verified::RecoveryCode {
        tracing::info!(user = %p.user_id, "recovery code used");
    }
    Ok(Checked::Passed(p.with_factor(
        KIND,
        Loa::Substantial,
        &["otp", "mfa"],
        now,
    )))
}

/// The enrolment page in `lang`, with what this moment shows.
fn totp_page(gw: &Gateway, lang: Lang, status: StatusCode, ctx: minijinja::Value) -> Response {
    web::page(
        gw,
        status,
        "totp.html",
        minijinja::context! {
            lang => lang.code(), base => gw.cfg.base_path(),
            t => minijinja::Value::from_serialize(lang.texts()),
            ..ctx
        },
    )
}

/// The enrolment page needs the browser's session; its form is bound to it.
fn enrol_csrf(gw: &Gateway, handle: &str) -> String {
    gw.master.keyed_hash(&format!("totp-enrol|{handle}"))
}

fn otpauth_uri(gw: &Gateway, username: &str, secret_b32: &str) -> String {
    let issuer = gw.cfg.issuer.host_str().unwrap_or("interkom").to_owned();
    let mut u = url::Url::parse("otpauth://totp/").unwrap_or_else(|_| gw.cfg.issuer.clone());
    u.set_path(&format!("/interkom:{username}"));
    u.query_pairs_mut()
        .append_pair("secret", secret_b32)
        .append_pair("issuer", &format!("interkom {issuer}"))
        .append_pair("algorithm", "SHA1")
        .append_pair("digits", "6")
        .append_pair("period", "30");
    u.to_string()
}

/// `GET /account/totp`: enrolment (secret and a form for the first code)
/// for the signed-in user, or the note that a second factor is active.
pub(crate) async fn enrol_get(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    match enrol_page(&gw, lang, &headers, None).await {
        Ok(r) => r,
        Err(e) => web::internal(&gw, lang, e),
    }
}

async fn enrol_page(
    gw: &Gateway,
    lang: Lang,
    headers: &HeaderMap,
    error: Option<&str>,
) -> Result<Response, GatewayError> {
    let Some((handle, user)) = enrolling_user(gw, headers).await? else {
        return Ok(web::error_page(
            gw,
            lang,
            StatusCode::UNAUTHORIZED,
            lang.texts().signin_first,
            None,
        ));
    };
    if gw.dir.has_totp(&user.id).await? {
        return Ok(totp_page(
            gw,
            lang,
            StatusCode::OK,
            minijinja::context! {
                active => true,
            },
        ));
    }
    // A fresh secret each time the page is shown, until one is confirmed.
    let mut raw = [0u8; 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    gw.dir.stage_totp(&user.id, &raw).await?;
    let secret_b32 = match Secret::Raw(raw.to_vec()).to_encoded() {
        Secret::Encoded(s) => s,
        Secret::Raw(_) => return Err(GatewayError::Crypto("cannot encode the TOTP secret")),
    };
    Ok(totp_page(
        gw,
        lang,
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        minijinja::context! {
            active => false,
            secret => secret_b32,
            uri => otpauth_uri(gw, &user.username, &secret_b32),
            csrf_token => enrol_csrf(gw, &handle),
            error => error,
        },
    ))
}

#[derive(Deserialize)]
struct EnrolForm {
    csrf_token: Option<String>,
    code: Option<String>,
}

/// `POST /account/totp`: confirms the credential with a first code and
/// shows the recovery codes, once.
pub(crate) async fn enrol_post(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    match confirm(&gw, &meta, lang, &headers, &body).await {
        Ok(r) => r,
        Err(e) => web::internal(&gw, lang, e),
    }
}

async fn confirm(
    gw: &Gateway,
    meta: &Meta,
    lang: Lang,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, GatewayError> {
    let bad = |status, m: &str| Ok(web::error_page(gw, lang, status, m, None));
    let Ok(form) = serde_urlencoded::from_bytes::<EnrolForm>(body) else {
        return bad(StatusCode::BAD_REQUEST, lang.texts().bad_request);
    };
    let Some((handle, user)) = enrolling_user(gw, headers).await? else {
        return bad(StatusCode::UNAUTHORIZED, lang.texts().signin_first);
    };
    if !form
        .csrf_token
        .is_some_and(|c| ct_eq(&c, &enrol_csrf(gw, &handle)))
    {
        return bad(StatusCode::FORBIDDEN, lang.texts().expired);
    }
    let Some(staged) = gw.dir.staged_totp(&user.id).await? else {
        return bad(StatusCode::CONFLICT, lang.texts().expired);
    };
    let secret = staged.secret.clone();
    let code: String = form
        .code
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let now = gw.clock.now();
    let Some(step) = matching_step(secret, &code, now) else {
        return Ok(totp_page(
            gw,
            lang,
            StatusCode::BAD_REQUEST,
            minijinja::context! {
                active => false, retry => true,
                error => lang.texts().code_wrong,
            },
        ));
    };
    let codes = new_recovery_codes();
    let normalised: Vec<String> = codes.iter().map(|c| normalise_recovery(c)).collect();
    // Confirmed only if still unconfirmed and still this secret (a second
    // tab may have shown a new one meanwhile).
    if !gw
        .dir
        .confirm_totp(&user.id, &staged, step, &normalised)
        .await?
    {
        return bad(StatusCode::CONFLICT, lang.texts().expired);
    }
    let ev = gw.about(
        AuditEvent::new(Action::SecondFactorEnrolled, Outcome::Success)
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(serde_json::json!({ "method": "totp", "recovery_codes": codes.len() })),
        &user,
    );
    gw.audit.append(ev).await?;
    let mut res = totp_page(
        gw,
        lang,
        StatusCode::OK,
        minijinja::context! {
            active => true, recovery_codes => codes,
        },
    );
    // Never cached: the codes are shown once.
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(res.into_response())
}

/// Enrols TOTP for an account without its first code (the operator hands
/// the secret over: the first administrator, the demo's): with the given
/// base32 secret, or a new one; returns the secret, base32. An account with
/// a confirmed TOTP keeps it (`None`).
pub(crate) async fn enrol_known(
    gw: &Gateway,
    user_id: &str,
    secret_b32: Option<&str>,
) -> Result<Option<String>, GatewayError> {
    if gw.dir.has_totp(user_id).await? {
        return Ok(None);
    }
    let raw = match secret_b32 {
        Some(s) => Secret::Encoded(s.to_owned())
            .to_bytes()
            .map_err(|_| GatewayError::Config("a TOTP secret must be base32".into()))?,
        None => {
            let mut raw = [0u8; 20];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
            raw.to_vec()
        }
    };
    let encoded = match Secret::Raw(raw.clone()).to_encoded() {
        Secret::Encoded(s) => s,
        Secret::Raw(_) => return Err(GatewayError::Crypto("cannot encode the TOTP secret")),
    };
    gw.dir.stage_totp(user_id, &raw).await?;
    let Some(staged) = gw.dir.staged_totp(user_id).await? else {
        return Ok(None);
    };
    // Step 0: every code from now on is new.
    let confirmed = gw.dir.confirm_totp(user_id, &staged, 0, &[]).await?;
    Ok(confirmed.then_some(encoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vectors_and_skew() {
        // RFC 6238 appendix B, SHA-1, 8 digits there; the same HOTP values
        // truncated to 6 digits.
        let secret = b"12345678901234567890".to_vec();
        let t = totp(secret.clone());
        assert_eq!(t.generate(59), "287082");
        assert_eq!(t.generate(1_111_111_109), "081804");
        assert_eq!(t.generate(2_000_000_000), "279037");
        let now = 1_111_111_109;
        assert_eq!(matching_step(secret.clone(), "081804", now), Some(now / 30));
        // One step late still counts, two do not.
        assert!(matching_step(secret.clone(), "081804", now + 30).is_some());
        assert!(matching_step(secret.clone(), "081804", now + 61).is_none());
        assert!(matching_step(secret, "08180", now).is_none());
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalise() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let set: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(set.len(), RECOVERY_CODES);
        assert_eq!(normalise_recovery(&codes[0].to_lowercase()).len(), 16);
    }
}
