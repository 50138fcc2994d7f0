//! Who may enrol a second factor: the signed-in user of a recent local
//! password login (with a second factor, once the account has one).

use axum::http::HeaderMap;
use interkom_directory::User;
use interkom_types::has_second_factor;

use crate::session::{self, SESSION_COOKIE};
use crate::web;
use crate::{Gateway, GatewayError};

/// How recent the password must be to enrol a second factor.
pub(crate) const ENROL_MAX_AGE: i64 = 900;

/// The signed-in user who may enrol a second factor: logged in with the
/// local password (a second factor is for local accounts; staff who come
/// through their Kommune's IdP step up there) within the last 15 minutes,
/// and with a second factor if the account already has one.
pub(crate) async fn enrolling_user(
    gw: &Gateway,
    headers: &HeaderMap,
) -> Result<Option<(String, User)>, GatewayError> {
    let Some(handle) = web::cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let now = gw.clock.now();
    let Some(s) = session::session_by_handle(gw, &handle, now).await? else {
        return Ok(None);
    };
    if s.upstream.is_some() || now - s.auth_time > ENROL_MAX_AGE {
        return Ok(None);
    }
    let Some(user) = gw.dir.user(&s.user_id).await?.filter(|u| u.is_enabled()) else {
        return Ok(None);
    };
    // Once an account has a second factor, adding another takes one: a
    // phished password alone must not add the attacker's.
    let amr: Vec<String> = serde_json::from_str(&s.amr).unwrap_or_default();
    if !has_second_factor(&amr) && gw.dir.has_second_factor(&user.id).await? {
        return Ok(None);
    }
    Ok(Some((handle, user)))
}
