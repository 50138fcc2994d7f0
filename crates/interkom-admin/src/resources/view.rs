//! Resources as the admin API shows them.

use interkom_policy::ResourceSpec;
use serde::Serialize;
use utoipa::ToSchema;

/// A resource: a Fachverfahren or an object type inside one, with its
/// protection need.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ResourceDoc {
    id: String,
    name: Option<String>,
    /// Its kind (policy lines may name a kind instead of an id).
    kind: String,
    /// The owning tenant; none for a resource of no tenant (the Kreis's).
    owner: Option<String>,
    /// The client (Fachverfahren) whose logins it governs.
    client: Option<String>,
    protection: crate::docs::ProtectionDoc,
}

/// One page of resources, by id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ResourcePage {
    #[schema(value_type = Vec<ResourceDoc>)]
    pub(crate) resources: Vec<ResourceSpec>,
    /// The `cursor` of the next page; none on the last.
    pub(crate) next_cursor: Option<String>,
}
