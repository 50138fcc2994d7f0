//! The endpoints upstream OpenID Providers send the browser back to:
//! `GET /broker/callback` (the answer to a login there) and
//! `GET /broker/logged-out` (back from logging out there).

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use crate::i18n::Lang;
use crate::login::flow;
use crate::login::state::{Checked, Login};
use crate::sources::oidc::{self, Answer, Answered};
use crate::web::{self, Meta};
use crate::Gateway;

/// `GET /broker/callback`: the upstream's answer; a valid one goes on in
/// the login flow.
pub(crate) async fn callback(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match oidc::answer(&gw, &meta, &headers, query.as_deref()).await {
        Answer::Authenticated(a) => {
            let Answered { at, before, auth } = *a;
            let p = Login::authenticated(auth, before.as_ref());
            flow::go_on(&gw, &meta, &at, Ok(Checked::Passed(p))).await
        }
        Answer::Page(page) => page,
    }
}

/// `GET /broker/logged-out`: back from the upstream's logout; on to where
/// the logout was going (already verified when it began).
pub(crate) async fn logged_out(
    State(gw): State<Gateway>,
    meta: Meta,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    match oidc::logged_out_to(&gw, query.as_deref()) {
        Some(to) => web::see_other(&to),
        None => web::logged_out_page(&gw, lang),
    }
}
