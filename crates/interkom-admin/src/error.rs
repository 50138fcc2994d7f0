//! What can go wrong in an admin request, as a value: a refusal the caller
//! can act on (its status and why), the database away (503, retry), or an
//! internal failure (500, logged, never with details). Mapped once to RFC
//! 9457 problem+json ([`Problem`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::Problem;

/// An admin request's failure.
#[derive(Debug)]
pub enum AdminError {
    /// The caller's request cannot be carried out as it is: the status
    /// (4xx) and what to change.
    Refused { status: StatusCode, detail: String },
    /// The database is unavailable; the caller may retry (at another node).
    Unavailable,
    /// Anything else; the cause is logged where it was converted.
    Internal,
}

impl AdminError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> AdminError {
        AdminError::Refused {
            status,
            detail: detail.into(),
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::FORBIDDEN, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::CONFLICT, detail)
    }

    /// A registration the directory refused: a broken rule is 400, a name
    /// or place already taken 409, anything else as [`From`] says.
    pub fn registration(e: interkom_directory::DirectoryError) -> AdminError {
        use interkom_directory::DirectoryError;
        match e {
            DirectoryError::Invalid(m) => AdminError::bad_request(m),
            DirectoryError::Taken(m) => AdminError::conflict(m),
            e => AdminError::from(e),
        }
    }

    /// An internal failure with a cause that is not an error value (a
    /// stored row that no longer reads): logged, 500.
    pub fn internal(cause: impl std::fmt::Display) -> AdminError {
        tracing::error!(error = %cause, "admin request failed");
        AdminError::Internal
    }

    /// The problem+json body of this failure.
    pub fn problem(&self) -> Problem {
        match self {
            AdminError::Refused { status, detail } => Problem::new(*status, detail.clone()),
            AdminError::Unavailable => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; try again",
            ),
            AdminError::Internal => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

/// A failure of another context (directory, gateway, policy, audit, the
/// database): 503 when the database is away anywhere in its chain of
/// causes, else 500. Logged once, here.
impl<E: std::error::Error + 'static> From<E> for AdminError {
    fn from(e: E) -> AdminError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if c.downcast_ref::<sqlx::Error>()
                .is_some_and(interkom_directory::is_outage)
            {
                tracing::error!(error = %e, "admin request failed: database unavailable");
                return AdminError::Unavailable;
            }
            cause = c.source();
        }
        tracing::error!(error = %e, "admin request failed");
        AdminError::Internal
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        self.problem().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_of_other_contexts_map_by_their_causes() {
        let outage = interkom_directory::DirectoryError::Database(sqlx::Error::PoolTimedOut);
        assert!(matches!(AdminError::from(outage), AdminError::Unavailable));
        let wrapped = interkom_policy::PolicyError::Database(sqlx::Error::PoolClosed);
        assert!(matches!(AdminError::from(wrapped), AdminError::Unavailable));
        let bug = interkom_directory::DirectoryError::Corrupt("client");
        assert!(matches!(AdminError::from(bug), AdminError::Internal));
        assert_eq!(AdminError::Unavailable.problem().status, 503);
        assert_eq!(AdminError::Internal.problem().detail, "internal error");
        assert_eq!(AdminError::conflict("taken").problem().status, 409);
    }
}
