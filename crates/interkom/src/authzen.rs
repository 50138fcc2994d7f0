//! The HTTP routes of the AuthZEN PDP (OpenID AuthZEN Authorization API
//! 1.0), beside the OpenID Provider under the issuer's path. The PDP's logic
//! is `interkom_policy::authzen`; here are the wire's parts: the bearer
//! token from `Authorization`, the body limit, the media type, and every
//! refusal as RFC 9457 problem+json.
//!
//! - `GET /.well-known/authzen-configuration`: PDP metadata.
//! - `POST /access/v1/evaluation`: one decision.
//! - `POST /access/v1/evaluations`: a batch.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use interkom_gateway::Gateway;
use interkom_policy::authzen::{
    parse_body, AuthFailure, Authenticate, Pdp, PdpCaller, PdpError, SCOPE,
};
use serde_json::{json, Map, Value};

/// The largest request body (a full batch of evaluations fits).
const MAX_BODY: usize = 1 << 20;

/// The PDP routes.
pub fn router(pdp: Pdp) -> Router {
    Router::new()
        .route("/.well-known/authzen-configuration", get(metadata))
        .route("/access/v1/evaluation", post(evaluation))
        .route("/access/v1/evaluations", post(evaluations))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(pdp)
}

/// The PDP's token check: an access token of `gateway`, standing for a
/// client when the client asked for it for itself.
pub fn authenticate(gateway: Gateway) -> Authenticate {
    Arc::new(move |token: String| {
        let gw = gateway.clone();
        Box::pin(async move {
            let claims = gw.validate_access_token(&token).await.map_err(|e| {
                if e.is_outage() {
                    AuthFailure::Unavailable(e.to_string())
                } else {
                    AuthFailure::Internal(e.to_string())
                }
            })?;
            Ok(claims.and_then(|c| {
                let s = |k: &str| c.get(k).and_then(Value::as_str);
                let id = s("client_id")?;
                // A client's own token: issued to it for itself, not
                // for a user's session.
                let client_credentials =
                    s("sub") == Some(id) && c.get("sid").is_none() && c.get("gid").is_none();
                let granted = s("scope").is_some_and(|sc| sc.split(' ').any(|x| x == SCOPE));
                Some(PdpCaller {
                    client_id: id.to_owned(),
                    client_credentials,
                    granted,
                    tenant: s("tenant").map(str::to_owned),
                })
            }))
        })
    })
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

/// A refusal of the PDP as the caller sees it.
fn refused(e: PdpError) -> Response {
    let status = match e {
        PdpError::InvalidToken => StatusCode::UNAUTHORIZED,
        PdpError::NotAClient | PdpError::NotGranted | PdpError::OutsideSubtree(_) => {
            StatusCode::FORBIDDEN
        }
        PdpError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        PdpError::Malformed(_) => StatusCode::BAD_REQUEST,
        PdpError::Unavailable | PdpError::NotAudited => StatusCode::SERVICE_UNAVAILABLE,
        PdpError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut res = problem(status, e.to_string());
    if let PdpError::TooManyRequests(secs) = e {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

fn answer(result: Result<Value, PdpError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => refused(e),
    }
}

async fn metadata(State(pdp): State<Pdp>) -> Response {
    Json(pdp.metadata()).into_response()
}

/// The bearer token of the `Authorization` header, or why there is none
/// (answered 401).
fn bearer(headers: &HeaderMap) -> Result<String, &'static str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or("a bearer access token is required (client credentials from interkom)")?
        .to_str()
        .map_err(|_| "malformed Authorization header")?;
    match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => Ok(t.trim().to_owned()),
        _ => Err("a bearer access token is required"),
    }
}

fn json_content(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The caller and the JSON object of a PDP request, or the error response:
/// the caller first, so that nobody learns anything without a token.
async fn read(
    pdp: &Pdp,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(PdpCaller, Map<String, Value>), Response> {
    let token = bearer(headers).map_err(|d| problem(StatusCode::UNAUTHORIZED, d))?;
    let caller = pdp.caller(token).await.map_err(refused)?;
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
    let m = parse_body(&body).map_err(refused)?;
    Ok((caller, m))
}

async fn evaluation(
    State(pdp): State<Pdp>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (caller, m) = match read(&pdp, &headers, body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    answer(pdp.evaluation(&caller, &m, request_id(&headers)).await)
}

async fn evaluations(
    State(pdp): State<Pdp>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (caller, m) = match read(&pdp, &headers, body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    answer(pdp.evaluations(&caller, &m, request_id(&headers)).await)
}
