//! The audit trail over the admin API: security staff read their subtree,
//! nobody else reads anything, and every read is itself audited.

use serde_json::Value;

use crate::common::*;

const ISB: &str = "ines.brandt";
const ISB_PASSWORD: &str = "Sicherheit-Demo-2026!";

async fn token_for(s: &TestServer, user: &str, password: &str) -> String {
    console_token(s, user, password).await
}

async fn get(s: &TestServer, token: Option<&str>, path_and_query: &str) -> reqwest::Response {
    let mut r = TestServer::http().get(s.url(&format!("/admin/v1{path_and_query}")));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], status);
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()));
    v
}

/// A security officer of the Samtgemeinde Elbtalaue.
async fn sg_officer(s: &TestServer) -> String {
    s.app
        .directory
        .add_user(interkom_directory::NewUser {
            tenant: "sg-elbtalaue".into(),
            username: "sg.isb".into(),
            password: "Elbtalaue-ISB-2026!".into(),
            name: None,
            email: None,
            roles: vec!["security_staff".into()],
        })
        .await
        .unwrap();
    token_for(s, "sg.isb", "Elbtalaue-ISB-2026!").await
}

#[tokio::test]
async fn security_staff_search_with_a_stable_cursor_and_are_audited() {
    let s = TestServer::start().await;
    portal_tokens(&s, &Browser::new(), CLERK_USER, CLERK_PASSWORD).await;
    let isb = token_for(&s, ISB, ISB_PASSWORD).await;
    let res = get(&s, Some(&isb), "/audit/events?limit=2").await;
    assert_eq!(res.status(), 200);
    let page1: Value = res.json().await.unwrap();
    let events = page1["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        events[0]["seq"].as_i64() > events[1]["seq"].as_i64(),
        "newest first"
    );
    let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    // New events meanwhile do not shift the next page.
    cc_token(&s).await;
    cc_token(&s).await;
    let page2: Value = get(
        &s,
        Some(&isb),
        &format!("/audit/events?limit=2&cursor={cursor}"),
    )
    .await
    .json()
    .await
    .unwrap();
    let first2 = page2["events"][0]["seq"].as_i64().unwrap();
    assert_eq!(first2, cursor.parse::<i64>().unwrap() - 1);
    // Filters: action, actor, time range.
    let res: Value = get(&s, Some(&isb), "/audit/events?action=login")
        .await
        .json()
        .await
        .unwrap();
    assert!(res["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["action"] == "login"));
    assert_eq!(
        res["events"].as_array().unwrap().len(),
        2,
        "the clerk's and the officer's login"
    );
    let res: Value = get(
        &s,
        Some(&isb),
        "/audit/events?from=2000-01-01T00:00:00Z&to=2001-01-01T00:00:00Z",
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(res["events"].as_array().unwrap().is_empty());
    // Every read was audited.
    let reads = s.audit("audit_read").await;
    assert!(reads.len() >= 4);
    assert_eq!(reads[0].outcome, "success");
    assert!(reads[0].details.contains("lk-luechow-dannenberg"));
    // Verification status and checkpoints.
    let v: Value = get(&s, Some(&isb), "/audit/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(
        get(&s, Some(&isb), "/audit/checkpoints").await.status(),
        200
    );
}

#[tokio::test]
async fn officers_read_only_their_own_subtree() {
    let s = TestServer::start().await;
    portal_tokens(&s, &Browser::new(), CLERK_USER, CLERK_PASSWORD).await; // Hitzacker, in Elbtalaue
    portal_tokens(&s, &Browser::new(), ADMIN_USER, ADMIN_PASSWORD).await; // the Kreis
    let sg = sg_officer(&s).await;
    // Default scope: the officer's Samtgemeinde; the Kreis' events stay out.
    let res: Value = get(&s, Some(&sg), "/audit/events")
        .await
        .json()
        .await
        .unwrap();
    let events = res["events"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["tenant_path"]
        .as_str()
        .unwrap()
        .starts_with("/lk-luechow-dannenberg/sg-elbtalaue/")));
    // A member Gemeinde is inside.
    assert_eq!(
        get(&s, Some(&sg), "/audit/events?tenant=hitzacker-elbe")
            .await
            .status(),
        200
    );
    // Up and sideways are not.
    for t in ["lk-luechow-dannenberg", "sg-gartow", "gorleben"] {
        problem(
            get(&s, Some(&sg), &format!("/audit/events?tenant={t}")).await,
            403,
        )
        .await;
        problem(
            get(&s, Some(&sg), &format!("/audit/export?tenant={t}")).await,
            403,
        )
        .await;
    }
    // A clerk is no security staff at all.
    let clerk = token_for(&s, CLERK_USER, CLERK_PASSWORD).await;
    problem(get(&s, Some(&clerk), "/audit/events").await, 403).await;
    problem(get(&s, Some(&clerk), "/audit/verify").await, 403).await;
    // A machine token without the role neither.
    problem(
        get(&s, Some(&cc_token(&s).await), "/audit/events").await,
        403,
    )
    .await;
    let denied = s
        .audit("audit_read")
        .await
        .into_iter()
        .filter(|e| e.outcome == "denied")
        .count();
    assert_eq!(denied, 9, "every refusal is audited");
}

#[tokio::test]
async fn bad_requests_get_a_problem_never_a_server_error() {
    let s = TestServer::start().await;
    problem(get(&s, None, "/audit/events").await, 401).await;
    problem(get(&s, Some("not-a-token"), "/audit/events").await, 401).await;
    let isb = token_for(&s, ISB, ISB_PASSWORD).await;
    for q in [
        "action=bogus",
        "outcome=maybe",
        "from=yesterday",
        "to=2026-13-01T00:00:00Z",
        "cursor=abc",
        "cursor=-5",
        "limit=0",
        "limit=1001",
        "unknown=1",
        "tenant=atlantis",
        "format=csv",
        "limit=%ZZ",
    ] {
        problem(
            get(&s, Some(&isb), &format!("/audit/events?{q}")).await,
            400,
        )
        .await;
    }
    problem(get(&s, Some(&isb), "/audit/export?format=xml").await, 400).await;
    problem(get(&s, Some(&isb), "/audit/export?limit=5").await, 400).await;
    problem(get(&s, Some(&isb), "/no/such/thing").await, 404).await;
}

#[tokio::test]
async fn exports_stream_jsonl_and_csv_and_are_audited() {
    let s = TestServer::start().await;
    for _ in 0..30 {
        cc_token(&s).await;
    }
    let isb = token_for(&s, ISB, ISB_PASSWORD).await;
    let res = get(
        &s,
        Some(&isb),
        "/audit/export?format=jsonl&action=token_issued",
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let body = res.text().await.unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 31, "30 machine tokens and the officer's own");
    assert!(lines.iter().all(|l| l["action"] == "token_issued"));
    let res = get(
        &s,
        Some(&isb),
        "/audit/export?format=csv&client=kfz-backend",
    )
    .await;
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = res.text().await.unwrap();
    let mut rows = csv.lines();
    assert!(rows.next().unwrap().starts_with("seq,ts,tenant,"));
    assert_eq!(rows.count(), 30);
    let exports = s.audit("audit_export").await;
    assert_eq!(exports.len(), 2);
    assert!(exports[0].details.contains("csv"));
}
