//! interkom as SAML identity provider, against a service provider from
//! another ecosystem: pysaml2 with PyPI's xmlsec (libxmlsec1 1.3), run from
//! `target/saml-venv` (made by `tests/saml/setup`, which `scripts/test`
//! runs). The SP checks what interkom sends the way a vendor's SAML stack
//! does: signatures against interkom's metadata only, the schema, the
//! encryption, InResponseTo, Destination, Audience, Recipient, times.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use interkom_directory::service_providers::{Encryption, ServiceProviderConfig};
use serde_json::Value;

use crate::common::*;

/// A pysaml2 SP on a free port; killed when dropped.
struct PySp {
    child: Child,
    base: String,
}

impl Drop for PySp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PySp {
    fn start(idp_metadata: &str, args: &[&str]) -> PySp {
        let python = repo_root().join("target/saml-venv/bin/python");
        assert!(
            python.exists(),
            "the SAML peers' venv is missing: run tests/saml/setup (scripts/test does)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(python)
            .arg(repo_root().join("tests/saml/sp.py"))
            .args(["--port", &port.to_string(), "--idp-metadata", idp_metadata])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "sp.py did not start");
        PySp {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Registers the SP from its metadata, for Hitzacker's Ratsinfo resource.
async fn register(s: &TestServer, sp: &PySp, encrypt: bool) -> ServiceProviderConfig {
    let md = TestServer::http()
        .get(sp.url("/metadata"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
async fn login(s: &TestServer, sp: &PySp, browser: &Browser, query: &str) -> Value {
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
    let sp = PySp::start(
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
    let sp = PySp::start(&s.url("/saml/metadata"), &["--binding", "post"]);
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
