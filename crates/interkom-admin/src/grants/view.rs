//! Grants as the admin API shows them.

use interkom_policy::records::GrantRecord;
use interkom_policy::store::Grant;
use serde::Serialize;
use utoipa::ToSchema;

/// A grant: access across the levels for a purpose and a time.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct GrantView {
    pub(crate) id: String,
    /// `user:<username or id>`, `<role>@<tenant>` or `*@<tenant>`.
    pub(crate) grantee: String,
    /// The resource the grant gives access to.
    pub(crate) resource: String,
    /// The actions it allows.
    pub(crate) actions: Vec<String>,
    /// What for (Zweckbindung).
    pub(crate) purpose: String,
    /// Unix time from which it applies; none: from the start.
    pub(crate) not_before: Option<i64>,
    /// Unix time at which it ends.
    pub(crate) expires_at: i64,
    /// Who granted it.
    pub(crate) grantor: String,
    /// Who approved it (four eyes), if anyone yet.
    pub(crate) approver: Option<String>,
    /// Unix time of the approval.
    pub(crate) approved_at: Option<i64>,
    /// Unix time of the revocation.
    pub(crate) revoked_at: Option<i64>,
}

impl From<&GrantRecord> for GrantView {
    fn from(g: &GrantRecord) -> GrantView {
        GrantView {
            id: g.id.clone(),
            grantee: g.grantee.clone(),
            resource: g.resource.clone(),
            actions: g.actions.split(' ').map(str::to_owned).collect(),
            purpose: g.purpose.clone(),
            not_before: g.not_before,
            expires_at: g.expires_at,
            grantor: g.grantor.clone(),
            approver: g.approver.clone(),
            approved_at: g.approved_at,
            revoked_at: g.revoked_at,
        }
    }
}

impl From<&Grant> for GrantView {
    fn from(g: &Grant) -> GrantView {
        GrantView {
            id: g.id.clone(),
            grantee: g.grantee.clone(),
            resource: g.resource.clone(),
            actions: g.actions.clone(),
            purpose: g.purpose.clone(),
            not_before: g.not_before,
            expires_at: g.expires_at,
            grantor: g.grantor.clone(),
            approver: g.approver.clone(),
            approved_at: g.approved_at,
            revoked_at: g.revoked_at,
        }
    }
}

/// One page of grants, by id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct GrantPage {
    pub(crate) grants: Vec<GrantView>,
    /// The `cursor` of the next page; none on the last.
    pub(crate) next_cursor: Option<String>,
}

/// A grant just recorded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct GrantCreated {
    pub(crate) grant: GrantView,
    /// Whether it works only once another administrator approved it (a
    /// `sehr_hoch` resource).
    pub(crate) requires_approval: bool,
}

/// A grant after a change (approval, revocation).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct GrantChanged {
    pub(crate) grant: GrantView,
}
