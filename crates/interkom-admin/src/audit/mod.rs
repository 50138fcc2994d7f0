//! The audit trail for security staff: search, export, verification status,
//! checkpoints. A caller with the security-staff role in tenant T reads the
//! events of T's subtree; every read and export is itself audited.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use interkom_audit::export::{Exporter, Format};
use interkom_audit::{Action, AuditEvent, AuditQuery, Outcome};
use interkom_policy::roles::{tenants_with_role, SECURITY_STAFF};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::Caller;
use crate::{AdminError, AdminState};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) mod view;

use view::{CheckpointList, EventsPage, VerifyStatus};
use view::{ExportDetails, FilterDetails, ReadDetails, RefusedDetails};

/// The routes of this resource, with their OpenAPI annotations (one list
/// for both).
pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(events))
        .routes(routes!(export))
        .routes(routes!(verify))
        .routes(routes!(checkpoints))
}

/// Filters, as query parameters. Unknown parameters are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filter {
    /// Tenant id: its subtree (default: the caller's security-staff tenant).
    tenant: Option<String>,
    /// RFC 3339 time range, `from` inclusive, `to` exclusive.
    from: Option<String>,
    to: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    client: Option<String>,
    correlation_id: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1..=1000 (default 100).
    limit: Option<String>,
    /// Export only: `jsonl` or `csv`.
    format: Option<String>,
}

fn parse_filter(raw: Option<String>) -> Result<Filter, AdminError> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| AdminError::bad_request(format!("invalid query: {e}")))
}

/// Checks the filter and the caller's right to read it; returns the query.
async fn authorize(
    state: &AdminState,
    caller: &Caller,
    f: &Filter,
) -> Result<AuditQuery, AdminError> {
    let s = &state.0;
    let mut q = AuditQuery {
        limit: 100,
        ..Default::default()
    };
    if let Some(a) = &f.action {
        if Action::parse(a).is_none() {
            return Err(AdminError::bad_request(format!("unknown action `{a}`")));
        }
        q.action = Some(a.clone());
    }
    if let Some(o) = &f.outcome {
        if !matches!(o.as_str(), "success" | "failure" | "denied") {
            return Err(AdminError::bad_request(
                "outcome must be success, failure or denied",
            ));
        }
        q.outcome = Some(o.clone());
    }
    let ts = |v: &Option<String>, name: &str| -> Result<Option<String>, AdminError> {
        v.as_deref()
            .map(|t| {
                interkom_audit::normalize_ts(t).ok_or_else(|| {
                    AdminError::bad_request(format!("`{name}` must be an RFC 3339 time"))
                })
            })
            .transpose()
    };
    q.from_ts = ts(&f.from, "from")?;
    q.to_ts = ts(&f.to, "to")?;
    if let Some(c) = &f.cursor {
        q.before_seq = Some(
            c.parse::<i64>()
                .ok()
                .filter(|c| *c > 0)
                .ok_or_else(|| AdminError::bad_request("`cursor` must be a positive integer"))?,
        );
    }
    if let Some(l) = &f.limit {
        q.limit = l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| AdminError::bad_request("`limit` must be between 1 and 1000"))?;
    }
    q.actor_subject = f.actor.clone();
    q.actor_client = f.client.clone();
    q.correlation_id = f.correlation_id.clone();

    // The subtree: the requested tenant must lie within (or be) a tenant in
    // which the caller is security staff.
    let granted = tenants_with_role(&s.pool, &caller.subject, SECURITY_STAFF)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "role lookup failed");
            AdminError::Internal
        })?;
    let requested = match (&f.tenant, granted.as_slice()) {
        (Some(t), _) => t.clone(),
        (None, [only]) => only.clone(),
        (None, []) => {
            return Err(denied(state, caller, f, "the caller is not security staff").await)
        }
        (None, _) => {
            return Err(AdminError::bad_request(
                "several tenants are possible: name one with `tenant`",
            ))
        }
    };
    let tenant = s
        .tenants
        .get(&requested)
        .ok_or_else(|| AdminError::bad_request(format!("unknown tenant `{requested}`")))?;
    if !granted.iter().any(|g| tenant.path.contains(g)) {
        return Err(denied(state, caller, f, "outside the caller's subtree").await);
    }
    q.tenant_path_prefix = Some(tenant.path_string());
    // A Kreis's security staff see what belongs to no tenant, too.
    q.with_untenanted = tenant.parent.is_none();
    Ok(q)
}

/// A refused read: audited, then 403.
async fn denied(state: &AdminState, caller: &Caller, f: &Filter, why: &str) -> AdminError {
    let ev = base_event(caller, Action::AuditRead, Outcome::Denied)
        .reason(why)
        .details(details(&RefusedDetails {
            tenant: f.tenant.clone(),
        }));
    if let Err(e) = state.0.audit.append(ev).await {
        tracing::error!(error = %e, "audit store unavailable");
        return AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit store is unavailable",
        );
    }
    AdminError::forbidden(format!("reading this audit trail is not allowed: {why}"))
}

fn base_event(caller: &Caller, action: Action, outcome: Outcome) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome)
        .subject(&caller.subject, caller.tenant.clone())
        .correlation(caller.request_id.clone());
    if let Some(c) = &caller.client {
        ev = ev.client(c);
    }
    ev
}

fn describe(q: &AuditQuery) -> FilterDetails {
    FilterDetails {
        tenant_path: q.tenant_path_prefix.clone(),
        from: q.from_ts.clone(),
        to: q.to_ts.clone(),
        actor: q.actor_subject.clone(),
        action: q.action.clone(),
        outcome: q.outcome.clone(),
        client: q.actor_client.clone(),
        correlation_id: q.correlation_id.clone(),
        cursor: q.before_seq,
    }
}

/// An event's details as stored (a JSON object).
fn details(d: &impl serde::Serialize) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}

/// `GET /admin/v1/audit/events`: one page, newest first.
#[utoipa::path(
    get,
    path = "/audit/events",
    tag = "admin",
    params(
        ("tenant" = Option<String>, Query, description = "tenant id: its subtree"),
        ("from" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("to" = Option<String>, Query, description = "RFC 3339, exclusive"),
        ("actor" = Option<String>, Query, description = "subject"),
        ("action" = Option<String>, Query, description = "audit action"),
        ("outcome" = Option<String>, Query, description = "success, failure or denied"),
        ("client" = Option<String>, Query, description = "client id"),
        ("correlation_id" = Option<String>, Query, description = "request id"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<String>, Query, description = "1..=1000")
    ),
    responses(
        (status = 200, description = "one page, newest first", body = EventsPage),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn events(
    State(state): State<AdminState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let f = parse_filter(raw)?;
    if f.format.is_some() {
        return Err(AdminError::bad_request("`format` belongs to /audit/export"));
    }
    let q = authorize(&state, &caller, &f).await?;
    let page = interkom_audit::query(&state.0.pool, &q)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "audit query failed");
            AdminError::Internal
        })?;
    // Reading is audited before the data leaves.
    let ev =
        base_event(&caller, Action::AuditRead, Outcome::Success).details(details(&ReadDetails {
            filter: describe(&q),
            events: page.len(),
        }));
    state.0.audit.append(ev).await.map_err(|_| {
        AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit store is unavailable",
        )
    })?;
    let next = (page.len() as i64 == q.limit)
        .then(|| page.last().map(|e| e.seq.to_string()))
        .flatten();
    let mut r = Json(EventsPage {
        events: page,
        next_cursor: next,
    })
    .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `GET /admin/v1/audit/export?format=jsonl|csv`: the whole filtered trail,
/// streamed.
#[utoipa::path(
    get,
    path = "/audit/export",
    tag = "admin",
    params(
        ("tenant" = Option<String>, Query, description = "tenant id: its subtree"),
        ("from" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("to" = Option<String>, Query, description = "RFC 3339, exclusive"),
        ("actor" = Option<String>, Query, description = "subject"),
        ("action" = Option<String>, Query, description = "audit action"),
        ("outcome" = Option<String>, Query, description = "success, failure or denied"),
        ("client" = Option<String>, Query, description = "client id"),
        ("correlation_id" = Option<String>, Query, description = "request id"),
        ("format" = Option<String>, Query, description = "jsonl or csv")
    ),
    responses(
        (status = 200, description = "the filtered trail, streamed", body = String, content_type = "application/x-ndjson"),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn export(
    State(state): State<AdminState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let f = parse_filter(raw)?;
    let format = Format::parse(f.format.as_deref().unwrap_or("jsonl"))
        .ok_or_else(|| AdminError::bad_request("`format` must be jsonl or csv"))?;
    if f.cursor.is_some() || f.limit.is_some() {
        return Err(AdminError::bad_request("an export has no cursor or limit"));
    }
    let q = authorize(&state, &caller, &f).await?;
    let ev = base_event(&caller, Action::AuditExport, Outcome::Success).details(details(
        &ExportDetails {
            filter: describe(&q),
            format: f.format.as_deref().unwrap_or("jsonl").to_owned(),
        },
    ));
    state.0.audit.append(ev).await.map_err(|_| {
        AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit store is unavailable",
        )
    })?;
    let exporter = Some(Exporter::new(state.0.pool.clone(), q, format));
    let stream = futures_util::stream::unfold(exporter, |ex| async move {
        let mut ex = ex?;
        match ex.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), Some(ex))),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "audit export failed midway");
                Some((Err(std::io::Error::other("audit export failed")), None))
            }
        }
    });
    let ext = if format == Format::Csv {
        "csv"
    } else {
        "jsonl"
    };
    let mut r = Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"interkom-audit.{ext}\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// Any security staff, whatever their tenant (verification and
/// checkpoints concern the whole chain).
async fn require_security_staff(state: &AdminState, caller: &Caller) -> Result<(), AdminError> {
    let granted = tenants_with_role(&state.0.pool, &caller.subject, SECURITY_STAFF)
        .await
        .map_err(|_| AdminError::Internal)?;
    if granted.is_empty() {
        return Err(denied(
            state,
            caller,
            &Filter::default(),
            "the caller is not security staff",
        )
        .await);
    }
    Ok(())
}

/// `GET /admin/v1/audit/verify`: recomputes the chain (any security staff).
#[utoipa::path(
    get,
    path = "/audit/verify",
    tag = "admin",
    responses(
        (status = 200, description = "verification status", body = VerifyStatus),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn verify(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, AdminError> {
    require_security_staff(&state, &caller).await?;
    let report = interkom_audit::verify(&state.0.pool, None, None)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "audit verification failed");
            AdminError::Internal
        })?;
    Ok(Json(VerifyStatus {
        ok: report.ok(),
        checked: report.checked,
        checkpoints: report.checkpoints,
        first_bad_seq: report.first_bad.as_ref().map(|b| b.0),
        reason: report.first_bad.as_ref().map(|b| b.1.clone()),
        newest_checkpoint: report.newest_checkpoint,
        unanchored: report.unanchored,
    })
    .into_response())
}

/// `GET /admin/v1/audit/checkpoints`: the signed checkpoints.
#[utoipa::path(
    get,
    path = "/audit/checkpoints",
    tag = "admin",
    responses(
        (status = 200, description = "signed checkpoints", body = CheckpointList),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn checkpoints(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, AdminError> {
    require_security_staff(&state, &caller).await?;
    let cps = interkom_audit::checkpoint::list(&state.0.pool, 0, i64::MAX)
        .await
        .map_err(|_| AdminError::Internal)?;
    Ok(Json(CheckpointList { checkpoints: cps }).into_response())
}
