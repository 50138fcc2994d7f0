//! Which database a pool talks to. Decided by the URL the pool was opened
//! with, so it is fixed at connect; every store asks here, the one place
//! that knows how to tell.

use sqlx::AnyPool;

/// The database behind a pool: embedded SQLite (one node) or PostgreSQL
/// (several nodes, with `LISTEN`/`NOTIFY` between them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names, or `None` for any other scheme.
    pub fn from_url(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }

    /// The backend of a pool, as chosen when it was opened.
    pub fn of(pool: &AnyPool) -> Backend {
        let url = &pool.connect_options().database_url;
        match url.scheme() {
            "postgres" | "postgresql" => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }

    /// Whether other nodes can be told of a change at once (`NOTIFY`).
    pub fn is_postgres(self) -> bool {
        self == Backend::Postgres
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_read_from_the_url_scheme() {
        assert_eq!(Backend::from_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://h/db"), None);
        assert_eq!(Backend::from_url("postgresfoo://h"), None);
    }
}
