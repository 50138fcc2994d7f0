//! Whom an administrator may administer: the rule of the levels applied to
//! administration. The `admin` role held in tenant T reaches T's subtree
//! (like a supervisory role of the policy); nobody hands out a role they do
//! not hold themselves at or above the tenant concerned, nor changes their
//! own roles.

use interkom_policy::{Tenant, TenantTree};
use sqlx::AnyPool;

use crate::auth::Caller;
use crate::AdminError;

/// The role that administers a subtree.
pub(crate) const ADMIN: &str = "admin";

/// The caller's administrative reach.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// Every role the caller holds: (tenant, role).
    held: Vec<(String, String)>,
}

impl Scope {
    /// The caller's role assignments; 403 for someone who administers
    /// nothing (the refusal is audited by the caller of this function).
    pub(crate) async fn load(pool: &AnyPool, caller: &Caller) -> Result<Scope, AdminError> {
        let held = interkom_policy::roles::held_by(pool, &caller.subject).await?;
        Ok(Scope { held })
    }

    /// Whether the caller administers anything at all.
    pub(crate) fn is_admin(&self) -> bool {
        self.held.iter().any(|(_, r)| r == ADMIN)
    }

    /// The tenants the caller holds `admin` in.
    pub(crate) fn admin_roots(&self) -> impl Iterator<Item = &str> {
        self.held
            .iter()
            .filter(|(_, r)| r == ADMIN)
            .map(|(t, _)| t.as_str())
    }

    /// Whether `tenant` lies in (or is) a tenant the caller administers.
    pub(crate) fn covers(&self, tenant: &Tenant) -> bool {
        self.admin_roots()
            .any(|root| tenant.path.iter().any(|p| p == root))
    }

    /// Whether the caller administers every Kreis as a whole: what applies
    /// everywhere (lines for `*` or a kind, resources of no tenant, the
    /// signing keys) is theirs.
    pub(crate) fn covers_every_kreis(&self, tree: &TenantTree) -> bool {
        let mut roots = tree.iter().filter(|t| t.parent.is_none()).peekable();
        roots.peek().is_some() && roots.all(|t| self.covers(t))
    }

    /// Whether the tenant of this id exists and lies in the caller's reach.
    pub(crate) fn covers_id(&self, tree: &TenantTree, id: &str) -> bool {
        tree.get(id).is_some_and(|t| self.covers(t))
    }

    /// Whether the caller holds `role` in `tenant` or above it: only then
    /// may they hand it out (or take it away) there.
    pub(crate) fn holds_at_or_above(&self, role: &str, tenant: &Tenant) -> bool {
        self.held
            .iter()
            .any(|(t, r)| r == role && tenant.path.iter().any(|p| p == t))
    }
}

/// The caller's scope; someone who administers nothing is refused (and
/// the attempt audited).
pub(crate) async fn admin_scope(
    state: &crate::AdminState,
    caller: &Caller,
    c: &crate::api::Change<'_>,
) -> Result<Scope, AdminError> {
    let scope = Scope::load(&state.0.pool, caller).await?;
    if !scope.is_admin() {
        return Err(crate::api::refuse(state, caller, c, "the caller administers no tenant").await);
    }
    Ok(scope)
}

/// Where a change applies: inside one tenant's subtree, or everywhere
/// (lines for `*` or a kind, resources of no tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    Tenant(String),
    Everywhere,
}

impl Place {
    pub(crate) fn tenant(&self) -> Option<String> {
        match self {
            Place::Tenant(t) => Some(t.clone()),
            Place::Everywhere => None,
        }
    }
}

/// Whether the caller administers `place`.
pub(crate) fn may_change(state: &crate::AdminState, scope: &Scope, place: &Place) -> bool {
    match place {
        Place::Tenant(t) => scope.covers_id(&state.0.tenants, t),
        Place::Everywhere => scope.covers_every_kreis(&state.0.tenants),
    }
}

pub(crate) fn resource_place(r: &interkom_policy::ResourceSpec) -> Place {
    match &r.owner {
        Some(o) => Place::Tenant(o.clone()),
        None => Place::Everywhere,
    }
}
