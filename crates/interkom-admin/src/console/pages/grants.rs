//! Grants: time-limited permissions across the tree.

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
    bad_form, csrf_refused, form, problem_page, urlencode, with_lang_cookie, Console,
};

pub(crate) async fn grants(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let r = grants_page(&c, &s, lang, None).await;
    with_lang_cookie(r, lang, set, &c)
}

pub(crate) async fn grants_page(
    c: &Console,
    s: &Session,
    lang: Lang,
    error: Option<String>,
) -> Response {
    let (status, _, list) = c
        .api(s, Method::GET, "/grants?limit=1000", None, None)
        .await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let (_, _, resources) = c
        .api(s, Method::GET, "/resources?limit=1000", None, None)
        .await;
    c.render(
        lang,
        StatusCode::OK,
        "grants.html",
        context! {
            page => "grants", csrf => s.csrf, grants => list["grants"], error,
            resources => resources["resources"],
        truncated => list["next_cursor"].is_string(),
        },
    )
}

pub(crate) async fn grants_post(
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
        Some("revoke") => "revoke",
        Some("create") => {
            let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("").trim().to_owned();
            let actions: Vec<String> = get("actions")
                .split([',', ' '])
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            let body = json!({
                "grantee": get("grantee"), "resource": get("resource"), "actions": actions,
                "purpose": get("purpose"), "expires_at": format!("{}T23:59:59Z", get("expires")),
            });
            let (status, _, v) = c.api(&s, Method::POST, "/grants", Some(body), None).await;
            let error =
                (!status.is_success()).then(|| v["detail"].as_str().unwrap_or("").to_owned());
            return grants_page(&c, &s, lang, error).await;
        }
        _ => return bad_form(&c, lang),
    };
    let (status, _, v) = c
        .api(
            &s,
            Method::POST,
            &format!("/grants/{}/{op}", urlencode(&id)),
            None,
            None,
        )
        .await;
    let error = (!status.is_success()).then(|| v["detail"].as_str().unwrap_or("").to_owned());
    grants_page(&c, &s, lang, error).await
}
