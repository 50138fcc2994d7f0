//! Users as the admin API shows them (never a password hash).

use serde::Serialize;
use utoipa::ToSchema;

/// A user account with the roles it holds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct UserView {
    pub(crate) id: String,
    /// The home tenant.
    pub(crate) tenant: String,
    pub(crate) username: String,
    /// The display name.
    pub(crate) name: Option<String>,
    pub(crate) email: Option<String>,
    /// Whether the account is locked (no login, no tokens).
    pub(crate) locked: bool,
    /// The roles held, by tenant.
    pub(crate) roles: Vec<RoleView>,
}

/// A role held in a tenant.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord, sqlx::FromRow, ToSchema)]
pub(crate) struct RoleView {
    pub(crate) tenant: String,
    pub(crate) role: String,
}

/// One page of users, by username.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct UserPage {
    pub(crate) users: Vec<UserView>,
    /// The `cursor` of the next page; none on the last.
    pub(crate) next_cursor: Option<String>,
}

/// A user just created.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct UserCreated {
    pub(crate) user: UserView,
    /// The initial password, shown this once.
    pub(crate) initial_password: String,
}

/// A new initial password.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct NewPassword {
    /// Shown this once.
    pub(crate) initial_password: String,
}

/// A second-factor reset.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct SecondFactorReset {
    /// Whether there was a second factor to remove.
    pub(crate) removed: bool,
}
