//! The policy engine of interkom: tenants, levels, roles, resources with
//! protection needs, grants, and `decide()` with reasons; the AuthZEN PDP's
//! logic. No HTTP here: the binary serves the PDP's routes.
//!
//! # Layout
//! - [`tenant`]: the tree (Kreis → Samtgemeinde/Stadt → Gemeinde).
//! - [`roles`]: roles held by a subject in a tenant (`role_assignments`).
//! - [`loa`]: levels of assurance, protection needs and their mapping.
//! - [`policyset`]: the versioned files of `policies/`.
//! - [`store`]: the live policy in the database.
//! - [`leistungen`]: online services for citizens and businesses and the
//!   identification each requires.
//! - [`engine`]: the compiled snapshot and `decide()`; its compilation, one
//!   pass per part, in `engine/compile.rs`.
//! - `events`: the audit event of a decision, wherever it was asked.
//! - [`live`]: the engine of a node: reload, watch, what-if.
//! - [`oracle`]: casbin's enforcer over the same lines, the reference.
//! - [`authzen`]: the AuthZEN Authorization API's evaluation logic — who
//!   may ask, parsing, decisions, audit, the JSON answers; its errors are
//!   values ([`authzen::PdpError`]) the edge turns into HTTP; [`ratelimit`]
//!   its allowance per client.

pub mod authzen;
pub mod engine;
mod events;
pub mod leistungen;
pub mod live;
pub mod loa;
pub mod oracle;
pub mod policyset;
pub mod ratelimit;
pub mod records;
pub mod roles;
pub mod store;
pub mod tenant;

pub use engine::{
    AuthContext, Decision, Effect, Finding, Reason, ResourceRef, Severity, Snapshot, SubjectRef,
};
pub use leistungen::{LeistungSpec, Population};
pub use live::{Change, Flip, PolicyEngine, Preview};
pub use loa::{Loa, Protection, ProtectionNeed};
pub use policyset::{PolicySet, ResourceSpec, RuleLine};
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
    #[error("{0}")]
    Invalid(String),
    /// The change collides with what is stored (a name taken).
    #[error("{0}")]
    Conflict(String),
}

/// Applies this crate's migrations.
pub async fn migrate(pool: &AnyPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}
