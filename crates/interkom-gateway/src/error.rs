//! Errors of the gateway and their protocol forms: RFC 6749 error JSON for
//! the endpoints clients call, an HTML page for the browser. Internal causes
//! are logged once and never sent to the caller.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Internal failures of the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("audit: {0}")]
    Audit(#[from] interkom_audit::AuditError),
    #[error("policy: {0}")]
    Policy(#[from] interkom_policy::PolicyError),
    #[error("directory: {0}")]
    Directory(#[from] interkom_directory::DirectoryError),
    #[error("crypto: {0}")]
    Crypto(&'static str),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    /// The configuration does not hold together (checked at start).
    #[error("configuration: {0}")]
    Config(String),
    /// A login request was used up by a second submission meanwhile.
    #[error("login request used twice")]
    LoginRequestUsed,
    /// An account names a tenant the tree does not know (any more).
    #[error("tenant `{0}` is unknown")]
    UnknownTenant(String),
}

pub use interkom_directory::is_outage;

impl GatewayError {
    /// See [`is_outage`].
    pub fn is_outage(&self) -> bool {
        match self {
            GatewayError::Database(e) => is_outage(e),
            GatewayError::Directory(e) => e.is_outage(),
            _ => false,
        }
    }
}

/// The error codes interkom answers with: OAuth 2.0 (RFC 6749 §4.1.2.1,
/// §5.2), bearer tokens (RFC 6750 §3.1), OpenID Connect Core §3.1.2.6 and
/// step-up (RFC 9470).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidToken,
    InsufficientScope,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    LoginRequired,
    ConsentRequired,
    UnmetAuthenticationRequirements,
    RequestNotSupported,
    RequestUriNotSupported,
}

impl ErrorCode {
    /// The code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::UnmetAuthenticationRequirements => "unmet_authentication_requirements",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth 2.0 error response (RFC 6749 §5.2, RFC 6750 §3).
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: ErrorCode,
    pub description: String,
    /// `WWW-Authenticate` challenge for 401 responses.
    pub challenge: Option<String>,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            challenge: None,
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidScope, d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::UnauthorizedClient, d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::UnsupportedGrantType, d)
    }
    /// 401 with a Basic challenge (RFC 6749 §5.2).
    pub fn invalid_client(d: impl Into<String>) -> Self {
        OAuthError {
            challenge: Some("Basic realm=\"interkom\"".into()),
            ..Self::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidClient, d)
        }
    }
    /// 401 for a bad bearer token (RFC 6750 §3.1).
    pub fn invalid_token(d: impl Into<String>) -> Self {
        let d = d.into();
        OAuthError {
            challenge: Some(format!(
                "Bearer realm=\"interkom\", error=\"invalid_token\", error_description=\"{}\"",
                d.replace('"', "'")
            )),
            ..Self::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken, d)
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error.as_str(), "error_description": self.description });
        let mut res = (self.status, axum::Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(header::WWW_AUTHENTICATE, c);
        }
        res
    }
}

impl From<GatewayError> for OAuthError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Audit(e) => {
                tracing::error!(error = %e, "audit store unavailable; refusing to continue");
                OAuthError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::TemporarilyUnavailable,
                    "the service is temporarily unavailable",
                )
            }
            e if e.is_outage() => {
                // An outage, not a bug: the client may retry (at another node).
                tracing::error!(error = %e, "database unavailable");
                OAuthError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::TemporarilyUnavailable,
                    "the service is temporarily unavailable",
                )
            }
            e => {
                tracing::error!(error = %e, "internal error");
                OAuthError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::ServerError,
                    "internal error",
                )
            }
        }
    }
}

impl From<interkom_directory::DirectoryError> for OAuthError {
    fn from(e: interkom_directory::DirectoryError) -> Self {
        GatewayError::from(e).into()
    }
}
