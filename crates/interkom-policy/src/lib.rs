//! Tenants, levels and roles of interkom: the administrative tree every
//! decision is made against.
//!
//! # Layout
//! - [`tenant`]: the tree (Kreis → Samtgemeinde/Stadt → Gemeinde), loaded from
//!   configuration and kept in the database.
//! - [`roles`]: roles held by a subject in a tenant.

pub mod roles;
pub mod tenant;

pub use tenant::{Level, Tenant, TenantSpec, TenantTree};

use sqlx::AnyPool;

/// Errors of the policy crate.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unknown tenant `{0}`")]
    UnknownTenant(String),
    #[error("invalid tenant tree: {0}")]
    InvalidTree(String),
}

/// Applies this crate's migrations.
pub async fn migrate(pool: &AnyPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}
