//! The store's conformance suite, in the manner of dex's storage tests: one
//! set of cases, each the contract of a store operation, run against both
//! backends — `store::conformance::sqlite::*` and
//! `store::conformance::postgres::*`.
//!
//! Every case gets a fresh, empty database with the migrations applied
//! (the policy's, for tenants, then the gateway's), removed at the end
//! whether the case passed or not: a file under the temporary directory
//! for SQLite; for PostgreSQL (`INTERKOM_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432`) a schema of its own in the
//! database `interkom_store_conformance` (created when missing), which the
//! case's connections see alone. A schema, not a database, because
//! PostgreSQL's `DROP DATABASE` forces an immediate checkpoint and waits
//! for it: on a server where other suites have left many databases that
//! takes over a minute, a schema goes in milliseconds.
//!
//! The PostgreSQL half runs whenever the server answers; when it does not,
//! it is skipped with a note, unless `INTERKOM_TEST_DB=postgres` asks for
//! it, which makes that a failure.
//!
//! Run one case on both backends: `cargo nextest run -p interkom-gateway
//! conformance::` and the case's name.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use interkom_types::Alg;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use super::logins::StoredLoginRequest;
use super::tokens::RefreshTokenView;
use super::*;

/// A time all cases start from (unix seconds).
const NOW: i64 = 1_700_000_000;

/// Generates, for every case, one test per backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::on_sqlite(super::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::on_postgres(super::$case).await;
                }
            )*
        }
    };
}

conformance!(
    sessions_are_found_by_handle_until_they_expire,
    a_step_up_moves_a_live_session_to_a_new_handle,
    ending_a_session_returns_its_user_once,
    ending_the_sessions_of_a_user_returns_their_sids,
    sessions_are_seen_from_a_transaction,
    codes_are_stored_and_redeemed_once,
    of_two_concurrent_redemptions_one_wins,
    refresh_tokens_rotate_once,
    concurrent_rotations_commit_together_and_each_token_once,
    token_families_are_revoked_by_id_session_and_user,
    access_tokens_and_client_assertions_are_recorded_once,
    login_requests_are_saved_loaded_and_expire,
    login_requests_are_used_up_once,
    upstream_logins_are_taken_once,
    ceremonies_are_taken_once,
    brute_force_counts_within_a_window,
    brute_force_locks_are_set_once,
    logout_deliveries_are_queued_once_per_client,
    logout_deliveries_are_claimed_once_and_recorded,
    signing_keys_are_stored_retired_and_listed,
    purge_removes_only_what_expired,
);

// ---------------------------------------------------------------- backends

/// Runs `case` on a fresh SQLite file, removed afterwards.
async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    sqlx::any::install_default_drivers();
    let dir = std::env::temp_dir().join("interkom-tests");
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join(format!("store_{}.db", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    // As the binary connects: several connections, WAL.
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .expect("SQLite opens");
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&pool)
        .await
        .expect("WAL");
    let outcome = run(&pool, case).await;
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The PostgreSQL database the cases' schemas live in.
const PG_DATABASE: &str = "interkom_store_conformance";

/// Runs `case` in a schema created for it, dropped afterwards.
async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    sqlx::any::install_default_drivers();
    let base = std::env::var("INTERKOM_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let required = std::env::var("INTERKOM_TEST_DB").as_deref() == Ok("postgres");
    let server = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&format!("{base}/postgres"))
        .await;
    let server = match server {
        Ok(p) => p,
        Err(e) if !required => {
            eprintln!(
                "note: PostgreSQL at {base} does not answer ({e}); the PostgreSQL half is skipped \
                 (INTERKOM_TEST_DB=postgres makes this a failure)"
            );
            return;
        }
        Err(e) => panic!("PostgreSQL at {base} does not answer: {e}"),
    };
    // Created by the first case that finds it missing (a parallel case may
    // create it first).
    let exists = "SELECT 1 FROM pg_database WHERE datname = $1";
    let found: Option<i32> = sqlx::query_scalar(exists)
        .bind(PG_DATABASE)
        .fetch_optional(&server)
        .await
        .expect("pg_database");
    if found.is_none() {
        let created = sqlx::query(&format!("CREATE DATABASE {PG_DATABASE}"))
            .execute(&server)
            .await;
        let found: Option<i32> = sqlx::query_scalar(exists)
            .bind(PG_DATABASE)
            .fetch_optional(&server)
            .await
            .expect("pg_database");
        if let (Err(e), None) = (created, found) {
            panic!("CREATE DATABASE {PG_DATABASE}: {e}");
        }
    }
    server.close().await;

    let url = format!("{base}/{PG_DATABASE}");
    let scratch = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("the conformance database answers");
    let schema = format!("ik_store_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&scratch)
        .await
        .expect("CREATE SCHEMA");
    // Every connection of the case sees its schema only.
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .connect(&format!("{url}?options[search_path]={schema}"))
        .await
        .expect("the case's schema answers");
    let outcome = run(&pool, case).await;
    pool.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&scratch)
        .await
        .expect("DROP SCHEMA");
    scratch.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Migrates, seeds and runs the case, catching its panic so the caller
/// can clean up first.
async fn run<F, Fut>(pool: &AnyPool, case: F) -> std::thread::Result<()>
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    AssertUnwindSafe(async {
        interkom_policy::migrate(pool)
            .await
            .expect("policy migrations");
        migrate(pool).await.expect("gateway migrations");
        seed(pool).await;
        case(Store::new(pool.clone())).await;
    })
    .catch_unwind()
    .await
}

/// What the gateway's tables refer to, owned by other contexts: a tenant,
/// two accounts, a client that asked for back-channel logout and one that
/// did not.
async fn seed(pool: &AnyPool) {
    for sql in [
        "INSERT INTO tenants (id, name, level, parent, path) VALUES ('lk', 'Landkreis', 'kreis', NULL, '/lk/')",
        "INSERT INTO users (id, tenant, username, password_hash, name, email, disabled, created_at) \
         VALUES ('u1', 'lk', 'jan.meyer', NULL, NULL, NULL, 0, 0)",
        "INSERT INTO users (id, tenant, username, password_hash, name, email, disabled, created_at) \
         VALUES ('u2', 'lk', 'eva.schulz', NULL, NULL, NULL, 0, 0)",
        "INSERT INTO clients (id, tenant, name, redirect_uris, post_logout_redirect_uris, grant_types, scopes, \
         auth_method, secret_hash, jwks, id_token_alg, first_party, created_at, backchannel_logout_uri) \
         VALUES ('rp', 'lk', 'RP', '[]', '[]', '[]', '[]', 'none', NULL, NULL, 'RS256', 0, 0, 'https://rp.example/bcl')",
        "INSERT INTO clients (id, tenant, name, redirect_uris, post_logout_redirect_uris, grant_types, scopes, \
         auth_method, secret_hash, jwks, id_token_alg, first_party, created_at, backchannel_logout_uri) \
         VALUES ('quiet', 'lk', 'Quiet', '[]', '[]', '[]', '[]', 'none', NULL, NULL, 'RS256', 0, 0, NULL)",
    ] {
        sqlx::query(sql).execute(pool).await.expect(sql);
    }
}

// ---------------------------------------------------------------- helpers

fn session(sid: &str, user_id: &str, expires_at: i64) -> Session {
    Session {
        sid: sid.into(),
        user_id: user_id.into(),
        auth_time: NOW - 10,
        acr: "urn:interkom:loa:low".into(),
        amr: r#"["pwd"]"#.into(),
        expires_at,
        upstream: None,
    }
}

/// Creates a session with this handle hash, committed.
async fn add_session(store: &Store, handle_hash: &str, s: &Session) {
    let mut tx = store.begin().await.unwrap();
    store
        .insert_session(&mut tx, handle_hash, s, NOW, Default::default())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Creates a token family, committed.
async fn add_family(store: &Store, id: &str, client_id: &str, user_id: &str, sid: &str) {
    let mut tx = store.begin().await.unwrap();
    let f = TokenFamily {
        id,
        client_id,
        user_id,
        sid,
    };
    store.insert_family(&mut tx, &f, NOW).await.unwrap();
    tx.commit().await.unwrap();
}

fn code(family_id: &str) -> AuthCode {
    AuthCode {
        client_id: "rp".into(),
        redirect_uri: "https://rp.example/cb".into(),
        user_id: "u1".into(),
        sid: "s1".into(),
        scope: "openid profile".into(),
        nonce: Some("n-0S6".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        auth_time: NOW - 10,
        acr: "urn:interkom:loa:substantial".into(),
        amr: r#"["pwd","otp"]"#.into(),
        family_id: family_id.into(),
        expires_at: NOW + 60,
        used_at: None,
    }
}

fn rotation(used: &str, next: &str, family_id: &str, at: i64) -> Rotation {
    Rotation {
        used: used.into(),
        at,
        next: refresh(next, family_id),
    }
}

fn refresh(hash: &str, family_id: &str) -> NewRefreshToken {
    NewRefreshToken {
        hash: hash.into(),
        family_id: family_id.into(),
        client_id: "rp".into(),
        user_id: "u1".into(),
        sid: "s1".into(),
        scope: "openid offline_access".into(),
        auth_time: NOW - 10,
        acr: "urn:interkom:loa:low".into(),
        amr: r#"["pwd"]"#.into(),
        expires_at: NOW + 3600,
    }
}

/// Redeems a code in a transaction of its own, as the token endpoint does.
async fn redeem(store: &Store, code_hash: &str) -> bool {
    let mut tx = store.begin().await.unwrap();
    let won = store.use_up_code(&mut tx, code_hash, NOW).await.unwrap();
    tx.commit().await.unwrap();
    won
}

// ---------------------------------------------------------------- sessions

async fn sessions_are_found_by_handle_until_they_expire(store: Store) {
    let mut s = session("s1", "u1", NOW + 100);
    s.upstream = Some("hitzacker-idp".into());
    add_session(&store, "h1", &s).await;
    assert_eq!(store.session("h1", NOW).await.unwrap(), Some(s.clone()));
    assert_eq!(store.session("h1", NOW + 99).await.unwrap(), Some(s));
    // Expired at its `expires_at`, though the row is still there.
    assert_eq!(store.session("h1", NOW + 100).await.unwrap(), None);
    assert_eq!(store.session("other", NOW).await.unwrap(), None);
}

async fn a_step_up_moves_a_live_session_to_a_new_handle(store: Store) {
    add_session(&store, "old", &session("s1", "u1", NOW + 100)).await;
    let up = StepUp {
        sid: "s1",
        user_id: "u1",
        handle_hash: "new",
        acr: "urn:interkom:loa:substantial",
        amr: r#"["pwd","otp"]"#,
        auth_time: NOW,
        upstream: None,
    };
    let mut tx = store.begin().await.unwrap();
    let stepped = store.step_up_session(&mut tx, &up, NOW).await.unwrap();
    tx.commit().await.unwrap();
    let expected = Session {
        sid: "s1".into(),
        user_id: "u1".into(),
        auth_time: NOW,
        acr: "urn:interkom:loa:substantial".into(),
        amr: r#"["pwd","otp"]"#.into(),
        // RETURNING: the session keeps its end.
        expires_at: NOW + 100,
        upstream: None,
    };
    assert_eq!(stepped, Some(expected.clone()));
    assert_eq!(store.session("old", NOW).await.unwrap(), None);
    assert_eq!(store.session("new", NOW).await.unwrap(), Some(expected));

    // Not another user's session, not an expired one, not an ended one.
    let mut conn = store.acquire().await.unwrap();
    let other = StepUp {
        user_id: "u2",
        handle_hash: "x",
        ..up
    };
    assert_eq!(
        store.step_up_session(&mut conn, &other, NOW).await.unwrap(),
        None
    );
    let late = StepUp {
        handle_hash: "y",
        ..up
    };
    assert_eq!(
        store
            .step_up_session(&mut conn, &late, NOW + 100)
            .await
            .unwrap(),
        None
    );
    store.end_session(&mut conn, "s1").await.unwrap();
    let gone = StepUp {
        handle_hash: "z",
        ..up
    };
    assert_eq!(
        store.step_up_session(&mut conn, &gone, NOW).await.unwrap(),
        None
    );
    assert_eq!(store.session("new", NOW).await.unwrap(), None);
}

async fn ending_a_session_returns_its_user_once(store: Store) {
    add_session(&store, "h1", &session("s1", "u1", NOW + 100)).await;
    let mut tx = store.begin().await.unwrap();
    store
        .set_upstream_token(&mut tx, "s1", "sealed")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.upstream_token("s1").await.unwrap().as_deref(),
        Some("sealed")
    );

    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        store.end_session(&mut tx, "s1").await.unwrap().as_deref(),
        Some("u1")
    );
    tx.commit().await.unwrap();
    let mut conn = store.acquire().await.unwrap();
    assert_eq!(store.end_session(&mut conn, "s1").await.unwrap(), None);
    assert_eq!(store.session("h1", NOW).await.unwrap(), None);
    assert_eq!(store.upstream_token("s1").await.unwrap(), None);
}

async fn ending_the_sessions_of_a_user_returns_their_sids(store: Store) {
    add_session(&store, "h1", &session("s1", "u1", NOW + 100)).await;
    add_session(&store, "h2", &session("s2", "u1", NOW + 100)).await;
    add_session(&store, "h3", &session("s3", "u2", NOW + 100)).await;
    let mut tx = store.begin().await.unwrap();
    let mut sids = store.end_sessions_of(&mut tx, "u1").await.unwrap();
    tx.commit().await.unwrap();
    sids.sort();
    assert_eq!(sids, ["s1", "s2"]);
    assert_eq!(store.session("h1", NOW).await.unwrap(), None);
    assert_eq!(store.session("h2", NOW).await.unwrap(), None);
    assert!(store.session("h3", NOW).await.unwrap().is_some());
    let mut conn = store.acquire().await.unwrap();
    assert!(store
        .end_sessions_of(&mut conn, "u1")
        .await
        .unwrap()
        .is_empty());
}

async fn sessions_are_seen_from_a_transaction(store: Store) {
    let mut tx = store.begin().await.unwrap();
    assert!(!store.session_exists(&mut tx, "s1").await.unwrap());
    store
        .insert_session(
            &mut tx,
            "h1",
            &session("s1", "u1", NOW + 100),
            NOW,
            Default::default(),
        )
        .await
        .unwrap();
    assert!(store.session_exists(&mut tx, "s1").await.unwrap());
    // Rolled back: nothing stays.
    drop(tx);
    let mut conn = store.acquire().await.unwrap();
    assert!(!store.session_exists(&mut conn, "s1").await.unwrap());
    assert_eq!(store.session("h1", NOW).await.unwrap(), None);
}

// ---------------------------------------------------------------- codes

async fn codes_are_stored_and_redeemed_once(store: Store) {
    let c = code("f1");
    let mut conn = store.acquire().await.unwrap();
    store.insert_code(&mut conn, "c1", &c).await.unwrap();
    drop(conn);
    assert_eq!(store.code("c1").await.unwrap(), Some(c.clone()));
    assert_eq!(store.code("c2").await.unwrap(), None);

    assert!(redeem(&store, "c1").await);
    // The second redemption finds nothing to use up: a replay.
    assert!(!redeem(&store, "c1").await);
    assert!(!redeem(&store, "unknown").await);
    let used = store.code("c1").await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(NOW));
    assert_eq!(
        AuthCode {
            used_at: None,
            ..used
        },
        c
    );
}

async fn of_two_concurrent_redemptions_one_wins(store: Store) {
    for i in 0..4 {
        let hash = format!("c{i}");
        let mut conn = store.acquire().await.unwrap();
        store
            .insert_code(&mut conn, &hash, &code(&format!("f{i}")))
            .await
            .unwrap();
        drop(conn);
        let (a, b) = tokio::join!(redeem(&store, &hash), redeem(&store, &hash));
        assert!(a ^ b, "exactly one redemption wins ({a}, {b})");
    }
}

// ---------------------------------------------------------------- tokens

async fn refresh_tokens_rotate_once(store: Store) {
    add_family(&store, "f1", "rp", "u1", "s1").await;
    let r = refresh("r1", "f1");
    let mut tx = store.begin().await.unwrap();
    store.insert_refresh_token(&mut tx, &r).await.unwrap();
    tx.commit().await.unwrap();

    let stored = store.refresh_token("r1").await.unwrap().unwrap();
    assert_eq!(
        stored,
        RefreshToken {
            family_id: "f1".into(),
            client_id: "rp".into(),
            user_id: "u1".into(),
            sid: "s1".into(),
            scope: "openid offline_access".into(),
            auth_time: NOW - 10,
            acr: "urn:interkom:loa:low".into(),
            amr: r#"["pwd"]"#.into(),
            expires_at: NOW + 3600,
            used_at: None,
            family_revoked_at: None,
        }
    );
    assert_eq!(store.refresh_token("r2").await.unwrap(), None);
    assert_eq!(
        store.refresh_token_family("r1").await.unwrap(),
        Some(("f1".into(), "rp".into()))
    );
    assert_eq!(store.refresh_token_family("r2").await.unwrap(), None);

    // Rotation: the old token is used up and its successor stored, in one
    // transaction.
    assert!(store
        .rotate_refresh_token(rotation("r1", "r2", "f1", NOW + 5))
        .await
        .unwrap());
    // Reuse: the rotated token cannot be used up again, and its would-be
    // successor is not stored.
    assert!(!store
        .rotate_refresh_token(rotation("r1", "r2b", "f1", NOW + 6))
        .await
        .unwrap());
    assert_eq!(store.refresh_token("r2b").await.unwrap(), None);
    assert_eq!(
        store.refresh_token("r1").await.unwrap().unwrap().used_at,
        Some(NOW + 5)
    );
    let view = store.refresh_token_view("r1").await.unwrap().unwrap();
    assert_eq!(
        view,
        RefreshTokenView {
            client_id: "rp".into(),
            user_id: "u1".into(),
            scope: "openid offline_access".into(),
            expires_at: NOW + 3600,
            used_at: Some(NOW + 5),
            revoked_at: None,
        }
    );
    assert!(store
        .refresh_token_view("r2")
        .await
        .unwrap()
        .is_some_and(|v| v.used_at.is_none()));
    assert_eq!(store.refresh_token_view("r3").await.unwrap(), None);
}

async fn concurrent_rotations_commit_together_and_each_token_once(store: Store) {
    add_family(&store, "f1", "rp", "u1", "s1").await;
    let mut tx = store.begin().await.unwrap();
    for i in 0..40 {
        store
            .insert_refresh_token(&mut tx, &refresh(&format!("old{i}"), "f1"))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    // Forty tokens rotated at once, and the first of them three more times
    // by as many thieves: the writer batches them, each keeps its outcome.
    let mut all = Vec::new();
    for i in 0..40 {
        all.push(rotation(
            &format!("old{i}"),
            &format!("new{i}"),
            "f1",
            NOW + 1,
        ));
    }
    for t in 0..3 {
        all.push(rotation("old0", &format!("stolen{t}"), "f1", NOW + 2));
    }
    let outcomes =
        futures_util::future::join_all(all.into_iter().map(|r| store.rotate_refresh_token(r)))
            .await;
    let won: usize = outcomes.iter().filter(|o| matches!(o, Ok(true))).count();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(won, 40, "each of the 40 tokens rotates exactly once");
    let mut successors = 0;
    for i in 0..40 {
        assert!(store
            .refresh_token(&format!("old{i}"))
            .await
            .unwrap()
            .unwrap()
            .used_at
            .is_some());
        successors += usize::from(
            store
                .refresh_token(&format!("new{i}"))
                .await
                .unwrap()
                .is_some(),
        );
    }
    let mut stolen = 0;
    for t in 0..3 {
        let successor = store.refresh_token_family(&format!("stolen{t}")).await;
        stolen += usize::from(successor.unwrap().is_some());
    }
    // old0 went to exactly one of its four claimants.
    assert_eq!(successors + stolen, 40);
    // The family's revocation is read with the token.
    store.revoke_family("f1", NOW + 9).await.unwrap();
    assert_eq!(
        store
            .refresh_token("old1")
            .await
            .unwrap()
            .unwrap()
            .family_revoked_at,
        Some(NOW + 9)
    );
}

async fn token_families_are_revoked_by_id_session_and_user(store: Store) {
    add_family(&store, "f1", "rp", "u1", "s1").await;
    add_family(&store, "f2", "quiet", "u1", "s1").await;
    add_family(&store, "f3", "rp", "u1", "s2").await;
    add_family(&store, "f4", "rp", "u2", "s3").await;
    let mut tx = store.begin().await.unwrap();
    store
        .insert_refresh_token(&mut tx, &refresh("r1", "f1"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for f in ["f1", "f2", "f3", "f4"] {
        assert!(store.family_is_live(f).await.unwrap(), "{f}");
    }
    assert!(!store.family_is_live("unknown").await.unwrap());

    // By id; a second revocation keeps the first time.
    store.revoke_family("f1", NOW + 1).await.unwrap();
    store.revoke_family("f1", NOW + 2).await.unwrap();
    assert!(!store.family_is_live("f1").await.unwrap());
    assert_eq!(
        store
            .refresh_token_view("r1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(NOW + 1)
    );

    // By session: f2 (f1 is revoked already).
    let mut tx = store.begin().await.unwrap();
    store
        .revoke_families_of_session(&mut tx, "s1", NOW + 3)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(!store.family_is_live("f2").await.unwrap());
    assert!(store.family_is_live("f3").await.unwrap());
    assert_eq!(
        store
            .refresh_token_view("r1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(NOW + 1)
    );

    // By user: f3, not another user's f4.
    let mut tx = store.begin().await.unwrap();
    store
        .revoke_families_of_user(&mut tx, "u1", NOW + 4)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(!store.family_is_live("f3").await.unwrap());
    assert!(store.family_is_live("f4").await.unwrap());
}

async fn access_tokens_and_client_assertions_are_recorded_once(store: Store) {
    assert!(!store.access_token_revoked("jti-1").await.unwrap());
    store.revoke_access_token("jti-1", NOW + 300).await.unwrap();
    // A second revocation is no error.
    store.revoke_access_token("jti-1", NOW + 600).await.unwrap();
    assert!(store.access_token_revoked("jti-1").await.unwrap());
    assert!(!store.access_token_revoked("jti-2").await.unwrap());

    assert!(store
        .first_client_assertion("rp|a1", NOW + 60)
        .await
        .unwrap());
    // A replayed assertion.
    assert!(!store
        .first_client_assertion("rp|a1", NOW + 60)
        .await
        .unwrap());
    assert!(store
        .first_client_assertion("quiet|a1", NOW + 60)
        .await
        .unwrap());
}

// ---------------------------------------------------------------- logins

async fn login_requests_are_saved_loaded_and_expire(store: Store) {
    store
        .insert_login_request(&NewLoginRequest {
            id: "lr1",
            browser_hash: "b1",
            params: r#"{"client_id":"rp"}"#,
            expires_at: NOW + 600,
            pending: None,
        })
        .await
        .unwrap();
    store
        .insert_login_request(&NewLoginRequest {
            id: "lr2",
            browser_hash: "b2",
            params: "{}",
            expires_at: NOW + 600,
            pending: Some(r#"{"user_id":"u2"}"#),
        })
        .await
        .unwrap();
    assert_eq!(
        store.login_request("lr1", NOW).await.unwrap(),
        Some(StoredLoginRequest {
            params: r#"{"client_id":"rp"}"#.into(),
            pending: None,
        })
    );
    assert_eq!(
        store
            .login_request("lr2", NOW)
            .await
            .unwrap()
            .and_then(|r| r.pending)
            .as_deref(),
        Some(r#"{"user_id":"u2"}"#)
    );
    assert_eq!(
        store.login_request_browser("lr1", NOW).await.unwrap(),
        Some("b1".into())
    );
    store
        .save_login("lr1", r#"{"user_id":"u1"}"#)
        .await
        .unwrap();
    assert_eq!(
        store
            .login_request("lr1", NOW)
            .await
            .unwrap()
            .and_then(|r| r.pending)
            .as_deref(),
        Some(r#"{"user_id":"u1"}"#)
    );
    // Expired at `expires_at`.
    assert_eq!(store.login_request("lr1", NOW + 600).await.unwrap(), None);
    assert_eq!(
        store.login_request_browser("lr1", NOW + 600).await.unwrap(),
        None
    );
    assert_eq!(store.login_request("unknown", NOW).await.unwrap(), None);
    assert_eq!(
        store.login_request_browser("unknown", NOW).await.unwrap(),
        None
    );
}

async fn login_requests_are_used_up_once(store: Store) {
    for id in ["lr1", "lr2"] {
        store
            .insert_login_request(&NewLoginRequest {
                id,
                browser_hash: "b",
                params: "{}",
                expires_at: NOW + 600,
                pending: None,
            })
            .await
            .unwrap();
    }
    let mut tx = store.begin().await.unwrap();
    assert!(store.take_login_request(&mut tx, "lr1").await.unwrap());
    tx.commit().await.unwrap();
    // A second submission of the same form finds nothing.
    let mut tx = store.begin().await.unwrap();
    assert!(!store.take_login_request(&mut tx, "lr1").await.unwrap());
    drop(tx);
    assert_eq!(store.login_request("lr1", NOW).await.unwrap(), None);

    store.discard_login_request("lr2").await.unwrap();
    store.discard_login_request("lr2").await.unwrap();
    assert_eq!(store.login_request("lr2", NOW).await.unwrap(), None);
}

async fn upstream_logins_are_taken_once(store: Store) {
    let sent = UpstreamLogin {
        login_request: "lr1".into(),
        upstream: "hitzacker-idp".into(),
        browser_hash: "b1".into(),
        secrets_enc: "sealed".into(),
        expires_at: NOW + 600,
    };
    store.insert_upstream_login("st1", &sent).await.unwrap();
    assert!(store.take_upstream_login("st1").await.unwrap() == Some(sent));
    // A replayed answer finds nothing.
    assert!(store.take_upstream_login("st1").await.unwrap().is_none());
    assert!(store
        .take_upstream_login("unknown")
        .await
        .unwrap()
        .is_none());
}

async fn ceremonies_are_taken_once(store: Store) {
    let c = Ceremony {
        user_id: "u1".into(),
        state: r#"{"rs":{}}"#.into(),
        expires_at: NOW + 300,
    };
    store.insert_ceremony("cer1", &c).await.unwrap();
    assert!(store.take_ceremony("cer1").await.unwrap() == Some(c));
    assert!(store.take_ceremony("cer1").await.unwrap().is_none());
    assert!(store.take_ceremony("unknown").await.unwrap().is_none());
}

// ---------------------------------------------------------------- throttle

async fn brute_force_counts_within_a_window(store: Store) {
    const WINDOW: i64 = 900;
    for n in 1..=3 {
        assert_eq!(
            store.count_attempt("a:x", NOW, WINDOW).await.unwrap(),
            (n, 0)
        );
    }
    // Keys count apart.
    assert_eq!(
        store.count_attempt("s:net", NOW, WINDOW).await.unwrap(),
        (1, 0)
    );
    // Given back, never below zero.
    store.give_back_attempt("a:x").await.unwrap();
    assert_eq!(
        store.count_attempt("a:x", NOW + 1, WINDOW).await.unwrap(),
        (3, 0)
    );
    for _ in 0..5 {
        store.give_back_attempt("s:net").await.unwrap();
    }
    assert_eq!(
        store.count_attempt("s:net", NOW + 1, WINDOW).await.unwrap(),
        (1, 0)
    );
    // Within the window it goes on; once the window began more than
    // WINDOW seconds ago, a new one starts.
    assert_eq!(
        store
            .count_attempt("a:x", NOW + WINDOW, WINDOW)
            .await
            .unwrap(),
        (4, 0)
    );
    assert_eq!(
        store
            .count_attempt("a:x", NOW + WINDOW + 1, WINDOW)
            .await
            .unwrap(),
        (1, 0)
    );
    // Forgotten after a success: the next attempt counts from one; the
    // source's count is given back in the same commit.
    store.count_attempt("s:net", NOW + 1, WINDOW).await.unwrap();
    store
        .attempt_passed(&["a:x"], Some("s:net"), NOW + WINDOW + 2)
        .await
        .unwrap();
    assert_eq!(
        store.count_attempt("s:net", NOW + 1, WINDOW).await.unwrap(),
        (2, 0)
    );
    assert_eq!(
        store
            .count_attempt("a:x", NOW + WINDOW + 2, WINDOW)
            .await
            .unwrap(),
        (1, 0)
    );
    // Counts in parallel each take their own.
    let counts = futures_util::future::join_all(
        (0..6).map(|_| store.count_attempt("a:parallel", NOW, WINDOW)),
    )
    .await;
    let mut seen: Vec<i64> = counts.into_iter().map(|c| c.unwrap().0).collect();
    seen.sort();
    assert_eq!(seen, [1, 2, 3, 4, 5, 6]);
    // Account and source in one statement: each its own count, in the
    // order asked, also in parallel.
    let both = futures_util::future::join_all((0..4).map(|_| async {
        store
            .count_attempts(&["a:both", "s:both"], NOW, WINDOW)
            .await
            .unwrap()
    }))
    .await;
    let mut accounts: Vec<i64> = both.iter().map(|c| c[0].0).collect();
    let mut sources: Vec<i64> = both.iter().map(|c| c[1].0).collect();
    accounts.sort();
    sources.sort();
    assert_eq!(accounts, [1, 2, 3, 4]);
    assert_eq!(sources, [1, 2, 3, 4]);
    store.lock("s:both", NOW + 900, NOW).await.unwrap();
    assert_eq!(
        store
            .count_attempts(&["a:both", "s:both"], NOW, WINDOW)
            .await
            .unwrap(),
        vec![(5, 0), (5, NOW + 900)]
    );
}

async fn brute_force_locks_are_set_once(store: Store) {
    const WINDOW: i64 = 900;
    store.count_attempt("a:x", NOW, WINDOW).await.unwrap();
    assert!(!store.lock("a:unknown", NOW + 900, NOW).await.unwrap());
    // Only the attempt that sets a lock reports it.
    assert!(store.lock("a:x", NOW + 900, NOW).await.unwrap());
    assert!(!store.lock("a:x", NOW + 950, NOW + 1).await.unwrap());
    assert_eq!(
        store.count_attempt("a:x", NOW + 2, WINDOW).await.unwrap(),
        (2, NOW + 900)
    );
    // A success does not lift a lock.
    store.attempt_passed(&["a:x"], None, NOW + 3).await.unwrap();
    assert_eq!(
        store.count_attempt("a:x", NOW + 4, WINDOW).await.unwrap(),
        (3, NOW + 900)
    );
    // Once it has passed, it may be set again, and a success forgets all.
    assert!(store.lock("a:x", NOW + 2000, NOW + 900).await.unwrap());
    store
        .attempt_passed(&["a:x"], None, NOW + 2000)
        .await
        .unwrap();
    assert_eq!(
        store
            .count_attempt("a:x", NOW + 2000, WINDOW)
            .await
            .unwrap(),
        (1, 0)
    );

    // Purged once window and lock have passed: not while locked, then
    // with `a:x`, whose window passed too.
    store.count_attempt("s:old", NOW, WINDOW).await.unwrap();
    store.lock("s:old", NOW + 3000, NOW).await.unwrap();
    assert_eq!(
        store
            .purge_counters(NOW + WINDOW + 1, WINDOW)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.purge_counters(NOW + 3001, WINDOW).await.unwrap(), 2);
    assert_eq!(
        store
            .count_attempt("s:old", NOW + 3001, WINDOW)
            .await
            .unwrap(),
        (1, 0)
    );
}

// ---------------------------------------------------------------- deliveries

async fn logout_deliveries_are_queued_once_per_client(store: Store) {
    // Session s1 got tokens for `rp` (which asked to hear) and `quiet`
    // (which did not); s2 for nobody.
    add_family(&store, "f1", "rp", "u1", "s1").await;
    add_family(&store, "f2", "rp", "u1", "s1").await;
    add_family(&store, "f3", "quiet", "u1", "s1").await;
    let mut tx = store.begin().await.unwrap();
    store.queue_logout(&mut tx, "u1", "s1", NOW).await.unwrap();
    // Another node ending the same session queues nothing more.
    store.queue_logout(&mut tx, "u1", "s1", NOW).await.unwrap();
    store.queue_logout(&mut tx, "u1", "s2", NOW).await.unwrap();
    tx.commit().await.unwrap();
    let due = store.due_deliveries(6, NOW).await.unwrap();
    assert_eq!(
        due,
        [Delivery {
            id: "s1 rp".into(),
            client_id: "rp".into(),
            sub: "u1".into(),
            sid: "s1".into(),
            attempts: 0,
        }]
    );
    assert!(store.due_deliveries(6, NOW - 1).await.unwrap().is_empty());
}

async fn logout_deliveries_are_claimed_once_and_recorded(store: Store) {
    add_family(&store, "f1", "rp", "u1", "s1").await;
    add_family(&store, "f2", "rp", "u2", "s2").await;
    let mut tx = store.begin().await.unwrap();
    store.queue_logout(&mut tx, "u1", "s1", NOW).await.unwrap();
    store.queue_logout(&mut tx, "u2", "s2", NOW).await.unwrap();
    tx.commit().await.unwrap();
    let due = store.due_deliveries(6, NOW).await.unwrap();
    assert_eq!(due.len(), 2);
    let (d1, d2) = (&due[0], &due[1]);

    // Claimed by one node only; while leased it is not due.
    assert!(store.claim_delivery(d1, NOW + 60).await.unwrap());
    assert!(!store.claim_delivery(d1, NOW + 60).await.unwrap());
    assert_eq!(
        store.due_deliveries(6, NOW).await.unwrap(),
        std::slice::from_ref(d2)
    );
    // Delivered: recorded once, never due again.
    assert!(store.delivered(&d1.id, 1, NOW + 1).await.unwrap());
    assert!(!store.delivered(&d1.id, 1, NOW + 2).await.unwrap());
    assert!(!store.claim_delivery(d1, NOW + 60).await.unwrap());

    // A failed attempt: due again at its next time, one attempt counted.
    assert!(store.claim_delivery(d2, NOW + 60).await.unwrap());
    // Not by an attempt that is no longer this node's.
    assert!(!store
        .delivery_failed(&d2.id, 2, "late", NOW + 5, 2)
        .await
        .unwrap());
    assert!(store
        .delivery_failed(&d2.id, 1, "the client answered 503", NOW + 5, 1)
        .await
        .unwrap());
    assert!(store.due_deliveries(6, NOW + 4).await.unwrap().is_empty());
    let again = store.due_deliveries(6, NOW + 5).await.unwrap();
    assert_eq!(
        again,
        [Delivery {
            attempts: 1,
            ..d2.clone()
        }]
    );
    // Given up: the attempts counted as the maximum, never due again.
    assert!(store.claim_delivery(&again[0], NOW + 65).await.unwrap());
    assert!(store
        .delivery_failed(&d2.id, 2, "the client answered 400", NOW + 15, 6)
        .await
        .unwrap());
    assert!(store
        .due_deliveries(6, NOW + 86_400)
        .await
        .unwrap()
        .is_empty());
}

// ---------------------------------------------------------------- keys

async fn signing_keys_are_stored_retired_and_listed(store: Store) {
    let add = |kid: &'static str, alg: Alg, created_at: i64| {
        let store = store.clone();
        async move {
            store
                .insert_signing_key(&NewSigningKey {
                    kid,
                    alg,
                    private_enc: "sealed",
                    public_jwk: r#"{"kty":"EC"}"#,
                    created_at,
                    sign_from: created_at + 10,
                })
                .await
                .unwrap();
        }
    };
    add("es256-a", Alg::ES256, NOW).await;
    add("rs256-a", Alg::RS256, NOW).await;
    let mut stored = store.signing_keys().await.unwrap();
    stored.sort_by(|a, b| a.kid.cmp(&b.kid));
    assert_eq!(stored.len(), 2);
    let k = &stored[0];
    assert_eq!(
        (
            k.kid.as_str(),
            k.alg.as_str(),
            k.private_enc.as_str(),
            k.public_jwk.as_str()
        ),
        ("es256-a", "ES256", "sealed", r#"{"kty":"EC"}"#)
    );
    assert_eq!(
        (k.created_at, k.sign_from, k.retire_at),
        (NOW, NOW + 10, None)
    );

    // A rotation of ES256: the old key retires, the new one does not, and
    // a key retired before keeps its time.
    store
        .retire_signing_keys(Alg::ES256, NOW + 500)
        .await
        .unwrap();
    add("es256-b", Alg::ES256, NOW + 1).await;
    store
        .retire_signing_keys(Alg::ES256, NOW + 900)
        .await
        .unwrap();
    add("es256-c", Alg::ES256, NOW + 2).await;
    let listed: Vec<(String, String, i64, Option<i64>)> = store
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.kid, k.alg, k.created_at, k.retire_at))
        .collect();
    let expected: Vec<(String, String, i64, Option<i64>)> = vec![
        ("es256-a".into(), "ES256".into(), NOW, Some(NOW + 500)),
        ("rs256-a".into(), "RS256".into(), NOW, None),
        ("es256-b".into(), "ES256".into(), NOW + 1, Some(NOW + 900)),
        ("es256-c".into(), "ES256".into(), NOW + 2, None),
    ];
    assert_eq!(listed, expected);
    // Announced where there is anyone to hear; no error elsewhere.
    store.announce_rotation().await.unwrap();
}

// ---------------------------------------------------------------- purge

async fn purge_removes_only_what_expired(store: Store) {
    let hour = 3600;
    // Expired more than an hour ago, and not (yet).
    add_session(&store, "h-old", &session("s-old", "u1", NOW - hour - 1)).await;
    add_session(&store, "h-new", &session("s-new", "u1", NOW - hour)).await;
    let mut conn = store.acquire().await.unwrap();
    store
        .insert_code(
            &mut conn,
            "c-old",
            &AuthCode {
                expires_at: NOW - hour - 1,
                ..code("f1")
            },
        )
        .await
        .unwrap();
    store
        .insert_code(&mut conn, "c-new", &code("f2"))
        .await
        .unwrap();
    drop(conn);
    for (id, expires_at) in [("lr-old", NOW - hour - 1), ("lr-new", NOW + 600)] {
        store
            .insert_login_request(&NewLoginRequest {
                id,
                browser_hash: "b",
                params: "{}",
                expires_at,
                pending: None,
            })
            .await
            .unwrap();
    }
    store
        .revoke_access_token("jti-old", NOW - hour - 1)
        .await
        .unwrap();
    store.revoke_access_token("jti-new", NOW).await.unwrap();
    store
        .first_client_assertion("rp|old", NOW - hour - 1)
        .await
        .unwrap();
    for (state, expires_at) in [("st-old", NOW - hour - 1), ("st-new", NOW + 600)] {
        let l = UpstreamLogin {
            login_request: "lr".into(),
            upstream: "idp".into(),
            browser_hash: "b".into(),
            secrets_enc: "sealed".into(),
            expires_at,
        };
        store.insert_upstream_login(state, &l).await.unwrap();
    }
    let c = Ceremony {
        user_id: "u1".into(),
        state: "{}".into(),
        expires_at: NOW - hour - 1,
    };
    store.insert_ceremony("cer-old", &c).await.unwrap();
    // A brute-force counter whose window has passed.
    store.count_attempt("a:old", NOW - 2000, 900).await.unwrap();
    // A logout delivery a day old, and a new one.
    add_family(&store, "f-old", "rp", "u1", "s-gone").await;
    add_family(&store, "f-new", "rp", "u1", "s-new").await;
    let mut tx = store.begin().await.unwrap();
    store
        .queue_logout(&mut tx, "u1", "s-gone", NOW - 86_401)
        .await
        .unwrap();
    store
        .queue_logout(&mut tx, "u1", "s-new", NOW)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // session, code, login request, revoked token, assertion, upstream
    // login, ceremony, counter, delivery.
    assert_eq!(store.purge_expired(NOW, 900).await.unwrap(), 9);
    assert_eq!(store.purge_expired(NOW, 900).await.unwrap(), 0);

    assert!(store
        .session("h-new", NOW - hour - 1)
        .await
        .unwrap()
        .is_some());
    assert!(store.code("c-old").await.unwrap().is_none());
    assert!(store.code("c-new").await.unwrap().is_some());
    assert!(store.login_request("lr-new", NOW).await.unwrap().is_some());
    assert!(!store.access_token_revoked("jti-old").await.unwrap());
    assert!(store.access_token_revoked("jti-new").await.unwrap());
    assert!(store
        .first_client_assertion("rp|old", NOW + 60)
        .await
        .unwrap());
    assert!(store.take_upstream_login("st-old").await.unwrap().is_none());
    assert!(store.take_upstream_login("st-new").await.unwrap().is_some());
    assert_eq!(
        store.count_attempt("a:old", NOW, 900).await.unwrap(),
        (1, 0)
    );
    let due: Vec<String> = store
        .due_deliveries(6, NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.sid)
        .collect();
    assert_eq!(due, ["s-new"]);
}
