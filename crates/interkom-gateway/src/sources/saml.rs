//! A SAML 2.0 identity provider as identity source: interkom as service
//! provider of the federal accounts (BundID for citizens, Mein
//! Unternehmenskonto for businesses, eIDAS).
//!
//! - [`SamlIdp::begin`]: a signed AuthnRequest (enveloped signature over
//!   POST, or the query signed over Redirect) asking for the level in the
//!   source's own names (`minimum`), with the configured `<Extensions>`
//!   (BundID's AKDB extension: requested attributes, OnlineServiceId, the
//!   organisation); the request is kept, single use, for its Response.
//! - [`consume`]: a Response, checked: it answers a request of ours not
//!   answered yet; the signature (on the assertion, or on the Response
//!   that holds it) by the IdP's metadata keys only; the one assertion
//!   under the Response, decrypted with our key; issuer, Destination,
//!   InResponseTo, Audience, Recipient, the times with a small skew; the
//!   assertion id unseen on every node; the level from the assertion (the
//!   lower of AuthnContextClassRef and the level attribute), never from the
//!   request; the pseudonym present. The NameID is never used to link.

use std::sync::Arc;

use axum::response::Response;
use futures_util::future::BoxFuture;
use interkom_directory::saml_sources::{RequestBinding, SamlSource};
use interkom_policy::LeistungSpec;
use interkom_saml::authn::{AuthnRequest, RequestedContext, BINDING_POST, BINDING_REDIRECT};
use interkom_saml::binding::{self, Param};
use interkom_saml::dsig::{self, Trusted};
use interkom_saml::response::{self, Assertion, Status};
use interkom_saml::SamlError;
use interkom_types::Loa;

use super::{IdentitySource, SourceAsk};
use crate::login::state::upstream_key;
use crate::store::SentRequest;
use crate::web;
use crate::{Gateway, GatewayError};

/// How a login records a SAML source as its upstream.
pub(crate) const UPSTREAM_PREFIX: &str = "saml:";

/// interkom's entity id as service provider: derived from the issuer and
/// never changed (BundID derives its pseudonym from it).
pub(crate) fn sp_entity_id(gw: &Gateway) -> String {
    format!("{}/saml/sp", gw.cfg.issuer_str())
}

pub(crate) fn acs_url(gw: &Gateway) -> String {
    format!("{}/saml/sp/acs", gw.cfg.issuer_str())
}

/// A registered SAML identity provider.
pub(crate) struct SamlIdp(pub(crate) Arc<SamlSource>);

impl SamlIdp {
    /// The login's `upstream` for this source.
    pub(crate) fn upstream(&self) -> String {
        format!("{UPSTREAM_PREFIX}{}", self.0.cfg.id)
    }
}

impl IdentitySource for SamlIdp {
    fn method(&self, asked: Option<Loa>) -> String {
        upstream_key(&self.upstream(), asked)
    }

    fn max_loa(&self) -> Option<Loa> {
        self.0.cfg.max_loa()
    }

    fn begin<'a>(
        &'a self,
        gw: &'a Gateway,
        ask: &'a SourceAsk<'a>,
    ) -> BoxFuture<'a, Result<Response, GatewayError>> {
        Box::pin(send(gw, ask, self))
    }
}

fn saml_err(e: SamlError) -> GatewayError {
    tracing::error!(error = %e, "an AuthnRequest could not be made");
    GatewayError::Crypto("an AuthnRequest could not be made")
}

/// The request's `<Extensions>` content: the source's template with the
/// requested attributes, the Leistung and the organisation filled in.
pub(crate) fn extensions(
    src: &SamlSource,
    leistung: Option<&LeistungSpec>,
    organisation: &str,
    lang: &str,
) -> Option<String> {
    use interkom_saml::xml::escape;
    let template = src.cfg.extensions.as_deref()?;
    let mut requested = String::new();
    if let Some(one) = &src.cfg.requested_attribute {
        let mut names: Vec<(&str, bool)> = vec![(src.cfg.pseudonym_attribute.as_str(), true)];
        if let Some(l) = &src.cfg.level_attribute {
            names.push((l.as_str(), false));
        }
        for claim in leistung.iter().flat_map(|l| l.claims.iter()) {
            if let Some(a) = src.cfg.attributes.get(claim) {
                names.push((a.as_str(), true));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, required) in names {
            if seen.insert(name) {
                requested.push_str(
                    &one.replace("{name}", &escape(name))
                        .replace("{required}", if required { "true" } else { "false" }),
                );
            }
        }
    }
    Some(
        template
            .replace("{requested_attributes}", &requested)
            .replace(
                "{online_service_id}",
                &escape(leistung.map_or("", |l| l.id.as_str())),
            )
            .replace("{organisation}", &escape(organisation))
            .replace("{lang}", lang),
    )
}

/// Sends the browser to the IdP with a signed AuthnRequest.
async fn send(gw: &Gateway, ask: &SourceAsk<'_>, idp: &SamlIdp) -> Result<Response, GatewayError> {
    let src = &idp.0;
    let now = gw.clock.now();
    let keys = gw.keys.fresh(now).await?;
    let key = keys
        .saml(now)
        .ok_or(GatewayError::Crypto("no SAML signing key"))?;
    let snap = gw.policy.snapshot();
    let leistung = snap.leistung_for_client(&ask.at.req.client_id);
    let asked = ask.asked.or(leistung.map(|l| l.loa));
    let binding_uri = match src.cfg.binding {
        RequestBinding::Post => BINDING_POST,
        RequestBinding::Redirect => BINDING_REDIRECT,
    };
    let endpoint = src
        .idp
        .sso
        .iter()
        .find(|e| e.binding == binding_uri)
        .ok_or(GatewayError::Crypto(
            "the IdP's metadata has no SSO endpoint for the configured binding",
        ))?
        .location
        .clone();
    let id = interkom_saml::new_id();
    let req = AuthnRequest {
        id: id.clone(),
        issue_instant: now,
        issuer: sp_entity_id(gw),
        destination: Some(endpoint.clone()),
        acs_url: Some(acs_url(gw)),
        acs_index: None,
        protocol_binding: Some(BINDING_POST.into()),
        force_authn: src.cfg.force_authn || ask.fresh,
        is_passive: false,
        name_id_format: None,
        requested: asked
            .and_then(|l| src.cfg.ask_name(l))
            .map(|name| RequestedContext {
                comparison: "minimum".into(),
                class_refs: vec![name.to_owned()],
            }),
    };
    let organisation = leistung
        .and_then(|l| gw.tenants.get(&l.tenant))
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let ext = extensions(
        src,
        leistung.map(|l| &**l),
        &organisation,
        ask.at.lang.code(),
    );
    let xml = req.to_xml(ext.as_deref());
    gw.store
        .insert_sp_request(
            &id,
            &SentRequest {
                login_request: ask.at.lr.clone(),
                source: src.cfg.id.clone(),
                asked: asked.map(|l| l.acr().to_owned()),
                browser_hash: gw.master.keyed_hash(&ask.at.browser),
                expires_at: now + gw.cfg.login_request_ttl,
            },
        )
        .await?;
    metrics::counter!("interkom_saml_source_requests_total", "source" => src.cfg.id.clone())
        .increment(1);
    match src.cfg.binding {
        RequestBinding::Post => {
            let signed = dsig::sign(&xml, &id, key).map_err(saml_err)?;
            Ok(web::saml_post_page(
                gw,
                &endpoint,
                Param::Request,
                &signed,
                None,
            ))
        }
        RequestBinding::Redirect => {
            let signer = |m: &[u8]| key.sign_raw(m);
            let url = binding::redirect_url(&endpoint, Param::Request, &xml, None, Some(&signer))
                .map_err(saml_err)?;
            Ok(web::see_other(&url))
        }
    }
}

/// Why a Response was refused (for the page and the audit trail).
#[derive(Debug)]
pub(crate) enum Refused {
    /// It answers no request of ours, or one answered already.
    Unsolicited(String),
    /// It answers a request of ours, but is not acceptable.
    Invalid {
        sent: SentRequest,
        why: String,
    },
    /// The IdP said no (its status), for a request of ours.
    Status {
        request_id: String,
        sent: SentRequest,
        status: Status,
    },
    Internal(GatewayError),
}

/// An acceptable Response: the assertion and the level it states.
pub(crate) struct Consumed {
    pub(crate) request_id: String,
    pub(crate) sent: SentRequest,
    pub(crate) source: Arc<SamlSource>,
    pub(crate) assertion: Assertion,
    pub(crate) loa: Loa,
    pub(crate) pseudonym: String,
}

/// Checks a posted Response (`SAMLResponse`, base64) as the module says.
pub(crate) async fn consume(gw: &Gateway, posted: &str) -> Result<Consumed, Refused> {
    let invalid = |m: String| Refused::Unsolicited(m);
    let xml = binding::post_decode(posted).map_err(|e| invalid(e.to_string()))?;
    // Which request it answers decides whose keys are trusted; read from
    // the untrusted envelope only to find that request.
    let request_id = {
        let doc = interkom_saml::xml::parse(&xml).map_err(|e| invalid(e.to_string()))?;
        let root = doc
            .document_element()
            .ok_or_else(|| invalid("an empty message".into()))?;
        interkom_saml::xml::attr(&doc, root, "InResponseTo")
            .filter(|v| !v.is_empty() && v.len() <= 256)
            .map(str::to_owned)
            .ok_or_else(|| invalid("the Response answers no request (unsolicited)".into()))?
    };
    let sent = gw
        .store
        .sp_request(&request_id)
        .await
        .map_err(|e| Refused::Internal(e.into()))?
        .ok_or_else(|| invalid("the Response answers no open request of ours".into()))?;
    let now = gw.clock.now();
    let bad = |why: String| Refused::Invalid {
        sent: sent.clone(),
        why,
    };
    if sent.expires_at <= now {
        return Err(bad("the request it answers has expired".into()));
    }
    let source = gw
        .dir
        .saml_source(&sent.source)
        .await
        .map_err(|e| Refused::Internal(e.into()))?
        .ok_or_else(|| bad("the source is no longer registered".into()))?;
    let trusted = Trusted::new(&source.idp.signing).map_err(|e| bad(e.to_string()))?;
    let keys = gw.keys.fresh(now).await.map_err(Refused::Internal)?;
    // The IdP may encrypt to any certificate our metadata lists.
    let mut read = Err(SamlError::Encryption("no key".into()));
    for k in keys.saml_keys(now) {
        read = response::read(&xml, &trusted, Some(k));
        if !matches!(read, Err(SamlError::Encryption(_))) {
            break;
        }
    }
    let read = read.map_err(|e| bad(e.to_string()))?;
    if !read.envelope.status.is_success() {
        return Err(Refused::Status {
            request_id: request_id.clone(),
            sent: sent.clone(),
            status: read.envelope.status,
        });
    }
    let a = read
        .assertion
        .ok_or_else(|| bad("a success without an assertion".into()))?;
    let checked = check(gw, &source, &request_id, &read.envelope, &a, now).map_err(bad)?;
    let first = gw
        .store
        .first_assertion(
            &source.cfg.id,
            &a.id,
            a.not_on_or_after + source.cfg.clock_skew,
        )
        .await
        .map_err(|e| Refused::Internal(e.into()))?;
    if !first {
        return Err(bad(format!(
            "assertion `{}` was used before (replay)",
            a.id
        )));
    }
    Ok(Consumed {
        request_id,
        sent,
        source,
        loa: checked.0,
        pseudonym: checked.1,
        assertion: a,
    })
}

/// The rules of a Response beyond its signature; the level and the
/// pseudonym it states.
fn check(
    gw: &Gateway,
    src: &SamlSource,
    request_id: &str,
    env: &response::Envelope,
    a: &Assertion,
    now: i64,
) -> Result<(Loa, String), String> {
    let skew = src.cfg.clock_skew;
    let entity = &src.idp.entity_id;
    let acs = acs_url(gw);
    if !env.issuer.is_empty() && &env.issuer != entity {
        return Err(format!(
            "the Response's issuer `{}` is not the source's",
            env.issuer
        ));
    }
    if &a.issuer != entity {
        return Err(format!(
            "the assertion's issuer `{}` is not the source's",
            a.issuer
        ));
    }
    if env.destination != acs {
        return Err(format!("Destination `{}` is not our ACS", env.destination));
    }
    if env.in_response_to.as_deref() != Some(request_id)
        || a.in_response_to.as_deref() != Some(request_id)
    {
        return Err("InResponseTo names another request".into());
    }
    if a.audience != sp_entity_id(gw) {
        return Err(format!(
            "the assertion is for another audience (`{}`)",
            a.audience
        ));
    }
    if a.recipient != acs {
        return Err(format!("Recipient `{}` is not our ACS", a.recipient));
    }
    if now + skew < a.not_before {
        return Err("the assertion is not valid yet".into());
    }
    if now - skew >= a.not_on_or_after {
        return Err("the assertion has expired".into());
    }
    if a.issue_instant > now + skew || env.issue_instant > now + skew {
        return Err("the Response was issued in the future".into());
    }
    // The level: from the assertion only, the lower of the two statements.
    let by_class = src
        .cfg
        .loa_of(&a.class_ref)
        .ok_or_else(|| format!("an unknown level `{}`", a.class_ref))?;
    let mut loa = by_class;
    if let Some(name) = &src.cfg.level_attribute {
        if let Some(v) = values(a, name).first() {
            let by_attr = src
                .cfg
                .loa_of(v)
                .ok_or_else(|| format!("an unknown level `{v}` in {name}"))?;
            loa = loa.min(by_attr);
        }
    }
    let pseudonym = match values(a, &src.cfg.pseudonym_attribute).as_slice() {
        [one] if !one.trim().is_empty() && one.len() <= 1024 => one.trim().to_owned(),
        [] => return Err("the assertion carries no pseudonym".into()),
        _ => return Err("the pseudonym is not exactly one value".into()),
    };
    Ok((loa, pseudonym))
}

/// The values of the attribute with this `Name` (never `FriendlyName`).
pub(crate) fn values<'a>(a: &'a Assertion, name: &str) -> Vec<&'a str> {
    a.attributes
        .iter()
        .filter(|at| at.name == name)
        .flat_map(|at| at.values.iter().map(String::as_str))
        .collect()
}

/// What the assertion says of the claims a Leistung receives.
pub(crate) fn claims_of(
    src: &SamlSource,
    a: &Assertion,
    leistung: Option<&LeistungSpec>,
) -> interkom_directory::people::PersonData {
    let mut out = interkom_directory::people::PersonData::new();
    for claim in leistung.iter().flat_map(|l| l.claims.iter()) {
        if let Some(name) = src.cfg.attributes.get(claim) {
            let v = values(a, name);
            if !v.is_empty() {
                out.insert(claim.clone(), v.join("\n"));
            }
        }
    }
    out
}

/// How the source named a login (kept sealed with the session): what a
/// LogoutRequest to it must say.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct NamedLogin {
    pub(crate) name_id: String,
    pub(crate) format: String,
    pub(crate) sp_name_qualifier: Option<String>,
    pub(crate) session_index: String,
}

fn named_aad(user_id: &str) -> String {
    format!("saml-source-login|{user_id}")
}

/// The sealed form of how `a` names the login of `user_id`, and the keyed
/// hash its LogoutRequest finds the session by.
pub(crate) fn named_login(
    gw: &Gateway,
    source: &str,
    user_id: &str,
    a: &Assertion,
) -> (Option<String>, String) {
    let named = NamedLogin {
        name_id: a.name_id.clone(),
        format: a.name_id_format.clone(),
        sp_name_qualifier: a.sp_name_qualifier.clone(),
        session_index: a.session_index.clone(),
    };
    let sealed = serde_json::to_string(&named)
        .ok()
        .and_then(|j| gw.seal(&j, &named_aad(user_id)));
    (sealed, subject_key(gw, source, &a.name_id))
}

/// The keyed hash of a NameID of `source`.
pub(crate) fn subject_key(gw: &Gateway, source: &str, name_id: &str) -> String {
    gw.master
        .keyed_hash(&format!("saml-subject|{source}|{name_id}"))
}

/// The source's single-logout endpoint for HTTP-Redirect, if it has one.
pub(crate) fn slo_endpoint(src: &SamlSource) -> Option<&str> {
    src.idp
        .slo
        .iter()
        .find(|e| e.binding == BINDING_REDIRECT)
        .map(|e| e.location.as_str())
}

/// The signed LogoutRequest that ends the source's session of this login
/// too (HTTP-Redirect), back to `/saml/sp/slo` with `continue_to` sealed
/// into the RelayState. `None` when the source has no logout endpoint or
/// the login's name is not kept.
pub(crate) async fn logout_url(
    gw: &Gateway,
    upstream: &str,
    user_id: &str,
    sealed: Option<&str>,
    continue_to: Option<&str>,
) -> Option<String> {
    let id = upstream.strip_prefix(UPSTREAM_PREFIX)?;
    let src = gw.dir.saml_source(id).await.ok().flatten()?;
    let endpoint = slo_endpoint(&src)?.to_owned();
    let named: NamedLogin = serde_json::from_str(&gw.open(sealed?, &named_aad(user_id))?).ok()?;
    let now = gw.clock.now();
    let keys = gw.keys.fresh(now).await.ok()?;
    let key = keys.saml(now)?;
    let req = interkom_saml::logout::LogoutRequest {
        id: interkom_saml::new_id(),
        issue_instant: now,
        issuer: sp_entity_id(gw),
        destination: Some(endpoint.clone()),
        name_id: named.name_id,
        name_id_format: Some(named.format),
        sp_name_qualifier: named.sp_name_qualifier,
        session_indexes: vec![named.session_index],
    };
    let relay = gw.seal(
        &serde_json::json!({ "to": continue_to, "exp": now + 600 }).to_string(),
        "saml-source-logout",
    )?;
    let signer = |m: &[u8]| key.sign_raw(m);
    binding::redirect_url(
        &endpoint,
        Param::Request,
        &req.to_xml(),
        Some(&relay),
        Some(&signer),
    )
    .ok()
}

/// Where a logout was going, from the RelayState this node sealed (fresh).
pub(crate) fn logged_out_to(gw: &Gateway, relay: Option<&str>) -> Option<String> {
    let v: serde_json::Value =
        serde_json::from_str(&gw.open(relay?, "saml-source-logout")?).ok()?;
    if v["exp"].as_i64().is_none_or(|e| e <= gw.clock.now()) {
        return None;
    }
    v["to"].as_str().map(str::to_owned)
}
