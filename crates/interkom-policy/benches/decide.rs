//! `decide()` at the scale of a whole Land: 10 Kreise with 10 Samtgemeinden
//! of 10 Gemeinden each (1,000 Gemeinden), 100,000 users, 10,000 resources,
//! 200,000 policy lines and 2,000 grants, generated deterministically.
//!
//! Prints, besides criterion's own figures: the time to load the 200,000
//! lines from the database and compile them, the memory the compiled policy
//! takes, and p50/p99/p99.9 of single decisions with the single-core rate.
//!
//! `cargo bench -p interkom-policy --bench decide`; the database is a SQLite
//! file in a temporary directory unless INTERKOM_BENCH_DATABASE_URL names
//! another (e.g. postgres://postgres@127.0.0.1:5432/interkom_bench, which is
//! emptied first).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use interkom_policy::engine::{AuthContext, ResourceRef, Snapshot, SubjectRef};
use interkom_policy::loa::{Protection, ProtectionNeed};
use interkom_policy::policyset::{PolicySet, ResourceSpec, RuleLine};
use interkom_policy::store::{Grant, LiveData};
use interkom_policy::{Level, Loa, TenantSpec, TenantTree};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const USERS: usize = 100_000;
const RESOURCES: usize = 10_000;
const LINES: usize = 200_000;
const GRANTS: usize = 2_000;
const ROLES: usize = 40;
const SUPERVISORY: usize = 4;
const KINDS: usize = 50;
const ACTIONS: &[&str] = &[
    "read", "write", "create", "delete", "login", "export", "approve", "print",
];

struct Land {
    tree: TenantTree,
    set: PolicySet,
    live: LiveData,
    gemeinden: Vec<String>,
}

/// The time the land is compiled and asked at (its grants expire later).
const NOW: i64 = 1_900_000_000;

fn role(i: usize) -> String {
    if i < SUPERVISORY {
        format!("aufsicht{i}")
    } else {
        format!("rolle{i}")
    }
}

fn land() -> Land {
    let mut rng = StdRng::seed_from_u64(2026);
    let mut specs = Vec::new();
    let mut gemeinden = Vec::new();
    let mut samtgemeinden = Vec::new();
    for k in 0..10 {
        let kreis = format!("kreis-{k}");
        specs.push(TenantSpec {
            id: kreis.clone(),
            name: kreis.clone(),
            level: Level::Kreis,
            parent: None,
        });
        for s in 0..10 {
            let sg = format!("sg-{k}-{s}");
            specs.push(TenantSpec {
                id: sg.clone(),
                name: sg.clone(),
                level: Level::Samtgemeinde,
                parent: Some(kreis.clone()),
            });
            samtgemeinden.push(sg.clone());
            for g in 0..10 {
                let gem = format!("gemeinde-{k}-{s}-{g}");
                specs.push(TenantSpec {
                    id: gem.clone(),
                    name: gem.clone(),
                    level: Level::Gemeinde,
                    parent: Some(sg.clone()),
                });
                gemeinden.push(gem);
            }
        }
    }
    let tree = TenantTree::from_specs(&specs).unwrap();
    let all: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();

    // The demo's protection mapping and model; roles generated.
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies"));
    let mut set = PolicySet::load(dir).unwrap();
    set.roles.clear();
    for i in 0..ROLES {
        set.roles.insert(
            role(i),
            interkom_policy::policyset::RoleDef {
                description: None,
                supervisory: i < SUPERVISORY,
            },
        );
    }
    set.subjects.clear();

    let mut live = LiveData::default();
    let need = |rng: &mut StdRng| match rng.gen_range(0..10) {
        0 => ProtectionNeed::SehrHoch,
        1..=3 => ProtectionNeed::Hoch,
        _ => ProtectionNeed::Normal,
    };
    for i in 0..RESOURCES {
        let owner = if rng.gen_bool(0.8) {
            &gemeinden[rng.gen_range(0..gemeinden.len())]
        } else {
            &all[rng.gen_range(0..all.len())]
        };
        live.resources.push(ResourceSpec {
            id: format!("res-{i}"),
            name: None,
            kind: format!("kind{}", rng.gen_range(0..KINDS)),
            owner: Some(owner.clone()),
            client: None,
            protection: Protection {
                c: need(&mut rng),
                i: ProtectionNeed::Normal,
                a: ProtectionNeed::Normal,
            },
        });
    }
    // Tasks the Samtgemeinden perform for their members.
    for sg in &samtgemeinden {
        for _ in 0..5 {
            live.rules.push(RuleLine::new(
                "g",
                &[sg, &format!("kind{}", rng.gen_range(0..KINDS))],
            ));
        }
    }
    // Role × kind lines, then resource-specific ones up to LINES.
    for r in 0..ROLES {
        for k in 0..KINDS {
            if rng.gen_bool(0.3) {
                let reach = if r < SUPERVISORY {
                    "subtree"
                } else if rng.gen_bool(0.3) {
                    "members"
                } else {
                    "own"
                };
                let act = ACTIONS[rng.gen_range(0..ACTIONS.len())];
                live.rules.push(RuleLine::new(
                    "p",
                    &[&role(r), &format!("kind{k}"), act, reach, "allow", "true"],
                ));
            }
        }
    }
    while live.rules.len() < LINES {
        let r = rng.gen_range(0..ROLES);
        let res = rng.gen_range(0..RESOURCES);
        let act = if rng.gen_bool(0.2) {
            "*"
        } else {
            ACTIONS[rng.gen_range(0..ACTIONS.len())]
        };
        let reach = if r < SUPERVISORY {
            "subtree"
        } else {
            ["own", "own", "members"][rng.gen_range(0..3)]
        };
        let eft = if rng.gen_bool(0.05) { "deny" } else { "allow" };
        live.rules.push(RuleLine::new(
            "p",
            &[&role(r), &format!("res-{res}"), act, reach, eft, "true"],
        ));
    }
    for i in 0..USERS {
        let home = if rng.gen_bool(0.85) {
            &gemeinden[rng.gen_range(0..gemeinden.len())]
        } else {
            &all[rng.gen_range(0..all.len())]
        };
        let id = format!("user-{i}");
        live.users.push((
            id.clone(),
            format!("u{i}"),
            home.clone(),
            Some(format!("u{i}@land.example")),
        ));
        for _ in 0..rng.gen_range(1..=2) {
            live.assignments.push((
                id.clone(),
                home.clone(),
                role(rng.gen_range(SUPERVISORY..ROLES)),
            ));
        }
        if rng.gen_bool(0.01) {
            live.assignments.push((
                id.clone(),
                home.clone(),
                role(rng.gen_range(0..SUPERVISORY)),
            ));
        }
    }
    for i in 0..GRANTS {
        live.grants.push(Grant {
            id: format!("grant-{i}"),
            grantee: format!("user:user-{}", rng.gen_range(0..USERS)),
            resource: format!("res-{}", rng.gen_range(0..RESOURCES)),
            actions: vec!["read".into()],
            purpose: "Amtshilfe".into(),
            not_before: None,
            expires_at: 4_102_444_800,
            grantor: "admin-a".into(),
            approver: Some("admin-b".into()),
            approved_at: Some(1),
            revoked_at: None,
        });
    }
    Land {
        tree,
        set,
        live,
        gemeinden,
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Stores the Land in a database and times loading + compiling it.
fn load_from_database(land: &Land) -> (Duration, Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let tmp = std::env::temp_dir().join(format!("interkom-bench-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let url = std::env::var("INTERKOM_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| format!("sqlite://{}/policy.db?mode=rwc", tmp.display()));
        let pool = sqlx::any::AnyPoolOptions::new().max_connections(4).connect(&url).await.unwrap();
        if url.starts_with("postgres") {
            sqlx::query("DROP SCHEMA public CASCADE").execute(&pool).await.unwrap();
            sqlx::query("CREATE SCHEMA public").execute(&pool).await.unwrap();
        }
        interkom_policy::migrate(&pool).await.unwrap();
        sqlx::query("CREATE TABLE users (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, username TEXT NOT NULL, email TEXT, disabled BIGINT NOT NULL DEFAULT 0, population TEXT NOT NULL DEFAULT 'staff')")
            .execute(&pool)
            .await
            .unwrap();
        land.tree.store(&pool).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        for (i, l) in land.live.rules.iter().enumerate() {
            let v = |n: usize| l.values.get(n).cloned().unwrap_or_default();
            sqlx::query("INSERT INTO policy_rules (id, ptype, v0, v1, v2, v3, v4, v5, source, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'bench', 0) ON CONFLICT DO NOTHING")
                .bind(format!("{i:08}")).bind(&l.ptype).bind(v(0)).bind(v(1)).bind(v(2)).bind(v(3)).bind(v(4)).bind(v(5))
                .execute(&mut *tx).await.unwrap();
        }
        for r in &land.live.resources {
            sqlx::query("INSERT INTO resources (id, kind, owner, confidentiality, integrity, availability, source, updated_at) VALUES ($1, $2, $3, $4, 'normal', 'normal', 'bench', 0)")
                .bind(&r.id).bind(&r.kind).bind(&r.owner).bind(r.protection.c.as_str())
                .execute(&mut *tx).await.unwrap();
        }
        for (id, username, tenant, email) in &land.live.users {
            sqlx::query("INSERT INTO users (id, tenant, username, email) VALUES ($1, $2, $3, $4)")
                .bind(id).bind(tenant).bind(username).bind(email)
                .execute(&mut *tx).await.unwrap();
        }
        for (s, t, r) in &land.live.assignments {
            sqlx::query("INSERT INTO role_assignments (subject, tenant, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(s).bind(t).bind(r)
                .execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        let started = Instant::now();
        let live = interkom_policy::store::load(&pool).await.unwrap();
        let read = started.elapsed();
        let (snap, _) = Snapshot::compile(&land.tree, &land.set, &live, NOW);
        let total = started.elapsed();
        black_box(snap);
        pool.close().await;
        let _ = std::fs::remove_dir_all(&tmp);
        (read, total)
    })
}

fn main() {
    let land = land();
    let before = rss_kib();
    let started = Instant::now();
    let (snap, problems) = Snapshot::compile(&land.tree, &land.set, &land.live, NOW);
    let compile = started.elapsed();
    let after = rss_kib();
    println!(
        "land: {} tenants, {} users, {} resources, {} lines, {} grants ({} compile notes)",
        land.tree.len(),
        land.live.users.len(),
        land.live.resources.len(),
        land.live.rules.len(),
        land.live.grants.len(),
        problems.len()
    );
    println!(
        "compile (in memory): {:.0} ms; compiled policy takes {:.0} MiB (RSS {:.0} MiB in all)",
        compile.as_secs_f64() * 1e3,
        (after.saturating_sub(before)) as f64 / 1024.0,
        after as f64 / 1024.0
    );

    // Questions: users asking about resources in and around their tenant.
    let mut rng = StdRng::seed_from_u64(7);
    let now = NOW;
    let ctx = AuthContext {
        acr: Some(Loa::Substantial),
        auth_time: Some(now - 600),
        second_factor: true,
        now,
    };
    // Half of them about resources of their own tenant that a line of one
    // of their roles names (mostly permitted), half at random (mostly
    // denied: other tenants' data).
    let mut holders: std::collections::HashMap<(&str, &str), Vec<usize>> =
        std::collections::HashMap::new();
    for (s, t, r) in &land.live.assignments {
        let i: usize = s.trim_start_matches("user-").parse().unwrap();
        holders.entry((t.as_str(), r.as_str())).or_default().push(i);
    }
    let owner: std::collections::HashMap<&str, &str> = land
        .live
        .resources
        .iter()
        .map(|r| (r.id.as_str(), r.owner.as_deref().unwrap_or("")))
        .collect();
    let mut queries: Vec<(String, &str, String)> = Vec::new();
    while queries.len() < 20_000 {
        if queries.len().is_multiple_of(2) {
            let l = &land.live.rules[rng.gen_range(0..land.live.rules.len())];
            if l.ptype != "p" || !l.values[1].starts_with("res-") || l.values[3] != "own" {
                continue;
            }
            let Some(users) = holders.get(&(owner[l.values[1].as_str()], l.values[0].as_str()))
            else {
                continue;
            };
            let act = ACTIONS
                .iter()
                .find(|a| **a == l.values[2])
                .copied()
                .unwrap_or(ACTIONS[0]);
            queries.push((
                format!("u{}", users[rng.gen_range(0..users.len())]),
                act,
                l.values[1].clone(),
            ));
        } else {
            queries.push((
                format!("u{}", rng.gen_range(0..USERS)),
                ACTIONS[rng.gen_range(0..ACTIONS.len())],
                format!("res-{}", rng.gen_range(0..RESOURCES)),
            ));
        }
    }
    let _ = &land.gemeinden;
    let mut allowed = 0;
    for (s, a, r) in &queries {
        allowed += usize::from(!matches!(
            snap.decide(SubjectRef::User(s), a, ResourceRef::id(r), &ctx)
                .effect,
            interkom_policy::Effect::Deny
        ));
    }
    println!(
        "{} of {} sample questions are not denied",
        allowed,
        queries.len()
    );

    // Latency distribution of single decisions on one core.
    let n = 1_000_000;
    let mut lat = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let (s, a, r) = &queries[i % queries.len()];
        let t = Instant::now();
        black_box(snap.decide(SubjectRef::User(s), a, ResourceRef::id(r), &ctx));
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let wall = t0.elapsed();
    lat.sort_unstable();
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    println!(
        "decide: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs; {:.0} decisions/s on one core",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        n as f64 / wall.as_secs_f64()
    );

    let (read, total) = load_from_database(&land);
    println!(
        "load from the database: read {:.0} ms, read + compile {:.0} ms",
        read.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5));
    let mut i = 0usize;
    c.bench_function("decide/land", |b| {
        b.iter(|| {
            let (s, a, r) = &queries[i % queries.len()];
            i += 1;
            black_box(snap.decide(SubjectRef::User(s), a, ResourceRef::id(r), &ctx))
        })
    });
    c.final_summary();
}
