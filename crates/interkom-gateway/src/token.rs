//! The token endpoint and what it issues.
//!
//! Access tokens are JWTs per RFC 9068 (ES256 or EdDSA) so a Fachverfahren's
//! API can validate them offline; ID tokens are RS256 unless the client
//! registered another algorithm. Refresh tokens are opaque, stored as keyed
//! hashes, rotated on every use; everything issued from one authorization
//! code forms a family that is revoked as a whole on code replay or
//! refresh-token reuse.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_types::AccountId;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use interkom_directory::crypto::random_token;
use interkom_directory::{AuthMethod, Client, GrantType, User, SUPPORTED_SCOPES};

use crate::clients;
use crate::params::{self, Params};
use crate::store::{AuthCode, NewRefreshToken, RefreshToken, Rotation, TokenFamily};
use crate::web::Meta;
use crate::{jws, Gateway, GatewayError, OAuthError};

pub(crate) async fn token(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&gw, &meta, &headers, &body).await {
        Ok(v) => {
            let mut res = axum::Json(v).into_response();
            let h = res.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            res
        }
        Err(e) => e.into_response(),
    }
}

async fn handle(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, OAuthError> {
    let p = params::form(headers, body)?;
    let grant_type = p
        .get("grant_type")?
        .ok_or_else(|| OAuthError::invalid_request("grant_type is missing"))?;
    let grant = GrantType::parse(grant_type).ok_or_else(|| {
        OAuthError::unsupported_grant_type(format!("grant_type `{grant_type}` is not supported"))
    })?;
    let client = clients::authenticate(gw, headers, &p, true).await?;
    if !client.allows(grant) {
        return Err(OAuthError::unauthorized_client(format!(
            "the client may not use the {} grant",
            grant.as_str()
        )));
    }
    match grant {
        GrantType::AuthorizationCode => authorization_code(gw, meta, &client, &p).await,
        GrantType::RefreshToken => refresh(gw, meta, &client, &p).await,
        GrantType::ClientCredentials => client_credentials(gw, meta, &client, &p).await,
    }
}

/// What a user token is issued for.
struct Redeemed {
    user_id: AccountId,
    sid: String,
    scope: Vec<String>,
    nonce: Option<String>,
    auth_time: i64,
    acr: String,
    amr: Vec<String>,
    family_id: String,
}

fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

async fn authorization_code(
    gw: &Gateway,
    meta: &Meta,
    client: &Client,
    p: &Params,
) -> Result<Value, OAuthError> {
    let code = p
        .get("code")?
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let redirect_uri = p
        .get("redirect_uri")?
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is missing"))?;
    let verifier = p.get("code_verifier")?;
    let now = gw.clock.now();
    let code_hash = gw.master.keyed_hash(code);
    let row = gw
        .store
        .code(&code_hash)
        .await
        .map_err(GatewayError::from)?;
    let row = row.ok_or_else(|| OAuthError::invalid_grant("the code is invalid"))?;
    if row.used_at.is_some() {
        return Err(code_replayed(gw, meta, client, &row).await);
    }
    if row.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if row.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    if row.expires_at <= now {
        return Err(OAuthError::invalid_grant("the code has expired"));
    }
    match (&row.code_challenge, verifier) {
        (Some(challenge), Some(v)) => {
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()));
            if !valid_verifier(v) || !interkom_directory::crypto::ct_eq(&computed, challenge) {
                return Err(OAuthError::invalid_grant(
                    "code_verifier does not match the code_challenge",
                ));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is missing")),
        // A verifier for a code issued without a challenge: PKCE downgrade.
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "no code_challenge was sent for this code",
            ))
        }
        (None, None) => {
            if client.auth_method == AuthMethod::None {
                return Err(OAuthError::invalid_grant("PKCE is required"));
            }
        }
    }
    let grant = Redeemed {
        user_id: row.user_id.clone(),
        sid: row.sid.clone(),
        scope: row
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        nonce: row.nonce.clone(),
        auth_time: row.auth_time,
        acr: row.acr.clone(),
        amr: serde_json::from_str(&row.amr).unwrap_or_default(),
        family_id: row.family_id.clone(),
    };
    let issue = prepare_user_tokens(gw, meta, client, &grant, Action::TokenIssued).await?;
    // One transaction: the code is used up exactly once, and the family and
    // refresh token exist exactly when it is.
    let mut tx = gw.store.begin().await.map_err(GatewayError::from)?;
    let used_up = gw
        .store
        .use_up_code(&mut tx, &code_hash, now)
        .await
        .map_err(GatewayError::from)?;
    if !used_up {
        drop(tx);
        return Err(code_replayed(gw, meta, client, &row).await);
    }
    // A code outlives no logout: its session must still be there (else the
    // new tokens would belong to an ended session nobody announces).
    let live = gw
        .store
        .session_exists(&mut tx, &row.sid)
        .await
        .map_err(GatewayError::from)?;
    if !live {
        drop(tx);
        return Err(OAuthError::invalid_grant(
            "the session of this code has ended",
        ));
    }
    let family = TokenFamily {
        id: &row.family_id,
        client_id: &client.id,
        user_id: &row.user_id,
        sid: &row.sid,
    };
    gw.store
        .insert_family(&mut tx, &family, now)
        .await
        .map_err(GatewayError::from)?;
    finish(gw, tx, issue).await
}

/// A second redemption of a code: whatever was issued from it is revoked.
async fn code_replayed(gw: &Gateway, meta: &Meta, client: &Client, row: &AuthCode) -> OAuthError {
    let breach = Breach {
        action: Action::CodeReplayDetected,
        reason: "authorization code redeemed twice; its tokens are revoked",
        answer: "the code has been used already",
    };
    family_compromised(gw, meta, client, &row.user_id, &row.family_id, breach).await
}

/// How a compromised token family is recorded and answered.
struct Breach {
    action: Action,
    reason: &'static str,
    answer: &'static str,
}

/// Someone else holds a copy of a code or refresh token: the whole family
/// is revoked, the event audited, and the caller gets `invalid_grant`.
async fn family_compromised(
    gw: &Gateway,
    meta: &Meta,
    client: &Client,
    user_id: &str,
    family_id: &str,
    breach: Breach,
) -> OAuthError {
    let res = async {
        revoke_family(gw, family_id).await?;
        let ev = AuditEvent::new(breach.action, Outcome::Denied)
            .client(&client.id)
            .reason(breach.reason)
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(json!({ "family": family_id }));
        // The account's tenant's security staff read it.
        let ev = match gw.dir.user(user_id).await? {
            Some(u) => gw.about(ev, &u),
            None => ev.subject(user_id, None),
        };
        gw.audit.append(ev).await?;
        Ok::<(), GatewayError>(())
    }
    .await;
    match res {
        Ok(()) => OAuthError::invalid_grant(breach.answer),
        Err(e) => e.into(),
    }
}

async fn refresh(
    gw: &Gateway,
    meta: &Meta,
    client: &Client,
    p: &Params,
) -> Result<Value, OAuthError> {
    let token = p
        .get("refresh_token")?
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let now = gw.clock.now();
    let hash = gw.master.keyed_hash(token);
    let row = gw
        .store
        .refresh_token(&hash)
        .await
        .map_err(GatewayError::from)?;
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid");
    let row = row.ok_or_else(invalid)?;
    if row.client_id != client.id {
        return Err(invalid());
    }
    // Everything that can be checked without consuming the token is checked
    // first: a request refused for its scope must not burn the token.
    let granted: Vec<String> = row
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let scope = match p.get("scope")? {
        None => granted,
        Some(s) => {
            let asked: Vec<String> = s
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(x) = asked.iter().find(|a| !granted.contains(a)) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope `{x}` was not granted"
                )));
            }
            asked
        }
    };
    if row.used_at.is_some() {
        return Err(refresh_reused(gw, meta, client, &row).await);
    }
    if row.family_revoked_at.is_some() || row.expires_at <= now {
        return Err(invalid());
    }
    let grant = Redeemed {
        user_id: row.user_id.clone(),
        sid: row.sid.clone(),
        scope,
        nonce: None,
        auth_time: row.auth_time,
        acr: row.acr.clone(),
        amr: serde_json::from_str(&row.amr).unwrap_or_default(),
        family_id: row.family_id.clone(),
    };
    let Issue {
        body,
        refresh,
        audit,
    } = prepare_user_tokens(gw, meta, client, &grant, Action::TokenRefreshed).await?;
    let Some(next) = refresh else {
        // The client lost the refresh_token grant since: nothing to rotate.
        return Err(OAuthError::unauthorized_client(
            "the client may not use the refresh_token grant",
        ));
    };
    // The old token used up and its successor stored, in one commit (shared
    // with the other rotations of the moment).
    let rotation = Rotation {
        used: hash,
        at: now,
        next,
    };
    let used_up = gw
        .store
        .rotate_refresh_token(rotation)
        .await
        .map_err(GatewayError::from)?;
    if !used_up {
        return Err(refresh_reused(gw, meta, client, &row).await);
    }
    gw.audit.append(audit).await.map_err(GatewayError::from)?;
    Ok(body)
}

/// Reuse of a rotated refresh token: someone else holds a copy. The whole
/// family is revoked.
async fn refresh_reused(
    gw: &Gateway,
    meta: &Meta,
    client: &Client,
    row: &RefreshToken,
) -> OAuthError {
    let breach = Breach {
        action: Action::RefreshReuseDetected,
        reason: "a rotated refresh token was used again; the token family is revoked",
        answer: "the refresh token is invalid",
    };
    family_compromised(gw, meta, client, &row.user_id, &row.family_id, breach).await
}

pub(crate) async fn revoke_family(gw: &Gateway, family_id: &str) -> Result<(), GatewayError> {
    Ok(gw.store.revoke_family(family_id, gw.clock.now()).await?)
}

/// Tokens signed and ready, with what must be stored and audited before
/// they are handed out.
struct Issue {
    body: Value,
    refresh: Option<NewRefreshToken>,
    audit: AuditEvent,
}

/// Commits the caller's transaction with the new refresh token in it, then
/// the audit event; only then is the response released.
async fn finish(
    gw: &Gateway,
    mut tx: sqlx::Transaction<'_, sqlx::Any>,
    issue: Issue,
) -> Result<Value, OAuthError> {
    if let Some(r) = &issue.refresh {
        gw.store
            .insert_refresh_token(&mut tx, r)
            .await
            .map_err(GatewayError::from)?;
    }
    tx.commit().await.map_err(GatewayError::from)?;
    gw.audit
        .append(issue.audit)
        .await
        .map_err(GatewayError::from)?;
    Ok(issue.body)
}

/// Reads the account, its tenant and roles, and signs the tokens. Writes
/// nothing: the caller stores within its transaction.
async fn prepare_user_tokens(
    gw: &Gateway,
    meta: &Meta,
    client: &Client,
    g: &Redeemed,
    action: Action,
) -> Result<Issue, OAuthError> {
    let now = gw.clock.now();
    let user = gw
        .dir
        .user(&g.user_id)
        .await?
        .filter(|u| u.disabled == 0)
        .ok_or_else(|| OAuthError::invalid_grant("the account is not active"))?;
    // Citizens and businesses belong to no tenant and hold no roles.
    let tenant = match user.is_staff() {
        true => Some(
            gw.tenants
                .get(&user.tenant)
                .ok_or_else(|| GatewayError::UnknownTenant(user.tenant.to_string()))?,
        ),
        false => None,
    };
    still_permitted(gw, meta, client, &user.id, g).await?;
    let roles = match tenant {
        Some(_) => roles_for(gw, client, &user),
        None => Vec::new(),
    };
    let keys = gw.keys.fresh(now).await?;
    let scope = g.scope.join(" ");

    let at_key = keys
        .signing(gw.cfg.access_token_alg, now)
        .ok_or(GatewayError::Crypto("no access-token signing key"))?;
    let mut access_claims = json!({
        "iss": gw.cfg.issuer_str(),
        "sub": user.id,
        "aud": client.id,
        "client_id": client.id,
        "exp": now + gw.cfg.access_token_ttl,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "scope": scope,
        "auth_time": g.auth_time,
        "acr": g.acr,
        "sid": g.sid,
        "gid": g.family_id,
    });
    if let Some(tenant) = tenant {
        access_claims["tenant"] = json!(tenant.id);
        access_claims["tenant_path"] = json!(tenant.path);
        access_claims["level"] = json!(tenant.level.as_str());
        access_claims["roles"] = json!(roles);
    }
    let access_token = jws::sign(at_key, "at+jwt", &access_claims)?;

    let mut out = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": gw.cfg.access_token_ttl,
        "scope": scope,
    });
    if g.scope.iter().any(|s| s == "openid") {
        let id_key = keys
            .signing(client.id_token_alg, now)
            .ok_or(GatewayError::Crypto("no ID-token signing key"))?;
        let mut claims = id_token_claims(gw, client, &user, tenant, &roles, g, now);
        if tenant.is_none() {
            add_leistung_claims(gw, client, &user, &mut claims).await?;
        }
        out["id_token"] = json!(jws::sign(id_key, "JWT", &claims)?);
    }
    let refresh = if client.allows(GrantType::RefreshToken) {
        let rt = random_token(32);
        let new = NewRefreshToken {
            hash: gw.master.keyed_hash(&rt),
            family_id: g.family_id.clone(),
            client_id: client.id.clone(),
            user_id: user.id.clone(),
            sid: g.sid.clone(),
            scope: scope.clone(),
            auth_time: g.auth_time,
            acr: g.acr.clone(),
            amr: serde_json::to_string(&g.amr).map_err(GatewayError::from)?,
            expires_at: now + gw.cfg.refresh_token_ttl,
        };
        out["refresh_token"] = json!(rt);
        Some(new)
    } else {
        None
    };
    let audit = gw.about(
        AuditEvent::new(action, Outcome::Success)
            .client(&client.id)
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(json!({ "scope": scope, "family": g.family_id, "jti": access_claims["jti"] })),
        &user,
    );
    Ok(Issue {
        body: out,
        refresh,
        audit,
    })
}

/// Every code exchange and refresh asks the policy again: a withdrawn
/// permission or a login grown too old ends the token family's use.
async fn still_permitted(
    gw: &Gateway,
    meta: &Meta,
    client: &Client,
    user_id: &str,
    g: &Redeemed,
) -> Result<(), OAuthError> {
    let (verdict, reasons) = crate::access::check(
        gw,
        Some(meta),
        &client.id,
        crate::access::LOGIN,
        user_id,
        &g.acr,
        &g.amr,
        g.auth_time,
    )
    .await?;
    match verdict {
        crate::access::Verdict::Allow => Ok(()),
        crate::access::Verdict::Deny => Err(OAuthError::invalid_grant(
            "the access policy no longer permits this user to use this service",
        )),
        _ => {
            tracing::debug!(?reasons, "step-up needed at the token endpoint");
            Err(OAuthError::invalid_grant(
                "the authentication no longer meets this service's protection need; log in again",
            ))
        }
    }
}

/// The roles the policy gives the user for this client's resource; for a
/// client that is no resource, the roles held in the home tenant.
fn roles_for(gw: &Gateway, client: &Client, user: &User) -> Vec<String> {
    let snap = gw.policy.snapshot();
    match snap.resource_for_client(&client.id) {
        Some(r) => snap.roles_for(&user.id, &r.id),
        None => snap.roles_in(&user.id, &user.tenant),
    }
}

/// The claims of an ID token for this grant.
fn id_token_claims(
    gw: &Gateway,
    client: &Client,
    user: &User,
    tenant: Option<&interkom_policy::Tenant>,
    roles: &[String],
    g: &Redeemed,
    now: i64,
) -> Value {
    let mut claims = json!({
        "iss": gw.cfg.issuer_str(),
        "sub": user.id,
        "aud": client.id,
        "azp": client.id,
        "exp": now + gw.cfg.id_token_ttl,
        "iat": now,
        "auth_time": g.auth_time,
        "acr": g.acr,
        "amr": g.amr,
        "sid": g.sid,
    });
    if let Some(tenant) = tenant {
        claims["tenant"] = json!(tenant.id);
        claims["tenant_path"] = json!(tenant.path);
        claims["level"] = json!(tenant.level.as_str());
        claims["roles"] = json!(roles);
    }
    if let Some(n) = &g.nonce {
        claims["nonce"] = json!(n);
    }
    add_profile_claims(&mut claims, &g.scope, user);
    claims
}

/// The claims a Leistung receives of a citizen or business: exactly the
/// ones it is registered for (data minimisation), from what the identity
/// source gave.
async fn add_leistung_claims(
    gw: &Gateway,
    client: &Client,
    user: &User,
    claims: &mut Value,
) -> Result<(), GatewayError> {
    let snap = gw.policy.snapshot();
    let Some(l) = snap.leistung_for_client(&client.id) else {
        return Ok(());
    };
    let data = gw.dir.person_data(&user.id).await?;
    for c in &l.claims {
        if let Some(v) = data.get(c) {
            claims[c.as_str()] = json!(v);
        }
    }
    Ok(())
}

pub(crate) fn add_profile_claims(claims: &mut Value, scope: &[String], user: &User) {
    // A citizen's or business's data goes only as its Leistung permits.
    if !user.is_staff() {
        return;
    }
    if scope.iter().any(|s| s == "profile") {
        claims["preferred_username"] = json!(user.username);
        if let Some(n) = &user.name {
            claims["name"] = json!(n);
        }
    }
    if scope.iter().any(|s| s == "email") {
        if let Some(e) = &user.email {
            claims["email"] = json!(e);
            claims["email_verified"] = json!(false);
        }
    }
}

async fn client_credentials(
    gw: &Gateway,
    meta: &Meta,
    client: &Client,
    p: &Params,
) -> Result<Value, OAuthError> {
    let now = gw.clock.now();
    let scope: Vec<&str> = match p.get("scope")? {
        Some(s) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        None => Vec::new(),
    };
    if let Some(s) = scope.iter().find(|s| {
        matches!(**s, "openid" | "offline_access")
            || !SUPPORTED_SCOPES.contains(s)
            || !client.scopes.iter().any(|c| c == *s)
    }) {
        return Err(OAuthError::invalid_scope(format!(
            "scope `{s}` is not available for client_credentials"
        )));
    }
    let scope = scope.join(" ");
    let tenant = gw.tenants.get(&client.tenant);
    let keys = gw.keys.fresh(now).await?;
    let key = keys
        .signing(gw.cfg.access_token_alg, now)
        .ok_or(GatewayError::Crypto("no access-token signing key"))?;
    let jti = uuid::Uuid::new_v4().to_string();
    let claims = json!({
        "iss": gw.cfg.issuer_str(),
        "sub": client.id,
        "aud": client.id,
        "client_id": client.id,
        "exp": now + gw.cfg.access_token_ttl,
        "iat": now,
        "jti": jti,
        "scope": scope,
        "tenant": client.tenant,
        "tenant_path": tenant.map(|t| t.path.clone()),
        "level": tenant.map(|t| t.level.as_str()),
    });
    let access_token = jws::sign(key, "at+jwt", &claims)?;
    let mut ev = AuditEvent::new(Action::TokenIssued, Outcome::Success)
        .client(&client.id)
        .subject(&client.id, Some(client.tenant.to_string()))
        .correlation(meta.request_id.clone())
        .source(meta.source.clone())
        .details(json!({ "grant_type": "client_credentials", "scope": scope, "jti": jti }));
    if let Some(t) = tenant {
        ev = ev.tenant(&t.id, t.path_string());
    }
    gw.audit.append(ev).await.map_err(GatewayError::from)?;
    Ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": gw.cfg.access_token_ttl,
        "scope": scope,
    }))
}
