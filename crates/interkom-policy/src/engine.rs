//! The compiled policy and `decide()`.
//!
//! The casbin model (`policies/model.conf`) defines what a policy line means;
//! casbin's own enforcer evaluates every line for every request, which is
//! too slow for a Land with 200,000 lines. The engine therefore compiles the
//! lines into hash indexes keyed by (subject, object), works out the reaches
//! of the rule of the levels from the tenant tree, and answers in
//! microseconds. `crates/interkom-policy/tests/oracle.rs` checks its answers
//! against casbin's enforcer on the same lines.
//!
//! Here are the snapshot's types, `decide()` and what explains a decision;
//! [`compile`](Snapshot::compile)'s passes are in `engine/compile.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;
use serde::Serialize;
use serde_json::{json, Value};

use crate::loa::{Loa, Protection, ProtectionNeed, Requirement, SECOND_FACTOR_AMR};
use crate::policyset::{PolicySet, ResourceSpec, RuleLine};
use crate::store::{Grant, LiveData};
use crate::tenant::{Level, TenantTree};

mod compile;

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
type FxSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// The symbol of `*`.
const ANY: u32 = 0;
/// A symbol no line uses (an action or object the policy never names).
pub(super) const NONE: u32 = u32::MAX;

/// How the tenant in which a role is held relates to the resource's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    Own,
    Subtree,
    Members,
    Global,
    Direct,
    /// No relation at all: only deny lines for any reach (`*`) apply, so a
    /// deny holds even where access comes through a grant.
    None,
}

impl Reach {
    const ALL: [Reach; 6] = [
        Reach::Own,
        Reach::Subtree,
        Reach::Members,
        Reach::Global,
        Reach::Direct,
        Reach::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Own => "own",
            Reach::Subtree => "subtree",
            Reach::Members => "members",
            Reach::Global => "global",
            Reach::Direct => "direct",
            Reach::None => "none",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn parse(s: &str) -> Option<u8> {
        if s == "*" {
            return Some(0xff);
        }
        // `none` is the engine's, never a line's: an allow for unrelated
        // tenants would be sideways access without a grant.
        Reach::ALL
            .into_iter()
            .filter(|r| *r != Reach::None)
            .find(|r| r.as_str() == s)
            .map(Reach::bit)
    }

    fn lowest(mask: u8) -> Reach {
        Reach::ALL
            .into_iter()
            .find(|r| mask & r.bit() != 0)
            .unwrap_or(Reach::Direct)
    }
}

/// A subject attribute a condition may compare with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubjectAttr {
    Id,
    Username,
    Email,
    Tenant,
}

/// `resource.<property> == subject.<attribute>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cond {
    property: Box<str>,
    attr: SubjectAttr,
}

/// Parses a line's condition: `true`, or `resource.<p> == subject.<a>`.
pub(crate) fn parse_cond(s: &str) -> Result<Option<Cond>, String> {
    if s == "true" {
        return Ok(None);
    }
    let bad = || {
        format!("condition `{s}`: use `true` or `resource.<property> == subject.<id|username|email|tenant>`")
    };
    let (l, r) = s.split_once("==").ok_or_else(bad)?;
    let property = l.trim().strip_prefix("resource.").ok_or_else(bad)?;
    if property.is_empty()
        || !property
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(bad());
    }
    let attr = match r.trim().strip_prefix("subject.").ok_or_else(bad)? {
        "id" => SubjectAttr::Id,
        "username" => SubjectAttr::Username,
        "email" => SubjectAttr::Email,
        "tenant" => SubjectAttr::Tenant,
        _ => return Err(bad()),
    };
    Ok(Some(Cond {
        property: property.into(),
        attr,
    }))
}

#[derive(Debug, Clone)]
struct CLine {
    /// Index into `Snapshot::rules`.
    rule: u32,
    act: u32,
    reach: u8,
    allow: bool,
    cond: Option<Cond>,
}

#[derive(Debug, Clone)]
struct TNode {
    parent: Option<u32>,
    level: Level,
}

#[derive(Debug, Clone)]
struct Subj {
    id: Box<str>,
    username: Option<Box<str>>,
    email: Option<Box<str>>,
    home: Option<u32>,
    /// (role symbol, tenant where held; `None`: held in no tenant).
    roles: Vec<(u32, Option<u32>)>,
    /// Symbols of `user:<id>` / `user:<username>` where lines name them.
    direct: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Res {
    spec: ResourceSpec,
    sym: u32,
    kind: u32,
    owner: Option<u32>,
}

#[derive(Debug, Clone)]
struct CGrant {
    grant: Grant,
    resource: u32,
    /// Action symbols, unless `any_action` (the grant says `*`).
    actions: Vec<u32>,
    any_action: bool,
    approved: bool,
}

/// The subject of a request.
#[derive(Debug, Clone, Copy)]
pub enum SubjectRef<'a> {
    /// A user (account id or username, or a subject of the policy set).
    User(&'a str),
    /// A client acting for itself.
    Client(&'a str),
}

/// The resource of a request: a registered id, or a type and id with
/// properties (AuthZEN).
#[derive(Debug, Clone, Copy)]
pub struct ResourceRef<'a> {
    pub id: &'a str,
    pub kind: Option<&'a str>,
    pub properties: Option<&'a serde_json::Map<String, Value>>,
}

impl<'a> ResourceRef<'a> {
    pub fn id(id: &'a str) -> ResourceRef<'a> {
        ResourceRef {
            id,
            kind: None,
            properties: None,
        }
    }
}

/// How the subject authenticated, and when the question is asked.
#[derive(Debug, Clone, Default)]
pub struct AuthContext {
    pub acr: Option<Loa>,
    pub auth_time: Option<i64>,
    pub second_factor: bool,
    pub now: i64,
}

impl AuthContext {
    /// From token claims: `acr`, `amr`, `auth_time`.
    pub fn from_claims(
        acr: Option<&str>,
        amr: &[&str],
        auth_time: Option<i64>,
        now: i64,
    ) -> AuthContext {
        AuthContext {
            acr: acr.and_then(Loa::from_acr),
            auth_time,
            second_factor: amr.iter().any(|m| SECOND_FACTOR_AMR.contains(m)),
            now,
        }
    }
}

/// The effect of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
    /// Allowed once the subject authenticates again, at least at
    /// `required_acr` and within `max_age` seconds.
    StepUp {
        required_acr: Option<Loa>,
        max_age: Option<i64>,
    },
}

/// Why a decision came out as it did (indices into the snapshot; see
/// [`Snapshot::describe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A line permitted: role (symbol; ANY for `*`, NONE for a direct line)
    /// held in tenant, through reach.
    Permit {
        rule: u32,
        role: u32,
        tenant: Option<u32>,
        reach: Reach,
    },
    /// A deny line matched (rule 6).
    Forbid {
        rule: u32,
        role: u32,
        tenant: Option<u32>,
        reach: Reach,
    },
    /// A valid grant permitted (rule 4).
    Grant {
        grant: u32,
    },
    GrantExpired {
        grant: u32,
    },
    GrantNotYetValid {
        grant: u32,
    },
    GrantRevoked {
        grant: u32,
    },
    GrantAwaitsApproval {
        grant: u32,
    },
    /// No line or grant permits (rule 1).
    NoPermit,
    UnknownSubject,
    UnknownResource,
    AcrTooLow {
        have: Option<Loa>,
        need: Loa,
    },
    AuthTooOld {
        age: Option<i64>,
        max: i64,
    },
    SecondFactorMissing,
}

/// The answer of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub effect: Effect,
    pub reasons: Vec<Reason>,
    /// The resource's overall protection need, if it is known.
    pub need: Option<ProtectionNeed>,
    /// Whether this decision must be written to the audit store.
    pub audit: bool,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// The reason an audit event names: for a step-up the unmet
    /// requirement, otherwise the first reason.
    pub fn main_reason(&self) -> Option<&Reason> {
        match self.effect {
            Effect::StepUp { .. } => self.reasons.iter().find(|r| {
                matches!(
                    r,
                    Reason::AcrTooLow { .. }
                        | Reason::AuthTooOld { .. }
                        | Reason::SecondFactorMissing
                )
            }),
            _ => self.reasons.first(),
        }
    }

    fn deny(reason: Reason) -> Decision {
        Decision {
            effect: Effect::Deny,
            reasons: vec![reason],
            need: None,
            audit: true,
        }
    }
}

/// A problem found while compiling the policy (`interkom policy check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Where: `line p, …`, `resource x`, `grant y`, `subject z`.
    pub subject: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One compiled version of the policy. Immutable; the engine swaps in a new
/// one on every change.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: i64,
    pub baseline: String,
    syms: FxMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    rules: Vec<RuleLine>,
    lines: FxMap<(u32, u32), Vec<CLine>>,
    tasks: FxSet<(u32, u32)>,
    tenant_ids: FxMap<Box<str>, u32>,
    tenants: Vec<TNode>,
    tenant_names: Vec<Box<str>>,
    supervisory: FxSet<u32>,
    subject_index: FxMap<Box<str>, u32>,
    subjects: Vec<Subj>,
    resource_index: FxMap<Box<str>, u32>,
    client_index: FxMap<Box<str>, u32>,
    resources: Vec<Res>,
    grants: Vec<CGrant>,
    grants_by_user: FxMap<u32, Vec<u32>>,
    grants_by_role: FxMap<(u32, u32), Vec<u32>>,
    grants_by_subtree: FxMap<u32, Vec<u32>>,
    requirements: [Option<Requirement>; 3],
    /// Per kind, the highest classification among its registered resources.
    kind_protection: FxMap<u32, Protection>,
    /// Per kind and owner (`NONE`: no owner), the highest classification
    /// among the registered resources of that owner: an object takes its
    /// classification from its own tenant and the tenants above it only.
    kind_protection_at: FxMap<(u32, u32), Protection>,
    default_need: Option<ProtectionNeed>,
    /// The Leistungen, by the client they log in through.
    leistungen: FxMap<Box<str>, std::sync::Arc<crate::leistungen::LeistungSpec>>,
}

fn need_idx(n: ProtectionNeed) -> usize {
    match n {
        ProtectionNeed::Normal => 0,
        ProtectionNeed::Hoch => 1,
        ProtectionNeed::SehrHoch => 2,
    }
}

impl Snapshot {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.syms.get(s) {
            return i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(NONE - 1);
        self.names.push(s.into());
        self.syms.insert(s.into(), i);
        i
    }

    /// The index of an optional tenant id; `Err` if it names no tenant.
    fn tenant_of(&self, id: Option<&str>) -> Result<Option<u32>, ()> {
        match id {
            None => Ok(None),
            Some(t) => self.tenant_ids.get(t).map(|&i| Some(i)).ok_or(()),
        }
    }

    fn sym(&self, s: &str) -> u32 {
        self.syms.get(s).copied().unwrap_or(NONE)
    }

    fn name(&self, sym: u32) -> &str {
        self.names.get(sym as usize).map(|s| &**s).unwrap_or("")
    }

    /// Compiles the live policy. Lines, resources and grants with errors are
    /// left out (and reported): a decision never rests on a malformed entry.
    /// `now` is the time grants are judged by in the report (an expired
    /// grant is a warning); decisions judge them by the request's time.
    pub fn compile(
        tree: &TenantTree,
        set: &PolicySet,
        live: &LiveData,
        now: i64,
    ) -> (Snapshot, Vec<Finding>) {
        compile::Compiler::new(set, live, now).run(tree)
    }

    /// Is `a` the tenant `b` or above it?
    fn at_or_above(&self, a: u32, b: u32) -> bool {
        let mut cur = Some(b);
        while let Some(c) = cur {
            if c == a {
                return true;
            }
            cur = self.tenants[c as usize].parent;
        }
        false
    }

    /// The reaches of a role held in `via` (None: in no tenant) towards a
    /// resource owned by `owner` of kind `kind` (rules 2 and 3).
    fn reach(&self, role: u32, via: Option<u32>, owner: Option<u32>, kind: u32) -> u8 {
        let (v, o) = match (via, owner) {
            (Some(v), Some(o)) => (v, o),
            // A policy set without a tree: role and resource of no tenant.
            (None, None) => return Reach::Global.bit(),
            // One side in the tree, the other not: no relation.
            _ => return Reach::None.bit(),
        };
        let mut m = 0;
        if v == o {
            m |= Reach::Own.bit();
        }
        if self.supervisory.contains(&role) && self.at_or_above(v, o) {
            m |= Reach::Subtree.bit();
        }
        if self.tenants[o as usize].parent == Some(v)
            && self.tenants[v as usize].level == Level::Samtgemeinde
            && self.tasks.contains(&(v, kind))
        {
            m |= Reach::Members.bit();
        }
        if m == 0 {
            m = Reach::None.bit();
        }
        m
    }

    fn subject_attr<'s>(&'s self, subj: &'s Subj, attr: SubjectAttr) -> Option<&'s str> {
        match attr {
            SubjectAttr::Id => Some(&subj.id),
            SubjectAttr::Username => subj.username.as_deref(),
            SubjectAttr::Email => subj.email.as_deref(),
            SubjectAttr::Tenant => subj.home.map(|t| &*self.tenant_names[t as usize]),
        }
    }

    /// Whether a line's condition holds; `None` when it cannot be decided
    /// (an attribute is missing or empty): an allow then does not apply, a
    /// deny does.
    fn cond_holds(
        &self,
        cond: &Option<Cond>,
        subj: Option<&Subj>,
        res: &ResourceRef<'_>,
    ) -> Option<bool> {
        let Some(c) = cond else {
            return Some(true);
        };
        let a = res
            .properties
            .and_then(|p| p.get(&*c.property))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())?;
        let b = subj
            .and_then(|s| self.subject_attr(s, c.attr))
            .filter(|v| !v.is_empty())?;
        Some(a == b)
    }

    /// A resource's symbol, kind, owner and protection: a registered one;
    /// or an object of a known kind (`resource.type`) owned by the tenant in
    /// `properties.owner`, classified like the registered resources of its
    /// kind; or, where the policy set gives a default need, any object of
    /// no tenant. `None`: unknown.
    /// A registered resource is named by its id with the type `resource`
    /// or its kind (another type is an object of that type, whatever its
    /// id). An unregistered object matches lines by its kind only, never by
    /// its id, which the caller may have chosen freely.
    #[allow(clippy::type_complexity)]
    fn resolve(
        &self,
        r: &ResourceRef<'_>,
    ) -> Option<(u32, u32, Option<u32>, Protection, Option<u32>)> {
        if let Some(&i) = self.resource_index.get(r.id) {
            let res = &self.resources[i as usize];
            if r.kind.is_none_or(|k| k == "resource" || k == res.spec.kind) {
                return Some((res.sym, res.kind, res.owner, res.spec.protection, Some(i)));
            }
        }
        let kind_name = r.kind?;
        let kind = self.sym(kind_name);
        // A type that names a registered resource (and is no kind) would
        // let an object borrow that resource's lines.
        if self.resource_index.contains_key(kind_name) && !self.kind_protection.contains_key(&kind)
        {
            return None;
        }
        let owner = match r.properties.and_then(|p| p.get("owner")) {
            None => None,
            Some(Value::String(t)) => Some(*self.tenant_ids.get(t.as_str())?),
            Some(_) => return None,
        };
        if let Some(o) = owner.filter(|_| self.kind_protection.contains_key(&kind)) {
            if let Some(p) = self.kind_protection_above(kind, o) {
                return Some((NONE, kind, owner, p, None));
            }
        }
        let n = self.default_need?;
        Some((NONE, kind, owner, Protection { c: n, i: n, a: n }, None))
    }

    /// How the registered resources of `kind` owned by `owner`, by a
    /// tenant above it or by none classify an object of `owner`: the
    /// highest of them. A Gemeinde's own classification never reaches
    /// another's objects.
    fn kind_protection_above(&self, kind: u32, owner: u32) -> Option<Protection> {
        let mut found: Option<Protection> = self.kind_protection_at.get(&(kind, NONE)).copied();
        let mut cur = Some(owner);
        while let Some(t) = cur {
            if let Some(p) = self.kind_protection_at.get(&(kind, t)) {
                found = Some(match found {
                    Some(f) => Protection {
                        c: f.c.max(p.c),
                        i: f.i.max(p.i),
                        a: f.a.max(p.a),
                    },
                    None => *p,
                });
            }
            cur = self.tenants[t as usize].parent;
        }
        found
    }

    /// The tenant owning the resource a request names, if any.
    pub fn owner_of(&self, r: &ResourceRef<'_>) -> Option<String> {
        let (_, _, owner, _, _) = self.resolve(r)?;
        owner.map(|t| self.tenant_names[t as usize].to_string())
    }

    /// The resource a client's logins are governed by.
    pub fn resource_for_client(&self, client_id: &str) -> Option<&ResourceSpec> {
        self.client_index
            .get(client_id)
            .map(|&i| &self.resources[i as usize].spec)
    }

    pub fn resource(&self, id: &str) -> Option<&ResourceSpec> {
        self.resource_index
            .get(id)
            .map(|&i| &self.resources[i as usize].spec)
    }

    /// The stored path of a tenant: `/kreis/sg/gemeinde/`.
    pub fn tenant_path(&self, id: &str) -> Option<String> {
        let mut cur = self.tenant_ids.get(id).copied();
        let mut parts = Vec::new();
        while let Some(t) = cur {
            parts.push(&*self.tenant_names[t as usize]);
            cur = self.tenants[t as usize].parent;
        }
        if parts.is_empty() {
            return None;
        }
        parts.reverse();
        Some(format!("/{}/", parts.join("/")))
    }

    /// The home tenant of a subject (account id, username or e-mail), if
    /// known.
    /// The Leistung that logs in through `client`, if it is one.
    pub fn leistung_for_client(
        &self,
        client: &str,
    ) -> Option<&std::sync::Arc<crate::leistungen::LeistungSpec>> {
        self.leistungen.get(client)
    }

    /// Every Leistung of the live policy.
    pub fn leistungen(&self) -> impl Iterator<Item = &crate::leistungen::LeistungSpec> {
        self.leistungen.values().map(|l| &**l)
    }

    pub fn subject_home(&self, id: &str) -> Option<&str> {
        let &i = self.subject_index.get(id)?;
        let home = self.subjects[i as usize].home?;
        Some(&self.tenant_names[home as usize])
    }

    /// Whether tenant `inner` lies in the subtree of tenant `root` (itself
    /// included).
    pub fn within(&self, inner: &str, root: &str) -> bool {
        let mut cur = self.tenant_ids.get(inner).copied();
        while let Some(t) = cur {
            if &*self.tenant_names[t as usize] == root {
                return true;
            }
            cur = self.tenants[t as usize].parent;
        }
        false
    }

    /// Whether the tenant is the root of its tree (a Kreis).
    pub fn is_root(&self, id: &str) -> bool {
        self.tenant_ids
            .get(id)
            .is_some_and(|&t| self.tenants[t as usize].parent.is_none())
    }

    /// Whether the subject (account id, username or policy-set subject) is known.
    pub fn knows_subject(&self, id: &str) -> bool {
        self.subject_index.contains_key(id)
    }

    /// Decides whether `subject` may do `action` on `resource`, by DESIGN's
    /// rule of the levels (the numbered rules are marked below). One
    /// function on purpose: it runs on every request, and split into a
    /// function per rule it measured slower on `benches/decide.rs`.
    pub fn decide(
        &self,
        subject: SubjectRef<'_>,
        action: &str,
        resource: ResourceRef<'_>,
        ctx: &AuthContext,
    ) -> Decision {
        // The resource: registered, or (if the policy set allows) by type.
        let Some((res_sym, kind, owner, protection, registered)) = self.resolve(&resource) else {
            return Decision::deny(Reason::UnknownResource);
        };
        let act = self.sym(action);
        let need = protection.overall();
        let mut permits: Vec<Reason> = Vec::new();
        let mut forbids: Vec<Reason> = Vec::new();
        let objs = [res_sym, kind, ANY];
        let objs = if res_sym == kind {
            &objs[1..]
        } else {
            &objs[..]
        };
        let (subj, si) = match subject {
            SubjectRef::User(id) => match self.subject_index.get(id) {
                Some(&i) => (Some(&self.subjects[i as usize]), i),
                None => return Decision::deny(Reason::UnknownSubject),
            },
            SubjectRef::Client(_) => (None, NONE),
        };

        let scan = |sub: u32,
                    role: u32,
                    tenant: Option<u32>,
                    reach: u8,
                    permits: &mut Vec<Reason>,
                    forbids: &mut Vec<Reason>| {
            for &obj in objs {
                if obj == NONE {
                    continue;
                }
                let Some(lines) = self.lines.get(&(sub, obj)) else {
                    continue;
                };
                for l in lines {
                    if (l.act == ANY || l.act == act) && l.reach & reach != 0 {
                        let reason_reach = Reach::lowest(l.reach & reach);
                        let holds = self.cond_holds(&l.cond, subj, &resource);
                        if l.allow && (holds != Some(true) || reason_reach == Reach::None) {
                            continue;
                        }
                        if !l.allow && holds == Some(false) {
                            continue;
                        }
                        if l.allow {
                            permits.push(Reason::Permit {
                                rule: l.rule,
                                role,
                                tenant,
                                reach: reason_reach,
                            });
                        } else {
                            forbids.push(Reason::Forbid {
                                rule: l.rule,
                                role,
                                tenant,
                                reach: reason_reach,
                            });
                        }
                    }
                }
            }
        };

        let mut grant_notes: Vec<Reason> = Vec::new();
        if let Some(subj) = subj {
            {
                // Rules 2 and 3: each role held, from the tenant it is held in.
                for &(role, via) in &subj.roles {
                    let reach = self.reach(role, via, owner, kind);
                    scan(role, role, via, reach, &mut permits, &mut forbids);
                }
                // `*`: any subject, from its home tenant.
                let reach = self.reach(NONE, subj.home, owner, kind);
                scan(ANY, ANY, subj.home, reach, &mut permits, &mut forbids);
                for &d in &subj.direct {
                    scan(
                        d,
                        NONE,
                        None,
                        Reach::Direct.bit(),
                        &mut permits,
                        &mut forbids,
                    );
                }
                // Grants (rule 4).
                if let Some(res_idx) = registered {
                    let mut check = |gi: u32| {
                        let g = &self.grants[gi as usize];
                        if g.resource != res_idx || !(g.any_action || g.actions.contains(&act)) {
                            return;
                        }
                        let note = if g.grant.revoked_at.is_some() {
                            Reason::GrantRevoked { grant: gi }
                        } else if g.grant.expires_at <= ctx.now {
                            Reason::GrantExpired { grant: gi }
                        } else if g.grant.not_before.is_some_and(|nb| nb > ctx.now) {
                            Reason::GrantNotYetValid { grant: gi }
                        } else if need == ProtectionNeed::SehrHoch && !g.approved {
                            Reason::GrantAwaitsApproval { grant: gi }
                        } else {
                            permits.push(Reason::Grant { grant: gi });
                            return;
                        };
                        grant_notes.push(note);
                    };
                    if let Some(v) = self.grants_by_user.get(&si) {
                        v.iter().for_each(|&g| check(g));
                    }
                    for &(role, via) in &subj.roles {
                        if let Some(v) = via.and_then(|t| self.grants_by_role.get(&(role, t))) {
                            v.iter().for_each(|&g| check(g));
                        }
                    }
                    let mut cur = subj.home;
                    while let Some(t) = cur {
                        if let Some(v) = self.grants_by_subtree.get(&t) {
                            v.iter().for_each(|&g| check(g));
                        }
                        cur = self.tenants[t as usize].parent;
                    }
                }
            }
        } else if let SubjectRef::Client(id) = subject {
            // `*` is anyone: its deny lines (reach `*`) hold for clients too.
            scan(
                ANY,
                ANY,
                None,
                Reach::None.bit(),
                &mut permits,
                &mut forbids,
            );
            let d = self.sym(&format!("client:{id}"));
            if d != NONE {
                scan(
                    d,
                    NONE,
                    None,
                    Reach::Direct.bit(),
                    &mut permits,
                    &mut forbids,
                );
            }
        }

        // Rule 6: an explicit deny overrides every allow.
        if !forbids.is_empty() {
            return Decision {
                effect: Effect::Deny,
                reasons: forbids,
                need: Some(need),
                audit: true,
            };
        }
        // Rule 1: default deny (naming the grants that did not apply).
        if permits.is_empty() {
            let mut reasons = vec![Reason::NoPermit];
            reasons.extend(grant_notes);
            return Decision {
                effect: Effect::Deny,
                reasons,
                need: Some(need),
                audit: true,
            };
        }
        // Rule 5: the protection need's requirements.
        let req = self.requirements[need_idx(need)].unwrap_or(Requirement {
            acr: Some(Loa::High),
            max_age: Some(0),
            second_factor: true,
            audit_permits: true,
        });
        let mut unmet = false;
        if let Some(min) = req.acr {
            if ctx.acr.is_none_or(|a| a < min) {
                permits.push(Reason::AcrTooLow {
                    have: ctx.acr,
                    need: min,
                });
                unmet = true;
            }
        }
        if let Some(max) = req.max_age {
            // A login "from the future" (beyond a minute of clock skew)
            // is no login time at all.
            let age = ctx
                .auth_time
                .filter(|t| *t <= ctx.now.saturating_add(60))
                .map(|t| ctx.now.saturating_sub(t).max(0));
            if age.is_none_or(|a| a > max) {
                permits.push(Reason::AuthTooOld { age, max });
                unmet = true;
            }
        }
        if req.second_factor && !ctx.second_factor {
            permits.push(Reason::SecondFactorMissing);
            unmet = true;
        }
        let effect = if unmet {
            Effect::StepUp {
                required_acr: req.acr,
                max_age: req.max_age,
            }
        } else {
            Effect::Allow
        };
        Decision {
            effect,
            reasons: permits,
            need: Some(need),
            audit: unmet || req.audit_permits || need == ProtectionNeed::SehrHoch,
        }
    }

    /// The roles through which `subject` may do anything on `resource`: what
    /// a token for the resource's client carries.
    pub fn roles_for(&self, subject: &str, resource: &str) -> Vec<String> {
        let Some(&si) = self.subject_index.get(subject) else {
            return Vec::new();
        };
        let Some(&ri) = self.resource_index.get(resource) else {
            return Vec::new();
        };
        let subj = &self.subjects[si as usize];
        let r = &self.resources[ri as usize];
        let mut out = BTreeSet::new();
        for &(role, via) in &subj.roles {
            let reach = self.reach(role, via, r.owner, r.kind);
            let lines = || {
                [r.sym, r.kind, ANY]
                    .into_iter()
                    .filter_map(|obj| self.lines.get(&(role, obj)))
                    .flatten()
                    .filter(|l| l.reach & reach != 0)
            };
            // An unconditional permit through a real relation, and no deny
            // of every action for the role.
            let permits = lines()
                .any(|l| l.allow && l.cond.is_none() && reach & !Reach::None.bit() & l.reach != 0);
            let denied = lines().any(|l| !l.allow && l.act == ANY && l.cond.is_none());
            if permits && !denied {
                out.insert(self.name(role).to_owned());
            }
        }
        out.into_iter().collect()
    }

    /// The roles `subject` holds in `tenant` itself, sorted: what a token
    /// for a client bound to no resource carries. The same assignments the
    /// decisions read (a source's role sync reloads the policy before its
    /// login ends), without a database read per token.
    pub fn roles_in(&self, subject: &str, tenant: &str) -> Vec<String> {
        let (Some(&si), Some(&ti)) = (self.subject_index.get(subject), self.tenant_ids.get(tenant))
        else {
            return Vec::new();
        };
        let mut out: Vec<String> = self.subjects[si as usize]
            .roles
            .iter()
            .filter(|(_, held_in)| *held_in == Some(ti))
            .map(|&(role, _)| self.name(role).to_owned())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// A reason in words, with the data behind it (for AuthZEN contexts,
    /// `policy explain` and audit events).
    pub fn describe(&self, r: &Reason) -> Value {
        let tenant = |t: Option<u32>| t.map(|t| self.tenant_names[t as usize].to_string());
        let role_name = |role: u32| match role {
            NONE => None,
            r => Some(self.name(r).to_owned()),
        };
        let grant = |g: u32| &self.grants[g as usize].grant;
        match *r {
            Reason::Permit {
                rule,
                role,
                tenant: t,
                reach,
            }
            | Reason::Forbid {
                rule,
                role,
                tenant: t,
                reach,
            } => {
                let permit = matches!(r, Reason::Permit { .. });
                let line = self.rules[rule as usize].to_csv();
                let via = match (role_name(role), tenant(t)) {
                    (Some(role), Some(t)) => format!("role `{role}` in `{t}`"),
                    (Some(role), None) => format!("role `{role}`"),
                    (None, _) => "the subject itself".to_owned(),
                };
                json!({
                    "code": if permit { "rule_permits" } else { "rule_denies" },
                    "message": format!("{} by `{line}` through {via} (reach {})",
                        if permit { "permitted" } else { "denied" }, reach.as_str()),
                    "rule": line,
                    "role": role_name(role),
                    "tenant": tenant(t),
                    "reach": reach.as_str(),
                })
            }
            Reason::Grant { grant: g } => {
                let g = grant(g);
                json!({
                    "code": "grant_permits",
                    "message": format!("permitted by grant `{}` ({}), granted by {}{}, valid until {}",
                        g.id, g.purpose, g.grantor,
                        g.approver.as_deref().map(|a| format!(", approved by {a}")).unwrap_or_default(),
                        rfc3339(g.expires_at)),
                    "grant": g.id, "purpose": g.purpose, "grantor": g.grantor, "approver": g.approver,
                    "expires_at": rfc3339(g.expires_at),
                })
            }
            Reason::GrantExpired { grant: g } => {
                json!({"code": "grant_expired", "grant": grant(g).id,
                "message": format!("grant `{}` expired at {}", grant(g).id, rfc3339(grant(g).expires_at))})
            }
            Reason::GrantNotYetValid { grant: g } => {
                json!({"code": "grant_not_yet_valid", "grant": grant(g).id,
                "message": format!("grant `{}` is not valid yet", grant(g).id)})
            }
            Reason::GrantRevoked { grant: g } => {
                json!({"code": "grant_revoked", "grant": grant(g).id,
                "message": format!("grant `{}` was revoked", grant(g).id)})
            }
            Reason::GrantAwaitsApproval { grant: g } => {
                json!({"code": "grant_awaits_approval", "grant": grant(g).id,
                "message": format!("grant `{}` to a sehr_hoch resource awaits approval by a second administrator", grant(g).id)})
            }
            Reason::NoPermit => json!({"code": "no_permit",
                "message": "no policy line and no grant permits this (default deny)"}),
            Reason::UnknownSubject => {
                json!({"code": "unknown_subject", "message": "the subject is not known"})
            }
            Reason::UnknownResource => {
                json!({"code": "unknown_resource", "message": "the resource is not registered"})
            }
            Reason::AcrTooLow { have, need } => json!({"code": "acr_too_low",
                "message": format!("the protection need requires {}, the authentication has {}", need.acr(),
                    have.map(|h| h.acr()).unwrap_or("no level of assurance")),
                "required_acr": need.acr(), "acr": have.map(Loa::acr)}),
            Reason::AuthTooOld { age, max } => json!({"code": "auth_too_old",
                "message": match age {
                    Some(a) => format!("the authentication is {a} s old, at most {max} s are allowed"),
                    None => format!("the authentication time is unknown, at most {max} s are allowed"),
                },
                "max_age": max, "age": age}),
            Reason::SecondFactorMissing => json!({"code": "second_factor_missing",
                "message": "the protection need requires a second factor"}),
        }
    }

    /// The casbin requests the engine evaluated for a decision, for checking
    /// it against casbin's enforcer (tests, `policy explain`): one per role
    /// held and reach, as `[sub, obj, kind, act, reach, via, attrs]`.
    pub fn casbin_requests(
        &self,
        subject: &str,
        action: &str,
        resource: ResourceRef<'_>,
    ) -> Vec<[String; 7]> {
        let mut out = Vec::new();
        let Some(&si) = self.subject_index.get(subject) else {
            return out;
        };
        let subj = &self.subjects[si as usize];
        let Some((_, kind_sym, owner, _, registered)) = self.resolve(&resource) else {
            return out;
        };
        // An unregistered object has no id lines can name: "" matches none.
        let (obj, kind) = match registered {
            Some(i) => {
                let spec = &self.resources[i as usize].spec;
                (spec.id.clone(), spec.kind.clone())
            }
            None => (String::new(), resource.kind.unwrap_or("").to_owned()),
        };
        // What conditions may compare: the resource's properties and the
        // subject's attributes, as `key=value` lines.
        let mut attrs = String::new();
        if let Some(p) = resource.properties {
            for (k, v) in p {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    attrs.push_str(&format!("resource.{k}={v}\n"));
                }
            }
        }
        for (name, a) in [
            ("id", SubjectAttr::Id),
            ("username", SubjectAttr::Username),
            ("email", SubjectAttr::Email),
            ("tenant", SubjectAttr::Tenant),
        ] {
            if let Some(v) = self.subject_attr(subj, a).filter(|v| !v.is_empty()) {
                attrs.push_str(&format!("subject.{name}={v}\n"));
            }
        }
        let mut push = |sub: &str, reach: u8, via: Option<u32>| {
            for r in Reach::ALL {
                if reach & r.bit() != 0 {
                    out.push([
                        sub.to_owned(),
                        obj.clone(),
                        kind.clone(),
                        action.to_owned(),
                        r.as_str().to_owned(),
                        via.map(|t| self.tenant_names[t as usize].to_string())
                            .unwrap_or_default(),
                        attrs.clone(),
                    ]);
                }
            }
        };
        for &(role, via) in &subj.roles {
            push(self.name(role), self.reach(role, via, owner, kind_sym), via);
        }
        push("*", self.reach(NONE, subj.home, owner, kind_sym), subj.home);
        for &d in &subj.direct {
            push(self.name(d), Reach::Direct.bit(), None);
        }
        out
    }

    /// The policy lines (`p` and `g`) as compiled, in casbin's form.
    pub fn rule_lines(&self) -> impl Iterator<Item = &RuleLine> {
        self.rules.iter()
    }

    /// The tasks (`g` lines) as compiled.
    pub fn task_lines(&self) -> Vec<RuleLine> {
        let mut v: Vec<RuleLine> = self
            .tasks
            .iter()
            .map(|&(t, k)| RuleLine::new("g", &[&self.tenant_names[t as usize], self.name(k)]))
            .collect();
        v.sort();
        v
    }

    pub fn counts(&self) -> Value {
        json!({
            "lines": self.rules.len() + self.tasks.len(),
            "resources": self.resources.len(),
            "grants": self.grants.len(),
            "subjects": self.subjects.len(),
            "tenants": self.tenants.len(),
        })
    }
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}
