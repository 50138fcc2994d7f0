//! Resources and their protection needs.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use interkom_types::Lang;
use minijinja::context;
use serde_json::json;

use crate::console::i18n::lang_of;
use crate::console::session::Session;
use crate::console::state::{
    csrf_refused, form, problem_page, urlencode, with_lang_cookie, Console,
};

pub(crate) async fn resources(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let r = resources_page(&c, &s, lang, None, None).await;
    with_lang_cookie(r, lang, set, &c)
}

pub(crate) async fn resources_page(
    c: &Console,
    s: &Session,
    lang: Lang,
    error: Option<String>,
    outcome: Option<&str>,
) -> Response {
    let (status, _, list) = c
        .api(s, Method::GET, "/resources?limit=1000", None, None)
        .await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let (_, _, tenants) = c.api(s, Method::GET, "/tenants", None, None).await;
    c.render(
        lang,
        StatusCode::OK,
        "resources.html",
        context! {
            page => "resources", csrf => s.csrf, resources => list["resources"],
            tenants => tenants["tenants"], needs => ["normal", "hoch", "sehr_hoch"], error, outcome,
            truncated => list["next_cursor"].is_string(),
        },
    )
}

/// Creates a resource or changes its protection need (with If-Match).
pub(crate) async fn resources_post(
    State(c): State<Console>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let s = session_or_login!(c, headers);
    let Some(f) = form(&s, &body) else {
        return csrf_refused(&c, lang);
    };
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("").trim().to_owned();
    let uri = format!("/resources/{}", urlencode(&get("id")));
    let (found, tag, current) = c.api(&s, Method::GET, &uri, None, None).await;
    let exists = found == StatusCode::OK;
    let mut body = if exists {
        let mut b = current;
        if let Some(o) = b.as_object_mut() {
            o.remove("id");
        }
        b
    } else {
        json!({ "kind": get("kind"), "name": get("name"), "owner": get("owner") })
    };
    body["protection"] = json!({ "c": get("c"), "i": get("i"), "a": get("a") });
    let if_match = if exists { tag.as_deref() } else { None };
    let (status, _, v) = c.api(&s, Method::PUT, &uri, Some(body), if_match).await;
    let (error, outcome) = match status {
        StatusCode::OK | StatusCode::CREATED => (None, Some("applied")),
        StatusCode::ACCEPTED => (None, Some("proposed")),
        _ => (v["detail"].as_str().map(str::to_owned), None),
    };
    resources_page(&c, &s, lang, error, outcome).await
}
