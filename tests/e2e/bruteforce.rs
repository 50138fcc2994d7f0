//! Brute-force protection: growing delays, temporary lockout per account
//! and per source, shared by the nodes, audited, and no way to tell from
//! the answers whether an account exists or is locked.

use std::time::{Duration, Instant};

use interkom::FileConfig;

use crate::common::*;

fn details(e: &interkom_audit::StoredEvent) -> serde_json::Value {
    serde_json::from_str(&e.details).unwrap()
}

fn fast(c: &mut FileConfig) {
    c.brute_force.delay_after = 100;
    c.brute_force.lock_after = 4;
    c.brute_force.source_lock_after = 1_000;
}

/// One login attempt from a fresh browser; the status and the message shown.
async fn attempt(s: &TestServer, user: &str, password: &str) -> (u16, String) {
    let b = Browser::new();
    let (_, challenge) = pkce();
    let url = authorize_url(
        s,
        &[
            ("response_type", "code"),
            ("client_id", PORTAL),
            ("redirect_uri", PORTAL_REDIRECT),
            ("scope", "openid"),
            ("state", "s"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let form = b.open_login(s, &url).await;
    let res = b.submit(&form, user, password).await;
    let status = res.status().as_u16();
    let html = res.text().await.unwrap();
    (status, message(&html))
}

/// The login page's error message (the page without its per-request
/// tokens and the name echoed back).
fn message(html: &str) -> String {
    html.split("role=\"alert\"")
        .nth(1)
        .and_then(|r| r.split("</").next())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn an_account_locks_after_repeated_failures_on_any_node_and_unlocks_later() {
    let a = TestServer::start_with(fast).await;
    let issuer = a.issuer.clone();
    let b = TestServer::start_on(a.database_url.clone(), Some(a.kek.clone()), |c| {
        fast(c);
        c.issuer = issuer;
    })
    .await;
    let (status, wrong) = attempt(&a, CLERK_USER, "wrong").await;
    assert_eq!(status, 401);
    assert!(!wrong.is_empty(), "an error message is shown");
    // Failures counted across both nodes: 2 at A, 2 at B lock the account.
    attempt(&a, CLERK_USER, "wrong").await;
    attempt(&b, CLERK_USER, "wrong").await;
    attempt(&b, CLERK_USER, "wrong").await;
    let locked = a.audit("login_locked").await;
    assert_eq!(locked.len(), 1, "the lockout is audited once");
    assert_eq!(details(&locked[0])["scope"], "account");
    assert_eq!(details(&locked[0])["username"], CLERK_USER);
    // Now even the right password is refused, at either node, with the
    // same message as a wrong one.
    for s in [&a, &b] {
        let (status, msg) = attempt(s, CLERK_USER, CLERK_PASSWORD).await;
        assert_eq!((status, msg.as_str()), (401, wrong.as_str()));
    }
    assert_eq!(
        a.audit("login_failed").await[0].reason.as_deref(),
        Some("locked")
    );
    // Another account is not affected.
    assert_eq!(attempt(&a, ADMIN_USER, ADMIN_PASSWORD).await.0, 303);
    // After the lock time the right password works again.
    a.clock.advance(15 * 60 + 1);
    b.clock.advance(15 * 60 + 1);
    assert_eq!(attempt(&b, CLERK_USER, CLERK_PASSWORD).await.0, 303);
}

#[tokio::test]
async fn answers_do_not_tell_whether_an_account_exists_or_is_locked() {
    let s = TestServer::start_with(fast).await;
    let (s1, existing) = attempt(&s, CLERK_USER, "wrong").await;
    let (s2, unknown) = attempt(&s, "nobody.here", "wrong").await;
    assert_eq!((s1, &existing), (s2, &unknown));
    // A name that does not exist locks exactly like one that does.
    for _ in 0..3 {
        attempt(&s, "nobody.here", "wrong").await;
    }
    let locked = s.audit("login_locked").await;
    assert_eq!(locked.len(), 1);
    assert_eq!(details(&locked[0])["username"], "nobody.here");
    assert_eq!(
        attempt(&s, "nobody.here", "x").await,
        (s1, existing.clone())
    );
}

#[tokio::test]
async fn failures_wait_longer_and_longer() {
    let s = TestServer::start_with(|c| {
        c.brute_force.delay_after = 1;
        c.brute_force.delay_ms = 400;
        c.brute_force.lock_after = 100;
    })
    .await;
    let t = Instant::now();
    attempt(&s, CLERK_USER, "wrong").await;
    let first = t.elapsed();
    let _ = first;
    let t = Instant::now();
    attempt(&s, CLERK_USER, "wrong").await; // 400 ms
    attempt(&s, CLERK_USER, "wrong").await; // 800 ms
    let next_two = t.elapsed();
    assert!(
        next_two >= Duration::from_millis(1_200),
        "held back: {next_two:?} (first answer {first:?})"
    );
}

#[tokio::test]
async fn one_source_trying_many_names_is_locked_out() {
    let s = TestServer::start_with(|c| {
        c.brute_force.delay_after = 100;
        c.brute_force.lock_after = 100;
        c.brute_force.source_lock_after = 5;
    })
    .await;
    for i in 0..5 {
        attempt(&s, &format!("guess{i}"), "Sommer2026!").await;
    }
    let locked = s.audit("login_locked").await;
    assert_eq!(locked.len(), 1);
    assert_eq!(details(&locked[0])["scope"], "source");
    assert_eq!(
        locked[0].reason.as_deref(),
        Some("too_many_failures_from_source")
    );
    // From that source nobody gets in, until the lock ends.
    assert_eq!(attempt(&s, ADMIN_USER, ADMIN_PASSWORD).await.0, 401);
    s.clock.advance(15 * 60 + 1);
    assert_eq!(attempt(&s, ADMIN_USER, ADMIN_PASSWORD).await.0, 303);
}

#[tokio::test]
async fn a_locked_account_answers_as_slowly_as_the_failures_before_it() {
    let s = TestServer::start_with(|c| {
        c.brute_force.delay_after = 1;
        c.brute_force.delay_ms = 300;
        c.brute_force.lock_after = 3;
    })
    .await;
    for _ in 0..3 {
        attempt(&s, CLERK_USER, "wrong").await; // 0, 300, 600 ms; locked
    }
    assert_eq!(s.audit("login_locked").await.len(), 1);
    // Locked, with the right password: held back like a fourth failure,
    // so the lock cannot be told by a prompt answer.
    let t = Instant::now();
    assert_eq!(attempt(&s, CLERK_USER, CLERK_PASSWORD).await.0, 401);
    assert!(
        t.elapsed() >= Duration::from_millis(1_200),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn parallel_guesses_do_not_slip_past_the_limit() {
    let s = TestServer::start_with(|c| {
        c.brute_force.delay_after = 100;
        c.brute_force.lock_after = 3;
    })
    .await;
    // Eleven wrong guesses at once, then the right one while they are still
    // being checked: every attempt is counted before its password is, so at
    // most three get a real check and the right one is refused.
    let wrong: Vec<_> = (0..11)
        .map(|i| {
            let s = &s;
            async move { attempt(s, CLERK_USER, &format!("wrong{i}")).await.0 }
        })
        .collect();
    let right = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        attempt(&s, CLERK_USER, CLERK_PASSWORD).await.0
    };
    let (statuses, last) = tokio::join!(futures_util::future::join_all(wrong), right);
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(last, 401, "the right password came after the limit");
    let refused = s
        .audit("login_failed")
        .await
        .iter()
        .filter(|e| e.reason.as_deref() == Some("locked"))
        .count();
    assert!(refused >= 9, "{refused} of 12 refused without a check");
}

#[tokio::test]
async fn parallel_logins_with_the_right_password_lock_nothing() {
    let s = TestServer::start_with(|c| {
        c.brute_force.delay_after = 100;
        c.brute_force.lock_after = 1;
    })
    .await;
    // Twelve tabs at once: more than one in flight is refused, but the
    // right password gives its count back and locks nothing.
    let tabs: Vec<_> = (0..12)
        .map(|_| {
            let s = &s;
            async move { attempt(s, CLERK_USER, CLERK_PASSWORD).await.0 }
        })
        .collect();
    let statuses = futures_util::future::join_all(tabs).await;
    assert!(statuses.contains(&303), "{statuses:?}");
    assert!(statuses.contains(&401), "some were refused: {statuses:?}");
    assert!(s.audit("login_locked").await.is_empty());
    assert_eq!(attempt(&s, CLERK_USER, CLERK_PASSWORD).await.0, 303);
}
