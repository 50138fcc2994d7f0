//! The compiled engine against casbin's own enforcer on the same model and
//! lines, and the property that every allow has a path that justifies it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use interkom_policy::engine::{AuthContext, Reason, ResourceRef, Snapshot, SubjectRef};
use interkom_policy::oracle::CasbinOracle;
use interkom_policy::store::LiveData;
use interkom_policy::{Loa, PolicySet, RuleLine, TenantSpec, TenantTree};
use proptest::prelude::*;
use serde_json::{json, Value};

/// The time the tests compile at: the wall clock, as a node's would be.
fn now() -> i64 {
    interkom_types::Clock::default().now()
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The demo county's tree, from the default configuration.
fn demo_tree() -> TenantTree {
    #[derive(serde::Deserialize)]
    struct C {
        tenants: Vec<TenantSpec>,
    }
    let text = std::fs::read_to_string(repo().join("config/interkom.toml")).unwrap();
    let c: C = toml::from_str(&text).unwrap();
    TenantTree::from_specs(&c.tenants).unwrap()
}

fn demo_set() -> PolicySet {
    PolicySet::load(&repo().join("policies")).unwrap()
}

/// Subjects with roles in several tenants: every role at the Kreis, at a
/// Samtgemeinde and at a Gemeinde of each Samtgemeinde.
fn subjects(set: &PolicySet) -> LiveData {
    let mut live = LiveData::default();
    let tenants = [
        "lk-luechow-dannenberg",
        "sg-elbtalaue",
        "sg-gartow",
        "hitzacker-elbe",
        "gorleben",
        "dannenberg-elbe",
    ];
    let mut n = 0;
    for role in set.roles.keys() {
        for t in tenants {
            n += 1;
            let id = format!("u{n}");
            live.users.push((
                id.clone(),
                format!("{role}.{t}"),
                t.to_owned(),
                Some(format!("{id}@example.org")),
            ));
            live.assignments.push((id, t.to_owned(), role.clone()));
        }
    }
    // One with two roles in two tenants.
    live.users
        .push(("multi".into(), "multi".into(), "sg-elbtalaue".into(), None));
    live.assignments.push((
        "multi".into(),
        "sg-elbtalaue".into(),
        "meldebehoerde".into(),
    ));
    live.assignments.push((
        "multi".into(),
        "lk-luechow-dannenberg".into(),
        "kommunalaufsicht".into(),
    ));
    live
}

/// When the questions are asked.
const NOW: i64 = 1_000_000;

fn strong(now: i64) -> AuthContext {
    AuthContext {
        acr: Some(Loa::High),
        auth_time: Some(now),
        second_factor: true,
        now,
    }
}

/// Whether the lines (not grants) permit, as the engine decided.
fn engine_lines_allow(snap: &Snapshot, subject: &str, action: &str, res: ResourceRef<'_>) -> bool {
    let d = snap.decide(SubjectRef::User(subject), action, res, &strong(NOW));
    d.reasons.iter().any(|r| matches!(r, Reason::Permit { .. }))
        && !d.reasons.iter().any(|r| matches!(r, Reason::Forbid { .. }))
}

/// Every permit names a line that matches and a role the subject holds in
/// a tenant with that reach; every grant is valid. Recomputed here from the
/// raw data, independently of the engine's indexes.
fn justified(
    snap: &Snapshot,
    tree: &TenantTree,
    live: &LiveData,
    set: &PolicySet,
    subject: &str,
    action: &str,
    resource: &str,
) {
    let d = snap.decide(
        SubjectRef::User(subject),
        action,
        ResourceRef::id(resource),
        &strong(NOW),
    );
    if !d.allowed() {
        return;
    }
    let res = live.resources.iter().find(|r| r.id == resource).unwrap();
    let owner = res.owner.as_deref().and_then(|o| tree.get(o));
    let user = live
        .users
        .iter()
        .find(|u| u.0 == subject || u.1 == subject)
        .unwrap();
    let mut justified_once = false;
    for r in &d.reasons {
        let v = snap.describe(r);
        match r {
            Reason::Permit { .. } => {
                let line = RuleLine::parse(v["rule"].as_str().unwrap()).unwrap();
                let (sub, obj, act, reach, eft) = (
                    &line.values[0],
                    &line.values[1],
                    &line.values[2],
                    &line.values[3],
                    &line.values[4],
                );
                assert_eq!(eft, "allow");
                assert!(obj == "*" || obj == &res.id || obj == &res.kind, "{v}");
                assert!(act == "*" || act == action, "{v}");
                let role = v["role"].as_str();
                let tenant = v["tenant"].as_str();
                let got_reach = v["reach"].as_str().unwrap();
                assert!(reach == "*" || reach == got_reach, "{v}");
                if sub.starts_with("user:") {
                    assert!(
                        sub == &format!("user:{}", user.0) || sub == &format!("user:{}", user.1)
                    );
                    assert_eq!(got_reach, "direct");
                } else {
                    let role = role.unwrap();
                    assert_eq!(sub, role, "{v}");
                    let tenant = tree.get(tenant.unwrap()).unwrap();
                    if role != "*" {
                        assert!(
                            live.assignments
                                .iter()
                                .any(|a| a.0 == user.0 && a.1 == tenant.id && a.2 == role),
                            "{subject} does not hold {role} in {}",
                            tenant.id
                        );
                    } else {
                        assert_eq!(tenant.id, user.2);
                    }
                    let owner = owner.unwrap();
                    match got_reach {
                        "own" => assert_eq!(tenant.id, owner.id),
                        "subtree" => {
                            assert!(set.roles[role].supervisory, "{role} is not supervisory");
                            assert!(owner.path.contains(&tenant.id));
                        }
                        "members" => {
                            assert_eq!(owner.parent.as_deref(), Some(tenant.id.as_str()));
                            assert!(live
                                .rules
                                .contains(&RuleLine::new("g", &[&tenant.id, &res.kind])));
                        }
                        other => panic!("unexpected reach {other}"),
                    }
                }
                justified_once = true;
            }
            Reason::Grant { .. } => {
                let g = live
                    .grants
                    .iter()
                    .find(|g| g.id == v["grant"].as_str().unwrap())
                    .unwrap();
                assert_eq!(g.resource, res.id);
                assert!(g.actions.iter().any(|a| a == "*" || a == action));
                assert!(g.expires_at > NOW && g.revoked_at.is_none());
                assert!(g.not_before.is_none_or(|nb| nb <= NOW));
                if res.protection.overall() == interkom_policy::ProtectionNeed::SehrHoch {
                    assert!(
                        g.approved_at.is_some()
                            && g.approver.as_deref().is_some_and(|a| a != g.grantor)
                    );
                }
                // The grantee is this subject, a role it holds in that
                // tenant, or a subtree its home lies in.
                let home = tree.get(&user.2).unwrap();
                let ok = match g.grantee.split_once(':') {
                    Some(("user", who)) => who == user.0 || who == user.1,
                    _ => match g.grantee.split_once('@') {
                        Some(("*", t)) => home.path.iter().any(|p| p == t),
                        Some((role, t)) => live
                            .assignments
                            .iter()
                            .any(|a| a.0 == user.0 && a.1 == t && a.2 == role),
                        None => false,
                    },
                };
                assert!(ok, "grant {} does not name {subject}", g.id);
                justified_once = true;
            }
            _ => {}
        }
    }
    assert!(
        justified_once,
        "{subject} {action} {resource}: allowed without a path"
    );
}

fn demo_live(set: &PolicySet) -> LiveData {
    let mut live = subjects(set);
    live.rules = set.lines.clone();
    live.resources = set.resources.clone();
    for g in &set.grants {
        let mut g = interkom_policy::store::grant_from_file(g, 0).unwrap();
        g.grantee = g.grantee.replace("user:jan.meyer", "user:u1");
        live.grants.push(g);
    }
    live
}

#[tokio::test]
async fn demo_policy_agrees_with_casbin_and_every_allow_is_justified() {
    let tree = demo_tree();
    let set = demo_set();
    let live = demo_live(&set);
    let (snap, problems) = Snapshot::compile(&tree, &set, &live, now());
    assert!(problems.is_empty(), "{problems:?}");
    let oracle = CasbinOracle::new(&set.model_text, &snap).await.unwrap();
    let mut allows = 0;
    for user in &live.users {
        for res in &live.resources {
            for action in ["read", "write", "login", "shred"] {
                let r = ResourceRef::id(&res.id);
                let engine = engine_lines_allow(&snap, &user.0, action, r);
                let casbin = oracle
                    .lines_allow(&snap.casbin_requests(&user.0, action, r))
                    .unwrap();
                assert_eq!(engine, casbin, "{} {action} {}", user.1, res.id);
                allows += usize::from(engine);
                justified(&snap, &tree, &live, &set, &user.0, action, &res.id);
            }
        }
    }
    assert!(allows > 50, "the demo policy allows something: {allows}");
}

#[test]
fn check_reports_what_can_never_match_or_contradicts() {
    let tree = demo_tree();
    let set = demo_set();
    let mut live = demo_live(&set);
    for l in [
        "p, sachbearbeitung, haushalt, read, subtree, allow, true", // not supervisory
        "p, gewerbeamt, kfz-zulassung, *, members, allow, true",    // no Samtgemeinde performs it
        "p, hausmeister, haushalt, read, own, allow, true",         // unknown role
        "p, kaemmerei, haushalt, *, own, maybe, true",              // bad effect
        "p, kaemmerei, haushalt, *, sideways, allow, true",         // bad reach
        "p, kaemmerei, haushalt, *, own, allow, resource.x > 3",    // bad condition
        "p, kaemmerei, friedhof, *, own, allow, true",              // no such resource or kind
        "p, kaemmerei, haushalt, *, own, deny, true",               // contradicts an allow
        "g, hitzacker-elbe, haushalt", // a Gemeinde performs no tasks for members
    ] {
        live.rules.push(RuleLine::parse(l).unwrap());
    }
    let mut expired = interkom_policy::store::grant_from_file(&set.grants[0], 0).unwrap();
    expired.id = "old".into();
    expired.expires_at = 1;
    live.grants.push(expired);
    let mut unknown = live.grants[0].clone();
    unknown.id = "nowhere".into();
    unknown.resource = "no-such-resource".into();
    live.grants.push(unknown);
    live.assignments
        .push(("u1".into(), "atlantis".into(), "admin".into()));
    let (_, problems) = Snapshot::compile(&tree, &set, &live, now());
    let text: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.subject, p.message))
        .collect();
    for want in [
        "not supervisory",
        "no Samtgemeinde performs `kfz-zulassung`",
        "role `hausmeister` is not in roles.toml",
        "effect `maybe`",
        "reach `sideways`",
        "condition `resource.x > 3`",
        "`friedhof` is neither a resource nor a kind",
        "the deny overrides",
        "`hitzacker-elbe` is not a Samtgemeinde",
        "grant old: expired",
        "resource `no-such-resource` does not exist",
        "held in `atlantis`, which is not a tenant",
    ] {
        assert!(
            text.iter().any(|t| t.contains(want)),
            "missing `{want}` in {text:#?}"
        );
    }
}

#[test]
fn policy_files_with_errors_are_reported_all_at_once() {
    let dir = std::env::temp_dir().join(format!("interkom-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.conf", "roles.toml"] {
        std::fs::copy(repo().join("policies").join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("baseline.csv"), "p, a, b\nx, y\n").unwrap();
    std::fs::write(
        dir.join("protection.toml"),
        "version = \"1\"\n[needs.normal]\nacr = \"urn:interkom:loa:high\"\n[needs.hoch]\n[needs.sehr_hoch]\n",
    )
    .unwrap();
    let errs = PolicySet::load(&dir).unwrap_err();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let _ = std::fs::remove_dir_all(&dir);
    for want in [
        "baseline.csv:1: a `p` line has 6 values",
        "baseline.csv:2: unknown line type `x`",
        "missing `# version",
        "asks less than `normal`",
    ] {
        assert!(
            text.iter().any(|t| t.contains(want)),
            "missing `{want}` in {text:#?}"
        );
    }
}

const ROLES: &[&str] = &[
    "meldebehoerde",
    "kommunalaufsicht",
    "sachbearbeitung",
    "kaemmerei",
    "*",
    "user:u3",
];
const OBJS: &[&str] = &[
    "*",
    "haushalt",
    "einwohnermeldewesen",
    "ratsinfo-hitzacker",
    "meldedaten-gorleben",
    "haushalt-sg-elbtalaue",
];
const ACTS: &[&str] = &["*", "read", "write"];
const REACHES: &[&str] = &["*", "own", "subtree", "members", "global", "direct"];
const CONDS: &[&str] = &[
    "true",
    "resource.clerk == subject.email",
    "resource.clerk == subject.tenant",
];

fn line() -> impl Strategy<Value = RuleLine> {
    (
        0..ROLES.len(),
        0..OBJS.len(),
        0..ACTS.len(),
        0..REACHES.len(),
        any::<bool>(),
        0..CONDS.len(),
    )
        .prop_map(|(s, o, a, r, allow, c)| {
            RuleLine::new(
                "p",
                &[
                    ROLES[s],
                    OBJS[o],
                    ACTS[a],
                    REACHES[r],
                    if allow { "allow" } else { "deny" },
                    CONDS[c],
                ],
            )
        })
}

const GRANTEES: &[&str] = &[
    "user:u3",
    "user:kaemmerei.hitzacker-elbe",
    "sachbearbeitung@dannenberg-elbe",
    "meldebehoerde@sg-gartow",
    "*@sg-elbtalaue",
    "*@gorleben",
];

fn grant(resources: Vec<String>) -> impl Strategy<Value = interkom_policy::store::Grant> {
    (
        0..GRANTEES.len(),
        proptest::sample::select(resources),
        any::<bool>(),
        0..4u8,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(who, resource, any_action, when, approved, revoked)| {
            interkom_policy::store::Grant {
                id: format!("g-{who}-{resource}-{when}"),
                grantee: GRANTEES[who].into(),
                resource,
                actions: vec![if any_action { "*" } else { "read" }.into()],
                purpose: "test".into(),
                not_before: (when == 3).then_some(NOW + 10),
                expires_at: if when == 0 { NOW - 1 } else { NOW + 1000 },
                grantor: "a".into(),
                approver: approved.then(|| "b".into()),
                approved_at: approved.then_some(NOW - 5),
                revoked_at: revoked.then_some(NOW - 2),
            }
        })
}

fn task() -> impl Strategy<Value = RuleLine> {
    (0..3usize, 0..2usize).prop_map(|(sg, k)| {
        RuleLine::new(
            "g",
            &[
                ["sg-elbtalaue", "sg-gartow", "sg-luechow"][sg],
                ["haushalt", "einwohnermeldewesen"][k],
            ],
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random policies: the engine's index and casbin's enforcer agree on
    /// every question, and no allow exists without a justifying path.
    #[test]
    fn random_policies_agree_with_casbin(
        lines in proptest::collection::vec(line(), 1..24),
        tasks in proptest::collection::vec(task(), 0..4),
        grants in proptest::collection::vec(grant(demo_set().resources.iter().map(|r| r.id.clone()).collect()), 0..6),
    ) {
        let tree = demo_tree();
        let set = demo_set();
        let mut live = subjects(&set);
        live.rules = lines.into_iter().chain(tasks).collect();
        live.resources = set.resources.clone();
        live.grants = grants;
        live.grants.sort_by(|a, b| a.id.cmp(&b.id));
        live.grants.dedup_by(|a, b| a.id == b.id);
        let (snap, _) = Snapshot::compile(&tree, &set, &live, now());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let oracle = rt.block_on(CasbinOracle::new(&set.model_text, &snap)).unwrap();
        let users: Vec<String> = live.users.iter().step_by(3).map(|u| u.0.clone()).collect();
        for user in &users {
            let email = live.users.iter().find(|u| &u.0 == user).and_then(|u| u.3.clone()).unwrap_or_default();
            for res in &live.resources {
                for action in ["read", "write"] {
                    let props: serde_json::Map<String, Value> =
                        json!({ "clerk": if res.id.len() % 2 == 0 { email.as_str() } else { "hitzacker-elbe" } })
                            .as_object().unwrap().clone();
                    let r = ResourceRef { id: &res.id, kind: None, properties: Some(&props) };
                    let engine = engine_lines_allow(&snap, user, action, r);
                    let casbin = oracle.lines_allow(&snap.casbin_requests(user, action, r)).unwrap();
                    prop_assert_eq!(engine, casbin, "{} {} {}", user, action, res.id);
                }
            }
        }
        // Every subject, every resource: no allow without a path.
        for user in &live.users {
            for res in &live.resources {
                for action in ["read", "write"] {
                    justified(&snap, &tree, &live, &set, &user.0, action, &res.id);
                }
            }
        }
    }
}

/// What the reviews of the engine found, each as a question that must be
/// denied.
#[test]
fn nothing_is_reached_through_unknown_tenants_borrowed_ids_or_missing_attributes() {
    let tree = demo_tree();
    let mut set = demo_set();
    let mut live = demo_live(&set);
    // A role held in a tenant the tree does not know; an account whose
    // home is unknown.
    live.users
        .push(("lost".into(), "lost".into(), "sg-elbtalaue".into(), None));
    live.assignments
        .push(("lost".into(), "atlantis".into(), "kommunalaufsicht".into()));
    live.users.push((
        "homeless".into(),
        "homeless".into(),
        "atlantis".into(),
        None,
    ));
    live.assignments.push((
        "homeless".into(),
        "atlantis".into(),
        "kommunalaufsicht".into(),
    ));
    live.rules.push(
        RuleLine::parse("p, sachbearbeitung, ratsinfo-hitzacker, write, own, allow, true").unwrap(),
    );
    live.rules
        .push(RuleLine::parse("p, *, ratsinfo-hitzacker, export, *, deny, true").unwrap());
    live.rules.push(
        RuleLine::parse("p, client:kfz-backend, ratsinfo-hitzacker, *, direct, allow, true")
            .unwrap(),
    );
    live.rules.push(
        RuleLine::parse(
            "p, sachbearbeitung, haushalt, print, own, allow, resource.clerk == subject.email",
        )
        .unwrap(),
    );
    live.rules.push(
        RuleLine::parse(
            "p, sachbearbeitung, haushalt, read, own, deny, resource.clerk == subject.email",
        )
        .unwrap(),
    );
    // Unregistered objects get a default need (as the Todo example does).
    set.protection.default_need = Some(interkom_policy::ProtectionNeed::Normal);
    let (snap, problems) = Snapshot::compile(&tree, &set, &live, now());
    assert!(problems
        .iter()
        .any(|p| p.message.contains("`atlantis`, which is not a tenant")));
    assert!(problems
        .iter()
        .any(|p| p.message.contains("home tenant `atlantis`")));
    let ctx = strong(NOW);
    let clerk = live
        .users
        .iter()
        .find(|u| u.1 == "sachbearbeitung.hitzacker-elbe")
        .unwrap()
        .0
        .clone();
    let d = |s: SubjectRef<'_>, a: &str, r: ResourceRef<'_>| snap.decide(s, a, r, &ctx);
    let owner = json!({ "owner": "hitzacker-elbe" });
    let owner = owner.as_object().unwrap();
    let no_clerk = json!({ "clerk": "" });
    let no_clerk = no_clerk.as_object().unwrap();

    assert!(!d(
        SubjectRef::User("lost"),
        "read",
        ResourceRef::id("haushalt-hitzacker-elbe")
    )
    .allowed());
    assert_eq!(
        d(
            SubjectRef::User("homeless"),
            "read",
            ResourceRef::id("haushalt-hitzacker-elbe")
        )
        .reasons,
        [Reason::UnknownSubject]
    );
    // The line for the registered resource works ...
    assert!(d(
        SubjectRef::User(&clerk),
        "write",
        ResourceRef::id("ratsinfo-hitzacker")
    )
    .allowed());
    // ... but an object cannot borrow it by naming the resource as its type
    // or its id.
    let by_type = ResourceRef {
        id: "x",
        kind: Some("ratsinfo-hitzacker"),
        properties: Some(owner),
    };
    assert_eq!(
        d(SubjectRef::User(&clerk), "write", by_type).reasons,
        [Reason::UnknownResource]
    );
    let by_id = ResourceRef {
        id: "ratsinfo-hitzacker",
        kind: Some("haushalt"),
        properties: Some(owner),
    };
    assert!(!d(SubjectRef::User(&clerk), "write", by_id).allowed());
    // `*` deny lines hold for clients too.
    assert!(d(
        SubjectRef::Client("kfz-backend"),
        "read",
        ResourceRef::id("ratsinfo-hitzacker")
    )
    .allowed());
    assert!(!d(
        SubjectRef::Client("kfz-backend"),
        "export",
        ResourceRef::id("ratsinfo-hitzacker")
    )
    .allowed());
    // An empty attribute decides nothing: the allow does not apply, the
    // deny does.
    let r = ResourceRef {
        id: "haushalt-hitzacker-elbe",
        kind: None,
        properties: Some(no_clerk),
    };
    assert!(!d(SubjectRef::User(&clerk), "print", r).allowed());
    assert!(matches!(
        d(SubjectRef::User(&clerk), "read", r).reasons[0],
        Reason::Forbid { .. }
    ));
}
