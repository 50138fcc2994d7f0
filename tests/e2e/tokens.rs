//! Refresh rotation and reuse detection, client credentials, introspection,
//! revocation, userinfo and private_key_jwt.

use openidconnect::core::{CoreClient, CoreTokenIntrospectionResponse};
use openidconnect::{
    ClientId, ClientSecret, IntrospectionUrl, OAuth2TokenResponse, RefreshToken, Scope,
    TokenIntrospectionResponse,
};
use ring::signature::KeyPair;
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let s = TestServer::start().await;
    let http = TestServer::http();
    let rp = s.rp(PORTAL, Some(PORTAL_SECRET), PORTAL_REDIRECT).await;
    let t = portal_tokens(&s, &Browser::new(), ADMIN_USER, ADMIN_PASSWORD).await;
    let rt1 = RefreshToken::new(t["refresh_token"].as_str().unwrap().into());
    let r2 = rp
        .exchange_refresh_token(&rt1)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    let rt2 = r2.refresh_token().unwrap().clone();
    assert_ne!(rt1.secret(), rt2.secret(), "rotated on use");
    assert_eq!(
        introspect(&s, r2.access_token().secret()).await["active"],
        true
    );
    let r3 = rp
        .exchange_refresh_token(&rt2)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    let rt3 = r3.refresh_token().unwrap().clone();
    assert_eq!(s.audit("token_refreshed").await.len(), 2);
    // Narrowing the scope is allowed, widening is not.
    let res = s
        .post_form(
            "/token",
            Some((PORTAL, PORTAL_SECRET)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt3.secret()),
                ("scope", "openid roles"),
            ],
        )
        .await;
    expect_oauth_error(res, 400, "invalid_scope").await;
    // rt1 again: reuse. invalid_grant, and the whole family is revoked.
    let res = portal_refresh(&s, rt1.secret()).await;
    expect_oauth_error(res, 400, "invalid_grant").await;
    let res = portal_refresh(&s, rt3.secret()).await;
    expect_oauth_error(res, 400, "invalid_grant").await;
    assert_eq!(
        introspect(&s, r3.access_token().secret()).await["active"],
        false,
        "access tokens of the family too"
    );
    let reuse = s.audit("refresh_reuse_detected").await;
    assert_eq!(reuse.len(), 1);
    assert_eq!(reuse[0].outcome, "denied");
}

#[tokio::test]
async fn refresh_token_of_one_client_is_useless_to_another() {
    let s = TestServer::start().await;
    let t = portal_tokens(&s, &Browser::new(), ADMIN_USER, ADMIN_PASSWORD).await;
    let rt = t["refresh_token"].as_str().unwrap();
    let res = s
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", RATSINFO),
            ],
        )
        .await;
    expect_oauth_error(res, 400, "invalid_grant").await;
    // ... and it still works for its own client.
    let res = portal_refresh(&s, rt).await;
    assert_eq!(res.status(), 200);
}

fn cc_client(
    s: &TestServer,
) -> CoreClient<
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
> {
    CoreClient::new(
        ClientId::new(KFZ.into()),
        openidconnect::IssuerUrl::new(s.issuer.clone()).unwrap(),
        openidconnect::JsonWebKeySet::default(),
    )
    .set_client_secret(ClientSecret::new(KFZ_SECRET.into()))
    .set_token_uri(openidconnect::TokenUrl::new(s.url("/token")).unwrap())
    .set_introspection_url(IntrospectionUrl::new(s.url("/introspect")).unwrap())
}

#[tokio::test]
async fn client_credentials_introspection_and_revocation() {
    let s = TestServer::start().await;
    let http = TestServer::http();
    let c = cc_client(&s);
    let t = c
        .exchange_client_credentials()
        .add_scope(Scope::new("roles".into()))
        .request_async(&http)
        .await
        .unwrap();
    assert!(t.refresh_token().is_none());
    let p = jwt_payload(t.access_token().secret());
    assert_eq!(p["sub"], KFZ);
    assert_eq!(p["client_id"], KFZ);
    assert_eq!(p["scope"], "roles");
    assert_eq!(p["tenant"], "lk-luechow-dannenberg");
    let i: CoreTokenIntrospectionResponse = c
        .introspect(t.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(i.active());
    assert_eq!(i.client_id().unwrap().as_str(), KFZ);
    let issued = s.audit("token_issued").await;
    assert_eq!(issued.len(), 1);
    assert_eq!(
        issued[0].details,
        json!({"grant_type":"client_credentials","jti":p["jti"],"scope":"roles"}).to_string()
    );
    // Revocation: 200, then inactive; unknown tokens are 200 too.
    // (openidconnect refuses revocation URLs without TLS, so by hand here.)
    let res = s
        .post_form(
            "/revoke",
            Some((KFZ, KFZ_SECRET)),
            &[("token", t.access_token().secret())],
        )
        .await;
    assert_eq!(res.status(), 200);
    let i: CoreTokenIntrospectionResponse = c
        .introspect(t.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(!i.active());
    assert_eq!(s.audit("token_revoked").await.len(), 1);
    let res = s
        .post_form(
            "/revoke",
            Some((KFZ, KFZ_SECRET)),
            &[("token", "no-such-token")],
        )
        .await;
    assert_eq!(res.status(), 200);
    // A token of another client cannot be revoked by this one.
    let other = portal_tokens(&s, &Browser::new(), ADMIN_USER, ADMIN_PASSWORD).await;
    let at = other["access_token"].as_str().unwrap();
    let res = s
        .post_form("/revoke", Some((KFZ, KFZ_SECRET)), &[("token", at)])
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(introspect(&s, at).await["active"], true);
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_family() {
    let s = TestServer::start().await;
    let t = portal_tokens(&s, &Browser::new(), ADMIN_USER, ADMIN_PASSWORD).await;
    let rt = t["refresh_token"].as_str().unwrap();
    let at = t["access_token"].as_str().unwrap();
    // Introspection of a refresh token: only for its own client.
    let res = s
        .post_form(
            "/introspect",
            Some((PORTAL, PORTAL_SECRET)),
            &[("token", rt)],
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["active"], true);
    assert_eq!(
        introspect(&s, rt).await["active"],
        false,
        "not shown to another client"
    );
    let res = s
        .post_form(
            "/revoke",
            Some((PORTAL, PORTAL_SECRET)),
            &[("token", rt), ("token_type_hint", "refresh_token")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = portal_refresh(&s, rt).await;
    expect_oauth_error(res, 400, "invalid_grant").await;
    assert_eq!(introspect(&s, at).await["active"], false);
}

#[tokio::test]
async fn userinfo_requires_a_valid_user_token() {
    let s = TestServer::start().await;
    let http = TestServer::http();
    let res = http.get(s.url("/userinfo")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let res = http
        .get(s.url("/userinfo"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    // A client_credentials token carries no user and no openid scope.
    let cc = cc_token(&s).await;
    let res = http
        .get(s.url("/userinfo"))
        .bearer_auth(&cc)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Expired tokens are refused.
    let t = portal_tokens(&s, &Browser::new(), ADMIN_USER, ADMIN_PASSWORD).await;
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(
        http.get(s.url("/userinfo"))
            .bearer_auth(at)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    s.clock.advance(301);
    assert_eq!(
        http.get(s.url("/userinfo"))
            .bearer_auth(at)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(introspect(&s, at).await["active"], false);
}

/// A token with the same claims but forged in the ways RFC 9700 lists.
#[tokio::test]
async fn forged_tokens_are_rejected_by_introspection_and_userinfo() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let s = TestServer::start().await;
    let t = portal_tokens(&s, &Browser::new(), ADMIN_USER, ADMIN_PASSWORD).await;
    let at = t["access_token"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = at.split('.').collect();
    let header = jwt_header(&at);
    let mut payload = jwt_payload(&at);
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    // alg none.
    let none = format!(
        "{}.{}.",
        enc(&json!({"alg":"none","typ":"at+jwt","kid":header["kid"]})),
        parts[1]
    );
    // HS256 keyed with the public JWK's text.
    let jwks: Value = TestServer::http()
        .get(s.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pubkey = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap()
        .to_string();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            typ: Some("at+jwt".into()),
            kid: header["kid"].as_str().map(str::to_owned),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(pubkey.as_bytes()),
    )
    .unwrap();
    // Unknown kid.
    let mut h2 = header.clone();
    h2["kid"] = json!("es256-unknown");
    let unknown_kid = format!("{}.{}.{}", enc(&h2), parts[1], parts[2]);
    // Tampered payload, original signature.
    payload["roles"] = json!(["admin", "superuser"]);
    let tampered = format!("{}.{}.{}", parts[0], enc(&payload), parts[2]);
    // Signed by a key interkom does not know, claiming a known kid.
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let foreign = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            typ: Some("at+jwt".into()),
            kid: header["kid"].as_str().map(str::to_owned),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256)
        },
        &jwt_payload(&at),
        &jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
    )
    .unwrap();
    for (name, forged) in [
        ("none", none),
        ("hs256", hs),
        ("kid", unknown_kid),
        ("tampered", tampered),
        ("foreign", foreign),
    ] {
        assert_eq!(introspect(&s, &forged).await["active"], false, "{name}");
        let res = TestServer::http()
            .get(s.url("/userinfo"))
            .bearer_auth(&forged)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{name}");
    }
    // The genuine token is fine.
    assert_eq!(introspect(&s, &at).await["active"], true);
}

/// Registers a client for private_key_jwt with an ES256 key; returns the
/// private key (PKCS#8).
async fn pkjwt_client(s: &TestServer) -> Vec<u8> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let p = pair.public_key().as_ref();
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65]),
    }]});
    s.app
        .directory
        .register_client(interkom_directory::ClientSpec {
            id: "gewerbe-backend".into(),
            tenant: "sg-luechow".into(),
            name: "Gewerbeamt (Backend)".into(),
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            grant_types: vec![interkom_directory::GrantType::ClientCredentials],
            scopes: vec!["roles".into()],
            auth_method: interkom_directory::AuthMethod::PrivateKeyJwt,
            secret: None,
            jwks: Some(jwks),
            id_token_alg: interkom_gateway::Alg::RS256,
            backchannel_logout_uri: None,
            first_party: true,
            resource_server: false,
        })
        .await
        .unwrap();
    pkcs8.as_ref().to_vec()
}

fn assertion(der: &[u8], claims: Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ec_der(der)).unwrap()
}

#[tokio::test]
async fn private_key_jwt_client_authentication() {
    let s = TestServer::start().await;
    let der = pkjwt_client(&s).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = |aud: &str, exp: i64, jti: &str| json!({"iss": "gewerbe-backend", "sub": "gewerbe-backend", "aud": aud, "exp": exp, "iat": now, "jti": jti});
    let send = |a: String| {
        let s = &s;
        async move {
            s.post_form(
                "/token",
                None,
                &[
                    ("grant_type", "client_credentials"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &a),
                ],
            )
            .await
        }
    };
    let good = assertion(&der, claims(&s.url("/token"), now + 60, "a1"));
    let res = send(good.clone()).await;
    assert_eq!(res.status(), 200);
    let at: Value = res.json().await.unwrap();
    assert_eq!(
        jwt_payload(at["access_token"].as_str().unwrap())["sub"],
        "gewerbe-backend"
    );
    // The issuer as audience is accepted too.
    assert_eq!(
        send(assertion(&der, claims(&s.issuer, now + 60, "a2")))
            .await
            .status(),
        200
    );
    // Replayed jti.
    expect_oauth_error(send(good).await, 401, "invalid_client").await;
    // Wrong audience.
    let a = assertion(&der, claims("https://other.example/token", now + 60, "a3"));
    expect_oauth_error(send(a).await, 401, "invalid_client").await;
    // Expired.
    let a = assertion(&der, claims(&s.url("/token"), now - 120, "a4"));
    expect_oauth_error(send(a).await, 401, "invalid_client").await;
    // alg none.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(&s.url("/token"), now + 60, "a5").to_string())
    );
    expect_oauth_error(send(none).await, 401, "invalid_client").await;
    // Signed by another key.
    let rng = ring::rand::SystemRandom::new();
    let other = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    let forged = jsonwebtoken::encode(
        &h,
        &claims(&s.url("/token"), now + 60, "a6"),
        &jsonwebtoken::EncodingKey::from_ec_der(other.as_ref()),
    )
    .unwrap();
    expect_oauth_error(send(forged).await, 401, "invalid_client").await;
    // A secret for a private_key_jwt client is refused.
    let res = s
        .post_form(
            "/token",
            Some(("gewerbe-backend", "some-secret")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    expect_oauth_error(res, 401, "invalid_client").await;
}
