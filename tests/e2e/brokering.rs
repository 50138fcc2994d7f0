//! Identity brokering, second factors and step-up.
//!
//! The upstream is either a second interkom node (a municipality running
//! its own IdP) or a small OpenID Provider written here that can misbehave
//! on purpose (bad signature, wrong nonce, unknown `acr`, slow, rotated
//! keys). The upstream runs on `localhost`, the broker on `127.0.0.1`, so
//! the one browser keeps their cookies apart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use interkom_directory::UpstreamConfig;
use interkom_directory::{AuthMethod, ClientSpec, GrantType};
use interkom_gateway::Alg;
use interkom_policy::Loa;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::common::*;

const BROKER_CLIENT: &str = "interkom-broker";
const BROKER_SECRET: &str = "broker-secret-0123456789abcdefghijklmnop";

fn upstream_cfg(id: &str, tenant: &str, issuer: &str) -> UpstreamConfig {
    let mut acr = BTreeMap::new();
    acr.insert("urn:interkom:loa:low".to_owned(), Loa::Low);
    // This Kommune's IdP asserts `substantial` only with a second factor
    // bound to its staff's hardware: trusted here as `high`.
    acr.insert("urn:interkom:loa:substantial".to_owned(), Loa::High);
    let mut roles = BTreeMap::new();
    roles.insert("sachbearbeitung".to_owned(), "sachbearbeitung".to_owned());
    roles.insert("meldebehoerde".to_owned(), "meldebehoerde".to_owned());
    let claims = interkom_directory::ClaimMapping {
        groups: Some("roles".into()),
        ..Default::default()
    };
    UpstreamConfig {
        id: id.into(),
        tenant: tenant.into(),
        name: format!("Anmeldung {id}"),
        issuer: issuer.into(),
        client_id: BROKER_CLIENT.into(),
        client_secret: Some(BROKER_SECRET.into()),
        scopes: vec!["openid".into(), "profile".into(), "email".into()],
        domains: vec![format!("{id}.example")],
        claims,
        roles,
        acr,
        default_loa: None,
        link_existing: false,
        create_accounts: true,
        timeout_seconds: 3,
        propagate_logout: true,
    }
}

/// An interkom node as the Kommune's IdP (on `localhost`) and the broker
/// (on 127.0.0.1) with it configured as upstream `idp`.
async fn pair(
    idp: &str,
    tenant: &str,
    tweak: impl FnOnce(&mut UpstreamConfig),
) -> (TestServer, TestServer) {
    let upstream = TestServer::start_with(|fc| {
        fc.issuer = fc.issuer.replace("127.0.0.1", "localhost");
    })
    .await;
    let mut cfg = upstream_cfg(idp, tenant, &upstream.issuer);
    tweak(&mut cfg);
    let broker = TestServer::start_with(move |fc| {
        fc.brokering.allow_loopback = true;
        fc.upstreams = vec![cfg];
    })
    .await;
    upstream
        .app
        .directory
        .register_client(ClientSpec {
            id: BROKER_CLIENT.into(),
            // The Kommune's IdP registers the Landkreis's broker.
            tenant: "lk-luechow-dannenberg".into(),
            name: "interkom (Landkreis)".into(),
            redirect_uris: vec![broker.url("/broker/callback")],
            post_logout_redirect_uris: vec![broker.url("/broker/logged-out")],
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            auth_method: AuthMethod::ClientSecretBasic,
            secret: Some(BROKER_SECRET.into()),
            jwks: None,
            id_token_alg: Alg::RS256,
            backchannel_logout_uri: None,
            first_party: true,
            resource_server: false,
        })
        .await
        .unwrap();
    (upstream, broker)
}

/// The portal's authorization URL at `s` with PKCE; returns (url, verifier).
fn portal_auth(s: &TestServer, extra: &[(&str, &str)]) -> (String, String) {
    let (verifier, challenge) = pkce();
    let mut p = vec![
        ("response_type", "code"),
        ("client_id", PORTAL),
        ("redirect_uri", PORTAL_REDIRECT),
        ("scope", "openid profile email"),
        ("state", "st"),
        ("nonce", "nn"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    p.extend_from_slice(extra);
    (authorize_url(s, &p), verifier)
}

/// Redeems a portal code; returns the ID token's claims.
async fn portal_id_token(s: &TestServer, code: &str, verifier: &str) -> Value {
    let res = exchange_code(s, (PORTAL, PORTAL_SECRET), code, verifier).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    jwt_payload(v["id_token"].as_str().unwrap())
}

/// Chooses `idp` on the broker's login page; returns the redirect.
async fn choose(
    browser: &Browser,
    broker: &TestServer,
    login_page: &str,
    idp: &str,
) -> reqwest::Response {
    post_step(browser, broker, "/login/idp", login_page, &[("idp", idp)]).await
}

/// Follows the browser from the upstream's authorization URL through its
/// password form back to the broker's callback; returns the callback's
/// answer.
async fn login_upstream(
    browser: &Browser,
    upstream: &TestServer,
    upstream_auth: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    assert!(
        upstream_auth.starts_with(&upstream.issuer),
        "{upstream_auth}"
    );
    let res = browser.get(upstream_auth).await;
    let back = if res.status() == 200 {
        let form = parse_form(upstream, &res.text().await.unwrap());
        let res = browser.submit(&form, user, password).await;
        assert_eq!(res.status(), 303);
        location(&res).unwrap()
    } else {
        assert_eq!(res.status(), 303, "single sign-on at the upstream");
        location(&res).unwrap()
    };
    browser.get(&back).await
}

#[tokio::test]
async fn first_upstream_login_creates_the_account_then_finds_it_again() {
    let (upstream, broker) = pair("idp-hitzacker", "hitzacker-elbe", |_| {}).await;
    for round in 0..2 {
        let browser = Browser::new();
        let (url, verifier) = portal_auth(&broker, &[]);
        let res = browser.get(&url).await;
        assert_eq!(res.status(), 200);
        let page = res.text().await.unwrap();
        assert!(
            page.contains("Anmeldung idp-hitzacker"),
            "the Kommune is offered"
        );
        let res = choose(&browser, &broker, &page, "idp-hitzacker").await;
        assert_eq!(res.status(), 303);
        let to = location(&res).unwrap();
        let q: HashMap<String, String> = url::Url::parse(&to)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(q["client_id"], BROKER_CLIENT);
        assert_eq!(q["code_challenge_method"], "S256");
        assert!(q.contains_key("nonce") && q.contains_key("state"));
        let res = login_upstream(&browser, &upstream, &to, CLERK_USER, CLERK_PASSWORD).await;
        assert_eq!(res.status(), 303, "{:?}", res.text().await);
        let back = redirect_params(&res);
        assert_eq!(back["state"], "st");
        let id = portal_id_token(&broker, &back["code"], &verifier).await;
        assert_eq!(id["preferred_username"], "jan.meyer@idp-hitzacker");
        assert_eq!(id["tenant"], "hitzacker-elbe");
        assert_eq!(id["acr"], "urn:interkom:loa:low");
        assert_eq!(id["amr"], json!(["pwd"]));
        assert_eq!(id["name"], "Jan Meyer");
        // Not the broker's own jan.meyer: nothing links them.
        let own = broker
            .app
            .directory
            .find_user(CLERK_USER)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(id["sub"], own.id.as_str());
        let jit = broker
            .app
            .directory
            .find_user("jan.meyer@idp-hitzacker")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(id["sub"], jit.id.as_str());
        assert!(jit.password_hash.is_none(), "no local password");
        let roles = interkom_policy::roles::roles_in(&broker.app.pool, &jit.id, "hitzacker-elbe")
            .await
            .unwrap();
        assert_eq!(
            roles,
            vec!["sachbearbeitung".to_owned()],
            "mapped from the upstream's roles"
        );
        assert_eq!(
            broker.audit("account_provisioned").await.len(),
            1,
            "round {round}"
        );
        // The choice is remembered: shown first, marked.
        let (url, _) = portal_auth(&broker, &[("prompt", "login")]);
        let page = browser.get(&url).await.text().await.unwrap();
        assert!(page.contains("zuletzt gewählt"));
    }
    let logins = broker.audit("login").await;
    assert_eq!(logins.len(), 2);
    let details: Value = serde_json::from_str(&logins[0].details).unwrap();
    assert_eq!(details["upstream"], "idp-hitzacker");
}

#[tokio::test]
async fn logging_out_ends_the_upstream_session_too() {
    let (upstream, broker) = pair("idp-hitzacker", "hitzacker-elbe", |_| {}).await;
    let browser = Browser::new();
    let (url, verifier) = portal_auth(&broker, &[("idp_hint", "idp-hitzacker")]);
    let res = browser.get(&url).await;
    let res = login_upstream(
        &browser,
        &upstream,
        &location(&res).unwrap(),
        CLERK_USER,
        CLERK_PASSWORD,
    )
    .await;
    let code = redirect_params(&res)["code"].clone();
    let res = exchange_code(&broker, (PORTAL, PORTAL_SECRET), &code, &verifier).await;
    let tokens: Value = res.json().await.unwrap();
    let hint = tokens["id_token"].as_str().unwrap();
    let mut logout = url::Url::parse(&broker.url("/logout")).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("id_token_hint", hint)
        .append_pair("post_logout_redirect_uri", PORTAL_LOGOUT)
        .append_pair("state", "bye");
    // The broker ends its session and sends the browser to the upstream's
    // end-session endpoint with the upstream's own ID token as hint.
    let res = browser.get(logout.as_str()).await;
    assert_eq!(res.status(), 303);
    let at_upstream = location(&res).unwrap();
    assert!(
        at_upstream.starts_with(&upstream.url("/logout")),
        "{at_upstream}"
    );
    assert!(at_upstream.contains("id_token_hint="));
    let res = browser.get(&at_upstream).await;
    assert_eq!(res.status(), 303, "the hint names the upstream's session");
    let back = location(&res).unwrap();
    assert!(
        back.starts_with(&broker.url("/broker/logged-out")),
        "{back}"
    );
    let res = browser.get(&back).await;
    assert_eq!(res.status(), 303);
    let last = location(&res).unwrap();
    assert!(
        last.starts_with(PORTAL_LOGOUT) && last.contains("state=bye"),
        "{last}"
    );
    assert_eq!(upstream.audit("logout").await.len(), 1);
    assert_eq!(broker.audit("logout").await.len(), 1);
    // No session left at the upstream.
    let (url, _) = portal_auth(&upstream, &[("prompt", "none")]);
    assert_eq!(
        redirect_params(&browser.get(&url).await)["error"],
        "login_required"
    );
    // A forged return does not redirect anywhere.
    let res = browser
        .get(&broker.url("/broker/logged-out?state=forged"))
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn linking_stays_inside_the_upstreams_subtree() {
    let (upstream, broker) = pair("idp-hitzacker", "hitzacker-elbe", |c| {
        c.link_existing = true
    })
    .await;
    let login = |user: &'static str, password: &'static str| {
        let (upstream, broker) = (&upstream, &broker);
        async move {
            let browser = Browser::new();
            let (url, verifier) = portal_auth(broker, &[("idp_hint", "idp-hitzacker")]);
            // idp_hint: straight to the upstream.
            let res = browser.get(&url).await;
            assert_eq!(res.status(), 303);
            let res =
                login_upstream(&browser, upstream, &location(&res).unwrap(), user, password).await;
            let back = redirect_params(&res);
            portal_id_token(broker, &back["code"], &verifier).await
        }
    };
    // jan.meyer of Hitzacker: linked to the broker's existing account.
    let id = login(CLERK_USER, CLERK_PASSWORD).await;
    let own = broker
        .app
        .directory
        .find_user(CLERK_USER)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id["sub"], own.id.as_str());
    assert_eq!(broker.audit("account_linked").await.len(), 1);
    // The Kreis administrator is not Hitzacker's to vouch for: a new
    // account in Hitzacker, never the Kreis's admin.
    let id = login(ADMIN_USER, ADMIN_PASSWORD).await;
    let admin = broker
        .app
        .directory
        .find_user(ADMIN_USER)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(id["sub"], admin.id.as_str());
    assert_eq!(id["tenant"], "hitzacker-elbe");
    assert_eq!(id["preferred_username"], "kreis.admin@idp-hitzacker");
}

#[tokio::test]
async fn home_realm_discovery_by_hint_search_and_domain() {
    let (_upstream, broker) = pair("idp-hitzacker", "hitzacker-elbe", |_| {}).await;
    let browser = Browser::new();
    // A login_hint in the upstream's domain goes straight there, hint kept.
    let (url, _) = portal_auth(&broker, &[("login_hint", "jan@idp-hitzacker.example")]);
    let res = browser.get(&url).await;
    assert_eq!(res.status(), 303);
    let to = location(&res).unwrap();
    assert!(
        to.contains("login_hint=jan%40idp-hitzacker.example"),
        "{to}"
    );
    // An unknown idp_hint shows the page.
    let (url, _) = portal_auth(&broker, &[("idp_hint", "nirgendwo")]);
    let page = browser.get(&url).await.text().await.unwrap();
    assert!(page.contains("Kommune suchen"));
    // Searching filters the list.
    let search = |q: &'static str| {
        let (browser, page, broker) = (&browser, page.clone(), &broker);
        async move {
            post_step(browser, broker, "/login/idp", &page, &[("q", q)])
                .await
                .text()
                .await
                .unwrap()
        }
    };
    assert!(search("hitzacker")
        .await
        .contains("value=\"idp-hitzacker\""));
    let none = search("gartow").await;
    assert!(!none.contains("value=\"idp-hitzacker\""));
    assert!(none.contains("Keine Kommune gefunden."));
    // A forged form (no browser binding) is refused.
    let res = TestServer::http()
        .post(broker.url("/login/idp"))
        .form(&[
            ("login_request", hidden(&page, "login_request")),
            ("csrf_token", hidden(&page, "csrf_token")),
            ("idp", "idp-hitzacker".to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

/// Enrols TOTP for the browser's signed-in user at `s`: (secret, recovery
/// codes, the time of the code that confirmed it).
async fn enrol_totp(s: &TestServer, browser: &Browser) -> (Vec<u8>, Vec<String>, i64) {
    let res = browser.get(&s.url("/account/totp")).await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    let start = page.find("<code id=\"totp-secret\">").unwrap() + "<code id=\"totp-secret\">".len();
    let b32 = &page[start..start + page[start..].find('<').unwrap()];
    let secret = totp_rs::Secret::Encoded(b32.to_owned()).to_bytes().unwrap();
    assert!(page.contains("otpauth:"));
    // A wrong first code confirms nothing.
    let res = browser
        .http
        .post(s.url("/account/totp"))
        .form(&[
            ("csrf_token", hidden(&page, "csrf_token")),
            ("code", "000000".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let page = browser
        .get(&s.url("/account/totp"))
        .await
        .text()
        .await
        .unwrap();
    let start = page.find("<code id=\"totp-secret\">").unwrap() + "<code id=\"totp-secret\">".len();
    let b32 = &page[start..start + page[start..].find('<').unwrap()];
    let secret2 = totp_rs::Secret::Encoded(b32.to_owned()).to_bytes().unwrap();
    assert_ne!(secret, secret2, "a new secret until one is confirmed");
    let at = s.clock.now();
    let res = browser
        .http
        .post(s.url("/account/totp"))
        .form(&[
            ("csrf_token", hidden(&page, "csrf_token")),
            ("code", code(&secret2, at)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    let codes: Vec<String> = page
        .split("<li><code>")
        .skip(1)
        .map(|c| c[..c.find('<').unwrap()].to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret2, codes, at)
}

fn code(secret: &[u8], now: i64) -> String {
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, secret.to_vec())
        .generate(now as u64)
}

async fn submit_otp(
    s: &TestServer,
    browser: &Browser,
    page: &str,
    code: &str,
) -> reqwest::Response {
    post_step(browser, s, "/login/otp", page, &[("code", code)]).await
}

#[tokio::test]
async fn totp_steps_a_session_up_to_substantial_and_counts_each_code_once() {
    let s = TestServer::start().await;
    let browser = Browser::new();
    // Without a session there is nothing to enrol.
    assert_eq!(browser.get(&s.url("/account/totp")).await.status(), 401);
    let (url, verifier) = portal_auth(&s, &[]);
    let q = browser
        .login(&s, &url, "anna.schulz", "Elbtalaue-Demo-2026!")
        .await;
    let first = portal_id_token(&s, &q["code"], &verifier).await;
    assert_eq!(first["acr"], "urn:interkom:loa:low");
    let (secret, recovery, enrolled_at) = enrol_totp(&s, &browser).await;
    assert_eq!(s.audit("second_factor_enrolled").await.len(), 1);

    // The portal asks for `substantial`: the second factor, not the password.
    let (url, verifier) = portal_auth(&s, &[("acr_values", "urn:interkom:loa:substantial")]);
    let res = browser.get(&url).await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("/login/otp") && !page.contains("name=\"password\""));
    // Past the first factor, the login request takes no password.
    let fields = [
        ("username", "anna.schulz"),
        ("password", "Elbtalaue-Demo-2026!"),
    ];
    let res = post_step(&browser, &s, "/login", &page, &fields).await;
    assert_eq!(res.status(), 400);
    // prompt=none cannot ask.
    let (none_url, _) = portal_auth(
        &s,
        &[
            ("acr_values", "urn:interkom:loa:substantial"),
            ("prompt", "none"),
        ],
    );
    let res = browser.get(&none_url).await;
    assert_eq!(
        redirect_params(&res)["error"],
        "unmet_authentication_requirements"
    );
    // The code used at enrolment counts no more.
    let used = code(&secret, enrolled_at);
    let res = submit_otp(&s, &browser, &page, &used).await;
    assert_eq!(res.status(), 401);
    let failed = s.audit("login_failed").await;
    assert_eq!(failed[0].reason.as_deref(), Some("invalid_second_factor"));
    s.clock.advance(30);
    let res = submit_otp(&s, &browser, &page, &code(&secret, s.clock.now())).await;
    assert_eq!(res.status(), 303);
    let q = redirect_params(&res);
    let id = portal_id_token(&s, &q["code"], &verifier).await;
    assert_eq!(id["acr"], "urn:interkom:loa:substantial");
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(
        id["sid"], first["sid"],
        "the session is stepped up, not replaced"
    );
    assert!(id["auth_time"].as_i64().unwrap() >= first["auth_time"].as_i64().unwrap() + 30);
    // The old session cookie was replaced: SSO now gives `substantial`.
    let (url, verifier) = portal_auth(&s, &[("acr_values", "urn:interkom:loa:substantial")]);
    let res = browser.get(&url).await;
    assert_eq!(res.status(), 303);
    let id = portal_id_token(&s, &redirect_params(&res)["code"], &verifier).await;
    assert_eq!(id["acr"], "urn:interkom:loa:substantial");

    // A new browser: password, then a recovery code — once.
    for (attempt, expect) in [(0, 303), (1, 401)] {
        let other = Browser::new();
        let (url, _) = portal_auth(&s, &[("acr_values", "urn:interkom:loa:substantial")]);
        let form = other.open_login(&s, &url).await;
        let res = other
            .submit(&form, "anna.schulz", "Elbtalaue-Demo-2026!")
            .await;
        assert_eq!(res.status(), 200, "the second-factor page");
        let page = res.text().await.unwrap();
        let res = submit_otp(&s, &other, &page, &recovery[0].to_lowercase()).await;
        assert_eq!(res.status(), expect, "recovery code, attempt {attempt}");
    }
    // With a second factor on the account, a password alone adds none.
    let phished = Browser::new();
    let (url, _) = portal_auth(&s, &[]);
    phished
        .login(&s, &url, "anna.schulz", "Elbtalaue-Demo-2026!")
        .await;
    assert_eq!(phished.get(&s.url("/account/totp")).await.status(), 401);
    assert_eq!(phished.get(&s.url("/account/passkey")).await.status(), 401);
    // Enrolment needs a recent password: not with a session 16 minutes old.
    let late = Browser::new();
    let (url, _) = portal_auth(&s, &[]);
    late.login(&s, &url, CLERK_USER, CLERK_PASSWORD).await;
    s.clock.advance(16 * 60);
    assert_eq!(late.get(&s.url("/account/totp")).await.status(), 401);
    // `high` is out of reach for a local account: the client is told.
    let (url, _) = portal_auth(&s, &[("acr_values", "urn:interkom:loa:high")]);
    let res = browser.get(&url).await;
    assert_eq!(
        redirect_params(&res)["error"],
        "unmet_authentication_requirements"
    );
}

#[tokio::test]
async fn second_factor_guesses_end_the_login_request() {
    let s = TestServer::start().await;
    let browser = Browser::new();
    let (url, _) = portal_auth(&s, &[]);
    browser
        .login(&s, &url, "anna.schulz", "Elbtalaue-Demo-2026!")
        .await;
    enrol_totp(&s, &browser).await;
    let (url, _) = portal_auth(&s, &[("acr_values", "urn:interkom:loa:substantial")]);
    let page = browser.get(&url).await.text().await.unwrap();
    for _ in 0..4 {
        assert_eq!(
            submit_otp(&s, &browser, &page, "123456").await.status(),
            401
        );
    }
    // The fifth wrong code ends the login request; nothing is issued.
    let res = submit_otp(&s, &browser, &page, "654321").await;
    assert_eq!(res.status(), 401);
    let res = submit_otp(&s, &browser, &page, "111111").await;
    assert_eq!(res.status(), 400, "the request is gone");
}

#[tokio::test]
async fn step_up_to_high_at_the_upstream_with_acr_values() {
    let (upstream, broker) = pair("idp-elbtalaue", "sg-elbtalaue", |_| {}).await;
    let browser = Browser::new();
    // Anna has an authenticator at her Kommune's IdP.
    let (url, _) = portal_auth(&upstream, &[]);
    browser
        .login(&upstream, &url, "anna.schulz", "Elbtalaue-Demo-2026!")
        .await;
    let (secret, _, _) = enrol_totp(&upstream, &browser).await;
    upstream.clock.advance(30);

    // The Einwohnermeldewesen is sehr_hoch: `high` with a second factor.
    let (url, verifier) = ewo_authorize_url(&broker, "e1");
    let page = browser.get(&url).await.text().await.unwrap();
    let res = choose(&browser, &broker, &page, "idp-elbtalaue").await;
    // The password at the upstream: `low`, so the broker asks again, now
    // with acr_values for a level it maps to `high`.
    let res = login_upstream(
        &browser,
        &upstream,
        &location(&res).unwrap(),
        "anna.schulz",
        "Elbtalaue-Demo-2026!",
    )
    .await;
    assert_eq!(res.status(), 303);
    let again = location(&res).unwrap();
    assert!(again.starts_with(&upstream.issuer), "{again}");
    assert!(
        again.contains("acr_values=urn%3Ainterkom%3Aloa%3Asubstantial"),
        "{again}"
    );
    // Sent to the upstream, the login takes no local factor instead.
    let res = submit_otp(&broker, &browser, &page, "123456").await;
    assert_eq!(res.status(), 400);
    // The upstream asks for its second factor.
    let res = browser.get(&again).await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    let res = submit_otp(
        &upstream,
        &browser,
        &page,
        &code(&secret, upstream.clock.now()),
    )
    .await;
    assert_eq!(res.status(), 303);
    let res = browser.get(&location(&res).unwrap()).await;
    assert_eq!(res.status(), 303);
    let q = redirect_params(&res);
    assert_eq!(q["state"], "e1", "{q:?}");
    let id = ewo_id_token(&broker, &q["code"], &verifier).await;
    assert_eq!(id["acr"], "urn:interkom:loa:high");
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(id["tenant"], "sg-elbtalaue");
}

// ---------------------------------------------------------------------
// A misbehaving upstream.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Good,
    BadSignature,
    WrongNonce,
    UnknownAcr,
    WrongAudience,
    Expired,
    Slow,
    Refuses,
    OtherIssuer,
    /// `acr` low, yet `amr` claims a second factor.
    OtpAtLow,
    /// No `auth_time` in the ID token.
    NoAuthTime,
}

struct Fake {
    issuer: String,
    mode: Mode,
    /// (kid, PKCS#8) signing now; the published set.
    key: (String, Vec<u8>),
    published: Vec<Value>,
    nonces: HashMap<String, String>,
    client_id: String,
    /// The last authorization request's parameters.
    last_request: HashMap<String, String>,
    /// Fuzzing: claims laid over the valid ones, or a whole raw token.
    overlay: Option<serde_json::Map<String, Value>>,
    raw_token: Option<String>,
    /// Takes the client secret only in the form (and says so).
    post_only: bool,
}

type FakeState = Arc<Mutex<Fake>>;

fn new_key(kid: &str) -> ((String, Vec<u8>), Value) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let pk = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&pk[1..33]), "y": URL_SAFE_NO_PAD.encode(&pk[33..65]),
    });
    ((kid.to_owned(), pkcs8.as_ref().to_vec()), jwk)
}

fn sign(key: &(String, Vec<u8>), claims: &Value) -> String {
    let rng = ring::rand::SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.1, &rng).unwrap();
    let header = json!({ "alg": "ES256", "typ": "JWT", "kid": key.0 });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = pair.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

async fn fake_discovery(State(st): State<FakeState>) -> Json<Value> {
    let (iss, post_only) = {
        let f = st.lock().unwrap();
        (f.issuer.clone(), f.post_only)
    };
    let methods = if post_only {
        json!(["client_secret_post"])
    } else {
        json!(["client_secret_basic", "client_secret_post"])
    };
    Json(json!({
        "token_endpoint_auth_methods_supported": methods,
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

async fn fake_jwks(State(st): State<FakeState>) -> Json<Value> {
    Json(json!({ "keys": st.lock().unwrap().published }))
}

async fn fake_authorize(
    State(st): State<FakeState>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let mut f = st.lock().unwrap();
    f.last_request = q.clone();
    let code = uuid::Uuid::new_v4().to_string();
    f.nonces.insert(code.clone(), q["nonce"].clone());
    let mut to = url::Url::parse(&q["redirect_uri"]).unwrap();
    {
        let mut p = to.query_pairs_mut();
        match f.mode {
            Mode::Refuses => p.append_pair("error", "access_denied"),
            _ => p.append_pair("code", &code),
        };
        p.append_pair("state", &q["state"]);
        if f.mode == Mode::OtherIssuer {
            p.append_pair("iss", "https://elsewhere.example");
        } else {
            p.append_pair("iss", &f.issuer);
        }
    }
    Redirect::to(to.as_str())
}

async fn fake_token(
    State(st): State<FakeState>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::response::Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
    // The client authenticates the way this provider takes it.
    let basic = headers
        .get("authorization")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("Basic "));
    let in_form = form.get("client_secret").map(String::as_str) == Some(BROKER_SECRET);
    let post_only = st.lock().unwrap().post_only;
    if (post_only && !in_form) || (!post_only && !basic) {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_client" })),
        )
            .into_response();
    }
    let mode = st.lock().unwrap().mode;
    if mode == Mode::Slow {
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
    let f = st.lock().unwrap();
    let nonce = f.nonces.get(&form["code"]).cloned().unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({
        "iss": f.issuer,
        "sub": "fake-subject-1",
        "aud": if mode == Mode::WrongAudience { "someone-else".to_owned() } else { f.client_id.clone() },
        "exp": if mode == Mode::Expired { now - 600 } else { now + 300 },
        "iat": now,
        "nonce": if mode == Mode::WrongNonce { "not-the-nonce".to_owned() } else { nonce },
        "acr": if mode == Mode::UnknownAcr { "urn:elsewhere:loa:gold" } else { "urn:interkom:loa:low" },
        "amr": if mode == Mode::OtpAtLow { json!(["pwd", "otp"]) } else { json!(["pwd"]) },
        "preferred_username": "pia.peters",
        "name": "Pia Peters",
    });
    let mut claims = claims;
    if mode != Mode::NoAuthTime {
        claims["auth_time"] = json!(now - 5);
    }
    if let Some(o) = &f.overlay {
        for (k, v) in o {
            claims[k] = v.clone();
        }
    }
    if let Some(raw) = &f.raw_token {
        return Json(json!({ "access_token": "opaque", "token_type": "Bearer", "id_token": raw }))
            .into_response();
    }
    let key = if mode == Mode::BadSignature {
        // Same kid as published, another key.
        let (k, _) = new_key(&f.key.0);
        k
    } else {
        f.key.clone()
    };
    Json(json!({
        "access_token": "opaque", "token_type": "Bearer", "expires_in": 300,
        "id_token": sign(&key, &claims),
    }))
    .into_response()
}

/// Starts the fake OP; returns its state.
async fn fake_op(client_id: &str) -> FakeState {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let (key, jwk) = new_key("k1");
    let st = Arc::new(Mutex::new(Fake {
        issuer,
        mode: Mode::Good,
        key,
        published: vec![jwk],
        nonces: HashMap::new(),
        client_id: client_id.to_owned(),
        last_request: HashMap::new(),
        overlay: None,
        raw_token: None,
        post_only: false,
    }));
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(fake_discovery))
        .route("/jwks", get(fake_jwks))
        .route("/authorize", get(fake_authorize))
        .route("/token", post(fake_token))
        .with_state(st.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    st
}

/// Starts a login at the broker through upstream `idp` and follows it to
/// the callback's answer.
async fn through(broker: &TestServer, idp: &str) -> (reqwest::Response, Browser) {
    let browser = Browser::new();
    let res = through_with(broker, &browser, &[("idp_hint", idp)]).await;
    (res, browser)
}

/// The same with a given browser and authorization parameters.
async fn through_with(
    broker: &TestServer,
    browser: &Browser,
    params: &[(&str, &str)],
) -> reqwest::Response {
    let (url, _) = portal_auth(broker, params);
    let res = browser.get(&url).await;
    if res.status() != 303 || !location(&res).unwrap().contains("/authorize") {
        return res;
    }
    let to = location(&res).unwrap();
    let res = browser.get(&to).await;
    assert_eq!(res.status(), 303, "the fake upstream answers at once");
    let back = location(&res).unwrap();
    browser.get(&back).await
}

#[tokio::test]
async fn every_bad_upstream_answer_ends_on_a_page_naming_the_idp() {
    let fake = fake_op(BROKER_CLIENT).await;
    let fake_issuer = fake.lock().unwrap().issuer.clone();
    // Nothing listens here.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let broker = TestServer::start_with(|fc| {
        fc.brokering.allow_loopback = true;
        let mut good = upstream_cfg("idp-gartow", "gartow", &fake_issuer);
        good.name = "Gemeinde Gartow".into();
        good.timeout_seconds = 2;
        fc.tokens.session_ttl = 86_400;
        let mut down = upstream_cfg("idp-down", "gartow", &format!("http://{closed}"));
        down.name = "Gemeinde Prezelle".into();
        fc.upstreams = vec![good, down];
    })
    .await;

    // Down: the page names the IdP, nothing else breaks.
    let (res, _) = through(&broker, "idp-down").await;
    assert_eq!(res.status(), 502);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("Gemeinde Prezelle") && page.contains("upstream_unreachable"),
        "{page}"
    );

    // A good answer works (and provisions the account).
    let (res, _) = through(&broker, "idp-gartow").await;
    assert_eq!(res.status(), 303, "{:?}", res.text().await);
    assert_eq!(redirect_params(&res)["state"], "st");

    for (mode, status, reason) in [
        (Mode::BadSignature, 502, "upstream_invalid_token"),
        (Mode::WrongNonce, 502, "upstream_wrong_nonce"),
        (Mode::UnknownAcr, 502, "upstream_unknown_acr"),
        (Mode::WrongAudience, 502, "upstream_invalid_token"),
        (Mode::Expired, 502, "upstream_invalid_token"),
        (Mode::Refuses, 403, "upstream_rejected"),
        (Mode::OtherIssuer, 502, "upstream_issuer_mismatch"),
    ] {
        fake.lock().unwrap().mode = mode;
        let (res, _) = through(&broker, "idp-gartow").await;
        assert_eq!(res.status(), status, "{mode:?}");
        let page = res.text().await.unwrap();
        assert!(page.contains("Gemeinde Gartow"), "{mode:?}: {page}");
        assert!(page.contains(reason), "{mode:?}: {page}");
        let failed = broker.audit("login_failed").await;
        assert_eq!(
            failed[0].reason.as_deref(),
            Some(reason),
            "{mode:?} audited"
        );
        let details: Value = serde_json::from_str(&failed[0].details).unwrap();
        assert_eq!(details["upstream"], "idp-gartow");
    }

    // Slow: the bounded timeout answers, not the upstream.
    fake.lock().unwrap().mode = Mode::Slow;
    let started = Instant::now();
    let (res, _) = through(&broker, "idp-gartow").await;
    assert_eq!(res.status(), 502);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(res.text().await.unwrap().contains("upstream_unreachable"));

    // Replay: the same answer a second time finds nothing.
    fake.lock().unwrap().mode = Mode::Good;
    let browser = Browser::new();
    let (url, _) = portal_auth(&broker, &[("idp_hint", "idp-gartow")]);
    let to = location(&browser.get(&url).await).unwrap();
    let back = location(&browser.get(&to).await).unwrap();
    assert_eq!(browser.get(&back).await.status(), 303);
    let res = browser.get(&back).await;
    assert_eq!(res.status(), 400);
    assert!(
        res.text().await.unwrap().contains("Gemeinde Gartow"),
        "named by its iss"
    );
    let replayed = broker.audit("login_failed").await;
    assert_eq!(
        replayed[0].reason.as_deref(),
        Some("upstream_response_unknown_or_replayed")
    );
    // An answer brought back by another browser belongs to no login there.
    let (url, _) = portal_auth(&broker, &[("idp_hint", "idp-gartow"), ("prompt", "login")]);
    let to = location(&browser.get(&url).await).unwrap();
    let back = location(&browser.get(&to).await).unwrap();
    let res = Browser::new().get(&back).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Gemeinde Gartow"));
    let expired = broker.audit("login_failed").await;
    assert_eq!(expired[0].reason.as_deref(), Some("upstream_login_expired"));

    // An upstream trusted for `low` does not vouch for its `otp`.
    fake.lock().unwrap().mode = Mode::OtpAtLow;
    let (res, _) = through(&broker, "idp-gartow").await;
    assert_eq!(res.status(), 303);
    let login = &broker.audit("login").await[0];
    let details: Value = serde_json::from_str(&login.details).unwrap();
    assert_eq!(details["amr"], json!(["pwd"]), "otp dropped");

    // Every login asks for `auth_time` (max_age); the client's
    // prompt=login travels on; an answer without auth_time is refused.
    fake.lock().unwrap().mode = Mode::Good;
    let b = Browser::new();
    let res = through_with(
        &broker,
        &b,
        &[("idp_hint", "idp-gartow"), ("prompt", "login")],
    )
    .await;
    assert_eq!(res.status(), 303);
    {
        let f = fake.lock().unwrap();
        assert_eq!(
            f.last_request.get("prompt").map(String::as_str),
            Some("login")
        );
        assert!(f.last_request.contains_key("max_age"));
    }
    fake.lock().unwrap().mode = Mode::NoAuthTime;
    let res = through_with(
        &broker,
        &b,
        &[("idp_hint", "idp-gartow"), ("prompt", "login")],
    )
    .await;
    assert_eq!(res.status(), 502);
    // Too old for the service: a fresh login at the upstream, which must
    // say when it happened.
    fake.lock().unwrap().mode = Mode::Good;
    let browser = Browser::new();
    assert_eq!(
        through_with(&broker, &browser, &[("idp_hint", "idp-gartow")])
            .await
            .status(),
        303
    );
    broker.clock.advance(13 * 3600);
    fake.lock().unwrap().mode = Mode::NoAuthTime;
    let res = through_with(&broker, &browser, &[]).await;
    assert_eq!(
        fake.lock()
            .unwrap()
            .last_request
            .get("prompt")
            .map(String::as_str),
        Some("login")
    );
    assert_eq!(res.status(), 502);
    assert!(res.text().await.unwrap().contains("upstream_invalid_token"));
    broker.clock.advance(-13 * 3600);
    fake.lock().unwrap().mode = Mode::Good;

    // A provider that takes the client secret only in the form.
    fake.lock().unwrap().post_only = true;
    broker
        .app
        .directory
        .put_upstream({
            let mut c = upstream_cfg("idp-gartow", "gartow", &fake_issuer);
            c.name = "Gemeinde Gartow".into();
            c
        })
        .await
        .unwrap();
    let (res, _) = through(&broker, "idp-gartow").await;
    assert_eq!(
        res.status(),
        303,
        "client_secret_post when that is all it takes"
    );
    fake.lock().unwrap().post_only = false;
    broker
        .app
        .directory
        .put_upstream({
            let mut c = upstream_cfg("idp-gartow", "gartow", &fake_issuer);
            c.name = "Gemeinde Gartow".into();
            c.timeout_seconds = 2;
            c
        })
        .await
        .unwrap();

    // Key rotation: a token signed with a key not seen yet is checked
    // against the upstream's keys fetched again.
    {
        let mut f = fake.lock().unwrap();
        let (key, jwk) = new_key("k2");
        f.key = key;
        f.published.push(jwk);
    }
    let (res, _) = through(&broker, "idp-gartow").await;
    assert_eq!(res.status(), 303, "rotated keys are fetched");
    // The ID token of that login is the broker's own, whatever the upstream.
    let user = broker
        .app
        .directory
        .find_user("pia.peters@idp-gartow")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.tenant, "gartow");

    // The id reused for another IdP (deleted, then configured anew): the
    // old links name nobody for it.
    fake.lock().unwrap().mode = Mode::Good;
    let other = fake_op(BROKER_CLIENT).await;
    let other_issuer = other.lock().unwrap().issuer.clone();
    assert!(broker
        .app
        .directory
        .delete_upstream("idp-gartow")
        .await
        .unwrap());
    let mut again = upstream_cfg("idp-gartow", "gartow", &other_issuer);
    again.name = "Gemeinde Gartow".into();
    broker.app.directory.put_upstream(again).await.unwrap();
    let (res, _) = through(&broker, "idp-gartow").await;
    assert_eq!(res.status(), 303);
    let old = user.id.clone();
    let newest = broker.audit("login").await;
    assert_ne!(
        newest[0].actor_subject.as_deref(),
        Some(old.as_str()),
        "the other IdP's pia.peters is another account"
    );
    assert_eq!(broker.audit("account_provisioned").await.len(), 2);
}

// ---------------------------------------------------------------------
// Administration of upstreams and second factors.

fn upstream_body(id: &str, tenant: &str, acr: Value, roles: Value) -> Value {
    json!({
        "id": id, "tenant": tenant, "name": "Stadt Hitzacker (Elbe)",
        "issuer": "https://login.hitzacker.example", "client_id": "interkom",
        "client_secret": "geheim-0123456789", "acr": acr, "roles": roles,
        "claims": { "groups": "groups" },
    })
}

#[tokio::test]
async fn upstreams_and_second_factor_resets_stay_in_the_subtree() {
    use reqwest::Method;
    let s = TestServer::start().await;
    let kreis = console_token(&s, ADMIN_USER, ADMIN_PASSWORD).await;
    let hitzacker = admin_account(
        &s,
        "hitzacker-elbe",
        "admin.hitzacker",
        &["admin", "sachbearbeitung"],
    )
    .await;
    let gartow = admin_account(&s, "sg-gartow", "admin.gartow", &["admin"]).await;
    let low = json!({ "urn:hitzacker:pwd": "low" });
    // One per refused request (the target's and the caller's tenant may
    // each have an event of it, with the request's correlation id).
    let refusals = || async {
        s.audit("admin_change")
            .await
            .into_iter()
            .filter(|e| e.outcome == "denied")
            .map(|e| e.correlation_id)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };

    // Hitzacker's administrator configures Hitzacker's IdP, trusted for `low`.
    let body = upstream_body(
        "idp-hitzacker",
        "hitzacker-elbe",
        low.clone(),
        json!({ "sb": "sachbearbeitung" }),
    );
    let (st, v) = admin(
        &s,
        Method::PUT,
        &hitzacker,
        "/upstreams/idp-hitzacker",
        Some(body),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["has_client_secret"], true);
    assert!(v.get("client_secret").is_none(), "never shown");
    // Trusting it above `low` is for the Kreis.
    let denied = refusals().await;
    let high = upstream_body(
        "idp-hitzacker",
        "hitzacker-elbe",
        json!({ "urn:hitzacker:eid": "high" }),
        json!({}),
    );
    let (st, _) = admin(
        &s,
        Method::PUT,
        &hitzacker,
        "/upstreams/idp-hitzacker",
        Some(high.clone()),
    )
    .await;
    assert_eq!(st, 403);
    // A role the administrator does not hold is not theirs to map.
    let body = upstream_body(
        "idp-hitzacker",
        "hitzacker-elbe",
        low.clone(),
        json!({ "x": "kommunalaufsicht" }),
    );
    let (st, _) = admin(
        &s,
        Method::PUT,
        &hitzacker,
        "/upstreams/idp-hitzacker",
        Some(body),
    )
    .await;
    assert_eq!(st, 403);
    // Another Samtgemeinde's administrator neither sees, moves nor deletes it.
    let (st, v) = admin(&s, Method::GET, &gartow, "/upstreams", None).await;
    assert_eq!((st, v["upstreams"].as_array().unwrap().len()), (200, 0));
    assert_eq!(
        admin(&s, Method::GET, &gartow, "/upstreams/idp-hitzacker", None)
            .await
            .0,
        403
    );
    let moved = upstream_body("idp-hitzacker", "sg-gartow", low.clone(), json!({}));
    assert_eq!(
        admin(
            &s,
            Method::PUT,
            &gartow,
            "/upstreams/idp-hitzacker",
            Some(moved)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        admin(
            &s,
            Method::DELETE,
            &gartow,
            "/upstreams/idp-hitzacker",
            None
        )
        .await
        .0,
        403
    );
    // Linking existing accounts and claiming domains are the Kreis's too.
    let mut link = upstream_body("idp-hitzacker", "hitzacker-elbe", low.clone(), json!({}));
    link["link_existing"] = json!(true);
    let (st, _) = admin(
        &s,
        Method::PUT,
        &hitzacker,
        "/upstreams/idp-hitzacker",
        Some(link),
    )
    .await;
    assert_eq!(st, 403);
    let mut domains = upstream_body("idp-hitzacker", "hitzacker-elbe", low.clone(), json!({}));
    domains["domains"] = json!(["luechow-dannenberg.example"]);
    let (st, _) = admin(
        &s,
        Method::PUT,
        &hitzacker,
        "/upstreams/idp-hitzacker",
        Some(domains),
    )
    .await;
    assert_eq!(st, 403);
    assert_eq!(refusals().await, denied + 7, "every refusal audited");
    // The Kreis may trust it for `high`; the secret stays when not sent.
    let mut high = high;
    high.as_object_mut().unwrap().remove("client_secret");
    let (st, v) = admin(
        &s,
        Method::PUT,
        &kreis,
        "/upstreams/idp-hitzacker",
        Some(high),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["has_client_secret"], true);
    assert_eq!(v["acr"]["urn:hitzacker:eid"], "high");
    // Bad input is a problem, not a change.
    let mut bad = upstream_body("idp-other", "hitzacker-elbe", low.clone(), json!({}));
    assert_eq!(
        admin(
            &s,
            Method::PUT,
            &kreis,
            "/upstreams/idp-hitzacker",
            Some(bad.clone())
        )
        .await
        .0,
        400
    );
    bad["issuer"] = json!("http://login.hitzacker.example");
    assert_eq!(
        admin(
            &s,
            Method::PUT,
            &kreis,
            "/upstreams/idp-other",
            Some(bad.clone())
        )
        .await
        .0,
        400
    );
    // Never this machine or an internal network (SSRF).
    for internal in [
        "https://169.254.169.254",
        "https://10.0.0.8",
        "https://127.0.0.1",
    ] {
        bad["issuer"] = json!(internal);
        let (st, _) = admin(
            &s,
            Method::PUT,
            &kreis,
            "/upstreams/idp-other",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(st, 400, "{internal}");
    }
    bad["issuer"] = json!("https://login.hitzacker.example");
    bad["surprise"] = json!(1);
    assert_eq!(
        admin(&s, Method::PUT, &kreis, "/upstreams/idp-other", Some(bad))
            .await
            .0,
        400
    );
    // The login page offers it.
    let (url, _) = portal_auth(&s, &[]);
    let page = Browser::new().get(&url).await.text().await.unwrap();
    assert!(page.contains("Stadt Hitzacker (Elbe)"));
    assert_eq!(
        admin(
            &s,
            Method::DELETE,
            &hitzacker,
            "/upstreams/idp-hitzacker",
            None
        )
        .await
        .0,
        204
    );
    let page = Browser::new().get(&url).await.text().await.unwrap();
    assert!(!page.contains("Stadt Hitzacker (Elbe)"));

    // jan.meyer lost his phone.
    let browser = Browser::new();
    let (url, _) = portal_auth(&s, &[]);
    browser.login(&s, &url, CLERK_USER, CLERK_PASSWORD).await;
    enrol_totp(&s, &browser).await;
    let jan = s
        .app
        .directory
        .find_user(CLERK_USER)
        .await
        .unwrap()
        .unwrap();
    let path = format!("/users/{}/second-factor-reset", jan.id);
    assert_eq!(
        admin(&s, Method::POST, &gartow, &path, None).await.0,
        403,
        "not Gartow's"
    );
    let (st, v) = admin(&s, Method::POST, &hitzacker, &path, None).await;
    assert_eq!((st, &v["removed"]), (200, &json!(true)));
    assert!(!s.app.directory.has_second_factor(&jan.id).await.unwrap());
    // His sessions ended: the browser must log in again.
    let res = browser.get(&url).await;
    assert_eq!(res.status(), 200, "the login form, not single sign-on");
    // Nobody resets their own.
    let me = s
        .app
        .directory
        .find_user("admin.hitzacker")
        .await
        .unwrap()
        .unwrap();
    let path = format!("/users/{}/second-factor-reset", me.id);
    assert_eq!(
        admin(&s, Method::POST, &hitzacker, &path, None).await.0,
        403
    );
}

// ---------------------------------------------------------------------
// Fuzzing what an upstream sends back.

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn claim_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,24}".prop_map(Value::from),
        prop::sample::select(vec![
            "urn:interkom:loa:low",
            "urn:interkom:loa:substantial",
            "urn:interkom:loa:high",
            "pwd",
            "otp",
            "hwk",
            "kreis.admin",
            "jan.meyer",
            "sachbearbeitung",
            "admin",
            "interkom-broker",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// ID tokens of any shape — validly signed with any claims overlaid, or any
/// string at all — and answers with any parameters: the broker answers
/// with a redirect to the client, a page (4xx) or 502 naming the upstream,
/// never 500 or a redirect anywhere else, and every login that succeeds is
/// inside the upstream's subtree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_answers_of_any_shape_get_an_answer_not_a_crash() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let fake = fake_op(BROKER_CLIENT).await;
    let fake_issuer = fake.lock().unwrap().issuer.clone();
    let broker = TestServer::start_with(|fc| {
        fc.brokering.allow_loopback = true;
        let mut cfg = upstream_cfg("idp-gartow", "gartow", &fake_issuer);
        cfg.link_existing = true;
        fc.upstreams = vec![cfg];
    })
    .await;
    let keys = [
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "nonce",
        "acr",
        "amr",
        "auth_time",
        "azp",
        "preferred_username",
        "name",
        "email",
        "roles",
    ];
    let overlay = proptest::collection::btree_map(
        proptest::sample::select(keys.to_vec()),
        claim_value(),
        0..4,
    );
    let raw = prop_oneof![
        3 => Just(None),
        1 => "[ -~]{0,64}".prop_map(Some),
        1 => "[A-Za-z0-9_-]{1,20}\\.[A-Za-z0-9_-]{1,40}\\.[A-Za-z0-9_-]{0,40}".prop_map(Some),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(overlay, raw), |(overlay, raw)| {
            block_on(async {
                {
                    let mut f = fake.lock().unwrap();
                    f.overlay = Some(
                        overlay
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect(),
                    );
                    f.raw_token = raw;
                }
                let browser = Browser::new();
                let (url, _) = portal_auth(&broker, &[("idp_hint", "idp-gartow")]);
                let res = browser.get(&url).await;
                prop_assert_eq!(res.status().as_u16(), 303);
                let to = location(&res).unwrap();
                let back = location(&browser.get(&to).await).unwrap();
                let res = browser.get(&back).await;
                let status = res.status().as_u16();
                if let Some(loc) = location(&res) {
                    prop_assert!(loc.starts_with(PORTAL_REDIRECT), "redirect to {}", loc);
                }
                let body = res.text().await.unwrap_or_default();
                prop_assert!(
                    matches!(status, 303 | 400 | 403 | 502),
                    "{}: {}",
                    status,
                    body
                );
                if status != 303 {
                    prop_assert!(body.contains("Anmeldung idp-gartow"), "{}", body);
                }
                Ok::<(), TestCaseError>(())
            })
        })
        .unwrap();
    // Whoever got in is Gartow's: never the Kreis administrator or a clerk
    // of another Gemeinde, whatever the claims said.
    for e in broker.audit("login").await {
        let tenant = e.actor_tenant.clone().unwrap_or_default();
        assert_eq!(tenant, "gartow", "{e:?}");
    }
}

/// Logs `user` in at the broker through the upstream `idp`; returns the
/// portal's ID token claims.
async fn login_through(
    broker: &TestServer,
    upstream: &TestServer,
    idp: &str,
    user: &str,
    password: &str,
) -> Value {
    let browser = Browser::new();
    let (url, verifier) = portal_auth(broker, &[]);
    let page = browser.get(&url).await.text().await.unwrap();
    let res = choose(&browser, broker, &page, idp).await;
    let to = location(&res).unwrap();
    let res = login_upstream(&browser, upstream, &to, user, password).await;
    assert_eq!(res.status(), 303, "{:?}", res.text().await);
    let back = redirect_params(&res);
    portal_id_token(broker, &back["code"], &verifier).await
}

/// Finding 1 of the security round: a Gemeinde administrator mapped an
/// upstream group to `admin`, applied at once, and every account the
/// upstream put in that group became an administrator at its first login,
/// unaudited. The mapping is now a four-eyes proposal, and each role a
/// login gives or takes is its own audit event.
#[tokio::test]
async fn finding_1_an_upstream_mapping_to_admin_needs_a_second_administrator() {
    use reqwest::Method;
    // Trusted for `low`, with no domains: Hitzacker's own to configure.
    let (upstream, broker) = pair("idp-hitzacker", "hitzacker-elbe", |cfg| {
        cfg.acr.retain(|_, loa| *loa == Loa::Low);
        cfg.domains.clear();
    })
    .await;
    // At the Kommune's IdP: an IT lead whose `roles` claim says admin.
    upstream
        .app
        .directory
        .add_user(interkom_directory::NewUser {
            tenant: "hitzacker-elbe".into(),
            username: "it.leitung".into(),
            password: "IT-Leitung-Passwort-2026!".to_owned().into(),
            name: None,
            email: None,
            roles: vec!["admin".into(), "sachbearbeitung".into()],
        })
        .await
        .unwrap();
    let hitzacker = admin_account(
        &broker,
        "hitzacker-elbe",
        "admin.hitzacker",
        &["admin", "sachbearbeitung", "meldebehoerde"],
    )
    .await;
    let second = admin_account(
        &broker,
        "hitzacker-elbe",
        "admin2.hitzacker",
        &["admin", "sachbearbeitung", "meldebehoerde"],
    )
    .await;
    let (_, current) = admin(
        &broker,
        Method::GET,
        &hitzacker,
        "/upstreams/idp-hitzacker",
        None,
    )
    .await;
    let mut body = current.clone();
    body["roles"]["admin"] = json!("admin");
    body.as_object_mut().unwrap().remove("has_client_secret");

    // With a secret in it, the request is refused: a proposal holds none.
    let mut with_secret = body.clone();
    with_secret["client_secret"] = json!("neues-geheimnis-0123456789");
    let (st, v) = admin(
        &broker,
        Method::PUT,
        &hitzacker,
        "/upstreams/idp-hitzacker",
        Some(with_secret),
    )
    .await;
    assert_eq!(st, 400, "{v}");

    // Without: proposed, not applied.
    let (st, v) = admin(
        &broker,
        Method::PUT,
        &hitzacker,
        "/upstreams/idp-hitzacker",
        Some(body),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["requires_approval"], true);
    let proposal = v["proposal"].as_str().unwrap().to_owned();
    let (_, now) = admin(
        &broker,
        Method::GET,
        &hitzacker,
        "/upstreams/idp-hitzacker",
        None,
    )
    .await;
    assert!(now["roles"].get("admin").is_none(), "{now}");

    // Until it is approved, the upstream's admins are no admins here.
    let id = login_through(
        &broker,
        &upstream,
        "idp-hitzacker",
        "it.leitung",
        "IT-Leitung-Passwort-2026!",
    )
    .await;
    let sub = id["sub"].as_str().unwrap().to_owned();
    let roles = |s: &TestServer, sub: String| {
        let pool = s.app.pool.clone();
        async move {
            interkom_policy::roles::roles_in(&pool, &sub, "hitzacker-elbe")
                .await
                .unwrap()
        }
    };
    assert_eq!(
        roles(&broker, sub.clone()).await,
        vec!["sachbearbeitung".to_owned()]
    );
    let changed = broker.audit("role_changed").await;
    assert_eq!(changed.len(), 1, "the role the first login gave");
    let d: Value = serde_json::from_str(&changed[0].details).unwrap();
    assert_eq!(
        (
            d["role"].as_str(),
            d["tenant"].as_str(),
            d["change"].as_str(),
            d["source"].as_str()
        ),
        (
            Some("sachbearbeitung"),
            Some("hitzacker-elbe"),
            Some("assigned"),
            Some("upstream:idp-hitzacker")
        )
    );
    assert_eq!(changed[0].actor_subject.as_deref(), Some(sub.as_str()));
    assert_eq!(changed[0].tenant.as_deref(), Some("hitzacker-elbe"));

    // The proposer cannot approve it; a second administrator can.
    let approve = format!("/proposals/{proposal}/approve");
    let (st, _) = admin(&broker, Method::POST, &hitzacker, &approve, Some(json!({}))).await;
    assert_eq!(st, 403);
    let (st, v) = admin(&broker, Method::POST, &second, &approve, Some(json!({}))).await;
    assert_eq!(st, 200, "{v}");
    let (_, now) = admin(
        &broker,
        Method::GET,
        &hitzacker,
        "/upstreams/idp-hitzacker",
        None,
    )
    .await;
    assert_eq!(now["roles"]["admin"], "admin");
    assert_eq!(now["has_client_secret"], true, "the stored secret stays");

    // Now the mapping applies, and the new role is audited by itself.
    login_through(
        &broker,
        &upstream,
        "idp-hitzacker",
        "it.leitung",
        "IT-Leitung-Passwort-2026!",
    )
    .await;
    let mut held = roles(&broker, sub.clone()).await;
    held.sort();
    assert_eq!(held, vec!["admin".to_owned(), "sachbearbeitung".to_owned()]);
    let changed = broker.audit("role_changed").await;
    assert_eq!(changed.len(), 2);
    let d: Value = serde_json::from_str(&changed[0].details).unwrap();
    assert_eq!(
        (d["role"].as_str(), d["change"].as_str()),
        (Some("admin"), Some("assigned"))
    );
}
