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

    /// The ids of the tenants the caller administers, in tree order.
    pub(crate) fn tenant_ids(&self, tree: &TenantTree) -> Vec<String> {
        tree.iter()
            .filter(|t| self.covers(t))
            .map(|t| t.id.clone())
            .collect()
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
    c: &crate::api::AdminChange<'_>,
) -> Result<Scope, AdminError> {
    let scope = Scope::load(&state.0.pool, caller).await?;
    if !scope.is_admin() {
        return Err(crate::api::refuse(state, caller, c, "the caller administers no tenant").await);
    }
    Ok(scope)
}

/// Whether the caller administers `place` (pure: the caller's scope and
/// the tree).
pub(crate) fn covers_place(tree: &TenantTree, scope: &Scope, place: &Place) -> bool {
    match place {
        Place::Tenant(t) => scope.covers_id(tree, t),
        Place::Everywhere => scope.covers_every_kreis(tree),
    }
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
    covers_place(&state.0.tenants, scope, place)
}

pub(crate) fn resource_place(r: &interkom_policy::ResourceSpec) -> Place {
    match &r.owner {
        Some(o) => Place::Tenant(o.clone()),
        None => Place::Everywhere,
    }
}

#[cfg(test)]
mod tests {
    //! The admin scope without a node: a tree, role assignments, the rules.

    use interkom_policy::tenant::{Level, TenantSpec};

    use super::*;

    fn tree() -> TenantTree {
        let t = |id: &str, level, parent: Option<&str>| TenantSpec {
            id: id.into(),
            name: id.into(),
            level,
            parent: parent.map(str::to_owned),
        };
        TenantTree::from_specs(&[
            t("lk", Level::Kreis, None),
            t("sg-elbtalaue", Level::Samtgemeinde, Some("lk")),
            t("hitzacker", Level::Gemeinde, Some("sg-elbtalaue")),
            t("damnatz", Level::Gemeinde, Some("sg-elbtalaue")),
            t("sg-gartow", Level::Samtgemeinde, Some("lk")),
            t("gartow", Level::Gemeinde, Some("sg-gartow")),
        ])
        .unwrap()
    }

    fn scope(held: &[(&str, &str)]) -> Scope {
        Scope {
            held: held
                .iter()
                .map(|(t, r)| (t.to_string(), r.to_string()))
                .collect(),
        }
    }

    #[test]
    fn an_administrator_reaches_their_subtree_only() {
        let tree = tree();
        let gemeinde = scope(&[("hitzacker", "admin")]);
        assert!(gemeinde.is_admin());
        assert!(gemeinde.covers_id(&tree, "hitzacker"));
        // Not up, not sideways, not a tenant that does not exist.
        for other in ["sg-elbtalaue", "lk", "damnatz", "gartow", "nowhere"] {
            assert!(!gemeinde.covers_id(&tree, other), "{other}");
        }
        let samtgemeinde = scope(&[("sg-elbtalaue", "admin")]);
        assert!(samtgemeinde.covers_id(&tree, "damnatz"));
        assert!(!samtgemeinde.covers_id(&tree, "gartow"));
        // Another role is no administration.
        assert!(!scope(&[("lk", "kommunalaufsicht")]).is_admin());
        assert!(!scope(&[("lk", "kommunalaufsicht")]).covers_id(&tree, "hitzacker"));
    }

    #[test]
    fn what_applies_everywhere_belongs_to_the_kreis() {
        let tree = tree();
        let kreis = scope(&[("lk", "admin")]);
        assert!(covers_place(&tree, &kreis, &Place::Everywhere));
        assert!(covers_place(&tree, &kreis, &Place::Tenant("gartow".into())));
        let gemeinde = scope(&[("hitzacker", "admin")]);
        assert!(!covers_place(&tree, &gemeinde, &Place::Everywhere));
        assert!(covers_place(
            &tree,
            &gemeinde,
            &Place::Tenant("hitzacker".into())
        ));
        assert!(!covers_place(
            &tree,
            &gemeinde,
            &Place::Tenant("damnatz".into())
        ));
    }

    #[test]
    fn roles_are_handed_out_only_by_who_holds_them_at_or_above() {
        let tree = tree();
        let hitzacker = tree.get("hitzacker").unwrap();
        let damnatz = tree.get("damnatz").unwrap();
        let s = scope(&[("sg-elbtalaue", "admin"), ("sg-elbtalaue", "meldewesen")]);
        assert!(s.holds_at_or_above("meldewesen", hitzacker));
        assert!(s.holds_at_or_above("meldewesen", damnatz));
        // A role the caller lacks cannot be handed out, not even below.
        assert!(!s.holds_at_or_above("kommunalaufsicht", hitzacker));
        // Held below is not held above.
        let g = scope(&[("hitzacker", "admin")]);
        assert!(!g.holds_at_or_above("admin", tree.get("sg-elbtalaue").unwrap()));
        assert!(g.holds_at_or_above("admin", hitzacker));
    }

    #[test]
    fn a_resource_applies_where_its_owner_is() {
        let spec = |owner: Option<&str>| interkom_policy::ResourceSpec {
            id: "meldedaten".into(),
            name: None,
            kind: "meldewesen".into(),
            owner: owner.map(str::to_owned),
            client: None,
            protection: interkom_policy::Protection::NORMAL,
        };
        assert_eq!(
            resource_place(&spec(Some("hitzacker"))),
            Place::Tenant("hitzacker".into())
        );
        assert_eq!(resource_place(&spec(None)), Place::Everywhere);
    }
}
