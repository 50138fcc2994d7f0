//! Property-based fuzzing (proptest) of every parser of untrusted input,
//! through the real server: authorization, login, token, introspection,
//! revocation, userinfo and logout requests, client assertions (JWTs with
//! arbitrary headers and claims), AuthZEN bodies, and the configuration.
//! The properties: never a 5xx, never a hang, errors in the protocol's own
//! format, and never a redirect to a URI that is not registered. (The admin
//! API's bodies are fuzzed against its OpenAPI document by tests/fuzz.)

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use crate::common::*;

/// Cases per endpoint: enough to reach every branch of the parsers within
/// seconds, bounded so the suite stays fast.
const CASES: u32 = 160;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

/// The keys the parsers look for, and some they do not.
const KEYS: &[&str] = &[
    "grant_type",
    "code",
    "redirect_uri",
    "client_id",
    "client_secret",
    "code_verifier",
    "code_challenge",
    "code_challenge_method",
    "refresh_token",
    "scope",
    "state",
    "nonce",
    "response_type",
    "response_mode",
    "prompt",
    "max_age",
    "acr_values",
    "login_hint",
    "ui_locales",
    "request",
    "request_uri",
    "client_assertion_type",
    "client_assertion",
    "token",
    "token_type_hint",
    "username",
    "password",
    "csrf",
    "id_token_hint",
    "post_logout_redirect_uri",
    "resource",
    "audience",
];

/// Values: anything, near-valid ones, JWT-shaped ones, long ones.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[ -~]{0,40}",
        2 => prop::sample::select(vec![
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "code",
            "code id_token",
            "token",
            "query",
            "fragment",
            "form_post",
            "S256",
            "plain",
            "openid",
            "openid profile email roles offline_access",
            "none",
            "login consent",
            "-1",
            "99999999999999999999",
            "urn:interkom:loa:high",
            PORTAL,
            KFZ,
            RATSINFO,
            PORTAL_REDIRECT,
            RATSINFO_REDIRECT,
            "http://evil.example/callback",
            "http://localhost:9000/callback/../evil",
            "javascript:alert(1)",
            "",
        ])
        .prop_map(String::from),
        2 => jwtish(),
        1 => (1usize..5_000).prop_map(|n| "%".repeat(n)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[ -~]{0,16}".prop_map(Value::from),
        prop::sample::select(vec![
            "user",
            "client",
            "resource",
            "read",
            "write",
            "login",
            "jan.meyer",
            "kreis.admin",
            "ratsinfo-hitzacker",
            "urn:interkom:loa:low",
            "urn:interkom:loa:high",
            "pwd",
            "RS256",
            "EdDSA",
            "none",
            "HS256",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(json_key(), inner, 0..6)
                .prop_map(|m: BTreeMap<String, Value>| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "alg",
            "kid",
            "typ",
            "crit",
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "nbf",
            "jti",
            "subject",
            "resource",
            "action",
            "context",
            "options",
            "type",
            "id",
            "name",
            "properties",
            "evaluations",
            "evaluations_semantic",
            "acr",
            "amr",
            "auth_time",
        ])
        .prop_map(String::from),
        "[a-z_]{1,10}",
    ]
}

/// A JWT's shape with arbitrary header, claims and signature.
fn jwtish() -> impl Strategy<Value = String> {
    (
        json_value(),
        json_value(),
        prop::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(h, p, sig)| {
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(h.to_string()),
                URL_SAFE_NO_PAD.encode(p.to_string()),
                URL_SAFE_NO_PAD.encode(sig)
            )
        })
}

fn form() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![
                4 => prop::sample::select(KEYS.to_vec()).prop_map(String::from),
                1 => "[a-z_]{1,12}",
            ],
            text(),
        ),
        0..10,
    )
}

/// Client authentication: none, a registered client, a wrong secret, junk.
fn basic() -> impl Strategy<Value = Option<(String, String)>> {
    prop_oneof![
        Just(None),
        Just(Some((PORTAL.to_owned(), PORTAL_SECRET.to_owned()))),
        Just(Some((KFZ.to_owned(), KFZ_SECRET.to_owned()))),
        (text(), text()).prop_map(Some),
    ]
}

/// Where a redirect may go: a registered redirect or post-logout URI, or
/// interkom itself.
fn allowed_location(s: &TestServer, loc: &str) -> bool {
    loc.starts_with('/')
        || loc.starts_with(&s.issuer)
        || [
            "http://localhost:9000/",
            "http://localhost:9001/",
            "http://localhost:9002/",
        ]
        .iter()
        .any(|p| loc.starts_with(p))
}

/// The response's status and body; fails the case on a 5xx or a redirect
/// to an unregistered URI.
async fn check(
    s: &TestServer,
    req: reqwest::RequestBuilder,
) -> Result<(u16, String), TestCaseError> {
    let res = req
        .timeout(std::time::Duration::from_secs(20))
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
    let status = res.status().as_u16();
    if let Some(loc) = location(&res) {
        prop_assert!(allowed_location(s, &loc), "redirect to {loc}");
    }
    let body = res.text().await.unwrap_or_default();
    prop_assert!(status < 500, "{status}: {body}");
    Ok((status, body))
}

/// An OAuth error answer is OAuth error JSON.
fn oauth_json(status: u16, body: &str) -> Result<(), TestCaseError> {
    if status == 400 || status == 401 {
        let v: Value = serde_json::from_str(body)
            .map_err(|_| TestCaseError::fail(format!("{status} is not JSON: {body}")))?;
        prop_assert!(v["error"].is_string(), "{status}: {body}");
    }
    Ok(())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_introspection_and_revocation_requests() {
    let s = TestServer::start().await;
    let http = TestServer::http();
    for path in ["/token", "/introspect", "/revoke"] {
        runner()
            .run(&(form(), basic()), |(form, auth)| {
                block_on(async {
                    let mut req = http.post(s.url(path)).form(&form);
                    if let Some((id, secret)) = &auth {
                        req = req.basic_auth(id, Some(secret));
                    }
                    let (status, body) = check(&s, req).await?;
                    oauth_json(status, &body)
                })
            })
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    // Raw bodies of any kind under any content type.
    runner()
        .run(
            &(
                prop::collection::vec(any::<u8>(), 0..2_000),
                prop::sample::select(vec![
                    "application/x-www-form-urlencoded",
                    "application/json",
                    "multipart/form-data; boundary=x",
                    "text/plain",
                    "",
                ]),
            ),
            |(body, ct)| {
                block_on(async {
                    let req = http
                        .post(s.url("/token"))
                        .header("content-type", ct)
                        .body(body);
                    let (status, body) = check(&s, req).await?;
                    oauth_json(status, &body)
                })
            },
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_assertions_with_any_header_and_claims() {
    let s = TestServer::start().await;
    let http = TestServer::http();
    runner()
        .run(&(jwtish(), text()), |(assertion, client)| {
            block_on(async {
                let req = http.post(s.url("/token")).form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                ]);
                let (status, body) = check(&s, req).await?;
                prop_assert!(status == 400 || status == 401, "{status}: {body}");
                oauth_json(status, &body)
            })
        })
        .unwrap();
    // Bearer tokens of the same shape at userinfo.
    runner()
        .run(&jwtish(), |token| {
            block_on(async {
                let (status, _) =
                    check(&s, http.get(s.url("/userinfo")).bearer_auth(token)).await?;
                prop_assert_eq!(status, 401);
                Ok(())
            })
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_login_and_logout_requests() {
    let s = TestServer::start().await;
    // A browser with a session too: the parsers see both states.
    let signed_in = Browser::new();
    portal_tokens(&s, &signed_in, CLERK_USER, CLERK_PASSWORD).await;
    let anonymous = Browser::new();
    for (path, get) in [
        ("/authorize", true),
        ("/authorize", false),
        ("/login", false),
        ("/logout", true),
        ("/logout", false),
    ] {
        runner()
            .run(&(form(), any::<bool>()), |(form, session)| {
                block_on(async {
                    let b = if session { &signed_in } else { &anonymous };
                    let req = if get {
                        let mut u = url::Url::parse(&s.url(path)).unwrap();
                        u.query_pairs_mut().extend_pairs(&form);
                        b.http.get(u.as_str())
                    } else {
                        b.http.post(s.url(path)).form(&form)
                    };
                    check(&s, req).await.map(|_| ())
                })
            })
            .unwrap_or_else(|e| panic!("{path} (GET {get}): {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_forms_past_the_csrf_check() {
    let s = TestServer::start_with(|c| {
        // Every case a full check: no delays, no locks in the way.
        c.brute_force.delay_after = 1_000_000;
        c.brute_force.lock_after = 1_000_000;
        c.brute_force.source_lock_after = 1_000_000;
    })
    .await;
    let (_, challenge) = pkce();
    let url = authorize_url(
        &s,
        &[
            ("response_type", "code"),
            ("client_id", PORTAL),
            ("redirect_uri", PORTAL_REDIRECT),
            ("scope", "openid"),
            ("state", "s"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let mut runner = TestRunner::new(Config {
        cases: 48, // each one is an argon2id check
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(text(), text(), form()), |(username, password, extra)| {
            block_on(async {
                let b = Browser::new();
                let page = b.open_login(&s, &url).await;
                let mut fields: Vec<(String, String)> = page.fields.clone().into_iter().collect();
                fields.push(("username".into(), username));
                fields.push(("password".into(), password));
                fields.extend(extra);
                let (status, _) = check(&s, b.http.post(&page.action).form(&fields)).await?;
                prop_assert!(matches!(status, 400 | 401 | 403 | 413), "{status}");
                Ok(())
            })
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authzen_bodies() {
    let s = TestServer::start().await;
    let token = cc_token(&s).await;
    let http = TestServer::http();
    // Near-valid requests (the right keys, any values) and arbitrary JSON.
    let near = (json_value(), json_value(), json_value(), json_value()).prop_map(
        |(subject, action, resource, context)| {
            serde_json::json!({
                "subject": subject, "action": action, "resource": resource, "context": context,
                "evaluations": [ { "resource": resource, "action": action } ],
            })
        },
    );
    let body = prop_oneof![near, json_value()];
    for path in ["/access/v1/evaluation", "/access/v1/evaluations"] {
        runner()
            .run(&body, |v| {
                block_on(async {
                    let req = http.post(s.url(path)).bearer_auth(&token).json(&v);
                    let (status, body) = check(&s, req).await?;
                    if status == 400 {
                        let v: Value = serde_json::from_str(&body)
                            .map_err(|_| TestCaseError::fail(format!("400 not JSON: {body}")))?;
                        prop_assert!(v.is_object(), "{body}");
                    }
                    Ok(())
                })
            })
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

#[tokio::test]
async fn oversized_headers_and_bodies_are_refused_not_served() {
    let s = TestServer::start().await;
    let http = TestServer::http();
    let res = http
        .post(s.url("/token"))
        .basic_auth(KFZ, Some(KFZ_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", &"a".repeat(200_000)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let res = http
        .get(s.url("/userinfo"))
        .header("x-junk", "a".repeat(1_000_000))
        .send()
        .await;
    // The connection is refused with 431 or closed: never served.
    if let Ok(res) = res {
        assert_eq!(res.status(), 431);
    }
    // And the node still serves.
    assert!(!cc_token(&s).await.is_empty());
}

/// The default configuration with random damage: deleted lines, replaced
/// values, inserted keys. Parsing and validation answer, never panic.
#[test]
fn damaged_configurations_are_reported_not_panicked_on() {
    let text = std::fs::read_to_string(repo_root().join("config/interkom.toml")).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = lines.len();
    let edit = prop_oneof![
        (0..n).prop_map(|i| (i, None)),
        (
            0..n,
            prop_oneof![
                any::<String>(),
                "[a-z_]{1,10} = [ -~]{0,20}",
                prop::sample::select(vec![
                    "issuer = \"\"",
                    "issuer = 5",
                    "listen = \"::::\"",
                    "database_url = \"nope\"",
                    "[tls]",
                    "trusted_proxies = [\"x\"]",
                    "code_ttl = -1",
                    "[[tenants]]",
                    "id = \"\"",
                    "parent = \"missing\"",
                    "level = \"bund\"",
                    "redirect_uris = [1]",
                    "access_token_ttl = 99999999999999999999",
                    "[tokens]",
                    "log = 7",
                ])
                .prop_map(String::from),
            ]
        )
            .prop_map(|(i, s)| (i, Some(s))),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(edit, 1..6), |edits| {
            let mut l = lines.clone();
            for (i, e) in edits {
                let i = i.min(l.len().saturating_sub(1));
                match e {
                    None if !l.is_empty() => {
                        l.remove(i);
                    }
                    None => {}
                    Some(s) => l.insert(i, s),
                }
            }
            let text = l.join("\n");
            let result = std::panic::catch_unwind(|| {
                interkom::FileConfig::from_toml(&text).and_then(|mut c| {
                    inline_keys(&mut c);
                    c.validate().map(|_| ())
                })
            });
            prop_assert!(result.is_ok(), "panicked on:\n{text}");
            Ok(())
        })
        .unwrap();
}
