//! The console's registration at the gateway and where it is mounted.

use interkom_directory::{Alg, AuthMethod, ClientSpec, Directory, DirectoryError, GrantType};

/// The console's client id at the gateway.
pub const CONSOLE_CLIENT: &str = "interkom-console";

/// Registers the console at the gateway (a public client with PKCE whose
/// redirect URI follows the issuer), or brings its registration up to date.
pub async fn ensure_client(directory: &Directory, issuer: &str) -> Result<(), DirectoryError> {
    let base = format!("{}{MOUNT}", origin(issuer));
    let spec = ClientSpec {
        id: CONSOLE_CLIENT.into(),
        tenant: directory
            .tenants()
            .iter()
            .find(|t| t.parent.is_none())
            .map(|t| t.id.clone().into())
            .ok_or_else(|| DirectoryError::Invalid("no Kreis tenant".into()))?,
        name: "interkom Verwaltungskonsole".into(),
        redirect_uris: vec![format!("{base}/callback")],
        post_logout_redirect_uris: vec![format!("{base}/")],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: vec!["openid".into(), "profile".into()],
        auth_method: AuthMethod::None,
        secret: None,
        jwks: None,
        id_token_alg: Alg::ES256,
        backchannel_logout_uri: None,
        first_party: true,
        resource_server: false,
    };
    match directory.client(CONSOLE_CLIENT).await? {
        None => match directory.register_client(spec).await {
            Ok(_) => Ok(()),
            // Another node may have registered it at the same moment.
            Err(DirectoryError::Taken(m)) => match directory.client(CONSOLE_CLIENT).await? {
                Some(_) => Ok(()),
                None => Err(DirectoryError::Taken(m)),
            },
            Err(e) => Err(e),
        },
        // A client of that id that is not the console's: refuse to start
        // rather than take it over.
        Some(c) if c.tenant != spec.tenant || c.auth_method != spec.auth_method => {
            Err(DirectoryError::Invalid(format!(
                "a client `{CONSOLE_CLIENT}` exists that is not interkom's console"
            )))
        }
        Some(c)
            if c.redirect_uris != spec.redirect_uris
                || c.post_logout_redirect_uris != spec.post_logout_redirect_uris
                || c.grant_types != spec.grant_types
                || c.scopes != spec.scopes =>
        {
            directory.update_client(spec).await
        }
        Some(_) => Ok(()),
    }
}

/// Where the console is mounted, beside `/admin/v1`.
pub const MOUNT: &str = "/admin/console";

/// The scheme, host and port of the issuer.
pub(crate) fn origin(issuer: &str) -> String {
    url::Url::parse(issuer)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| issuer.trim_end_matches('/').to_owned())
}
