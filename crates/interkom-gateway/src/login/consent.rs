//! Whether a login must ask the person before the client receives their
//! data: every client but the county's own (first-party) asks, once per
//! set of scopes, and again when the client says `prompt=consent`.

use interkom_directory::Client;

use super::state::{AuthRequest, Login};
use crate::{Gateway, GatewayError};

/// Whether the consent page comes before the code.
pub(crate) async fn needed(
    gw: &Gateway,
    client: &Client,
    p: &Login,
    req: &AuthRequest,
) -> Result<bool, GatewayError> {
    if client.first_party {
        return Ok(false);
    }
    if req.prompt_consent {
        return Ok(true);
    }
    Ok(!gw
        .dir
        .has_consented(&p.user_id, &client.id, &req.scope)
        .await?)
}

/// What a scope lets the client read, as the consent page names it.
pub(crate) fn claims_of(scope: &str) -> Option<&'static str> {
    match scope {
        "openid" => Some("sub"),
        "profile" => Some("name, preferred_username"),
        "email" => Some("email"),
        "roles" => Some("roles, tenant"),
        "offline_access" => Some("offline_access"),
        _ => None,
    }
}
