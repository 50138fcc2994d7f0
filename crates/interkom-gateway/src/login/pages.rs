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

/// A source offered on a Leistung's page.
#[derive(Serialize)]
pub(crate) struct SourceEntry {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: String,
}

/// The German name of a Vertrauensniveau.
pub(crate) fn niveau(loa: interkom_types::Loa) -> &'static str {
    match loa {
        interkom_types::Loa::Low => "niedrig",
        interkom_types::Loa::Substantial => "substanziell",
        interkom_types::Loa::High => "hoch",
    }
}

/// How the person's data a Leistung receives is named on its page.
pub(crate) fn claim_label(claim: &str) -> &str {
    match claim {
        "given_name" => "Vorname",
        "family_name" => "Familienname",
        "birthdate" => "Geburtsdatum",
        "place_of_birth" => "Geburtsort",
        "birth_name" => "Geburtsname",
        "nationality" => "Staatsangehörigkeit",
        "address" => "Anschrift",
        "email" => "E-Mail-Adresse",
        "organisation" => "Unternehmen (Name und Kennung)",
        other => other,
    }
}

/// The page of a Leistung: what it is, who offers it, the level it needs,
/// the data it receives and its legal basis, and the identity sources that
/// reach the level (or, after a refusal, why, and the sources to try again
/// with).
pub(crate) fn leistung_page(
    gw: &Gateway,
    at: &LoginRequest,
    l: &interkom_policy::LeistungSpec,
    sources: &[SourceEntry],
    status: StatusCode,
    message: Option<&str>,
    detail: Option<&str>,
) -> Response {
    #[derive(Serialize)]
    struct Claim<'a> {
        claim: &'a str,
        label: &'a str,
    }
    // In the order a person reads them (names first), not the set's.
    let claims: Vec<Claim<'_>> = interkom_policy::leistungen::CLAIMS
        .iter()
        .filter(|c| l.claims.contains(**c))
        .map(|c| Claim {
            claim: c,
            label: claim_label(c),
        })
        .collect();
    let kommune = gw
        .tenants
        .get(&l.tenant)
        .map(|t| t.name.clone())
        .unwrap_or_else(|| l.tenant.clone());
    web::page(
        gw,
        status,
        "leistung.html",
        minijinja::context! {
            lang => Lang::De.code(),
            base => gw.cfg.base_path(),
            l => minijinja::Value::from_serialize(l),
            kommune => kommune,
            niveau => niveau(l.loa),
            claims => claims,
            sources => sources,
            message => message,
            detail => detail,
            retry => message.is_some(),
            login_request => &at.lr,
            csrf_token => csrf_token(gw, &at.browser, &at.lr),
        },
    )
}
