//! Compiling the live policy into a [`Snapshot`]: one pass per part, in
//! the order their checks need — the tree before everything that names a
//! tenant, resources before the lines and grants that name them, subjects
//! before the lines that name them directly, tasks before the lines checked
//! against them. A pass reports what it leaves out as a [`Finding`].

use super::{
    need_idx, parse_cond, CGrant, CLine, Cond, Finding, FxMap, FxSet, Reach, Res, Severity,
    Snapshot, Subj, TNode, NONE,
};
use crate::loa::{Protection, ProtectionNeed};
use crate::policyset::{PolicySet, RuleLine};
use crate::store::{Grant, LiveData};
use crate::tenant::{Level, TenantTree};

/// What makes two lines the same but for their effect: subject, object,
/// action, reach and condition symbols.
type LineKey = (u32, u32, u32, u8, u32);

/// One compilation: the snapshot being built and what was found wrong.
pub(super) struct Compiler<'a> {
    s: Snapshot,
    problems: Vec<Finding>,
    set: &'a PolicySet,
    live: &'a LiveData,
    /// The time grants are judged by (only for reporting: decisions judge
    /// them by the time of the request).
    now: i64,
    /// Account id → index into the snapshot's subjects.
    user_ids: FxMap<&'a str, usize>,
    /// The kinds of the registered resources.
    kinds: FxSet<u32>,
    /// The kinds some Samtgemeinde performs for its members.
    task_kinds: FxSet<u32>,
}

impl<'a> Compiler<'a> {
    pub(super) fn new(set: &'a PolicySet, live: &'a LiveData, now: i64) -> Compiler<'a> {
        let mut s = Snapshot {
            version: live.version,
            baseline: set.version.clone(),
            default_need: set.protection.default_need,
            ..Snapshot::default()
        };
        s.intern("*");
        for n in ProtectionNeed::ALL {
            s.requirements[need_idx(n)] = Some(set.protection.requirement(n));
        }
        Compiler {
            s,
            problems: Vec::new(),
            set,
            live,
            now,
            user_ids: FxMap::default(),
            kinds: FxSet::default(),
            task_kinds: FxSet::default(),
        }
    }

    /// Every pass, in order.
    pub(super) fn run(mut self, tree: &TenantTree) -> (Snapshot, Vec<Finding>) {
        self.tree(tree);
        self.roles();
        self.resources();
        self.subjects();
        self.tasks();
        self.lines();
        self.direct_symbols();
        self.grants();
        self.leistungen();
        (self.s, self.problems)
    }

    /// The Leistungen, by the client they log in through; one offered by
    /// a tenant not in the tree is left out.
    fn leistungen(&mut self) {
        let live = self.live;
        for l in &live.leistungen {
            if !self.s.tenant_ids.contains_key(l.tenant.as_str()) {
                self.problem(
                    Severity::Error,
                    format!("Leistung {}", l.id),
                    format!("unknown tenant `{}`", l.tenant),
                );
                continue;
            }
            if let Err(m) = l.check() {
                self.problem(Severity::Error, format!("Leistung {}", l.id), m);
                continue;
            }
            self.s
                .leistungen
                .insert(l.client.as_str().into(), std::sync::Arc::new(l.clone()));
        }
    }

    fn problem(&mut self, severity: Severity, subject: String, message: String) {
        self.problems.push(Finding {
            severity,
            subject,
            message,
        });
    }

    fn known_role(&self, role: &str) -> bool {
        self.set.roles.contains_key(role)
    }

    /// The tenants, each with its parent and level.
    fn tree(&mut self, tree: &TenantTree) {
        let s = &mut self.s;
        for t in tree.iter() {
            let i = s.tenants.len() as u32;
            s.tenant_ids.insert(t.id.as_str().into(), i);
            s.tenant_names.push(t.id.as_str().into());
            s.tenants.push(TNode {
                parent: None,
                level: t.level,
            });
        }
        for t in tree.iter() {
            let i = s.tenant_ids[t.id.as_str()];
            s.tenants[i as usize].parent = t
                .parent
                .as_deref()
                .and_then(|p| s.tenant_ids.get(p).copied());
        }
    }

    /// The roles of `roles.toml`; which are supervisory (rule 3).
    fn roles(&mut self) {
        for (name, def) in &self.set.roles {
            let r = self.s.intern(name);
            if def.supervisory {
                self.s.supervisory.insert(r);
            }
        }
    }

    /// The registered resources, and per kind the highest protection need.
    fn resources(&mut self) {
        let live = self.live;
        for r in &live.resources {
            let Ok(owner) = self.s.tenant_of(r.owner.as_deref()) else {
                self.problem(
                    Severity::Error,
                    format!("resource {}", r.id),
                    format!(
                        "owner `{}` is not a tenant",
                        r.owner.as_deref().unwrap_or("")
                    ),
                );
                continue;
            };
            let sym = self.s.intern(&r.id);
            let kind = self.s.intern(&r.kind);
            let idx = self.s.resources.len() as u32;
            if let Some(c) = &r.client {
                if self.s.client_index.insert(c.as_str().into(), idx).is_some() {
                    self.problem(
                        Severity::Error,
                        format!("resource {}", r.id),
                        format!("client `{c}` belongs to two resources"),
                    );
                }
            }
            self.s.resource_index.insert(r.id.as_str().into(), idx);
            self.s.resources.push(Res {
                spec: r.clone(),
                sym,
                kind,
                owner,
            });
        }
        self.kinds = self.s.resources.iter().map(|r| r.kind).collect();
        let s = &mut self.s;
        for r in &s.resources {
            let p = r.spec.protection;
            let raise = |k: &mut Protection| {
                k.c = k.c.max(p.c);
                k.i = k.i.max(p.i);
                k.a = k.a.max(p.a);
            };
            s.kind_protection
                .entry(r.kind)
                .and_modify(raise)
                .or_insert(p);
            s.kind_protection_at
                .entry((r.kind, r.owner.unwrap_or(NONE)))
                .and_modify(raise)
                .or_insert(p);
        }
    }

    /// Subjects: accounts with their roles, then those of the policy set;
    /// then the index by id and username.
    fn subjects(&mut self) {
        self.accounts();
        self.assignments();
        self.set_subjects();
        self.index_subjects();
    }

    fn accounts(&mut self) {
        let live = self.live;
        for (id, username, tenant, email) in &live.users {
            // An account whose home the tree does not know is no subject.
            let Some(&home) = self.s.tenant_ids.get(tenant.as_str()) else {
                self.problem(
                    Severity::Error,
                    format!("subject {id}"),
                    format!("home tenant `{tenant}` is not a tenant"),
                );
                continue;
            };
            self.user_ids.insert(id.as_str(), self.s.subjects.len());
            self.s.subjects.push(Subj {
                id: id.as_str().into(),
                username: Some(username.as_str().into()),
                email: email.as_deref().map(Into::into),
                home: Some(home),
                roles: Vec::new(),
                direct: Vec::new(),
            });
        }
    }

    /// The roles accounts hold, each in its tenant (rule 2).
    fn assignments(&mut self) {
        let live = self.live;
        for (subject, tenant, role) in &live.assignments {
            let Some(&i) = self.user_ids.get(subject.as_str()) else {
                continue;
            };
            // A role in a tenant the tree does not know reaches nothing.
            let Some(&t) = self.s.tenant_ids.get(tenant.as_str()) else {
                self.problem(
                    Severity::Error,
                    format!("subject {subject}"),
                    format!("role `{role}` is held in `{tenant}`, which is not a tenant"),
                );
                continue;
            };
            let r = self.s.intern(role);
            self.s.subjects[i].roles.push((r, Some(t)));
        }
    }

    /// The subjects the policy set defines (no account).
    fn set_subjects(&mut self) {
        let (set, live) = (self.set, self.live);
        let usernames: FxSet<&str> = live.users.iter().map(|u| u.1.as_str()).collect();
        for sp in &set.subjects {
            if self.user_ids.contains_key(sp.id.as_str())
                || usernames.contains(sp.id.as_str())
                || set.subjects.iter().filter(|o| o.id == sp.id).count() > 1
            {
                self.problem(
                    Severity::Error,
                    format!("subject {}", sp.id),
                    "the id is not unique among accounts and policy-set subjects".into(),
                );
                continue;
            }
            let Ok(home) = self.s.tenant_of(sp.tenant.as_deref()) else {
                self.problem(
                    Severity::Error,
                    format!("subject {}", sp.id),
                    format!(
                        "tenant `{}` is not a tenant",
                        sp.tenant.as_deref().unwrap_or("")
                    ),
                );
                continue;
            };
            let mut roles = Vec::new();
            for r in &sp.roles {
                if !self.known_role(r) {
                    self.problem(
                        Severity::Error,
                        format!("subject {}", sp.id),
                        format!("role `{r}` is not in roles.toml"),
                    );
                }
                roles.push((self.s.intern(r), home));
            }
            self.s.subjects.push(Subj {
                id: sp.id.as_str().into(),
                username: None,
                email: sp.email.as_deref().map(Into::into),
                home,
                roles,
                direct: Vec::new(),
            });
        }
    }

    /// Subjects by id, then by username where no id is the same.
    fn index_subjects(&mut self) {
        let s = &mut self.s;
        for (i, subj) in s.subjects.iter().enumerate() {
            s.subject_index.insert(subj.id.clone(), i as u32);
        }
        for (i, subj) in s.subjects.iter().enumerate() {
            if let Some(u) = &subj.username {
                s.subject_index.entry(u.clone()).or_insert(i as u32);
            }
        }
    }

    /// The tasks (`g` lines) a Samtgemeinde performs for its members; first,
    /// because the lines are checked against them.
    fn tasks(&mut self) {
        let live = self.live;
        for line in live.rules.iter().filter(|l| l.ptype == "g") {
            let at = || format!("line {}", line.to_csv());
            let (sg, kind) = (&line.values[0], &line.values[1]);
            match self.s.tenant_ids.get(sg.as_str()).copied() {
                Some(t) if self.s.tenants[t as usize].level == Level::Samtgemeinde => {
                    let k = self.s.intern(kind);
                    self.s.tasks.insert((t, k));
                }
                Some(_) => self.problem(Severity::Error, at(), format!("`{sg}` is not a Samtgemeinde: only Samtgemeinden perform tasks for member Gemeinden")),
                None => self.problem(Severity::Error, at(), format!("`{sg}` is not a tenant")),
            }
        }
        self.task_kinds = self.s.tasks.iter().map(|&(_, k)| k).collect();
    }

    /// The `p` lines, indexed by (subject, object).
    fn lines(&mut self) {
        let live = self.live;
        let mut seen: FxMap<LineKey, bool> = FxMap::default();
        for line in live.rules.iter().filter(|l| l.ptype == "p") {
            self.line(line, &mut seen);
        }
    }

    /// One `p` line: parsed, checked, indexed; left out on an error.
    fn line(&mut self, line: &RuleLine, seen: &mut FxMap<LineKey, bool>) {
        let Some((allow, reach_mask, cond)) = self.parse_line(line) else {
            return;
        };
        if !self.check_line_subject(line, reach_mask) {
            return;
        }
        self.check_line_object(line);
        self.index_line(line, allow, reach_mask, cond, seen);
    }

    /// A line's effect (allow?), reach mask and condition.
    fn parse_line(&mut self, line: &RuleLine) -> Option<(bool, u8, Option<Cond>)> {
        let at = || format!("line {}", line.to_csv());
        let (reach, eft, cond) = (&line.values[3], &line.values[4], &line.values[5]);
        let allow = match eft.as_str() {
            "allow" => true,
            "deny" => false,
            _ => {
                self.problem(
                    Severity::Error,
                    at(),
                    format!("effect `{eft}`: allow or deny"),
                );
                return None;
            }
        };
        let Some(reach_mask) = Reach::parse(reach) else {
            self.problem(
                Severity::Error,
                at(),
                format!("reach `{reach}`: own, subtree, members, global, direct or *"),
            );
            return None;
        };
        match parse_cond(cond) {
            Ok(cond) => Some((allow, reach_mask, cond)),
            Err(m) => {
                self.problem(Severity::Error, at(), m);
                None
            }
        }
    }

    /// Checks a line's subject: a subject named directly, `*` or a known
    /// role. False if the line is left out (an unknown role).
    fn check_line_subject(&mut self, line: &RuleLine, reach_mask: u8) -> bool {
        let at = || format!("line {}", line.to_csv());
        let (sub, reach) = (&line.values[0], &line.values[3]);
        let direct = sub.starts_with("user:") || sub.starts_with("client:");
        if direct {
            if sub.starts_with("user:") && !self.s.subject_index.contains_key(&sub[5..]) {
                self.problem(
                    Severity::Warning,
                    at(),
                    format!("`{sub}` is no known subject"),
                );
            }
            if reach_mask & Reach::Direct.bit() == 0 {
                self.problem(Severity::Warning, at(), "a line naming a subject applies with reach `direct` (or *); this one never matches".into());
            }
        } else if sub != "*" && !self.known_role(sub) {
            self.problem(
                Severity::Error,
                at(),
                format!("role `{sub}` is not in roles.toml"),
            );
            return false;
        }
        if !direct
            && sub != "*"
            && reach == "subtree"
            && !self.s.supervisory.contains(&self.s.sym(sub))
        {
            self.problem(Severity::Warning, at(), format!("role `{sub}` is not supervisory: it never reaches a subtree (rule 3); this line never matches"));
        }
        true
    }

    /// Warns of a line whose object can never match.
    fn check_line_object(&mut self, line: &RuleLine) {
        let at = || format!("line {}", line.to_csv());
        let (obj, reach) = (&line.values[1], &line.values[3]);
        let obj_kind = match self.s.resource_index.get(obj.as_str()) {
            Some(&r) => self.s.resources[r as usize].kind,
            None => self.s.sym(obj),
        };
        if reach == "members" && obj != "*" && !self.task_kinds.contains(&obj_kind) {
            self.problem(Severity::Warning, at(), format!("no Samtgemeinde performs `{obj}` for its members (no `g` line): this line never matches"));
        }
        if obj != "*"
            && !self.s.resources.is_empty()
            && !self.s.resource_index.contains_key(obj.as_str())
            && !self.kinds.contains(&self.s.sym(obj))
        {
            self.problem(
                Severity::Warning,
                at(),
                format!("`{obj}` is neither a resource nor a kind of one"),
            );
        }
    }

    /// Adds a checked line to the index; warns of an allow that a deny of
    /// the same line overrides (rule 6).
    fn index_line(
        &mut self,
        line: &RuleLine,
        allow: bool,
        reach: u8,
        cond: Option<Cond>,
        seen: &mut FxMap<LineKey, bool>,
    ) {
        let v = &line.values;
        let sub_sym = self.s.intern(&v[0]);
        let obj_sym = self.s.intern(&v[1]);
        let act_sym = self.s.intern(&v[2]);
        let cond_sym = self.s.intern(&v[5]);
        let key = (sub_sym, obj_sym, act_sym, reach, cond_sym);
        if let Some(&other) = seen.get(&key) {
            if other != allow {
                self.problem(Severity::Warning, format!("line {}", line.to_csv()), "an allow and a deny for the same subject, object, action and reach: the deny overrides (rule 6), the allow never applies".into());
            }
        }
        seen.insert(key, allow);
        let rule = self.s.rules.len() as u32;
        self.s.rules.push(line.clone());
        self.s
            .lines
            .entry((sub_sym, obj_sym))
            .or_default()
            .push(CLine {
                rule,
                act: act_sym,
                reach,
                allow,
                cond,
            });
    }

    /// The symbols of `user:<id>` and `user:<username>` of every subject
    /// that lines name.
    fn direct_symbols(&mut self) {
        let s = &mut self.s;
        for i in 0..s.subjects.len() {
            let mut direct = Vec::new();
            let id = format!("user:{}", s.subjects[i].id);
            if let Some(&d) = s.syms.get(id.as_str()) {
                direct.push(d);
            }
            if let Some(u) = s.subjects[i].username.clone() {
                if let Some(&d) = s.syms.get(format!("user:{u}").as_str()) {
                    direct.push(d);
                }
            }
            s.subjects[i].direct = direct;
        }
    }

    /// The grants (rule 4), indexed by grantee.
    fn grants(&mut self) {
        let live = self.live;
        for g in &live.grants {
            self.grant(g);
        }
    }

    /// One grant; left out if it names no resource, action or grantee known.
    fn grant(&mut self, g: &Grant) {
        let at = format!("grant {}", g.id);
        let Some(&resource) = self.s.resource_index.get(g.resource.as_str()) else {
            self.problem(
                Severity::Error,
                at,
                format!("resource `{}` does not exist", g.resource),
            );
            return;
        };
        let need = self.s.resources[resource as usize]
            .spec
            .protection
            .overall();
        let approved =
            g.approved_at.is_some() && g.approver.as_deref().is_some_and(|a| a != g.grantor);
        if need == ProtectionNeed::SehrHoch && !approved && g.revoked_at.is_none() {
            self.problem(
                Severity::Warning,
                at.clone(),
                "grant to a sehr_hoch resource awaits approval by a second administrator".into(),
            );
        }
        if g.expires_at <= self.now && g.revoked_at.is_none() {
            self.problem(Severity::Warning, at.clone(), "expired".into());
        }
        if g.actions.is_empty() {
            self.problem(Severity::Error, at, "a grant names no action".into());
            return;
        }
        let any_action = g.actions.iter().any(|a| a == "*");
        let actions = g.actions.iter().map(|a| self.s.intern(a)).collect();
        let gi = self.s.grants.len() as u32;
        if !self.index_grantee(g, gi, at) {
            return;
        }
        self.s.grants.push(CGrant {
            grant: g.clone(),
            resource,
            actions,
            any_action,
            approved,
        });
    }

    /// Files grant `gi` under its grantee: a subject, a role held in a
    /// tenant, or everyone of a subtree. False if the grantee is unknown.
    fn index_grantee(&mut self, g: &Grant, gi: u32, at: String) -> bool {
        if let Some(user) = g.grantee.strip_prefix("user:") {
            let Some(&u) = self.s.subject_index.get(user) else {
                self.problem(
                    Severity::Error,
                    at,
                    format!("grantee `{user}` is no known subject"),
                );
                return false;
            };
            self.s.grants_by_user.entry(u).or_default().push(gi);
        } else if let Some((role, tenant)) = g.grantee.split_once('@') {
            let Some(&t) = self.s.tenant_ids.get(tenant) else {
                self.problem(
                    Severity::Error,
                    at,
                    format!("grantee tenant `{tenant}` is not a tenant"),
                );
                return false;
            };
            if role == "*" {
                self.s.grants_by_subtree.entry(t).or_default().push(gi);
            } else {
                if !self.known_role(role) {
                    self.problem(
                        Severity::Error,
                        at,
                        format!("role `{role}` is not in roles.toml"),
                    );
                    return false;
                }
                let r = self.s.intern(role);
                self.s.grants_by_role.entry((r, t)).or_default().push(gi);
            }
        } else {
            self.problem(
                Severity::Error,
                at,
                format!(
                    "grantee `{}`: use user:<name>, <role>@<tenant> or *@<tenant>",
                    g.grantee
                ),
            );
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use crate::engine::{AuthContext, Effect, Reason, ResourceRef, Snapshot, SubjectRef};
    use crate::loa::{Loa, Protection, ProtectionMapping};
    use crate::policyset::{PolicySet, ResourceSpec};
    use crate::store::{Grant, LiveData};
    use crate::tenant::{Level, TenantSpec, TenantTree};

    const EXPIRES: i64 = 1_900_000_000;

    /// A Kreis with one Gemeinde (through its Samtgemeinde), a resource of
    /// the Kreis, and a Gemeinde's clerk granted to read it until `EXPIRES`.
    fn policy() -> (TenantTree, PolicySet, LiveData) {
        let tenant = |id: &str, level, parent: Option<&str>| TenantSpec {
            id: id.into(),
            name: id.into(),
            level,
            parent: parent.map(Into::into),
        };
        let tree = TenantTree::from_specs(&[
            tenant("kreis", Level::Kreis, None),
            tenant("sg", Level::Samtgemeinde, Some("kreis")),
            tenant("dorf", Level::Gemeinde, Some("sg")),
        ])
        .unwrap();
        let protection: ProtectionMapping = toml::from_str(
            r#"
            version = "1"
            [needs.normal]
            acr = "urn:interkom:loa:low"
            [needs.hoch]
            acr = "urn:interkom:loa:substantial"
            [needs.sehr_hoch]
            acr = "urn:interkom:loa:high"
            "#,
        )
        .unwrap();
        let set = PolicySet {
            dir: "policies".into(),
            model_text: String::new(),
            protection,
            roles: BTreeMap::new(),
            version: "1".into(),
            lines: Vec::new(),
            resources: Vec::new(),
            grants: Vec::new(),
            subjects: Vec::new(),
            leistungen: Vec::new(),
        };
        let live = LiveData {
            version: 1,
            resources: vec![ResourceSpec {
                id: "akte".into(),
                name: None,
                kind: "akte".into(),
                owner: Some("kreis".into()),
                client: None,
                protection: Protection::NORMAL,
            }],
            grants: vec![Grant {
                id: "g1".into(),
                grantee: "user:u1".into(),
                resource: "akte".into(),
                actions: vec!["read".into()],
                purpose: "Amtshilfe".into(),
                not_before: None,
                expires_at: EXPIRES,
                grantor: "kreis.admin".into(),
                approver: None,
                approved_at: None,
                revoked_at: None,
            }],
            users: vec![("u1".into(), "clerk".into(), "dorf".into(), None)],
            ..LiveData::default()
        };
        (tree, set, live)
    }

    /// Compiles at `now` and asks at `now` whether the clerk may read.
    fn at(now: i64) -> (Vec<String>, Effect, Vec<Reason>) {
        let (tree, set, live) = policy();
        let (snap, problems) = Snapshot::compile(&tree, &set, &live, now);
        let ctx = AuthContext {
            acr: Some(Loa::Low),
            auth_time: Some(now),
            second_factor: false,
            now,
        };
        let d = snap.decide(
            SubjectRef::User("u1"),
            "read",
            ResourceRef::id("akte"),
            &ctx,
        );
        let problems = problems
            .into_iter()
            .map(|p| format!("{}: {}", p.subject, p.message))
            .collect();
        (problems, d.effect, d.reasons)
    }

    #[test]
    fn a_grant_is_active_before_its_expiry_and_gone_after() {
        let (problems, effect, reasons) = at(EXPIRES - 1);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(effect, Effect::Allow);
        assert_eq!(reasons, vec![Reason::Grant { grant: 0 }]);

        let (problems, effect, reasons) = at(EXPIRES);
        assert_eq!(problems, vec!["grant g1: expired".to_owned()]);
        assert_eq!(effect, Effect::Deny);
        assert_eq!(
            reasons,
            vec![Reason::NoPermit, Reason::GrantExpired { grant: 0 }]
        );
    }
}
