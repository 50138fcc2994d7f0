//! What the nodes share: codes, sessions, refresh-token families, keys and
//! the audit chain.

use std::collections::HashSet;

use crate::common::*;
use crate::*;

#[tokio::test]
#[ignore = "cluster test: run by scripts/test (PostgreSQL, one at a time)"]
async fn a_code_from_node_a_is_redeemed_at_b_and_its_replay_at_c_fails() {
    let cluster = Cluster::start(3).await;
    let browser = Browser::new();
    // Page from C, password to A: node A issues the code.
    let (code, verifier, nonce) = login_code(&cluster, &browser, 2, 0, CLERK_USER, CLERK_PASSWORD)
        .await
        .unwrap();
    let rp = cluster.rp().await.unwrap();
    let exchange = |node: usize| {
        let cluster = Arc::clone(&cluster);
        let rp = rp.clone();
        let (code, verifier) = (code.clone(), verifier.clone());
        async move {
            let pinned = move |req: openidconnect::HttpRequest| {
                let url = cluster.to_node(node, &req.uri().to_string());
                let (parts, body) = req.into_parts();
                let http = TestServer::http();
                async move {
                    let res = http
                        .request(parts.method, url)
                        .headers(parts.headers)
                        .body(body)
                        .send()
                        .await?;
                    let mut out = openidconnect::http::Response::builder().status(res.status());
                    for (k, v) in res.headers() {
                        out = out.header(k, v);
                    }
                    Ok::<_, reqwest::Error>(out.body(res.bytes().await?.to_vec()).unwrap())
                }
            };
            rp.exchange_code(openidconnect::AuthorizationCode::new(code))
                .unwrap()
                .set_pkce_verifier(openidconnect::PkceCodeVerifier::new(verifier))
                .request_async(&pinned)
                .await
        }
    };
    let tokens = exchange(1).await.expect("node B redeems node A's code");
    let claims = tokens
        .extra_fields()
        .id_token()
        .unwrap()
        .claims(&rp.id_token_verifier(), &nonce)
        .expect("the ID token verifies with the JWKS of any node");
    assert_eq!(claims.issuer().as_str(), cluster.issuer);
    match exchange(2).await {
        Err(openidconnect::RequestTokenError::ServerResponse(e)) => {
            assert_eq!(e.error().to_string(), "invalid_grant", "{e:?}")
        }
        other => panic!("node C must refuse the replay: {other:?}"),
    }
    // The replay revoked what the code had issued, on every node.
    let at = openidconnect::OAuth2TokenResponse::access_token(&tokens).secret();
    for node in 0..3 {
        let v: serde_json::Value = TestServer::http()
            .post(cluster.at(node, "/introspect"))
            .basic_auth(KFZ, Some(KFZ_SECRET))
            .form(&[("token", at.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["active"], false, "node {node}: {v}");
    }
}

#[tokio::test]
#[ignore = "cluster test: run by scripts/test (PostgreSQL, one at a time)"]
async fn sessions_and_refresh_families_span_the_nodes() {
    let cluster = Cluster::start(3).await;
    let browser = Browser::new();
    let (code, verifier, nonce) = login_code(&cluster, &browser, 0, 1, CLERK_USER, CLERK_PASSWORD)
        .await
        .unwrap();
    redeem(&cluster, &code, &verifier, &nonce).await.unwrap();
    // Single sign-on at node C with the session node B created.
    let res = browser.get(&cluster.authorize_at(2).await).await;
    assert_eq!(res.status(), 303, "no login form: the session is shared");
    assert!(redirect_params(&res).contains_key("code"));
    // A refresh token from node A, used at B, then replayed at C.
    let (verifier, challenge) = pkce();
    let mut u = url::Url::parse(&cluster.at(0, "/authorize")).unwrap();
    u.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", PORTAL),
        ("redirect_uri", PORTAL_REDIRECT),
        ("scope", "openid profile"),
        ("state", "s"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let res = browser.get(u.as_str()).await;
    assert_eq!(res.status(), 303);
    let code = redirect_params(&res)["code"].clone();
    let token = |node: usize, form: Vec<(&'static str, String)>| {
        let url = cluster.at(node, "/token");
        async move {
            let res = TestServer::http()
                .post(url)
                .basic_auth(PORTAL, Some(PORTAL_SECRET))
                .form(&form)
                .send()
                .await
                .unwrap();
            (
                res.status().as_u16(),
                res.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, t) = token(
        0,
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", code),
            ("redirect_uri", PORTAL_REDIRECT.into()),
            ("code_verifier", verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let first = t["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    let refresh = |node: usize, rt: String| {
        token(
            node,
            vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", rt),
            ],
        )
    };
    let (status, t2) = refresh(1, first.clone()).await;
    assert_eq!(status, 200, "node B rotates node A's refresh token: {t2}");
    let (status, e) = refresh(2, first).await;
    assert_eq!(status, 400, "node C sees the replay: {e}");
    assert_eq!(e["error"], "invalid_grant");
    // The replay revoked the whole family, on every node.
    let (status, e) = refresh(0, t2["refresh_token"].as_str().unwrap().into()).await;
    assert_eq!(status, 400, "{e}");
}

#[tokio::test]
#[ignore = "cluster test: run by scripts/test (PostgreSQL, one at a time)"]
async fn logins_and_grants_spread_over_the_nodes_land_in_one_chain() {
    let cluster = Cluster::start(3).await;
    let mut tasks = Vec::new();
    for t in 0..6 {
        let cluster = Arc::clone(&cluster);
        tasks.push(tokio::spawn(async move {
            let mut jtis = Vec::new();
            for i in 0..10 {
                if t < 2 {
                    // Full logins, each step at another node.
                    let b = Browser::new();
                    let (code, verifier, nonce) =
                        login_code(&cluster, &b, i % 3, (i + 1) % 3, CLERK_USER, CLERK_PASSWORD)
                            .await
                            .unwrap();
                    jtis.push(redeem(&cluster, &code, &verifier, &nonce).await.unwrap());
                } else {
                    jtis.push(cc_grant(&cluster).await.unwrap());
                }
            }
            jtis
        }));
    }
    let mut issued = HashSet::new();
    for t in tasks {
        issued.extend(t.await.unwrap());
    }
    assert_eq!(issued.len(), 60, "every grant issued a distinct token");
    let pool = pool(&cluster).await;
    let audited = audited_jtis(&pool).await;
    assert!(issued.iter().all(|j| audited.contains(j)));
    // Three writers, one chain: no gaps, checkpoints verify.
    audit_verify(&cluster).await;
}

#[tokio::test]
#[ignore = "cluster test: run by scripts/test (PostgreSQL, one at a time)"]
async fn a_saml_login_starts_at_one_node_and_ends_at_another() {
    use interkom_saml::authn::{AuthnRequest, BINDING_POST};
    use interkom_saml::binding::{self, Param};
    let cluster = Cluster::start(3).await;
    // The SP, registered by the operator's CLI on the shared database.
    let dir = std::env::temp_dir().join(format!("ik-cluster-sp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sp = dir.join("sp.json");
    std::fs::write(
        &sp,
        r#"{ "id": "fv-cluster", "tenant": "hitzacker-elbe", "name": "Fachverfahren",
             "entity_id": "https://fv.example/saml", "acs_urls": ["https://fv.example/acs"],
             "resource": "ratsinfo-hitzacker" }"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_interkom"))
        .args(["sp", "put", "--file"])
        .arg(&sp)
        .current_dir(repo_root())
        .env("INTERKOM_CONFIG", repo_root().join("config/interkom.toml"))
        .env("INTERKOM_DATABASE_URL", &cluster.database_url)
        .env("INTERKOM_KEY_ENCRYPTION_KEY", &cluster.kek)
        .env("INTERKOM_AUDIT__CHECKPOINT_KEY", checkpoint_key())
        .env("INTERKOM_ISSUER", &cluster.issuer)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let req = AuthnRequest {
        id: "_cluster1".into(),
        issue_instant: now,
        issuer: "https://fv.example/saml".into(),
        destination: Some(format!("{}/saml/sso", cluster.issuer)),
        acs_url: Some("https://fv.example/acs".into()),
        acs_index: None,
        protocol_binding: Some(BINDING_POST.into()),
        force_authn: false,
        is_passive: false,
        name_id_format: None,
        requested: None,
    };
    let url = binding::redirect_url(
        &format!("{}/saml/sso", cluster.issuer),
        Param::Request,
        &req.to_xml(None),
        None,
        None,
    )
    .unwrap();
    let browser = Browser::new();
    // The request at node A, the password at node B, the Response at C.
    let res = browser.get(&cluster.to_node(0, &url)).await;
    assert_eq!(res.status(), 200, "the login form at A");
    let form = parse_form_at(&cluster.issuer, &res.text().await.unwrap());
    let mut fields = form.fields.clone();
    fields.insert("username".into(), CLERK_USER.into());
    fields.insert("password".into(), CLERK_PASSWORD.into());
    let res = browser
        .http
        .post(cluster.to_node(1, &form.action))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "the password at B");
    let back = location(&res).unwrap();
    let res = browser.get(&cluster.to_node(2, &back)).await;
    assert_eq!(res.status(), 200, "the Response at C");
    let html = res.text().await.unwrap();
    let xml = binding::post_decode(&hidden(&html, "SAMLResponse")).unwrap();
    // Signed with the key every node shares, as the metadata (from A) says.
    let md = browser
        .get(&cluster.at(0, "/saml/metadata"))
        .await
        .text()
        .await
        .unwrap();
    let idp = interkom_saml::metadata::PartnerIdp::read(&md).unwrap();
    let trusted = interkom_saml::dsig::Trusted::new(&idp.signing).unwrap();
    let read = interkom_saml::response::read(&xml, &trusted, None).unwrap();
    assert_eq!(read.envelope.in_response_to.as_deref(), Some("_cluster1"));
    let a = read.assertion.unwrap();
    assert_eq!(a.audience, "https://fv.example/saml");
    assert!(a
        .attributes
        .iter()
        .any(|x| x.values.iter().any(|v| v == CLERK_USER)));
    // The same request at another node: a replay, refused everywhere.
    let res = browser.get(&cluster.to_node(1, &url)).await;
    assert_eq!(res.status(), 400);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
#[ignore = "cluster test: run by scripts/test (PostgreSQL, one at a time)"]
async fn a_citizens_saml_login_crosses_the_nodes() {
    use crate::saml_forge::{self, Forge};
    let cluster = Cluster::start(2).await;
    // The source, registered by the operator's CLI on the shared database.
    let dir = std::env::temp_dir().join(format!("ik-cluster-src-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cfg, md) = (dir.join("source.json"), dir.join("idp.xml"));
    std::fs::write(&cfg, serde_json::to_string(&saml_forge::source()).unwrap()).unwrap();
    std::fs::write(&md, saml_forge::metadata()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_interkom"))
        .args(["saml-source", "put", "--file"])
        .arg(&cfg)
        .arg("--metadata")
        .arg(&md)
        .current_dir(repo_root())
        .env("INTERKOM_CONFIG", repo_root().join("config/interkom.toml"))
        .env("INTERKOM_DATABASE_URL", &cluster.database_url)
        .env("INTERKOM_KEY_ENCRYPTION_KEY", &cluster.kek)
        .env("INTERKOM_AUDIT__CHECKPOINT_KEY", checkpoint_key())
        .env("INTERKOM_ISSUER", &cluster.issuer)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (verifier, challenge) = pkce();
    let redirect = "http://localhost:9010/callback";
    let mut auth = url::Url::parse(&format!("{}/authorize", cluster.issuer)).unwrap();
    auth.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", "hundesteuer-hitzacker"),
        ("redirect_uri", redirect),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    // Each node sees the new source within its cache's lifetime.
    for node in [0, 1] {
        let mut seen = false;
        for _ in 0..40 {
            let page = Browser::new()
                .get(&cluster.to_node(node, auth.as_str()))
                .await
                .text()
                .await
                .unwrap();
            if page.contains("value=\"forged\"") {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(seen, "node {node} never offered the source");
    }
    // The Leistung's page at A.
    let browser = Browser::new();
    let html = browser
        .get(&cluster.to_node(0, auth.as_str()))
        .await
        .text()
        .await
        .unwrap();
    // The choice at B, the Response at A, the login taken up at B.
    let res = browser
        .http
        .post(cluster.at(1, "/login/saml"))
        .form(&[
            ("login_request", hidden(&html, "login_request")),
            ("csrf_token", hidden(&html, "csrf_token")),
            ("source", "forged".into()),
        ])
        .send()
        .await
        .unwrap();
    let irt = saml_forge::request_id(&res.text().await.unwrap());
    let sp_md = browser
        .get(&cluster.at(1, "/saml/sp/metadata"))
        .await
        .text()
        .await
        .unwrap();
    let ours = interkom_saml::metadata::SpMetadata::read(&sp_md)
        .unwrap()
        .encryption[0]
        .clone();
    let f = Forge {
        irt,
        acs: format!("{}/saml/sp/acs", cluster.issuer),
        audience: format!("{}/saml/sp", cluster.issuer),
        now: saml_forge::now(),
    };
    let response = f.encrypted(&f.assertion("bpk2-cluster"), &ours);
    let field = [(
        "SAMLResponse",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &response),
    )];
    let res = browser
        .http
        .post(cluster.at(0, "/saml/sp/acs"))
        .form(&field)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "the Response at A");
    let res = browser
        .get(&cluster.to_node(1, &location(&res).unwrap()))
        .await;
    assert_eq!(res.status(), 303, "taken up at B");
    let code = redirect_params(&res)["code"].clone();
    let res = TestServer::http()
        .post(cluster.at(0, "/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("client_id", "hundesteuer-hitzacker"),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let t: serde_json::Value = res.json().await.unwrap();
    let id = jwt_payload(t["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "urn:interkom:loa:high");
    assert_eq!(id["given_name"], "Erika");
    // The same Response at the other node: the replay cache is shared.
    let res = browser
        .http
        .post(cluster.at(1, "/saml/sp/acs"))
        .form(&field)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let _ = std::fs::remove_dir_all(&dir);
}
