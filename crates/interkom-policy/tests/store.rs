//! The policy store's conformance suite: the paged reads of the admin API
//! (grants, rule lines), the same tests on SQLite and on PostgreSQL,
//! checked against the whole table filtered in memory. PostgreSQL runs
//! when the server of `INTERKOM_TEST_PG` (default
//! postgres://postgres@127.0.0.1:5432) answers; each run makes its own
//! schema and drops it again.
//!
//! Run alone: `cargo nextest run -p interkom-policy --test store`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use interkom_policy::records::{self, GrantFilter, LineFilter, Reach};
use interkom_policy::store::{self, Grant};
use interkom_policy::{Protection, ResourceSpec, RuleLine};
use sqlx::AnyPool;

/// Runs `check` against every backend that is there, on a freshly
/// migrated database with the resources, grants and lines below.
macro_rules! conformance {
    ($name:ident, $check:ident) => {
        #[tokio::test]
        async fn $name() {
            for b in interkom_types::scratch::every("ik_polstore").await {
                interkom_policy::migrate(&b.pool).await.unwrap();
                fill(&b.pool).await;
                $check(&b.pool, b.name).await;
                b.close().await;
            }
        }
    };
}

const NOW: i64 = 1_900_000_000;

/// (id, kind, owner) of the resources.
const RESOURCES: &[(&str, &str, Option<&str>)] = &[
    ("akte-hitzacker", "akte", Some("hitzacker")),
    ("akte-damnatz", "akte", Some("damnatz")),
    ("haushalt-sg", "haushalt", Some("sg-elbtalaue")),
    ("haushalt-lk", "haushalt", Some("lk")),
    ("register", "register", None),
    // Owned by a tenant that is not (or no longer) in the tree.
    ("altakte", "akte", Some("aufgeloest")),
];

/// Tenants of the tree: a Kreis, a Samtgemeinde and two Gemeinden.
const TREE: &[&str] = &["lk", "sg-elbtalaue", "hitzacker", "damnatz"];

async fn fill(pool: &AnyPool) {
    for (id, kind, owner) in RESOURCES {
        let r = ResourceSpec {
            id: (*id).into(),
            name: None,
            kind: (*kind).into(),
            owner: owner.map(str::to_owned),
            client: None,
            protection: Protection::NORMAL,
        };
        store::put_resource(pool, &r, "test", NOW).await.unwrap();
    }
    // Three grants on every resource and one on a resource that is none,
    // to three grantees; ids not in the order of insertion.
    let grantees = ["user:a", "sachbearbeitung@hitzacker", "*@damnatz"];
    let mut n = 0;
    for (resource, _, _) in RESOURCES.iter().chain([&("verschwunden", "", None)]) {
        for grantee in grantees {
            n += 1;
            let g = Grant {
                id: format!("g-{:02}-{}", (n * 7) % 23, resource),
                grantee: grantee.into(),
                resource: (*resource).into(),
                actions: vec!["read".into(), "write".into()],
                purpose: "Prüfung".into(),
                not_before: None,
                expires_at: NOW + 3600,
                grantor: "kreis.admin".into(),
                approver: None,
                approved_at: None,
                revoked_at: None,
            };
            store::add_grant(pool, &g, "test", NOW).await.unwrap();
        }
    }
    // Lines on each resource, on kinds, on `*`, on an object that is no
    // resource; `g` lines of tenants in and out of the tree.
    let mut lines: Vec<String> = Vec::new();
    for (id, kind, _) in RESOURCES {
        lines.push(format!(
            "p, sachbearbeitung, {id}, read, tenant, allow, true"
        ));
        lines.push(format!("p, admin, {id}, write, tenant, deny, true"));
        lines.push(format!(
            "p, sachbearbeitung, {kind}, read, subtree, allow, true"
        ));
    }
    lines.push("p, kommunalaufsicht, *, read, subtree, allow, true".into());
    lines.push("p, sachbearbeitung, gespenst, read, tenant, allow, true".into());
    lines.push("p, sachbearbeitung-2, akte-hitzacker, read, tenant, allow, true".into());
    lines.push("g, sg-elbtalaue, hitzacker".into());
    lines.push("g, sg-elbtalaue, damnatz".into());
    lines.push("g, lk, sg-elbtalaue".into());
    lines.push("g, aufgeloest, hitzacker".into());
    for l in &lines {
        let line = RuleLine::parse(l).unwrap();
        store::add_rule(pool, &line, "test", NOW).await.unwrap();
    }
}

/// The reaches the pages are read for: a Gemeinde, a Samtgemeinde, a
/// whole Kreis (with what applies everywhere), nothing, and only what
/// applies everywhere.
fn reaches() -> Vec<(Vec<String>, bool)> {
    let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        (ids(&["hitzacker"]), false),
        (ids(&["sg-elbtalaue", "hitzacker", "damnatz"]), false),
        (ids(TREE), true),
        (Vec::new(), false),
        (Vec::new(), true),
    ]
}

/// Reads every page of `limit` and checks that nothing comes twice.
async fn all_pages<T, F, Fut>(limit: i64, key: impl Fn(&T) -> String, read: F) -> Vec<String>
where
    F: Fn(Option<String>, i64) -> Fut,
    Fut: std::future::Future<Output = Vec<T>>,
{
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut rows = read(cursor.clone(), limit + 1).await;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        seen.extend(rows.iter().map(&key));
        if !more {
            break;
        }
        cursor = rows.last().map(&key);
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a row came twice: {seen:?}");
    seen
}

async fn grant_pages(pool: &AnyPool, db: &str) {
    let every = records::grants(pool).await.unwrap();
    let owner = |r: &str| RESOURCES.iter().find(|x| x.0 == r).map(|x| x.2);
    for (tenants, everywhere) in reaches() {
        for (resource, grantee) in [
            (None, None),
            (Some("akte-hitzacker"), None),
            (None, Some("*@damnatz")),
            (Some("register"), Some("user:a")),
            (Some("verschwunden"), None),
        ] {
            let filter = GrantFilter {
                reach: Reach {
                    tenants: &tenants,
                    everywhere,
                },
                resource,
                grantee,
            };
            // In memory: grants on a known resource owned in the reach.
            let want: BTreeSet<String> = every
                .iter()
                .filter(|g| match owner(&g.resource) {
                    Some(Some(o)) => tenants.iter().any(|t| t == o),
                    Some(None) => everywhere,
                    None => false,
                })
                .filter(|g| resource.is_none_or(|r| r == g.resource))
                .filter(|g| grantee.is_none_or(|s| s == g.grantee))
                .map(|g| g.id.clone())
                .collect();
            for limit in [1, 2, 5, 1000] {
                let got = all_pages(
                    limit,
                    |g: &records::GrantRecord| g.id.clone(),
                    |after, n| async move {
                        records::grants_page(pool, &filter, after.as_deref(), n)
                            .await
                            .unwrap()
                    },
                )
                .await;
                let mut sorted = got.clone();
                sorted.sort();
                assert_eq!(got, sorted, "{db}: grants by id");
                let got: BTreeSet<String> = got.into_iter().collect();
                assert_eq!(
                    got, want,
                    "{db}: {tenants:?} {everywhere} {resource:?} {grantee:?} by {limit}"
                );
            }
        }
    }
    // The rows are the stored grants.
    let tenants = vec!["hitzacker".to_owned()];
    let filter = GrantFilter {
        reach: Reach {
            tenants: &tenants,
            everywhere: false,
        },
        resource: None,
        grantee: Some("user:a"),
    };
    let page = records::grants_page(pool, &filter, None, 10).await.unwrap();
    assert_eq!(page.len(), 1, "{db}");
    let stored = records::grant(pool, &page[0].id).await.unwrap().unwrap();
    assert_eq!(format!("{:?}", page[0]), format!("{stored:?}"), "{db}");
    assert_eq!(page[0].actions, "read write", "{db}");
}

conformance!(grants_are_paged_and_filtered_in_the_database, grant_pages);

async fn line_pages(pool: &AnyPool, db: &str) {
    let every = records::rule_lines(pool).await.unwrap();
    assert!(every.len() > 20, "{db}");
    let kinds: BTreeSet<&str> = RESOURCES.iter().map(|r| r.1).collect();
    // Where a line applies: a `g` line in its tenant; a `p` line where
    // its object's owner is, everywhere for `*`, a kind or no owned
    // resource.
    let applies = |l: &RuleLine, tenants: &[String], everywhere: bool| {
        let v = |i: usize| l.values[i].as_str();
        if l.ptype == "g" {
            return tenants.iter().any(|t| t == v(0));
        }
        if v(1) == "*" || kinds.contains(v(1)) {
            return everywhere;
        }
        match RESOURCES.iter().find(|r| r.0 == v(1)) {
            Some((_, _, Some(o))) => tenants.iter().any(|t| t == o),
            _ => everywhere,
        }
    };
    for (tenants, everywhere) in reaches() {
        for (subject, object) in [
            (None, None),
            (Some("sachbearbeitung"), None),
            (None, Some("akte-hitzacker")),
            (Some("sg-elbtalaue"), None),
            (Some("admin"), Some("register")),
        ] {
            let filter = LineFilter {
                reach: Reach {
                    tenants: &tenants,
                    everywhere,
                },
                subject,
                object,
            };
            let want: BTreeSet<String> = every
                .iter()
                .filter(|r| applies(&r.line, &tenants, everywhere))
                .filter(|r| subject.is_none_or(|s| r.line.values[0] == s))
                .filter(|r| object.is_none_or(|o| r.line.values[1] == o))
                .map(|r| r.line.to_csv())
                .collect();
            for limit in [1, 3, 1000] {
                let got = all_pages(
                    limit,
                    |r: &records::RuleRecord| r.line.to_csv(),
                    |after, n| async move {
                        records::rule_lines_page(pool, &filter, after.as_deref(), n)
                            .await
                            .unwrap()
                    },
                )
                .await;
                let got: BTreeSet<String> = got.into_iter().collect();
                assert_eq!(
                    got, want,
                    "{db}: {tenants:?} {everywhere} {subject:?} {object:?} by {limit}"
                );
            }
        }
    }
    // The rows read back as the lines stored, with their source.
    let tenants = vec!["sg-elbtalaue".to_owned()];
    let filter = LineFilter {
        reach: Reach {
            tenants: &tenants,
            everywhere: false,
        },
        subject: Some("sg-elbtalaue"),
        object: Some("damnatz"),
    };
    let page = records::rule_lines_page(pool, &filter, None, 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1, "{db}");
    assert_eq!(page[0].line.to_csv(), "g, sg-elbtalaue, damnatz", "{db}");
    assert_eq!(page[0].source, "test", "{db}");
}

conformance!(
    rule_lines_are_paged_and_filtered_in_the_database,
    line_pages
);
