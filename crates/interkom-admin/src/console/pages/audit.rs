//! The audit trail: search and export within the caller's subtree.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use minijinja::context;

use crate::console::i18n::lang_of;
use crate::console::state::{secure, urlencode, with_lang_cookie, Console};

/// The audit filter's fields, passed through to the API.
pub(crate) const AUDIT_FIELDS: &[&str] = &[
    "tenant",
    "from",
    "to",
    "actor",
    "action",
    "outcome",
    "client",
    "correlation_id",
    "cursor",
];

pub(crate) fn audit_query(
    q: Option<&str>,
    extra: &[(&str, &str)],
) -> (String, HashMap<String, String>) {
    let all: Vec<(String, String)> =
        serde_urlencoded::from_str(q.unwrap_or("")).unwrap_or_default();
    let kept: HashMap<String, String> = all
        .into_iter()
        .filter(|(k, v)| AUDIT_FIELDS.contains(&k.as_str()) && !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_owned()))
        .collect();
    let mut pairs: Vec<(&str, &str)> = kept.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.sort();
    pairs.extend_from_slice(extra);
    (
        serde_urlencoded::to_string(&pairs).unwrap_or_default(),
        kept,
    )
}

pub(crate) async fn audit(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let (query, filter) = audit_query(q.as_deref(), &[("limit", "50")]);
    let (status, _, page) = c
        .api(
            &s,
            Method::GET,
            &format!("/audit/events?{query}"),
            None,
            None,
        )
        .await;
    let error = (!status.is_success()).then(|| page["detail"].as_str().unwrap_or("").to_owned());
    let mut next = None;
    if let Some(cur) = page["next_cursor"].as_str() {
        let mut f: Vec<(&str, &str)> = filter
            .iter()
            .filter(|(k, _)| k.as_str() != "cursor")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        f.push(("cursor", cur));
        next = serde_urlencoded::to_string(&f).ok();
    }
    let (export_q, _) = audit_query(q.as_deref(), &[]);
    let export_q: String = serde_urlencoded::from_str::<Vec<(String, String)>>(&export_q)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| format!("{}={}&", urlencode(&k), urlencode(&v)))
        .collect();
    let actions: Vec<&str> = interkom_audit::Action::ALL
        .iter()
        .map(|a| a.as_str())
        .collect();
    let r = c.render(lang, if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, "audit.html", context! {
        page => "audit", csrf => s.csrf, events => page["events"], filter, next, export_q, error, actions,
    });
    with_lang_cookie(r, lang, set, &c)
}

pub(crate) async fn audit_export(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let s = session_or_login!(c, headers);
    let format = serde_urlencoded::from_str::<Vec<(String, String)>>(q.as_deref().unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v)
        .filter(|f| f == "csv")
        .unwrap_or_else(|| "jsonl".into());
    let (query, _) = audit_query(q.as_deref(), &[("format", format.as_str())]);
    let query: String = serde_urlencoded::from_str::<Vec<(String, String)>>(&query)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| format!("{}={}", urlencode(&k), urlencode(&v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut r = c
        .api_raw(
            &s,
            Method::GET,
            &format!("/audit/export?{query}"),
            None,
            None,
        )
        .await;
    secure(r.headers_mut());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_filter_passes_only_known_fields() {
        let (q, kept) = audit_query(
            Some("action=login&evil=1&actor=%20&lang=en"),
            &[("limit", "50")],
        );
        assert_eq!(q, "action=login&limit=50");
        assert_eq!(kept.len(), 1);
    }
}
