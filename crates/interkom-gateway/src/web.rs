//! What the browser sees: templates, HTML pages with strict security
//! headers, cookies, and the request metadata that goes into audit events.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

use crate::config::SourcePseudonymisation;
use crate::i18n::{Lang, LangTexts, Texts};
use crate::{Gateway, GatewayError};

pub(crate) fn templates() -> Result<Environment<'static>, GatewayError> {
    let mut env = Environment::new();
    env.add_template("base.html", include_str!("../templates/base.html"))?;
    env.add_template("login.html", include_str!("../templates/login.html"))?;
    env.add_template("error.html", include_str!("../templates/error.html"))?;
    env.add_template("logout.html", include_str!("../templates/logout.html"))?;
    env.add_template("otp.html", include_str!("../templates/otp.html"))?;
    env.add_template("totp.html", include_str!("../templates/totp.html"))?;
    env.add_template("passkey.html", include_str!("../templates/passkey.html"))?;
    env.add_template("consent.html", include_str!("../templates/consent.html"))?;
    env.add_template("consents.html", include_str!("../templates/consents.html"))?;
    env.add_template(
        "saml_post.html",
        include_str!("../templates/saml_post.html"),
    )?;
    env.add_template("leistung.html", include_str!("../templates/leistung.html"))?;
    Ok(env)
}

/// The passkey script of the second-factor and passkey pages.
pub(crate) async fn saml_post_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../assets/saml-post.js"),
    )
        .into_response()
}

pub(crate) async fn webauthn_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../assets/webauthn.js"),
    )
        .into_response()
}

pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../assets/interkom.css"),
    )
        .into_response()
}

/// Headers of every page: no framing, no referrer (codes travel in URLs),
/// no caching, a CSP that allows only our own stylesheet and script.
pub(crate) fn secure_headers(h: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::PRAGMA, "no-cache");
}

/// An HTML page.
pub(crate) fn page(
    gw: &Gateway,
    status: StatusCode,
    name: &str,
    ctx: minijinja::Value,
) -> Response {
    let html = gw.templates.get_template(name).and_then(|t| t.render(ctx));
    let mut res = match html {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, template = name, "page could not be rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    };
    secure_headers(res.headers_mut());
    res
}

#[derive(Serialize)]
struct ErrorCtx<'a> {
    lang: &'static str,
    base: &'a str,
    t: &'static Texts,
    message: &'a str,
    code: Option<&'a str>,
}

/// The error page for requests that cannot be answered with a redirect.
pub(crate) fn error_page(
    gw: &Gateway,
    lang: Lang,
    status: StatusCode,
    message: &str,
    code: Option<&str>,
) -> Response {
    error_page_at(gw, lang, status, message, code, gw.cfg.base_path())
}

/// The error page, its assets under `base` (a protected host's pages
/// name interkom's under `/.interkom`).
pub(crate) fn error_page_at(
    gw: &Gateway,
    lang: Lang,
    status: StatusCode,
    message: &str,
    code: Option<&str>,
    base: &str,
) -> Response {
    page(
        gw,
        status,
        "error.html",
        minijinja::Value::from_serialize(ErrorCtx {
            lang: lang.code(),
            base,
            t: lang.texts(),
            message,
            code,
        }),
    )
}

/// The page that posts a SAML message to `action` (at once with the
/// script, else by its button).
pub(crate) fn saml_post_page(
    gw: &Gateway,
    action: &str,
    param: interkom_saml::binding::Param,
    xml: &str,
    relay_state: Option<&str>,
) -> Response {
    let fields = interkom_saml::binding::post_fields(param, xml, relay_state);
    let lang = Lang::De;
    page(
        gw,
        StatusCode::OK,
        "saml_post.html",
        minijinja::context! {
            lang => lang.code(),
            base => gw.cfg.base_path(),
            t => minijinja::Value::from_serialize(lang.texts()),
            action => action,
            fields => fields,
        },
    )
}

/// The page for an internal failure (the cause is logged, never shown).
pub(crate) fn internal(gw: &Gateway, lang: Lang, e: GatewayError) -> Response {
    tracing::error!(error = %e, "authorization failed internally");
    error_page(
        gw,
        lang,
        StatusCode::SERVICE_UNAVAILABLE,
        lang.texts().unavailable,
        None,
    )
}

/// A 303 redirect (never 307, which would repeat a POST with the password).
pub(crate) fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(res.headers_mut());
    res
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    interkom_types::cookie(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        name,
    )
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Secure under TLS, scoped to
/// the issuer's path. `max_age = 0` deletes it.
pub(crate) fn set_cookie(gw: &Gateway, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let path = match gw.cfg.base_path() {
        "" => "/",
        p => p,
    };
    let secure = if gw.cfg.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let v =
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Who asked: for audit events and language negotiation.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// The client's address (after trusted proxies); for counting only.
    pub(crate) ip: Option<std::net::IpAddr>,
    /// The address pseudonymised as the audit records it.
    pub(crate) source: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) accept_language: Option<String>,
}

impl FromRequestParts<Gateway> for Meta {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, gw: &Gateway) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical());
        let source = ip.map(|ip| match gw.cfg.source_pseudonymisation {
            SourcePseudonymisation::Truncate => truncate(ip),
            SourcePseudonymisation::KeyedHash => keyed(gw, ip),
        });
        let h = |n: &str| {
            parts
                .headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Meta {
            ip,
            source,
            request_id: h("x-request-id"),
            accept_language: h("accept-language"),
        })
    }
}

/// A keyed hash of the address: equal addresses stay recognisable as equal
/// (to follow one source), and without the server's key nobody can tell
/// which address it was.
fn keyed(gw: &Gateway, ip: std::net::IpAddr) -> String {
    let h = gw.master.keyed_hash(&format!("source|{ip}"));
    format!("h:{}", &h[..22.min(h.len())])
}

/// Truncated (IPv4 /24, IPv6 /48): enough to see a pattern, not enough to
/// name a person.
fn truncate(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// The page saying the user is logged out.
pub(crate) fn logged_out_page(gw: &Gateway, lang: Lang) -> Response {
    logged_out_page_at(gw, lang, gw.cfg.base_path())
}

/// The logged-out page, its assets under `base`.
pub(crate) fn logged_out_page_at(gw: &Gateway, lang: Lang, base: &str) -> Response {
    page(
        gw,
        StatusCode::OK,
        "logout.html",
        minijinja::context! {
            lang => lang.code(),
            base => base,
            t => minijinja::Value::from_serialize(lang.texts()),
            done => true,
        },
    )
}
