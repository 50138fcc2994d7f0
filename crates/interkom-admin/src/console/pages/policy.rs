//! Policy lines: the lines of the caller's subtree, changes with what-if.

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
    csrf_refused, form, lines_of, problem_page, with_lang_cookie, Console,
};

pub(crate) async fn policy(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let r = policy_page(&c, &s, lang, context! {}).await;
    with_lang_cookie(r, lang, set, &c)
}

pub(crate) async fn policy_page(
    c: &Console,
    s: &Session,
    lang: Lang,
    extra: minijinja::Value,
) -> Response {
    let (status, _, lines) = c
        .api(s, Method::GET, "/policy/lines?limit=1000", None, None)
        .await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &lines);
    }
    c.render(
        lang,
        StatusCode::OK,
        "policy.html",
        context! {
            ..extra, ..context! {
            page => "policy", csrf => s.csrf, lines => lines["lines"],
            truncated => lines["next_cursor"].is_string(),
        }
        },
    )
}

pub(crate) async fn policy_post(
    State(c): State<Console>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let s = session_or_login!(c, headers);
    let Some(f) = form(&s, &body) else {
        return csrf_refused(&c, lang);
    };
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let (add, remove, comment) = (get("add"), get("remove"), get("comment"));
    let mut change = json!({ "add": lines_of(&add), "remove": lines_of(&remove) });
    if !comment.trim().is_empty() {
        change["comment"] = json!(comment.trim());
    }
    let apply = get("op") == "apply";
    let uri = if apply {
        "/policy/changes"
    } else {
        "/policy/what-if"
    };
    let (status, _, v) = c.api(&s, Method::POST, uri, Some(change), None).await;
    let error = (!status.is_success()).then(|| v["detail"].as_str().unwrap_or("").to_owned());
    let outcome = match (apply, status) {
        (true, StatusCode::OK) => Some("applied"),
        (true, StatusCode::ACCEPTED) => Some("proposed"),
        _ => None,
    };
    policy_page(
        &c,
        &s,
        lang,
        context! {
            add, remove, comment, error, outcome,
            flips => v.get("flips").cloned(),
            requires_approval => v["requires_approval"].as_bool().unwrap_or(false),
        },
    )
    .await
}
