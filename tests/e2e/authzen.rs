//! The AuthZEN Authorization API 1.0 endpoints: metadata, authentication,
//! malformed requests, batch semantics, and the interop Todo scenario.

use serde_json::{json, Value};

use crate::common::*;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn post(s: &TestServer, path: &str, token: Option<&str>, body: &str) -> (u16, String, Value) {
    let mut req = TestServer::http()
        .post(s.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, res.json().await.unwrap_or(Value::Null))
}

fn ask(subject: &str, action: &str, resource: &str) -> Value {
    json!({
        "subject": { "type": "user", "id": subject },
        "action": { "name": action },
        "resource": { "type": "resource", "id": resource },
        "context": { "acr": "urn:interkom:loa:low", "amr": ["pwd"], "auth_time": unix_now() },
    })
}

#[tokio::test]
async fn metadata_names_both_endpoints() {
    let s = TestServer::start().await;
    let v: Value = TestServer::http()
        .get(s.url("/.well-known/authzen-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["policy_decision_point"], s.issuer);
    assert_eq!(
        v["access_evaluation_endpoint"],
        format!("{}/access/v1/evaluation", s.issuer)
    );
    assert_eq!(
        v["access_evaluations_endpoint"],
        format!("{}/access/v1/evaluations", s.issuer)
    );
}

#[tokio::test]
async fn callers_need_a_valid_access_token() {
    let s = TestServer::start().await;
    let body = ask("jan.meyer", "read", "ratsinfo-hitzacker").to_string();
    for path in ["/access/v1/evaluation", "/access/v1/evaluations"] {
        for token in [None, Some("garbage"), Some("eyJhbGciOiJub25lIn0.e30.")] {
            let (status, ct, v) = post(&s, path, token, &body).await;
            assert_eq!(status, 401, "{path} {token:?}");
            assert_eq!(ct, "application/problem+json");
            assert!(v["detail"].as_str().unwrap().contains("token"), "{v}");
        }
    }
    // Basic credentials are not a bearer token.
    let res = TestServer::http()
        .post(s.url("/access/v1/evaluation"))
        .basic_auth(KFZ, Some(KFZ_SECRET))
        .json(&ask("jan.meyer", "read", "ratsinfo-hitzacker"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    // A user's access token is no client's: 403.
    let tokens = portal_tokens(&s, &Browser::new(), CLERK_USER, CLERK_PASSWORD).await;
    let (status, ct, v) = post(
        &s,
        "/access/v1/evaluation",
        tokens["access_token"].as_str(),
        &body,
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(ct, "application/problem+json");
    // A revoked token is refused too.
    let token = cc_token(&s).await;
    let (status, _, _) = post(&s, "/access/v1/evaluation", Some(&token), &body).await;
    assert_eq!(status, 200);
    s.post_form("/revoke", Some((KFZ, KFZ_SECRET)), &[("token", &token)])
        .await;
    let (status, _, _) = post(&s, "/access/v1/evaluation", Some(&token), &body).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn malformed_requests_get_400_with_a_clear_message() {
    let s = TestServer::start().await;
    let token = cc_token(&s).await;
    let long = "x".repeat(2000);
    let cases: Vec<(&str, String, &str)> = vec![
        ("/access/v1/evaluation", "not json".into(), "not valid JSON"),
        ("/access/v1/evaluation", "[]".into(), "JSON object"),
        ("/access/v1/evaluation", json!({"action": {"name": "read"}, "resource": {"type": "r", "id": "x"}}).to_string(), "`subject` is required"),
        ("/access/v1/evaluation", json!({"subject": "jan", "action": {"name": "read"}, "resource": {"type": "r", "id": "x"}}).to_string(), "`subject` must be an object"),
        ("/access/v1/evaluation", json!({"subject": {"type": "user", "id": 7}, "action": {"name": "read"}, "resource": {"type": "r", "id": "x"}}).to_string(), "`subject.id` must be a string"),
        ("/access/v1/evaluation", json!({"subject": {"type": "user", "id": "jan"}, "action": {}, "resource": {"type": "r", "id": "x"}}).to_string(), "`action.name` is required"),
        ("/access/v1/evaluation", json!({"subject": {"type": "user", "id": "jan"}, "action": {"name": "read"}, "resource": {"type": "r"}}).to_string(), "`resource.id` is required"),
        ("/access/v1/evaluation", json!({"subject": {"type": "user", "id": "jan"}, "action": {"name": "read"}, "resource": {"type": "r", "id": "x", "properties": 3}}).to_string(), "`resource.properties` must be an object"),
        ("/access/v1/evaluation", json!({"subject": {"type": "user", "id": "jan"}, "action": {"name": "read"}, "resource": {"type": "r", "id": "x"}, "context": {"auth_time": "yesterday"}}).to_string(), "`context.auth_time` must be an integer"),
        ("/access/v1/evaluation", json!({"subject": {"type": "user", "id": "jan"}, "action": {"name": "read"}, "resource": {"type": "r", "id": long}}).to_string(), "too long"),
        ("/access/v1/evaluation", json!({"subject": {"type": "user", "id": "jan"}, "action": {"name": "read"}, "resource": {"type": "r", "id": "x"}, "context": {"auth_time": 4_102_444_800i64}}).to_string(), "lies in the future"),
        ("/access/v1/evaluation", json!({"subject": {"type": "user", "id": "jan"}, "action": {"name": "read"}, "resource": {"type": "r", "id": "x"}, "context": {"auth_time": i64::MIN}}).to_string(), "before 1970"),
        ("/access/v1/evaluations", json!({"evaluations": {}}).to_string(), "`evaluations` must be an array"),
        ("/access/v1/evaluations", json!({"subject": {"type": "user", "id": "jan"}, "evaluations": [{"action": {"name": "read"}}]}).to_string(), "evaluations[0]: `resource` is required"),
        ("/access/v1/evaluations", json!({"evaluations": [ask("a", "b", "c"), 5]}).to_string(), "evaluations[1] must be an object"),
        ("/access/v1/evaluations", json!({"evaluations": [ask("a", "b", "c")], "options": {"evaluations_semantic": "first_wins"}}).to_string(), "evaluations_semantic"),
        ("/access/v1/evaluations", json!({"evaluations": vec![ask("a", "b", "c"); 1001]}).to_string(), "at most 1000"),
    ];
    for (path, body, msg) in cases {
        let (status, ct, v) = post(&s, path, Some(&token), &body).await;
        assert_eq!(status, 400, "{path} {body:.80}: {v}");
        assert_eq!(ct, "application/problem+json");
        assert!(
            v["detail"].as_str().unwrap().contains(msg),
            "{msg} not in {v}"
        );
    }
    // Not JSON at all.
    let res = TestServer::http()
        .post(s.url("/access/v1/evaluation"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(ask("a", "b", "c").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    // Nothing malformed was decided or audited.
    assert!(s.audit("decision_denied").await.is_empty());
}

#[tokio::test]
async fn batches_take_defaults_keep_order_and_honour_the_semantics() {
    let s = TestServer::start().await;
    let token = cc_token(&s).await;
    let ctx = json!({ "acr": "urn:interkom:loa:low", "amr": ["pwd"], "auth_time": s.clock.now() });
    // Top-level subject, action and context; items override.
    let batch = |semantic: Option<&str>| {
        let mut b = json!({
            "subject": { "type": "user", "id": "jan.meyer" },
            "action": { "name": "read" },
            "context": ctx,
            "evaluations": [
                { "resource": { "type": "resource", "id": "ratsinfo-hitzacker" } },
                { "resource": { "type": "resource", "id": "ewo-elbtalaue" } },
                { "resource": { "type": "resource", "id": "haushalt-hitzacker-elbe" }, "action": { "name": "write" } },
                { "resource": { "type": "resource", "id": "ratsinfo-hitzacker" }, "subject": { "type": "user", "id": "dannenberg.nobody" } },
                { "resource": { "type": "resource", "id": "serviceportal" } },
            ],
        });
        if let Some(sem) = semantic {
            b["options"] = json!({ "evaluations_semantic": sem });
        }
        b.to_string()
    };
    let decisions = |v: &Value| -> Vec<bool> {
        v["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["decision"].as_bool().unwrap())
            .collect()
    };
    let (status, _, v) = post(&s, "/access/v1/evaluations", Some(&token), &batch(None)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(decisions(&v), [true, false, false, false, true]);
    let (_, _, v) = post(
        &s,
        "/access/v1/evaluations",
        Some(&token),
        &batch(Some("execute_all")),
    )
    .await;
    assert_eq!(decisions(&v), [true, false, false, false, true]);
    let (_, _, v) = post(
        &s,
        "/access/v1/evaluations",
        Some(&token),
        &batch(Some("deny_on_first_deny")),
    )
    .await;
    assert_eq!(decisions(&v), [true, false]);
    let (_, _, v) = post(
        &s,
        "/access/v1/evaluations",
        Some(&token),
        &batch(Some("permit_on_first_permit")),
    )
    .await;
    assert_eq!(decisions(&v), [true]);
    // Without items, a single evaluation.
    let (_, _, v) = post(
        &s,
        "/access/v1/evaluations",
        Some(&token),
        &ask("jan.meyer", "read", "ratsinfo-hitzacker").to_string(),
    )
    .await;
    assert_eq!(v["decision"], true, "{v}");
    // Reasons travel in the context.
    let (_, _, v) = post(
        &s,
        "/access/v1/evaluation",
        Some(&token),
        &ask("jan.meyer", "read", "ewo-elbtalaue").to_string(),
    )
    .await;
    assert_eq!(v["decision"], false);
    assert_eq!(v["context"]["reasons"][0]["code"], "no_permit");
    assert!(v["context"]["reason_admin"]["en"]
        .as_str()
        .unwrap()
        .contains("default deny"));
}

/// The AuthZEN interop Todo scenario, loaded as a policy set.
#[tokio::test]
async fn authzen_interop_todo_scenario_passes_every_decision() {
    let s = TestServer::start_with(|fc| {
        fc.policy_dir = repo_root().join("policies/examples/authzen-todo");
    })
    .await;
    assert!(
        s.app.policy.problems().is_empty(),
        "{:?}",
        s.app.policy.problems()
    );
    let token = cc_token(&s).await;
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/data/authzen/todo-decisions-1_0-02.json"))
            .unwrap(),
    )
    .unwrap();
    let single = cases["evaluation"].as_array().unwrap();
    assert_eq!(single.len(), 40);
    for c in single {
        let (status, _, v) = post(
            &s,
            "/access/v1/evaluation",
            Some(&token),
            &c["request"].to_string(),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["decision"], c["expected"], "{}: {v}", c["request"]);
    }
    let batches = cases["evaluations"].as_array().unwrap();
    assert_eq!(batches.len(), 3);
    for c in batches {
        let (status, _, v) = post(
            &s,
            "/access/v1/evaluations",
            Some(&token),
            &c["request"].to_string(),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let got: Vec<Value> = v["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| json!({"decision": e["decision"]}))
            .collect();
        assert_eq!(Value::Array(got), c["expected"], "{}", c["request"]);
    }
}

#[tokio::test]
async fn a_client_token_revoked_on_one_node_is_refused_everywhere_within_a_second() {
    let a = TestServer::start().await;
    // One issuer, two nodes (as behind a load balancer).
    let issuer = a.issuer.clone();
    let b = TestServer::start_on(a.database_url.clone(), Some(a.kek.clone()), |fc| {
        fc.issuer = issuer;
    })
    .await;
    let token = cc_token(&a).await;
    let body = ask("jan.meyer", "read", "ratsinfo-hitzacker").to_string();
    for node in [&a, &b] {
        let (status, _, _) = post(node, "/access/v1/evaluation", Some(&token), &body).await;
        assert_eq!(status, 200);
    }
    let res = a
        .post_form("/revoke", Some((KFZ, KFZ_SECRET)), &[("token", &token)])
        .await;
    assert_eq!(res.status(), 200);
    // On the node that revoked it: at once.
    let (status, _, _) = post(&a, "/access/v1/evaluation", Some(&token), &body).await;
    assert_eq!(status, 401);
    // On the other: within a second (it re-checks a client token's
    // revocation at least that often).
    let started = std::time::Instant::now();
    loop {
        let (status, _, _) = post(&b, "/access/v1/evaluation", Some(&token), &body).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < std::time::Duration::from_millis(1500),
            "still accepted after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
