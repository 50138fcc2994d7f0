//! The security round: each finding of the review, replayed as the
//! attacker did it (a Gemeinde administrator of Hitzacker (Elbe) and the
//! clients that administrator may register), against the real server.
//! Finding 1 (upstream role mappings) lives with the brokering tests.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

/// Hitzacker's administrator, as the review had them.
async fn hitzacker_admin(s: &TestServer) -> String {
    admin_account(
        s,
        "hitzacker-elbe",
        "admin.hitzacker",
        &["admin", "sachbearbeitung"],
    )
    .await
}

/// A confidential client registered through the admin API; returns its
/// secret.
async fn register(s: &TestServer, token: &str, body: Value) -> String {
    let (st, v) = admin(s, Method::POST, token, "/clients", Some(body)).await;
    assert_eq!(st, 201, "{v}");
    v["client_secret"].as_str().unwrap().to_owned()
}

async fn introspect_as(s: &TestServer, client: (&str, &str), token: &str) -> Value {
    let res = s
        .post_form("/introspect", Some(client), &[("token", token)])
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Finding 11: any confidential client could introspect any token and
/// read who it belongs to. Now only the token's client, its audience, or
/// a resource server of the person's subtree learns more than
/// `active: false`.
#[tokio::test]
async fn finding_11_a_client_introspects_only_tokens_meant_for_it() {
    let s = TestServer::start().await;
    let hitz = hitzacker_admin(&s).await;
    let spy = register(
        &s,
        &hitz,
        json!({ "id": "neugier-hitzacker", "tenant": "hitzacker-elbe", "name": "Neugier",
                "grant_types": ["client_credentials"], "auth_method": "client_secret_basic" }),
    )
    .await;
    // The Kreis administrator's portal token, and a clerk's of Hitzacker.
    let kreis = portal_tokens(&s, &Browser::new(), ADMIN_USER, ADMIN_PASSWORD).await;
    let kreis_at = kreis["access_token"].as_str().unwrap();
    let clerk = portal_tokens(&s, &Browser::new(), CLERK_USER, CLERK_PASSWORD).await;
    let clerk_at = clerk["access_token"].as_str().unwrap();

    // The rogue client learns nothing, not even that the token is live.
    for at in [kreis_at, clerk_at] {
        let v = introspect_as(&s, ("neugier-hitzacker", &spy), at).await;
        assert_eq!(v, json!({ "active": false }));
    }
    // The token's own client, and the Kreis's resource server, do.
    let v = introspect_as(&s, (PORTAL, PORTAL_SECRET), kreis_at).await;
    assert_eq!(v["active"], true);
    let v = introspect_as(&s, (KFZ, KFZ_SECRET), kreis_at).await;
    assert_eq!(
        (v["active"].as_bool(), v["sub"].is_string()),
        (Some(true), true)
    );

    // A resource server of Hitzacker serves Hitzacker's people only.
    let rs = register(
        &s,
        &hitz,
        json!({ "id": "rs-hitzacker", "tenant": "hitzacker-elbe", "name": "Fachverfahren-Backend",
                "grant_types": ["client_credentials"], "auth_method": "client_secret_basic",
                "resource_server": true }),
    )
    .await;
    let v = introspect_as(&s, ("rs-hitzacker", &rs), clerk_at).await;
    assert_eq!(v["active"], true, "{v}");
    let v = introspect_as(&s, ("rs-hitzacker", &rs), kreis_at).await;
    assert_eq!(v, json!({ "active": false }));
    // A client's own client-credentials token stays its own to introspect.
    let own = cc_token(&s).await;
    assert_eq!(
        introspect_as(&s, (KFZ, KFZ_SECRET), &own).await["active"],
        true
    );
    assert_eq!(
        introspect_as(&s, ("neugier-hitzacker", &spy), &own).await,
        json!({ "active": false })
    );
}

/// A log sink the test reads back.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Finding 12: at debug level the whole request URI was logged, with the
/// `code`, `state`, `login_hint` and `id_token_hint` in it. Now the path
/// and parameter names are logged, credentials and names are not.
#[tokio::test]
async fn finding_12_request_logs_at_debug_level_hold_no_codes_hints_or_tokens() {
    let sink = LogBuffer::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let s = TestServer::start().await;
    let browser = Browser::new();
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        &s,
        &[
            ("response_type", "code"),
            ("client_id", PORTAL),
            ("redirect_uri", PORTAL_REDIRECT),
            ("scope", "openid profile"),
            ("state", "zustand-4711"),
            ("nonce", "nonce-4711"),
            ("login_hint", ADMIN_USER),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let q = browser.login(&s, &url, ADMIN_USER, ADMIN_PASSWORD).await;
    let res = exchange_code(&s, (PORTAL, PORTAL_SECRET), &q["code"], &verifier).await;
    let t: Value = res.json().await.unwrap();
    let id_token = t["id_token"].as_str().unwrap();
    let mut u = url::Url::parse(&s.url("/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", PORTAL_LOGOUT)
        .append_pair("state", "abschied-4711");
    assert_eq!(browser.get(u.as_str()).await.status(), 303);

    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("/authorize?response_type=code"),
        "requests are logged"
    );
    assert!(
        log.contains("/logout?id_token_hint=%5Bredacted%5D"),
        "{log}"
    );
    let header_payload = id_token.rsplit_once('.').unwrap().0;
    for secret in [
        "zustand-4711",
        "nonce-4711",
        "abschied-4711",
        &challenge,
        header_payload,
        &format!("login_hint={ADMIN_USER}"),
    ] {
        assert!(!log.contains(secret), "`{secret}` was logged");
    }
}

/// Finding 8: lines the engine then dropped (an unknown reach, a task of a
/// Gemeinde, a value with a line break) were answered `200 applied`, so a
/// mistyped deny failed open. Now a change is compiled first and refused
/// with the reason.
#[tokio::test]
async fn finding_8_a_policy_line_the_engine_would_drop_is_refused() {
    let s = TestServer::start().await;
    let hitz = hitzacker_admin(&s).await;
    let lines = |s: &TestServer, t: String| {
        let s = s.url("");
        async move {
            let res = TestServer::http()
                .get(format!("{s}/admin/v1/policy/lines"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap();
            res.json::<Value>().await.unwrap()["lines"].clone()
        }
    };
    let before = lines(&s, hitz.clone()).await;
    for (line, reason) in [
        (
            "p, sachbearbeitung, ratsinfo-hitzacker, write, none, deny, true",
            "reach `none`",
        ),
        (
            "g, hitzacker-elbe, sachbearbeitung",
            "is not a Samtgemeinde",
        ),
        (
            "p, sachbearbeitung, ratsinfo-hitzacker, write, own, deny, true\nx",
            "control characters",
        ),
    ] {
        let (st, v) = admin(
            &s,
            Method::POST,
            &hitz,
            "/policy/changes",
            Some(json!({ "add": [line] })),
        )
        .await;
        assert_eq!(st, 400, "{line}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(reason), "{v}");
        // The what-if says the same.
        let (st, _) = admin(
            &s,
            Method::POST,
            &hitz,
            "/policy/what-if",
            Some(json!({ "add": [line] })),
        )
        .await;
        assert_eq!(st, 400, "{line}");
    }
    assert_eq!(lines(&s, hitz.clone()).await, before, "nothing was stored");
    // A well-formed deny is taken.
    let (st, v) = admin(
        &s,
        Method::POST,
        &hitz,
        "/policy/changes",
        Some(json!({ "add": ["p, sachbearbeitung, ratsinfo-hitzacker, write, own, deny, true"] })),
    )
    .await;
    assert_eq!((st, &v["applied"]), (200, &json!(true)), "{v}");
}

/// An RP-initiated logout a person confirms (a third-party client's hint
/// alone ends nothing).
async fn logout_confirmed(s: &TestServer, browser: &Browser, id_token: &str) {
    let mut u = url::Url::parse(&s.url("/logout")).unwrap();
    u.query_pairs_mut().append_pair("id_token_hint", id_token);
    let res = browser.get(u.as_str()).await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    let res = browser
        .http
        .post(s.url("/logout"))
        .form(&[
            ("csrf_token", hidden(&page, "csrf_token")),
            ("id_token_hint", id_token.to_owned()),
            ("confirm", "yes".to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.text().await.unwrap().contains("role=\"status\""),
        "logged out"
    );
}

/// Logs the clerk in at a registered client and redeems the code; returns
/// the token response.
async fn clerk_tokens_at(s: &TestServer, browser: &Browser, client: (&str, &str)) -> Value {
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        s,
        &[
            ("response_type", "code"),
            ("client_id", client.0),
            ("redirect_uri", PORTAL_REDIRECT),
            ("scope", "openid profile"),
            ("state", "s"),
            ("nonce", "n"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let q = browser
        .login_consenting(s, &url, CLERK_USER, CLERK_PASSWORD)
        .await;
    let res = exchange_code(s, client, &q["code"], &verifier).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Finding 6: a back-channel logout URI whose host name resolves to this
/// machine (or to 169.254.169.254) passed the registration check, and the
/// logout delivery connected there: a blind request into the data centre,
/// with the status in the audit trail. Now internal literals are refused
/// at registration and names are filtered where they are resolved.
#[tokio::test]
async fn finding_6_a_back_channel_logout_uri_never_reaches_an_internal_address() {
    // This machine's name resolves to loopback (as on every Debian host).
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let ip = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .unwrap()
        .map(|a| a.ip())
        .find(|ip| ip.is_loopback())
        .unwrap_or_else(|| panic!("`{host}` should resolve to a loopback address"));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });

    let s = TestServer::start().await;
    let hitz = hitzacker_admin(&s).await;
    let client = |id: &str, uri: &str| {
        json!({ "id": id, "tenant": "hitzacker-elbe", "name": "Abmeldung",
                "redirect_uris": [PORTAL_REDIRECT], "grant_types": ["authorization_code"],
                "auth_method": "client_secret_basic", "backchannel_logout_uri": uri })
    };
    // Internal addresses written as such are refused at once.
    for uri in [
        "https://10.1.2.3/logout",
        "https://169.254.169.254/latest",
        "https://[fd00::1]/x",
    ] {
        let (st, v) = admin(
            &s,
            Method::POST,
            &hitz,
            "/clients",
            Some(client("intern", uri)),
        )
        .await;
        assert_eq!(st, 400, "{uri}: {v}");
    }
    // A name is taken (it may point anywhere later) ...
    let uri = format!("https://{host}:{port}/logout");
    let secret = register(&s, &hitz, client("abmeldung-hitzacker", &uri)).await;
    let browser = Browser::new();
    let t = clerk_tokens_at(&s, &browser, ("abmeldung-hitzacker", &secret)).await;
    logout_confirmed(&s, &browser, t["id_token"].as_str().unwrap()).await;
    // ... but the delivery fails at resolution, without a connection.
    let mut attempted = None;
    for _ in 0..100 {
        attempted = sqlx::query_scalar::<_, Option<String>>(
            "SELECT last_error FROM logout_deliveries WHERE client_id = $1 AND attempts > 0",
        )
        .bind("abmeldung-hitzacker")
        .fetch_optional(&s.app.pool)
        .await
        .unwrap()
        .flatten();
        if attempted.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(attempted.is_some(), "the delivery was attempted and failed");
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// A client-credentials token of a registered client.
async fn client_token(s: &TestServer, client: (&str, &str), scope: &str) -> String {
    let res = s
        .post_form(
            "/token",
            Some(client),
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
        .await;
    let v: Value = res.json().await.unwrap();
    v["access_token"].as_str().unwrap_or_default().to_owned()
}

async fn ask(s: &TestServer, token: &str, path: &str, body: &Value) -> reqwest::Response {
    TestServer::http()
        .post(s.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn question(subject: &str, action: &str, resource: &str) -> Value {
    json!({
        "subject": { "type": "user", "id": subject },
        "action": { "name": action },
        "resource": { "type": "resource", "id": resource },
        "context": { "acr": "urn:interkom:loa:high", "amr": ["pwd", "hwk"],
                     "auth_time": std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() },
    })
}

/// Finding 3: any client-credentials client (a Gemeinde administrator can
/// make one) asked the PDP about any person and resource, read roles,
/// tenants and lines in the reasons, and told existing usernames from
/// unknown ones. Now the PDP is a scope an administrator grants, answers
/// for the client's subtree's resources, explains only about its own
/// people, and an unknown name reads like anyone without a permit.
#[tokio::test]
async fn finding_3_the_pdp_answers_a_client_only_about_its_own_subtree() {
    let s = TestServer::start().await;
    let hitz = hitzacker_admin(&s).await;
    let cc = |id: &str, scopes: Value| {
        json!({ "id": id, "tenant": "hitzacker-elbe", "name": id,
                "grant_types": ["client_credentials"], "auth_method": "client_secret_basic",
                "scopes": scopes })
    };
    // Without the grant, no answers at all.
    let plain = register(&s, &hitz, cc("neugier-hitzacker", json!(["roles"]))).await;
    let token = client_token(&s, ("neugier-hitzacker", &plain), "roles").await;
    let q = question("jan.meyer", "read", "ratsinfo-hitzacker");
    let res = ask(&s, &token, "/access/v1/evaluation", &q).await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    // Granted: Hitzacker's client asks about Hitzacker's resources ...
    let secret = register(&s, &hitz, cc("pdp-hitzacker", json!(["authzen"]))).await;
    let token = client_token(&s, ("pdp-hitzacker", &secret), "authzen").await;
    let res = ask(&s, &token, "/access/v1/evaluation", &q).await;
    assert_eq!(res.status(), 200);
    let own: Value = res.json().await.unwrap();
    assert_eq!(own["decision"], true);
    assert!(
        !own["context"]["reasons"].as_array().unwrap().is_empty(),
        "its own people: explained"
    );
    // ... never about another Gemeinde's, not even in a batch.
    for (path, body) in [
        (
            "/access/v1/evaluation",
            question("jan.meyer", "read", "meldedaten-gorleben"),
        ),
        (
            "/access/v1/evaluations",
            json!({ "evaluations": [q.clone(), question("jan.meyer", "read", "meldedaten-gorleben")] }),
        ),
    ] {
        let res = ask(&s, &token, path, &body).await;
        assert_eq!(res.status(), 403, "{path}");
    }
    // About someone of the Kreis: the decision, no roles, tenants or lines;
    // and an unknown name reads exactly the same.
    let known: Value = ask(
        &s,
        &token,
        "/access/v1/evaluation",
        &question("ines.brandt", "delete", "ratsinfo-hitzacker"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(known["decision"], false);
    assert_eq!(known["context"]["reasons"], json!([]));
    let unknown: Value = ask(
        &s,
        &token,
        "/access/v1/evaluation",
        &question("niemand.hier", "delete", "ratsinfo-hitzacker"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(unknown, known);
    // The Kreis's PDP client hears no `unknown_subject` either.
    let kreis: Value = ask(
        &s,
        &cc_token(&s).await,
        "/access/v1/evaluation",
        &question("niemand.hier", "read", "ratsinfo-hitzacker"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(!kreis.to_string().contains("unknown_subject"), "{kreis}");
}

/// Finding 10: one batch wrote up to 1,000 audit events, and a client
/// could ask as fast as it liked. Now each client has an allowance (429
/// with `Retry-After` beyond it) and a batch is audited as one summary,
/// with each permit on a `sehr_hoch` resource still recorded by itself.
#[tokio::test]
async fn finding_10_the_pdp_limits_each_client_and_audits_a_batch_once() {
    let s = TestServer::start_with(|fc| {
        fc.authzen.rate_limit = 5;
        fc.authzen.burst = 5;
    })
    .await;
    let token = cc_token(&s).await;
    let before = interkom_audit::query(
        &s.app.pool,
        &interkom_audit::AuditQuery {
            limit: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .len();
    // 1,000 denials in one batch: one event.
    let items: Vec<Value> = (0..1000)
        .map(|_| question("jan.meyer", "delete", "meldedaten-hitzacker-elbe"))
        .collect();
    let res = ask(
        &s,
        &token,
        "/access/v1/evaluations",
        &json!({ "evaluations": items }),
    )
    .await;
    assert_eq!(res.status(), 200);
    let after = interkom_audit::query(
        &s.app.pool,
        &interkom_audit::AuditQuery {
            limit: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(after.len() - before, 1, "one summary for the batch");
    let batch = s.audit("decision_batch").await;
    let d: Value = serde_json::from_str(&batch[0].details).unwrap();
    assert_eq!(
        (d["evaluated"].as_i64(), d["denied"].as_i64()),
        (Some(1000), Some(1000))
    );
    assert_eq!(d["items"].as_array().unwrap().len(), 100);
    assert_eq!(d["items_truncated"], true);
    // A permit on sehr_hoch among them is recorded by itself.
    let items = json!({ "evaluations": [
        question("anna.schulz", "read", "meldedaten-hitzacker-elbe"),
        question("jan.meyer", "delete", "meldedaten-hitzacker-elbe"),
    ] });
    let res = ask(&s, &token, "/access/v1/evaluations", &items).await;
    assert_eq!(res.status(), 200);
    assert_eq!(s.audit("decision_permitted_sehr_hoch").await.len(), 1);
    assert_eq!(s.audit("decision_batch").await.len(), 2);
    // Beyond the allowance (5, of which 2 are spent): 429, Retry-After.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let res = ask(
            &s,
            &token,
            "/access/v1/evaluation",
            &question("jan.meyer", "read", "ratsinfo-hitzacker"),
        )
        .await;
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            assert!(res.headers().contains_key("retry-after"));
            let p: Value = res.json().await.unwrap();
            assert_eq!(p["status"], 429);
        }
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.starts_with(&[200, 200, 200]), "{statuses:?}");
}

/// The events of `action` a security-staff token reads.
async fn staff_reads(s: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let (st, v) = admin(
        s,
        Method::GET,
        token,
        &format!("/audit/events?{query}"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["events"].as_array().unwrap().clone()
}

async fn fail_login(s: &TestServer, user: &str) {
    let (url, _) = client_url(s, PORTAL, &[("scope", "openid")]);
    let browser = Browser::new();
    let form = browser.open_login(s, &url).await;
    let res = browser.submit(&form, user, "falsches-Passwort-1").await;
    assert_eq!(res.status(), 401, "the form again, 401");
}

/// Finding 4: security events stored without a tenant (refused
/// cross-subtree admin calls, code replays, refresh-token reuse, locks)
/// never appeared in `/admin/v1/audit/events`, not even for the Kreis's
/// security staff. Now each is attributed, and the Kreis's staff also
/// read what belongs to no tenant.
#[tokio::test]
async fn finding_4_security_events_reach_the_security_staff_concerned() {
    let s = TestServer::start_with(|fc| {
        fc.brute_force.lock_after = 3;
        fc.brute_force.source_lock_after = 8;
        fc.brute_force.delay_after = 100;
    })
    .await;
    let staff_hitzacker =
        admin_account(&s, "hitzacker-elbe", "isb.hitzacker", &["security_staff"]).await;
    let staff_gartow = admin_account(&s, "sg-gartow", "isb.gartow", &["security_staff"]).await;
    let staff_kreis = console_token(&s, "ines.brandt", "Sicherheit-Demo-2026!").await;
    let gartow = admin_account(&s, "sg-gartow", "admin.gartow", &["admin"]).await;

    // Gartow's administrator reaches into Hitzacker: refused.
    let (st, _) = admin(
        &s,
        Method::POST,
        &gartow,
        "/users",
        Some(json!({ "tenant": "hitzacker-elbe", "username": "eindringling" })),
    )
    .await;
    assert_eq!(st, 403);
    // A code of jan.meyer (Hitzacker) redeemed twice.
    let (url, verifier) = client_url(&s, PORTAL, &[("scope", "openid")]);
    let q = Browser::new()
        .login(&s, &url, CLERK_USER, CLERK_PASSWORD)
        .await;
    let redeem = || exchange_code(&s, (PORTAL, PORTAL_SECRET), &q["code"], &verifier);
    let first = redeem().await.status();
    let second = redeem().await.status();
    assert_eq!((first.as_u16(), second.as_u16()), (200, 400));
    // jan.meyer's account locked; then unknown names lock the source.
    for _ in 0..3 {
        fail_login(&s, CLERK_USER).await;
    }
    for n in 0..5 {
        fail_login(&s, &format!("niemand{n}")).await;
    }

    let refused = "action=admin_change&outcome=denied";
    for (token, who) in [(&staff_hitzacker, "Hitzacker"), (&staff_gartow, "Gartow")] {
        let seen = staff_reads(&s, token, refused).await;
        assert!(
            seen.iter().any(|e| e["actor_subject"].as_str().is_some()
                && e["details"].as_str().unwrap().contains("user.create")),
            "{who}'s staff read the refusal: {seen:?}"
        );
    }
    let replays = staff_reads(&s, &staff_hitzacker, "action=code_replay_detected").await;
    assert_eq!(replays.len(), 1);
    assert_eq!(replays[0]["tenant"], "hitzacker-elbe");
    let locks = staff_reads(&s, &staff_hitzacker, "action=login_locked").await;
    assert!(locks.iter().all(|e| e["tenant"] == "hitzacker-elbe"));
    assert!(locks
        .iter()
        .any(|e| e["details"].as_str().unwrap().contains("\"account\"")));
    // The source lock of a name nobody has: the Kreis's staff read it.
    let kreis_locks = staff_reads(&s, &staff_kreis, "action=login_locked").await;
    assert!(
        kreis_locks
            .iter()
            .any(|e| e["tenant"].is_null() && e["details"].as_str().unwrap().contains("\"source\"")),
        "{kreis_locks:?}"
    );
    assert!(kreis_locks.len() > locks.len());
}

/// Finding 7: a Gemeinde administrator registered a resource of a kind
/// shared across the county, classified `hoch`, in the own tenant, and
/// every other Kommune's objects of that kind were raised with it (a
/// Gorleben object went from allow to step-up). Now an object takes its
/// classification from registered resources of its own tenant and the
/// tenants above it only.
#[tokio::test]
async fn finding_7_a_gemeinde_classifies_only_its_own_objects_of_a_kind() {
    let s = TestServer::start().await;
    let hitz = hitzacker_admin(&s).await;
    let resource = |owner: &str, need: &str| {
        json!({ "kind": "ratsinformationssystem", "owner": owner, "name": "Ratsinfo",
                "protection": { "c": need, "i": "normal", "a": "normal" } })
    };
    // Gorleben's Ratsinformationssystem is classified normal (baseline).
    let object = |owner: &str| {
        json!({
            "subject": { "type": "user", "id": ADMIN_USER },
            "action": { "name": "read" },
            "resource": { "type": "ratsinformationssystem", "id": "sitzung-17",
                          "properties": { "owner": owner } },
            "context": { "acr": "urn:interkom:loa:low", "amr": ["pwd"],
                         "auth_time": std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() },
        })
    };
    let pdp = cc_token(&s).await;
    let effect = |owner: &'static str| {
        let (s, pdp) = (&s, &pdp);
        async move {
            let v: Value = ask(s, pdp, "/access/v1/evaluation", &object(owner))
                .await
                .json()
                .await
                .unwrap();
            v["context"]["effect"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(effect("gorleben").await, "allow");
    // Hitzacker's administrator classifies a Hitzacker archive as hoch.
    let (st, v) = admin(
        &s,
        Method::PUT,
        &hitz,
        "/resources/ratsinfo-archiv-hitzacker",
        Some(resource("hitzacker-elbe", "hoch")),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    // Hitzacker's objects of the kind follow; Gorleben's do not.
    assert_eq!(effect("hitzacker-elbe").await, "step_up");
    assert_eq!(effect("gorleben").await, "allow");
}

/// Finding 5: `audit verify` missed two alterations. (a) An administrative
/// change minutes old, marked pruned with its actor and details blanked,
/// still verified. (b) Events after the last signed checkpoint deleted
/// and the head rewound still verified. Now a prune is on the record and
/// bounded by the retention, and a signed checkpoint follows a
/// security-relevant event within seconds.
#[tokio::test]
async fn finding_5_audit_verify_finds_a_forged_prune_and_a_cut_off_tail() {
    let s = TestServer::start_with(|fc| fc.audit.security_checkpoint_seconds = 1).await;
    let kreis = console_token(&s, ADMIN_USER, ADMIN_PASSWORD).await;
    let keys = vec![
        interkom_audit::CheckpointKey::from_base64(&checkpoint_key())
            .unwrap()
            .public_key()
            .to_vec(),
    ];
    let verify = || interkom_audit::verify_with_keys(&s.app.pool, None, None, &keys, Some(365));
    let (st, _) = admin(
        &s,
        Method::POST,
        &kreis,
        "/users",
        Some(json!({ "tenant": "gorleben", "username": "neu.angelegt" })),
    )
    .await;
    assert_eq!(st, 201);
    let change = s
        .audit("admin_change")
        .await
        .into_iter()
        .find(|e| e.details.contains("user.create"))
        .unwrap();
    // (b) The change is anchored by a signed checkpoint within seconds.
    let mut anchored = false;
    for _ in 0..100 {
        let r = verify().await.unwrap();
        if r.newest_checkpoint.is_some_and(|cp| cp >= change.seq) {
            anchored = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(anchored, "a checkpoint follows the administrative change");
    assert!(verify().await.unwrap().ok());

    // (a) Marked pruned, minutes old, actor and details blanked: found.
    sqlx::query(
        "UPDATE audit_events SET actor_subject = NULL, target = NULL, reason = NULL, \
         source = NULL, details = '{}', pruned_at = ts WHERE seq = $1",
    )
    .bind(change.seq)
    .execute(&s.app.pool)
    .await
    .unwrap();
    let r = verify().await.unwrap();
    assert_eq!(r.first_bad.as_ref().map(|b| b.0), Some(change.seq), "{r:?}");
    // The admin API's verification says so too.
    let staff = console_token(&s, "ines.brandt", "Sicherheit-Demo-2026!").await;
    let (_, v) = admin(&s, Method::GET, &staff, "/audit/verify", None).await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_bad_seq"], change.seq);

    // (b) The change and everything after it deleted, the head rewound:
    // the signed checkpoint names what is gone.
    let prev: (i64, String, String) =
        sqlx::query_as("SELECT seq, hash, ts FROM audit_events WHERE seq = $1")
            .bind(change.seq - 1)
            .fetch_one(&s.app.pool)
            .await
            .unwrap();
    sqlx::query("DELETE FROM audit_events WHERE seq >= $1")
        .bind(change.seq)
        .execute(&s.app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, ts = $3 WHERE id = 1")
        .bind(prev.0)
        .bind(&prev.1)
        .bind(&prev.2)
        .execute(&s.app.pool)
        .await
        .unwrap();
    let r = verify().await.unwrap();
    let (seq, why) = r.first_bad.unwrap();
    assert_eq!(seq, change.seq);
    assert!(why.contains("truncated"), "{why}");
}

/// The authorization URL of a client at `PORTAL_REDIRECT`, with PKCE.
fn client_url(s: &TestServer, client: &str, extra: &[(&str, &str)]) -> (String, String) {
    let (verifier, challenge) = pkce();
    let mut p = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", PORTAL_REDIRECT),
        ("scope", "openid profile"),
        ("state", "s"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    // An extra parameter replaces the default of the same name.
    p.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    p.extend_from_slice(extra);
    (authorize_url(s, &p), verifier)
}

/// Finding 2: a client any administrator registers was first-party (no
/// consent page), and a client bound to no resource admitted every account
/// of the county: a Gemeinde administrator's client received the Kreis
/// administrator's name, mail, tenant and roles with `prompt=none`. Now
/// such a client admits its own subtree only and asks the person first;
/// the consent is remembered, revocable, and `prompt=consent` honoured;
/// its logout hint alone ends no session.
#[tokio::test]
async fn finding_2_a_registered_client_asks_before_it_learns_anything() {
    let s = TestServer::start().await;
    let hitz = hitzacker_admin(&s).await;
    let secret = register(
        &s,
        &hitz,
        json!({ "id": "neugier-app", "tenant": "hitzacker-elbe", "name": "Neugier-App",
                "redirect_uris": [PORTAL_REDIRECT], "grant_types": ["authorization_code"],
                "auth_method": "client_secret_basic" }),
    )
    .await;
    // The Kreis administrator, signed in at the portal, is not Hitzacker's:
    // nothing silent, nothing at all.
    let kreis = Browser::new();
    portal_tokens(&s, &kreis, ADMIN_USER, ADMIN_PASSWORD).await;
    let (url, _) = client_url(&s, "neugier-app", &[("prompt", "none")]);
    let q = redirect_params(&kreis.get(&url).await);
    assert_eq!(q["error"], "access_denied", "{q:?}");
    assert!(!q.contains_key("code"));

    // Hitzacker's clerk is asked: prompt=none cannot.
    let clerk = Browser::new();
    portal_tokens(&s, &clerk, CLERK_USER, CLERK_PASSWORD).await;
    let q = redirect_params(&clerk.get(&url).await);
    assert_eq!(q["error"], "consent_required", "{q:?}");
    // The page names the client, its Kommune and the data; declining
    // tells the client access_denied.
    let (url, verifier) = client_url(&s, "neugier-app", &[]);
    let page = clerk.get(&url).await.text().await.unwrap();
    for shown in [
        "Neugier-App",
        "Hitzacker (Elbe), Stadt",
        "profile",
        "preferred_username",
    ] {
        assert!(page.contains(shown), "{shown}: {page}");
    }
    let q = redirect_params(&clerk.consent(&s, &page, "deny").await);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(s.audit("consent_declined").await.len(), 1);
    // Agreed: the code; remembered for the same scopes.
    let page = clerk.get(&url).await.text().await.unwrap();
    let q = redirect_params(&clerk.consent(&s, &page, "allow").await);
    let res = exchange_code(&s, ("neugier-app", &secret), &q["code"], &verifier).await;
    assert_eq!(res.status(), 200);
    let t: Value = res.json().await.unwrap();
    let (again, _) = client_url(&s, "neugier-app", &[("prompt", "none")]);
    assert!(redirect_params(&clerk.get(&again).await).contains_key("code"));
    // Asked again for more, and for prompt=consent.
    for extra in [
        vec![("scope", "openid profile email")],
        vec![("prompt", "consent")],
    ] {
        let (u, _) = client_url(&s, "neugier-app", &extra);
        let res = clerk.get(&u).await;
        assert_eq!(res.status(), 200, "{extra:?}: {:?}", location(&res));
        assert!(res.text().await.unwrap().contains("/login/consent"));
    }
    // The person withdraws it on their account page: asked again.
    let page = clerk
        .get(&s.url("/account/consents"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Neugier-App"), "{page}");
    let res = clerk
        .http
        .post(s.url("/account/consents"))
        .form(&[
            ("csrf_token", hidden(&page, "csrf_token")),
            ("client_id", "neugier-app".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        redirect_params(&clerk.get(&again).await)["error"],
        "consent_required"
    );
    assert_eq!(s.audit("consent_withdrawn").await.len(), 1);
    // Its ID token as a logout hint ends no session by itself.
    let mut u = url::Url::parse(&s.url("/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", t["id_token"].as_str().unwrap());
    let res = clerk.get(u.as_str()).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("name=\"confirm\""));
    let (portal, _) = client_url(&s, PORTAL, &[("scope", "openid")]);
    let portal = format!("{portal}&prompt=none");
    assert!(
        redirect_params(&clerk.get(&portal).await).contains_key("code"),
        "still signed in"
    );
    // First-party standing is the Kreis's to give, with a second
    // administrator of the Kreis.
    let patch_with = |token: String, first_party: bool| {
        let s = &s;
        async move {
            let url = s.url("/admin/v1/clients/neugier-app");
            let got = TestServer::http()
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let tag = got.headers()["etag"].to_str().unwrap().to_owned();
            let res = TestServer::http()
                .patch(&url)
                .bearer_auth(&token)
                .header("if-match", tag)
                .json(&json!({ "first_party": first_party }))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(patch_with(hitz.clone(), true).await.0, 403);
    let kreis_admin = console_token(&s, ADMIN_USER, ADMIN_PASSWORD).await;
    let (st, v) = patch_with(kreis_admin.clone(), true).await;
    assert_eq!(st, 202, "{v}");
    let second = admin_account(&s, "lk-luechow-dannenberg", "admin2.kreis", &["admin"]).await;
    let approve = format!("/proposals/{}/approve", v["proposal"].as_str().unwrap());
    let (st, v) = admin(&s, Method::POST, &second, &approve, Some(json!({}))).await;
    assert_eq!(st, 200, "{v}");
    let (_, c) = admin(&s, Method::GET, &kreis_admin, "/clients/neugier-app", None).await;
    assert_eq!(c["first_party"], true);
    assert!(
        redirect_params(&clerk.get(&again).await).contains_key("code"),
        "no longer asks"
    );
    // Taking it away is the tenant's administrator's, at once.
    let (st, v) = patch_with(hitz.clone(), false).await;
    assert_eq!((st, &v["first_party"]), (200, &json!(false)), "{v}");
    assert_eq!(
        redirect_params(&clerk.get(&again).await)["error"],
        "consent_required"
    );
    // The demo's own clients stay first-party: the portal never asked.
    assert!(s
        .audit("consent_given")
        .await
        .iter()
        .all(|e| e.actor_client.as_deref() == Some("neugier-app")));
}

/// The demo Kreis administrator's TOTP secret (`config/interkom.toml`).
const KREIS_TOTP: &str = "KREISADMINDEMOSECRETZWEITAUSEND2";

/// A console token from a login with password and TOTP, as the console
/// asks for it (`acr_values` substantial).
async fn console_token_totp(s: &TestServer, user: &str, password: &str, secret: &str) -> String {
    let (verifier, challenge) = pkce();
    let redirect = s.url("/admin/console/callback");
    let url = authorize_url(
        s,
        &[
            ("response_type", "code"),
            ("client_id", interkom_admin::console::CONSOLE_CLIENT),
            ("redirect_uri", &redirect),
            ("scope", "openid profile"),
            ("state", "s1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("acr_values", "urn:interkom:loa:substantial"),
        ],
    );
    let browser = Browser::new();
    let form = browser.open_login(s, &url).await;
    let res = browser.submit(&form, user, password).await;
    assert_eq!(res.status(), 200, "the second-factor page");
    let page = res.text().await.unwrap();
    let raw = totp_rs::Secret::Encoded(secret.into()).to_bytes().unwrap();
    let code = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, raw)
        .generate(s.clock.now() as u64);
    let res = post_step(&browser, s, "/login/otp", &page, &[("code", &code)]).await;
    let q = redirect_params(&res);
    let res = s
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", interkom_admin::console::CONSOLE_CLIENT),
                ("code", &q["code"]),
                ("redirect_uri", &redirect),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

/// Finding 9: the console's tokens carried `acr` low and the admin API
/// checked neither `acr` nor `auth_time`, so a phished password approved
/// `sehr_hoch` proposals. Now administration is a resource with a
/// protection need: a second factor by default, and approving a change to
/// `sehr_hoch` data takes a login at most 15 minutes old.
#[tokio::test]
async fn finding_9_administration_takes_a_second_factor_and_fresh_approvals() {
    let s = TestServer::start_with(|fc| {
        fc.admin = Default::default();
        fc.tokens.access_token_ttl = 7200;
    })
    .await;
    // A phished password: a token, but no administration with it.
    let phished = console_token(&s, ADMIN_USER, ADMIN_PASSWORD).await;
    let (st, v) = admin(&s, Method::GET, &phished, "/tenants", None).await;
    assert_eq!(st, 403, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("second factor"),
        "{v}"
    );
    // With the second factor: admitted.
    let kreis = console_token_totp(&s, ADMIN_USER, ADMIN_PASSWORD, KREIS_TOTP).await;
    let (st, _) = admin(&s, Method::GET, &kreis, "/tenants", None).await;
    assert_eq!(st, 200);
    // A change to sehr_hoch data waits for a second administrator ...
    let line = "p, meldebehoerde, meldedaten-gorleben, export, members, deny, true";
    let (st, p) = admin(
        &s,
        Method::POST,
        &kreis,
        "/policy/changes",
        Some(json!({ "add": [line] })),
    )
    .await;
    assert_eq!(st, 202, "{p}");
    let approve = format!("/proposals/{}/approve", p["proposal"].as_str().unwrap());
    admin_account(
        &s,
        "lk-luechow-dannenberg",
        "zweite.admin",
        &["admin", "meldebehoerde"],
    )
    .await;
    let second = s
        .app
        .directory
        .find_user("zweite.admin")
        .await
        .unwrap()
        .unwrap();
    let secret = s
        .app
        .gateway
        .enrol_totp(&second.id, None)
        .await
        .unwrap()
        .unwrap();
    let password = "zweite.admin-Passwort-2026!";
    let approver = console_token_totp(&s, "zweite.admin", password, &secret).await;
    // ... who approves with a login at most 15 minutes old.
    s.clock.advance(16 * 60);
    let (st, v) = admin(&s, Method::POST, &approver, &approve, Some(json!({}))).await;
    assert_eq!(st, 403, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("15 minutes"), "{v}");
    let approver = console_token_totp(&s, "zweite.admin", password, &secret).await;
    let (st, v) = admin(&s, Method::POST, &approver, &approve, Some(json!({}))).await;
    assert_eq!(st, 200, "{v}");
}
