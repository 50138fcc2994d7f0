//! The engine as the rest of interkom uses it: the current snapshot, swapped
//! atomically on every change, and the watch that keeps several nodes in
//! step through the database. Every compilation takes its time from the
//! node's clock. The what-if of a change: the decisions it would flip among
//! the actions, resources and subjects it touches.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use interkom_types::Clock;
use serde::Serialize;
use sqlx::AnyPool;

use crate::engine::{AuthContext, Finding, ResourceRef, Severity, Snapshot, SubjectRef};
use crate::loa::Loa;
use crate::policyset::{PolicySet, ResourceSpec, RuleLine};
use crate::store::{self, Grant, LiveData};
use crate::tenant::TenantTree;
use crate::PolicyError;

/// The policy engine of one node.
pub struct PolicyEngine {
    pool: AnyPool,
    set: PolicySet,
    /// The time a compilation judges grants by.
    clock: Clock,
    current: ArcSwap<Snapshot>,
    problems: ArcSwap<Vec<Finding>>,
    reload: tokio::sync::Mutex<()>,
}

/// A decision the what-if of a change would flip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flip {
    pub subject: String,
    pub action: String,
    pub resource: String,
    pub before: bool,
    pub after: bool,
}

/// A proposed change of the live policy.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub add: Vec<RuleLine>,
    pub remove: Vec<RuleLine>,
    /// Grants to add, judged as if approved: the what-if shows an approver
    /// what the approval would do.
    pub add_grants: Vec<Grant>,
    /// Ids of grants to revoke.
    pub revoke_grants: Vec<String>,
    /// Resources to create or replace (owner, kind, protection need).
    pub put_resources: Vec<ResourceSpec>,
}

impl PolicyEngine {
    /// Imports the policy set's baseline if it changed, and compiles; every
    /// compilation, now and on reload, takes its time from `clock`.
    pub async fn start(
        pool: AnyPool,
        set: PolicySet,
        clock: Clock,
    ) -> Result<Arc<PolicyEngine>, PolicyError> {
        store::import_baseline(&pool, &set, clock.now()).await?;
        PolicyEngine::open(pool, set, clock).await
    }

    /// An engine over the live policy as stored, leaving it as it is (the
    /// policy set's baseline is not imported): for tools that must not
    /// change the live policy.
    pub async fn open(
        pool: AnyPool,
        set: PolicySet,
        clock: Clock,
    ) -> Result<Arc<PolicyEngine>, PolicyError> {
        let engine = Arc::new(PolicyEngine {
            pool,
            set,
            clock,
            current: ArcSwap::from_pointee(Snapshot::default()),
            problems: ArcSwap::from_pointee(Vec::new()),
            reload: tokio::sync::Mutex::new(()),
        });
        engine.reload().await?;
        Ok(engine)
    }

    pub fn policy_set(&self) -> &PolicySet {
        &self.set
    }

    /// The snapshot to decide against. Cheap; hold it for one request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The problems found when the current snapshot was compiled.
    pub fn problems(&self) -> Arc<Vec<Finding>> {
        self.problems.load_full()
    }

    /// Recompiles from the database (after a change on this node, or when
    /// the watch sees another node's).
    pub async fn reload(&self) -> Result<(), PolicyError> {
        let _guard = self.reload.lock().await;
        self.compile_now().await
    }

    async fn compile_now(&self) -> Result<(), PolicyError> {
        let tree = TenantTree::load(&self.pool).await?;
        let live = store::load(&self.pool).await?;
        let set = self.set.clone();
        let now = self.clock.now();
        let (snap, problems) =
            tokio::task::spawn_blocking(move || Snapshot::compile(&tree, &set, &live, now))
                .await
                .map_err(|e| PolicyError::Invalid(format!("policy compilation failed: {e}")))?;
        tracing::debug!(version = snap.version, "policy compiled");
        self.current.store(Arc::new(snap));
        self.problems.store(Arc::new(problems));
        Ok(())
    }

    /// Reloads if the stored version moved.
    /// Compared under the reload lock: the announcement and the poll seeing
    /// the same change recompile once, not twice.
    pub async fn reload_if_changed(&self) -> Result<bool, PolicyError> {
        let _guard = self.reload.lock().await;
        let v = store::version(&self.pool).await?;
        if v != self.current.load().version {
            self.compile_now().await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Keeps this node's policy current: on PostgreSQL it listens for the
    /// announcement of every change (reloading within milliseconds), and on
    /// both databases it also polls the stored version every `every`, which
    /// catches what a dropped connection missed.
    pub fn spawn_watch(
        self: &Arc<Self>,
        every: Duration,
        database_url: &str,
    ) -> tokio::task::JoinHandle<()> {
        let engine = Arc::clone(self);
        let url = interkom_types::Backend::of(&self.pool)
            .is_postgres()
            .then(|| database_url.to_owned());
        tokio::spawn(async move {
            let listen = async {
                let Some(url) = url else {
                    return std::future::pending::<()>().await;
                };
                loop {
                    if let Err(e) = engine.listen(&url).await {
                        tracing::warn!(error = %e, "policy notifications lost; polling until they return");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            };
            let poll = async {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = engine.reload_if_changed().await {
                        tracing::warn!(error = %e, "policy reload failed; keeping the current policy");
                    }
                }
            };
            tokio::join!(listen, poll);
        })
    }

    /// Reloads on every announcement until the connection fails.
    async fn listen(&self, url: &str) -> Result<(), PolicyError> {
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen(store::CHANNEL).await?;
        // Whatever changed while not listening.
        self.reload_if_changed().await?;
        loop {
            // `None`: the connection was lost and re-established, and any
            // announcement in between is gone: look at the version.
            if listener.try_recv().await?.is_none() {
                tracing::warn!("policy notifications interrupted; checking for missed changes");
            }
            if let Err(e) = self.reload_if_changed().await {
                tracing::warn!(error = %e, "policy reload failed; keeping the current policy");
            }
        }
    }

    /// The decisions a change would flip, among the subjects, actions and
    /// resources it touches. Compared by rules alone (as if the subject had
    /// the strongest, freshest login), so only access itself is compared.
    pub async fn what_if(&self, change: &Change, now: i64) -> Result<Preview, PolicyError> {
        let tree = TenantTree::load(&self.pool).await?;
        let live = store::load(&self.pool).await?;
        let set = self.set.clone();
        let change = change.clone();
        tokio::task::spawn_blocking(move || what_if(&tree, &set, &live, &change, now))
            .await
            .map_err(|e| PolicyError::Invalid(format!("what-if failed: {e}")))
    }
}

/// What a change would do, found by compiling the policy with it.
#[derive(Debug, Clone, Default)]
pub struct Preview {
    /// The decisions it flips.
    pub flips: Vec<Flip>,
    /// Errors the change brings in (lines the engine would drop: an
    /// unknown reach or role, a task of a Gemeinde): a change with any is
    /// refused, so that a mistyped deny never fails open.
    pub errors: Vec<Finding>,
}

/// The decisions `change` would flip on `live` and the errors it brings
/// in (see [`PolicyEngine::what_if`]).
pub fn what_if(
    tree: &TenantTree,
    set: &PolicySet,
    live: &LiveData,
    change: &Change,
    now: i64,
) -> Preview {
    let mut after = live.clone();
    after.rules.retain(|r| !change.remove.contains(r));
    for a in &change.add {
        if !after.rules.contains(a) {
            after.rules.push(a.clone());
        }
    }
    for g in &change.add_grants {
        let mut g = g.clone();
        g.approver = Some(format!("{} (what-if)", g.grantor));
        g.approved_at = Some(now);
        g.revoked_at = None;
        after.grants.retain(|x| x.id != g.id);
        after.grants.push(g);
    }
    for g in after.grants.iter_mut() {
        if change.revoke_grants.contains(&g.id) {
            g.revoked_at = Some(now);
        }
    }
    for r in &change.put_resources {
        after.resources.retain(|x| x.id != r.id);
        after.resources.push(r.clone());
    }
    let (before_s, known) = Snapshot::compile(tree, set, live, now);
    let (after_s, found) = Snapshot::compile(tree, set, &after, now);
    let errors = found
        .into_iter()
        .filter(|f| f.severity == Severity::Error && !known.contains(f))
        .collect();
    Preview {
        flips: flips(&before_s, &after_s, live, set, change, now),
        errors,
    }
}

/// The `p` lines a change adds or removes.
fn touched_lines(change: &Change) -> Vec<&RuleLine> {
    change
        .add
        .iter()
        .chain(&change.remove)
        .filter(|l| l.ptype == "p")
        .collect()
}

/// Whether a change adds or removes a task (`g` line): that can change any
/// decision in a member Gemeinde.
fn touches_tasks(change: &Change) -> bool {
    change
        .add
        .iter()
        .chain(&change.remove)
        .any(|l| l.ptype == "g")
}

/// The stored grants a change revokes.
fn revoked<'a>(live: &'a LiveData, change: &Change) -> Vec<&'a Grant> {
    live.grants
        .iter()
        .filter(|g| change.revoke_grants.contains(&g.id))
        .collect()
}

/// The actions whose decisions a change may flip.
fn touched_actions(live: &LiveData, change: &Change) -> Vec<String> {
    let all_actions = || {
        let mut a: Vec<String> = live
            .rules
            .iter()
            .chain(change.add.iter())
            .filter(|l| l.ptype == "p" && l.values[2] != "*")
            .map(|l| l.values[2].clone())
            .collect();
        a.push("login".into());
        a.sort();
        a.dedup();
        a
    };
    let mut actions: Vec<String> = Vec::new();
    for l in touched_lines(change) {
        if l.values[2] == "*" {
            actions = all_actions();
            break;
        }
        actions.push(l.values[2].clone());
    }
    if touches_tasks(change) {
        actions = all_actions();
    }
    // Grants: their actions on their resources; resources: everything on
    // them (a new owner or protection need changes every decision).
    for g in change.add_grants.iter().chain(revoked(live, change)) {
        if g.actions.iter().any(|a| a == "*") {
            actions = all_actions();
        } else {
            actions.extend(g.actions.iter().cloned());
        }
    }
    if !change.put_resources.is_empty() {
        actions = all_actions();
    }
    actions.sort();
    actions.dedup();
    actions
}

/// The resources whose decisions a change may flip.
fn touched_resources<'a>(live: &'a LiveData, change: &'a Change) -> Vec<&'a str> {
    let g_touched = touches_tasks(change);
    let objs: Vec<&str> = touched_lines(change)
        .iter()
        .map(|l| l.values[1].as_str())
        .collect();
    let mut resources: Vec<&str> = live
        .resources
        .iter()
        .filter(|r| g_touched || objs.iter().any(|o| *o == "*" || *o == r.id || *o == r.kind))
        .map(|r| r.id.as_str())
        .collect();
    resources.extend(
        change
            .add_grants
            .iter()
            .chain(revoked(live, change))
            .map(|g| g.resource.as_str()),
    );
    resources.extend(change.put_resources.iter().map(|r| r.id.as_str()));
    resources.sort_unstable();
    resources.dedup();
    resources
}

fn flips(
    before: &Snapshot,
    after: &Snapshot,
    live: &LiveData,
    set: &PolicySet,
    change: &Change,
    now: i64,
) -> Vec<Flip> {
    let ctx = AuthContext {
        acr: Some(Loa::High),
        auth_time: Some(now),
        second_factor: true,
        now,
    };
    let actions = touched_actions(live, change);
    let resources = touched_resources(live, change);
    let subjects: Vec<&str> = live
        .users
        .iter()
        .map(|u| u.0.as_str())
        .chain(set.subjects.iter().map(|s| s.id.as_str()))
        .collect();
    let mut out = Vec::new();
    for s in &subjects {
        for r in &resources {
            for a in &actions {
                let b = before
                    .decide(SubjectRef::User(s), a, ResourceRef::id(r), &ctx)
                    .allowed();
                let n = after
                    .decide(SubjectRef::User(s), a, ResourceRef::id(r), &ctx)
                    .allowed();
                if b != n {
                    let name = live
                        .users
                        .iter()
                        .find(|u| u.0 == *s)
                        .map(|u| u.1.clone())
                        .unwrap_or_else(|| (*s).to_owned());
                    out.push(Flip {
                        subject: name,
                        action: a.clone(),
                        resource: (*r).to_owned(),
                        before: b,
                        after: n,
                    });
                }
            }
        }
    }
    out
}
