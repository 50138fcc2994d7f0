//! interkom as SAML service provider of the identity sources (BundID, Mein
//! Unternehmenskonto): its metadata, the assertion consumer service, and
//! the step that takes the answer up in the browser's login.
//!
//! - `GET /saml/sp/metadata`: entity id `{issuer}/saml/sp` (never
//!   changes), the ACS for HTTP-POST, the signing and encryption
//!   certificates (a next one ahead of a rotation); no `validUntil`, no
//!   `ID`.
//! - `POST /saml/sp/acs`: the Response, checked (`sources::saml`), the
//!   person linked on the source's pseudonym and the answer kept with the
//!   request; then a redirect to `continue`. The ACS is a cross-site POST
//!   that carries no cookie, so the login is taken up there.
//! - `GET /saml/sp/continue?r=`: this browser's login (its binding cookie)
//!   goes on — or, when the level fell short or the IdP refused, the
//!   Leistung's page says why and offers the sources again.
//! - `POST /login/saml`: the person's choice of source on that page.
//! - `/saml/sp/slo` (Redirect, POST): the source's LogoutRequest (signed by
//!   its metadata's keys) ends the sessions its login made and is answered
//!   with a signed LogoutResponse; its LogoutResponse to interkom's own
//!   request (a logout at interkom of a session from a source) ends the
//!   logout where it was going.
//!
//! Every refusal is audited (`login_failed`, with the reason) and answered
//! with a page that posts nothing anywhere; never a 500.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::crypto::ct_eq;
use interkom_saml::binding::{self, Param};
use interkom_saml::dsig;
use interkom_saml::logout::{LogoutRequest, LogoutResponse};
use interkom_saml::metadata::SpOwnMetadata;
use interkom_saml::response::{NAMEID_PERSISTENT, NAMEID_TRANSIENT};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::i18n::{Lang, LangTexts};
use crate::login::state::{self, Authentication, Gone, Posted, BROWSER_COOKIE};
use crate::login::{flow, leistung, pages};
use crate::sources::saml::{self as source, acs_url, sp_entity_id, Consumed, Refused};
use crate::sources::{IdentitySource, SamlIdp};
use crate::web::{self, Meta};
use crate::{Gateway, GatewayError};

/// `GET /saml/sp/metadata`.
pub(crate) async fn sp_metadata(State(gw): State<Gateway>, meta: Meta) -> Response {
    let now = gw.clock.now();
    let keys = match gw.keys.fresh(now).await {
        Ok(k) => k,
        Err(e) => return web::internal(&gw, idp_lang(&meta), e),
    };
    let certs = keys.saml_certs(now);
    let entity = sp_entity_id(&gw);
    let acs = acs_url(&gw);
    let slo = format!("{}/saml/sp/slo", gw.cfg.issuer_str());
    let xml = SpOwnMetadata {
        entity_id: &entity,
        acs_url: &acs,
        slo_url: Some(&slo),
        certs: &certs,
        name_id_formats: &[NAMEID_TRANSIENT, NAMEID_PERSISTENT],
        organization: None,
    }
    .to_xml();
    (
        [
            (header::CONTENT_TYPE, "application/samlmetadata+xml"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        xml,
    )
        .into_response()
}

fn idp_lang(meta: &Meta) -> Lang {
    Lang::negotiate(None, meta.accept_language.as_deref())
}

/// What the ACS established, kept with the request until the browser
/// takes it up.
#[derive(Serialize, Deserialize)]
enum Answer {
    Authenticated(Authentication),
    /// The IdP refused (its status message and detail, shown as given).
    Refused {
        message: String,
        detail: Option<String>,
    },
}

#[derive(Deserialize)]
struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
}

/// `POST /saml/sp/acs`.
pub(crate) async fn acs(State(gw): State<Gateway>, meta: Meta, body: Bytes) -> Response {
    let lang = Lang::De;
    let Some(posted) = serde_urlencoded::from_bytes::<AcsForm>(&body)
        .ok()
        .and_then(|f| f.saml_response)
    else {
        return refused_page(&gw, &meta, None, None, "the form carries no SAMLResponse").await;
    };
    match source::consume(&gw, &posted).await {
        Ok(c) => match accept(&gw, &meta, c).await {
            Ok(r) => r,
            Err(e) => web::internal(&gw, lang, e),
        },
        Err(Refused::Internal(e)) => web::internal(&gw, lang, e),
        Err(Refused::Unsolicited(why)) => refused_page(&gw, &meta, None, None, &why).await,
        Err(Refused::Invalid { sent, why, .. }) => {
            let client = client_of(&gw, &sent.login_request).await;
            refused_page(&gw, &meta, Some(&sent.source), client.as_deref(), &why).await
        }
        Err(Refused::Status {
            request_id,
            sent,
            status,
        }) => {
            let client = client_of(&gw, &sent.login_request).await;
            let code = status.sub_code.as_deref().unwrap_or(&status.code);
            let short = code.rsplit(':').next().unwrap_or(code);
            let why = format!("the IdP refused: {short}");
            if let Err(e) =
                audit_refusal(&gw, &meta, Some(&sent.source), client.as_deref(), &why).await
            {
                return web::internal(&gw, lang, e);
            }
            let mut message = match status.message {
                Some(m) => format!("Der Anmeldedienst hat die Anmeldung abgelehnt ({short}): {m}"),
                None => format!("Der Anmeldedienst hat die Anmeldung abgelehnt ({short})."),
            };
            if let Some(missing) = missing_data(&gw, &sent.source, status.detail.as_deref()).await {
                message.push_str(&format!(
                    " Ihrem Konto fehlen Angaben, die diese Leistung benötigt: {missing}."
                ));
            }
            keep(
                &gw,
                &request_id,
                &Answer::Refused {
                    message,
                    detail: status.detail,
                },
            )
            .await
        }
    }
}

/// The data a BundID refusal says the account lacks
/// (`IDP_REQUIRED_ATTRIBUTES_MISSING`), named as on the Leistung's page.
async fn missing_data(gw: &Gateway, source: &str, detail: Option<&str>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(detail?).ok()?;
    if v["errorCode"] != "IDP_REQUIRED_ATTRIBUTES_MISSING" {
        return None;
    }
    let src = gw.dir.saml_source(source).await.ok()??;
    let names: Vec<String> = v["missingAttributes"]
        .as_array()?
        .iter()
        .filter_map(|n| n.as_str())
        .map(|n| {
            src.cfg
                .attributes
                .iter()
                .find(|(_, a)| a.as_str() == n)
                .map_or(n.to_owned(), |(claim, _)| {
                    pages::claim_label(claim).to_owned()
                })
        })
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// The client of a login request (for the audit trail), if it is open.
async fn client_of(gw: &Gateway, lr: &str) -> Option<String> {
    state::login_request(gw, lr, gw.clock.now())
        .await
        .ok()
        .flatten()
        .map(|(req, _)| req.client_id.to_string())
}

/// Links the person, keeps what the Leistung needs and the authentication.
async fn accept(gw: &Gateway, meta: &Meta, c: Consumed) -> Result<Response, GatewayError> {
    let now = gw.clock.now();
    let src = &c.source.cfg;
    let Some((req, pending)) = state::login_request(gw, &c.sent.login_request, now).await? else {
        return Ok(refused_page(gw, meta, Some(&src.id), None, "the login has expired").await);
    };
    let snap = gw.policy.snapshot();
    let l = snap.leistung_for_client(&req.client_id);
    let client = req.client_id.to_string();
    if !l.is_some_and(|l| {
        l.populations.contains(&src.population) && l.accepts(&src.id, &src.tenant, &gw.tenants)
    }) {
        let why = "the service does not accept this identity source";
        return Ok(refused_page(gw, meta, Some(&src.id), Some(&client), why).await);
    }
    let data = source::claims_of(&c.source, &c.assertion, l.map(|l| &**l));
    // A step-up is of someone known: an account it makes is refused below
    // and keeps no data.
    let first = match pending {
        Some(_) => interkom_directory::people::PersonData::new(),
        None => data.clone(),
    };
    let linked = match gw
        .dir
        .link_person(src.population, &src.id, &src.tenant, &c.pseudonym, &first)
        .await
    {
        Ok(l) => l,
        Err(interkom_directory::DirectoryError::Invalid(why)) => {
            return Ok(refused_page(gw, meta, Some(&src.id), Some(&client), &why).await)
        }
        Err(e) => return Err(e.into()),
    };
    let (user, kept) = (linked.user, linked.kept);
    // A step-up must come back as the same person.
    if pending.as_ref().is_some_and(|p| p.user_id != user.id) {
        let why = "the step-up came back as another person";
        return Ok(refused_page(gw, meta, Some(&src.id), Some(&client), why).await);
    }
    if !user.is_enabled() {
        return Ok(refused_page(
            gw,
            meta,
            Some(&src.id),
            Some(&client),
            "the account is locked",
        )
        .await);
    }
    if !linked.created {
        gw.dir.person_logged_in(&user.id, kept, &data).await?;
    }
    if linked.created {
        let ev = AuditEvent::new(Action::AccountProvisioned, Outcome::Success)
            .client(&client)
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(json!({ "source": src.id, "population": src.population }));
        gw.audit.append(gw.about(ev, &user)).await?;
    }
    let asked = c
        .sent
        .asked
        .as_deref()
        .and_then(interkom_types::Loa::from_acr);
    let idp = SamlIdp(c.source.clone());
    // How the source names this login: its logout finds the session.
    let (named, subject) = source::named_login(gw, &src.id, &user.id, &c.assertion);
    let auth = Authentication {
        user_id: user.id.clone(),
        loa: c.loa,
        amr: vec!["fed".to_owned()],
        auth_time: c.assertion.authn_instant.min(now),
        upstream: Some(idp.upstream()),
        method: idp.method(asked),
        upstream_token: named,
        upstream_subject: Some(subject),
    };
    metrics::counter!("interkom_saml_source_logins_total", "source" => src.id.clone(), "result" => "success")
        .increment(1);
    Ok(keep(gw, &c.request_id, &Answer::Authenticated(auth)).await)
}

/// Keeps the answer with its request and sends the browser on to take it
/// up; a Response posted twice finds the request answered.
async fn keep(gw: &Gateway, request_id: &str, answer: &Answer) -> Response {
    let lang = Lang::De;
    let stored = match serde_json::to_string(answer) {
        Ok(s) => s,
        Err(e) => return web::internal(gw, lang, e.into()),
    };
    match gw.store.answer_sp_request(request_id, &stored).await {
        Ok(true) => {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("r", request_id)
                .finish();
            web::see_other(&format!("{}/saml/sp/continue?{q}", gw.cfg.issuer_str()))
        }
        Ok(false) => web::error_page(
            gw,
            lang,
            StatusCode::BAD_REQUEST,
            lang.texts().expired,
            None,
        ),
        Err(e) => web::internal(gw, lang, e.into()),
    }
}

async fn audit_refusal(
    gw: &Gateway,
    meta: &Meta,
    source: Option<&str>,
    client: Option<&str>,
    why: &str,
) -> Result<(), GatewayError> {
    let mut ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
        .reason("saml_response_refused")
        .correlation(meta.request_id.clone())
        .source(meta.source.clone())
        .details(json!({ "saml_source": source, "detail": why }));
    if let Some(c) = client {
        ev = ev.client(c);
        if let Some(l) = gw.policy.snapshot().leistung_for_client(c) {
            if let Some(t) = gw.tenants.get(&l.tenant) {
                ev = ev.tenant(&t.id, t.path_string());
            }
        }
    }
    gw.audit.append(ev).await?;
    Ok(())
}

/// A refused Response: audited, and a page that posts nothing anywhere.
async fn refused_page(
    gw: &Gateway,
    meta: &Meta,
    source: Option<&str>,
    client: Option<&str>,
    why: &str,
) -> Response {
    let lang = Lang::De;
    metrics::counter!("interkom_saml_source_logins_total", "source" => source.unwrap_or("unknown").to_owned(), "result" => "refused")
        .increment(1);
    if let Err(e) = audit_refusal(gw, meta, source, client, why).await {
        return web::internal(gw, lang, e);
    }
    tracing::info!(source, reason = why, "SAML Response refused");
    web::error_page(
        gw,
        lang,
        StatusCode::BAD_REQUEST,
        "Die Antwort des Anmeldedienstes wurde abgelehnt. Bitte beginnen Sie die Anmeldung bei der Leistung neu.",
        Some(why),
    )
}

#[derive(Deserialize)]
struct ContinueQuery {
    r: Option<String>,
}

/// `GET /saml/sp/continue?r=`.
pub(crate) async fn sp_continue(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = Lang::De;
    let expired = |gw: &Gateway| {
        web::error_page(
            gw,
            lang,
            StatusCode::BAD_REQUEST,
            lang.texts().expired,
            None,
        )
    };
    let Some(r) = serde_urlencoded::from_str::<ContinueQuery>(query.as_deref().unwrap_or(""))
        .ok()
        .and_then(|q| q.r)
        .filter(|r| r.len() <= 256)
    else {
        return expired(&gw);
    };
    let (sent, stored) = match gw.store.take_sp_result(&r).await {
        Ok(Some(found)) => found,
        Ok(None) => return expired(&gw),
        Err(e) => return web::internal(&gw, lang, e.into()),
    };
    let now = gw.clock.now();
    let browser = web::cookie(&headers, BROWSER_COOKIE).unwrap_or_default();
    if sent.expires_at <= now
        || browser.is_empty()
        || !ct_eq(&gw.master.keyed_hash(&browser), &sent.browser_hash)
    {
        return expired(&gw);
    }
    let (at, pending) = match state::resume(&gw, &meta, sent.login_request, browser, now).await {
        Ok(Ok(found)) => found,
        Ok(Err(Gone::Expired | Gone::UnknownClient)) => return expired(&gw),
        Err(e) => return web::internal(&gw, lang, e),
    };
    let Ok(answer) = serde_json::from_str::<Answer>(&stored) else {
        return expired(&gw);
    };
    let snap = gw.policy.snapshot();
    let Some(l) = snap.leistung_for_client(&at.req.client_id).cloned() else {
        return expired(&gw);
    };
    let page = |message: String, detail: Option<String>| {
        let (gw, at, l) = (gw.clone(), &at, l.clone());
        async move {
            leistung::page(
                &gw,
                at,
                &l,
                StatusCode::OK,
                Some(&message),
                detail.as_deref(),
            )
            .await
            .unwrap_or_else(|e| web::internal(&gw, lang, e))
        }
    };
    match answer {
        Answer::Refused { message, detail } => page(message, detail).await,
        Answer::Authenticated(auth) => {
            let need = leistung::need(&l, at.req.min_acr);
            if auth.loa < need {
                let ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
                    .reason("level_too_low")
                    .client(&at.client.id)
                    .correlation(meta.request_id.clone())
                    .source(meta.source.clone())
                    .details(json!({
                        "saml_source": sent.source,
                        "required": need.acr(),
                        "achieved": auth.loa.acr(),
                    }));
                let ev = match gw.dir.user(&auth.user_id).await {
                    Ok(Some(u)) => gw.about(ev, &u),
                    Ok(None) => ev,
                    Err(e) => return web::internal(&gw, lang, e.into()),
                };
                if let Err(e) = gw.audit.append(ev).await {
                    return web::internal(&gw, lang, e.into());
                }
                let message = format!(
                    "Ihre Anmeldung erreichte das Vertrauensniveau „{}“. Diese Leistung verlangt „{}“. Bitte melden Sie sich mit einem stärkeren Mittel an (zum Beispiel dem Online-Ausweis).",
                    pages::niveau(auth.loa),
                    pages::niveau(need)
                );
                return page(message, None).await;
            }
            // The person chose a source on the page that named the data
            // the Leistung receives and why: the consent to that transfer.
            if let Err(e) = consented(&gw, &meta, &at.client.id, &l, &auth, &sent.source).await {
                return web::internal(&gw, lang, e);
            }
            let p = state::Login::authenticated(auth, pending.as_ref());
            flow::advance(&gw, &meta, &at, p)
                .await
                .unwrap_or_else(|e| web::internal(&gw, lang, e))
        }
    }
}

/// Audits the consent to the Leistung's data transfer (pseudonymised):
/// which data, on which legal basis, through which source, at which level.
async fn consented(
    gw: &Gateway,
    meta: &Meta,
    client: &str,
    l: &interkom_policy::LeistungSpec,
    auth: &Authentication,
    source: &str,
) -> Result<(), GatewayError> {
    let Some(user) = gw.dir.user(&auth.user_id).await? else {
        return Ok(());
    };
    let ev = AuditEvent::new(Action::ConsentGiven, Outcome::Success)
        .client(client)
        .correlation(meta.request_id.clone())
        .source(meta.source.clone())
        .details(json!({
            "leistung": l.id,
            "claims": l.claims,
            "legal_basis": l.legal_basis,
            "saml_source": source,
            "required": l.loa.acr(),
            "achieved": auth.loa.acr(),
        }));
    gw.audit.append(gw.about(ev, &user)).await?;
    Ok(())
}

#[derive(Deserialize)]
struct SourceForm {
    source: String,
    #[serde(default)]
    retry: Option<String>,
}

/// `POST /login/saml`: the source chosen on a Leistung's page.
pub(crate) async fn choose_source(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Posted { form, at, pending } =
        match state::posted::<SourceForm>(&gw, &meta, &headers, &body).await {
            Ok(p) => p,
            Err(r) => return r,
        };
    let lang = at.lang;
    let snap = gw.policy.snapshot();
    let Some(l) = snap.leistung_for_client(&at.req.client_id) else {
        return state::out_of_step(&gw, lang);
    };
    let need = leistung::need(l, at.req.min_acr);
    let offered = match leistung::offered(&gw, l, need).await {
        Ok(o) => o,
        Err(e) => return web::internal(&gw, lang, e),
    };
    let Some(src) = offered.into_iter().find(|s| s.cfg.id == form.source) else {
        return web::error_page(
            &gw,
            lang,
            StatusCode::BAD_REQUEST,
            lang.texts().bad_request,
            None,
        );
    };
    // Trying again, or stepping up, asks the person afresh (ForceAuthn).
    let fresh = form.retry.is_some() || pending.is_some();
    flow::go_to(&gw, &meta, &at, &SamlIdp(src), Some(need), fresh)
        .await
        .unwrap_or_else(|e| web::internal(&gw, lang, e))
}

/// `GET /saml/sp/slo`: a source's LogoutRequest or LogoutResponse over
/// HTTP-Redirect (its query signature checked against its metadata).
pub(crate) async fn slo_get(
    State(gw): State<Gateway>,
    meta: Meta,
    RawQuery(query): RawQuery,
) -> Response {
    let raw = query.unwrap_or_default();
    let param = if raw.contains("SAMLRequest=") {
        Param::Request
    } else {
        Param::Response
    };
    let msg = match binding::redirect_read(&raw, param) {
        Ok(m) => m,
        Err(e) => return slo_refused(&gw, &meta, None, &e.to_string()).await,
    };
    let signature = match (&msg.sig_alg, &msg.signature) {
        (Some(alg), Some(sig)) => Some((msg.signed_part.clone(), alg.clone(), sig.clone())),
        _ => None,
    };
    slo(
        &gw,
        &meta,
        param,
        &msg.xml,
        msg.relay_state.as_deref(),
        signature,
    )
    .await
}

#[derive(Deserialize)]
struct SloForm {
    #[serde(rename = "SAMLRequest")]
    request: Option<String>,
    #[serde(rename = "SAMLResponse")]
    response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// `POST /saml/sp/slo`: the same over HTTP-POST (the XML signature).
pub(crate) async fn slo_post(State(gw): State<Gateway>, meta: Meta, body: Bytes) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<SloForm>(&body) else {
        return slo_refused(&gw, &meta, None, "a malformed form").await;
    };
    let (param, value) = match (form.request, form.response) {
        (Some(r), None) => (Param::Request, r),
        (None, Some(r)) => (Param::Response, r),
        _ => return slo_refused(&gw, &meta, None, "neither a request nor a response").await,
    };
    match binding::post_decode(&value) {
        Ok(xml) => slo(&gw, &meta, param, &xml, form.relay_state.as_deref(), None).await,
        Err(e) => slo_refused(&gw, &meta, None, &e.to_string()).await,
    }
}

/// A query signature: the signed octets, `SigAlg`, the signature.
type QuerySignature = (String, String, Vec<u8>);

/// Whether a source's message is signed by a key of its metadata: the
/// query signature (Redirect) or an XML signature on the root (POST).
fn signed_by(
    src: &interkom_directory::saml_sources::SamlSource,
    xml: &str,
    query: Option<&QuerySignature>,
) -> bool {
    match query {
        Some((part, alg, sig)) => dsig::verify_redirect(part, alg, sig, &src.idp.signing).is_ok(),
        None => dsig::Trusted::new(&src.idp.signing).is_ok_and(|t| {
            interkom_saml::xml::parse(xml).is_ok_and(|doc| {
                doc.document_element()
                    .is_some_and(|root| t.covers(&doc, xml, root).unwrap_or(false))
            })
        }),
    }
}

async fn slo(
    gw: &Gateway,
    meta: &Meta,
    param: Param,
    xml: &str,
    relay: Option<&str>,
    query: Option<QuerySignature>,
) -> Response {
    let lang = Lang::De;
    match param {
        // Back from the source's logout that interkom asked for.
        Param::Response => {
            let Ok(res) = LogoutResponse::read(xml) else {
                return slo_refused(gw, meta, None, "a malformed LogoutResponse").await;
            };
            let src = source_by_entity(gw, &res.issuer).await;
            // Signed, if anything: a forged answer could only choose
            // between our own pages, but a wrong signature is refused.
            if let Some(src) = &src {
                let has_signature = query.is_some() || xml.contains("Signature");
                if has_signature && !signed_by(src, xml, query.as_ref()) {
                    return slo_refused(
                        gw,
                        meta,
                        Some(&src.cfg.id),
                        "the LogoutResponse's signature",
                    )
                    .await;
                }
            }
            match source::logged_out_to(gw, relay) {
                Some(to) => web::see_other(&to),
                None => web::logged_out_page(gw, lang),
            }
        }
        // The source ends its session: interkom ends the sessions it made
        // from that login, and answers.
        Param::Request => {
            let (req, _) = match LogoutRequest::read(xml, None) {
                Ok(r) => r,
                Err(e) => return slo_refused(gw, meta, None, &e.to_string()).await,
            };
            let Some(src) = source_by_entity(gw, &req.issuer).await else {
                return slo_refused(gw, meta, None, "a LogoutRequest of no registered source")
                    .await;
            };
            if !signed_by(&src, xml, query.as_ref()) {
                return slo_refused(
                    gw,
                    meta,
                    Some(&src.cfg.id),
                    "the LogoutRequest is not signed by the source",
                )
                .await;
            }
            match end_sessions(gw, meta, &src, &req).await {
                Ok(()) => {}
                Err(e) => return web::internal(gw, lang, e),
            }
            logout_response(gw, &src, &req, relay).await
        }
    }
}

async fn source_by_entity(
    gw: &Gateway,
    entity: &str,
) -> Option<std::sync::Arc<interkom_directory::saml_sources::SamlSource>> {
    gw.dir
        .saml_sources()
        .await
        .ok()?
        .iter()
        .find(|s| s.idp.entity_id == entity)
        .cloned()
}

/// Ends every session the source's login (NameID, SessionIndex) made,
/// each with the back-channel logout of the Leistungen, and audits it.
async fn end_sessions(
    gw: &Gateway,
    meta: &Meta,
    src: &interkom_directory::saml_sources::SamlSource,
    req: &LogoutRequest,
) -> Result<(), GatewayError> {
    let subject = source::subject_key(gw, &src.cfg.id, &req.name_id);
    for (sid, user_id, _) in gw.store.sessions_by_upstream_subject(&subject).await? {
        crate::session::end_session(gw, &sid).await?;
        let ev = AuditEvent::new(Action::Logout, Outcome::Success)
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(json!({ "sid": sid, "via": "saml_source", "saml_source": src.cfg.id }));
        let ev = match gw.dir.user(&user_id).await? {
            Some(u) => gw.about(ev, &u),
            None => ev,
        };
        gw.audit.append(ev).await?;
    }
    Ok(())
}

/// The signed LogoutResponse (Success) to the source, over HTTP-Redirect.
async fn logout_response(
    gw: &Gateway,
    src: &interkom_directory::saml_sources::SamlSource,
    req: &LogoutRequest,
    relay: Option<&str>,
) -> Response {
    let lang = Lang::De;
    let Some(endpoint) = source::slo_endpoint(src) else {
        return web::logged_out_page(gw, lang);
    };
    let now = gw.clock.now();
    let keys = match gw.keys.fresh(now).await {
        Ok(k) => k,
        Err(e) => return web::internal(gw, lang, e),
    };
    let Some(key) = keys.saml(now) else {
        return web::internal(gw, lang, GatewayError::Crypto("no SAML signing key"));
    };
    let res = LogoutResponse {
        id: interkom_saml::new_id(),
        issue_instant: now,
        issuer: sp_entity_id(gw),
        destination: Some(endpoint.to_owned()),
        in_response_to: req.id.clone(),
        status: interkom_saml::response::STATUS_SUCCESS.into(),
    };
    let signer = |m: &[u8]| key.sign_raw(m);
    match binding::redirect_url(
        endpoint,
        Param::Response,
        &res.to_xml(),
        relay,
        Some(&signer),
    ) {
        Ok(url) => web::see_other(&url),
        Err(e) => {
            tracing::error!(error = %e, "a LogoutResponse could not be made");
            web::internal(
                gw,
                lang,
                GatewayError::Crypto("a LogoutResponse could not be made"),
            )
        }
    }
}

async fn slo_refused(gw: &Gateway, meta: &Meta, source: Option<&str>, why: &str) -> Response {
    let lang = Lang::De;
    let ev = AuditEvent::new(Action::Logout, Outcome::Failure)
        .reason("saml_logout_refused")
        .correlation(meta.request_id.clone())
        .source(meta.source.clone())
        .details(json!({ "saml_source": source, "detail": why }));
    if let Err(e) = gw.audit.append(ev).await {
        return web::internal(gw, lang, e.into());
    }
    web::error_page(
        gw,
        lang,
        StatusCode::BAD_REQUEST,
        "Die Abmeldung des Anmeldedienstes wurde abgelehnt.",
        Some(why),
    )
}
