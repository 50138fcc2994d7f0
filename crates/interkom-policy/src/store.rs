//! The live policy in the database: import of the baseline, loading, and the
//! changes the admin API makes. Every change bumps `policy_state.version` in
//! its own transaction; engines on every node reload when it moves.

use interkom_types::Backend;
use sqlx::{AnyConnection, AnyPool};

use crate::loa::{Protection, ProtectionNeed};
use crate::policyset::{GrantFileSpec, PolicySet, ResourceSpec, RuleLine};
use crate::PolicyError;

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    pub id: String,
    /// `user:<username or id>`, `<role>@<tenant>` or `*@<tenant>`.
    pub grantee: String,
    pub resource: String,
    /// Actions, or `["*"]`.
    pub actions: Vec<String>,
    pub purpose: String,
    pub not_before: Option<i64>,
    pub expires_at: i64,
    pub grantor: String,
    pub approver: Option<String>,
    pub approved_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Everything the engine compiles, as stored.
#[derive(Debug, Clone, Default)]
pub struct LiveData {
    pub version: i64,
    pub rules: Vec<RuleLine>,
    pub resources: Vec<ResourceSpec>,
    pub grants: Vec<Grant>,
    /// (id, username, home tenant, email) of enabled accounts.
    pub users: Vec<(String, String, String, Option<String>)>,
    /// (subject, tenant, role).
    pub assignments: Vec<(String, String, String)>,
    pub leistungen: Vec<crate::leistungen::LeistungSpec>,
}

/// The PostgreSQL channel a change is announced on.
pub const CHANNEL: &str = "interkom_policy";

/// Bumps the live policy's version on the caller's transaction; on
/// PostgreSQL also announces it (delivered when the transaction commits), so
/// other nodes reload at once instead of at their next poll.
pub async fn bump(conn: &mut AnyConnection, backend: Backend) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE policy_state SET version = version + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    if backend.is_postgres() {
        sqlx::query(&format!("NOTIFY {CHANNEL}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Bumps the version after a change elsewhere (accounts, role
/// assignments), so every node's engine reloads.
pub async fn touch(pool: &AnyPool) -> Result<(), PolicyError> {
    let mut conn = pool.acquire().await?;
    bump(&mut conn, Backend::of(pool)).await?;
    Ok(())
}

/// A transaction for a change, holding the state row's lock first: every
/// change (and a baseline import) takes the locks in the same order, so they
/// serialise instead of deadlocking or losing an update.
async fn begin_change(
    pool: &AnyPool,
) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE policy_state SET version = version WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Announces a change (see [`bump`]) and commits it.
async fn commit_change(
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
) -> Result<(), PolicyError> {
    bump(&mut tx, backend).await?;
    tx.commit().await?;
    Ok(())
}

/// The live policy's version.
pub async fn version(pool: &AnyPool) -> Result<i64, PolicyError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM policy_state WHERE id = 1")
            .fetch_one(pool)
            .await?,
    )
}

fn rfc3339(s: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))
}

/// A grant of `grants.toml` as stored (a grant written with its approver
/// counts as approved when imported).
pub fn grant_from_file(g: &GrantFileSpec, now: i64) -> Result<Grant, String> {
    if g.actions.is_empty() {
        return Err(format!("grant `{}` names no action", g.id));
    }
    if g.approver.as_deref() == Some(g.grantor.as_str()) {
        return Err(format!(
            "grant `{}`: the approver must not be the grantor",
            g.id
        ));
    }
    Ok(Grant {
        id: g.id.clone(),
        grantee: g.grantee.clone(),
        resource: g.resource.clone(),
        actions: g.actions.clone(),
        purpose: g.purpose.clone(),
        not_before: g.not_before.as_deref().map(rfc3339).transpose()?,
        expires_at: rfc3339(&g.expires)?,
        grantor: g.grantor.clone(),
        approver: g.approver.clone(),
        approved_at: g.approver.as_ref().map(|_| now),
        revoked_at: None,
    })
}

/// The baseline grants of the policy set as they stand after an import:
/// what happened to them since survives — a revocation always, an approval
/// only while the grant says the same (grantee, resource, actions, validity).
/// An approver who is the grantor under another name is refused.
async fn baseline_grants(
    conn: &mut AnyConnection,
    set: &PolicySet,
    now: i64,
) -> Result<Vec<Grant>, PolicyError> {
    type Kept = (
        String,
        String,
        String,
        String,
        Option<i64>,
        i64,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    let kept: Vec<Kept> = sqlx::query_as(
        "SELECT id, grantee, resource, actions, not_before, expires_at, approver, approved_at, revoked_at \
         FROM grants WHERE source = 'baseline' AND (revoked_at IS NOT NULL OR approved_at IS NOT NULL)",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(set.grants.len());
    for g in &set.grants {
        let mut grant = grant_from_file(g, now).map_err(PolicyError::Invalid)?;
        if let Some(a) = &grant.approver {
            if canonical_subject(conn, a).await? == canonical_subject(conn, &grant.grantor).await? {
                return Err(PolicyError::Invalid(format!(
                    "grant `{}`: the approver must not be the grantor",
                    grant.id
                )));
            }
        }
        if let Some(k) = kept.iter().find(|k| k.0 == grant.id) {
            grant.revoked_at = k.8;
            let same = k.1 == grant.grantee
                && k.2 == grant.resource
                && k.3 == grant.actions.join(" ")
                && k.4 == grant.not_before
                && k.5 == grant.expires_at;
            if grant.approver.is_none() && same {
                grant.approver = k.6.clone();
                grant.approved_at = k.7;
            }
        }
        out.push(grant);
    }
    Ok(out)
}

/// The live policy as it would be with the policy set's baseline imported,
/// without importing it (`interkom policy check|explain|what-if`).
pub async fn load_with_baseline(
    pool: &AnyPool,
    set: &PolicySet,
    now: i64,
) -> Result<LiveData, PolicyError> {
    let mut live = load_filtered(pool, true).await?;
    live.rules.extend(set.lines.iter().cloned());
    for r in &set.resources {
        live.resources.retain(|x| x.id != r.id);
        live.resources.push(r.clone());
    }
    let mut conn = pool.acquire().await?;
    live.grants
        .extend(baseline_grants(&mut conn, set, now).await?);
    Ok(live)
}

/// Replaces the baseline rows with the policy set's, if its version differs
/// from the one imported last. Returns whether it imported.
pub async fn import_baseline(
    pool: &AnyPool,
    set: &PolicySet,
    now: i64,
) -> Result<bool, PolicyError> {
    let mut tx = pool.begin().await?;
    // Serialise concurrent starts of several nodes on the state row.
    sqlx::query("UPDATE policy_state SET version = version WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    let current: String = sqlx::query_scalar("SELECT baseline FROM policy_state WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    if current == set.version {
        tx.commit().await?;
        return Ok(false);
    }
    // Before the old rows go: what happened to them since.
    let grants = baseline_grants(&mut tx, set, now).await?;
    for table in ["policy_rules", "resources", "grants", "leistungen"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE source = 'baseline'"))
            .execute(&mut *tx)
            .await?;
    }
    for line in &set.lines {
        insert_rule(&mut tx, line, "baseline", now).await?;
    }
    for r in &set.resources {
        upsert_resource(&mut tx, r, "baseline", now).await?;
    }
    for grant in &grants {
        insert_grant(&mut tx, grant, "baseline", now).await?;
    }
    for l in &set.leistungen {
        upsert_leistung(&mut tx, l, "baseline", now).await?;
    }
    sqlx::query("UPDATE policy_state SET version = version + 1, baseline = $1 WHERE id = 1")
        .bind(&set.version)
        .execute(&mut *tx)
        .await?;
    if Backend::of(pool).is_postgres() {
        sqlx::query(&format!("NOTIFY {CHANNEL}"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

async fn insert_rule(
    conn: &mut AnyConnection,
    line: &RuleLine,
    source: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let v = |i: usize| line.values.get(i).cloned().unwrap_or_default();
    let n = sqlx::query(
        "INSERT INTO policy_rules (id, ptype, v0, v1, v2, v3, v4, v5, source, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (ptype, v0, v1, v2, v3, v4, v5) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&line.ptype)
    .bind(v(0))
    .bind(v(1))
    .bind(v(2))
    .bind(v(3))
    .bind(v(4))
    .bind(v(5))
    .bind(source)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

async fn upsert_resource(
    conn: &mut AnyConnection,
    r: &ResourceSpec,
    source: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO resources (id, name, kind, owner, client_id, confidentiality, integrity, availability, source, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, owner = excluded.owner, \
         client_id = excluded.client_id, confidentiality = excluded.confidentiality, integrity = excluded.integrity, \
         availability = excluded.availability, source = excluded.source, updated_at = excluded.updated_at",
    )
    .bind(&r.id)
    .bind(&r.name)
    .bind(&r.kind)
    .bind(&r.owner)
    .bind(&r.client)
    .bind(r.protection.c.as_str())
    .bind(r.protection.i.as_str())
    .bind(r.protection.a.as_str())
    .bind(source)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_grant(
    conn: &mut AnyConnection,
    g: &Grant,
    source: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO grants (id, grantee, resource, actions, purpose, not_before, expires_at, grantor, approver, approved_at, revoked_at, source, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&g.id)
    .bind(&g.grantee)
    .bind(&g.resource)
    .bind(g.actions.join(" "))
    .bind(&g.purpose)
    .bind(g.not_before)
    .bind(g.expires_at)
    .bind(&g.grantor)
    .bind(&g.approver)
    .bind(g.approved_at)
    .bind(g.revoked_at)
    .bind(source)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds a policy line (`source` = who: "admin", "cli", …). Returns false if
/// it existed already.
pub async fn add_rule(
    pool: &AnyPool,
    line: &RuleLine,
    source: &str,
    now: i64,
) -> Result<bool, PolicyError> {
    // Stored lines must read back as the same CSV line.
    if RuleLine::parse(&line.to_csv()).as_ref() != Ok(line)
        || line.values.iter().any(|v| v.contains(','))
    {
        return Err(PolicyError::Invalid(format!(
            "not a policy line: `{}`",
            line.to_csv()
        )));
    }
    let mut tx = begin_change(pool).await?;
    let added = insert_rule(&mut tx, line, source, now).await?;
    if added {
        bump(&mut tx, Backend::of(pool)).await?;
    }
    tx.commit().await?;
    Ok(added)
}

/// Removes a policy line. Returns false if there was none.
pub async fn remove_rule(pool: &AnyPool, line: &RuleLine) -> Result<bool, PolicyError> {
    let v = |i: usize| line.values.get(i).cloned().unwrap_or_default();
    let mut tx = begin_change(pool).await?;
    let n = sqlx::query(
        "DELETE FROM policy_rules WHERE ptype = $1 AND v0 = $2 AND v1 = $3 AND v2 = $4 AND v3 = $5 AND v4 = $6 AND v5 = $7",
    )
    .bind(&line.ptype)
    .bind(v(0))
    .bind(v(1))
    .bind(v(2))
    .bind(v(3))
    .bind(v(4))
    .bind(v(5))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n > 0 {
        bump(&mut tx, Backend::of(pool)).await?;
    }
    tx.commit().await?;
    Ok(n > 0)
}

/// Creates or replaces a resource.
pub async fn put_resource(
    pool: &AnyPool,
    r: &ResourceSpec,
    source: &str,
    now: i64,
) -> Result<(), PolicyError> {
    let mut tx = begin_change(pool).await?;
    upsert_resource(&mut tx, r, source, now).await?;
    commit_change(tx, Backend::of(pool)).await
}

/// Records a grant, unapproved: approval is [`approve_grant`]'s alone, by
/// someone other than the grantor (four-eyes principle).
pub async fn add_grant(
    pool: &AnyPool,
    g: &Grant,
    source: &str,
    now: i64,
) -> Result<(), PolicyError> {
    if g.actions.is_empty() || g.actions.iter().any(|a| a.is_empty() || a.contains(' ')) {
        return Err(PolicyError::Invalid(
            "a grant names one or more actions (or `*`)".into(),
        ));
    }
    if g.expires_at <= now {
        return Err(PolicyError::Invalid(
            "a grant must expire in the future".into(),
        ));
    }
    let g = Grant {
        approver: None,
        approved_at: None,
        revoked_at: None,
        ..g.clone()
    };
    let mut tx = begin_change(pool).await?;
    insert_grant(&mut tx, &g, source, now).await?;
    commit_change(tx, Backend::of(pool)).await
}

/// Approves a grant (four-eyes: the approver must not be the grantor, under
/// any of their names); a revoked or expired grant cannot be approved.
pub async fn approve_grant(
    pool: &AnyPool,
    id: &str,
    approver: &str,
    now: i64,
) -> Result<(), PolicyError> {
    let mut tx = begin_change(pool).await?;
    let row: Option<(String, i64, Option<i64>)> =
        sqlx::query_as("SELECT grantor, expires_at, revoked_at FROM grants WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((grantor, expires_at, revoked_at)) = row else {
        return Err(PolicyError::Invalid(format!("no grant `{id}`")));
    };
    if revoked_at.is_some() || expires_at <= now {
        return Err(PolicyError::Invalid(format!(
            "grant `{id}` is revoked or expired"
        )));
    }
    if canonical_subject(&mut tx, &grantor).await? == canonical_subject(&mut tx, approver).await? {
        return Err(PolicyError::Invalid(
            "the approver of a grant must not be its grantor".into(),
        ));
    }
    // The first approval stands; a second one does not overwrite it.
    let n = sqlx::query(
        "UPDATE grants SET approver = $1, approved_at = $2 WHERE id = $3 AND approver IS NULL",
    )
    .bind(approver)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(PolicyError::Invalid(format!(
            "grant `{id}` is approved already"
        )));
    }
    commit_change(tx, Backend::of(pool)).await
}

/// One person under two names (account id and username) is one person;
/// an account id wins over another account's username.
async fn canonical_subject(conn: &mut AnyConnection, name: &str) -> Result<String, sqlx::Error> {
    for sql in [
        "SELECT id FROM users WHERE id = $1",
        "SELECT id FROM users WHERE username = $1",
    ] {
        if let Some(id) = sqlx::query_scalar::<_, String>(sql)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
        {
            return Ok(id);
        }
    }
    Ok(name.to_owned())
}

/// Revokes a grant at once.
pub async fn revoke_grant(pool: &AnyPool, id: &str, now: i64) -> Result<bool, PolicyError> {
    let mut tx = begin_change(pool).await?;
    let n = sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    commit_change(tx, Backend::of(pool)).await?;
    Ok(n > 0)
}

fn need(s: &str) -> Result<ProtectionNeed, PolicyError> {
    ProtectionNeed::parse(s)
        .ok_or_else(|| PolicyError::Invalid(format!("stored protection need `{s}`")))
}

/// Reads the live policy and the subjects it is about.
pub async fn load(pool: &AnyPool) -> Result<LiveData, PolicyError> {
    load_filtered(pool, false).await
}

async fn load_filtered(pool: &AnyPool, skip_baseline: bool) -> Result<LiveData, PolicyError> {
    let filter = if skip_baseline {
        " WHERE source <> 'baseline'"
    } else {
        ""
    };
    // The version first: a change committed while loading is picked up by
    // the next reload, never lost.
    let version: i64 = sqlx::query_scalar("SELECT version FROM policy_state WHERE id = 1")
        .fetch_one(pool)
        .await?;
    // The lines, the subjects and the rest on three connections at once.
    let rest = async {
        let resources = load_resources(pool, filter).await?;
        let grants = load_grants(pool, filter).await?;
        let leistungen = load_leistungen(pool, filter).await?;
        Ok::<_, PolicyError>((resources, grants, leistungen))
    };
    let (rules, (users, assignments), (resources, grants, leistungen)) =
        tokio::try_join!(load_rules(pool, filter), load_subjects(pool), rest)?;
    Ok(LiveData {
        version,
        rules,
        resources,
        grants,
        users,
        assignments,
        leistungen,
    })
}

/// The policy lines. One column per line (values never hold a comma: they
/// come from CSV), and no ORDER BY: reading 200,000 lines is dominated by
/// per-value work.
async fn load_rules(pool: &AnyPool, filter: &str) -> Result<Vec<RuleLine>, PolicyError> {
    let rules_sql = format!(
        "SELECT ptype || ',' || v0 || ',' || v1 || ',' || v2 || ',' || v3 || ',' || v4 || ',' || v5 \
         FROM policy_rules{filter}"
    );
    let rows: Vec<String> = sqlx::query_scalar(&rules_sql).fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let mut parts = row.split(',');
            let ptype = parts.next()?.to_owned();
            let n = if ptype == "g" { 2 } else { 6 };
            let values = parts.take(n).map(str::to_owned).collect();
            Some(RuleLine { ptype, values })
        })
        .collect())
}

/// (id, username, home tenant, email) of an enabled account.
type UserRow = (String, String, String, Option<String>);

/// The enabled accounts and the roles held.
async fn load_subjects(
    pool: &AnyPool,
) -> Result<(Vec<UserRow>, Vec<(String, String, String)>), PolicyError> {
    let users = sqlx::query_as::<_, UserRow>(
        "SELECT id, username, tenant, email FROM users WHERE disabled = 0 AND population = 'staff'",
    )
    .fetch_all(pool)
    .await?;
    let assignments = sqlx::query_as::<_, (String, String, String)>(
        "SELECT subject, tenant, role FROM role_assignments",
    )
    .fetch_all(pool)
    .await?;
    Ok((users, assignments))
}

async fn load_resources(pool: &AnyPool, filter: &str) -> Result<Vec<ResourceSpec>, PolicyError> {
    type ResRow = (
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        String,
        String,
        String,
    );
    sqlx::query_as::<_, ResRow>(
        &format!("SELECT id, name, kind, owner, client_id, confidentiality, integrity, availability FROM resources{filter} ORDER BY id"),
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(id, name, kind, owner, client, c, i, a)| {
        Ok(ResourceSpec {
            id,
            name,
            kind,
            owner,
            client,
            protection: Protection {
                c: need(&c)?,
                i: need(&i)?,
                a: need(&a)?,
            },
        })
    })
    .collect()
}

async fn load_grants(pool: &AnyPool, filter: &str) -> Result<Vec<Grant>, PolicyError> {
    type GrantRow = (
        String,
        String,
        String,
        String,
        String,
        Option<i64>,
        i64,
        String,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    Ok(sqlx::query_as::<_, GrantRow>(&format!(
        "SELECT id, grantee, resource, actions, purpose, not_before, expires_at, grantor, approver, approved_at, revoked_at \
         FROM grants{filter} ORDER BY id"
    ))
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(id, grantee, resource, actions, purpose, not_before, expires_at, grantor, approver, approved_at, revoked_at)| Grant {
        id,
        grantee,
        resource,
        actions: actions.split(' ').filter(|a| !a.is_empty()).map(str::to_owned).collect(),
        purpose,
        not_before,
        expires_at,
        grantor,
        approver,
        approved_at,
        revoked_at,
    })
    .collect())
}

// Leistungen (see `crate::leistungen`).

pub(crate) async fn upsert_leistung(
    conn: &mut AnyConnection,
    l: &crate::leistungen::LeistungSpec,
    source: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let spec = serde_json::to_string(l).unwrap_or_default();
    sqlx::query(
        "INSERT INTO leistungen (id, tenant, client_id, spec, source, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, client_id = excluded.client_id, \
         spec = excluded.spec, source = excluded.source, updated_at = excluded.updated_at",
    )
    .bind(&l.id)
    .bind(&l.tenant)
    .bind(&l.client)
    .bind(spec)
    .bind(source)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

async fn load_leistungen(
    pool: &AnyPool,
    filter: &str,
) -> Result<Vec<crate::leistungen::LeistungSpec>, PolicyError> {
    let rows: Vec<String> =
        sqlx::query_scalar(&format!("SELECT spec FROM leistungen{filter} ORDER BY id"))
            .fetch_all(pool)
            .await?;
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect())
}

/// The Leistungen as stored, in id order.
pub async fn leistungen(
    pool: &AnyPool,
) -> Result<Vec<crate::leistungen::LeistungSpec>, PolicyError> {
    load_leistungen(pool, "").await
}

/// Registers or replaces a Leistung (checked for form; a client is one
/// Leistung's).
pub async fn put_leistung(
    pool: &AnyPool,
    l: &crate::leistungen::LeistungSpec,
    now: i64,
) -> Result<(), PolicyError> {
    l.check().map_err(PolicyError::Invalid)?;
    let mut conn = pool.acquire().await?;
    let taken: Option<String> =
        sqlx::query_scalar("SELECT id FROM leistungen WHERE client_id = $1 AND id <> $2")
            .bind(&l.client)
            .bind(&l.id)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(other) = taken {
        return Err(PolicyError::Conflict(format!(
            "client `{}` is the Leistung `{other}` already",
            l.client
        )));
    }
    drop(conn);
    let mut tx = begin_change(pool).await?;
    upsert_leistung(&mut tx, l, "admin", now).await?;
    commit_change(tx, Backend::of(pool)).await
}

/// Removes a Leistung; whether there was one.
pub async fn delete_leistung(pool: &AnyPool, id: &str) -> Result<bool, PolicyError> {
    let mut tx = begin_change(pool).await?;
    let n = sqlx::query("DELETE FROM leistungen WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    commit_change(tx, Backend::of(pool)).await?;
    Ok(n > 0)
}
