//! What every admin resource shares: JSON bodies read strictly, entity tags
//! for optimistic concurrency, and the `admin_change` audit event.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use interkom_audit::{Action, AuditEvent, Outcome};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::{AdminError, AdminState};

/// A JSON request body. Unknown fields, wrong types and other content types
/// are refused with a problem naming the cause (never axum's plain text).
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AdminState> for JsonBody<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &AdminState) -> Result<Self, AdminError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(AdminError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            AdminError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body could not be read: {e}"),
            )
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| AdminError::bad_request(format!("invalid body: {e}")))
    }
}

/// A strong entity tag: the SHA-256 of the representation.
pub(crate) fn etag(v: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// An update must name the version it changes (`If-Match`): 428 without
/// it, 412 when someone changed the entity in between.
/// [`check_if_match`] where the caller sent `If-Match` (a console form
/// sends the ETag it read; a first registration has none).
pub(crate) fn check_if_match_sent(headers: &HeaderMap, current: &str) -> Result<(), AdminError> {
    if headers.contains_key(header::IF_MATCH) {
        check_if_match(headers, current)?;
    }
    Ok(())
}

pub(crate) fn check_if_match(headers: &HeaderMap, current: &str) -> Result<(), AdminError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Err(AdminError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "an update needs If-Match with the entity's ETag",
        ));
    };
    let v = v
        .to_str()
        .map_err(|_| AdminError::bad_request("malformed If-Match"))?;
    if v.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == current)
    {
        Ok(())
    } else {
        Err(AdminError::new(
            StatusCode::PRECONDITION_FAILED,
            "the entity was changed meanwhile: read it again (ETag) and retry",
        ))
    }
}

/// A JSON response with the entity's tag.
pub(crate) fn tagged(status: StatusCode, v: &impl Serialize) -> Response {
    let tag = etag(v);
    let mut r = (status, axum::Json(v)).into_response();
    if let Ok(t) = HeaderValue::from_str(&tag) {
        r.headers_mut().insert(header::ETAG, t);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A JSON response without a tag (lists, results).
pub(crate) fn json(status: StatusCode, v: &impl Serialize) -> Response {
    let mut r = (status, axum::Json(v)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// One administrative change (or a refused attempt) for the audit trail.
pub(crate) struct AdminChange<'a> {
    /// What was changed: `users/<id>`, `policy/lines`, `grants/<id>`, …
    pub(crate) target: String,
    /// The operation: `user.create`, `user.roles.add`, `policy.change`, …
    pub(crate) op: &'a str,
    /// The tenant the change belongs to (its subtree sees the event).
    pub(crate) tenant: Option<String>,
    pub(crate) before: Value,
    pub(crate) after: Value,
    /// The second administrator who approved it (four-eyes).
    pub(crate) approver: Option<String>,
    /// Anything else worth keeping (what-if, proposal id).
    pub(crate) extra: Value,
}

impl<'a> AdminChange<'a> {
    pub(crate) fn new(op: &'a str, target: impl Into<String>, tenant: Option<String>) -> Self {
        AdminChange {
            target: target.into(),
            op,
            tenant,
            before: Value::Null,
            after: Value::Null,
            approver: None,
            extra: Value::Null,
        }
    }
}

/// The details of an `admin_change` event.
#[derive(Serialize)]
struct ChangeDetails<'a> {
    /// The operation (`user.create`, …).
    op: &'a str,
    /// The entity before the change (free-form).
    before: &'a Value,
    /// The entity after the change (free-form).
    after: &'a Value,
    /// The second administrator who approved it.
    approver: &'a Option<String>,
    /// Anything else worth keeping (free-form).
    extra: &'a Value,
}

fn change_event(
    state: &AdminState,
    caller: &Caller,
    c: &AdminChange<'_>,
    outcome: Outcome,
) -> AuditEvent {
    let details = ChangeDetails {
        op: c.op,
        before: &c.before,
        after: &c.after,
        approver: &c.approver,
        extra: &c.extra,
    };
    let mut ev = AuditEvent::new(Action::AdminChange, outcome)
        .subject(&caller.subject, caller.tenant.clone())
        .correlation(caller.request_id.clone())
        .target(c.target.clone())
        .details(serde_json::to_value(&details).unwrap_or(Value::Null));
    if let Some(t) = c.tenant.as_deref().and_then(|t| state.0.tenants.get(t)) {
        ev = ev.tenant(t.id.clone(), t.path_string());
    }
    if let Some(cl) = &caller.client {
        ev = ev.client(cl);
    }
    ev
}

/// Records a change; it is durable before the caller hears of success.
pub(crate) async fn record(
    state: &AdminState,
    caller: &Caller,
    c: &AdminChange<'_>,
) -> Result<(), AdminError> {
    state
        .0
        .audit
        .append(change_event(state, caller, c, Outcome::Success))
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::error!(error = %e, "audit store unavailable");
            AdminError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit store is unavailable",
            )
        })
}

/// A refused attempt: audited, then 403 naming why.
pub(crate) async fn refuse(
    state: &AdminState,
    caller: &Caller,
    c: &AdminChange<'_>,
    why: &str,
) -> AdminError {
    // Read by the security staff of the target's tenant and of the
    // caller's: an event for each, unless one's subtree holds the other's.
    let tree = &state.0.tenants;
    let home = caller.tenant.as_deref().and_then(|t| tree.get(t));
    let target = c.tenant.as_deref().and_then(|t| tree.get(t));
    let refused = || change_event(state, caller, c, Outcome::Denied).reason(why);
    let at_home = |h: &interkom_policy::Tenant| refused().tenant(h.id.clone(), h.path_string());
    let events = match (target, home) {
        (None, Some(h)) => vec![at_home(h)],
        (Some(t), Some(h)) if !t.path.contains(&h.id) => vec![refused(), at_home(h)],
        _ => vec![refused()],
    };
    for ev in events {
        if let Err(e) = state.0.audit.append(ev).await {
            tracing::error!(error = %e, "audit store unavailable");
            return AdminError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit store is unavailable",
            );
        }
    }
    AdminError::forbidden(why)
}

/// Page size and cursor of a list.
pub(crate) fn page_limit(limit: Option<&str>) -> Result<i64, AdminError> {
    match limit {
        None => Ok(100),
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| AdminError::bad_request("`limit` must be between 1 and 1000")),
    }
}

/// Query parameters, strictly.
pub(crate) fn parse_query<T: DeserializeOwned + Default>(
    raw: Option<String>,
) -> Result<T, AdminError> {
    let Some(r) = raw else {
        return Ok(T::default());
    };
    // Filters and cursors go into SQL: a control character (PostgreSQL
    // refuses NUL in text) matches nothing stored and is refused here.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&r)
        .map_err(|e| AdminError::bad_request(format!("invalid query: {e}")))?;
    if let Some((name, _)) = pairs.iter().find(|(_, v)| v.chars().any(char::is_control)) {
        return Err(AdminError::bad_request(format!(
            "invalid query: `{name}` contains a control character"
        )));
    }
    serde_urlencoded::from_str(&r)
        .map_err(|e| AdminError::bad_request(format!("invalid query: {e}")))
}

/// Path parameters; a malformed one is a 400 problem.
pub(crate) struct Ids<T>(pub(crate) T);

impl<T: DeserializeOwned + Send> axum::extract::FromRequestParts<AdminState> for Ids<T> {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AdminState,
    ) -> Result<Self, AdminError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(t)| Ids(t))
            .map_err(|e| AdminError::bad_request(format!("invalid path: {e}")))
    }
}

/// Paging and a few filters of a list, strictly parsed.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
    /// Page size, 1..=1000 (default 100).
    pub(crate) limit: Option<String>,
    /// Only entries of this tenant (clients, resources: owner).
    pub(crate) tenant: Option<String>,
    /// Only grants and lines on this resource or object.
    pub(crate) resource: Option<String>,
    /// Only lines of this role; only grants to this grantee.
    pub(crate) subject: Option<String>,
    /// Only proposals in this state.
    pub(crate) status: Option<String>,
}

/// One page of `items` in the order of `key`, after `cursor`.
pub(crate) fn page<T: Serialize>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    q: &ListQuery,
) -> Result<(Vec<T>, Option<String>), AdminError> {
    let limit = page_limit(q.limit.as_deref())? as usize;
    items.sort_by_key(|i| key(i));
    if let Some(c) = &q.cursor {
        items.retain(|i| key(i).as_str() > c.as_str());
    }
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more { items.last().map(&key) } else { None };
    Ok((items, next))
}

/// A page read with `limit + 1` rows: the first `limit`, and the key of
/// the last one as the next cursor when there was more.
pub(crate) fn keyset_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more { rows.last().map(key) } else { None };
    (rows, next)
}
