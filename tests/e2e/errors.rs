//! Every error path of the authorization and token endpoints, including the
//! negative cases of RFC 9700 (OAuth 2.0 Security BCP).

use serde_json::Value;

use crate::common::*;

fn base<'a>(client: &'a str, redirect: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect),
        ("scope", "openid"),
        ("state", "xyz"),
    ]
}

/// Expects an HTML error page and no redirect.
async fn expect_page(res: reqwest::Response, status: u16) -> String {
    assert_eq!(res.status().as_u16(), status);
    assert!(location(&res).is_none(), "no redirect to an unverified URI");
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    res.text().await.unwrap()
}

/// Expects an error redirect to the registered URI with state and iss.
fn expect_redirect_error(s: &TestServer, res: &reqwest::Response, redirect: &str, error: &str) {
    assert_eq!(
        res.status(),
        303,
        "error for {error} goes back to the client"
    );
    let loc = location(res).unwrap();
    assert!(loc.starts_with(redirect), "{loc}");
    let q = redirect_params(res);
    assert_eq!(q["error"], error, "{loc}");
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["iss"], s.issuer);
    assert!(!q.contains_key("code"));
}

#[tokio::test]
async fn unverified_client_or_redirect_uri_gets_an_error_page() {
    let s = TestServer::start().await;
    let b = Browser::new();
    expect_page(
        b.get(&authorize_url(&s, &base("no-such-client", PORTAL_REDIRECT)))
            .await,
        400,
    )
    .await;
    let mut p = base(PORTAL, PORTAL_REDIRECT);
    p.retain(|(k, _)| *k != "client_id");
    expect_page(b.get(&authorize_url(&s, &p)).await, 400).await;
    let mut p = base(PORTAL, PORTAL_REDIRECT);
    p.retain(|(k, _)| *k != "redirect_uri");
    expect_page(b.get(&authorize_url(&s, &p)).await, 400).await;
    for bad in [
        "http://LOCALHOST:9000/callback",
        "http://localhost:9000/Callback",
        "http://localhost:9000/callback/",
        "http://localhost:9000/callback/more",
        "http://localhost:9000/callback?x=1",
        "http://localhost:9000/callback#frag",
        "http://localhost:9002/callback",
        "https://evil.example/callback",
    ] {
        let html = expect_page(b.get(&authorize_url(&s, &base(PORTAL, bad))).await, 400).await;
        assert!(html.contains("nicht registriert"), "{bad}");
    }
    // Repeated client_id: a page as well.
    let mut p = base(PORTAL, PORTAL_REDIRECT);
    p.push(("client_id", RATSINFO));
    expect_page(b.get(&authorize_url(&s, &p)).await, 400).await;
    // A malformed query string.
    expect_page(b.get(&s.url("/authorize?%ZZ=%%%")).await, 400).await;
}

#[tokio::test]
async fn authorization_request_errors_go_back_to_the_client() {
    let s = TestServer::start().await;
    let b = Browser::new();
    let (_, challenge) = pkce();
    let cases: Vec<(Vec<(&str, &str)>, &str, &str, &str)> = vec![
        // Public client without PKCE.
        (vec![], RATSINFO, RATSINFO_REDIRECT, "invalid_request"),
        (
            vec![
                ("code_challenge", &challenge),
                ("code_challenge_method", "plain"),
            ],
            RATSINFO,
            RATSINFO_REDIRECT,
            "invalid_request",
        ),
        (
            vec![("code_challenge", &challenge)],
            RATSINFO,
            RATSINFO_REDIRECT,
            "invalid_request",
        ),
        (
            vec![
                ("code_challenge", "short"),
                ("code_challenge_method", "S256"),
            ],
            RATSINFO,
            RATSINFO_REDIRECT,
            "invalid_request",
        ),
        (
            vec![("code_challenge_method", "S256")],
            PORTAL,
            PORTAL_REDIRECT,
            "invalid_request",
        ),
        (
            vec![("scope", "openid admin")],
            PORTAL,
            PORTAL_REDIRECT,
            "invalid_scope",
        ),
        (
            vec![("prompt", "none login")],
            PORTAL,
            PORTAL_REDIRECT,
            "invalid_request",
        ),
        (
            vec![("prompt", "bogus")],
            PORTAL,
            PORTAL_REDIRECT,
            "invalid_request",
        ),
        (
            vec![("max_age", "-1")],
            PORTAL,
            PORTAL_REDIRECT,
            "invalid_request",
        ),
        (
            vec![("request", "eyJ.x.y")],
            PORTAL,
            PORTAL_REDIRECT,
            "request_not_supported",
        ),
        (
            vec![("request_uri", "https://x/r")],
            PORTAL,
            PORTAL_REDIRECT,
            "request_uri_not_supported",
        ),
        (
            vec![("response_mode", "fragment")],
            PORTAL,
            PORTAL_REDIRECT,
            "invalid_request",
        ),
        (
            vec![("nonce", "a"), ("nonce", "b")],
            PORTAL,
            PORTAL_REDIRECT,
            "invalid_request",
        ),
    ];
    for (extra, client, redirect, error) in cases {
        let mut p = base(client, redirect);
        // Later pairs win over the base ones of the same name.
        p.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k) || *k == "nonce");
        p.extend(extra.iter().cloned());
        let res = b.get(&authorize_url(&s, &p)).await;
        expect_redirect_error(&s, &res, redirect, error);
    }
    // response_type token / id_token (implicit) and missing.
    for rt in ["token", "id_token", "code token"] {
        let mut p = base(PORTAL, PORTAL_REDIRECT);
        p[0] = ("response_type", rt);
        expect_redirect_error(
            &s,
            &b.get(&authorize_url(&s, &p)).await,
            PORTAL_REDIRECT,
            "unsupported_response_type",
        );
    }
    let mut p = base(PORTAL, PORTAL_REDIRECT);
    p.remove(0);
    expect_redirect_error(
        &s,
        &b.get(&authorize_url(&s, &p)).await,
        PORTAL_REDIRECT,
        "invalid_request",
    );
}

#[tokio::test]
async fn client_without_the_code_grant_is_unauthorized() {
    let s = TestServer::start().await;
    s.app
        .directory
        .register_client(interkom_directory::ClientSpec {
            id: "batch-job".into(),
            tenant: "gorleben".into(),
            name: "Batch".into(),
            redirect_uris: vec!["http://127.0.0.1:9200/cb".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![interkom_directory::GrantType::ClientCredentials],
            scopes: vec!["openid".into()],
            auth_method: interkom_directory::AuthMethod::ClientSecretBasic,
            secret: Some("batch-job-secret-0123456789abcdefghijklmnop".into()),
            jwks: None,
            id_token_alg: interkom_gateway::Alg::RS256,
            backchannel_logout_uri: None,
            first_party: true,
            resource_server: false,
        })
        .await
        .unwrap();
    let res = Browser::new()
        .get(&authorize_url(
            &s,
            &base("batch-job", "http://127.0.0.1:9200/cb"),
        ))
        .await;
    expect_redirect_error(&s, &res, "http://127.0.0.1:9200/cb", "unauthorized_client");
    // The portal may not use client_credentials.
    let res = s
        .post_form(
            "/token",
            Some((PORTAL, PORTAL_SECRET)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    expect_oauth_error(res, 400, "unauthorized_client").await;
    // Nor may a public client.
    let res = s
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", RATSINFO),
            ],
        )
        .await;
    expect_oauth_error(res, 400, "unauthorized_client").await;
}

/// Logs in and returns (code, verifier) for the portal, with PKCE.
async fn portal_code(s: &TestServer) -> (String, String) {
    let (verifier, challenge) = pkce();
    let mut p = base(PORTAL, PORTAL_REDIRECT);
    p.push(("code_challenge", &challenge));
    p.push(("code_challenge_method", "S256"));
    let q = Browser::new()
        .login(s, &authorize_url(s, &p), ADMIN_USER, ADMIN_PASSWORD)
        .await;
    (q["code"].clone(), verifier)
}

async fn redeem(
    s: &TestServer,
    auth: Option<(&str, &str)>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![("grant_type", "authorization_code")];
    form.extend_from_slice(extra);
    s.post_form("/token", auth, &form).await
}

#[tokio::test]
async fn code_replay_revokes_what_was_issued_from_it() {
    let s = TestServer::start().await;
    let (code, verifier) = portal_code(&s).await;
    let args = [
        ("code", code.as_str()),
        ("redirect_uri", PORTAL_REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let res = redeem(&s, Some((PORTAL, PORTAL_SECRET)), &args).await;
    assert_eq!(res.status(), 200);
    let t: Value = res.json().await.unwrap();
    assert_eq!(
        introspect(&s, t["access_token"].as_str().unwrap()).await["active"],
        true
    );
    let res = redeem(&s, Some((PORTAL, PORTAL_SECRET)), &args).await;
    expect_oauth_error(res, 400, "invalid_grant").await;
    assert_eq!(
        introspect(&s, t["access_token"].as_str().unwrap()).await["active"],
        false
    );
    let res = portal_refresh(&s, t["refresh_token"].as_str().unwrap()).await;
    expect_oauth_error(res, 400, "invalid_grant").await;
    assert_eq!(s.audit("code_replay_detected").await.len(), 1);
}

#[tokio::test]
async fn code_is_bound_to_client_redirect_uri_and_verifier() {
    let s = TestServer::start().await;
    // Another client.
    let (code, verifier) = portal_code(&s).await;
    let res = redeem(
        &s,
        Some((KFZ, KFZ_SECRET)),
        &[
            ("code", &code),
            ("redirect_uri", PORTAL_REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    // kfz-backend may not use the code grant at all; a public client that may:
    expect_oauth_error(res, 400, "unauthorized_client").await;
    let res = redeem(
        &s,
        None,
        &[
            ("client_id", RATSINFO),
            ("code", &code),
            ("redirect_uri", RATSINFO_REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    expect_oauth_error(res, 400, "invalid_grant").await;
    // Another redirect_uri.
    let (code, verifier) = portal_code(&s).await;
    let res = redeem(
        &s,
        Some((PORTAL, PORTAL_SECRET)),
        &[
            ("code", &code),
            ("redirect_uri", "http://localhost:9000/other"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    expect_oauth_error(res, 400, "invalid_grant").await;
    // Wrong verifier, missing verifier, malformed verifier.
    for v in [Some("x".repeat(43)), None, Some("short".into())] {
        let (code, _) = portal_code(&s).await;
        let mut a = vec![("code", code.as_str()), ("redirect_uri", PORTAL_REDIRECT)];
        if let Some(v) = &v {
            a.push(("code_verifier", v));
        }
        expect_oauth_error(
            redeem(&s, Some((PORTAL, PORTAL_SECRET)), &a).await,
            400,
            "invalid_grant",
        )
        .await;
    }
    // A verifier for a code issued without a challenge (PKCE downgrade).
    let q = Browser::new()
        .login(
            &s,
            &authorize_url(&s, &base(PORTAL, PORTAL_REDIRECT)),
            ADMIN_USER,
            ADMIN_PASSWORD,
        )
        .await;
    let (v, _) = pkce();
    let res = redeem(
        &s,
        Some((PORTAL, PORTAL_SECRET)),
        &[
            ("code", &q["code"]),
            ("redirect_uri", PORTAL_REDIRECT),
            ("code_verifier", &v),
        ],
    )
    .await;
    expect_oauth_error(res, 400, "invalid_grant").await;
    // Unknown code; missing code.
    let res = redeem(
        &s,
        Some((PORTAL, PORTAL_SECRET)),
        &[("code", "nope"), ("redirect_uri", PORTAL_REDIRECT)],
    )
    .await;
    expect_oauth_error(res, 400, "invalid_grant").await;
    let res = redeem(
        &s,
        Some((PORTAL, PORTAL_SECRET)),
        &[("redirect_uri", PORTAL_REDIRECT)],
    )
    .await;
    expect_oauth_error(res, 400, "invalid_request").await;
}

#[tokio::test]
async fn expired_code_is_refused() {
    let s = TestServer::start().await;
    let (code, verifier) = portal_code(&s).await;
    s.clock.advance(61);
    let res = redeem(
        &s,
        Some((PORTAL, PORTAL_SECRET)),
        &[
            ("code", &code),
            ("redirect_uri", PORTAL_REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    expect_oauth_error(res, 400, "invalid_grant").await;
}

#[tokio::test]
async fn token_endpoint_client_authentication_and_request_errors() {
    let s = TestServer::start().await;
    let cc = [("grant_type", "client_credentials")];
    for auth in [
        (KFZ, "wrong-secret"),
        ("no-such-client", KFZ_SECRET),
        (KFZ, ""),
    ] {
        let res = s.post_form("/token", Some(auth), &cc).await;
        assert!(res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic"));
        expect_oauth_error(res, 401, "invalid_client").await;
    }
    // client_secret_post works, and a wrong one fails the same way.
    let res = s
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", KFZ),
                ("client_secret", KFZ_SECRET),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = s
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", KFZ),
                ("client_secret", "nope"),
            ],
        )
        .await;
    expect_oauth_error(res, 401, "invalid_client").await;
    // No authentication at all.
    expect_oauth_error(
        s.post_form("/token", None, &cc).await,
        401,
        "invalid_client",
    )
    .await;
    // Two methods at once.
    let res = s
        .post_form(
            "/token",
            Some((KFZ, KFZ_SECRET)),
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", KFZ_SECRET),
            ],
        )
        .await;
    expect_oauth_error(res, 400, "invalid_request").await;
    // Malformed Basic header.
    let res = TestServer::http()
        .post(s.url("/token"))
        .header("authorization", "Basic !!!notbase64")
        .form(&cc)
        .send()
        .await
        .unwrap();
    expect_oauth_error(res, 401, "invalid_client").await;
    // Grant types.
    let res = s
        .post_form(
            "/token",
            Some((PORTAL, PORTAL_SECRET)),
            &[
                ("grant_type", "password"),
                ("username", "a"),
                ("password", "b"),
            ],
        )
        .await;
    expect_oauth_error(res, 400, "unsupported_grant_type").await;
    let res = s
        .post_form("/token", Some((KFZ, KFZ_SECRET)), &[("scope", "roles")])
        .await;
    expect_oauth_error(res, 400, "invalid_request").await;
    let res = s
        .post_form(
            "/token",
            Some((KFZ, KFZ_SECRET)),
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
        )
        .await;
    expect_oauth_error(res, 400, "invalid_request").await;
    // Scopes the client may not have.
    for scope in ["openid", "admin", "profile"] {
        let res = s
            .post_form(
                "/token",
                Some((KFZ, KFZ_SECRET)),
                &[("grant_type", "client_credentials"), ("scope", scope)],
            )
            .await;
        expect_oauth_error(res, 400, "invalid_scope").await;
    }
    // Wrong content type.
    let res = TestServer::http()
        .post(s.url("/token"))
        .basic_auth(KFZ, Some(KFZ_SECRET))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    expect_oauth_error(res, 400, "invalid_request").await;
    // Introspection needs an authenticated, confidential client.
    let at = cc_token(&s).await;
    let res = s.post_form("/introspect", None, &[("token", &at)]).await;
    expect_oauth_error(res, 401, "invalid_client").await;
    let res = s
        .post_form(
            "/introspect",
            None,
            &[("token", &at), ("client_id", RATSINFO)],
        )
        .await;
    expect_oauth_error(res, 401, "invalid_client").await;
    let res = s
        .post_form("/revoke", Some((KFZ, "wrong")), &[("token", &at)])
        .await;
    expect_oauth_error(res, 401, "invalid_client").await;
    let res = s.post_form("/revoke", Some((KFZ, KFZ_SECRET)), &[]).await;
    expect_oauth_error(res, 400, "invalid_request").await;
}

#[tokio::test]
async fn login_form_without_valid_csrf_binding_creates_no_session() {
    let s = TestServer::start().await;
    let b = Browser::new();
    let form = b
        .open_login(&s, &authorize_url(&s, &base(PORTAL, PORTAL_REDIRECT)))
        .await;
    let no_session = |res: &reqwest::Response| {
        res.headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().contains("interkom_session="))
    };
    // Wrong token.
    let mut f = form.fields.clone();
    f.insert("csrf_token".into(), "forged".into());
    f.insert("username".into(), ADMIN_USER.into());
    f.insert("password".into(), ADMIN_PASSWORD.into());
    let res = b.http.post(&form.action).form(&f).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(no_session(&res));
    // No token.
    f.remove("csrf_token");
    let res = b.http.post(&form.action).form(&f).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(no_session(&res));
    // The right token from another browser (no binding cookie there).
    let other = Browser::new();
    let mut f = form.fields.clone();
    f.insert("username".into(), ADMIN_USER.into());
    f.insert("password".into(), ADMIN_PASSWORD.into());
    let res = other.http.post(&form.action).form(&f).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(no_session(&res));
    // The genuine submission: 303, never 307.
    let res = b.submit(&form, ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(res.status(), 303);
    assert!(!no_session(&res));
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
}

/// Malformed input of any kind: a 4xx, never a 5xx.
#[tokio::test]
async fn garbage_never_causes_a_server_error() {
    use rand::{Rng, SeedableRng};
    let s = TestServer::start().await;
    let http = TestServer::http();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9700);
    let endpoints = [
        "/authorize",
        "/login",
        "/token",
        "/introspect",
        "/revoke",
        "/userinfo",
        "/logout",
    ];
    for round in 0..40 {
        let len = rng.gen_range(0..300);
        let body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let query: String = (0..rng.gen_range(0..80))
            .map(|_| *b"=&%+;azAZ09-._~\\\"'<>".get(rng.gen_range(0..20)).unwrap() as char)
            .collect();
        for ep in endpoints {
            let url = format!("{}?{}", s.url(ep), query);
            let ct = if round % 2 == 0 {
                "application/x-www-form-urlencoded"
            } else {
                "text/plain"
            };
            let res = http
                .post(&url)
                .header("content-type", ct)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert!(res.status().as_u16() < 500, "POST {ep} → {}", res.status());
            let res = http.get(&url).send().await.unwrap();
            assert!(res.status().as_u16() < 500, "GET {ep} → {}", res.status());
        }
    }
    // Oversize bodies are refused.
    let res = http
        .post(s.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    // Huge parameter values still get an OAuth error.
    let big = "x".repeat(60_000);
    let res = s
        .post_form("/token", Some((KFZ, KFZ_SECRET)), &[("grant_type", &big)])
        .await;
    expect_oauth_error(res, 400, "unsupported_grant_type").await;
}
