//! The OpenID AuthZEN Authorization API 1.0: the policy engine as a PDP for
//! Fachverfahren.
//!
//! - `GET /.well-known/authzen-configuration`: PDP metadata.
//! - `POST /access/v1/evaluation`: one decision.
//! - `POST /access/v1/evaluations`: a batch; top-level `subject`, `action`,
//!   `resource` and `context` are defaults each item may override; results
//!   in request order; `options.evaluations_semantic` is `execute_all`
//!   (default), `deny_on_first_deny` or `permit_on_first_permit`.
//!
//! Callers present a bearer access token from interkom's gateway (client
//! credentials). Errors are RFC 9457 problem+json.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::future::BoxFuture;
use interkom_audit::AuditLog;
use serde_json::{json, Map, Value};

use crate::engine::{AuthContext, Decision, Effect, ResourceRef, Snapshot, SubjectRef};
use crate::live::PolicyEngine;

/// Who calls the PDP (from the access token).
#[derive(Debug, Clone)]
pub struct PdpCaller {
    pub client_id: String,
    /// Whether the token is a client's own (client credentials), not a
    /// user's: only clients may ask the PDP.
    pub client_credentials: bool,
}

/// Why a bearer token could not be checked.
#[derive(Debug)]
pub enum AuthFailure {
    /// The database is away: 503, the caller may retry.
    Unavailable(String),
    Internal(String),
}

/// Validates a bearer token: `Ok(None)` if it is not valid.
pub type Authenticate =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<Option<PdpCaller>, AuthFailure>> + Send + Sync>;

/// What the PDP routes need.
#[derive(Clone)]
pub struct PdpState {
    pub engine: Arc<PolicyEngine>,
    pub audit: AuditLog,
    pub authenticate: Authenticate,
    /// The issuer URL (the PDP's base).
    pub issuer: String,
    /// The time source (seconds since the epoch).
    pub now: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// The largest request body (a full batch of evaluations fits).
const MAX_BODY: usize = 1 << 20;

/// Most evaluations in one batch.
pub const MAX_BATCH: usize = 1000;

/// The PDP routes.
pub fn router(state: PdpState) -> Router {
    Router::new()
        .route("/.well-known/authzen-configuration", get(metadata))
        .route("/access/v1/evaluation", post(evaluation))
        .route("/access/v1/evaluations", post(evaluations))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let mut res = (
        status,
        Json(json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail.into(),
        })),
    )
        .into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"interkom-pdp\""),
        );
    }
    res
}

async fn metadata(State(s): State<PdpState>) -> Response {
    let base = s.issuer.trim_end_matches('/');
    Json(json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
    }))
    .into_response()
}

async fn caller(s: &PdpState, headers: &HeaderMap) -> Result<PdpCaller, Response> {
    let unauthorized = |d: &str| problem(StatusCode::UNAUTHORIZED, d);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            unauthorized("a bearer access token is required (client credentials from interkom)")
        })?
        .to_str()
        .map_err(|_| unauthorized("malformed Authorization header"))?;
    let token = match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim().to_owned(),
        _ => return Err(unauthorized("a bearer access token is required")),
    };
    match (s.authenticate)(token).await {
        Ok(Some(c)) if c.client_credentials => Ok(c),
        Ok(Some(_)) => Err(problem(
            StatusCode::FORBIDDEN,
            "the PDP answers clients (a client-credentials access token), not users",
        )),
        Ok(None) => Err(unauthorized("the access token is invalid or expired")),
        Err(AuthFailure::Unavailable(e)) => {
            tracing::error!(error = %e, "token validation failed: database unavailable");
            Err(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable; try again",
            ))
        }
        Err(AuthFailure::Internal(e)) => {
            tracing::error!(error = %e, "token validation failed");
            Err(problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
        }
    }
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
) -> Result<Eval, String> {
    let subject = obj(
        subject.ok_or_else(|| format!("{at}`subject` is required"))?,
        "subject",
        at,
    )?;
    let action = obj(
        action.ok_or_else(|| format!("{at}`action` is required"))?,
        "action",
        at,
    )?;
    let resource = obj(
        resource.ok_or_else(|| format!("{at}`resource` is required"))?,
        "resource",
        at,
    )?;
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
    let ctx = match context.as_ref() {
        None | Some(Value::Null) => AuthContext {
            now,
            ..AuthContext::default()
        },
        Some(Value::Object(c)) => {
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
                        format!(
                            "{at}`context.auth_time` must be an integer (seconds since the epoch)"
                        )
                    })?;
                    if t > now.saturating_add(60) || t < 0 {
                        return Err(format!(
                            "{at}`context.auth_time` lies in the future or before 1970"
                        ));
                    }
                    Some(t)
                }
            };
            AuthContext::from_claims(acr, &amr, auth_time, now)
        }
        Some(_) => return Err(format!("{at}`context` must be an object")),
    };
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

fn parse_body(body: &Bytes) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("the request body must be a JSON object".into()),
        Err(e) => Err(format!("the request body is not valid JSON: {e}")),
    }
}

fn json_content(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

fn decide(snap: &Snapshot, e: &Eval) -> Decision {
    let subject = if e.subject_type == "client" {
        SubjectRef::Client(&e.subject_id)
    } else {
        SubjectRef::User(&e.subject_id)
    };
    let d = snap.decide(
        subject,
        &e.action,
        ResourceRef {
            id: &e.resource_id,
            kind: Some(&e.resource_type),
            properties: e.properties.as_ref(),
        },
        &e.ctx,
    );
    let result = match d.effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
        Effect::StepUp { .. } => "step_up",
    };
    metrics::counter!("interkom_decisions_total", "via" => "authzen", "result" => result)
        .increment(1);
    d
}

/// The response object of one evaluation: `decision` and the reasons in
/// `context`.
fn response(snap: &Snapshot, d: &Decision) -> Value {
    let reasons: Vec<Value> = d.reasons.iter().map(|r| snap.describe(r)).collect();
    let summary = reasons
        .iter()
        .filter_map(|r| r.get("message").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("; ");
    let mut ctx = json!({
        "effect": match d.effect { Effect::Allow => "allow", Effect::Deny => "deny", Effect::StepUp { .. } => "step_up" },
        "reasons": reasons,
        "reason_admin": { "en": summary },
    });
    if let Some(n) = d.need {
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

async fn audit(
    s: &PdpState,
    snap: &Snapshot,
    caller: &PdpCaller,
    e: &Eval,
    d: &Decision,
    request_id: Option<String>,
) -> Result<(), Response> {
    let resource = ResourceRef {
        id: &e.resource_id,
        kind: Some(&e.resource_type),
        properties: e.properties.as_ref(),
    };
    let details = json!({
        "via": "authzen",
        "subject": { "type": e.subject_type, "id": e.subject_id },
        "action": e.action,
        "resource": { "type": e.resource_type, "id": e.resource_id },
    });
    let Some(mut ev) = snap.decision_event(d, &resource, details) else {
        return Ok(());
    };
    ev = ev.client(&caller.client_id).correlation(request_id);
    if e.subject_type != "client" {
        ev = ev.subject(&e.subject_id, None);
    }
    s.audit.append(ev).await.map(|_| ()).map_err(|err| {
        tracing::error!(error = %err, "audit append failed");
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the decision could not be audited; try again",
        )
    })
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The caller and the JSON object of a PDP request, or the error response.
async fn read(
    s: &PdpState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(PdpCaller, Map<String, Value>), Response> {
    let caller = caller(s, headers).await?;
    let body = body.map_err(|e| {
        problem(
            e.status(),
            format!("the request body could not be read: {e}"),
        )
    })?;
    if !json_content(headers) {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as application/json",
        ));
    }
    let m = parse_body(&body).map_err(|d| problem(StatusCode::BAD_REQUEST, d))?;
    Ok((caller, m))
}

/// One evaluation from the request's top-level fields.
async fn single(
    s: &PdpState,
    caller: &PdpCaller,
    m: &Map<String, Value>,
    headers: &HeaderMap,
    now: i64,
) -> Response {
    let e = match parse_eval(
        m.get("subject"),
        m.get("action"),
        m.get("resource"),
        m.get("context"),
        "",
        now,
    ) {
        Ok(e) => e,
        Err(d) => return problem(StatusCode::BAD_REQUEST, d),
    };
    let snap = s.engine.snapshot();
    let d = decide(&snap, &e);
    if let Err(r) = audit(s, &snap, caller, &e, &d, request_id(headers)).await {
        return r;
    }
    Json(response(&snap, &d)).into_response()
}

async fn evaluation(
    State(s): State<PdpState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (caller, m) = match read(&s, &headers, body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let now = (s.now)();
    single(&s, &caller, &m, &headers, now).await
}

async fn evaluations(
    State(s): State<PdpState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (caller, m) = match read(&s, &headers, body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let now = (s.now)();
    let items = match m.get("evaluations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return problem(StatusCode::BAD_REQUEST, "`evaluations` must be an array"),
    };
    let semantic = match m.get("options").map(|o| o.get("evaluations_semantic")) {
        None | Some(None) | Some(Some(Value::Null)) => "execute_all",
        Some(Some(Value::String(v))) if matches!(v.as_str(), "execute_all" | "deny_on_first_deny" | "permit_on_first_permit") => v.as_str(),
        Some(Some(_)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "`options.evaluations_semantic` must be execute_all, deny_on_first_deny or permit_on_first_permit",
            )
        }
    };
    if m.get("options")
        .is_some_and(|o| !o.is_object() && !o.is_null())
    {
        return problem(StatusCode::BAD_REQUEST, "`options` must be an object");
    }
    // Without items the request is a single evaluation (AuthZEN 1.0 §7.1).
    if items.is_empty() {
        return single(&s, &caller, &m, &headers, now).await;
    }
    if items.len() > MAX_BATCH {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_BATCH} evaluations per request"),
        );
    }
    // Parse all first: a malformed item fails the whole request, before any
    // decision is made or audited.
    let mut evals = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(it) = item.as_object() else {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("evaluations[{i}] must be an object"),
            );
        };
        let pick = |k: &str| it.get(k).filter(|v| !v.is_null()).or_else(|| m.get(k));
        match parse_eval(
            pick("subject"),
            pick("action"),
            pick("resource"),
            pick("context"),
            &format!("evaluations[{i}]: "),
            now,
        ) {
            Ok(e) => evals.push(e),
            Err(d) => return problem(StatusCode::BAD_REQUEST, d),
        }
    }
    let snap = s.engine.snapshot();
    let rid = request_id(&headers);
    let mut out = Vec::with_capacity(evals.len());
    let mut audits = Vec::new();
    for e in &evals {
        let d = decide(&snap, e);
        let allowed = d.allowed();
        out.push(response(&snap, &d));
        audits.push((e, d));
        if (semantic == "deny_on_first_deny" && !allowed)
            || (semantic == "permit_on_first_permit" && allowed)
        {
            break;
        }
    }
    let results = futures_util::future::join_all(
        audits
            .iter()
            .map(|(e, d)| audit(&s, &snap, &caller, e, d, rid.clone())),
    )
    .await;
    if let Some(Err(r)) = results.into_iter().find(Result::is_err) {
        return r;
    }
    Json(json!({ "evaluations": out })).into_response()
}
