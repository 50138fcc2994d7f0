//! Faults under load: a node killed with SIGKILL, the database restarted.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::*;

/// What the load saw.
#[derive(Default)]
struct Seen {
    /// jtis of every token a success response carried.
    issued: Vec<String>,
    /// Successful redemptions per code.
    redeemed: HashMap<String, usize>,
    /// Successes after the fault.
    after_fault: usize,
    errors: usize,
    /// 500s: an outage must answer 503 (retry), never "internal error".
    server_errors: usize,
}

/// Client-credentials grants (`cc` tasks) and full logins (`logins` tasks)
/// through the balancer until `stop`; a failed request is retried (a code's
/// redemption with the same code), as a client would.
async fn load(
    cluster: &Arc<Cluster>,
    cc: usize,
    logins: usize,
    stop: &Arc<AtomicBool>,
    fault: &Arc<AtomicBool>,
) -> Seen {
    let mut tasks = Vec::new();
    for t in 0..cc + logins {
        let (cluster, stop, fault) = (Arc::clone(cluster), Arc::clone(stop), Arc::clone(fault));
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut turn = 0usize;
            while !stop.load(Ordering::Relaxed) {
                turn += 1;
                let ok = if t < cc {
                    match cc_grant(&cluster).await {
                        Ok(jti) => {
                            seen.issued.push(jti);
                            true
                        }
                        Err(e) => {
                            seen.server_errors += usize::from(e.starts_with("500"));
                            false
                        }
                    }
                } else {
                    login_round(&cluster, turn, &mut seen).await
                };
                if ok {
                    seen.after_fault += usize::from(fault.load(Ordering::Relaxed));
                } else {
                    seen.errors += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            seen
        }));
    }
    let mut all = Seen::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.issued.extend(s.issued);
        for (c, n) in s.redeemed {
            *all.redeemed.entry(c).or_default() += n;
        }
        all.after_fault += s.after_fault;
        all.errors += s.errors;
        all.server_errors += s.server_errors;
    }
    all
}

/// One login at two nodes of the balancer's choice and the redemption of its
/// code, retried with the same code until it succeeds or the node says the
/// code is spent.
async fn login_round(cluster: &Arc<Cluster>, turn: usize, seen: &mut Seen) -> bool {
    let b = Browser::new();
    let (page, post) = (cluster.pick(), cluster.pick());
    let Ok((code, verifier, nonce)) =
        login_code(cluster, &b, page, post, CLERK_USER, CLERK_PASSWORD).await
    else {
        return false;
    };
    for _ in 0..20 {
        match redeem(cluster, &code, &verifier, &nonce).await {
            Ok(jti) => {
                seen.issued.push(jti);
                *seen.redeemed.entry(code.clone()).or_default() += 1;
                // A client that lost the response may try again: refused.
                if turn.is_multiple_of(4) {
                    let again = redeem(cluster, &code, &verifier, &nonce).await;
                    if let Ok(jti) = again {
                        seen.issued.push(jti);
                        *seen.redeemed.entry(code).or_default() += 1;
                    }
                }
                return true;
            }
            Err(e) if e == "invalid_grant" => return false,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    false
}

async fn check_after(cluster: &Arc<Cluster>, seen: &Seen) {
    eprintln!(
        "load: {} tokens, {} codes redeemed, {} successes after the fault, {} failed requests",
        seen.issued.len(),
        seen.redeemed.len(),
        seen.after_fault,
        seen.errors
    );
    assert!(
        seen.after_fault > 20,
        "the load went on: {}",
        seen.after_fault
    );
    let twice: Vec<_> = seen.redeemed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "codes redeemed twice: {twice:?}");
    assert!(!seen.redeemed.is_empty(), "logins ran");
    let pool = pool(cluster).await;
    let audited = audited_jtis(&pool).await;
    let missing: Vec<_> = seen
        .issued
        .iter()
        .filter(|j| !audited.contains(*j))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged tokens have no audit event",
        missing.len(),
        seen.issued.len()
    );
    let unique: HashSet<_> = seen.issued.iter().collect();
    assert_eq!(unique.len(), seen.issued.len(), "no token issued twice");
    audit_verify(cluster).await;
}

#[tokio::test]
#[ignore = "cluster test: run by scripts/test (PostgreSQL, one at a time)"]
async fn kill_9_of_a_node_under_load_loses_nothing_acknowledged() {
    let cluster = Cluster::start(3).await;
    let (stop, fault) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let loader = tokio::spawn({
        let (cluster, stop, fault) = (Arc::clone(&cluster), stop.clone(), fault.clone());
        async move { load(&cluster, 8, 3, &stop, &fault).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.kill(1).await;
    fault.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = loader.await.unwrap();
    // Only requests in flight at the kill can have failed: the balancer
    // sends everything after it to the two nodes left.
    assert!(seen.errors <= 11 * 2, "{} failed requests", seen.errors);
    check_after(&cluster, &seen).await;
    assert_eq!(cluster.ready().await[1], None, "the killed node is gone");
}

/// Runs `pg_ctlcluster` for the test server (or `INTERKOM_TEST_PG_CTL`,
/// a command that takes `start` or `stop`).
fn pg_ctl(action: &str) {
    let status = match std::env::var("INTERKOM_TEST_PG_CTL") {
        Ok(cmd) => std::process::Command::new("sh")
            .args(["-c", &format!("{cmd} {action}")])
            .status(),
        Err(_) => {
            // The newest installed version, as scripts/test starts it.
            let version = std::fs::read_dir("/etc/postgresql")
                .expect("a Debian PostgreSQL cluster (or set INTERKOM_TEST_PG_CTL)")
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse::<f64>().ok())
                .max_by(f64::total_cmp)
                .unwrap()
                .to_string();
            let mut c = std::process::Command::new("pg_ctlcluster");
            c.args(["--skip-systemctl-redirect", &version, "main", action]);
            if action == "stop" {
                c.args(["-m", "fast"]);
            }
            c.status()
        }
    };
    if !status.is_ok_and(|s| s.success()) {
        // Not a panic: this also runs from a destructor during one.
        eprintln!("pg_ctl {action} failed");
    }
}

/// Starts PostgreSQL again even when the test fails half-way.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let up = std::process::Command::new("pg_isready")
            .args(["-q", "-h", "127.0.0.1", "-p", "5432"])
            .status()
            .is_ok_and(|s| s.success());
        if !up {
            pg_ctl("start");
        }
    }
}

#[tokio::test]
#[ignore = "cluster test: run by scripts/test (PostgreSQL, one at a time)"]
async fn a_postgres_restart_makes_nodes_unready_and_they_recover_alone() {
    let cluster = Cluster::start(3).await;
    // A session from before the outage.
    let browser = Browser::new();
    let (code, verifier, nonce) = login_code(&cluster, &browser, 0, 1, CLERK_USER, CLERK_PASSWORD)
        .await
        .unwrap();
    redeem(&cluster, &code, &verifier, &nonce).await.unwrap();
    let (stop, fault) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let loader = tokio::spawn({
        let (cluster, stop, fault) = (Arc::clone(&cluster), stop.clone(), fault.clone());
        async move { load(&cluster, 6, 2, &stop, &fault).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    let _guard = RestartOnDrop;
    pg_ctl("stop");
    let down = Instant::now();
    let unready = AtomicUsize::new(0);
    while down.elapsed() < Duration::from_secs(10) {
        let r = cluster.ready().await;
        if r.iter().all(|s| *s == Some(503)) {
            unready.store(1, Ordering::Relaxed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        unready.load(Ordering::Relaxed),
        1,
        "every node turned unready"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg_ctl("start");
    let up = Instant::now();
    loop {
        if cluster.ready().await.iter().all(|s| *s == Some(200)) {
            break;
        }
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "nodes still unready: {:?}",
            cluster.ready().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fault.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = loader.await.unwrap();
    assert!(seen.errors > 0, "the outage was felt");
    assert_eq!(seen.server_errors, 0, "an outage answers 503, not 500");
    check_after(&cluster, &seen).await;
    // The session from before the outage still signs in without a password.
    let res = browser.get(&cluster.authorize_at(2).await).await;
    assert_eq!(res.status(), 303, "the session survived the restart");
}
