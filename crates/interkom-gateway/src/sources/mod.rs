//! Identity sources: where a login is verified. Each implements
//! [`IdentitySource`] and knows nothing of the others, of the second
//! factors or of the protocol that asked; what it established comes back
//! to the login flow as an [`Authentication`].
//!
//! - `password`: the local password (argon2id, brute-force protection).
//! - `oidc`: an upstream OpenID Provider of a tenant (brokering), with
//!   `oidc_account` linking or creating the account it vouches for.
//!
//! Adding a source (LDAP, SAML): implement the trait in a module of its
//! own, let its endpoint (a form post or a callback) turn its answer into
//! an [`Authentication`] and hand it to `login::flow::advance`, and audit
//! every refusal as `login_failed` with a reason.

pub(crate) mod oidc;
mod oidc_account;
mod oidc_answer;
pub(crate) mod password;

use axum::response::Response;
use futures_util::future::BoxFuture;
use interkom_types::Loa;

pub(crate) use crate::login::state::Authentication;
use crate::login::state::LoginRequest;
use crate::web::Meta;
use crate::{Gateway, GatewayError};

pub(crate) use oidc::OidcUpstream;
pub(crate) use password::LocalPassword;

/// What a login at a source asks for.
pub(crate) struct SourceAsk<'a> {
    pub(crate) meta: &'a Meta,
    pub(crate) at: &'a LoginRequest,
    /// The level wanted (`None`: the user chose the source, nothing asked).
    pub(crate) asked: Option<Loa>,
    /// A fresh authentication (`prompt=login`, or the last one is too old).
    pub(crate) fresh: bool,
}

/// Where a login can be verified.
pub(crate) trait IdentitySource: Sync {
    /// The name under which a login records this source as used, per level
    /// asked: each source is tried at most once per level, so no loop.
    fn method(&self, asked: Option<Loa>) -> String;
    /// The highest level this source can establish.
    fn max_loa(&self) -> Option<Loa>;
    /// Sends the browser there: the source's form, or a redirect.
    fn begin<'a>(
        &'a self,
        gw: &'a Gateway,
        ask: &'a SourceAsk<'a>,
    ) -> BoxFuture<'a, Result<Response, GatewayError>>;
}
