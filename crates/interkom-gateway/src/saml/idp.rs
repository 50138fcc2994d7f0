//! interkom as SAML identity provider.
//!
//! - `GET /saml/metadata`: entity id `{issuer}/saml`, SSO and SLO for both
//!   bindings, the signing certificates of the RSA keys (the one that
//!   signs, then one published ahead of a rotation).
//! - `/saml/sso` (Redirect, POST): the AuthnRequest is checked — issuer
//!   registered, signature when there is one (and required where the SP
//!   says so), IssueInstant fresh, Destination ours, the ACS URL one of the
//!   registered ones (never taken from the request otherwise), the ID new
//!   (shared by every node) — and becomes a request of the one login flow
//!   as the SP's login client (`RequestedAuthnContext` → the level asked,
//!   `ForceAuthn` → a fresh login, `IsPassive` → no interaction).
//! - `/saml/return`: where the flow ends with a one-time code; it is
//!   redeemed here (the sealed pending request of this browser, PKCE) and
//!   the Response posted to the ACS URL: signed Response and Assertion (as
//!   the SP is registered), encrypted to its certificate if asked, the
//!   level reached as `AuthnContextClassRef`, a pairwise persistent NameID
//!   (or as configured) and the attributes registered.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::crypto::{ct_eq, random_token};
use interkom_directory::service_providers::{NameIdFormat, SamlAttribute, ServiceProvider};
use interkom_saml::authn::{AuthnRequest, BINDING_POST};
use interkom_saml::binding::{self, Param};
use interkom_saml::dsig::{self, Trusted};
use interkom_saml::metadata::IdpMetadata;
use interkom_saml::response::{self, Assertion, Attribute, Envelope, Protection, Status};
use interkom_types::Loa;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::authorize;
use crate::i18n::{Lang, LangTexts};
use crate::login::state::AuthRequest;
use crate::web::{self, Meta};
use crate::{Gateway, GatewayError};

/// The cookie that keeps this browser's pending SAML request (sealed).
const PENDING_COOKIE: &str = "interkom_saml";

/// How far an AuthnRequest's IssueInstant may be from now, in seconds.
const FRESH: i64 = 300;

/// How long an assertion is valid for the SP.
const ASSERTION_SECONDS: i64 = 300;

pub(crate) fn entity_id(gw: &Gateway) -> String {
    format!("{}/saml", gw.cfg.issuer_str())
}

fn sso_url(gw: &Gateway) -> String {
    format!("{}/saml/sso", gw.cfg.issuer_str())
}

/// Where the flow's code comes back (the SPs' login clients' redirect URI).
pub(crate) fn return_url(gw: &Gateway) -> String {
    format!("{}/saml/return", gw.cfg.issuer_str())
}

/// `GET /saml/metadata`.
pub(crate) async fn metadata(State(gw): State<Gateway>, meta: Meta) -> Response {
    let now = gw.clock.now();
    let keys = match gw.keys.fresh(now).await {
        Ok(k) => k,
        Err(e) => return web::internal(&gw, lang_of(&meta), e),
    };
    let certs = keys.saml_certs(now);
    let xml = IdpMetadata {
        entity_id: &entity_id(&gw),
        sso_url: &sso_url(&gw),
        slo_url: &format!("{}/saml/slo", gw.cfg.issuer_str()),
        signing: &certs,
        name_id_formats: &[
            response::NAMEID_PERSISTENT,
            response::NAMEID_TRANSIENT,
            response::NAMEID_EMAIL,
            response::NAMEID_UNSPECIFIED,
        ],
    }
    .to_xml();
    (
        [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
        xml,
    )
        .into_response()
}

pub(crate) fn lang_of(meta: &Meta) -> Lang {
    Lang::negotiate(None, meta.accept_language.as_deref())
}

/// The pending request of this browser, sealed in its cookie.
#[derive(Serialize, Deserialize)]
struct Pending {
    sp: String,
    request_id: Option<String>,
    acs: String,
    relay_state: Option<String>,
    /// The levels the request named as eIDAS URIs: answered in kind.
    eidas: bool,
    state: String,
    verifier: String,
    exp: i64,
}

fn aad(gw: &Gateway) -> String {
    format!("saml-pending|{}", gw.cfg.issuer_str())
}

/// An AuthnRequest as one of the two bindings brought it.
struct Incoming {
    xml: String,
    relay_state: Option<String>,
    /// Redirect: (SigAlg, signature, the octets signed).
    query_signature: Option<(String, Vec<u8>, String)>,
}

/// `GET /saml/sso` (HTTP-Redirect).
pub(crate) async fn sso_get(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let incoming = binding::redirect_read(raw.as_deref().unwrap_or(""), Param::Request).map(|r| {
        let sig = match (r.sig_alg, r.signature) {
            (Some(a), Some(s)) => Some((a, s, r.signed_part)),
            _ => None,
        };
        Incoming {
            xml: r.xml,
            relay_state: r.relay_state,
            query_signature: sig,
        }
    });
    sso(&gw, &meta, &headers, incoming).await
}

/// `POST /saml/sso` (HTTP-POST).
pub(crate) async fn sso_post(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let one = |k: &str| {
        let mut v = fields.iter().filter(|(n, _)| n == k);
        match (v.next(), v.next()) {
            (Some((_, x)), None) => Ok(Some(x.clone())),
            (None, _) => Ok(None),
            _ => Err(interkom_saml::SamlError::Invalid(format!(
                "`{k}` given twice"
            ))),
        }
    };
    let incoming = (|| {
        let msg = one("SAMLRequest")?
            .ok_or_else(|| interkom_saml::SamlError::Invalid("no SAMLRequest".into()))?;
        Ok(Incoming {
            xml: binding::post_decode(&msg)?,
            relay_state: one("RelayState")?,
            query_signature: None,
        })
    })();
    sso(&gw, &meta, &headers, incoming).await
}

/// `GET /saml/start?sp=ID[&RelayState=…]`: a login that starts here, for
/// an SP that has IdP-initiated SSO switched on (its default ACS URL, no
/// request to answer).
pub(crate) async fn idp_initiated(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let sp = match get("sp") {
        Some(id) => match gw.dir.service_provider(&id).await {
            Ok(sp) => sp,
            Err(e) => return web::internal(&gw, lang_of(&meta), e.into()),
        },
        None => None,
    };
    let Some(sp) = sp.filter(|s| s.cfg.idp_initiated) else {
        let why = "no service provider with IdP-initiated login of that id";
        audit_refusal(&gw, &meta, None, why).await;
        return refused(&gw, &meta, StatusCode::BAD_REQUEST, why);
    };
    let acs = sp.cfg.acs_urls[0].clone();
    let relay_state = get("RelayState").filter(|r| r.len() <= 800);
    let req = AuthnRequest {
        id: String::new(),
        issue_instant: gw.clock.now(),
        issuer: sp.cfg.entity_id.clone(),
        destination: None,
        acs_url: None,
        acs_index: None,
        protocol_binding: None,
        force_authn: false,
        is_passive: false,
        name_id_format: None,
        requested: None,
    };
    start(
        &gw,
        &meta,
        &headers,
        Accepted {
            sp,
            req,
            acs,
            relay_state,
        },
    )
    .await
}

/// Why a request is refused: for the page and the audit trail.
pub(crate) fn refused(gw: &Gateway, meta: &Meta, status: StatusCode, why: &str) -> Response {
    let lang = lang_of(meta);
    web::error_page(gw, lang, status, lang.texts().saml_refused, Some(why))
}

pub(crate) async fn audit_refusal(gw: &Gateway, meta: &Meta, sp: Option<&str>, why: &str) {
    let mut ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
        .reason("saml_request_refused")
        .correlation(meta.request_id.clone())
        .source(meta.source.clone())
        .details(serde_json::json!({ "via": "saml", "why": why }));
    if let Some(sp) = sp {
        ev = ev.client(sp);
    }
    if let Err(e) = gw.audit.append(ev).await {
        tracing::warn!(error = %e, "a refused SAML request could not be audited");
    }
}

async fn sso(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    incoming: Result<Incoming, interkom_saml::SamlError>,
) -> Response {
    match checked(gw, incoming).await {
        Ok(Ok(ok)) => start(gw, meta, headers, ok).await,
        Ok(Err((sp, why))) => {
            audit_refusal(gw, meta, sp.as_deref(), &why).await;
            refused(gw, meta, StatusCode::BAD_REQUEST, &why)
        }
        Err(e) => web::internal(gw, lang_of(meta), e),
    }
}

/// A request that passed every check.
struct Accepted {
    sp: ServiceProvider,
    req: AuthnRequest,
    acs: String,
    relay_state: Option<String>,
}

/// The checks of an AuthnRequest; `Ok(Err((sp, why)))`: refused.
async fn checked(
    gw: &Gateway,
    incoming: Result<Incoming, interkom_saml::SamlError>,
) -> Result<Result<Accepted, (Option<String>, String)>, GatewayError> {
    let refuse = |sp: Option<&ServiceProvider>, why: String| {
        Ok(Err((sp.map(ServiceProvider::login_client_id), why)))
    };
    let inc = match incoming {
        Ok(i) => i,
        Err(e) => return refuse(None, e.to_string()),
    };
    if inc.relay_state.as_ref().is_some_and(|r| r.len() > 80 * 10) {
        return refuse(None, "RelayState too long".into());
    }
    let (req, _) = match AuthnRequest::read(&inc.xml, None) {
        Ok(r) => r,
        Err(e) => return refuse(None, e.to_string()),
    };
    let Some(sp) = gw.dir.service_provider_by_entity(&req.issuer).await? else {
        return refuse(
            None,
            format!("`{}` is no registered service provider", req.issuer),
        );
    };
    let certs = sp.signing_certs();
    // A signature that is there must be right; where the SP is registered
    // so, one must be there.
    let signed = match &inc.query_signature {
        Some((alg, sig, part)) => match dsig::verify_redirect(part, alg, sig, &certs) {
            Ok(()) => true,
            Err(e) => return refuse(Some(&sp), e.to_string()),
        },
        None if certs.is_empty() => false,
        None => {
            let trusted = match Trusted::new(&certs) {
                Ok(t) => t,
                Err(e) => return refuse(Some(&sp), e.to_string()),
            };
            match AuthnRequest::read(&inc.xml, Some(&trusted)) {
                Ok((_, s)) => s,
                Err(e) => return refuse(Some(&sp), e.to_string()),
            }
        }
    };
    if !signed && (sp.cfg.require_signed_requests || inc.xml.contains("Signature>")) {
        return refuse(
            Some(&sp),
            "the request is not signed by the service provider".into(),
        );
    }
    let now = gw.clock.now();
    if (req.issue_instant - now).abs() > FRESH {
        return refuse(Some(&sp), "the request is not fresh (IssueInstant)".into());
    }
    if req.destination.as_ref().is_some_and(|d| *d != sso_url(gw)) {
        return refuse(
            Some(&sp),
            "the request is meant for another destination".into(),
        );
    }
    if req
        .protocol_binding
        .as_ref()
        .is_some_and(|b| b != BINDING_POST)
    {
        return refuse(Some(&sp), "only the HTTP-POST binding answers".into());
    }
    let acs = match (&req.acs_url, req.acs_index) {
        (Some(u), _) if sp.cfg.acs_urls.contains(u) => u.clone(),
        (Some(u), _) => return refuse(Some(&sp), format!("`{u}` is no registered ACS URL")),
        (None, Some(i)) => match sp.cfg.acs_urls.get(i as usize) {
            Some(u) => u.clone(),
            None => return refuse(Some(&sp), "no ACS with that index".into()),
        },
        (None, None) => sp.cfg.acs_urls[0].clone(),
    };
    if !gw
        .store
        .first_saml_request(&sp.cfg.id, &req.id, now + 2 * FRESH)
        .await?
    {
        return refuse(Some(&sp), "the request was sent before (replay)".into());
    }
    Ok(Ok(Accepted {
        sp,
        req,
        acs,
        relay_state: inc.relay_state,
    }))
}

/// A level SAML names: interkom's own URIs, or eIDAS's.
fn loa_of(class_ref: &str) -> Option<Loa> {
    Loa::from_acr(class_ref).or(match class_ref {
        "http://eidas.europa.eu/LoA/low" => Some(Loa::Low),
        "http://eidas.europa.eu/LoA/substantial" => Some(Loa::Substantial),
        "http://eidas.europa.eu/LoA/high" => Some(Loa::High),
        _ => None,
    })
}

fn eidas_of(loa: Loa) -> &'static str {
    match loa {
        Loa::Low => "http://eidas.europa.eu/LoA/low",
        Loa::Substantial => "http://eidas.europa.eu/LoA/substantial",
        Loa::High => "http://eidas.europa.eu/LoA/high",
    }
}

/// Hands the checked request to the one login flow.
async fn start(gw: &Gateway, meta: &Meta, headers: &HeaderMap, a: Accepted) -> Response {
    let lang = lang_of(meta);
    let client = match gw.client(&a.sp.login_client_id()).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return refused(
                gw,
                meta,
                StatusCode::BAD_REQUEST,
                "unknown service provider",
            )
        }
        Err(e) => return web::internal(gw, lang, e),
    };
    let requested = a.req.requested.as_ref();
    // The lowest level named (the login reaches at least that).
    let min_acr = requested.and_then(|r| r.class_refs.iter().filter_map(|c| loa_of(c)).min());
    let eidas =
        requested.is_some_and(|r| r.class_refs.iter().any(|c| c.starts_with("http://eidas")));
    let now = gw.clock.now();
    let pending = Pending {
        sp: a.sp.cfg.id.clone(),
        // IdP-initiated: nothing to answer.
        request_id: Some(a.req.id.clone()).filter(|i| !i.is_empty()),
        acs: a.acs,
        relay_state: a.relay_state,
        eidas,
        state: random_token(16),
        verifier: random_token(32),
        exp: now + gw.cfg.login_request_ttl,
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
    let req = AuthRequest {
        client_id: client.id.clone(),
        redirect_uri: return_url(gw),
        scope: vec!["openid".into()],
        state: Some(pending.state.clone()),
        nonce: None,
        code_challenge: Some(challenge),
        prompt_none: a.req.is_passive,
        prompt_login: a.req.force_authn,
        prompt_consent: false,
        max_age: None,
        login_hint: None,
        min_acr,
        ui_locales: None,
        idp_hint: None,
        action: None,
    };
    let Some(sealed) = serde_json::to_string(&pending)
        .ok()
        .and_then(|p| gw.seal(&p, &aad(gw)))
    else {
        return web::internal(
            gw,
            lang,
            GatewayError::Crypto("cannot seal the SAML request"),
        );
    };
    let mut res = authorize::begin(gw, meta, headers, lang, client, req).await;
    res.headers_mut().append(
        header::SET_COOKIE,
        pending_cookie(gw, &sealed, gw.cfg.login_request_ttl),
    );
    res
}

pub(crate) fn pending_cookie(gw: &Gateway, value: &str, max_age: i64) -> HeaderValue {
    let secure = if gw.cfg.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    // SameSite=None would be needed for a POST from the SP's site; the
    // cookie is read on the top-level GET back from the flow, which Lax
    // allows.
    let v = format!(
        "{PENDING_COOKIE}={value}; Path={}/saml/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
        gw.cfg.base_path()
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// `GET /saml/return?code=…&state=…` (or `error=…`).
pub(crate) async fn saml_return(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    match answer(&gw, &meta, &headers, raw.as_deref().unwrap_or("")).await {
        Ok(r) => r,
        Err(e) => web::internal(&gw, lang_of(&meta), e),
    }
}

async fn answer(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    raw: &str,
) -> Result<Response, GatewayError> {
    let now = gw.clock.now();
    let q: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let pending = web::cookie(headers, PENDING_COOKIE)
        .and_then(|c| gw.open(&c, &aad(gw)))
        .and_then(|p| serde_json::from_str::<Pending>(&p).ok())
        .filter(|p| p.exp > now)
        .filter(|p| get("state").is_some_and(|s| ct_eq(s, &p.state)));
    let Some(p) = pending else {
        return Ok(refused(
            gw,
            meta,
            StatusCode::BAD_REQUEST,
            "no SAML login of this browser is under way",
        ));
    };
    let Some(sp) = gw.dir.service_provider(&p.sp).await? else {
        return Ok(refused(
            gw,
            meta,
            StatusCode::BAD_REQUEST,
            "the service provider is gone",
        ));
    };
    let keys = gw.keys.fresh(now).await?;
    let key = keys
        .saml(now)
        .ok_or(GatewayError::Crypto("no SAML signing key"))?;
    let env = |status| Envelope {
        id: interkom_saml::new_id(),
        issuer: entity_id(gw),
        issue_instant: now,
        destination: p.acs.clone(),
        in_response_to: p.request_id.clone(),
        status,
    };
    let protection = Protection {
        sign_assertion: sp.cfg.sign_assertion,
        sign_response: sp.cfg.sign_response,
        encrypt_to: None,
    };
    // The flow ended without a login for the SP: the SP hears why.
    if let Some(error) = get("error") {
        let sub = match error {
            "access_denied" => response::STATUS_REQUEST_DENIED,
            "login_required" | "consent_required" => response::STATUS_NO_PASSIVE,
            "unmet_authentication_requirements" => response::STATUS_NO_AUTHN_CONTEXT,
            _ => response::STATUS_AUTHN_FAILED,
        };
        let status = Status {
            code: response::STATUS_RESPONDER.into(),
            sub_code: Some(sub.into()),
            message: get("error_description").map(str::to_owned),
            detail: None,
        };
        let xml = response::write(
            &env(status),
            None,
            key,
            &Protection {
                sign_response: true,
                ..protection
            },
        )
        .map_err(saml_err)?;
        return Ok(post_page(gw, &p, &xml));
    }
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(p.verifier.as_bytes()));
    let Some(code) = get("code") else {
        return Ok(refused(gw, meta, StatusCode::BAD_REQUEST, "no code"));
    };
    let code_hash = gw.master.keyed_hash(code);
    let stored = gw.store.code(&code_hash).await?.filter(|c| {
        *c.client_id == *sp.login_client_id()
            && c.redirect_uri == return_url(gw)
            && c.code_challenge.as_deref() == Some(challenge.as_str())
            && c.expires_at > now
            && c.used_at.is_none()
    });
    let Some(c) = stored else {
        return Ok(refused(
            gw,
            meta,
            StatusCode::BAD_REQUEST,
            "the login's code is not valid here",
        ));
    };
    let mut tx = gw.store.begin().await?;
    if !gw.store.use_up_code(&mut tx, &code_hash, now).await? {
        return Ok(refused(
            gw,
            meta,
            StatusCode::BAD_REQUEST,
            "the login's code was used",
        ));
    }
    tx.commit().await?;
    let Some(user) = gw.dir.user(&c.user_id).await?.filter(|u| u.is_enabled()) else {
        return Ok(refused(
            gw,
            meta,
            StatusCode::FORBIDDEN,
            "the account is locked",
        ));
    };
    let snap = gw.policy.snapshot();
    let roles = match &sp.cfg.resource {
        Some(r) => snap.roles_for(&user.id, r),
        None => snap.roles_in(&user.id, &user.tenant),
    };
    let tenant_path = gw
        .tenants
        .get(&user.tenant)
        .map(|t| t.path_string())
        .unwrap_or_default();
    let loa = Loa::from_acr(&c.acr).unwrap_or(Loa::Low);
    let class_ref = if p.eidas {
        eidas_of(loa).to_owned()
    } else {
        c.acr.clone()
    };
    let (name_id, format) = match sp.cfg.name_id_format {
        NameIdFormat::Persistent => (
            gw.master
                .keyed_hash(&format!("saml-nameid|{}|{}", sp.cfg.entity_id, user.id)),
            response::NAMEID_PERSISTENT,
        ),
        NameIdFormat::Transient => (interkom_saml::new_id(), response::NAMEID_TRANSIENT),
        NameIdFormat::Email => (
            user.email.clone().unwrap_or_default(),
            response::NAMEID_EMAIL,
        ),
        NameIdFormat::Unspecified => (user.username.clone(), response::NAMEID_UNSPECIFIED),
    };
    let attributes = sp
        .cfg
        .attributes
        .iter()
        .filter_map(|a| {
            let values = match a {
                SamlAttribute::Username => vec![user.username.clone()],
                SamlAttribute::Name => user.name.clone().into_iter().collect(),
                SamlAttribute::Mail => user.email.clone().into_iter().collect(),
                SamlAttribute::Tenant => vec![user.tenant.to_string()],
                SamlAttribute::TenantPath => vec![tenant_path.clone()],
                SamlAttribute::Level => vec![c.acr.clone()],
                SamlAttribute::Roles => roles.clone(),
            };
            let (name, friendly) = a.names();
            (!values.is_empty()).then(|| Attribute {
                name: name.into(),
                friendly_name: Some(friendly.into()),
                values,
            })
        })
        .collect();
    let assertion = Assertion {
        id: interkom_saml::new_id(),
        issuer: entity_id(gw),
        issue_instant: now,
        name_id,
        name_id_format: format.into(),
        sp_name_qualifier: Some(sp.cfg.entity_id.clone()),
        recipient: p.acs.clone(),
        in_response_to: p.request_id.clone(),
        not_before: now - 60,
        not_on_or_after: now + ASSERTION_SECONDS,
        audience: sp.cfg.entity_id.clone(),
        authn_instant: c.auth_time,
        session_index: c.sid.clone(),
        class_ref,
        attributes,
    };
    let encryption = match (&sp.cfg.encryption, &sp.cfg.encryption_cert) {
        (Some(e), Some(cert)) => Some((
            dsig::Certificate::parse(cert).map_err(saml_err)?,
            interkom_saml::enc::Method::parse(&e.content, &e.key_transport)
                .ok_or(GatewayError::Crypto("an SP's encryption method"))?,
        )),
        _ => None,
    };
    let protection = Protection {
        encrypt_to: encryption.as_ref().map(|(c, m)| (c, *m)),
        ..protection
    };
    let xml = response::write(&env(Status::success()), Some(&assertion), key, &protection)
        .map_err(saml_err)?;
    let ev = gw.about(
        AuditEvent::new(Action::TokenIssued, Outcome::Success)
            .client(sp.login_client_id())
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(serde_json::json!({
                "via": "saml",
                "sp": sp.cfg.entity_id,
                "acs": p.acs,
                "sid": c.sid,
                "acr": c.acr,
                "encrypted": protection.encrypt_to.is_some(),
            })),
        &user,
    );
    gw.audit.append(ev).await?;
    // Single logout will tell this SP.
    gw.store
        .saml_participant(&c.sid, &sp.cfg.id, &assertion.name_id, now)
        .await?;
    Ok(post_page(gw, &p, &xml))
}

fn saml_err(e: interkom_saml::SamlError) -> GatewayError {
    tracing::error!(error = %e, "a SAML Response could not be made");
    GatewayError::Crypto("a SAML Response could not be made")
}

/// The page that posts the Response to the ACS URL (at once with the
/// script, else by its button); the pending request is used up.
fn post_page(gw: &Gateway, p: &Pending, xml: &str) -> Response {
    post_to(gw, &p.acs, Param::Response, xml, p.relay_state.as_deref())
}

/// The page that posts a message to `action` (at once with the script);
/// the pending request's cookie is cleared.
pub(crate) fn post_to(
    gw: &Gateway,
    action: &str,
    param: Param,
    xml: &str,
    relay_state: Option<&str>,
) -> Response {
    let mut res = web::saml_post_page(gw, action, param, xml, relay_state);
    res.headers_mut()
        .append(header::SET_COOKIE, pending_cookie(gw, "", 0));
    res
}
