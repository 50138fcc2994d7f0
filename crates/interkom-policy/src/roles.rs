//! Roles held by a subject in a tenant.

use sqlx::AnyPool;

use crate::PolicyError;

/// The role of security staff (ISB, Revision, Datenschutz): reads the audit
/// trail of its tenant's subtree.
pub const SECURITY_STAFF: &str = "security_staff";

/// The tenants in which `subject` holds `role`.
pub async fn tenants_with_role(
    pool: &AnyPool,
    subject: &str,
    role: &str,
) -> Result<Vec<String>, PolicyError> {
    Ok(sqlx::query_scalar(
        "SELECT tenant FROM role_assignments WHERE subject = $1 AND role = $2 ORDER BY tenant",
    )
    .bind(subject)
    .bind(role)
    .fetch_all(pool)
    .await?)
}

/// How many assignments of `role` there are, in any tenant.
pub async fn count_assignments(pool: &AnyPool, role: &str) -> Result<i64, PolicyError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM role_assignments WHERE role = $1")
            .bind(role)
            .fetch_one(pool)
            .await?,
    )
}

/// Assigns `role` in `tenant` to `subject` (idempotent).
pub async fn assign(
    pool: &AnyPool,
    subject: &str,
    tenant: &str,
    role: &str,
) -> Result<(), PolicyError> {
    // Citizens and businesses hold no roles, whichever path asks.
    let population: Option<String> =
        sqlx::query_scalar("SELECT population FROM users WHERE id = $1")
            .bind(subject)
            .fetch_optional(pool)
            .await?;
    if population.is_some_and(|p| p != "staff") {
        return Err(PolicyError::Invalid(
            "a citizen or business account holds no roles".into(),
        ));
    }
    sqlx::query(
        "INSERT INTO role_assignments (subject, tenant, role) VALUES ($1, $2, $3) \
         ON CONFLICT (subject, tenant, role) DO NOTHING",
    )
    .bind(subject)
    .bind(tenant)
    .bind(role)
    .execute(pool)
    .await?;
    crate::store::touch(pool).await
}

/// Takes `role` in `tenant` from `subject`; false if it was not held.
pub async fn unassign(
    pool: &AnyPool,
    subject: &str,
    tenant: &str,
    role: &str,
) -> Result<bool, PolicyError> {
    let n = sqlx::query(
        "DELETE FROM role_assignments WHERE subject = $1 AND tenant = $2 AND role = $3",
    )
    .bind(subject)
    .bind(tenant)
    .bind(role)
    .execute(pool)
    .await?
    .rows_affected();
    crate::store::touch(pool).await?;
    Ok(n > 0)
}

/// The roles `subject` holds in `tenant`, sorted.
pub async fn roles_in(
    pool: &AnyPool,
    subject: &str,
    tenant: &str,
) -> Result<Vec<String>, PolicyError> {
    Ok(sqlx::query_scalar(
        "SELECT role FROM role_assignments WHERE subject = $1 AND tenant = $2 ORDER BY role",
    )
    .bind(subject)
    .bind(tenant)
    .fetch_all(pool)
    .await?)
}

/// Every (tenant, role) `subject` holds.
pub async fn held_by(pool: &AnyPool, subject: &str) -> Result<Vec<(String, String)>, PolicyError> {
    Ok(
        sqlx::query_as("SELECT tenant, role FROM role_assignments WHERE subject = $1")
            .bind(subject)
            .fetch_all(pool)
            .await?,
    )
}

/// Whether `subject` holds `role` anywhere.
pub async fn holds_anywhere(
    pool: &AnyPool,
    subject: &str,
    role: &str,
) -> Result<bool, PolicyError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM role_assignments WHERE subject = $1 AND role = $2",
    )
    .bind(subject)
    .bind(role)
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}

/// A role name: letters, digits, '-', '_' and '.', at most 64 characters.
pub fn valid_role(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
