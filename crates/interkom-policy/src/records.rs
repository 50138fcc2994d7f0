//! The policy's tables as administration reads them: grants, resources and
//! rule lines as stored rows (the engine reads them compiled, see `store`).

use sqlx::AnyPool;

use crate::loa::{Protection, ProtectionNeed};
use crate::policyset::{ResourceSpec, RuleLine};
use crate::PolicyError;

const GRANT_COLUMNS: &str = "id, grantee, resource, actions, purpose, not_before, expires_at, \
     grantor, approver, approved_at, revoked_at";

/// A grant as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRecord {
    pub id: String,
    pub grantee: String,
    pub resource: String,
    /// Space-separated.
    pub actions: String,
    pub purpose: String,
    pub not_before: Option<i64>,
    pub expires_at: i64,
    pub grantor: String,
    pub approver: Option<String>,
    pub approved_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Every grant, newest first.
pub async fn grants(pool: &AnyPool) -> Result<Vec<GrantRecord>, PolicyError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLUMNS} FROM grants ORDER BY created_at DESC, id"
    ))
    .fetch_all(pool)
    .await?)
}

/// One grant.
pub async fn grant(pool: &AnyPool, id: &str) -> Result<Option<GrantRecord>, PolicyError> {
    Ok(
        sqlx::query_as(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

#[derive(sqlx::FromRow)]
struct ResourceRow {
    id: String,
    name: Option<String>,
    kind: String,
    owner: Option<String>,
    client_id: Option<String>,
    confidentiality: String,
    integrity: String,
    availability: String,
}

impl ResourceRow {
    fn spec(self) -> Option<ResourceSpec> {
        Some(ResourceSpec {
            protection: Protection {
                c: ProtectionNeed::parse(&self.confidentiality)?,
                i: ProtectionNeed::parse(&self.integrity)?,
                a: ProtectionNeed::parse(&self.availability)?,
            },
            id: self.id,
            name: self.name,
            kind: self.kind,
            owner: self.owner,
            client: self.client_id,
        })
    }
}

/// Every stored resource, by id (a row that no longer reads is left out).
pub async fn resources(pool: &AnyPool) -> Result<Vec<ResourceSpec>, PolicyError> {
    let rows: Vec<ResourceRow> = sqlx::query_as(
        "SELECT id, name, kind, owner, client_id, confidentiality, integrity, availability \
         FROM resources ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(ResourceRow::spec).collect())
}

/// A stored rule line and where it came from (`baseline`, `admin`, …).
#[derive(Debug, Clone)]
pub struct RuleRecord {
    pub line: RuleLine,
    pub source: String,
}

/// Every stored rule line, in order.
pub async fn rule_lines(pool: &AnyPool) -> Result<Vec<RuleRecord>, PolicyError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        ptype: String,
        v0: String,
        v1: String,
        v2: String,
        v3: String,
        v4: String,
        v5: String,
        source: String,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT ptype, v0, v1, v2, v3, v4, v5, source FROM policy_rules \
         ORDER BY ptype, v0, v1, v2, v3, v4, v5",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let n = if r.ptype == "p" { 6 } else { 2 };
            let values = [r.v0, r.v1, r.v2, r.v3, r.v4, r.v5];
            RuleRecord {
                line: RuleLine {
                    ptype: r.ptype,
                    values: values.into_iter().take(n).collect(),
                },
                source: r.source,
            }
        })
        .collect())
}
