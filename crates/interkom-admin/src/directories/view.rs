//! Directories (AD, LDAP) as the admin API shows them.

use std::collections::BTreeMap;

use interkom_directory::ldap::DirectorySourceConfig;
use serde::Serialize;
use utoipa::ToSchema;

/// A directory: its configuration, without the service account's password.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DirectoryView {
    #[serde(flatten)]
    #[schema(value_type = DirectoryConfigDoc)]
    pub(crate) config: DirectorySourceConfig,
    /// Whether the service account's password is stored (never shown).
    pub(crate) has_bind_password: bool,
}

/// The directories of the caller's subtree.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DirectoryList {
    pub(crate) directories: Vec<DirectoryView>,
}

/// A Kommune's Active Directory or LDAP server.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct DirectoryConfigDoc {
    /// A slug, e.g. `ad-hitzacker`; accounts are named `<username>@<id>`.
    id: String,
    /// The tenant whose staff it holds.
    tenant: String,
    /// Shown on the login page.
    name: String,
    /// `active_directory` or `openldap`: the default filters and attributes.
    kind: String,
    /// `ldaps://…`, or `ldap://…` with StartTLS; tried in order.
    servers: Vec<String>,
    /// The Kommune's CA (PEM); without it the system's roots.
    ca_pem: Option<String>,
    /// Plain `ldap://` to this machine only (tests).
    allow_plain: Option<bool>,
    base_dn: String,
    /// The service account of the search bind.
    bind_dn: String,
    /// Write-only: kept sealed; a PUT without it keeps the stored one
    /// (for the same bind DN).
    #[schema(write_only)]
    bind_password: Option<String>,
    /// `{username}` and `{login}` are replaced, escaped (RFC 4515).
    user_filter: Option<String>,
    users_filter: Option<String>,
    /// `id`, `username`, `name`, `mail` attribute names.
    attributes: Option<BTreeMap<String, String>>,
    /// `in_chain`, `group_search` or `member_of`.
    groups: Option<String>,
    group_base_dn: Option<String>,
    disabled_filter: Option<String>,
    /// Group DN → interkom role in `tenant` (roles the caller holds).
    roles: Option<BTreeMap<String, String>>,
    /// Login domains (the Kreis's decision).
    domains: Option<Vec<String>>,
    /// Link a first login to the existing account of the same name (the
    /// Kreis's decision).
    link_existing: Option<bool>,
    create_accounts: Option<bool>,
    connect_timeout_ms: Option<u64>,
    timeout_ms: Option<u64>,
    pool_size: Option<u64>,
    sync_interval_seconds: Option<u64>,
}

/// What a connection test found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionTest {
    /// The service account could bind and search (and the person, when
    /// asked for, was found).
    pub ok: bool,
    /// What failed: `unreachable`, `timeout`, `tls`, `service_bind`,
    /// `no_secret`, `protocol`, `not_found`.
    pub failure: Option<String>,
    pub message: Option<String>,
    pub person: Option<PersonFound>,
}

/// A person as the directory describes them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PersonFound {
    pub dn: String,
    pub id: String,
    pub username: String,
    pub name: Option<String>,
    pub mail: Option<String>,
    /// Why they could not log in (`disabled`, `expired`, `locked`).
    pub refusal: Option<String>,
    pub groups: Vec<String>,
    /// The roles their groups map to in the directory's tenant.
    pub roles: Vec<String>,
}
