//! The pages of a login: the login form (with the upstreams to choose
//! from) and the second-factor page.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use interkom_directory::{Client, Upstream};
use serde::Serialize;

use super::state::{csrf_token, offered, Login, LoginRequest};
use crate::i18n::{Lang, LangTexts};
use crate::web;
use crate::Gateway;

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
    pub(crate) fn new(list: &[Arc<Upstream>], last: Option<&str>, query: Option<&str>) -> Chooser {
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

/// The login form for this login request.
pub(crate) fn login_form(
    gw: &Gateway,
    at: &LoginRequest,
    status: StatusCode,
    username: Option<&str>,
    error: Option<&str>,
    chooser: &Chooser,
) -> Response {
    login_page(
        gw,
        at.lang,
        status,
        &at.client,
        &at.lr,
        &at.browser,
        username,
        error,
        chooser,
    )
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

/// The page asking for a second factor: the methods `p` offers.
pub(crate) fn second_factor_page(
    gw: &Gateway,
    at: &LoginRequest,
    status: StatusCode,
    p: &Login,
    error: Option<&str>,
) -> Response {
    let offers = |m: &str| offered(p, m);
    let lang = at.lang;
    web::page(
        gw,
        status,
        "otp.html",
        minijinja::context! {
            lang => lang.code(),
            base => gw.cfg.base_path(),
            t => minijinja::Value::from_serialize(lang.texts()),
            client_name => &at.client.name,
            login_request => &at.lr,
            csrf_token => csrf_token(gw, &at.browser, &at.lr),
            error => error,
            totp => offers("totp"),
            passkey => offers("passkey"),
        },
    )
}

/// The consent page: which client, of which Kommune, wants which data.
pub(crate) fn consent_page(gw: &Gateway, at: &LoginRequest) -> Response {
    let lang = at.lang;
    let kommune = gw
        .tenants
        .get(&at.client.tenant)
        .map(|t| t.name.clone())
        .unwrap_or_else(|| at.client.tenant.to_string());
    let claims: Vec<(&str, &str)> = at
        .req
        .scope
        .iter()
        .filter_map(|s| super::consent::claims_of(s).map(|c| (s.as_str(), c)))
        .collect();
    web::page(
        gw,
        StatusCode::OK,
        "consent.html",
        minijinja::context! {
            lang => lang.code(),
            base => gw.cfg.base_path(),
            t => minijinja::Value::from_serialize(lang.texts()),
            client_name => &at.client.name,
            kommune => kommune,
            claims => claims,
            login_request => &at.lr,
            csrf_token => csrf_token(gw, &at.browser, &at.lr),
        },
    )
}
