//! The overview page, the console's stylesheet and its page for unknown paths.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde_json::json;

use crate::console::i18n::{lang_of, texts};
use crate::console::state::{problem_page, with_lang_cookie, Console};

pub(crate) async fn overview(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    // Security staff who administer nothing still see the chain's status.
    let (status, _, tenants) = c.api(&s, Method::GET, "/tenants", None, None).await;
    let tenants = match status {
        StatusCode::OK => tenants["tenants"].clone(),
        StatusCode::FORBIDDEN => json!([]),
        _ => return with_lang_cookie(problem_page(&c, lang, status, &tenants), lang, set, &c),
    };
    let (vs, _, verify) = c.api(&s, Method::GET, "/audit/verify", None, None).await;
    let verify = (vs == StatusCode::OK).then_some(verify);
    let r = c.render(
        lang,
        StatusCode::OK,
        "overview.html",
        context! {
            page => "overview", csrf => s.csrf, tenants, verify,
        },
    );
    with_lang_cookie(r, lang, set, &c)
}

pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../templates/console.css"),
    )
        .into_response()
}

pub(crate) async fn not_found(State(c): State<Console>, headers: HeaderMap) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let t = texts(lang);
    c.message(
        lang,
        StatusCode::NOT_FOUND,
        t["error"].as_str().unwrap_or_default(),
        t["not_found"].as_str().unwrap_or_default(),
    )
}
