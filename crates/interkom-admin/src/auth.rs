//! Who is calling: a bearer access token issued by interkom's gateway.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde_json::Value;

use crate::{AdminError, AdminState};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) subject: String,
    pub(crate) tenant: Option<String>,
    pub(crate) client: Option<String>,
    pub(crate) request_id: Option<String>,
    /// When the person logged in (`None`: a machine client).
    pub(crate) auth_time: Option<i64>,
}

impl Caller {
    /// Refuses a person whose login is older than `max_age` seconds (for
    /// approvals that need a fresh one); machine clients pass.
    pub(crate) fn fresh_within(&self, state: &AdminState, max_age: i64) -> Result<(), AdminError> {
        match self.auth_time {
            Some(t) if state.0.gateway.clock().now() - t > max_age => Err(AdminError::forbidden(
                format!(
                    "approving a change to sehr_hoch data needs a login at most {} minutes old: log in again",
                    max_age / 60
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = |d: &str| AdminError::new(StatusCode::UNAUTHORIZED, d);
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("a bearer access token is required"))?
            .to_str()
            .map_err(|_| unauthorized("malformed Authorization header"))?;
        let token = match value.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => return Err(unauthorized("a bearer access token is required")),
        };
        let claims = state
            .0
            .gateway
            .validate_access_token(token)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "token validation failed");
                AdminError::Internal
            })?
            .ok_or_else(|| unauthorized("the access token is invalid or expired"))?;
        let s = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
        // Only tokens meant for administration: an administrator's from the
        // console, or a client's own (client credentials, for automation).
        // A Fachverfahren that received an administrator's token for itself
        // cannot turn it against this API.
        let client = s("client_id");
        let own_token = client.is_some()
            && s("sub") == client
            && claims.get("sid").is_none()
            && claims.get("gid").is_none();
        if client.as_deref() != Some(crate::console::CONSOLE_CLIENT) && !own_token {
            return Err(AdminError::forbidden(
                "the admin API accepts the console's tokens and clients' own (client credentials) tokens only",
            ));
        }
        let subject = s("sub").ok_or_else(|| unauthorized("the access token has no subject"))?;
        // Administration is a resource with a protection need: a person's
        // login must reach its level (by default a second factor), so a
        // phished password administers nothing.
        let required = state.rules().required_acr;
        let acr = s("acr").and_then(|a| interkom_types::Loa::from_acr(&a));
        if !own_token && acr.is_none_or(|a| a < required) {
            return Err(AdminError::forbidden(format!(
                "administration needs a login of at least {} (a second factor): log in again",
                required.acr()
            )));
        }
        Ok(Caller {
            // A client acting for itself is `client:<id>` in role
            // assignments, never to be mistaken for a person's account id.
            subject: if own_token {
                format!("client:{subject}")
            } else {
                subject
            },
            tenant: s("tenant"),
            client: s("client_id"),
            auth_time: (!own_token)
                .then(|| claims.get("auth_time").and_then(Value::as_i64))
                .flatten(),
            request_id: parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        })
    }
}
