//! The console's state and the building blocks of its pages: templates,
//! secure headers, the in-process calls of the gateway's token endpoint and
//! of the admin API with the administrator's token, forms and messages.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use interkom_types::{cookie as cookie_value, Lang};
use minijinja::{context, Environment};
use serde_json::Value;
use tower::ServiceExt;

use crate::AdminState;

use super::client::CONSOLE_CLIENT;
use super::i18n::{texts, LANG_COOKIE};
use super::session::{self, Session};

pub(crate) const COOKIE: &str = "interkom_console";
/// Under https the session cookie is host-only and cannot be shadowed.
pub(crate) const HOST_COOKIE: &str = "__Host-interkom_console";

#[derive(Clone)]
pub(crate) struct Console(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) admin: AdminState,
    pub(crate) api: Router,
    pub(crate) gateway: Router,
    pub(crate) env: Environment<'static>,
    pub(crate) secure_cookie: bool,
    pub(crate) redirect_uri: String,
    pub(crate) authorize: String,
    pub(crate) logout: String,
    pub(crate) base: String,
}

pub(crate) fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, src) in [
        ("base.html", include_str!("../../templates/base.html")),
        (
            "overview.html",
            include_str!("../../templates/overview.html"),
        ),
        ("users.html", include_str!("../../templates/users.html")),
        ("policy.html", include_str!("../../templates/policy.html")),
        (
            "proposals.html",
            include_str!("../../templates/proposals.html"),
        ),
        ("grants.html", include_str!("../../templates/grants.html")),
        (
            "resources.html",
            include_str!("../../templates/resources.html"),
        ),
        ("clients.html", include_str!("../../templates/clients.html")),
        (
            "directories.html",
            include_str!("../../templates/directories.html"),
        ),
        (
            "upstreams.html",
            include_str!("../../templates/upstreams.html"),
        ),
        (
            "applications.html",
            include_str!("../../templates/applications.html"),
        ),
        (
            "service_providers.html",
            include_str!("../../templates/service_providers.html"),
        ),
        (
            "leistungen.html",
            include_str!("../../templates/leistungen.html"),
        ),
        (
            "saml_sources.html",
            include_str!("../../templates/saml_sources.html"),
        ),
        ("audit.html", include_str!("../../templates/audit.html")),
        ("message.html", include_str!("../../templates/message.html")),
    ] {
        if let Err(e) = env.add_template(name, src) {
            tracing::error!(error = %e, name, "console template invalid");
        }
    }
    env
}

/// A cookie of the request.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    cookie_value(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        name,
    )
}

/// Headers of every console page.
pub(crate) fn secure(h: &mut HeaderMap) {
    let mut set = |k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::CACHE_CONTROL, "no-store");
}

impl Console {
    pub(crate) fn now(&self) -> i64 {
        self.0.admin.0.gateway.clock().now()
    }

    pub(crate) fn cookie_name(&self) -> &'static str {
        if self.0.secure_cookie {
            HOST_COOKIE
        } else {
            COOKIE
        }
    }

    pub(crate) fn cookie_path(&self) -> &str {
        if self.0.secure_cookie {
            "/"
        } else {
            &self.0.base
        }
    }

    pub(crate) async fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let handle = cookie(headers, self.cookie_name())?;
        let gw = &self.0.admin.0.gateway;
        let hash = gw.handle_hash(&handle);
        let (sealed, refresh, csrf, expires_at) =
            session::tokens(&self.0.admin.0.pool, &hash).await.ok()??;
        let token = if expires_at > self.now() {
            gw.open(&sealed?, &hash)?
        } else {
            // The access token ran out: renew it with the refresh token.
            sealed?;
            self.refresh(&hash, &gw.open(&refresh?, &hash)?).await?
        };
        Some(Session {
            handle_hash: hash,
            token,
            csrf,
            request_id: headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        })
    }

    /// A token request at the gateway, in-process.
    pub(crate) async fn token_request(
        &self,
        form: &[(&str, &str)],
        peer: Option<ConnectInfo<SocketAddr>>,
    ) -> (StatusCode, Value) {
        let body = serde_urlencoded::to_string(form).unwrap_or_default();
        let req = Request::builder()
            .method(Method::POST)
            .uri("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body));
        let Ok(mut req) = req else {
            return (StatusCode::INTERNAL_SERVER_ERROR, Value::Null);
        };
        req.extensions_mut()
            .insert(peer.unwrap_or(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 0)))));
        let res = match self.0.gateway.clone().oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        };
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1024 * 1024)
            .await
            .unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Renews a session's access token (and rotates its refresh token).
    pub(crate) async fn refresh(&self, hash: &str, refresh_token: &str) -> Option<String> {
        let (status, tokens) = self
            .token_request(
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                    ("client_id", CONSOLE_CLIENT),
                ],
                None,
            )
            .await;
        if status != StatusCode::OK {
            return None;
        }
        let access = tokens["access_token"].as_str()?;
        let expires_in = tokens["expires_in"].as_i64()?;
        let gw = &self.0.admin.0.gateway;
        let new_refresh = tokens["refresh_token"].as_str().unwrap_or(refresh_token);
        session::renew(
            &self.0.admin.0.pool,
            hash,
            &gw.seal(access, hash)?,
            &gw.seal(new_refresh, hash)?,
            self.now() + expires_in,
        )
        .await
        .ok()?;
        Some(access.to_owned())
    }

    pub(crate) fn render(
        &self,
        lang: Lang,
        status: StatusCode,
        name: &str,
        ctx: minijinja::Value,
    ) -> Response {
        let full = context! { ..ctx, ..context! {
            t => texts(lang), lang => lang.code(), base => self.0.base.clone(),
            other_lang => if lang == Lang::De { "en" } else { "de" },
        }};
        let html = self.0.env.get_template(name).and_then(|t| t.render(full));
        let mut r = match html {
            Ok(h) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                h,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, name, "console page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "console page failed").into_response()
            }
        };
        secure(r.headers_mut());
        r
    }

    pub(crate) fn message(
        &self,
        lang: Lang,
        status: StatusCode,
        title: &str,
        detail: &str,
    ) -> Response {
        self.render(lang, status, "message.html", context! { title, detail })
    }

    /// Calls the admin API in-process with the session's token.
    pub(crate) async fn api_raw(
        &self,
        s: &Session,
        method: Method,
        uri: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Response {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", s.token));
        if let Some(id) = &s.request_id {
            req = req.header("x-request-id", id);
        }
        if let Some(m) = if_match {
            req = req.header(header::IF_MATCH, m);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        match req {
            Ok(r) => match self.0.api.clone().oneshot(r).await {
                Ok(res) => res,
                Err(e) => match e {},
            },
            Err(_) => StatusCode::BAD_REQUEST.into_response(),
        }
    }

    /// The API's answer as status, ETag and JSON.
    pub(crate) async fn api(
        &self,
        s: &Session,
        method: Method,
        uri: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> (StatusCode, Option<String>, Value) {
        let res = self.api_raw(s, method, uri, body, if_match).await;
        let status = res.status();
        let tag = res
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(res.into_body(), 16 * 1024 * 1024)
            .await
            .unwrap_or_default();
        (
            status,
            tag,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// Form fields of a POST, with the CSRF token checked.
pub(crate) fn form(s: &Session, body: &Bytes) -> Option<HashMap<String, String>> {
    let f: HashMap<String, String> = serde_urlencoded::from_bytes(body).ok()?;
    let sent = f.get("csrf")?;
    let ok = sent.len() == s.csrf.len()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            sent.as_bytes(),
            s.csrf.as_bytes(),
        ));
    ok.then_some(f)
}

pub(crate) fn with_lang_cookie(mut r: Response, lang: Lang, set: bool, c: &Console) -> Response {
    if set {
        let v = format!(
            "{LANG_COOKIE}={}; Path={}; SameSite=Lax; HttpOnly{}",
            lang.code(),
            c.0.base,
            if c.0.secure_cookie { "; Secure" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

pub(crate) fn csrf_refused(c: &Console, lang: Lang) -> Response {
    let t = texts(lang);
    c.message(
        lang,
        StatusCode::FORBIDDEN,
        t["error"].as_str().unwrap_or_default(),
        t["csrf"].as_str().unwrap_or_default(),
    )
}

pub(crate) fn bad_form(c: &Console, lang: Lang) -> Response {
    let t = texts(lang);
    c.message(
        lang,
        StatusCode::BAD_REQUEST,
        t["error"].as_str().unwrap_or_default(),
        t["not_found"].as_str().unwrap_or_default(),
    )
}

pub(crate) fn problem_page(c: &Console, lang: Lang, status: StatusCode, p: &Value) -> Response {
    let t = texts(lang);
    c.message(
        lang,
        if status.is_success() {
            StatusCode::BAD_GATEWAY
        } else {
            status
        },
        t["error"].as_str().unwrap_or_default(),
        p["detail"].as_str().unwrap_or_default(),
    )
}

/// The API's reason for a refusal, or its status when it gave none.
pub(crate) fn detail(status: StatusCode, v: &Value) -> String {
    v["detail"]
        .as_str()
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| status.to_string())
}

pub(crate) fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) fn lines_of(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::i18n::TEXTS;
    use super::*;

    #[test]
    fn every_template_parses_and_names_only_known_texts() {
        let env = templates();
        for name in [
            "base.html",
            "overview.html",
            "users.html",
            "policy.html",
            "proposals.html",
            "grants.html",
            "resources.html",
            "clients.html",
            "upstreams.html",
            "directories.html",
            "applications.html",
            "service_providers.html",
            "leistungen.html",
            "saml_sources.html",
            "audit.html",
            "message.html",
        ] {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
        let mut keys: Vec<&str> = TEXTS.iter().map(|(k, _, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), TEXTS.len(), "a text key twice");
        assert!(TEXTS.iter().all(|(_, d, e)| !d.is_empty() && !e.is_empty()));
        // Every text a template names exists.
        let sources = [
            include_str!("../../templates/base.html"),
            include_str!("../../templates/overview.html"),
            include_str!("../../templates/users.html"),
            include_str!("../../templates/policy.html"),
            include_str!("../../templates/proposals.html"),
            include_str!("../../templates/grants.html"),
            include_str!("../../templates/audit.html"),
            include_str!("../../templates/message.html"),
            include_str!("../../templates/resources.html"),
            include_str!("../../templates/clients.html"),
            include_str!("../../templates/upstreams.html"),
            include_str!("../../templates/applications.html"),
            include_str!("../../templates/service_providers.html"),
            include_str!("../../templates/leistungen.html"),
            include_str!("../../templates/saml_sources.html"),
        ];
        for src in sources {
            for part in src.split("t.").skip(1) {
                let key: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !key.is_empty() && src.contains(&format!("{{{{ t.{key}")) {
                    assert!(keys.contains(&key.as_str()), "missing text `{key}`");
                }
            }
        }
    }
}
