//! Identity sources: where a login is verified. Each implements
//! [`IdentitySource`] and knows nothing of the others, of the second
//! factors or of the protocol that asked; what it established comes back
//! to the login flow as an [`Authentication`].
//!
//! - `password`: the local password (argon2id, brute-force protection).
//! - `directory`: a Kommune's Active Directory or LDAP (search bind, then
//!   a bind as the person), with the account linked on the entry's
//!   immutable id; `directory_sync` imports people and groups ahead of
//!   their first login.
//! - `oidc`: an upstream OpenID Provider of a tenant (brokering), with
//!   `oidc_account` linking or creating the account it vouches for.
//! - `saml`: a SAML identity provider (BundID, Mein Unternehmenskonto):
//!   the signed AuthnRequest and the checks of its Response.
//! - `guard`: brute-force protection of every password a form takes.
//!
//! Adding a source: implement the trait in a module of its own, let its
//! endpoint (a form post or a callback) turn its answer into an
//! [`Authentication`] and hand it to `login::flow::advance`, and audit
//! every refusal as `login_failed` with a reason.

pub(crate) mod directory;
pub(crate) mod directory_sync;
mod guard;
pub(crate) mod oidc;
mod oidc_account;
mod oidc_answer;
pub(crate) mod password;
pub(crate) mod saml;

use axum::response::Response;
use futures_util::future::BoxFuture;
use interkom_types::Loa;

pub(crate) use crate::login::state::Authentication;
use crate::login::state::LoginRequest;
use crate::web::Meta;
use crate::{Gateway, GatewayError};

pub(crate) use directory::DirectoryLogin;
pub(crate) use oidc::OidcUpstream;
pub(crate) use password::LocalPassword;
pub(crate) use saml::SamlIdp;

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

/// Where the password of a login form goes.
pub(crate) enum PasswordSource {
    Local,
    Directory(std::sync::Arc<interkom_directory::ldap::DirectorySource>),
    /// The form names a directory that does not exist.
    Unknown,
}

/// The source a password typed as `username` is checked by: the directory
/// chosen on the page; else an account of exactly that name (local with a
/// password, or the directory it came from); else the directory whose
/// login domain (or id) the name ends in (`m.mueller@hitzacker.example`);
/// else the local password.
pub(crate) async fn password_source(
    gw: &Gateway,
    chosen: Option<&str>,
    username: &str,
) -> Result<PasswordSource, GatewayError> {
    let dirs = gw.dir.directory_sources().await?;
    if let Some(id) = chosen.filter(|c| !c.is_empty()) {
        return Ok(match dirs.iter().find(|d| d.cfg.id == id) {
            Some(d) => PasswordSource::Directory(d.clone()),
            None => PasswordSource::Unknown,
        });
    }
    if dirs.is_empty() || username.is_empty() || username.len() > 256 {
        return Ok(PasswordSource::Local);
    }
    // An account of exactly this name decides first: a local password is
    // never sent to a directory, whatever domain the name ends in.
    if let Some(u) = gw.dir.find_user(username).await? {
        if u.password_hash.is_some() {
            return Ok(PasswordSource::Local);
        }
        if let Some(id) = gw.dir.directory_of(&u.id).await? {
            if let Some(d) = dirs.iter().find(|d| d.cfg.id == id) {
                return Ok(PasswordSource::Directory(d.clone()));
            }
        }
    }
    if let Some((_, domain)) = username.trim().rsplit_once('@') {
        if let Some(d) = dirs
            .iter()
            .find(|d| d.cfg.has_domain(domain) || d.cfg.id == domain)
        {
            return Ok(PasswordSource::Directory(d.clone()));
        }
    }
    Ok(PasswordSource::Local)
}
