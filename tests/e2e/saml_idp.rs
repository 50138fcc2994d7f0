//! interkom as SAML identity provider, against a service provider from
//! another ecosystem: pysaml2 with PyPI's xmlsec (libxmlsec1 1.3), run from
//! `target/saml-venv` (made by `tests/saml/setup`, which `scripts/test`
//! runs). The SP checks what interkom sends the way a vendor's SAML stack
//! does: signatures against interkom's metadata only, the schema, the
//! encryption, InResponseTo, Destination, Audience, Recipient, times.

use interkom_directory::service_providers::{Encryption, ServiceProviderConfig};
use serde_json::Value;

use crate::common::*;

/// Registers the SP from its metadata, for Hitzacker's Ratsinfo resource.
async fn register(s: &TestServer, sp: &PyPeer, encrypt: bool) -> ServiceProviderConfig {
    let md = sp.metadata().await;
    let mut cfg = ServiceProviderConfig::from_metadata(
        "fv-saml",
        "hitzacker-elbe",
        "Fachverfahren (SAML)",
        &md,
    )
    .unwrap();
    cfg.resource = Some("ratsinfo-hitzacker".into());
    if encrypt {
        cfg.encryption = Some(Encryption {
            content: "aes256-gcm".into(),
            key_transport: "rsa-oaep-mgf1p".into(),
        });
    }
    s.app
        .directory
        .put_service_provider(cfg.clone())
        .await
        .unwrap();
    cfg
}

/// The hidden fields and action of the page that posts to the ACS.
fn post_form(html: &str) -> (String, Vec<(String, String)>) {
    let action = attr(&html[html.find("<form").unwrap()..], "action");
    let fields = ["SAMLResponse", "RelayState"]
        .iter()
        .filter(|n| html.contains(&format!("name=\"{n}\"")))
        .map(|n| ((*n).to_owned(), hidden(html, n)))
        .collect();
    (action, fields)
}

/// Follows an SP-initiated login through interkom's login form to the
/// SP's `/whoami`.
async fn login(s: &TestServer, sp: &PyPeer, browser: &Browser, query: &str) -> Value {
    let res = browser.get(&sp.url(&format!("/login?{query}"))).await;
    assert_eq!(res.status(), 303, "the SP sends the browser to interkom");
    let sso = location(&res).unwrap();
    assert!(sso.starts_with(&s.url("/saml/sso?")), "{sso}");
    let form = browser.open_login(s, &sso).await;
    let res = browser
        .submit(&form, "jan.meyer", "Hitzacker-Demo-2026!")
        .await;
    assert_eq!(res.status(), 303);
    let back = location(&res).unwrap();
    assert!(back.starts_with(&s.url("/saml/return?")), "{back}");
    let res = browser.get(&back).await;
    assert_eq!(res.status(), 200);
    let (action, fields) = post_form(&res.text().await.unwrap());
    assert_eq!(action, sp.url("/acs"));
    let res = browser
        .http
        .post(&action)
        .form(&fields)
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert_eq!(
        status,
        303,
        "the SP accepts: {}",
        res.text().await.unwrap_or_default()
    );
    let res = browser.get(&sp.url("/whoami")).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_pysaml2_sp_logs_in_over_redirect_with_an_encrypted_signed_assertion() {
    let s = TestServer::start().await;
    let sp = PyPeer::start(
        "sp.py",
        "--idp-metadata",
        &s.url("/saml/metadata"),
        &["--encryption-key", "--binding", "redirect"],
    );
    let cfg = register(&s, &sp, true).await;
    let browser = Browser::new();
    let who = login(&s, &sp, &browser, "").await;
    assert_eq!(who["issuer"], s.url("/saml"));
    assert_eq!(
        who["name_id_format"],
        "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    );
    let attrs = &who["attributes"];
    assert_eq!(attrs["urn:oid:0.9.2342.19200300.100.1.1"][0], "jan.meyer");
    assert_eq!(attrs["urn:interkom:tenant"][0], "hitzacker-elbe");
    assert!(attrs["urn:interkom:roles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "sachbearbeitung"));
    assert_eq!(who["authn_context_class_ref"], "urn:interkom:loa:low");
    let crypto = &who["crypto"];
    assert_eq!(crypto["assertion_encrypted"], true);
    assert_eq!(crypto["assertion_signed"], true);
    assert_eq!(crypto["response_signed"], true);
    assert_eq!(
        crypto["data_encryption_algorithm"],
        "http://www.w3.org/2009/xmlenc11#aes256-gcm"
    );
    assert_eq!(
        crypto["key_transport_algorithm"],
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
    );
    // Single sign-on: a second login at the SP needs no password, and the
    // pairwise NameID is the same.
    let res = browser.get(&sp.url("/login")).await;
    let res = browser.get(&location(&res).unwrap()).await;
    assert_eq!(res.status(), 303, "no login form the second time");
    let res = browser.get(&location(&res).unwrap()).await;
    let (action, fields) = post_form(&res.text().await.unwrap());
    let res = browser
        .http
        .post(&action)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let again: Value = browser.get(&sp.url("/whoami")).await.json().await.unwrap();
    assert_eq!(again["name_id"], who["name_id"]);
    // The assertion is audited with the SP as client.
    let issued = s.audit("token_issued").await;
    assert!(issued.iter().any(|e| {
        e.actor_client.as_deref() == Some("saml:fv-saml") && e.details.contains(&cfg.entity_id)
    }));
}

#[tokio::test]
async fn a_signed_post_request_and_a_level_asked_for() {
    let s = TestServer::start().await;
    let sp = PyPeer::start(
        "sp.py",
        "--idp-metadata",
        &s.url("/saml/metadata"),
        &["--binding", "post"],
    );
    register(&s, &sp, false).await;
    let browser = Browser::new();
    // POST binding: the SP's page posts the signed AuthnRequest.
    let res = browser
        .get(&sp.url("/login?authn_context=http://eidas.europa.eu/LoA/low"))
        .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let action = attr(&html[html.find("<form").unwrap()..], "action");
    assert_eq!(action, s.url("/saml/sso"));
    let fields = [
        ("SAMLRequest", hidden(&html, "SAMLRequest")),
        ("RelayState", hidden(&html, "RelayState")),
    ];
    let res = browser
        .http
        .post(&action)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the login form");
    let form = parse_form(&s, &res.text().await.unwrap());
    let res = browser
        .submit(&form, "jan.meyer", "Hitzacker-Demo-2026!")
        .await;
    let res = browser.get(&location(&res).unwrap()).await;
    let (action, fields) = post_form(&res.text().await.unwrap());
    let res = browser
        .http
        .post(&action)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let who: Value = browser.get(&sp.url("/whoami")).await.json().await.unwrap();
    // Asked in eIDAS's words, answered in them.
    assert_eq!(
        who["authn_context_class_ref"],
        "http://eidas.europa.eu/LoA/low"
    );
    // The same request again: a replay.
    let res = browser
        .http
        .post(s.url("/saml/sso"))
        .form(&fields_of(&html))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

fn fields_of(html: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SAMLRequest", hidden(html, "SAMLRequest")),
        ("RelayState", hidden(html, "RelayState")),
    ]
}

/// An SP key pair of the test's own (for signed requests).
fn sp_key() -> interkom_saml::dsig::SigningKey {
    use rsa::pkcs8::EncodePrivateKey;
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let der = private.to_pkcs8_der().unwrap();
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let cert = rcgen::CertificateParams::new(vec!["sp.test".into()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    interkom_saml::dsig::SigningKey::new(
        der.as_bytes(),
        interkom_saml::dsig::Certificate(cert.der().to_vec()),
    )
    .unwrap()
}

const ENTITY: &str = "https://fv.hitzacker.example/saml";
const ACS: &str = "https://fv.hitzacker.example/saml/acs";

fn by_hand(resource: &str, key: Option<&interkom_saml::dsig::SigningKey>) -> ServiceProviderConfig {
    ServiceProviderConfig {
        id: "fv-hand".into(),
        tenant: "hitzacker-elbe".into(),
        name: "Fachverfahren".into(),
        entity_id: ENTITY.into(),
        acs_urls: vec![ACS.into()],
        slo_url: None,
        signing_certs: key.iter().map(|k| k.cert.base64()).collect(),
        encryption_cert: None,
        encryption: None,
        name_id_format: Default::default(),
        attributes: interkom_directory::service_providers::SamlAttribute::ALL.to_vec(),
        resource: Some(resource.into()),
        sign_response: true,
        sign_assertion: true,
        require_signed_requests: key.is_some(),
        idp_initiated: false,
    }
}

fn request(s: &TestServer, id: &str, at: i64) -> interkom_saml::authn::AuthnRequest {
    interkom_saml::authn::AuthnRequest {
        id: id.into(),
        issue_instant: at,
        issuer: ENTITY.into(),
        destination: Some(s.url("/saml/sso")),
        acs_url: Some(ACS.into()),
        acs_index: None,
        protocol_binding: Some(interkom_saml::authn::BINDING_POST.into()),
        force_authn: false,
        is_passive: false,
        name_id_format: None,
        requested: None,
    }
}

fn redirect(s: &TestServer, xml: &str, key: Option<&interkom_saml::dsig::SigningKey>) -> String {
    let sign = |m: &[u8]| key.unwrap().sign_raw(m);
    interkom_saml::binding::redirect_url(
        &s.url("/saml/sso"),
        interkom_saml::binding::Param::Request,
        xml,
        Some("r"),
        key.map(|_| &sign as interkom_saml::binding::QuerySigner<'_>),
    )
    .unwrap()
}

/// The signed Redirect URL of a fresh request with `change` applied.
fn changed(
    s: &TestServer,
    key: &interkom_saml::dsig::SigningKey,
    id: &str,
    change: impl FnOnce(&mut interkom_saml::authn::AuthnRequest),
) -> String {
    let mut r = request(s, id, s.clock.now());
    change(&mut r);
    redirect(s, &r.to_xml(None), Some(key))
}

/// A refused request: a 400 page that posts nothing anywhere, and an
/// audit event.
async fn refused(res: reqwest::Response, what: &str) {
    assert_eq!(res.status(), 400, "{what}");
    let html = res.text().await.unwrap();
    assert!(
        !html.contains("<form"),
        "{what}: the page posts nothing: {html}"
    );
    assert!(!html.contains(ACS), "{what}");
}

#[tokio::test]
async fn bad_requests_are_refused_with_a_page_and_audited() {
    let s = TestServer::start().await;
    let key = sp_key();
    s.app
        .directory
        .put_service_provider(by_hand("ratsinfo-hitzacker", Some(&key)))
        .await
        .unwrap();
    let now = s.clock.now();
    let http = TestServer::http();
    let good = request(&s, "_good", now).to_xml(None);
    // Signed over the query, fresh, ours: the login form.
    let res = http
        .get(redirect(&s, &good, Some(&key)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a good request reaches the login form");

    let other = sp_key();
    let cases: Vec<(&str, String)> = vec![
        ("not base64", s.url("/saml/sso?SAMLRequest=%25%25%25")),
        ("no request", s.url("/saml/sso")),
        (
            "unsigned where required",
            redirect(&s, &request(&s, "_u", now).to_xml(None), None),
        ),
        (
            "signed by another key",
            redirect(&s, &request(&s, "_o", now).to_xml(None), Some(&other)),
        ),
        ("replayed", redirect(&s, &good, Some(&key))),
        (
            "expired",
            changed(&s, &key, "_e", |r| r.issue_instant -= 3600),
        ),
        (
            "from the future",
            changed(&s, &key, "_f", |r| r.issue_instant += 3600),
        ),
        (
            "an ACS URL not registered",
            changed(&s, &key, "_a", |r| {
                r.acs_url = Some("https://evil.example/acs".into())
            }),
        ),
        (
            "meant for another IdP",
            changed(&s, &key, "_d", |r| {
                r.destination = Some("https://other-idp.example/sso".into())
            }),
        ),
        (
            "an SP nobody registered",
            changed(&s, &key, "_n", |r| {
                r.issuer = "https://unbekannt.example".into()
            }),
        ),
        (
            "a DTD (billion laughs)",
            redirect(
                &s,
                &format!(
                    "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\">]>{}",
                    request(&s, "_x", now).to_xml(None)
                ),
                Some(&key),
            ),
        ),
        (
            "oversized",
            changed(&s, &key, &format!("_{}", "x".repeat(300 * 1024)), |_| {}),
        ),
        ("not XML", redirect(&s, "<samlp:AuthnRequest", Some(&key))),
    ];
    for (what, url) in cases {
        refused(http.get(url).send().await.unwrap(), what).await;
    }
    // POST with a repeated field, and POST of garbage.
    let res = http
        .post(s.url("/saml/sso"))
        .form(&[("SAMLRequest", "a"), ("SAMLRequest", "b")])
        .send()
        .await
        .unwrap();
    refused(res, "a field twice").await;
    let failed = s.audit("login_failed").await;
    let saml: Vec<_> = failed
        .iter()
        .filter(|e| e.details.contains("\"via\":\"saml\""))
        .collect();
    assert!(saml.len() >= 14, "each refusal audited: {}", saml.len());
    assert!(saml.iter().any(|e| e.details.contains("replay")));
}

#[tokio::test]
async fn the_policy_denies_and_an_unreachable_level_is_answered_to_the_sp() {
    let s = TestServer::start().await;
    // Gorleben's Ratsinfo: a Hitzacker clerk may not use it.
    s.app
        .directory
        .put_service_provider(by_hand("ratsinfo-gorleben", None))
        .await
        .unwrap();
    let now = s.clock.now();
    let browser = Browser::new();
    let form = browser
        .open_login(
            &s,
            &redirect(&s, &request(&s, "_deny", now).to_xml(None), None),
        )
        .await;
    let res = browser
        .submit(&form, "jan.meyer", "Hitzacker-Demo-2026!")
        .await;
    let res = browser.get(&location(&res).unwrap()).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let (action, fields) = post_form(&html);
    assert_eq!(action, ACS, "the SP hears the denial");
    let xml = interkom_saml::binding::post_decode(&fields[0].1).unwrap();
    assert!(
        xml.contains("urn:oasis:names:tc:SAML:2.0:status:RequestDenied"),
        "{xml}"
    );
    assert!(!xml.contains("Assertion"), "no assertion");
    let denied = s.audit("decision_denied").await;
    assert!(denied
        .iter()
        .any(|e| e.actor_client.as_deref() == Some("saml:fv-hand")));

    // A level no method of this account reaches (high, asked by the SP).
    s.app
        .directory
        .put_service_provider(by_hand("ratsinfo-hitzacker", None))
        .await
        .unwrap();
    let high = interkom_saml::authn::AuthnRequest {
        requested: Some(interkom_saml::authn::RequestedContext {
            comparison: "minimum".into(),
            class_refs: vec!["http://eidas.europa.eu/LoA/high".into()],
        }),
        ..request(&s, "_high", now)
    };
    let browser = Browser::new();
    let form = browser
        .open_login(&s, &redirect(&s, &high.to_xml(None), None))
        .await;
    let res = browser
        .submit(&form, "jan.meyer", "Hitzacker-Demo-2026!")
        .await;
    let res = browser.get(&location(&res).unwrap()).await;
    let (_, fields) = post_form(&res.text().await.unwrap());
    let xml = interkom_saml::binding::post_decode(&fields[0].1).unwrap();
    assert!(xml.contains("status:NoAuthnContext"), "{xml}");
}

#[tokio::test]
async fn idp_initiated_login_only_where_switched_on() {
    let s = TestServer::start().await;
    let mut cfg = by_hand("ratsinfo-hitzacker", None);
    s.app
        .directory
        .put_service_provider(cfg.clone())
        .await
        .unwrap();
    let browser = Browser::new();
    let res = browser.get(&s.url("/saml/start?sp=fv-hand")).await;
    assert_eq!(res.status(), 400, "off by default");
    cfg.idp_initiated = true;
    s.app.directory.put_service_provider(cfg).await.unwrap();
    let form = browser
        .open_login(&s, &s.url("/saml/start?sp=fv-hand&RelayState=/akten"))
        .await;
    let res = browser
        .submit(&form, "jan.meyer", "Hitzacker-Demo-2026!")
        .await;
    let res = browser.get(&location(&res).unwrap()).await;
    let html = res.text().await.unwrap();
    let (action, fields) = post_form(&html);
    assert_eq!(action, ACS);
    assert_eq!(fields[1], ("RelayState".to_owned(), "/akten".to_owned()));
    let xml = interkom_saml::binding::post_decode(&fields[0].1).unwrap();
    assert!(!xml.contains("InResponseTo"), "answers no request: {xml}");
    assert!(xml.contains("status:Success"));
}

#[tokio::test]
async fn the_admin_api_keeps_service_providers_in_the_subtree() {
    let s = TestServer::start().await;
    let kreis = admin_account(
        &s,
        "lk-luechow-dannenberg",
        "kreis.it",
        &["admin", "sachbearbeitung"],
    )
    .await;
    let gemeinde = admin_account(
        &s,
        "hitzacker-elbe",
        "gem.admin",
        &["admin", "sachbearbeitung"],
    )
    .await;
    let body = serde_json::to_value(by_hand("ratsinfo-hitzacker", None)).unwrap();
    let put = |token: &str, b: serde_json::Value| {
        let token = token.to_owned();
        let s = &s;
        async move {
            admin(
                s,
                reqwest::Method::PUT,
                &token,
                "/service-providers/fv-hand",
                Some(b),
            )
            .await
        }
    };
    let (st, v) = put(&gemeinde, body.clone()).await;
    assert_eq!(st, 201, "{v}");
    // Another Kommune's resource, or tenant: refused.
    let mut foreign = body.clone();
    foreign["resource"] = serde_json::json!("kfz-zulassung");
    assert_eq!(put(&gemeinde, foreign).await.0, 403);
    let mut elsewhere = body.clone();
    elsewhere["tenant"] = serde_json::json!("gorleben");
    assert_eq!(put(&gemeinde, elsewhere).await.0, 403);
    // Bad input as problem+json.
    for (k, v) in [
        ("acs_urls", serde_json::json!(["http://fv.example/acs"])),
        ("signing_certs", serde_json::json!(["kein Zertifikat"])),
        ("encryption", serde_json::json!({ "content": "des" })),
    ] {
        let mut b = body.clone();
        b[k] = v;
        let (st, p) = put(&gemeinde, b).await;
        assert_eq!(st, 400, "{k}: {p}");
    }
    // Dropping the resource lowers the protection need: a proposal.
    let mut unbound = body.clone();
    unbound["resource"] = serde_json::Value::Null;
    let (st, v) = put(&gemeinde, unbound).await;
    assert_eq!(st, 202, "{v}");
    // From metadata fetched at an address interkom may not call.
    let (st, v) = admin(
        &s,
        reqwest::Method::PUT,
        &kreis,
        "/service-providers/fv-md/metadata",
        Some(serde_json::json!({
            "tenant": "hitzacker-elbe", "name": "X",
            "metadata_url": "https://169.254.169.254/latest/meta-data"
        })),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = admin(
        &s,
        reqwest::Method::GET,
        &gemeinde,
        "/service-providers",
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["service_providers"].as_array().unwrap().len(), 1);
}

/// Registers a pysaml2 SP under `id` (from its metadata: ACS, SLO, keys).
async fn register_as(s: &TestServer, sp: &PyPeer, id: &str) {
    let md = sp.metadata().await;
    let mut cfg = ServiceProviderConfig::from_metadata(id, "hitzacker-elbe", id, &md).unwrap();
    cfg.resource = Some("ratsinfo-hitzacker".into());
    assert!(
        cfg.slo_url.is_some(),
        "the SP's metadata names its SLO endpoint"
    );
    s.app.directory.put_service_provider(cfg).await.unwrap();
}

/// Follows redirects (303/302) from `url` as a browser does, returning
/// the final answer.
async fn follow(browser: &Browser, url: &str) -> reqwest::Response {
    let mut res = browser.get(url).await;
    for _ in 0..10 {
        if !matches!(res.status().as_u16(), 302 | 303) {
            break;
        }
        res = browser.get(&location(&res).unwrap()).await;
    }
    res
}

/// Two pysaml2 SPs registered as `fv-eins` and `fv-zwei`, and a browser
/// with one interkom session logged in at both (the second by single
/// sign-on, no form).
async fn two_sps_one_session(s: &TestServer) -> (PyPeer, PyPeer, Browser) {
    let start = || {
        PyPeer::start(
            "sp.py",
            "--idp-metadata",
            &s.url("/saml/metadata"),
            &["--binding", "redirect"],
        )
    };
    let (one, two) = (start(), start());
    register_as(s, &one, "fv-eins").await;
    register_as(s, &two, "fv-zwei").await;
    let browser = Browser::new();
    login(s, &one, &browser, "").await;
    let res = browser.get(&two.url("/login")).await;
    let res = browser.get(&location(&res).unwrap()).await;
    assert_eq!(res.status(), 303, "no login form");
    let res = browser.get(&location(&res).unwrap()).await;
    let (action, fields) = post_form(&res.text().await.unwrap());
    let res = browser
        .http
        .post(&action)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(browser.get(&two.url("/whoami")).await.status(), 200);
    (one, two, browser)
}

#[tokio::test]
async fn single_logout_from_one_sp_reaches_the_other_and_ends_the_session() {
    let s = TestServer::start().await;
    let (one, two, browser) = two_sps_one_session(&s).await;

    // Logout at the first: interkom, then the second SP, then back.
    let res = follow(&browser, &one.url("/logout")).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("Success"),
        "the first SP got a successful LogoutResponse: {text}"
    );
    assert_eq!(
        browser.get(&two.url("/whoami")).await.status(),
        401,
        "the second SP was told"
    );
    // interkom's session ended: the next login asks for the password.
    let res = browser.get(&one.url("/login")).await;
    let res = browser.get(&location(&res).unwrap()).await;
    assert_eq!(res.status(), 200, "the login form again");
    let logouts = s.audit("logout").await;
    assert!(logouts
        .iter()
        .any(|e| e.details.contains("\"via\":\"saml\"")));
}

#[tokio::test]
async fn a_level_asked_for_in_the_request_steps_up_with_the_second_factor() {
    let s = TestServer::start().await;
    s.app
        .directory
        .put_service_provider(by_hand("ratsinfo-hitzacker", None))
        .await
        .unwrap();
    let now = s.clock.now();
    let substantial = interkom_saml::authn::AuthnRequest {
        requested: Some(interkom_saml::authn::RequestedContext {
            comparison: "minimum".into(),
            class_refs: vec!["urn:interkom:loa:substantial".into()],
        }),
        ..request(&s, "_step", now)
    };
    // The Kommunalaufsicht reads every Ratsinfo; her password alone is low.
    let browser = Browser::new();
    let form = browser
        .open_login(&s, &redirect(&s, &substantial.to_xml(None), None))
        .await;
    let res = browser
        .submit(&form, "kreis.admin", "Kreis-Demo-2026!")
        .await;
    assert_eq!(res.status(), 200, "the second-factor page");
    let page = res.text().await.unwrap();
    let raw = totp_rs::Secret::Encoded("KREISADMINDEMOSECRETZWEITAUSEND2".into())
        .to_bytes()
        .unwrap();
    let code = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, raw)
        .generate(s.clock.now() as u64);
    let res = post_step(&browser, &s, "/login/otp", &page, &[("code", &code)]).await;
    assert_eq!(res.status(), 303);
    let res = browser.get(&location(&res).unwrap()).await;
    let (_, fields) = post_form(&res.text().await.unwrap());
    let xml = interkom_saml::binding::post_decode(&fields[0].1).unwrap();
    assert!(xml.contains("status:Success"), "{xml}");
    assert!(
        xml.contains(
            "<saml:AuthnContextClassRef>urn:interkom:loa:substantial</saml:AuthnContextClassRef>"
        ),
        "the level reached: {xml}"
    );
}

#[tokio::test]
async fn single_logout_from_a_saml_sp_reaches_an_oidc_client_by_back_channel() {
    let s = TestServer::start_with(|c| c.backchannel.allow_loopback = true).await;
    let mut r = crate::backchannel::receiver().await;
    crate::backchannel::register(&s, Some(r.url.clone()))
        .await
        .unwrap();
    let sp = PyPeer::start(
        "sp.py",
        "--idp-metadata",
        &s.url("/saml/metadata"),
        &["--binding", "redirect"],
    );
    register_as(&s, &sp, "fv-eins").await;
    // One session: the SAML SP first, then the OIDC client by single
    // sign-on.
    let browser = Browser::new();
    login(&s, &sp, &browser, "").await;
    let t = crate::backchannel::tokens(&s, &browser).await;
    let id = jwt_payload(t["id_token"].as_str().unwrap());
    // Logout at the SAML SP: the OIDC client hears of it.
    let res = follow(&browser, &sp.url("/logout")).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Success"));
    let claims =
        crate::backchannel::verify(&s, &crate::backchannel::next_token(&mut r).await).await;
    assert_eq!(claims["sid"], id["sid"]);
    assert_eq!(claims["sub"], id["sub"]);
}

/// Follows redirects from `url` until one leaves for `stop` (not fetched).
async fn follow_until(browser: &Browser, url: &str, stop: &str) -> Vec<String> {
    let mut seen = vec![url.to_owned()];
    let mut res = browser.get(url).await;
    for _ in 0..10 {
        assert!(
            matches!(res.status().as_u16(), 302 | 303),
            "a redirect from {}: {}",
            seen.last().unwrap(),
            res.status()
        );
        let to = location(&res).unwrap();
        seen.push(to.clone());
        if to.starts_with(stop) {
            return seen;
        }
        res = browser.get(&to).await;
    }
    panic!("never reached {stop}: {seen:?}");
}

#[tokio::test]
async fn a_logout_at_an_oidc_client_reaches_the_saml_sps_and_ends_where_it_asked() {
    let s = TestServer::start().await;
    crate::backchannel::register(&s, None).await.unwrap();
    // One session: both SAML SPs, then the OIDC client by single sign-on.
    let (one, two, browser) = two_sps_one_session(&s).await;
    let t = crate::backchannel::tokens(&s, &browser).await;

    // The OIDC client logs out with its hint, to its registered page.
    let mut u = url::Url::parse(&s.url("/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", t["id_token"].as_str().unwrap())
        .append_pair("post_logout_redirect_uri", PORTAL_LOGOUT)
        .append_pair("state", "after-logout");
    let hops = follow_until(&browser, u.as_str(), PORTAL_LOGOUT).await;
    let to_sps: Vec<&String> = hops
        .iter()
        .filter(|h| h.contains("/slo?SAMLRequest="))
        .collect();
    assert_eq!(to_sps.len(), 2, "each SP got a LogoutRequest: {hops:?}");
    assert!(to_sps.iter().all(|h| h.contains("&Signature=")), "signed");
    assert_eq!(
        hops.last().unwrap(),
        &format!("{PORTAL_LOGOUT}?state=after-logout"),
        "on to the client's page at the end"
    );
    for sp in [&one, &two] {
        assert_eq!(
            browser.get(&sp.url("/whoami")).await.status(),
            401,
            "the SP ended its session"
        );
    }
    // interkom's session ended too: the next login asks for the password.
    let res = browser.get(&one.url("/login")).await;
    let res = browser.get(&location(&res).unwrap()).await;
    assert_eq!(res.status(), 200, "the login form again");
}

#[tokio::test]
async fn a_logout_confirmed_at_interkom_reaches_the_saml_sp() {
    let s = TestServer::start().await;
    let sp = PyPeer::start(
        "sp.py",
        "--idp-metadata",
        &s.url("/saml/metadata"),
        &["--binding", "redirect"],
    );
    register_as(&s, &sp, "fv-eins").await;
    let browser = Browser::new();
    login(&s, &sp, &browser, "").await;
    // No hint: the person confirms on interkom's page.
    let res = browser.get(&s.url("/logout")).await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    let res = browser
        .http
        .post(s.url("/logout"))
        .form(&[
            ("confirm", "yes"),
            ("csrf_token", &hidden(&page, "csrf_token")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "to the SP first");
    let to_sp = location(&res).unwrap();
    assert!(to_sp.starts_with(&sp.url("/slo?SAMLRequest=")), "{to_sp}");
    let res = browser.get(&to_sp).await;
    assert_eq!(res.status(), 303, "the SP answers");
    let answer = location(&res).unwrap();
    assert!(
        answer.starts_with(&s.url("/saml/slo?SAMLResponse=")),
        "{answer}"
    );
    let res = browser.get(&answer).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.text().await.unwrap().contains("Sie sind abgemeldet."),
        "interkom's logged-out page at the end"
    );
    assert_eq!(browser.get(&sp.url("/whoami")).await.status(), 401);
    // The same LogoutResponse again finds no logout waiting.
    let again = browser.get(&answer).await;
    assert_eq!(again.status(), 400);
}
