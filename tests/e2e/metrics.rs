//! `/metrics`: requests per route, audit events by action and outcome,
//! decisions by result, the audit writer and the database pool, in the
//! Prometheus text format.

use crate::common::*;

async fn scrape(s: &TestServer) -> String {
    let res = TestServer::http()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    res.text().await.unwrap()
}

/// The value of the first sample whose line starts with `prefix` and
/// contains every one of `labels`.
fn sample(text: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_audit_events_and_decisions() {
    let s = TestServer::start().await;
    cc_token(&s).await;
    portal_tokens(&s, &Browser::new(), CLERK_USER, CLERK_PASSWORD).await;
    let text = scrape(&s).await;
    let token_requests = sample(
        &text,
        "interkom_http_requests_total{",
        &["route=\"/token\"", "status=\"200\"", "method=\"POST\""],
    )
    .expect("requests to /token by route pattern");
    assert!(token_requests >= 2.0, "{token_requests}");
    assert!(
        sample(
            &text,
            "interkom_audit_events_total{",
            &["action=\"token_issued\"", "outcome=\"success\""]
        )
        .unwrap_or(0.0)
            >= 2.0
    );
    assert!(
        sample(
            &text,
            "interkom_audit_events_total{",
            &["action=\"login\"", "outcome=\"success\""]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        sample(
            &text,
            "interkom_decisions_total{",
            &["via=\"login\"", "result=\"allow\""]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(text.contains("interkom_audit_append_seconds_bucket"));
    assert!(text.contains("interkom_http_request_duration_seconds_bucket{"));
    assert!(
        sample(&text, "interkom_db_pool_connections{", &["state=\"open\""]).unwrap_or(0.0) >= 1.0
    );
    assert!(text.contains("interkom_audit_queue_depth"));
    // Labels carry route patterns, never raw paths with ids or tokens.
    let _ = TestServer::http()
        .get(s.url("/admin/v1/users/some-secret-looking-id"))
        .send()
        .await
        .unwrap();
    // Nor invented methods: any token is a method to HTTP.
    let _ = TestServer::http()
        .request(
            reqwest::Method::from_bytes(b"FOO123").unwrap(),
            s.url("/healthz"),
        )
        .send()
        .await
        .unwrap();
    let text = scrape(&s).await;
    assert!(!text.contains("some-secret-looking-id"));
    assert!(!text.contains("FOO123"));
    assert!(text.contains("method=\"other\""));
    assert!(
        text.contains("route=\"/admin/v1/users/{id}\""),
        "{}",
        text.lines()
            .filter(|l| l.contains("admin"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
