//! Client authentication at the token, introspection and revocation
//! endpoints (the registrations themselves live in the directory).

use std::sync::Arc;

use axum::http::HeaderMap;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use interkom_directory::{AuthMethod, Client};
use serde_json::Value;

use crate::params::Params;
use crate::{Gateway, GatewayError, OAuthError};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Authenticates the client of a token-endpoint-style request. Public clients
/// identify themselves with `client_id` only, and only where `allow_public`.
pub(crate) async fn authenticate(
    gw: &Gateway,
    headers: &HeaderMap,
    params: &Params,
    allow_public: bool,
) -> Result<Arc<Client>, OAuthError> {
    let basic = match headers.get(axum::http::header::AUTHORIZATION) {
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
            match v.split_once(' ') {
                Some((scheme, cred)) if scheme.eq_ignore_ascii_case("basic") => {
                    Some(parse_basic(cred.trim())?)
                }
                _ => {
                    return Err(OAuthError::invalid_client(
                        "unsupported Authorization scheme",
                    ))
                }
            }
        }
        None => None,
    };
    let post_id = params.get("client_id")?;
    let post_secret = params.get("client_secret")?;
    let assertion_type = params.get("client_assertion_type")?;
    let assertion = params.get("client_assertion")?;

    let methods = basic.is_some() as u8 + post_secret.is_some() as u8 + assertion.is_some() as u8;
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "use exactly one client authentication method",
        ));
    }

    if let Some((id, secret)) = basic {
        if post_id.is_some_and(|p| p != id) {
            return Err(OAuthError::invalid_request(
                "client_id does not match the Authorization header",
            ));
        }
        return check_secret(gw, &id, &secret).await;
    }
    if let Some(secret) = post_secret {
        let id = post_id.ok_or_else(|| OAuthError::invalid_request("client_id is missing"))?;
        return check_secret(gw, id, secret).await;
    }
    if let Some(assertion) = assertion {
        if assertion_type != Some(JWT_BEARER) {
            return Err(OAuthError::invalid_client(
                "unsupported client_assertion_type",
            ));
        }
        return verify_client_assertion(gw, assertion, post_id).await;
    }
    let id =
        post_id.ok_or_else(|| OAuthError::invalid_client("client authentication is missing"))?;
    let client = gw
        .client(id)
        .await?
        .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
    if !client.is_public() || !allow_public {
        return Err(OAuthError::invalid_client("client authentication failed"));
    }
    Ok(client)
}

fn parse_basic(cred: &str) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::invalid_client("malformed Basic credentials");
    let raw = STANDARD.decode(cred).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    // RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Ok((dec(id).ok_or_else(bad)?, dec(secret).ok_or_else(bad)?))
}

async fn check_secret(gw: &Gateway, id: &str, secret: &str) -> Result<Arc<Client>, OAuthError> {
    let fail = || OAuthError::invalid_client("client authentication failed");
    let client = gw.client(id).await?.ok_or_else(fail)?;
    if !client.secret_matches(&gw.dir, secret) {
        return Err(fail());
    }
    Ok(client)
}

/// `private_key_jwt` (RFC 7523 §3, OIDC Core §9): signed by a key of the
/// client's registered JWKS, `iss` = `sub` = client id, `aud` the issuer or
/// the token endpoint, unexpired, and a `jti` never seen before.
async fn verify_client_assertion(
    gw: &Gateway,
    assertion: &str,
    client_id_param: Option<&str>,
) -> Result<Arc<Client>, OAuthError> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let fail = |why: &str| OAuthError::invalid_client(format!("client assertion rejected: {why}"));
    let header =
        jsonwebtoken::decode_header(assertion).map_err(|_| fail("malformed or unsupported alg"))?;
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 | Algorithm::EdDSA
    ) {
        return Err(fail("alg must be asymmetric"));
    }
    // Read `sub` unverified only to find the client whose keys to use.
    let unverified: Value = assertion
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| fail("malformed"))?;
    let sub = unverified
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("sub missing"))?;
    if client_id_param.is_some_and(|c| c != sub) {
        return Err(fail("client_id does not match sub"));
    }
    let client = gw
        .client(sub)
        .await?
        .ok_or_else(|| fail("unknown client"))?;
    if client.auth_method != AuthMethod::PrivateKeyJwt {
        return Err(fail("client is not registered for private_key_jwt"));
    }
    let keys = client
        .jwks
        .as_ref()
        .and_then(|j| serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(j.clone()).ok())
        .ok_or_else(|| fail("client has no usable JWKS"))?;
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or_else(|| fail("no matching key"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| fail("unusable key"))?;
    let mut v = Validation::new(header.alg);
    v.set_audience(&[gw.cfg.issuer_str().to_owned(), gw.cfg.endpoint("/token")]);
    v.set_issuer(&[sub]);
    v.sub = Some(sub.to_owned());
    v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    v.leeway = 5;
    v.validate_exp = false;
    let data = jsonwebtoken::decode::<Value>(assertion, &key, &v)
        .map_err(|_| fail("invalid signature or claims"))?;
    let now = gw.clock.now();
    let exp = data
        .claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| fail("exp missing"))?;
    if exp + 5 < now {
        return Err(fail("expired"));
    }
    if exp > now + 600 {
        return Err(fail("lifetime too long"));
    }
    let jti = data
        .claims
        .get("jti")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("jti missing"))?;
    let first = gw
        .store
        .first_client_assertion(&format!("{}|{}", client.id, jti), exp + 60)
        .await
        .map_err(GatewayError::from)?;
    if !first {
        return Err(fail("jti replayed"));
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let cred = STANDARD.encode("my%3Aclient:s%2Bcret");
        assert_eq!(
            parse_basic(&cred).unwrap(),
            ("my:client".into(), "s+cret".into())
        );
        assert!(parse_basic("!!!").is_err());
    }
}
