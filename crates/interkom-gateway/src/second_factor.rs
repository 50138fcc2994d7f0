//! The second factor of a login in progress: `POST /login/otp` (a TOTP or
//! recovery code) and `POST /login/passkey` (the passkey's answer, a form
//! post so the login goes on with a redirect like every other step). The
//! factor checks; the login flow decides what comes next.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use crate::factors::{passkey, totp};
use crate::login::flow;
use crate::login::state::{self, Posted};
use crate::web::Meta;
use crate::Gateway;

#[derive(Deserialize)]
struct OtpForm {
    code: Option<String>,
}

/// `POST /login/otp`.
pub(crate) async fn otp(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Posted { form, at, pending } =
        match state::posted::<OtpForm>(&gw, &meta, &headers, &body).await {
            Ok(p) => p,
            Err(r) => return r,
        };
    let Some(mut p) = pending.filter(|p| state::offered(p, totp::KIND)) else {
        return state::out_of_step(&gw, at.lang);
    };
    let code = form.code.as_deref().unwrap_or("");
    let checked = totp::check(&gw, &meta, &at, &mut p, code).await;
    flow::go_on(&gw, &meta, &at, checked).await
}

#[derive(Deserialize)]
struct PasskeyForm {
    credential: Option<String>,
}

/// `POST /login/passkey`.
pub(crate) async fn passkey(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Posted { form, at, pending } =
        match state::posted::<PasskeyForm>(&gw, &meta, &headers, &body).await {
            Ok(p) => p,
            Err(r) => return r,
        };
    let (Some(p), true) = (
        pending.filter(|p| state::offered(p, passkey::KIND)),
        gw.webauthn.is_some(),
    ) else {
        return state::out_of_step(&gw, at.lang);
    };
    let checked = passkey::check(&gw, &meta, &at, p, form.credential.as_deref()).await;
    flow::go_on(&gw, &meta, &at, checked).await
}
