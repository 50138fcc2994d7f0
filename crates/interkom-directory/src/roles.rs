//! Roles an identity source hands out: the one rule for every source that
//! maps its groups to interkom roles (upstream OpenID Providers today;
//! directories and SAML sources use the same).
//!
//! A mapping is an administrator's decision made once; the source then
//! applies it at every login. So a mapping to a role whose direct
//! assignment needs a second administrator needs one too ([`needs_four_eyes`],
//! checked by the admin API before a mapping is stored), and every change a
//! source makes is returned as a [`RoleChange`] for the audit trail.

use std::collections::{BTreeMap, BTreeSet};

use interkom_types::{AccountId, TenantId};

use crate::{Directory, DirectoryError};

/// Roles that are handed out only with a second administrator's approval,
/// directly or through a source's mapping: they administer others.
pub const FOUR_EYES_ROLES: &[&str] = &["admin"];

/// Whether giving `role` to someone needs a second administrator.
pub fn needs_four_eyes(role: &str) -> bool {
    FOUR_EYES_ROLES.contains(&role)
}

/// The mappings of `after` that hand out a four-eyes role and were not
/// in `before` already (group → role).
pub fn new_four_eyes_mappings(
    before: Option<&BTreeMap<String, String>>,
    after: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    after
        .iter()
        .filter(|(_, role)| needs_four_eyes(role))
        .filter(|(group, role)| before.and_then(|b| b.get(*group)) != Some(*role))
        .map(|(g, r)| (g.clone(), r.clone()))
        .collect()
}

/// A role a source gave or took at a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    pub role: String,
    pub tenant: TenantId,
    /// `true`: assigned; `false`: removed.
    pub assigned: bool,
}

/// What a source's mapping asks for, from the groups it asserted: the
/// roles to hold and the roles the mapping manages at all (others stay as
/// an administrator set them).
fn wanted_and_managed<'a>(
    mapping: &'a BTreeMap<String, String>,
    groups: &[String],
) -> (BTreeSet<&'a String>, BTreeSet<&'a String>) {
    let wanted = mapping
        .iter()
        .filter(|(g, _)| groups.contains(g))
        .map(|(_, r)| r)
        .collect();
    (wanted, mapping.values().collect())
}

impl Directory {
    /// Brings the roles `mapping` manages in `tenant` in step with the
    /// `groups` a source asserted for `account`; returns what changed.
    pub async fn sync_source_roles(
        &self,
        account: &AccountId,
        tenant: &TenantId,
        mapping: &BTreeMap<String, String>,
        groups: &[String],
    ) -> Result<Vec<RoleChange>, DirectoryError> {
        let (wanted, managed) = wanted_and_managed(mapping, groups);
        if managed.is_empty() {
            return Ok(Vec::new());
        }
        let held = self.roles_in(account, tenant).await?;
        let pool = &self.0.pool;
        let mut changes = Vec::new();
        for role in managed {
            let has = held.contains(role);
            let assigned = if wanted.contains(role) && !has {
                interkom_policy::roles::assign(pool, account, tenant, role).await?;
                true
            } else if !wanted.contains(role) && has {
                interkom_policy::roles::unassign(pool, account, tenant, role).await?;
                false
            } else {
                continue;
            };
            changes.push(RoleChange {
                role: role.clone(),
                tenant: tenant.clone(),
                assigned,
            });
        }
        // Also when nothing changed here but this node's policy does not
        // know the roles yet: a concurrent login of the same person
        // assigned them a moment ago and its reload is still under way.
        let known = self.0.policy.snapshot().roles_in(account, tenant);
        let stale = wanted.iter().any(|r| !known.contains(r));
        if !changes.is_empty() || stale {
            self.0.policy.reload().await?;
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(g, r)| ((*g).to_owned(), (*r).to_owned()))
            .collect()
    }

    #[test]
    fn a_new_mapping_to_admin_needs_a_second_administrator() {
        let before = map(&[("sb", "sachbearbeitung"), ("it", "admin")]);
        // Unchanged: nothing new to approve.
        assert!(new_four_eyes_mappings(Some(&before), &before).is_empty());
        // Another group now maps to admin: that is new.
        let after = map(&[("sb", "admin"), ("it", "admin")]);
        assert_eq!(
            new_four_eyes_mappings(Some(&before), &after),
            vec![("sb".to_owned(), "admin".to_owned())]
        );
        // A new upstream with an admin mapping.
        assert_eq!(new_four_eyes_mappings(None, &after).len(), 2);
        // Roles that need no second administrator never do.
        assert!(new_four_eyes_mappings(None, &map(&[("x", "sachbearbeitung")])).is_empty());
    }

    #[test]
    fn only_the_mapped_roles_follow_the_groups() {
        let m = map(&[("g1", "a"), ("g2", "b")]);
        let (wanted, managed) = wanted_and_managed(&m, &["g2".to_owned(), "other".to_owned()]);
        assert_eq!(wanted.into_iter().cloned().collect::<Vec<_>>(), ["b"]);
        assert_eq!(managed.len(), 2);
    }
}
