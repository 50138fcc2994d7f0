//! The interkom account of an upstream identity: linked before, linked now
//! to an existing account, or created; profile and roles brought in step.

use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::{Upstream, User};
use serde_json::{json, Value};

use super::oidc_answer::{claim_list, claim_str, Asserted, Failure};
use crate::web::Meta;
use crate::{Gateway, GatewayError};

/// The interkom account of an upstream identity: linked before, linked now
/// to an existing account, or created; profile and roles brought in step.
/// Whatever the link says, the account must lie in the upstream's subtree.
pub(crate) async fn resolve_account(
    gw: &Gateway,
    meta: &Meta,
    idp: &Upstream,
    a: &Asserted,
) -> Result<User, Failure> {
    let user = match linked_account(gw, idp, &a.subject).await? {
        Some(u) => u,
        None => link_or_create(gw, meta, idp, a).await?,
    };
    if !in_subtree(gw, &user.tenant, &idp.cfg.tenant) {
        return Err(Failure::NoAccount(
            "the linked account lies outside this upstream's tenant",
        ));
    }
    if !user.is_enabled() {
        return Err(Failure::NoAccount("the account is locked"));
    }
    // The upstream is the source of truth for what it asserts.
    let name = claim_str(&a.claims, &idp.cfg.claims.name);
    let email = claim_str(&a.claims, &idp.cfg.claims.email);
    if name.is_some() && name != user.name || email.is_some() && email != user.email {
        gw.dir
            .set_profile(
                &user.id,
                name.as_deref().or(user.name.as_deref()),
                email.as_deref().or(user.email.as_deref()),
            )
            .await
            .map_err(GatewayError::from)?;
    }
    sync_roles(gw, meta, idp, &user, &a.claims).await?;
    Ok(gw
        .dir
        .user(&user.id)
        .await
        .map_err(GatewayError::from)?
        .unwrap_or(user))
}

/// The account linked to this subject by this upstream's issuer (a link
/// made by another IdP under the same id counts for nothing).
pub(crate) async fn linked_account(
    gw: &Gateway,
    idp: &Upstream,
    subject: &str,
) -> Result<Option<User>, Failure> {
    match gw
        .dir
        .linked_account(idp, subject)
        .await
        .map_err(GatewayError::from)?
    {
        Some(Some(u)) => Ok(Some(u)),
        Some(None) => Err(Failure::NoAccount("the linked account no longer exists")),
        None => Ok(None),
    }
}

async fn link_or_create(
    gw: &Gateway,
    meta: &Meta,
    idp: &Upstream,
    a: &Asserted,
) -> Result<User, Failure> {
    let username_claim = claim_str(&a.claims, &idp.cfg.claims.username);
    let existing = match (&username_claim, idp.cfg.link_existing) {
        (Some(u), true) => gw
            .dir
            .find_user(u)
            .await
            .map_err(GatewayError::from)?
            .filter(|u| in_subtree(gw, &u.tenant, &idp.cfg.tenant)),
        _ => None,
    };
    let (user, action) = match existing {
        Some(u) => (u, Action::AccountLinked),
        None if idp.cfg.create_accounts => {
            let base = username_claim.unwrap_or_else(|| a.subject.clone());
            let name = claim_str(&a.claims, &idp.cfg.claims.name);
            let email = claim_str(&a.claims, &idp.cfg.claims.email);
            (
                provision(gw, idp, &base, name.as_deref(), email.as_deref()).await?,
                Action::AccountProvisioned,
            )
        }
        None => return Err(Failure::NoAccount("no account is linked to this identity")),
    };
    let linked = gw
        .dir
        .link(idp, &a.subject, &user.id)
        .await
        .map_err(GatewayError::from)?;
    if !linked {
        // Another first login of this identity won the race: its link
        // stands, the account made here goes.
        if action == Action::AccountProvisioned {
            gw.dir.discard(&user.id).await.map_err(GatewayError::from)?;
        }
        return linked_account(gw, idp, &a.subject)
            .await?
            .ok_or(Failure::NoAccount(
                "the account is linked to another identity of this upstream",
            ));
    }
    let ev = gw.about(
        AuditEvent::new(action, Outcome::Success)
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(json!({ "upstream": idp.cfg.id, "username": user.username })),
        &user,
    );
    gw.audit.append(ev).await.map_err(GatewayError::from)?;
    Ok(user)
}

fn in_subtree(gw: &Gateway, tenant: &str, root: &str) -> bool {
    gw.tenants
        .get(tenant)
        .is_some_and(|t| t.path.iter().any(|p| p == root))
}

/// Creates the account of a first login: in the upstream's tenant, without
/// a local password, named `<username>@<upstream>`.
async fn provision(
    gw: &Gateway,
    idp: &Upstream,
    base: &str,
    name: Option<&str>,
    email: Option<&str>,
) -> Result<User, Failure> {
    let clean: String = base
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(80)
        .collect();
    let clean = if clean.is_empty() {
        "konto".to_owned()
    } else {
        clean
    };
    let candidates: Vec<String> = (0..5)
        .map(|n| {
            if n == 0 {
                format!("{clean}@{}", idp.cfg.id)
            } else {
                format!("{clean}-{n}@{}", idp.cfg.id)
            }
        })
        .collect();
    gw.dir
        .provision(&idp.cfg.tenant, &candidates, name, email)
        .await
        .map_err(GatewayError::from)?
        .ok_or(Failure::NoAccount("no free username for the new account"))
}

/// Roles the mapping names follow the upstream's groups; others stay.
/// Each change is audited as its own event (role, tenant, source).
async fn sync_roles(
    gw: &Gateway,
    meta: &Meta,
    idp: &Upstream,
    user: &User,
    claims: &Value,
) -> Result<(), Failure> {
    let Some(claim) = &idp.cfg.claims.groups else {
        return Ok(());
    };
    let groups = claim_list(claims, claim);
    let changes = gw
        .dir
        .sync_source_roles(&user.id, &idp.cfg.tenant, &idp.cfg.roles, &groups)
        .await
        .map_err(GatewayError::from)?;
    for change in changes {
        let ev = gw.about(
            AuditEvent::new(Action::RoleChanged, Outcome::Success)
                .correlation(meta.request_id.clone())
                .source(meta.source.clone())
                .details(json!({
                    "role": change.role,
                    "tenant": change.tenant,
                    "change": if change.assigned { "assigned" } else { "removed" },
                    "source": format!("upstream:{}", idp.cfg.id),
                })),
            user,
        );
        gw.audit.append(ev).await.map_err(GatewayError::from)?;
    }
    Ok(())
}
