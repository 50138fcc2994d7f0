//! Single logout (`/saml/slo`, HTTP-Redirect and HTTP-POST).
//!
//! A LogoutRequest of an SP (signed, when the SP has signing keys) ends the
//! interkom session it names — and with it the OIDC clients' (back-channel
//! logout) and the protected hosts' sessions. Then each other SP that got
//! an assertion in that session and has an SLO endpoint is sent a signed
//! LogoutRequest in turn (the browser goes there and comes back with the
//! LogoutResponse), and at the end the SP that asked gets its
//! LogoutResponse. A logout at interkom (`/logout`, by the person or an
//! OIDC client) tells the SPs the same way and then goes on where that
//! logout was checked to go. What is still to do travels sealed in a
//! cookie.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_saml::binding::{self, Param};
use interkom_saml::dsig::{self, Trusted};
use interkom_saml::logout::{LogoutRequest, LogoutResponse};
use interkom_saml::response;
use serde::{Deserialize, Serialize};

use super::idp::{audit_refusal, entity_id, lang_of, refused};
use crate::i18n::Lang;
use crate::web::{self, Meta};
use crate::{session, Gateway, GatewayError};

const CHAIN_COOKIE: &str = "interkom_saml_slo";

/// Where a logout started, and so where it ends.
#[derive(Serialize, Deserialize)]
enum Origin {
    /// An SP's LogoutRequest (the SP, the request's id, its RelayState):
    /// answered with a LogoutResponse.
    Sp {
        id: String,
        request: String,
        relay_state: Option<String>,
    },
    /// A logout at interkom: on to `then` (a registered
    /// `post_logout_redirect_uri` or an upstream's logout, as `/logout`
    /// checked them) or the logged-out page in `lang`.
    Logout { then: Option<String>, lang: String },
}

/// A logout under way.
#[derive(Serialize, Deserialize)]
struct Chain {
    origin: Origin,
    /// SPs still to tell: (id, NameID).
    remaining: Vec<(String, String)>,
    sid: String,
    /// The id of the LogoutRequest sent last.
    sent: Option<String>,
    exp: i64,
}

fn aad(gw: &Gateway) -> String {
    format!("saml-slo|{}", gw.cfg.issuer_str())
}

fn chain_cookie(gw: &Gateway, value: &str, max_age: i64) -> HeaderValue {
    let secure = if gw.cfg.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let v = format!(
        "{CHAIN_COOKIE}={value}; Path={}/saml/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
        gw.cfg.base_path()
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// A message to `/saml/slo` as its binding brought it.
struct Incoming {
    request: bool,
    xml: String,
    relay_state: Option<String>,
    query_signature: Option<(String, Vec<u8>, String)>,
}

/// `GET /saml/slo`.
pub(crate) async fn slo_get(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let request = raw.split('&').any(|p| p.starts_with("SAMLRequest="));
    let param = if request {
        Param::Request
    } else {
        Param::Response
    };
    let incoming = binding::redirect_read(&raw, param).map(|r| Incoming {
        request,
        xml: r.xml,
        relay_state: r.relay_state,
        query_signature: match (r.sig_alg, r.signature) {
            (Some(a), Some(s)) => Some((a, s, r.signed_part)),
            _ => None,
        },
    });
    slo(&gw, &meta, &headers, incoming).await
}

/// `POST /saml/slo`.
pub(crate) async fn slo_post(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let incoming = match (get("SAMLRequest"), get("SAMLResponse")) {
        (Some(m), None) => binding::post_decode(&m).map(|xml| (true, xml)),
        (None, Some(m)) => binding::post_decode(&m).map(|xml| (false, xml)),
        _ => Err(interkom_saml::SamlError::Invalid("one SAML message".into())),
    }
    .map(|(request, xml)| Incoming {
        request,
        xml,
        relay_state: get("RelayState"),
        query_signature: None,
    });
    slo(&gw, &meta, &headers, incoming).await
}

async fn slo(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    incoming: Result<Incoming, interkom_saml::SamlError>,
) -> Response {
    let answer = match incoming {
        Ok(i) if i.request => logout_request(gw, meta, i).await,
        Ok(i) => logout_response(gw, meta, headers, i).await,
        Err(e) => Ok(Err(e.to_string())),
    };
    match answer {
        Ok(Ok(res)) => res,
        Ok(Err(why)) => {
            audit_refusal(gw, meta, None, &why).await;
            refused(gw, meta, StatusCode::BAD_REQUEST, &why)
        }
        Err(e) => web::internal(gw, lang_of(meta), e),
    }
}

/// An SP asks to end the session.
async fn logout_request(
    gw: &Gateway,
    meta: &Meta,
    i: Incoming,
) -> Result<Result<Response, String>, GatewayError> {
    let (req, _) = match LogoutRequest::read(&i.xml, None) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let Some(sp) = gw.dir.service_provider_by_entity(&req.issuer).await? else {
        return Ok(Err(format!(
            "`{}` is no registered service provider",
            req.issuer
        )));
    };
    let certs = sp.signing_certs();
    if !certs.is_empty() {
        let signed = match &i.query_signature {
            Some((alg, sig, part)) => dsig::verify_redirect(part, alg, sig, &certs).is_ok(),
            None => match Trusted::new(&certs) {
                Ok(t) => LogoutRequest::read(&i.xml, Some(&t)).is_ok_and(|(_, s)| s),
                Err(_) => false,
            },
        };
        if !signed {
            return Ok(Err(
                "the logout request is not signed by the service provider".into(),
            ));
        }
    }
    // The sessions this SP knows the person in.
    let mut ended = Vec::new();
    for sid in &req.session_indexes {
        let parts = gw.store.saml_participants(sid).await?;
        if parts
            .iter()
            .any(|(s, n)| *s == sp.cfg.id && *n == req.name_id)
        {
            ended.push((sid.clone(), parts));
        }
    }
    let Some((sid, parts)) = ended.into_iter().next() else {
        // Already ended: the SP hears success.
        let now = gw.clock.now();
        let keys = gw.keys.fresh(now).await?;
        let key = keys
            .saml(now)
            .ok_or(GatewayError::Crypto("no SAML signing key"))?;
        return Ok(Ok(finish(
            gw,
            &sp_slo(&sp),
            &req.id,
            i.relay_state.as_deref(),
            Some(key),
        )?));
    };
    let user = gw.store.session_user(&sid).await?;
    session::end_session(gw, &sid).await?;
    gw.store.forget_saml_participants(&sid).await?;
    let mut ev = AuditEvent::new(Action::Logout, Outcome::Success)
        .client(sp.login_client_id())
        .source(meta.source.clone())
        .details(serde_json::json!({ "via": "saml", "sid": sid, "sp": sp.cfg.entity_id }));
    if let Some(u) = &user {
        ev = ev.subject(u.as_str(), None);
    }
    gw.audit.append(ev).await?;
    let others = parts.into_iter().filter(|(o, _)| *o != sp.cfg.id).collect();
    let chain = Chain {
        origin: Origin::Sp {
            id: sp.cfg.id.clone(),
            request: req.id,
            relay_state: i.relay_state,
        },
        remaining: with_slo(gw, others).await?,
        sid,
        sent: None,
        exp: gw.clock.now() + gw.cfg.login_request_ttl,
    };
    Ok(Ok(next(gw, chain).await?))
}

/// The participants whose SP has an SLO endpoint.
async fn with_slo(
    gw: &Gateway,
    parts: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, GatewayError> {
    let mut remaining = Vec::new();
    for (sp, name_id) in parts {
        if let Some(o) = gw.dir.service_provider(&sp).await? {
            if o.cfg.slo_url.is_some() {
                remaining.push((sp, name_id));
            }
        }
    }
    Ok(remaining)
}

/// A logout at interkom of session `sid` (already ended): the SPs that got
/// an assertion in it (`parts`: SP, NameID) are told one after the other,
/// then the browser goes on to `then` — a URL `/logout` checked — or to
/// the logged-out page. `None` when no SP has an SLO endpoint.
pub(crate) async fn tell_service_providers(
    gw: &Gateway,
    sid: &str,
    parts: Vec<(String, String)>,
    then: Option<String>,
    lang: Lang,
) -> Result<Option<Response>, GatewayError> {
    let remaining = with_slo(gw, parts).await?;
    if remaining.is_empty() {
        return Ok(None);
    }
    let chain = Chain {
        origin: Origin::Logout {
            then,
            lang: lang.code().to_owned(),
        },
        remaining,
        sid: sid.to_owned(),
        sent: None,
        exp: gw.clock.now() + gw.cfg.login_request_ttl,
    };
    Ok(Some(next(gw, chain).await?))
}

/// An SP answers the LogoutRequest interkom sent it: on to the next.
async fn logout_response(
    gw: &Gateway,
    meta: &Meta,
    headers: &HeaderMap,
    i: Incoming,
) -> Result<Result<Response, String>, GatewayError> {
    let resp = match LogoutResponse::read(&i.xml) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let now = gw.clock.now();
    let chain = web::cookie(headers, CHAIN_COOKIE)
        .and_then(|c| gw.open(&c, &aad(gw)))
        .and_then(|c| serde_json::from_str::<Chain>(&c).ok())
        .filter(|c| c.exp > now && c.sent.as_deref() == Some(resp.in_response_to.as_str()));
    let Some(chain) = chain else {
        return Ok(Err(
            "no logout of this browser is waiting for that answer".into()
        ));
    };
    if resp.status != response::STATUS_SUCCESS {
        tracing::info!(sp = %resp.issuer, status = %resp.status, "a service provider did not log out");
    }
    let _ = meta;
    Ok(Ok(next(gw, chain).await?))
}

fn sp_slo(sp: &interkom_directory::service_providers::ServiceProvider) -> Option<String> {
    sp.cfg.slo_url.clone()
}

/// Tells the next SP, or answers the one that asked.
async fn next(gw: &Gateway, mut chain: Chain) -> Result<Response, GatewayError> {
    let now = gw.clock.now();
    let keys = gw.keys.fresh(now).await?;
    let key = keys
        .saml(now)
        .ok_or(GatewayError::Crypto("no SAML signing key"))?;
    while let Some((id, name_id)) = chain.remaining.pop() {
        let Some(sp) = gw.dir.service_provider(&id).await? else {
            continue;
        };
        let Some(slo) = sp.cfg.slo_url.clone() else {
            continue;
        };
        let req = LogoutRequest {
            id: interkom_saml::new_id(),
            issue_instant: now,
            issuer: entity_id(gw),
            destination: Some(slo.clone()),
            name_id,
            name_id_format: None,
            sp_name_qualifier: Some(sp.cfg.entity_id.clone()),
            session_indexes: vec![chain.sid.clone()],
        };
        let sign = |m: &[u8]| key.sign_raw(m);
        let url = binding::redirect_url(&slo, Param::Request, &req.to_xml(), None, Some(&sign))
            .map_err(|_| GatewayError::Crypto("a LogoutRequest could not be signed"))?;
        chain.sent = Some(req.id);
        let sealed = serde_json::to_string(&chain)
            .ok()
            .and_then(|c| gw.seal(&c, &aad(gw)))
            .ok_or(GatewayError::Crypto("cannot seal the logout"))?;
        let mut res = web::see_other(&url);
        res.headers_mut().append(
            header::SET_COOKIE,
            chain_cookie(gw, &sealed, gw.cfg.login_request_ttl),
        );
        return Ok(res);
    }
    let mut res = match chain.origin {
        Origin::Sp {
            id,
            request,
            relay_state,
        } => {
            let slo = gw.dir.service_provider(&id).await?.and_then(|o| sp_slo(&o));
            finish(gw, &slo, &request, relay_state.as_deref(), Some(key))?
        }
        Origin::Logout { then: Some(to), .. } => web::see_other(&to),
        Origin::Logout { then: None, lang } => {
            web::logged_out_page(gw, Lang::negotiate(Some(&lang), None))
        }
    };
    res.headers_mut()
        .append(header::SET_COOKIE, chain_cookie(gw, "", 0));
    Ok(res)
}

/// The LogoutResponse to the SP that asked (Redirect, signed), or the
/// logged-out page where it has no SLO endpoint.
fn finish(
    gw: &Gateway,
    slo: &Option<String>,
    in_response_to: &str,
    relay_state: Option<&str>,
    key: Option<&interkom_saml::dsig::SigningKey>,
) -> Result<Response, GatewayError> {
    let Some(slo) = slo else {
        return Ok(web::logged_out_page(gw, crate::i18n::Lang::De));
    };
    let resp = LogoutResponse {
        id: interkom_saml::new_id(),
        issue_instant: gw.clock.now(),
        issuer: entity_id(gw),
        destination: Some(slo.clone()),
        in_response_to: in_response_to.to_owned(),
        status: response::STATUS_SUCCESS.into(),
    };
    let sign = key.map(|k| move |m: &[u8]| k.sign_raw(m));
    let url = binding::redirect_url(
        slo,
        Param::Response,
        &resp.to_xml(),
        relay_state,
        sign.as_ref().map(|s| s as binding::QuerySigner<'_>),
    )
    .map_err(|_| GatewayError::Crypto("a LogoutResponse could not be signed"))?;
    Ok(web::see_other(&url))
}
