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
//!
//! Every refusal is audited (`login_failed`, with the reason) and answered
//! with a page that posts nothing anywhere; never a 500.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::crypto::ct_eq;
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
    let xml = SpOwnMetadata {
        entity_id: &entity,
        acs_url: &acs,
        slo_url: None,
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
            let message = match status.message {
                Some(m) => format!("Der Anmeldedienst hat die Anmeldung abgelehnt ({short}): {m}"),
                None => format!("Der Anmeldedienst hat die Anmeldung abgelehnt ({short})."),
            };
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
    if !l.is_some_and(|l| l.populations.contains(&src.population) && l.accepts(&src.id)) {
        let why = "the service does not accept this identity source";
        return Ok(refused_page(gw, meta, Some(&src.id), Some(&client), why).await);
    }
    let linked = match gw
        .dir
        .link_person(src.population, &src.id, &src.tenant, &c.pseudonym)
        .await
    {
        Ok(l) => l,
        Err(interkom_directory::DirectoryError::Invalid(why)) => {
            return Ok(refused_page(gw, meta, Some(&src.id), Some(&client), &why).await)
        }
        Err(e) => return Err(e.into()),
    };
    let user = linked.user;
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
    let data = source::claims_of(&c.source, &c.assertion, l.map(|l| &**l));
    gw.dir.person_logged_in(&user.id, &data).await?;
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
    let auth = Authentication {
        user_id: user.id.clone(),
        loa: c.loa,
        amr: vec!["fed".to_owned()],
        auth_time: c.assertion.authn_instant.min(now),
        upstream: Some(idp.upstream()),
        method: idp.method(asked),
        upstream_token: None,
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
            let p = state::Login::authenticated(auth, pending.as_ref());
            flow::advance(&gw, &meta, &at, p)
                .await
                .unwrap_or_else(|e| web::internal(&gw, lang, e))
        }
    }
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
