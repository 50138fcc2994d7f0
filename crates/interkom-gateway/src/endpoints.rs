//! Discovery, JWKS, userinfo, introspection (RFC 7662) and revocation
//! (RFC 7009).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use interkom_audit::{Action, AuditEvent, Outcome};
use serde_json::{json, Value};

use interkom_directory::SUPPORTED_SCOPES;
use interkom_types::Loa;

use crate::clients;
use crate::error::ErrorCode;
use crate::params::{self, Params};
use crate::web::Meta;
use crate::{jws, Gateway, GatewayError, OAuthError};

pub(crate) async fn discovery(State(gw): State<Gateway>) -> Response {
    let c = &gw.cfg;
    let doc = json!({
        "issuer": c.issuer_str(),
        "authorization_endpoint": c.endpoint("/authorize"),
        "token_endpoint": c.endpoint("/token"),
        "userinfo_endpoint": c.endpoint("/userinfo"),
        "jwks_uri": c.endpoint("/jwks"),
        "introspection_endpoint": c.endpoint("/introspect"),
        "revocation_endpoint": c.endpoint("/revoke"),
        "end_session_endpoint": c.endpoint("/logout"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "scopes_supported": SUPPORTED_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "code_challenge_methods_supported": ["S256"],
        "acr_values_supported": Loa::ALL.map(Loa::acr),
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid",
            "name", "preferred_username", "email", "email_verified", "tenant", "tenant_path", "level", "roles"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "authorization_response_iss_parameter_supported": true,
        "ui_locales_supported": ["de", "en"],
        "frontchannel_logout_supported": false,
    });
    let mut res = axum::Json(doc).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

pub(crate) async fn jwks(State(gw): State<Gateway>) -> Response {
    let now = gw.clock.now();
    match gw.keys.fresh(now).await {
        Ok(keys) => {
            let mut res = axum::Json(keys.jwks(now)).into_response();
            // Short: a rotation must reach relying parties within the
            // publication lead.
            res.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            );
            res
        }
        Err(e) => OAuthError::from(e).into_response(),
    }
}

/// Validates one of interkom's access tokens: signature by a published key,
/// issuer, expiry, and that neither it nor its family was revoked.
pub(crate) async fn access_token_claims(
    gw: &Gateway,
    token: &str,
) -> Result<Option<Value>, GatewayError> {
    let now = gw.clock.now();
    let (claims, fresh) = match gw.verified.get(token, now) {
        Some(c) => c,
        None => {
            let keys = gw.keys.fresh(now).await?;
            let Ok(claims) = jws::verify(&keys, token, "at+jwt", now) else {
                return Ok(None);
            };
            let exp = claims.get("exp").and_then(Value::as_i64);
            if claims.get("iss").and_then(Value::as_str) != Some(gw.cfg.issuer_str())
                || exp.is_none_or(|e| e <= now)
            {
                return Ok(None);
            }
            let claims = std::sync::Arc::new(claims);
            gw.verified
                .put(token, claims.clone(), exp.unwrap_or(now), now);
            (claims, false)
        }
    };
    // A client's own token (no user session, no family) checked unrevoked
    // within the last second; see `verified`.
    let client_token = claims.get("gid").is_none() && claims.get("sid").is_none();
    if client_token && fresh {
        return Ok(Some(Value::clone(&claims)));
    }
    // Taken before the lookups: the "not revoked" below is no newer than this.
    let checked = std::time::Instant::now();
    if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
        if gw.store.access_token_revoked(jti).await? {
            return Ok(None);
        }
    }
    if let Some(gid) = claims.get("gid").and_then(Value::as_str) {
        if !gw.store.family_is_live(gid).await? {
            return Ok(None);
        }
    }
    if client_token {
        gw.verified.mark_unrevoked(token, &claims, checked);
    }
    Ok(Some(Value::clone(&claims)))
}

fn bearer(headers: &HeaderMap, p: Option<&Params>) -> Result<String, OAuthError> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v
            .to_str()
            .map_err(|_| OAuthError::invalid_token("malformed Authorization header"))?;
        return match v.split_once(' ') {
            Some((s, t)) if s.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
                Ok(t.trim().to_owned())
            }
            _ => Err(OAuthError::invalid_token("a Bearer token is required")),
        };
    }
    if let Some(t) = p.and_then(|p| p.get("access_token").ok().flatten()) {
        return Ok(t.to_owned());
    }
    let mut e = OAuthError::invalid_token("a Bearer token is required");
    // RFC 6750 §3.1: no error code when no credentials were sent.
    e.challenge = Some("Bearer realm=\"interkom\"".into());
    Err(e)
}

pub(crate) async fn userinfo(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res: Result<Value, OAuthError> = async {
        let form = if body.is_empty() {
            None
        } else {
            Some(params::form(&headers, &body)?)
        };
        let token = bearer(&headers, form.as_ref())?;
        let claims = access_token_claims(&gw, &token)
            .await?
            .ok_or_else(|| OAuthError::invalid_token("the access token is invalid"))?;
        let scope: Vec<String> = claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or("")
            .split(' ')
            .map(str::to_owned)
            .collect();
        if !scope.iter().any(|s| s == "openid") {
            let mut e = OAuthError::new(
                axum::http::StatusCode::FORBIDDEN,
                ErrorCode::InsufficientScope,
                "the access token lacks the openid scope",
            );
            e.challenge = Some(
                "Bearer realm=\"interkom\", error=\"insufficient_scope\", scope=\"openid\"".into(),
            );
            return Err(e);
        }
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
        let user = gw
            .dir
            .user(sub)
            .await?
            .filter(|u| u.disabled == 0)
            .ok_or_else(|| OAuthError::invalid_token("the account is not active"))?;
        let mut out = json!({
            "sub": user.id,
            "tenant": claims.get("tenant"),
            "tenant_path": claims.get("tenant_path"),
            "level": claims.get("level"),
            "roles": claims.get("roles"),
        });
        crate::token::add_profile_claims(&mut out, &scope, &user);
        Ok(out)
    }
    .await;
    match res {
        Ok(v) => {
            let mut r = axum::Json(v).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn introspect(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res: Result<Value, OAuthError> = async {
        let p = params::form(&headers, &body)?;
        // Only authenticated clients may introspect (RFC 7662 §2.1).
        let client = clients::authenticate(&gw, &headers, &p, false).await?;
        let token = p
            .get("token")?
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        if let Some(mut claims) = access_token_claims(&gw, token).await? {
            if !may_introspect(&client, &claims) {
                return Ok(json!({ "active": false }));
            }
            claims["active"] = json!(true);
            claims["token_type"] = json!("Bearer");
            return Ok(claims);
        }
        // A refresh token, shown only to the client it was issued to.
        let now = gw.clock.now();
        let row = gw
            .store
            .refresh_token_view(&gw.master.keyed_hash(token))
            .await
            .map_err(GatewayError::from)?;
        match row {
            Some(r)
                if r.client_id == client.id
                    && r.expires_at > now
                    && r.used_at.is_none()
                    && r.revoked_at.is_none() =>
            {
                Ok(json!({
                    "active": true,
                    "client_id": r.client_id,
                    "sub": r.user_id,
                    "scope": r.scope,
                    "exp": r.expires_at,
                    "iss": gw.cfg.issuer_str(),
                    "token_type": "refresh_token",
                }))
            }
            _ => Ok(json!({ "active": false })),
        }
    }
    .await;
    match res {
        Ok(v) => {
            let mut r = axum::Json(v).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => e.into_response(),
    }
}

/// Whether `caller` may learn about an access token (RFC 7662 §4): the
/// token's own client, its audience, or a resource server for the people
/// of its tenant's subtree. Anyone else hears `active: false`, as for a
/// token that does not exist.
fn may_introspect(caller: &interkom_directory::Client, claims: &Value) -> bool {
    let is = |v: &Value| v.as_str() == Some(caller.id.as_str());
    let own = claims.get("client_id").is_some_and(is);
    let audience = match claims.get("aud") {
        Some(Value::Array(a)) => a.iter().any(is),
        Some(v) => is(v),
        None => false,
    };
    let served = caller.resource_server
        && claims
            .get("tenant_path")
            .and_then(Value::as_array)
            .is_some_and(|path| {
                path.iter()
                    .any(|t| t.as_str() == Some(caller.tenant.as_str()))
            });
    own || audience || served
}

pub(crate) async fn revoke(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res: Result<(), OAuthError> = async {
        let p = params::form(&headers, &body)?;
        let client = clients::authenticate(&gw, &headers, &p, true).await?;
        let token = p
            .get("token")?
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        let now = gw.clock.now();
        let family = gw
            .store
            .refresh_token_family(&gw.master.keyed_hash(token))
            .await
            .map_err(GatewayError::from)?;
        let revoked_what = if let Some((fid, cid)) = family.filter(|(_, c)| *c == client.id) {
            crate::token::revoke_family(&gw, &fid).await?;
            let _ = cid;
            Some(json!({ "type": "refresh_token", "family": fid }))
        } else if let Some(claims) = access_token_claims(&gw, token).await? {
            let jti = claims.get("jti").and_then(Value::as_str).unwrap_or("");
            let owner = claims
                .get("client_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            if owner == client.id && !jti.is_empty() {
                let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
                gw.store
                    .revoke_access_token(jti, exp)
                    .await
                    .map_err(GatewayError::from)?;
                gw.verified.forget(token);
                Some(json!({ "type": "access_token", "jti": jti }))
            } else {
                None
            }
        } else {
            None
        };
        if let Some(details) = revoked_what {
            gw.audit
                .append(
                    AuditEvent::new(Action::TokenRevoked, Outcome::Success)
                        .client(&client.id)
                        .correlation(meta.request_id.clone())
                        .source(meta.source.clone())
                        .details(details),
                )
                .await
                .map_err(GatewayError::from)?;
        }
        // Unknown or foreign tokens: 200 all the same (RFC 7009 §2.2).
        Ok(())
    }
    .await;
    match res {
        Ok(()) => {
            let mut r = ().into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => e.into_response(),
    }
}
