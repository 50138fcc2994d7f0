//! The pages of a login: the login form (with the upstreams to choose
//! from) and the second-factor page.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use interkom_directory::ldap::DirectorySource;
use interkom_directory::{Client, Upstream};
use serde::Serialize;

use super::state::{csrf_token, offered, Login, LoginRequest};
use crate::i18n::{Lang, LangTexts};
use crate::web;
use crate::Gateway;

/// The upstreams and directories offered on the login page, and the
/// directory the password form is for (when one was chosen).
#[derive(Serialize)]
pub(crate) struct Chooser {
    idps: Vec<IdpEntry>,
    query: String,
    /// Upstreams or directories exist at all (the section is shown).
    any: bool,
    /// The directory the password goes to (a hidden field of the form).
    directory: Option<IdpEntry>,
}

#[derive(Serialize)]
struct IdpEntry {
    /// The button's value: an upstream's id, or `dir:` and a directory's.
    id: String,
    name: String,
    last: bool,
}

/// The prefix that marks a directory among the choices.
pub(crate) const DIRECTORY_CHOICE: &str = "dir:";

impl Chooser {
    /// The upstreams and directories matching `query` (name, id or
    /// domain), the one chosen last first.
    pub(crate) fn new(
        list: &[Arc<Upstream>],
        dirs: &[Arc<DirectorySource>],
        last: Option<&str>,
        query: Option<&str>,
    ) -> Chooser {
        let q = query.unwrap_or("").trim().to_lowercase();
        let matches = |name: &str, id: &str, domains: &[String]| {
            q.is_empty()
                || name.to_lowercase().contains(&q)
                || id.contains(&q)
                || domains.iter().any(|d| d.to_lowercase().contains(&q))
        };
        let mut idps: Vec<IdpEntry> = list
            .iter()
            .filter(|u| matches(&u.cfg.name, &u.cfg.id, &u.cfg.domains))
            .map(|u| IdpEntry {
                id: u.cfg.id.clone(),
                name: u.cfg.name.clone(),
                last: Some(u.cfg.id.as_str()) == last,
            })
            .chain(
                dirs.iter()
                    .filter(|d| matches(&d.cfg.name, &d.cfg.id, &d.cfg.domains))
                    .map(|d| {
                        let id = format!("{DIRECTORY_CHOICE}{}", d.cfg.id);
                        IdpEntry {
                            last: Some(id.as_str()) == last,
                            id,
                            name: d.cfg.name.clone(),
                        }
                    }),
            )
            .collect();
        idps.sort_by_key(|e| !e.last);
        Chooser {
            idps,
            query: query.unwrap_or("").chars().take(100).collect(),
            any: !list.is_empty() || !dirs.is_empty(),
            directory: None,
        }
    }

    /// The password form for this directory.
    pub(crate) fn for_directory(mut self, d: &DirectorySource) -> Chooser {
        self.directory = Some(IdpEntry {
            id: d.cfg.id.clone(),
            name: d.cfg.name.clone(),
            last: false,
        });
        self
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
