//! Key rotation: a new key is published before it signs, and the old one
//! stays published until its tokens have expired.

use serde_json::Value;

use crate::common::*;

async fn kids(s: &TestServer, alg: &str) -> Vec<String> {
    let jwks: Value = TestServer::http()
        .get(s.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["alg"] == alg)
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn rotation_publishes_first_then_signs_then_retires() {
    let s = TestServer::start().await;
    let old = cc_token(&s).await;
    let old_kid = jwt_header(&old)["kid"].as_str().unwrap().to_owned();
    assert_eq!(kids(&s, "ES256").await, vec![old_kid.clone()]);

    s.app.gateway.rotate_keys().await.unwrap();
    let published = kids(&s, "ES256").await;
    assert_eq!(published.len(), 2, "the new key is published at once");
    let new_kid = published.iter().find(|k| **k != old_kid).unwrap().clone();
    assert_eq!(kids(&s, "RS256").await.len(), 2);
    assert_eq!(kids(&s, "EdDSA").await.len(), 2);
    // ... but does not sign before the publication lead has passed.
    assert_eq!(jwt_header(&cc_token(&s).await)["kid"], old_kid.as_str());
    assert_eq!(s.audit("key_rotated").await.len(), 1);

    s.clock.advance(601);
    let fresh = cc_token(&s).await;
    assert_eq!(jwt_header(&fresh)["kid"], new_kid.as_str());
    // Tokens signed with the old key stay valid while it is published.
    assert_eq!(introspect(&s, &fresh).await["active"], true);
    assert!(kids(&s, "ES256").await.contains(&old_kid));

    // After the longest token lifetime the old key is gone.
    s.clock.advance(301);
    assert_eq!(kids(&s, "ES256").await, vec![new_kid.clone()]);
    assert_eq!(introspect(&s, &old).await["active"], false);
    // The keys are stored encrypted: no PEM or raw key text in the table.
    let stored: Vec<String> = sqlx::query_scalar("SELECT private_enc FROM signing_keys")
        .fetch_all(&s.app.pool)
        .await
        .unwrap();
    assert!(stored.iter().all(|k| !k.contains("BEGIN") && k.len() > 40));
}

#[tokio::test]
async fn a_second_node_on_the_same_database_serves_the_same_issuer() {
    let s = TestServer::start().await;
    let t = portal_tokens(&s, &Browser::new(), ADMIN_USER, ADMIN_PASSWORD).await;
    // Node two: same database, key-encryption key and issuer; its own port
    // (behind a load balancer both would answer for the issuer).
    let issuer = s.issuer.clone();
    let n2 = TestServer::start_on(s.database_url.clone(), Some(s.kek.clone()), |c| {
        c.issuer = issuer
    })
    .await;
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(
        introspect(&n2, at).await["active"],
        true,
        "node two validates node one's token"
    );
    let own = cc_token(&n2).await;
    assert_eq!(
        jwt_header(&own)["kid"],
        jwt_header(&cc_token(&s).await)["kid"],
        "shared keys"
    );
    assert_eq!(introspect(&s, &own).await["active"], true);
    // A node with another issuer does not accept them.
    let n3 = TestServer::start_on(s.database_url.clone(), Some(s.kek.clone()), |_| {}).await;
    assert_eq!(introspect(&n3, at).await["active"], false);
    // The refresh token issued by node one works at node two.
    let res = portal_refresh(&n2, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    // Both nodes append to one audit chain.
    let report = interkom_audit::verify(&s.app.pool, None, None)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
}

#[tokio::test]
async fn a_rotation_reaches_the_other_nodes_within_a_second() {
    let a = TestServer::start().await;
    // On PostgreSQL node B reloads its keys only hourly by itself: only the
    // announcement (LISTEN/NOTIFY) can tell it in time. SQLite serves one
    // node; there the periodic reload (every second here) is what there is.
    let pg = backend() == "postgres";
    let issuer = a.issuer.clone();
    let b = TestServer::start_on(a.database_url.clone(), Some(a.kek.clone()), |c| {
        c.issuer = issuer;
        c.tokens.key_reload_interval = if pg { 3600 } else { 1 };
    })
    .await;
    // B has served its JWKS once (the set is loaded).
    let jwks = |s: &TestServer| {
        let url = s.url("/jwks");
        async move {
            let v: serde_json::Value = TestServer::http()
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let before = jwks(&b).await;
    let new = a.app.gateway.rotate_keys().await.unwrap();
    assert!(new.iter().all(|k| !before.contains(k)));
    let limit = std::time::Duration::from_millis(if pg { 1000 } else { 3000 });
    let started = std::time::Instant::now();
    loop {
        let now = jwks(&b).await;
        if new.iter().all(|k| now.contains(k)) {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "node B does not publish the new keys after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
