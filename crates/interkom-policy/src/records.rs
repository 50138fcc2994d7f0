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

/// The part of the tree a list is read for: tenants by id, and whether
/// what belongs to no tenant (or applies everywhere) is included too.
#[derive(Debug, Clone, Copy)]
pub struct Reach<'a> {
    /// Tenant ids (resources owned by them, `g` lines of them).
    pub tenants: &'a [String],
    /// Also resources of no tenant, and lines on `*`, on a kind or on an
    /// object that is no owned resource.
    pub everywhere: bool,
}

impl Reach<'_> {
    fn is_empty(&self) -> bool {
        self.tenants.is_empty() && !self.everywhere
    }
}

/// A statement's text and its text parameters, numbered `$1, $2, …` as
/// both backends read them through `sqlx::Any` (whose query builder would
/// write `?`, which PostgreSQL does not read).
#[derive(Default)]
struct Sql {
    text: String,
    binds: Vec<String>,
}

impl Sql {
    /// Adds a parameter; returns its placeholder.
    fn bind(&mut self, v: &str) -> String {
        self.binds.push(v.to_owned());
        format!("${}", self.binds.len())
    }

    /// Adds a parameter list; returns `$i, $j, …` (never empty: callers
    /// check for an empty list first).
    fn list(&mut self, vs: &[String]) -> String {
        vs.iter()
            .map(|v| self.bind(v))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }
}

/// Which grants a page lists.
#[derive(Debug, Clone, Copy)]
pub struct GrantFilter<'a> {
    /// Only grants on resources owned in this reach (on resources of no
    /// tenant with `everywhere`).
    pub reach: Reach<'a>,
    /// Only grants on this resource.
    pub resource: Option<&'a str>,
    /// Only grants to this grantee.
    pub grantee: Option<&'a str>,
}

/// One page of grants in the order of their id: at most `limit` of those
/// after `after` (the id that ended the previous page) that `filter`
/// admits. Ask for one more than a page to learn whether another follows.
pub async fn grants_page(
    pool: &AnyPool,
    filter: &GrantFilter<'_>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<GrantRecord>, PolicyError> {
    if filter.reach.is_empty() || limit <= 0 {
        return Ok(Vec::new());
    }
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT {GRANT_COLUMNS} FROM grants WHERE resource IN (SELECT id FROM resources WHERE "
    ));
    let mut owners = Vec::new();
    if !filter.reach.tenants.is_empty() {
        owners.push(format!("owner IN ({})", sql.list(filter.reach.tenants)));
    }
    if filter.reach.everywhere {
        owners.push("owner IS NULL".to_owned());
    }
    sql.push(&owners.join(" OR "));
    sql.push(")");
    if let Some(r) = filter.resource {
        let m = sql.bind(r);
        sql.push(&format!(" AND resource = {m}"));
    }
    if let Some(g) = filter.grantee {
        let m = sql.bind(g);
        sql.push(&format!(" AND grantee = {m}"));
    }
    if let Some(a) = after {
        let m = sql.bind(a);
        sql.push(&format!(" AND id > {m}"));
    }
    sql.push(&format!(" ORDER BY id LIMIT {limit}"));
    let mut query = sqlx::query_as::<_, GrantRecord>(&sql.text);
    for b in sql.binds {
        query = query.bind(b);
    }
    Ok(query.fetch_all(pool).await?)
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

/// Which policy lines a page lists.
#[derive(Debug, Clone, Copy)]
pub struct LineFilter<'a> {
    /// Only the lines that apply in this reach: a `g` line where its
    /// tenant (first value) is; a `p` line where its object (second
    /// value) is owned — or everywhere, when the object is `*`, a kind of
    /// resource, or no resource with an owner.
    pub reach: Reach<'a>,
    /// Only lines whose first value (role, subject or tenant) is this.
    pub subject: Option<&'a str>,
    /// Only lines whose second value (object) is this.
    pub object: Option<&'a str>,
}

/// A line as its CSV text (`p, a, b, …`; what the admin API shows and
/// pages by): six values for `p` lines, two for the others.
const LINE_CSV: &str = "CASE WHEN ptype = 'p' \
     THEN ptype || ', ' || v0 || ', ' || v1 || ', ' || v2 || ', ' || v3 || ', ' || v4 || ', ' || v5 \
     ELSE ptype || ', ' || v0 || ', ' || v1 END";

/// One page of stored rule lines in the order of their CSV text: at most
/// `limit` of those after `after` (the line that ended the previous page)
/// that `filter` admits. Ask for one more than a page to learn whether
/// another follows.
pub async fn rule_lines_page(
    pool: &AnyPool,
    filter: &LineFilter<'_>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<RuleRecord>, PolicyError> {
    if filter.reach.is_empty() || limit <= 0 {
        return Ok(Vec::new());
    }
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT ptype, v0, v1, v2, v3, v4, v5, source FROM \
         (SELECT ptype, v0, v1, v2, v3, v4, v5, source, {LINE_CSV} AS line FROM policy_rules) l \
         WHERE ("
    ));
    // Where a line applies (see the admin API's rules of a change).
    let mut places = Vec::new();
    if !filter.reach.tenants.is_empty() {
        let tenants = sql.list(filter.reach.tenants);
        places.push(format!("(ptype = 'g' AND v0 IN ({tenants}))"));
        let owners = sql.list(filter.reach.tenants);
        places.push(format!(
            "(ptype <> 'g' AND v1 <> '*' AND v1 NOT IN (SELECT kind FROM resources) \
             AND v1 IN (SELECT id FROM resources WHERE owner IN ({owners})))"
        ));
    }
    if filter.reach.everywhere {
        places.push(
            "(ptype <> 'g' AND (v1 = '*' OR v1 IN (SELECT kind FROM resources) \
             OR v1 NOT IN (SELECT id FROM resources WHERE owner IS NOT NULL)))"
                .to_owned(),
        );
    }
    sql.push(&places.join(" OR "));
    sql.push(")");
    if let Some(s) = filter.subject {
        let m = sql.bind(s);
        sql.push(&format!(" AND v0 = {m}"));
    }
    if let Some(o) = filter.object {
        let m = sql.bind(o);
        sql.push(&format!(" AND v1 = {m}"));
    }
    if let Some(a) = after {
        let m = sql.bind(a);
        sql.push(&format!(" AND line > {m}"));
    }
    sql.push(&format!(" ORDER BY line LIMIT {limit}"));
    let mut query = sqlx::query_as::<_, LineRow>(&sql.text);
    for b in sql.binds {
        query = query.bind(b);
    }
    Ok(query
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(LineRow::record)
        .collect())
}

#[derive(sqlx::FromRow)]
struct LineRow {
    ptype: String,
    v0: String,
    v1: String,
    v2: String,
    v3: String,
    v4: String,
    v5: String,
    source: String,
}

impl LineRow {
    fn record(self) -> RuleRecord {
        let n = if self.ptype == "p" { 6 } else { 2 };
        let values = [self.v0, self.v1, self.v2, self.v3, self.v4, self.v5];
        RuleRecord {
            line: RuleLine {
                ptype: self.ptype,
                values: values.into_iter().take(n).collect(),
            },
            source: self.source,
        }
    }
}

/// Every stored rule line, in order.
pub async fn rule_lines(pool: &AnyPool) -> Result<Vec<RuleRecord>, PolicyError> {
    let rows: Vec<LineRow> = sqlx::query_as(
        "SELECT ptype, v0, v1, v2, v3, v4, v5, source FROM policy_rules \
         ORDER BY ptype, v0, v1, v2, v3, v4, v5",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(LineRow::record).collect())
}
