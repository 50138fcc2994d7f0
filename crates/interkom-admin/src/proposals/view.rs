//! The proposals as the admin API shows them, and the answer of a change
//! that waits for a second administrator.

use interkom_policy::{Flip, ResourceSpec};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::upstreams::view::UpstreamView;
use crate::users::view::UserView;

/// A change recorded as a proposal (202): it is applied when a second
/// administrator approves it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Proposed {
    /// Always false: nothing changed yet.
    pub(crate) applied: bool,
    /// The proposal's id (`/proposals/{id}`).
    pub(crate) proposal: String,
    /// The decisions the change would flip (changes of policy lines and of
    /// resources only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::docs::FlipDoc>>)]
    pub(crate) flips: Option<Vec<Flip>>,
    /// Always true: a second administrator must approve it.
    pub(crate) requires_approval: bool,
}

impl Proposed {
    /// The answer for the proposal `id`, with the decisions it would flip.
    pub(crate) fn new(id: String, flips: Option<Vec<Flip>>) -> Proposed {
        Proposed {
            applied: false,
            proposal: id,
            flips,
            requires_approval: true,
        }
    }
}

/// A four-eyes proposal.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ProposalView {
    pub(crate) id: String,
    /// `policy_change`, `resource`, `role_assignment`, `password_reset`,
    /// `upstream` or `client_first_party`.
    pub(crate) kind: String,
    /// The change as proposed (its shape depends on `kind`).
    #[schema(value_type = Object)]
    pub(crate) change: Value,
    /// The tenant the change belongs to; none: it applies everywhere.
    pub(crate) tenant: Option<String>,
    /// Who proposed it.
    pub(crate) proposer: String,
    /// The decisions it would flip, as seen when it was proposed.
    #[schema(value_type = Vec<crate::docs::FlipDoc>)]
    pub(crate) flips: Value,
    /// `pending`, `applied` or `rejected`.
    pub(crate) status: String,
    /// Who approved or rejected it.
    pub(crate) decided_by: Option<String>,
    /// Unix time of the proposal.
    pub(crate) created_at: i64,
    /// Unix time of the decision.
    pub(crate) decided_at: Option<i64>,
}

/// One page of proposals, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ProposalPage {
    pub(crate) proposals: Vec<ProposalView>,
    /// The `cursor` of the next page; none on the last.
    pub(crate) next_cursor: Option<String>,
}

/// An approved proposal, applied.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Approved {
    /// Always true.
    pub(crate) applied: bool,
    /// The proposal's id.
    pub(crate) proposal: String,
    /// What applying it gave, by the proposal's kind.
    pub(crate) result: ApprovalResult,
}

/// What applying a proposal gave, by its kind.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum ApprovalResult {
    /// `policy_change`: the lines added and removed.
    Lines {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// `resource`: the resource as it is now.
    Resource {
        #[schema(value_type = crate::resources::view::ResourceDoc)]
        resource: ResourceSpec,
    },
    /// `role_assignment`: the user with their roles.
    Role(UserView),
    /// `upstream`: the upstream as it is now.
    Upstream { upstream: Box<UpstreamView> },
    /// `directory`: the directory as it is now.
    Directory {
        directory: Box<crate::directories::view::DirectoryView>,
    },
    /// `leistung`: the Leistung as it is now.
    Leistung {
        #[schema(value_type = crate::leistungen::view::LeistungDoc)]
        leistung: Box<interkom_policy::LeistungSpec>,
    },
    /// `saml_source`: the SAML identity source as it is now.
    SamlSource {
        #[schema(value_type = crate::saml_sources::view::SamlSourceDoc)]
        saml_source: Box<crate::saml_sources::view::SamlSourceView>,
    },
    /// `service_provider`: the SAML service provider as it is now.
    ServiceProvider {
        #[schema(value_type = crate::service_providers::view::ServiceProviderDoc)]
        service_provider: Box<interkom_directory::service_providers::ServiceProviderConfig>,
    },
    /// `application`: the application as it is now (`null`: removed).
    Application {
        #[schema(value_type = Option<crate::applications::view::ApplicationDoc>)]
        application: Option<Box<interkom_directory::applications::ApplicationConfig>>,
    },
    /// `client_first_party`: the client and its new standing.
    FirstParty { client: String, first_party: bool },
    /// `password_reset`: the new initial password, shown this once (to
    /// the approver).
    PasswordReset { initial_password: String },
}

/// A rejected (or withdrawn) proposal.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Rejected {
    /// Always true.
    pub(crate) rejected: bool,
    /// The proposal's id.
    pub(crate) proposal: String,
}
