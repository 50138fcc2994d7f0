//! Responses an attacker could post to interkom's assertion consumer
//! service, one by one: each is refused with a page that posts nothing
//! anywhere and a `login_failed` event, never a 500, and no account is
//! made or linked. The IdP here is forged in the test (its key registered
//! as a source), so every byte of the Response is under the test's
//! control; the control case — the same Response unmodified — logs in.

use interkom_saml::dsig;
use interkom_saml::metadata::SpMetadata;
use interkom_saml::response::{self, Assertion, Protection};

use crate::common::*;
use crate::saml_forge::*;

async fn setup() -> TestServer {
    let s = TestServer::start().await;
    s.app
        .directory
        .put_saml_source(source(), &metadata())
        .await
        .unwrap();
    s
}

/// A login at a Leistung sent to the forged IdP: the AuthnRequest's id.
async fn begin(s: &TestServer, b: &Browser, client: &str, port: u16) -> String {
    let (_v, challenge) = pkce();
    let url = authorize_url(
        s,
        &[
            ("response_type", "code"),
            ("client_id", client),
            ("redirect_uri", &format!("http://localhost:{port}/callback")),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let html = b.get(&url).await.text().await.unwrap();
    let res = b
        .http
        .post(s.url("/login/saml"))
        .form(&[
            ("login_request", hidden(&html, "login_request")),
            ("csrf_token", hidden(&html, "csrf_token")),
            ("source", "forged".into()),
        ])
        .send()
        .await
        .unwrap();
    request_id(&res.text().await.unwrap())
}

fn signature_of(x: &str) -> &str {
    let s = x.find("<ds:Signature").unwrap();
    let e = x.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    &x[s..e]
}

fn without_signature(x: &str) -> String {
    x.replace(signature_of(x), "")
}

/// `x` with `extra` inserted right after its Issuer element.
fn after_issuer(x: &str, extra: &str) -> String {
    let i = x.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    format!("{}{extra}{}", &x[..i], &x[i..])
}

async fn post(b: &Browser, s: &TestServer, xml: &str) -> reqwest::Response {
    let v = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, xml);
    b.http
        .post(s.url("/saml/sp/acs"))
        .form(&[("SAMLResponse", v)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn forged_wrapped_and_misaddressed_responses_are_refused_one_by_one() {
    let s = setup().await;
    let b = Browser::new();
    let irt = begin(&s, &b, "hundesteuer-hitzacker", 9010).await;
    let md = TestServer::http()
        .get(s.url("/saml/sp/metadata"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ours = SpMetadata::read(&md).unwrap().encryption[0].clone();
    let f = Forge {
        irt: irt.clone(),
        acs: s.url("/saml/sp/acs"),
        audience: s.url("/saml/sp"),
        now: now(),
    };
    let good = f.assertion("bpk2-erika");
    let evil = Assertion {
        id: "_evil".into(),
        ..f.assertion("bpk2-attacker")
    };
    let signed = f.signed(&good, idp_key());
    let sig = signature_of(&signed).to_owned();
    let evil_xml = evil.to_xml();
    let encrypted = |a: &Assertion| f.encrypted(a, &ours);
    let with = |change: &dyn Fn(&mut Assertion)| {
        let mut a = f.assertion("bpk2-erika");
        change(&mut a);
        f.wrap(&f.signed(&a, idp_key()))
    };
    // The whole Response signed, for the Response-level wrappings.
    let signed_response = response::write(
        &f.envelope(),
        Some(&good),
        idp_key(),
        &Protection {
            sign_assertion: false,
            sign_response: true,
            encrypt_to: None,
        },
    )
    .unwrap();
    let evil_response = f.wrap(&evil_xml);
    let big = f.wrap(&format!("{}<!--{}-->", signed, "x".repeat(300 * 1024)));
    let cases: Vec<(&str, String)> = vec![
        ("unsigned", f.wrap(&good.to_xml())),
        (
            "signed by a key not in the metadata",
            f.wrap(&f.signed(&good, stranger_key())),
        ),
        (
            "a changed byte after signing",
            f.wrap(&signed.replace("bpk2-erika", "bpk2-admin")),
        ),
        (
            "another audience",
            with(&|a| a.audience = "https://other.sp/sp".into()),
        ),
        (
            "expired",
            with(&|a| a.not_on_or_after = a.issue_instant - 600),
        ),
        (
            "not yet valid",
            with(&|a| a.not_before = a.issue_instant + 600),
        ),
        (
            "another Recipient",
            with(&|a| a.recipient = "https://evil.example/acs".into()),
        ),
        (
            "answering another request",
            with(&|a| a.in_response_to = Some("_other".into())),
        ),
        (
            "another issuer",
            with(&|a| a.issuer = "https://evil.example/idp".into()),
        ),
        (
            "no pseudonym",
            with(&|a| a.attributes.retain(|at| at.name != BPK2)),
        ),
        (
            "an unknown level",
            with(&|a| a.class_ref = "urn:evil:loa:max".into()),
        ),
        ("a comment inside the NameID", {
            let a = f.assertion("bpk2-erika");
            let x = a.to_xml().replace(">_transient<", ">_trans<!---->ient<");
            f.wrap(&dsig::sign(&x, &a.id, idp_key()).unwrap())
        }),
        ("a comment inside the pseudonym", {
            let a = f.assertion("bpk2-erika");
            let x = a.to_xml().replace(">bpk2-erika<", ">bpk2-<!---->erika<");
            f.wrap(&dsig::sign(&x, &a.id, idp_key()).unwrap())
        }),
        (
            "another Destination",
            signed_response.replacen(
                &format!("Destination=\"{}\"", f.acs),
                "Destination=\"https://evil.example/acs\"",
                1,
            ),
        ),
        // XML signature wrapping, the eight classic variants.
        (
            "XSW1: the signed Response inside the signature of an evil one",
            {
                let sig = signature_of(&signed_response).to_owned();
                let inner = without_signature(&signed_response);
                after_issuer(
                    &evil_response,
                    &sig.replace("</ds:Signature>", &format!("{inner}</ds:Signature>")),
                )
            },
        ),
        (
            "XSW2: the signed Response beside the signature of an evil one",
            {
                let sig = signature_of(&signed_response).to_owned();
                let inner = without_signature(&signed_response);
                after_issuer(&evil_response, &format!("{inner}{sig}"))
            },
        ),
        (
            "XSW3: an evil assertion before the signed one",
            f.wrap(&format!("{evil_xml}{signed}")),
        ),
        (
            "XSW4: the signed assertion inside an evil one",
            f.wrap(&evil_xml.replace("</saml:Assertion>", &format!("{signed}</saml:Assertion>"))),
        ),
        (
            "XSW5: the signature moved into an evil assertion, the original after it",
            f.wrap(&format!(
                "{}{}",
                after_issuer(&evil_xml, &sig),
                without_signature(&signed)
            )),
        ),
        (
            "XSW6: the original inside the signature moved into an evil assertion",
            f.wrap(&after_issuer(
                &evil_xml,
                &sig.replace(
                    "</ds:Signature>",
                    &format!("{}</ds:Signature>", without_signature(&signed)),
                ),
            )),
        ),
        (
            "XSW7: the signed assertion in an Extensions element, an evil one read",
            f.wrap(&format!(
                "<samlp:Extensions>{signed}</samlp:Extensions>{evil_xml}"
            )),
        ),
        (
            "XSW8: the original in a ds:Object of the signature in an evil assertion",
            f.wrap(&after_issuer(
                &evil_xml,
                &sig.replace(
                    "</ds:Signature>",
                    &format!(
                        "<ds:Object>{}</ds:Object></ds:Signature>",
                        without_signature(&signed)
                    ),
                ),
            )),
        ),
        ("larger than 256 KiB", big),
        (
            "RSA PKCS#1 v1.5 key transport",
            encrypted(&good).replace(
                "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
                "http://www.w3.org/2001/04/xmlenc#rsa-1_5",
            ),
        ),
    ];
    let failed_before = s.audit("login_failed").await.len();
    for (name, xml) in &cases {
        let res = post(&b, &s, xml).await;
        assert_eq!(res.status(), 400, "{name}: refused");
        let html = res.text().await.unwrap();
        assert!(!html.contains("<form"), "{name}: the page posts nothing");
    }
    assert_eq!(
        s.audit("login_failed").await.len() - failed_before,
        cases.len(),
        "each refusal is audited"
    );
    assert!(
        s.audit("account_provisioned").await.is_empty(),
        "no account was made"
    );
    // The control: the same Response, as sent, logs in (encrypted here).
    let res = post(&b, &s, &encrypted(&good)).await;
    assert_eq!(res.status(), 303, "the control logs in");
    let res = b.get(&location(&res).unwrap()).await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).unwrap().contains("code="));
    assert_eq!(s.audit("account_provisioned").await.len(), 1);
    // The same assertion in a Response to another request of ours: its id
    // is in the replay cache (a table every node shares).
    let b2 = Browser::new();
    let f2 = Forge {
        irt: begin(&s, &b2, "hundesteuer-hitzacker", 9010).await,
        ..f
    };
    let again = Assertion {
        id: good.id.clone(),
        ..f2.assertion("bpk2-erika")
    };
    let res = post(&b2, &s, &f2.encrypted(&again, &ours)).await;
    assert_eq!(res.status(), 400, "a replayed assertion");
    let failed = s.audit("login_failed").await;
    assert!(failed.iter().any(|e| e.details.contains("(replay)")));
}

#[tokio::test]
async fn a_level_attribute_lower_than_the_class_ref_counts() {
    let s = setup().await;
    let b = Browser::new();
    let irt = begin(&s, &b, "bewohnerparken-dannenberg", 9011).await;
    let f = Forge {
        irt,
        acs: s.url("/saml/sp/acs"),
        audience: s.url("/saml/sp"),
        now: now(),
    };
    let mut a = f.assertion("bpk2-max");
    // Claimed high in the AuthnContext, low in the level attribute.
    for at in &mut a.attributes {
        if at.name == LEVEL {
            at.values = vec!["STORK-QAA-Level-1".into()];
        }
    }
    let res = post(&b, &s, &f.wrap(&f.signed(&a, idp_key()))).await;
    assert_eq!(res.status(), 303);
    let res = b.get(&location(&res).unwrap()).await;
    assert_eq!(res.status(), 200, "the Leistung's page, not a code");
    let html = res.text().await.unwrap();
    assert!(html.contains("„niedrig“"), "{html}");
    let failed = s.audit("login_failed").await;
    let ev = failed.last().unwrap();
    assert_eq!(ev.reason.as_deref(), Some("level_too_low"));
    let details: serde_json::Value = serde_json::from_str(&ev.details).unwrap();
    assert_eq!(details["achieved"], "urn:interkom:loa:low");
}
