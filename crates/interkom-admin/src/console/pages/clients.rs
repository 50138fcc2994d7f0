//! Clients (Fachverfahren) and their secrets.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use interkom_types::Lang;
use minijinja::context;
use serde_json::{json, Value};

use crate::console::i18n::lang_of;
use crate::console::session::Session;
use crate::console::state::{
    csrf_refused, form, problem_page, urlencode, with_lang_cookie, Console,
};

pub(crate) async fn clients(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let r = clients_page(&c, &s, lang, None, None).await;
    with_lang_cookie(r, lang, set, &c)
}

pub(crate) async fn clients_page(
    c: &Console,
    s: &Session,
    lang: Lang,
    error: Option<String>,
    secret: Option<Value>,
) -> Response {
    let (status, _, list) = c
        .api(s, Method::GET, "/clients?limit=1000", None, None)
        .await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    c.render(
        lang,
        StatusCode::OK,
        "clients.html",
        context! {
            page => "clients", csrf => s.csrf, clients => list["clients"], error, secret,
            truncated => list["next_cursor"].is_string(),
        },
    )
}

/// Renews a confidential client's secret, shown once.
pub(crate) async fn clients_post(
    State(c): State<Console>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let s = session_or_login!(c, headers);
    let Some(f) = form(&s, &body) else {
        return csrf_refused(&c, lang);
    };
    let id = f.get("id").cloned().unwrap_or_default();
    let uri = format!("/clients/{}/secret", urlencode(&id));
    let (status, _, v) = c.api(&s, Method::POST, &uri, None, None).await;
    if status == StatusCode::OK {
        let secret = json!({ "client": id, "secret": v["client_secret"] });
        clients_page(&c, &s, lang, None, Some(secret)).await
    } else {
        clients_page(&c, &s, lang, v["detail"].as_str().map(str::to_owned), None).await
    }
}
