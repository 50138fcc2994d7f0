//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): a
//! Fachverfahren that registered a `backchannel_logout_uri` hears of every
//! ended session it had tokens in, with a logout token it can verify
//! against the JWKS; a client that is down gets it later.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use interkom_directory::{AuthMethod, ClientSpec, GrantType};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::common::*;

const CLIENT: &str = "ewo-backchannel";
const SECRET: &str = "ewo-backchannel-secret-0123456789abcdefgh";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The client's back-channel endpoint: answers with `status`, hands every
/// logout token to the test.
pub(crate) struct Receiver {
    pub(crate) url: String,
    status: Arc<AtomicU16>,
    tokens: mpsc::UnboundedReceiver<String>,
}

pub(crate) async fn receiver() -> Receiver {
    let (tx, tokens) = mpsc::unbounded_channel();
    let status = Arc::new(AtomicU16::new(200));
    let app = axum::Router::new()
        .route(
            "/backchannel-logout",
            axum::routing::post(
                |State((tx, status)): State<(mpsc::UnboundedSender<String>, Arc<AtomicU16>)>,
                 Form(f): Form<std::collections::HashMap<String, String>>| async move {
                    if let Some(t) = f.get("logout_token") {
                        let _ = tx.send(t.clone());
                    }
                    StatusCode::from_u16(status.load(Ordering::Relaxed)).unwrap()
                },
            ),
        )
        .with_state((tx, status.clone()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/backchannel-logout", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    Receiver {
        url,
        status,
        tokens,
    }
}

pub(crate) async fn register(s: &TestServer, uri: Option<String>) -> Result<(), String> {
    s.app
        .directory
        .register_client(ClientSpec {
            id: CLIENT.into(),
            tenant: "sg-elbtalaue".into(),
            name: "Einwohnermeldewesen (Back-Channel)".into(),
            redirect_uris: vec![PORTAL_REDIRECT.into()],
            post_logout_redirect_uris: vec![PORTAL_LOGOUT.into()],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: vec!["openid".into(), "profile".into()],
            auth_method: AuthMethod::ClientSecretBasic,
            secret: Some(SECRET.into()),
            jwks: None,
            id_token_alg: interkom_gateway::Alg::RS256,
            backchannel_logout_uri: uri,
            first_party: true,
            resource_server: false,
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Logs in at the client through `browser` and returns the token response.
pub(crate) async fn tokens(s: &TestServer, browser: &Browser) -> Value {
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        s,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", PORTAL_REDIRECT),
            ("scope", "openid profile"),
            ("state", "s"),
            ("nonce", "n"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    // With a session already: single sign-on, no form.
    let res = browser.get(&url).await;
    let q = if res.status() == 303 {
        redirect_params(&res)
    } else {
        let form = parse_form(s, &res.text().await.unwrap());
        redirect_params(&browser.submit(&form, CLERK_USER, CLERK_PASSWORD).await)
    };
    let res = exchange_code(s, (CLIENT, SECRET), &q["code"], &verifier).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn logout(s: &TestServer, browser: &Browser, id_token: &str) {
    let mut u = url::Url::parse(&s.url("/logout")).unwrap();
    u.query_pairs_mut().append_pair("id_token_hint", id_token);
    assert_eq!(browser.get(u.as_str()).await.status(), 200);
}

/// The `backchannel_logout` audit events, once `n` are there (the sender
/// audits after the client's answer).
async fn audited(s: &TestServer, n: usize) -> Vec<interkom_audit::StoredEvent> {
    for _ in 0..100 {
        let e = s.audit("backchannel_logout").await;
        if e.len() >= n {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.audit("backchannel_logout").await
}

pub(crate) async fn next_token(r: &mut Receiver) -> String {
    tokio::time::timeout(Duration::from_secs(10), r.tokens.recv())
        .await
        .expect("a logout token within 10 s")
        .unwrap()
}

/// Verifies a logout token as a relying party must (§2.6): signature from
/// the JWKS, issuer, audience, `typ`, the event, `sid`, no `nonce`.
pub(crate) async fn verify(s: &TestServer, token: &str) -> Value {
    let h = jwt_header(token);
    assert_eq!(h["typ"], "logout+jwt");
    let jwks = jwks(s).await;
    let jwk = jwks
        .find(h["kid"].as_str().unwrap())
        .expect("a published key");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[CLIENT]);
    v.set_issuer(&[&s.issuer]);
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .expect("a valid signature, issuer, audience and expiry")
    .claims;
    assert!(claims["events"][EVENT].is_object(), "{claims}");
    assert!(claims.get("nonce").is_none());
    assert!(claims["jti"].is_string());
    let life = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=120).contains(&life), "{claims}");
    claims
}

#[tokio::test]
async fn an_ended_session_is_announced_to_the_clients_that_asked() {
    let s = TestServer::start_with(|c| c.backchannel.allow_loopback = true).await;
    let mut r = receiver().await;
    register(&s, Some(r.url.clone())).await.unwrap();
    let discovery: Value = TestServer::http()
        .get(s.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["backchannel_logout_supported"], true);
    assert_eq!(discovery["backchannel_logout_session_supported"], true);

    // One session signs in to the portal (which registered no URI) and,
    // by single sign-on, to the client.
    let browser = Browser::new();
    portal_tokens(&s, &browser, CLERK_USER, CLERK_PASSWORD).await;
    let t = tokens(&s, &browser).await;
    let id = jwt_payload(t["id_token"].as_str().unwrap());
    logout(&s, &browser, t["id_token"].as_str().unwrap()).await;
    let claims = verify(&s, &next_token(&mut r).await).await;
    assert_eq!(claims["sid"], id["sid"]);
    assert_eq!(claims["sub"], id["sub"]);
    let audited = audited(&s, 1).await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].outcome, "success");
    assert_eq!(audited[0].actor_client.as_deref(), Some(CLIENT));

    // Locking the account ends its sessions: announced too.
    let b2 = Browser::new();
    let t2 = tokens(&s, &b2).await;
    let sid2 = jwt_payload(t2["id_token"].as_str().unwrap())["sid"].clone();
    s.app
        .gateway
        .set_disabled(id["sub"].as_str().unwrap(), true)
        .await
        .unwrap();
    let claims = verify(&s, &next_token(&mut r).await).await;
    assert_eq!(claims["sid"], sid2);
    // Nothing else was sent (one session, one client).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(r.tokens.try_recv().is_err());
}

#[tokio::test]
async fn a_client_that_is_down_hears_of_the_logout_when_it_is_back() {
    let s = TestServer::start_with(|c| c.backchannel.allow_loopback = true).await;
    let mut r = receiver().await;
    register(&s, Some(r.url.clone())).await.unwrap();
    r.status.store(503, Ordering::Relaxed);
    let browser = Browser::new();
    let t = tokens(&s, &browser).await;
    logout(&s, &browser, t["id_token"].as_str().unwrap()).await;
    // The first attempt is refused; the next one waits 5 s (test clock).
    let first = next_token(&mut r).await;
    verify(&s, &first).await;
    r.status.store(200, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(r.tokens.try_recv().is_err(), "no retry before the pause");
    s.clock.advance(6);
    let second = next_token(&mut r).await;
    let claims = verify(&s, &second).await;
    assert_ne!(second, first, "each attempt carries a fresh token");
    let audited = audited(&s, 1).await;
    assert_eq!(audited.len(), 1, "the delivery, once");
    assert_eq!(audited[0].outcome, "success");
    assert!(
        audited[0].details.contains("\"attempts\":2"),
        "{}",
        audited[0].details
    );
    assert_eq!(claims["aud"], CLIENT);
}

#[tokio::test]
async fn a_backchannel_logout_uri_must_be_https_and_not_this_machine() {
    let s = TestServer::start().await;
    for bad in [
        "http://ewo.example/logout",
        "https://ewo.example/logout#fragment",
        "https://user:pw@ewo.example/logout",
        "javascript:alert(1)",
        "com.example.app:/logout",
        "/relative",
        // This machine, unless allowed; the link (cloud metadata).
        "http://127.0.0.1:9000/logout",
        "https://localhost/logout",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/logout",
        "https://0.0.0.0/logout",
    ] {
        let e = register(&s, Some(bad.into())).await.unwrap_err();
        assert!(e.contains("backchannel_logout_uri"), "{bad}: {e}");
    }
    register(&s, Some("https://ewo.example/backchannel-logout".into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_code_outlives_no_logout() {
    let s = TestServer::start().await;
    let browser = Browser::new();
    let (verifier, challenge) = pkce();
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
    let q = browser.login(&s, &url, CLERK_USER, CLERK_PASSWORD).await;
    // The user logs out before the client redeems the code.
    let res = browser.get(&s.url("/logout")).await;
    let form = parse_form(&s, &res.text().await.unwrap());
    let mut fields = form.fields.clone();
    fields.insert("confirm".into(), "yes".into());
    browser
        .http
        .post(&form.action)
        .form(&fields)
        .send()
        .await
        .unwrap();
    let res = exchange_code(&s, (PORTAL, PORTAL_SECRET), &q["code"], &verifier).await;
    expect_oauth_error(res, 400, "invalid_grant").await;
}
