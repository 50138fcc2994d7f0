//! The admin REST API of interkom under `/admin/v1`.
//!
//! This crate holds the API's error format, RFC 9457 problem+json, and its
//! router. The resources (tenants, users, clients, resources, policies,
//! grants, approvals, keys, audit) are added by the admin API's own work;
//! until then every path under `/admin/v1` answers a problem+json 404.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;

/// An RFC 9457 problem detail.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

/// The admin routes, to be nested under `/admin/v1`.
pub fn router() -> Router {
    Router::new()
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such admin resource") })
}
