//! Four-eyes proposals: pending changes to approve or reject.

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
    bad_form, csrf_refused, form, problem_page, urlencode, with_lang_cookie, Console,
};

pub(crate) async fn proposals(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let r = proposals_page(&c, &s, lang, None, None).await;
    with_lang_cookie(r, lang, set, &c)
}

pub(crate) async fn proposals_page(
    c: &Console,
    s: &Session,
    lang: Lang,
    error: Option<String>,
    result: Option<Value>,
) -> Response {
    let (status, _, list) = c
        .api(
            s,
            Method::GET,
            "/proposals?status=pending&limit=1000",
            None,
            None,
        )
        .await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let items: Vec<Value> = list["proposals"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut p| {
            p["change_text"] =
                json!(serde_json::to_string_pretty(&p["change"]).unwrap_or_default());
            p
        })
        .collect();
    c.render(
        lang,
        StatusCode::OK,
        "proposals.html",
        context! {
            page => "proposals", csrf => s.csrf, proposals => items, error, result,
        },
    )
}

pub(crate) async fn proposals_post(
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
    let op = match f.get("op").map(String::as_str) {
        Some("approve") => "approve",
        Some("reject") => "reject",
        _ => return bad_form(&c, lang),
    };
    let uri = format!("/proposals/{}/{op}", urlencode(&id));
    let (status, _, v) = c.api(&s, Method::POST, &uri, None, None).await;
    let error = (!status.is_success()).then(|| v["detail"].as_str().unwrap_or("").to_owned());
    let result = status.is_success().then_some(v);
    proposals_page(&c, &s, lang, error, result).await
}
