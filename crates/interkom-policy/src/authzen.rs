//! The OpenID AuthZEN Authorization API 1.0: the policy engine as a PDP for
//! Fachverfahren. This module is the PDP's logic — who may ask, what a
//! request says, the decisions and their JSON answers — with no HTTP in it;
//! the routes live at the edge (the `interkom` binary's `authzen` module):
//!
//! - `GET /.well-known/authzen-configuration`: [`Pdp::metadata`].
//! - `POST /access/v1/evaluation`: one decision, [`Pdp::evaluation`].
//! - `POST /access/v1/evaluations`: a batch, [`Pdp::evaluations`]; top-level
//!   `subject`, `action`, `resource` and `context` are defaults each item may
//!   override; results in request order; `options.evaluations_semantic` is
//!   `execute_all` (default), `deny_on_first_deny` or
//!   `permit_on_first_permit`.
//!
//! Callers present a bearer access token from interkom's gateway (client
//! credentials) with the `authzen` scope, which an administrator grants a
//! client; checked by [`Pdp::caller`]. A client asks only about resources
//! its tenant's subtree governs, hears the reasons of a decision (roles,
//! tenants, lines) only about people of that subtree, and never learns
//! whether a username exists elsewhere. Each client has an allowance of
//! requests ([`crate::ratelimit`]); a batch is audited as one summary, with
//! each permit on a `sehr_hoch` resource still recorded by itself. What
//! goes wrong is a [`PdpError`]; the edge answers it as RFC 9457
//! problem+json, with the error's text as the detail.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use interkom_audit::AuditLog;
use interkom_types::Clock;
use serde_json::{json, Map, Value};

use interkom_audit::{Action, AuditEvent, Outcome};

use crate::engine::{AuthContext, Decision, Effect, Reason, ResourceRef, Snapshot, SubjectRef};
use crate::live::PolicyEngine;
use crate::loa::ProtectionNeed;
use crate::ratelimit::RateLimit;

/// Who calls the PDP (from the access token).
#[derive(Debug, Clone)]
pub struct PdpCaller {
    pub client_id: String,
    /// Whether the token is a client's own (client credentials), not a
    /// user's: only clients may ask the PDP.
    pub client_credentials: bool,
    /// Whether the token carries the `authzen` scope (the PDP granted).
    pub granted: bool,
    /// The client's tenant: it asks about its subtree only.
    pub tenant: Option<String>,
}

/// The scope that lets a client ask the PDP.
pub const SCOPE: &str = "authzen";

/// Why a bearer token could not be checked.
#[derive(Debug)]
pub enum AuthFailure {
    /// The database is away: the caller may retry.
    Unavailable(String),
    Internal(String),
}

/// Validates a bearer token: `Ok(None)` if it is not valid.
pub type Authenticate =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<Option<PdpCaller>, AuthFailure>> + Send + Sync>;

/// Why the PDP refuses a request. The text is what the caller reads; a
/// cause worth logging is logged where it arises, never sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdpError {
    /// The token is not valid (or has expired).
    #[error("the access token is invalid or expired")]
    InvalidToken,
    /// A user's token: the PDP answers clients only.
    #[error("the PDP answers clients (a client-credentials access token), not users")]
    NotAClient,
    /// A client not granted the PDP.
    #[error("this client may not ask the PDP: an administrator grants it the `authzen` scope")]
    NotGranted,
    /// A resource outside the subtree of the caller's tenant.
    #[error("`{0}` is not governed by this client's tenant")]
    OutsideSubtree(String),
    /// The client's allowance is spent: retry after this many seconds.
    #[error("too many requests from this client; retry after {0} s")]
    TooManyRequests(u64),
    /// The request is malformed; the text says where.
    #[error("{0}")]
    Malformed(String),
    /// The token could not be checked now (the database is away).
    #[error("temporarily unavailable; try again")]
    Unavailable,
    /// A decision could not be written to the audit trail, so none is
    /// answered.
    #[error("the decision could not be audited; try again")]
    NotAudited,
    #[error("internal error")]
    Internal,
}

/// Most evaluations in one batch.
pub const MAX_BATCH: usize = 1000;

/// Most decisions a batch's summary event names one by one.
pub const SUMMARY_ITEMS: usize = 100;

/// The PDP of a node: cheap to clone.
#[derive(Clone)]
pub struct Pdp {
    pub engine: Arc<PolicyEngine>,
    pub audit: AuditLog,
    pub authenticate: Authenticate,
    /// The issuer URL (the PDP's base).
    pub issuer: String,
    pub clock: Clock,
    /// Each client's allowance of requests.
    pub limit: Arc<RateLimit>,
}

/// One parsed evaluation.
struct Eval {
    subject_type: String,
    subject_id: String,
    action: String,
    resource_type: String,
    resource_id: String,
    properties: Option<Map<String, Value>>,
    ctx: AuthContext,
}

impl Eval {
    fn resource(&self) -> ResourceRef<'_> {
        ResourceRef {
            id: &self.resource_id,
            kind: Some(&self.resource_type),
            properties: self.properties.as_ref(),
        }
    }
}

/// How a batch goes on after a decision (`options.evaluations_semantic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

impl Semantic {
    /// Whether the batch stops after a decision that `allowed` or not.
    fn stops_after(self, allowed: bool) -> bool {
        match self {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !allowed,
            Semantic::PermitOnFirstPermit => allowed,
        }
    }
}

fn malformed(detail: impl Into<String>) -> PdpError {
    PdpError::Malformed(detail.into())
}

/// A request body: one JSON object.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, PdpError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(malformed("the request body must be a JSON object")),
        Err(e) => Err(malformed(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

impl Pdp {
    /// The PDP metadata (`/.well-known/authzen-configuration`).
    pub fn metadata(&self) -> Value {
        let base = self.issuer.trim_end_matches('/');
        json!({
            "policy_decision_point": base,
            "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
            "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
        })
    }

    /// The caller a bearer token stands for: a client acting for itself,
    /// granted the PDP, within its allowance.
    pub async fn caller(&self, token: String) -> Result<PdpCaller, PdpError> {
        match (self.authenticate)(token).await {
            Ok(Some(c)) if c.client_credentials && c.granted => {
                self.limit
                    .take(&c.client_id)
                    .map_err(PdpError::TooManyRequests)?;
                Ok(c)
            }
            Ok(Some(c)) if c.client_credentials => Err(PdpError::NotGranted),
            Ok(Some(_)) => Err(PdpError::NotAClient),
            Ok(None) => Err(PdpError::InvalidToken),
            Err(AuthFailure::Unavailable(e)) => {
                tracing::error!(error = %e, "token validation failed: database unavailable");
                Err(PdpError::Unavailable)
            }
            Err(AuthFailure::Internal(e)) => {
                tracing::error!(error = %e, "token validation failed");
                Err(PdpError::Internal)
            }
        }
    }

    /// One evaluation from the request's top-level fields: the response
    /// object, after the decision is audited where it must be.
    pub async fn evaluation(
        &self,
        caller: &PdpCaller,
        request: &Map<String, Value>,
        request_id: Option<String>,
    ) -> Result<Value, PdpError> {
        self.single(caller, request, request_id, self.clock.now())
            .await
    }

    async fn single(
        &self,
        caller: &PdpCaller,
        m: &Map<String, Value>,
        request_id: Option<String>,
        now: i64,
    ) -> Result<Value, PdpError> {
        let e = parse_eval(
            m.get("subject"),
            m.get("action"),
            m.get("resource"),
            m.get("context"),
            "",
            now,
        )?;
        let snap = self.engine.snapshot();
        governed(&snap, caller, &e)?;
        let d = decide(&snap, &e);
        self.audit_decision(&snap, caller, &e, &d, request_id)
            .await?;
        Ok(response(&snap, &d, explains(&snap, caller, &e)))
    }

    /// A batch of evaluations (without items: one, from the top-level
    /// fields). Every item is parsed before any is decided: a malformed one
    /// fails the whole request, before anything is decided or audited.
    pub async fn evaluations(
        &self,
        caller: &PdpCaller,
        request: &Map<String, Value>,
        request_id: Option<String>,
    ) -> Result<Value, PdpError> {
        let now = self.clock.now();
        let m = request;
        let items = match m.get("evaluations") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return Err(malformed("`evaluations` must be an array")),
        };
        let semantic = semantic(m)?;
        // Without items the request is a single evaluation (AuthZEN 1.0 §7.1).
        if items.is_empty() {
            return self.single(caller, m, request_id, now).await;
        }
        if items.len() > MAX_BATCH {
            return Err(malformed(format!(
                "at most {MAX_BATCH} evaluations per request"
            )));
        }
        let evals = parse_batch(m, &items, now)?;
        let snap = self.engine.snapshot();
        for e in &evals {
            governed(&snap, caller, e)?;
        }
        let mut out = Vec::with_capacity(evals.len());
        let mut decided = Vec::new();
        for e in &evals {
            let d = decide(&snap, e);
            let allowed = d.allowed();
            out.push(response(&snap, &d, explains(&snap, caller, e)));
            decided.push((e, d));
            if semantic.stops_after(allowed) {
                break;
            }
        }
        // A permit on `sehr_hoch` is recorded by itself; every other
        // decision that must be audited goes into one summary.
        let (alone, summed): (Vec<_>, Vec<_>) = decided
            .iter()
            .filter(|(_, d)| d.audit)
            .partition(|(_, d)| d.allowed() && d.need == Some(ProtectionNeed::SehrHoch));
        let results = futures_util::future::join_all(
            alone
                .iter()
                .map(|(e, d)| self.audit_decision(&snap, caller, e, d, request_id.clone())),
        )
        .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        self.audit_summary(&snap, caller, decided.len(), &summed, request_id)
            .await?;
        Ok(json!({ "evaluations": out }))
    }

    /// One event for the audited decisions of a batch: how many of each
    /// effect, and (up to [`SUMMARY_ITEMS`]) who, what and on which
    /// resource.
    async fn audit_summary(
        &self,
        snap: &Snapshot,
        caller: &PdpCaller,
        evaluated: usize,
        summed: &[&(&Eval, Decision)],
        request_id: Option<String>,
    ) -> Result<(), PdpError> {
        if summed.is_empty() {
            return Ok(());
        }
        let count = |f: fn(&Effect) -> bool| summed.iter().filter(|(_, d)| f(&d.effect)).count();
        let items: Vec<Value> = summed
            .iter()
            .take(SUMMARY_ITEMS)
            .map(|(e, d)| {
                json!({
                    "subject": { "type": e.subject_type, "id": e.subject_id },
                    "action": e.action,
                    "resource": { "type": e.resource_type, "id": e.resource_id },
                    "effect": effect_name(d.effect),
                })
            })
            .collect();
        let denied = count(|e| !matches!(e, Effect::Allow));
        let outcome = if denied > 0 {
            Outcome::Denied
        } else {
            Outcome::Success
        };
        let ev = AuditEvent::new(Action::DecisionBatch, outcome)
            .client(&caller.client_id)
            .correlation(request_id)
            .details(json!({
                "via": "authzen",
                "evaluated": evaluated,
                "audited": summed.len(),
                "denied": count(|e| matches!(e, Effect::Deny)),
                "step_up": count(|e| matches!(e, Effect::StepUp { .. })),
                "permitted": count(|e| matches!(e, Effect::Allow)),
                "items": items,
                "items_truncated": summed.len() > SUMMARY_ITEMS,
                "policy_version": snap.version,
            }));
        self.audit.append(ev).await.map(|_| ()).map_err(|err| {
            tracing::error!(error = %err, "audit append failed");
            PdpError::NotAudited
        })
    }

    async fn audit_decision(
        &self,
        snap: &Snapshot,
        caller: &PdpCaller,
        e: &Eval,
        d: &Decision,
        request_id: Option<String>,
    ) -> Result<(), PdpError> {
        let details = json!({
            "via": "authzen",
            "subject": { "type": e.subject_type, "id": e.subject_id },
            "action": e.action,
            "resource": { "type": e.resource_type, "id": e.resource_id },
        });
        let Some(mut ev) = snap.decision_event(d, &e.resource(), details) else {
            return Ok(());
        };
        ev = ev.client(&caller.client_id).correlation(request_id);
        if e.subject_type != "client" {
            ev = ev.subject(&e.subject_id, None);
        }
        self.audit.append(ev).await.map(|_| ()).map_err(|err| {
            tracing::error!(error = %err, "audit append failed");
            PdpError::NotAudited
        })
    }
}

/// `options.evaluations_semantic`, checked before `options` itself.
fn semantic(m: &Map<String, Value>) -> Result<Semantic, PdpError> {
    let semantic = match m.get("options").map(|o| o.get("evaluations_semantic")) {
        None | Some(None) | Some(Some(Value::Null)) => Semantic::ExecuteAll,
        Some(Some(Value::String(v))) if v == "execute_all" => Semantic::ExecuteAll,
        Some(Some(Value::String(v))) if v == "deny_on_first_deny" => Semantic::DenyOnFirstDeny,
        Some(Some(Value::String(v))) if v == "permit_on_first_permit" => {
            Semantic::PermitOnFirstPermit
        }
        Some(Some(_)) => {
            return Err(malformed(
                "`options.evaluations_semantic` must be execute_all, deny_on_first_deny or permit_on_first_permit",
            ))
        }
    };
    if m.get("options")
        .is_some_and(|o| !o.is_object() && !o.is_null())
    {
        return Err(malformed("`options` must be an object"));
    }
    Ok(semantic)
}

/// Every item of a batch, each field falling back to the request's own.
fn parse_batch(m: &Map<String, Value>, items: &[Value], now: i64) -> Result<Vec<Eval>, PdpError> {
    let mut evals = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(it) = item.as_object() else {
            return Err(malformed(format!("evaluations[{i}] must be an object")));
        };
        let pick = |k: &str| it.get(k).filter(|v| !v.is_null()).or_else(|| m.get(k));
        evals.push(parse_eval(
            pick("subject"),
            pick("action"),
            pick("resource"),
            pick("context"),
            &format!("evaluations[{i}]: "),
            now,
        )?);
    }
    Ok(evals)
}

fn required<'a>(v: Option<&'a Value>, field: &str, at: &str) -> Result<&'a Value, String> {
    v.ok_or_else(|| format!("{at}`{field}` is required"))
}

fn obj<'a>(v: &'a Value, field: &str, at: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{at}`{field}` must be an object"))
}

fn string_field(
    m: &Map<String, Value>,
    key: &str,
    field: &str,
    at: &str,
) -> Result<String, String> {
    match m.get(key) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Ok(s.clone()),
        Some(Value::String(s)) if s.is_empty() => {
            Err(format!("{at}`{field}.{key}` must not be empty"))
        }
        Some(Value::String(_)) => Err(format!("{at}`{field}.{key}` is too long")),
        Some(_) => Err(format!("{at}`{field}.{key}` must be a string")),
        None => Err(format!("{at}`{field}.{key}` is required")),
    }
}

fn properties(
    m: &Map<String, Value>,
    field: &str,
    at: &str,
) -> Result<Option<Map<String, Value>>, String> {
    match m.get("properties") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(p)) => Ok(Some(p.clone())),
        Some(_) => Err(format!("{at}`{field}.properties` must be an object")),
    }
}

fn parse_eval(
    subject: Option<&Value>,
    action: Option<&Value>,
    resource: Option<&Value>,
    context: Option<&Value>,
    at: &str,
    now: i64,
) -> Result<Eval, PdpError> {
    parse_eval_fields(subject, action, resource, context, at, now).map_err(PdpError::Malformed)
}

fn parse_eval_fields(
    subject: Option<&Value>,
    action: Option<&Value>,
    resource: Option<&Value>,
    context: Option<&Value>,
    at: &str,
    now: i64,
) -> Result<Eval, String> {
    let subject = obj(required(subject, "subject", at)?, "subject", at)?;
    let action = obj(required(action, "action", at)?, "action", at)?;
    let resource = obj(required(resource, "resource", at)?, "resource", at)?;
    let subject_props = properties(subject, "subject", at)?;
    properties(action, "action", at)?;
    // The login's assurance: from `context`, else from the subject's
    // properties (where some PEPs put what the ID token said).
    let context = match (context, subject_props) {
        (None | Some(Value::Null), Some(p))
            if ["acr", "amr", "auth_time"]
                .iter()
                .any(|k| p.contains_key(*k)) =>
        {
            Some(Value::Object(p))
        }
        (c, _) => c.cloned(),
    };
    let ctx = auth_context(context.as_ref(), at, now)?;
    Ok(Eval {
        subject_type: string_field(subject, "type", "subject", at)?,
        subject_id: string_field(subject, "id", "subject", at)?,
        action: string_field(action, "name", "action", at)?,
        resource_type: string_field(resource, "type", "resource", at)?,
        resource_id: string_field(resource, "id", "resource", at)?,
        properties: properties(resource, "resource", at)?,
        ctx,
    })
}

/// How the subject logged in, from `context` (`acr`, `amr`, `auth_time`).
fn auth_context(context: Option<&Value>, at: &str, now: i64) -> Result<AuthContext, String> {
    let c = match context {
        None | Some(Value::Null) => {
            return Ok(AuthContext {
                now,
                ..AuthContext::default()
            })
        }
        Some(Value::Object(c)) => c,
        Some(_) => return Err(format!("{at}`context` must be an object")),
    };
    let acr = match c.get("acr") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(format!("{at}`context.acr` must be a string")),
    };
    let amr: Vec<&str> = match c.get("amr") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|m| {
                m.as_str()
                    .ok_or_else(|| format!("{at}`context.amr` must be an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{at}`context.amr` must be an array of strings")),
    };
    let auth_time = match c.get("auth_time") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let t = v.as_i64().ok_or_else(|| {
                format!("{at}`context.auth_time` must be an integer (seconds since the epoch)")
            })?;
            if t > now.saturating_add(60) || t < 0 {
                return Err(format!(
                    "{at}`context.auth_time` lies in the future or before 1970"
                ));
            }
            Some(t)
        }
    };
    Ok(AuthContext::from_claims(acr, &amr, auth_time, now))
}

fn effect_name(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
        Effect::StepUp { .. } => "step_up",
    }
}

fn decide(snap: &Snapshot, e: &Eval) -> Decision {
    let subject = if e.subject_type == "client" {
        SubjectRef::Client(&e.subject_id)
    } else {
        SubjectRef::User(&e.subject_id)
    };
    let d = snap.decide(subject, &e.action, e.resource(), &e.ctx);
    metrics::counter!("interkom_decisions_total", "via" => "authzen", "result" => effect_name(d.effect))
        .increment(1);
    d
}

/// Whether the caller's tenant governs the resource of an evaluation (it
/// owns it, or is above its owner); a resource no tenant owns is for a
/// client of the Kreis only.
fn governed(snap: &Snapshot, caller: &PdpCaller, e: &Eval) -> Result<(), PdpError> {
    let Some(mine) = caller.tenant.as_deref() else {
        return Err(PdpError::OutsideSubtree(e.resource_id.clone()));
    };
    let ok = match snap.owner_of(&e.resource()) {
        Some(owner) => snap.within(&owner, mine),
        None => snap.is_root(mine),
    };
    if ok {
        Ok(())
    } else {
        Err(PdpError::OutsideSubtree(e.resource_id.clone()))
    }
}

/// Whether the caller hears why: about the client itself, or a person of
/// its tenant's subtree. Anyone else (an unknown username included) gets
/// the decision alone, the same for a person without a permit as for none.
fn explains(snap: &Snapshot, caller: &PdpCaller, e: &Eval) -> bool {
    if e.subject_type == "client" {
        return e.subject_id == caller.client_id;
    }
    let Some(mine) = caller.tenant.as_deref() else {
        return false;
    };
    match snap.subject_home(&e.subject_id) {
        Some(home) => snap.within(home, mine),
        // Unknown: as a known person of the caller's subtree would be
        // answered by a client of the Kreis (whose subtree is everyone),
        // as a person from elsewhere by any other.
        None if !snap.knows_subject(&e.subject_id) => snap.is_root(mine),
        None => false,
    }
}

/// The response object of one evaluation: `decision` and, for a caller
/// who may hear them, the reasons in `context`.
fn response(snap: &Snapshot, d: &Decision, explained: bool) -> Value {
    // An unknown subject reads as one without a permit: the PDP tells no
    // one whether a username exists.
    let reasons: Vec<Value> = if explained {
        d.reasons
            .iter()
            .map(|r| match r {
                Reason::UnknownSubject => snap.describe(&Reason::NoPermit),
                r => snap.describe(r),
            })
            .collect()
    } else {
        Vec::new()
    };
    let summary = reasons
        .iter()
        .filter_map(|r| r.get("message").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("; ");
    let mut ctx = json!({
        "effect": effect_name(d.effect),
        "reasons": reasons,
        "reason_admin": { "en": summary },
    });
    // (Not told otherwise: a decision about an unknown name has none.)
    if let Some(n) = d.need.filter(|_| explained || d.allowed()) {
        ctx["protection_need"] = json!(n.as_str());
    }
    if let Effect::StepUp {
        required_acr,
        max_age,
    } = d.effect
    {
        ctx["step_up"] = json!({
            "acr_values": required_acr.map(|a| a.acr()),
            "max_age": max_age,
        });
        ctx["reason_user"] = json!({
            "en": "Please log in again with a stronger method.",
            "de": "Bitte melden Sie sich erneut mit einem stärkeren Verfahren an.",
        });
    }
    json!({ "decision": d.allowed(), "context": ctx })
}
