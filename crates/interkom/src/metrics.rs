//! Prometheus metrics at `/metrics`: requests and their latency per route,
//! audit events by action and outcome (logins by outcome, tokens issued,
//! audited decisions, admin changes), decisions by result, the audit
//! writer's append latency and queue depth, and the database pool.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: a token grant takes milliseconds, a
/// password check tens of them.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The process's recorder, installed on first use (one per process: the
/// facade has one global recorder).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets(BUCKETS).ok()?;
            match builder.install_recorder() {
                Ok(h) => {
                    // Histograms are drained on upkeep: also when nobody scrapes.
                    let upkeep = h.clone();
                    let _ = std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || loop {
                            std::thread::sleep(std::time::Duration::from_secs(5));
                            upkeep.run_upkeep();
                        });
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Hands the matched route pattern to [`track`] (through the response, as
/// `track` runs outside the routing). Innermost pattern wins.
pub async fn tag_route(req: Request, next: Next) -> Response {
    let path = req.extensions().get::<MatchedPath>().cloned();
    let mut res = next.run(req).await;
    if let Some(p) = path {
        if res.extensions().get::<MatchedPath>().is_none() {
            res.extensions_mut().insert(p);
        }
    }
    res
}

/// Counts every request by method, route (the pattern, never the raw
/// path: no ids or tokens in labels) and status, and times it.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    // Any token is a method to HTTP: only the standard ones become labels.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let res = next.run(req).await;
    let route = res
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status().as_u16().to_string();
    metrics::counter!("interkom_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("interkom_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    res
}

/// The exposition, with the gauges read at scrape time.
pub fn render(pool: &sqlx::AnyPool, audit: &interkom_audit::AuditLog) -> Response {
    metrics::gauge!("interkom_db_pool_connections", "state" => "open").set(pool.size() as f64);
    metrics::gauge!("interkom_db_pool_connections", "state" => "idle").set(pool.num_idle() as f64);
    metrics::gauge!("interkom_audit_queue_depth").set(audit.queue_depth() as f64);
    let body = handle().map(PrometheusHandle::render).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
