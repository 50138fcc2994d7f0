//! The database: SQLite (embedded default, WAL) or PostgreSQL, through one
//! pool type. SQL is written once, portable between the two.

use std::str::FromStr;

use anyhow::Context;
use interkom_types::Backend;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;

pub async fn connect(url: &str) -> anyhow::Result<AnyPool> {
    sqlx::any::install_default_drivers();
    let is_sqlite = Backend::from_url(url) == Some(Backend::Sqlite);
    let url = if is_sqlite {
        sqlite_url(url)?
    } else {
        url.to_owned()
    };
    let opts = AnyConnectOptions::from_str(&url).context("database_url")?;
    // SQLite has one writer; more connections only add lock contention.
    let max = if is_sqlite { 8 } else { 16 };
    let pool = AnyPoolOptions::new()
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if is_sqlite {
                    // A page cache of 1 MiB per connection instead of 2: the
                    // operating system caches the file for all of them, and
                    // eight private copies of the hot pages are memory a node
                    // at rest should not hold.
                    sqlx::query("PRAGMA cache_size = -1024")
                        .execute(&mut *conn)
                        .await?;
                    // No fsync at each commit: with WAL this loses no
                    // consistency, and the write lock is held for the
                    // append only, not for a flush (under load the flush
                    // made writers queue in SQLite's sleeping busy
                    // handler). Durability comes with the audit writer,
                    // whose commits stay `FULL` and sync the one WAL, and
                    // with it every frame written before: a change is on
                    // disk once an audit event appended after it is
                    // (`append` returns after that commit).
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .max_connections(max)
        // A ping before every use is a round trip to the connection's
        // thread; a file cannot go away like a server can, so SQLite skips
        // it (PostgreSQL keeps it: after a restart, stale connections are
        // found before a request fails on them).
        .test_before_acquire(!is_sqlite)
        .min_connections(1)
        // Connections beyond the one kept close after a quiet minute, with
        // their caches: a node at rest holds little.
        .idle_timeout(std::time::Duration::from_secs(60))
        // During a database outage requests fail fast (503) instead of
        // queueing for the default 30 s.
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(opts)
        .await
        .with_context(|| format!("connecting to {}", redact(&url)))?;
    if is_sqlite {
        // WAL: readers never block the writer and a commit is one append
        // (persistent: set once, it stays with the database file).
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await?;
    }
    Ok(pool)
}

/// Creates the file's directory and asks for WAL, create-if-missing and a
/// busy timeout unless the URL says otherwise.
fn sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or("");
    if path != ":memory:" && !path.is_empty() {
        if let Some(dir) = std::path::Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
        }
    }
    let mut u = url.to_owned();
    if !u.contains("mode=") {
        u.push(if u.contains('?') { '&' } else { '?' });
        u.push_str("mode=rwc");
    }
    Ok(u)
}

/// The URL with its password masked (for logs and `{:?}`).
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The migrations applied to the database (every crate's, by version).
pub async fn applied_migrations(pool: &AnyPool) -> anyhow::Result<Vec<i64>> {
    Ok(
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?,
    )
}

/// Applies every crate's migrations, tenants first (others refer to them).
pub async fn migrate(pool: &AnyPool) -> anyhow::Result<()> {
    interkom_policy::migrate(pool)
        .await
        .context("policy migrations")?;
    interkom_audit::migrate(pool)
        .await
        .context("audit migrations")?;
    interkom_gateway::migrate(pool)
        .await
        .context("gateway migrations")?;
    interkom_directory::migrate(pool)
        .await
        .context("directory migrations")?;
    interkom_admin::migrate(pool)
        .await
        .context("admin migrations")?;
    Ok(())
}
