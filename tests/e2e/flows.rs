//! The authorization-code flow with PKCE, single sign-on, prompt and
//! max_age, logout, driven by the `openidconnect` crate as relying party.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreGenderClaim, CoreIdTokenClaims, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, Scope, TokenResponse,
};
use serde_json::Value;

use crate::common::*;

#[tokio::test]
async fn discovery_describes_every_endpoint() {
    let s = TestServer::start().await;
    let meta = s.metadata().await;
    assert_eq!(meta.issuer().as_str(), s.issuer);
    let raw: Value = TestServer::http()
        .get(s.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (k, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks"),
        ("introspection_endpoint", "/introspect"),
        ("revocation_endpoint", "/revoke"),
        ("end_session_endpoint", "/logout"),
    ] {
        assert_eq!(raw[k], s.url(path), "{k}");
    }
    assert_eq!(
        raw["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(raw["response_types_supported"], serde_json::json!(["code"]));
    let algs = raw["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algs.contains(&"RS256".into()));
    assert_eq!(raw["authorization_response_iss_parameter_supported"], true);
    // Every key in the JWKS is usable by the RP library.
    let jwks: Value = TestServer::http()
        .get(s.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    for alg in ["RS256", "ES256", "EdDSA"] {
        assert!(kinds.contains(&alg), "{alg} key published");
    }
    assert!(!meta.jwks().keys().is_empty());
}

#[tokio::test]
async fn code_flow_with_pkce_issues_verified_tokens() {
    let s = TestServer::start().await;
    let rp = s.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_REDIRECT).await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let browser = Browser::new();
    let q = browser
        .login(&s, url.as_str(), ADMIN_USER, ADMIN_PASSWORD)
        .await;
    assert_eq!(q["state"], *state.secret());
    assert_eq!(
        q["iss"], s.issuer,
        "RFC 9207 iss in the authorization response"
    );
    let http = TestServer::http();
    let tokens = rp
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = tokens.id_token().expect("an ID token");
    let claims: &CoreIdTokenClaims = id_token.claims(&rp.id_token_verifier(), &nonce).unwrap();
    assert_eq!(
        claims.auth_context_ref(),
        Some(&AuthenticationContextClass::new(
            "urn:interkom:loa:low".into()
        ))
    );
    assert!(claims.auth_time().is_some());
    assert_eq!(claims.auth_method_refs().unwrap()[0].as_str(), "pwd");
    assert_eq!(claims.preferred_username().unwrap().as_str(), ADMIN_USER);
    // interkom's own claims, after the library verified the signature.
    let raw = jwt_payload(&id_token.to_string());
    assert_eq!(raw["tenant"], "lk-luechow-dannenberg");
    assert_eq!(
        raw["tenant_path"],
        serde_json::json!(["lk-luechow-dannenberg"])
    );
    assert_eq!(raw["level"], "kreis");
    // The roles the policy gives for this client's resource: the portal is
    // open to everyone in the county by a grant, none of the user's roles
    // concerns it (tests/e2e/policy.rs covers roles that do).
    assert_eq!(raw["roles"], serde_json::json!([]));
    assert!(raw["sid"].is_string());
    assert_eq!(jwt_header(&id_token.to_string())["alg"], "RS256");
    // The access token is an RFC 9068 JWT, ES256.
    let at = tokens.access_token().secret();
    let h = jwt_header(at);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["alg"], "ES256");
    let p = jwt_payload(at);
    assert_eq!(p["client_id"], PORTAL);
    assert_eq!(p["iss"], s.issuer);
    assert_eq!(p["sub"], raw["sub"]);
    assert!(p["jti"].is_string() && p["exp"].is_i64());
    assert!(
        tokens.refresh_token().is_some(),
        "refresh token for a client allowed that grant"
    );
    // Validates offline against the JWKS.
    let jwks = jwks(&s).await;
    let jwk = jwks.find(h["kid"].as_str().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[PORTAL]);
    v.set_issuer(&[&s.issuer]);
    jsonwebtoken::decode::<Value>(at, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap();
    // userinfo with the access token.
    let ui: Value = http
        .get(s.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ui["sub"], raw["sub"]);
    assert_eq!(ui["email"], "k.albers@luechow-dannenberg.example");
    assert_eq!(ui["tenant"], "lk-luechow-dannenberg");
    // Audited: the login and the token issuance.
    assert_eq!(s.audit("login").await.len(), 1);
    let issued = s.audit("token_issued").await;
    assert_eq!(issued[0].actor_client.as_deref(), Some(PORTAL));
    assert_eq!(issued[0].actor_subject.as_deref(), raw["sub"].as_str());
}

#[tokio::test]
async fn session_gives_single_sign_on_to_the_next_client() {
    let s = TestServer::start().await;
    let browser = Browser::new();
    let first = portal_tokens(&s, &browser, CLERK_USER, CLERK_PASSWORD).await;
    let sid = jwt_payload(first["id_token"].as_str().unwrap())["sid"].clone();
    // A public client (PKCE) in the same browser: no login form.
    let rp = s.rp(RATSINFO, None, RATSINFO_REDIRECT).await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _state, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    let res = browser.get(url.as_str()).await;
    assert_eq!(res.status(), 303, "single sign-on redirects straight back");
    let q = redirect_params(&res);
    let tokens = rp
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&TestServer::http())
        .await
        .unwrap();
    let id = tokens.id_token().unwrap();
    id.claims(&rp.id_token_verifier(), &nonce).unwrap();
    let raw = jwt_payload(&id.to_string());
    assert_eq!(raw["sid"], sid);
    assert_eq!(raw["tenant"], "hitzacker-elbe");
    assert_eq!(
        raw["tenant_path"],
        serde_json::json!(["lk-luechow-dannenberg", "sg-elbtalaue", "hitzacker-elbe"])
    );
    assert_eq!(raw["level"], "gemeinde");
}

fn portal_auth(s: &TestServer, extra: &[(&str, &str)]) -> String {
    let mut p = vec![
        ("response_type", "code"),
        ("client_id", PORTAL),
        ("redirect_uri", PORTAL_REDIRECT),
        ("scope", "openid"),
        ("state", "st"),
    ];
    p.extend_from_slice(extra);
    authorize_url(s, &p)
}

#[tokio::test]
async fn prompt_and_max_age_control_reauthentication() {
    let s = TestServer::start().await;
    let browser = Browser::new();
    // prompt=none without a session: login_required, to the client.
    let res = browser.get(&portal_auth(&s, &[("prompt", "none")])).await;
    assert_eq!(res.status(), 303);
    let q = redirect_params(&res);
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "st");
    // (An account without a second factor: see the level below.)
    portal_tokens(&s, &browser, CLERK_USER, CLERK_PASSWORD).await;
    // prompt=none with a session: a code.
    let res = browser.get(&portal_auth(&s, &[("prompt", "none")])).await;
    assert!(redirect_params(&res).contains_key("code"));
    // prompt=login: the form again, although a session exists.
    let res = browser.get(&portal_auth(&s, &[("prompt", "login")])).await;
    assert_eq!(res.status(), 200);
    // max_age: fine while fresh, the form once the login is older.
    let res = browser.get(&portal_auth(&s, &[("max_age", "3600")])).await;
    assert_eq!(res.status(), 303);
    s.clock.advance(120);
    let res = browser.get(&portal_auth(&s, &[("max_age", "60")])).await;
    assert_eq!(res.status(), 200, "max_age exceeded: log in again");
    let res = browser
        .get(&portal_auth(&s, &[("max_age", "60"), ("prompt", "none")]))
        .await;
    assert_eq!(redirect_params(&res)["error"], "login_required");
    // A level of assurance that a password cannot reach.
    let res = browser
        .get(&portal_auth(
            &s,
            &[("acr_values", "urn:interkom:loa:substantial")],
        ))
        .await;
    assert_eq!(
        redirect_params(&res)["error"],
        "unmet_authentication_requirements"
    );
    // login_hint fills in the username.
    let fresh = Browser::new();
    let form = fresh
        .open_login(&s, &portal_auth(&s, &[("login_hint", "anna.schulz")]))
        .await;
    assert!(form.html.contains("value=\"anna.schulz\""));
    // ... escaped: a hint cannot inject markup.
    let form = fresh
        .open_login(
            &s,
            &portal_auth(&s, &[("login_hint", "\"><script>alert(1)</script>")]),
        )
        .await;
    assert!(!form.html.contains("<script>alert(1)"));
    assert!(form.html.contains("&lt;script&gt;"));
}

#[tokio::test]
async fn wrong_password_shows_the_form_again_and_is_audited() {
    let s = TestServer::start().await;
    let browser = Browser::new();
    let form = browser.open_login(&s, &portal_auth(&s, &[])).await;
    let res = browser.submit(&form, ADMIN_USER, "wrong-password").await;
    assert_eq!(res.status(), 401);
    assert!(res
        .headers()
        .get("set-cookie")
        .is_none_or(|c| !c.to_str().unwrap().contains("interkom_session=")));
    let html = res.text().await.unwrap();
    assert!(html.contains("Benutzername oder Passwort ist falsch"));
    // Unknown user: the very same message.
    let res = browser.submit(&form, "nobody.here", "wrong-password").await;
    assert_eq!(res.status(), 401);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Benutzername oder Passwort ist falsch"));
    let failed = s.audit("login_failed").await;
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|e| e.outcome == "failure"));
    // The same form still works with the right password.
    let res = browser.submit(&form, ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(res.status(), 303);
    // ... once: the login request is single use.
    let res = browser.submit(&form, ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn login_page_speaks_german_or_english_and_refuses_framing() {
    let s = TestServer::start().await;
    let de = Browser::new();
    let res = de.get(&portal_auth(&s, &[])).await;
    let h = res.headers().clone();
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    let cookie = h["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    let html = res.text().await.unwrap();
    assert!(html.contains("<html lang=\"de\">") && html.contains("Anmelden"));
    assert!(
        html.contains("name=\"username\"")
            && html.contains("name=\"password\"")
            && html.contains("type=\"submit\"")
    );
    let mut en = Browser::new();
    en.accept_language = Some("en-GB,en;q=0.9,de;q=0.5");
    let html = en.get(&portal_auth(&s, &[])).await.text().await.unwrap();
    assert!(html.contains("<html lang=\"en\">") && html.contains("Sign in"));
}

#[tokio::test]
async fn id_token_algorithm_follows_the_client_registration() {
    let s = TestServer::start().await;
    s.app
        .directory
        .register_client(interkom_directory::ClientSpec {
            id: "ratsinfo".into(),
            // Bound to no resource: for the accounts of its subtree.
            tenant: "sg-elbtalaue".into(),
            name: "Ratsinformationssystem".into(),
            redirect_uris: vec!["http://127.0.0.1:9100/cb".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![interkom_directory::GrantType::AuthorizationCode],
            scopes: vec!["openid".into()],
            auth_method: interkom_directory::AuthMethod::ClientSecretPost,
            secret: Some("ratsinfo-secret-0123456789abcdefghijklmnop".into()),
            jwks: None,
            id_token_alg: interkom_gateway::Alg::ES256,
            backchannel_logout_uri: None,
            first_party: true,
            resource_server: false,
        })
        .await
        .unwrap();
    let rp = s
        .rp(
            "ratsinfo",
            Some("ratsinfo-secret-0123456789abcdefghijklmnop"),
            "http://127.0.0.1:9100/cb",
        )
        .await
        .set_auth_type(openidconnect::AuthType::RequestBody);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    let q = Browser::new()
        .login(&s, url.as_str(), CLERK_USER, CLERK_PASSWORD)
        .await;
    let tokens = rp
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&TestServer::http())
        .await
        .unwrap();
    assert!(
        tokens.refresh_token().is_none(),
        "no refresh_token grant, no refresh token"
    );
    let id = tokens.id_token().unwrap();
    assert_eq!(jwt_header(&id.to_string())["alg"], "ES256");
    let verifier = rp
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let _: &openidconnect::IdTokenClaims<openidconnect::EmptyAdditionalClaims, CoreGenderClaim> =
        id.claims(&verifier, &nonce).unwrap();
}

#[tokio::test]
async fn logout_ends_the_session_and_redirects_only_where_registered() {
    let s = TestServer::start().await;
    let browser = Browser::new();
    let t = portal_tokens(&s, &browser, ADMIN_USER, ADMIN_PASSWORD).await;
    let id_token = t["id_token"].as_str().unwrap();
    // Unregistered post_logout_redirect_uri: an error page, no redirect.
    let mut u = url::Url::parse(&s.url("/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", "https://evil.example/");
    let res = browser.get(u.as_str()).await;
    assert_eq!(res.status(), 400);
    assert!(location(&res).is_none());
    // The registered one, with state.
    let mut u = url::Url::parse(&s.url("/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", PORTAL_LOGOUT)
        .append_pair("state", "bye");
    let res = browser.get(u.as_str()).await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        location(&res).unwrap(),
        format!("{PORTAL_LOGOUT}?state=bye")
    );
    // The session is gone, and so is the refresh token issued under it.
    let res = browser.get(&portal_auth(&s, &[("prompt", "none")])).await;
    assert_eq!(redirect_params(&res)["error"], "login_required");
    let res = portal_refresh(&s, t["refresh_token"].as_str().unwrap()).await;
    expect_oauth_error(res, 400, "invalid_grant").await;
    assert_eq!(s.audit("logout").await.len(), 1);
}

#[tokio::test]
async fn logout_without_hint_asks_for_confirmation() {
    let s = TestServer::start().await;
    let browser = Browser::new();
    portal_tokens(&s, &browser, ADMIN_USER, ADMIN_PASSWORD).await;
    let res = browser.get(&s.url("/logout")).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Möchten Sie sich bei interkom abmelden?"));
    let form = parse_form(&s, &html);
    // A forged confirmation (wrong CSRF token) does not log out.
    let res = browser
        .http
        .post(s.url("/logout"))
        .form(&[("confirm", "yes"), ("csrf_token", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = browser.get(&portal_auth(&s, &[("prompt", "none")])).await;
    assert!(
        redirect_params(&res).contains_key("code"),
        "still logged in"
    );
    let mut fields = form.fields.clone();
    fields.insert("confirm".into(), "yes".into());
    let res = browser
        .http
        .post(s.url("/logout"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Sie sind abgemeldet"));
    let res = browser.get(&portal_auth(&s, &[("prompt", "none")])).await;
    assert_eq!(redirect_params(&res)["error"], "login_required");
}

/// `offline_access` (OIDC Core §11), the usual request of certified RP
/// libraries that want a refresh token: a client with the refresh_token
/// grant gets one though its registration does not list the scope; a
/// client without the grant has the scope ignored, not the login failed.
#[tokio::test]
async fn offline_access_is_granted_with_the_refresh_grant_and_ignored_without() {
    let s = TestServer::start().await;
    let register = |id: &'static str, grants: Vec<interkom_directory::GrantType>| {
        let s = &s;
        async move {
            s.app
                .directory
                .register_client(interkom_directory::ClientSpec {
                    id: id.into(),
                    tenant: "lk-luechow-dannenberg".into(),
                    name: id.into(),
                    redirect_uris: vec!["http://127.0.0.1:9200/cb".into()],
                    post_logout_redirect_uris: vec![],
                    grant_types: grants,
                    scopes: interkom::config::default_scopes(),
                    auth_method: interkom_directory::AuthMethod::ClientSecretBasic,
                    secret: Some("offline-secret-0123456789abcdefghijklmnop".into()),
                    jwks: None,
                    id_token_alg: interkom_gateway::Alg::RS256,
                    backchannel_logout_uri: None,
                    first_party: true,
                    resource_server: false,
                })
                .await
                .unwrap();
        }
    };
    use interkom_directory::GrantType;
    register(
        "mit-refresh",
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
    )
    .await;
    register("ohne-refresh", vec![GrantType::AuthorizationCode]).await;
    for (client, refresh) in [("mit-refresh", true), ("ohne-refresh", false)] {
        let rp = s
            .rp(
                client,
                Some("offline-secret-0123456789abcdefghijklmnop"),
                "http://127.0.0.1:9200/cb",
            )
            .await;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, _, _) = rp
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("offline_access".into()))
            .set_pkce_challenge(challenge)
            .url();
        let q = Browser::new()
            .login(&s, url.as_str(), ADMIN_USER, ADMIN_PASSWORD)
            .await;
        assert!(q.contains_key("code"), "{client}: {q:?}");
        let tokens = rp
            .exchange_code(AuthorizationCode::new(q["code"].clone()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&TestServer::http())
            .await
            .unwrap();
        assert_eq!(tokens.refresh_token().is_some(), refresh, "{client}");
        let scope = jwt_payload(tokens.access_token().secret())["scope"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            scope.contains("offline_access"),
            refresh,
            "{client}: {scope}"
        );
    }
}

/// Whoever opens the address finds the console, the discovery document
/// and, in the demo, a login to try.
#[tokio::test]
async fn the_start_page_shows_the_way_in() {
    let s = TestServer::start().await;
    let res = TestServer::http().get(s.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = res.text().await.unwrap();
    assert!(page.contains("/admin/console/") && page.contains("openid-configuration"));
    assert!(page.contains("client_id=serviceportal"), "the demo's login");
}
