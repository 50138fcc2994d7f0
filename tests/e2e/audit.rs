//! The gateway's events land in the one shared, hash-chained audit store.

use crate::common::*;

#[tokio::test]
async fn gateway_events_form_a_verifiable_chain() {
    let s = TestServer::start().await;
    let b = Browser::new();
    portal_tokens(&s, &b, ADMIN_USER, ADMIN_PASSWORD).await;
    // Concurrent appends are committed together and stay in one chain.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let issuer = s.issuer.clone();
        tasks.push(tokio::spawn(async move {
            let res = TestServer::http()
                .post(format!("{issuer}/token"))
                .basic_auth(KFZ, Some(KFZ_SECRET))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = interkom_audit::verify(&s.app.pool, None, None)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 52, "login + token + 50 client_credentials");
    let login = &s.audit("login").await[0];
    assert_eq!(login.tenant.as_deref(), Some("lk-luechow-dannenberg"));
    assert_eq!(
        login.tenant_path.as_deref(),
        Some("/lk-luechow-dannenberg/")
    );
    assert!(login.correlation_id.is_some(), "request id recorded");
    assert_eq!(
        login.source.as_deref(),
        Some("127.0.0.0/24"),
        "source pseudonymised"
    );

    // Any change behind the store's back is found, at the right place.
    sqlx::query("UPDATE audit_events SET reason = 'edited' WHERE seq = 7")
        .execute(&s.app.pool)
        .await
        .unwrap();
    let report = interkom_audit::verify(&s.app.pool, None, None)
        .await
        .unwrap();
    assert_eq!(report.first_bad.unwrap().0, 7);
}

#[tokio::test]
async fn deleted_and_truncated_events_are_detected() {
    let s = TestServer::start().await;
    for _ in 0..5 {
        cc_token(&s).await;
    }
    sqlx::query("DELETE FROM audit_events WHERE seq = 3")
        .execute(&s.app.pool)
        .await
        .unwrap();
    assert_eq!(
        interkom_audit::verify(&s.app.pool, None, None)
            .await
            .unwrap()
            .first_bad
            .unwrap()
            .0,
        3
    );
    let s = TestServer::start().await;
    for _ in 0..5 {
        cc_token(&s).await;
    }
    sqlx::query("DELETE FROM audit_events WHERE seq = 5")
        .execute(&s.app.pool)
        .await
        .unwrap();
    assert_eq!(
        interkom_audit::verify(&s.app.pool, None, None)
            .await
            .unwrap()
            .first_bad
            .unwrap()
            .0,
        5
    );
}
