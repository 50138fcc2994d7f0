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
use interkom_audit::{Action, AuditEvent, Outcome};
use serde::Deserialize;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::accounts::{self, SESSION_COOKIE};
use crate::crypto::ct_eq;
use crate::i18n::Lang;
use crate::web::{self, Meta};
use crate::{Gateway, GatewayError};

const STEP: u64 = 30;
/// One step either side: clocks of phones drift.
const SKEW: i64 = 1;
const RECOVERY_CODES: usize = 10;

fn totp(secret: Vec<u8>) -> TOTP {
    TOTP::new_unchecked(Algorithm::SHA1, 6, 0, STEP, secret)
}

fn aad(user_id: &str) -> String {
    format!("totp|{user_id}")
}

/// Whether the account has a confirmed TOTP credential.
pub(crate) async fn has_totp(gw: &Gateway, user_id: &str) -> Result<bool, GatewayError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM totp_credentials WHERE user_id = $1 AND confirmed_at IS NOT NULL",
    )
    .bind(user_id)
    .fetch_one(&gw.pool)
    .await?;
    Ok(n > 0)
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
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT secret_enc, last_step FROM totp_credentials \
             WHERE user_id = $1 AND confirmed_at IS NOT NULL",
        )
        .bind(user_id)
        .fetch_optional(&gw.pool)
        .await?;
        let Some((sealed, last_step)) = row else {
            return Ok(None);
        };
        let secret = gw
            .master
            .decrypt(&sealed, &aad(user_id))
            .map_err(|_| GatewayError::Crypto("TOTP secret cannot be opened"))?;
        let Some(step) = matching_step(secret, &code, now).filter(|s| *s > last_step) else {
            return Ok(None);
        };
        // Only a later step than any used before: a code counts once, even
        // when two nodes see it at the same moment.
        let n = sqlx::query(
            "UPDATE totp_credentials SET last_step = $1 WHERE user_id = $2 AND last_step < $1",
        )
        .bind(step)
        .bind(user_id)
        .execute(&gw.pool)
        .await?
        .rows_affected();
        return Ok((n == 1).then_some(Verified::Totp));
    }
    let normalised = normalise_recovery(&code);
    if normalised.len() != 16 {
        return Ok(None);
    }
    let n = sqlx::query(
        "UPDATE recovery_codes SET used_at = $1 \
         WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .bind(recovery_hash(gw, user_id, &normalised))
    .execute(&gw.pool)
    .await?
    .rows_affected();
    Ok((n == 1).then_some(Verified::RecoveryCode))
}

fn normalise_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn recovery_hash(gw: &Gateway, user_id: &str, normalised: &str) -> String {
    gw.master
        .keyed_hash(&format!("recovery|{user_id}|{normalised}"))
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

impl Gateway {
    /// Removes an account's TOTP credential, recovery codes and passkeys
    /// (an administrator's reset after a lost phone) and ends its sessions;
    /// true if there was anything to remove.
    pub async fn reset_second_factors(&self, user_id: &str) -> Result<bool, GatewayError> {
        let mut tx = self.pool.begin().await?;
        let a = sqlx::query("DELETE FROM totp_credentials WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let c = sqlx::query("DELETE FROM webauthn_credentials WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        self.end_sessions_of(user_id).await?;
        Ok(a + b + c > 0)
    }

    /// Whether an account has a confirmed second factor.
    pub async fn has_second_factor(&self, user_id: &str) -> Result<bool, GatewayError> {
        Ok(has_totp(self, user_id).await?
            || !crate::passkey::passkeys(self, user_id).await?.is_empty())
    }
}

/// The enrolment page needs the browser's session; its form is bound to it.
fn enrol_csrf(gw: &Gateway, handle: &str) -> String {
    gw.master.keyed_hash(&format!("totp-enrol|{handle}"))
}

/// How recent the password must be to enrol a second factor.
pub(crate) const ENROL_MAX_AGE: i64 = 900;

/// The signed-in user who may enrol a second factor: logged in with the
/// local password (a second factor is for local accounts; staff who come
/// through their Kommune's IdP step up there) within the last 15 minutes,
/// and with a second factor if the account already has one.
pub(crate) async fn enrolling_user(
    gw: &Gateway,
    headers: &HeaderMap,
) -> Result<Option<(String, accounts::User)>, GatewayError> {
    let Some(handle) = web::cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let now = gw.clock.now();
    let Some(s) = accounts::session_by_handle(&gw.pool, &gw.master, &handle, now).await? else {
        return Ok(None);
    };
    if s.upstream.is_some() || now - s.auth_time > ENROL_MAX_AGE {
        return Ok(None);
    }
    let Some(user) = accounts::user_by_id(&gw.pool, &s.user_id)
        .await?
        .filter(|u| u.disabled == 0)
    else {
        return Ok(None);
    };
    // Once an account has a second factor, adding another takes one: a
    // phished password alone must not add the attacker's.
    let amr: Vec<String> = serde_json::from_str(&s.amr).unwrap_or_default();
    let with_factor = amr
        .iter()
        .any(|m| interkom_policy::loa::SECOND_FACTOR_AMR.contains(&m.as_str()));
    if !with_factor && gw.has_second_factor(&user.id).await? {
        return Ok(None);
    }
    Ok(Some((handle, user)))
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
        Err(e) => crate::authorize::internal(&gw, lang, e),
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
    if has_totp(gw, &user.id).await? {
        return Ok(web::page(
            gw,
            StatusCode::OK,
            "totp.html",
            minijinja::context! {
                lang => lang.code(), base => gw.cfg.base_path(),
                t => minijinja::Value::from_serialize(lang.texts()),
                active => true,
            },
        ));
    }
    // A fresh secret each time the page is shown, until one is confirmed.
    let mut raw = [0u8; 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    let sealed = gw
        .master
        .encrypt(&raw, &aad(&user.id))
        .map_err(|_| GatewayError::Crypto("cannot seal the TOTP secret"))?;
    let now = gw.clock.now();
    sqlx::query(
        "INSERT INTO totp_credentials (user_id, secret_enc, confirmed_at, last_step, created_at) \
         VALUES ($1, $2, NULL, 0, $3) \
         ON CONFLICT (user_id) DO UPDATE SET secret_enc = $2, created_at = $3 \
         WHERE totp_credentials.confirmed_at IS NULL",
    )
    .bind(&user.id)
    .bind(&sealed)
    .bind(now)
    .execute(&gw.pool)
    .await?;
    let secret_b32 = match Secret::Raw(raw.to_vec()).to_encoded() {
        Secret::Encoded(s) => s,
        Secret::Raw(_) => return Err(GatewayError::Crypto("cannot encode the TOTP secret")),
    };
    Ok(web::page(
        gw,
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "totp.html",
        minijinja::context! {
            lang => lang.code(), base => gw.cfg.base_path(),
            t => minijinja::Value::from_serialize(lang.texts()),
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
        Err(e) => crate::authorize::internal(&gw, lang, e),
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
    let row: Option<(String, Option<i64>)> =
        sqlx::query_as("SELECT secret_enc, confirmed_at FROM totp_credentials WHERE user_id = $1")
            .bind(&user.id)
            .fetch_optional(&gw.pool)
            .await?;
    let Some((sealed, None)) = row else {
        return bad(StatusCode::CONFLICT, lang.texts().expired);
    };
    let secret = gw
        .master
        .decrypt(&sealed, &aad(&user.id))
        .map_err(|_| GatewayError::Crypto("TOTP secret cannot be opened"))?;
    let code: String = form
        .code
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let now = gw.clock.now();
    let Some(step) = matching_step(secret, &code, now) else {
        return Ok(web::page(
            gw,
            StatusCode::BAD_REQUEST,
            "totp.html",
            minijinja::context! {
                lang => lang.code(), base => gw.cfg.base_path(),
                t => minijinja::Value::from_serialize(lang.texts()),
                active => false, retry => true,
                error => lang.texts().code_wrong,
            },
        ));
    };
    let codes = new_recovery_codes();
    let mut tx = gw.pool.begin().await?;
    // Confirmed only if still unconfirmed and still this secret (a second
    // tab may have shown a new one meanwhile).
    let n = sqlx::query(
        "UPDATE totp_credentials SET confirmed_at = $1, last_step = $2 \
         WHERE user_id = $3 AND secret_enc = $4 AND confirmed_at IS NULL",
    )
    .bind(now)
    .bind(step)
    .bind(&user.id)
    .bind(&sealed)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n != 1 {
        return bad(StatusCode::CONFLICT, lang.texts().expired);
    }
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(&user.id)
        .execute(&mut *tx)
        .await?;
    for c in &codes {
        sqlx::query(
            "INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES ($1, $2, NULL)",
        )
        .bind(&user.id)
        .bind(recovery_hash(gw, &user.id, &normalise_recovery(c)))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let ev = gw.about(
        AuditEvent::new(Action::SecondFactorEnrolled, Outcome::Success)
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(serde_json::json!({ "method": "totp", "recovery_codes": codes.len() })),
        &user,
    );
    gw.audit.append(ev).await?;
    let mut res = web::page(
        gw,
        StatusCode::OK,
        "totp.html",
        minijinja::context! {
            lang => lang.code(), base => gw.cfg.base_path(),
            t => minijinja::Value::from_serialize(lang.texts()),
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
