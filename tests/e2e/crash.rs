//! Faults: `kill -9` under load, and two server processes appending to one
//! audit chain. Every event whose request got a success response must be
//! there, and the chain must verify.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::common::*;

async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Starts the real binary on `database_url`; returns it and its issuer.
async fn spawn_server(database_url: &str, kek: &str) -> (Child, String) {
    let port = free_port().await;
    let issuer = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_interkom"))
        .arg("serve")
        .current_dir(repo_root())
        .env("INTERKOM_CONFIG", repo_root().join("config/interkom.toml"))
        .env("INTERKOM_DATABASE_URL", database_url)
        .env("INTERKOM_KEY_ENCRYPTION_KEY", kek)
        .env("INTERKOM_AUDIT__CHECKPOINT_KEY", checkpoint_key())
        .env("INTERKOM_AUDIT__CHECKPOINT_EVERY_EVENTS", "100")
        .env("INTERKOM_LISTEN", format!("127.0.0.1:{port}"))
        .env("INTERKOM_ISSUER", &issuer)
        .env("INTERKOM_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = TestServer::http();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{issuer}/healthz")).send().await {
            if r.status() == 200 {
                return (child, issuer);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server did not become ready");
}

/// Client-credentials grants in `tasks` loops until the server goes away or
/// `max` grants are done; returns the jti of every token that was issued.
async fn load(issuer: &str, tasks: usize, max: usize) -> Vec<String> {
    load_counting(issuer, tasks, max, Default::default()).await
}

/// [`load`], counting the grants in `done` as they succeed.
async fn load_counting(
    issuer: &str,
    tasks: usize,
    max: usize,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<String> {
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let issuer = issuer.to_owned();
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            let http = TestServer::http();
            let mut jtis = Vec::new();
            for _ in 0..max / tasks {
                let res = http
                    .post(format!("{issuer}/token"))
                    .basic_auth(KFZ, Some(KFZ_SECRET))
                    .form(&[("grant_type", "client_credentials")])
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let Ok(res) = res else { break };
                if res.status() != 200 {
                    break;
                }
                let Ok(v) = res.json::<serde_json::Value>().await else {
                    break;
                };
                let at = v["access_token"].as_str().unwrap();
                jtis.push(jwt_payload(at)["jti"].as_str().unwrap().to_owned());
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            jtis
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

async fn audited_jtis(database_url: &str) -> (HashSet<String>, sqlx::AnyPool) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url).await.unwrap();
    let details: Vec<String> =
        sqlx::query_scalar("SELECT details FROM audit_events WHERE action = 'token_issued'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let jtis = details
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|d| d["jti"].as_str().map(str::to_owned))
        .collect();
    (jtis, pool)
}

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_event() {
    let db = fresh_database().await;
    let kek = interkom_directory::MasterKey::generate().to_base64();
    let (mut server, issuer) = spawn_server(&db, &kek).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let loader = tokio::spawn({
        let (issuer, done) = (issuer.clone(), done.clone());
        async move { load_counting(&issuer, 32, 200_000, done).await }
    });
    // Killed in the middle of the load: once it is well under way (by count,
    // not by time: a busy machine serves fewer grants per second).
    for _ in 0..600 {
        if done.load(std::sync::atomic::Ordering::Relaxed) >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.start_kill().unwrap(); // SIGKILL: no shutdown, no flush
    server.wait().await.unwrap();
    let acknowledged = loader.await.unwrap();
    assert!(
        acknowledged.len() > 100,
        "the load ran ({} grants)",
        acknowledged.len()
    );
    let (audited, pool) = audited_jtis(&db).await;
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|j| !audited.contains(*j))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged grants without an audit event",
        missing.len()
    );
    let report = interkom_audit::verify(&pool, None, None).await.unwrap();
    assert!(report.ok(), "{report:?}");
    // The next start carries on with the same chain.
    let (_server, issuer) = spawn_server(&db, &kek).await;
    assert!(!load(&issuer, 2, 10).await.is_empty());
    let report = interkom_audit::verify(&pool, None, None).await.unwrap();
    assert!(report.ok(), "{report:?}");
}

#[tokio::test]
async fn two_processes_append_to_one_gap_free_chain() {
    let db = fresh_database().await;
    let kek = interkom_directory::MasterKey::generate().to_base64();
    let (_a, issuer_a) = spawn_server(&db, &kek).await;
    let (_b, issuer_b) = spawn_server(&db, &kek).await;
    let (ja, jb) = tokio::join!(load(&issuer_a, 16, 800), load(&issuer_b, 16, 800));
    assert_eq!(ja.len() + jb.len(), 1600);
    let (audited, pool) = audited_jtis(&db).await;
    assert!(ja.iter().chain(&jb).all(|j| audited.contains(j)));
    let report = interkom_audit::verify_with_keys(
        &pool,
        None,
        None,
        &[
            interkom_audit::CheckpointKey::from_base64(&checkpoint_key())
                .unwrap()
                .public_key()
                .to_vec(),
        ],
        None,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 1600, "one chain, no gaps, nothing twice");
    assert!(report.checkpoints >= 10, "{report:?}");
}
