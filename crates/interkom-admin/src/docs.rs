//! The schemas and error responses the OpenAPI document declares once, for
//! the handlers of every resource to name.

use crate::Problem;
use utoipa::ToSchema;

/// A protection need per BSI 200-2.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum NeedDoc {
    Normal,
    Hoch,
    SehrHoch,
}

/// Confidentiality, integrity, availability.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ProtectionDoc {
    c: NeedDoc,
    i: NeedDoc,
    a: NeedDoc,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum GrantTypeDoc {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum AuthMethodDoc {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub(crate) enum AlgDoc {
    RS256,
    ES256,
    EdDSA,
}

/// A level of assurance (eIDAS / BSI TR-03107-1).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum LoaDoc {
    Low,
    Substantial,
    High,
}

/// A decision that a change would flip (the what-if of a change).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct FlipDoc {
    /// The subject whose decision flips (an account id or a role).
    subject: String,
    /// The action decided.
    action: String,
    /// The resource decided on.
    resource: String,
    /// Whether it was allowed before the change.
    before: bool,
    /// Whether it is allowed after the change.
    after: bool,
}

/// The errors every operation may answer, each as problem+json.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum AdminErrors {
    #[response(
        status = 400,
        description = "invalid input",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 401,
        description = "no valid bearer token",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "outside the caller's subtree, an escalation, or not an administrator (audited)",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 404,
        description = "no such entity",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 409,
        description = "conflicts with the current state",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    #[response(
        status = 412,
        description = "If-Match is stale",
        content_type = "application/problem+json"
    )]
    PreconditionFailed(Problem),
    #[response(
        status = 413,
        description = "body too large",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "body is not JSON",
        content_type = "application/problem+json"
    )]
    UnsupportedMediaType(Problem),
    #[response(
        status = 428,
        description = "If-Match missing",
        content_type = "application/problem+json"
    )]
    PreconditionRequired(Problem),
    #[response(
        status = 503,
        description = "audit store unavailable",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}
