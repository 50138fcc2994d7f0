//! `interkom-audit-bench`: the audit store's throughput and latency.
//!
//! - durable appends/s with 1, 16 and 256 concurrent writers (each waits for
//!   its commit, as a request does);
//! - `verify` events/s over the whole chain;
//! - query latency (median and p99 of repeated queries) by actor, by tenant
//!   subtree and by time range, after filling the store to `--fill` events.
//!
//! Runs against the database in `--database` (a fresh one: it is migrated
//! and filled), stops by itself, prints Markdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use interkom_audit::{Action, AuditConfig, AuditEvent, AuditLog, AuditQuery, Outcome};
use rand::{Rng, SeedableRng};

#[derive(Parser)]
struct Args {
    /// `sqlite://FILE` or `postgres://…` (a fresh database).
    #[arg(long)]
    database: String,
    /// Seconds per append measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Writer counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    writers: Vec<usize>,
    /// Fill the store to this many events before verifying and querying.
    #[arg(long, default_value_t = 1_000_000)]
    fill: u64,
    /// Queries per kind for the latency figures.
    #[arg(long, default_value_t = 50)]
    queries: usize,
}

/// The demo county's tenant paths, for realistic subtree filters.
const PATHS: &[&str] = &[
    "/lk/",
    "/lk/sg-elbtalaue/",
    "/lk/sg-elbtalaue/damnatz/",
    "/lk/sg-elbtalaue/dannenberg-elbe/",
    "/lk/sg-elbtalaue/hitzacker-elbe/",
    "/lk/sg-gartow/",
    "/lk/sg-gartow/gorleben/",
    "/lk/sg-luechow/",
    "/lk/sg-luechow/clenze/",
    "/lk/sg-luechow/luechow-wendland/",
];

/// Request ids as the server makes them: time-ordered (UUIDv7-like).
fn next_correlation() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!("{micros:016x}-{:08x}", N.fetch_add(1, Ordering::Relaxed))
}

fn event(rng: &mut impl Rng) -> AuditEvent {
    let path = PATHS[rng.gen_range(0..PATHS.len())];
    let tenant = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("lk")
        .to_owned();
    let user = rng.gen_range(0..10_000);
    let actions = [
        Action::Login,
        Action::TokenIssued,
        Action::TokenRefreshed,
        Action::LoginFailed,
    ];
    AuditEvent::new(actions[rng.gen_range(0..actions.len())], Outcome::Success)
        .tenant(tenant.clone(), path)
        .subject(format!("user-{user:05}"), Some(tenant))
        .client(format!("client-{}", rng.gen_range(0..20)))
        .correlation(Some(next_correlation()))
        .source(Some("192.0.2.0/24".into()))
        .details(serde_json::json!({ "scope": "openid profile", "jti": format!("{:032x}", rng.gen::<u128>()) }))
}

async fn appends(log: &AuditLog, writers: usize, seconds: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            while Instant::now() < deadline {
                if log.append(event(&mut rng)).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let start = Instant::now();
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn fill(log: &AuditLog, pool: &sqlx::AnyPool, target: u64) -> anyhow::Result<()> {
    let have: i64 = sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1")
        .fetch_one(pool)
        .await?;
    let missing = target.saturating_sub(have as u64);
    let per = missing / 256 + 1;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..256u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + w);
            for _ in 0..per {
                let _ = log.append(event(&mut rng)).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    eprintln!(
        "filled {missing} events in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency(
    pool: &sqlx::AnyPool,
    n: usize,
    make: impl Fn(usize) -> AuditQuery,
) -> anyhow::Result<(f64, f64)> {
    let mut ms = Vec::with_capacity(n);
    for i in 0..n {
        let q = make(i);
        let t = Instant::now();
        interkom_audit::query(pool, &q).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok((percentile(&ms, 0.5), percentile(&ms, 0.99)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = interkom::db::connect(&args.database).await?;
    interkom::db::migrate(&pool).await?;
    let log = AuditLog::start(pool.clone(), AuditConfig::default());
    let backend = if args.database.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!("| {backend} | figure |\n|---|---:|");
    for w in &args.writers {
        let rate = appends(&log, *w, args.seconds.min(60)).await;
        println!("| durable appends/s, {w} writers | {rate:.0} |");
    }
    fill(&log, &pool, args.fill).await?;
    let total: i64 = sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1")
        .fetch_one(&pool)
        .await?;
    let t = Instant::now();
    let report = interkom_audit::verify(&pool, None, None).await?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(report.ok(), "verify failed: {report:?}");
    println!(
        "| verify, {total} events | {:.0} events/s ({secs:.1} s) |",
        report.checked as f64 / secs
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let users: Vec<String> = (0..args.queries)
        .map(|_| format!("user-{:05}", rng.gen_range(0..10_000)))
        .collect();
    let (p50, p99) = latency(&pool, args.queries, |i| AuditQuery {
        actor_subject: Some(users[i].clone()),
        limit: 100,
        ..Default::default()
    })
    .await
    .context("query by actor")?;
    println!("| query by actor (100 newest), {total} events | p50 {p50:.1} ms, p99 {p99:.1} ms |");
    for prefix in ["/lk/sg-elbtalaue/hitzacker-elbe/", "/lk/sg-gartow/", "/lk/"] {
        let (p50, p99) = latency(&pool, args.queries, |_| AuditQuery {
            tenant_path_prefix: Some(prefix.into()),
            limit: 100,
            ..Default::default()
        })
        .await?;
        println!("| query by subtree {prefix} (100 newest) | p50 {p50:.1} ms, p99 {p99:.1} ms |");
    }
    // A one-minute window somewhere in the middle of the fill.
    let mid: String = sqlx::query_scalar("SELECT ts FROM audit_events WHERE seq = $1")
        .bind(total / 2)
        .fetch_one(&pool)
        .await?;
    let (p50, p99) = latency(&pool, args.queries, |_| AuditQuery {
        from_ts: Some(mid.clone()),
        to_ts: Some(format!("{}9", &mid[..mid.len() - 1])),
        limit: 100,
        ..Default::default()
    })
    .await?;
    println!("| query by time range (100 newest) | p50 {p50:.1} ms, p99 {p99:.1} ms |");
    Ok(())
}
