//! Scratch databases for the stores' conformance suites (feature
//! `scratch`, for tests only): a fresh SQLite file, and where the
//! PostgreSQL server of `INTERKOM_TEST_PG` (default
//! postgres://postgres@127.0.0.1:5432) answers, a fresh schema in a database
//! the suites share. [`ScratchDb::close`] removes either.

// Test support: a database that cannot be set up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::AnyPool;

/// The database the suites share on PostgreSQL; each run gets a schema.
const PG_DATABASE: &str = "interkom_store_conformance";

/// One scratch database.
pub struct ScratchDb {
    /// `sqlite` or `postgres`, for messages.
    pub name: &'static str,
    pub pool: AnyPool,
    /// PostgreSQL: the database URL and the schema to drop.
    schema: Option<(String, String)>,
    /// SQLite: the folder of the file.
    dir: Option<PathBuf>,
}

/// A name no other run on this machine uses: `prefix_pid_nanos_n`.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

/// SQLite, and PostgreSQL when it answers (the test says so when not).
pub async fn every(prefix: &str) -> Vec<ScratchDb> {
    let mut dbs = vec![sqlite(prefix).await];
    match postgres(prefix).await {
        Some(pg) => dbs.push(pg),
        None => eprintln!("PostgreSQL not reachable: {prefix} on SQLite only"),
    }
    dbs
}

/// A fresh SQLite file in a folder of its own.
pub async fn sqlite(prefix: &str) -> ScratchDb {
    sqlx::any::install_default_drivers();
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display());
    ScratchDb {
        name: "sqlite",
        pool: AnyPool::connect(&url).await.unwrap(),
        schema: None,
        dir: Some(dir),
    }
}

/// A fresh schema on PostgreSQL, or `None` when the server does not answer.
pub async fn postgres(prefix: &str) -> Option<ScratchDb> {
    sqlx::any::install_default_drivers();
    let server = std::env::var("INTERKOM_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let admin = AnyPool::connect(&format!("{server}/postgres")).await.ok()?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(PG_DATABASE)
        .fetch_optional(&admin)
        .await
        .unwrap();
    if exists.is_none() {
        // Another suite may create it at the same moment.
        let _ = sqlx::query(&format!("CREATE DATABASE {PG_DATABASE}"))
            .execute(&admin)
            .await;
    }
    admin.close().await;
    let url = format!("{server}/{PG_DATABASE}");
    let schema = unique(prefix).to_lowercase();
    let scratch = AnyPool::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&scratch)
        .await
        .unwrap();
    scratch.close().await;
    Some(ScratchDb {
        name: "postgres",
        pool: AnyPool::connect(&format!("{url}?options[search_path]={schema}"))
            .await
            .unwrap(),
        schema: Some((url, schema)),
        dir: None,
    })
}

impl ScratchDb {
    /// Closes the pool and removes the file or the schema.
    pub async fn close(self) {
        self.pool.close().await;
        if let Some((url, schema)) = &self.schema {
            let scratch = AnyPool::connect(url).await.unwrap();
            let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&scratch)
                .await;
            scratch.close().await;
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
