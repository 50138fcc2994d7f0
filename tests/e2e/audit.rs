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

#[tokio::test]
async fn pruned_events_keep_the_chain_verifiable() {
    let s = TestServer::start().await;
    portal_tokens(&s, &Browser::new(), ADMIN_USER, ADMIN_PASSWORD).await;
    cc_token(&s).await;
    // Nothing is older than a day yet.
    assert_eq!(s.app.audit.prune_older_than(1).await.unwrap(), 0);
    assert_eq!(s.app.audit.prune_older_than(0).await.unwrap(), 3);
    let login = &s.audit("login").await[0];
    assert!(login.actor_subject.is_none() && login.source.is_none());
    assert_eq!(login.details, "{}");
    assert!(login.pruned_at.is_some());
    assert_eq!(
        login.tenant.as_deref(),
        Some("lk-luechow-dannenberg"),
        "organisational fields stay"
    );
    let report = interkom_audit::verify(&s.app.pool, None, None)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    // Writing into a pruned event is tampering all the same.
    sqlx::query("UPDATE audit_events SET source = '10.0.0.0/24' WHERE seq = 2")
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
        2
    );
}

#[tokio::test]
async fn personal_fields_are_covered_by_the_chain() {
    let s = TestServer::start().await;
    portal_tokens(&s, &Browser::new(), ADMIN_USER, ADMIN_PASSWORD).await;
    for (column, value) in [
        ("details", "{\"x\":1}"),
        ("actor_subject", "x"),
        ("source", "10.1.1.0/24"),
    ] {
        let before: String = sqlx::query_scalar(&format!(
            "SELECT COALESCE({column}, '') FROM audit_events WHERE seq = 1"
        ))
        .fetch_one(&s.app.pool)
        .await
        .unwrap();
        sqlx::query(&format!(
            "UPDATE audit_events SET {column} = $1 WHERE seq = 1"
        ))
        .bind(value)
        .execute(&s.app.pool)
        .await
        .unwrap();
        let report = interkom_audit::verify(&s.app.pool, None, None)
            .await
            .unwrap();
        assert_eq!(report.first_bad.unwrap().0, 1, "{column}");
        sqlx::query(&format!(
            "UPDATE audit_events SET {column} = $1 WHERE seq = 1"
        ))
        .bind(before)
        .execute(&s.app.pool)
        .await
        .unwrap();
    }
    // The level columns that serve subtree queries must match the path.
    sqlx::query("UPDATE audit_events SET path_kreis = 'elsewhere' WHERE seq = 1")
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
        1
    );
    sqlx::query("UPDATE audit_events SET path_kreis = 'lk-luechow-dannenberg' WHERE seq = 1")
        .execute(&s.app.pool)
        .await
        .unwrap();
    // A forged digest that matches forged content breaks the chain instead.
    sqlx::query("UPDATE audit_events SET personal_digest = 'ff' WHERE seq = 2")
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
        2
    );
}

/// A node that signs a checkpoint every 10 events.
async fn checkpointing_server() -> TestServer {
    TestServer::start_with(|c| c.audit.checkpoint_every_events = 10).await
}

fn public_key() -> Vec<u8> {
    interkom_audit::CheckpointKey::from_base64(&checkpoint_key())
        .unwrap()
        .public_key()
        .to_vec()
}

#[tokio::test]
async fn signed_checkpoints_detect_a_rewritten_or_truncated_chain() {
    let s = checkpointing_server().await;
    for _ in 0..25 {
        cc_token(&s).await;
    }
    let keys = [public_key()];
    let report = interkom_audit::verify_with_keys(&s.app.pool, None, None, &keys, None)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 25);
    assert!(report.checkpoints >= 2, "{report:?}");
    let cps = interkom_audit::checkpoint::list(&s.app.pool, 0, i64::MAX)
        .await
        .unwrap();
    // Another key did not sign them.
    let other = interkom_audit::CheckpointKey::from_pkcs8(
        &interkom_audit::CheckpointKey::generate_pkcs8().unwrap(),
    )
    .unwrap()
    .public_key()
    .to_vec();
    let report = interkom_audit::verify_with_keys(&s.app.pool, None, None, &[other], None)
        .await
        .unwrap();
    assert_eq!(report.first_bad.unwrap().0, cps[0].seq);

    // Cutting off the tail and moving the head back keeps the chain
    // consistent, but a signed checkpoint names an event that is gone.
    let last = cps.last().unwrap().seq;
    let (seq, hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_events WHERE seq = $1")
            .bind(last - 3)
            .fetch_one(&s.app.pool)
            .await
            .unwrap();
    sqlx::query("DELETE FROM audit_events WHERE seq > $1")
        .bind(seq)
        .execute(&s.app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(hash)
        .execute(&s.app.pool)
        .await
        .unwrap();
    let report = interkom_audit::verify_with_keys(&s.app.pool, None, None, &keys, None)
        .await
        .unwrap();
    assert_eq!(report.first_bad.unwrap().0, seq + 1);
}

#[tokio::test]
async fn a_recomputed_chain_does_not_match_its_signed_checkpoints() {
    use interkom_audit::chain::Canonical;
    let s = checkpointing_server().await;
    for _ in 0..15 {
        cc_token(&s).await;
    }
    let first_cp = interkom_audit::checkpoint::list(&s.app.pool, 0, i64::MAX)
        .await
        .unwrap()[0]
        .seq;
    // Rewrite event 2 and recompute every hash after it, as someone with
    // write access to the database (but not the signing key) would.
    sqlx::query("UPDATE audit_events SET actor_client = 'forged' WHERE seq = 2")
        .execute(&s.app.pool)
        .await
        .unwrap();
    let rows = interkom_audit::query(
        &s.app.pool,
        &interkom_audit::AuditQuery {
            limit: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut rows: Vec<_> = rows.into_iter().rev().collect();
    let mut prev = rows[0].hash.clone();
    for row in rows.iter_mut().skip(1) {
        let c = Canonical::from(&*row);
        let hash = c.chain_hash(&prev, &c.personal_digest());
        sqlx::query("UPDATE audit_events SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(&prev)
            .bind(&hash)
            .bind(row.seq)
            .execute(&s.app.pool)
            .await
            .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&prev)
        .execute(&s.app.pool)
        .await
        .unwrap();
    // Every hash fits its predecessor again; the first signed checkpoint
    // after the forged event names a hash the chain no longer has.
    let report = interkom_audit::verify_with_keys(&s.app.pool, None, None, &[public_key()], None)
        .await
        .unwrap();
    let (seq, why) = report.first_bad.unwrap();
    assert_eq!(seq, first_cp, "{why}");
    assert!(why.contains("checkpoint"), "{why}");
}

#[tokio::test]
async fn source_addresses_can_be_recorded_as_keyed_hashes() {
    let s = TestServer::start_with(|c| {
        c.audit.source_pseudonymisation = interkom_gateway::SourcePseudonymisation::KeyedHash
    })
    .await;
    cc_token(&s).await;
    cc_token(&s).await;
    let events = s.audit("token_issued").await;
    let src = events[0].source.clone().unwrap();
    assert!(src.starts_with("h:") && !src.contains("127."), "{src}");
    assert_eq!(
        events[1].source.as_deref(),
        Some(src.as_str()),
        "the same source, the same pseudonym"
    );
}

#[tokio::test]
async fn without_a_durable_audit_event_no_token_is_issued() {
    let s = TestServer::start().await;
    cc_token(&s).await;
    // The audit table becomes unwritable behind the server's back.
    sqlx::query("ALTER TABLE audit_events RENAME TO audit_events_gone")
        .execute(&s.app.pool)
        .await
        .unwrap();
    let res = s
        .post_form(
            "/token",
            Some((KFZ, KFZ_SECRET)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let v = expect_oauth_error(res, 503, "temporarily_unavailable").await;
    assert!(v.get("access_token").is_none());
    // Once the store is back, so is the service, and the chain is whole.
    sqlx::query("ALTER TABLE audit_events_gone RENAME TO audit_events")
        .execute(&s.app.pool)
        .await
        .unwrap();
    cc_token(&s).await;
    let report = interkom_audit::verify(&s.app.pool, None, None)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 2);
}

/// Reads newline- or frame-separated messages until `want` seqs were seen.
async fn read_seqs(stream: &mut tokio::net::TcpStream, want: &[i64]) -> Vec<i64> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !want.iter().all(|w| seen.contains(w)) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("SIEM got the events in time")
            .unwrap();
        assert!(n > 0, "forwarder closed the connection");
        buf.push_str(std::str::from_utf8(&chunk[..n]).unwrap());
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
            seen.push(v["seq"].as_i64().unwrap());
        }
    }
    seen
}

#[tokio::test]
async fn the_siem_gets_every_event_and_catches_up_after_an_outage() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = TestServer::start_with(|c| {
        c.audit.forward = Some(interkom::config::ForwardFileConfig {
            target: addr.to_string(),
            format: interkom_audit::forward::ForwardFormat::JsonLines,
            hostname: "test".into(),
            max_backoff_seconds: 1,
            poll_ms: 20,
        })
    })
    .await;
    let (mut siem, _) = listener.accept().await.unwrap();
    for _ in 0..3 {
        cc_token(&s).await;
    }
    let seen = read_seqs(&mut siem, &[1, 2, 3]).await;
    assert_eq!(&seen[..3], &[1, 2, 3], "in order");
    // The SIEM goes down: grants go on, undelayed.
    drop(siem);
    drop(listener);
    let started = std::time::Instant::now();
    for _ in 0..3 {
        cc_token(&s).await;
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // Back up on the same address: the forwarder reconnects and catches up.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (mut siem, _) = tokio::time::timeout(std::time::Duration::from_secs(10), listener.accept())
        .await
        .expect("the forwarder reconnects")
        .unwrap();
    read_seqs(&mut siem, &[4, 5, 6]).await;
}

#[tokio::test]
async fn time_never_runs_backwards_and_time_ranges_are_exact() {
    let s = TestServer::start().await;
    for _ in 0..12 {
        cc_token(&s).await;
    }
    let mut all = interkom_audit::query(
        &s.app.pool,
        &interkom_audit::AuditQuery {
            limit: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    all.reverse();
    assert!(
        all.windows(2).all(|w| w[0].ts <= w[1].ts),
        "ts is monotonic along seq"
    );
    let (from, to) = (all[3].ts.clone(), all[8].ts.clone());
    let expected: Vec<i64> = all
        .iter()
        .filter(|e| e.ts >= from && e.ts < to)
        .map(|e| e.seq)
        .rev()
        .collect();
    let got: Vec<i64> = interkom_audit::query(
        &s.app.pool,
        &interkom_audit::AuditQuery {
            from_ts: Some(from.clone()),
            to_ts: Some(to.clone()),
            limit: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .iter()
    .map(|e| e.seq)
    .collect();
    assert_eq!(got, expected);
    assert!(!got.is_empty());
    // Empty ranges, and ranges beyond the trail.
    for (f, t) in [
        (to.clone(), from.clone()),
        (
            "2999-01-01T00:00:00.000000Z".into(),
            "3000-01-01T00:00:00.000000Z".into(),
        ),
    ] {
        let q = interkom_audit::AuditQuery {
            from_ts: Some(f),
            to_ts: Some(t),
            limit: 10,
            ..Default::default()
        };
        assert!(interkom_audit::query(&s.app.pool, &q)
            .await
            .unwrap()
            .is_empty());
    }
}
