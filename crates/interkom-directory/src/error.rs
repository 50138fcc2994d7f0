//! Errors of the directory: a broken rule (the message says which, for the
//! administrator), a name already taken, or an internal failure.

/// What went wrong in the directory.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A registration or change that breaks a rule; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// An id or name already in use.
    #[error("{0}")]
    Taken(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("policy: {0}")]
    Policy(#[from] interkom_policy::PolicyError),
    #[error("crypto: {0}")]
    Crypto(&'static str),
    /// A stored row that no longer reads (hand-edited, or a newer version).
    #[error("stored {0} unreadable")]
    Corrupt(&'static str),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Whether a database error means the database is away (or going away),
/// not that interkom did something wrong: no connection, a dropped one, or
/// PostgreSQL shutting down or refusing connections (SQLSTATE classes 08
/// and 57P).
pub fn is_outage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

impl DirectoryError {
    /// See [`is_outage`].
    pub fn is_outage(&self) -> bool {
        match self {
            DirectoryError::Database(e) => is_outage(e),
            _ => false,
        }
    }
}
