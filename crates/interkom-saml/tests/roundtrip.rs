//! The SAML module against itself: what interkom writes, interkom reads;
//! what is tampered with, wrapped, unsigned or signed by another key, it
//! refuses. (Interoperability with another ecosystem's SAML stack is
//! tested end to end in the gateway's tests.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use interkom_saml::authn::{AuthnRequest, RequestedContext, BINDING_POST};
use interkom_saml::binding::{self, Param};
use interkom_saml::dsig::{self, Certificate, SigningKey, Trusted};
use interkom_saml::enc::{self, Method};
use interkom_saml::logout::{LogoutRequest, LogoutResponse};
use interkom_saml::metadata::{IdpMetadata, PartnerIdp};
use interkom_saml::response::{self, Assertion, Attribute, Envelope, Protection, Status};
use interkom_saml::SamlError;
use rsa::pkcs8::EncodePrivateKey;

struct Party {
    key: SigningKey,
}

fn party() -> Party {
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let der = private.to_pkcs8_der().unwrap();
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types_der(der.as_bytes()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let cert = rcgen::CertificateParams::new(vec!["interkom.test".into()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let cert = Certificate(cert.der().to_vec());
    Party {
        key: SigningKey::new(der.as_bytes(), cert).unwrap(),
    }
}

fn rustls_pki_types_der(der: &[u8]) -> rustls_pki_types::PrivatePkcs8KeyDer<'static> {
    rustls_pki_types::PrivatePkcs8KeyDer::from(der.to_vec())
}

fn idp() -> &'static Party {
    static P: OnceLock<Party> = OnceLock::new();
    P.get_or_init(party)
}

fn sp() -> &'static Party {
    static P: OnceLock<Party> = OnceLock::new();
    P.get_or_init(party)
}

fn stranger() -> &'static Party {
    static P: OnceLock<Party> = OnceLock::new();
    P.get_or_init(party)
}

const NOW: i64 = 1_796_652_180;

fn assertion() -> Assertion {
    Assertion {
        id: interkom_saml::new_id(),
        issuer: "https://interkom.example/saml".into(),
        issue_instant: NOW,
        name_id: "a1b2c3".into(),
        name_id_format: response::NAMEID_PERSISTENT.into(),
        sp_name_qualifier: Some("https://fv.example/sp".into()),
        recipient: "https://fv.example/acs".into(),
        in_response_to: Some("_req1".into()),
        not_before: NOW - 60,
        not_on_or_after: NOW + 300,
        audience: "https://fv.example/sp".into(),
        authn_instant: NOW - 10,
        session_index: "s-1".into(),
        class_ref: "urn:interkom:loa:substantial".into(),
        attributes: vec![
            Attribute {
                name: "urn:oid:0.9.2342.19200300.100.1.3".into(),
                friendly_name: Some("mail".into()),
                values: vec!["j.meyer@hitzacker.example".into()],
            },
            Attribute {
                name: "urn:interkom:roles".into(),
                friendly_name: None,
                values: vec!["sachbearbeitung".into(), "<kämmerei & co>".into()],
            },
        ],
    }
}

fn envelope() -> Envelope {
    Envelope {
        id: interkom_saml::new_id(),
        issuer: "https://interkom.example/saml".into(),
        issue_instant: NOW,
        destination: "https://fv.example/acs".into(),
        in_response_to: Some("_req1".into()),
        status: Status::success(),
    }
}

fn trusted(p: &Party) -> Trusted {
    Trusted::new(std::slice::from_ref(&p.key.cert)).unwrap()
}

fn write(p: &Protection<'_>) -> String {
    response::write(&envelope(), Some(&assertion()), &idp().key, p).unwrap()
}

#[test]
fn a_response_signed_twice_and_encrypted_reads_back() {
    for method in [
        Method::default(),
        Method::parse("aes256-gcm", "rsa-oaep").unwrap(),
        Method::parse("aes128-cbc", "rsa-oaep-mgf1p").unwrap(),
    ] {
        let xml = write(&Protection {
            sign_assertion: true,
            sign_response: true,
            encrypt_to: Some((&sp().key.cert, method)),
        });
        assert!(!xml.contains("j.meyer"), "the attributes are encrypted");
        let read = response::read(&xml, &trusted(idp()), Some(&sp().key)).unwrap();
        assert_eq!(
            read.assertion.unwrap(),
            assertion_with_id(&read_id(&xml, &sp().key))
        );
    }
}

fn read_id(xml: &str, key: &SigningKey) -> String {
    response::read(xml, &trusted(idp()), Some(key))
        .unwrap()
        .assertion
        .unwrap()
        .id
}

fn assertion_with_id(id: &str) -> Assertion {
    Assertion {
        id: id.to_owned(),
        ..assertion()
    }
}

#[test]
fn either_signature_suffices_and_none_does_not() {
    for (a, r) in [(true, false), (false, true), (true, true)] {
        let xml = write(&Protection {
            sign_assertion: a,
            sign_response: r,
            encrypt_to: None,
        });
        let read = response::read(&xml, &trusted(idp()), None).unwrap();
        assert_eq!(read.assertion.unwrap().name_id, "a1b2c3");
    }
    let unsigned = write(&Protection::default());
    assert!(matches!(
        response::read(&unsigned, &trusted(idp()), None),
        Err(SamlError::Signature(_))
    ));
}

#[test]
fn another_key_a_changed_byte_and_a_wrapped_assertion_are_refused() {
    let signed = write(&Protection {
        sign_assertion: true,
        sign_response: false,
        encrypt_to: None,
    });
    // Signed by the IdP, checked against another key.
    assert!(response::read(&signed, &trusted(stranger()), None).is_err());
    // A changed NameID.
    let changed = signed.replace(">a1b2c3<", ">admin<");
    assert!(response::read(&changed, &trusted(idp()), None).is_err());
    // XSW: the signed assertion moved into an Extensions-like wrapper, an
    // evil one put where the reader looks.
    let start = signed.find("<saml:Assertion").unwrap();
    let end = signed.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    let original = &signed[start..end];
    let evil = original
        .replace(">a1b2c3<", ">admin<")
        .replacen("ID=\"", "ID=\"evil", 1);
    let evil = strip_signature(&evil);
    let wrapped = format!(
        "{}{}<samlp:Extensions>{}</samlp:Extensions>{}",
        &signed[..start],
        evil,
        original,
        &signed[end..]
    );
    assert!(response::read(&wrapped, &trusted(idp()), None).is_err());
    // Two assertions side by side: not exactly one.
    let twice = format!("{}{}{}", &signed[..end], evil, &signed[end..]);
    assert!(response::read(&twice, &trusted(idp()), None).is_err());
    // A signed Response whose assertion was swapped for an unsigned one
    // with the same ID cannot pass: the Response's digest breaks.
    let whole = write(&Protection {
        sign_assertion: false,
        sign_response: true,
        encrypt_to: None,
    });
    let swapped = whole.replace(">a1b2c3<", ">admin<");
    assert!(response::read(&swapped, &trusted(idp()), None).is_err());
}

fn strip_signature(x: &str) -> String {
    match (x.find("<ds:Signature"), x.find("</ds:Signature>")) {
        (Some(s), Some(e)) => format!("{}{}", &x[..s], &x[e + "</ds:Signature>".len()..]),
        _ => x.to_owned(),
    }
}

#[test]
fn rsa_1_5_key_transport_and_dtds_are_refused() {
    let xml = write(&Protection {
        sign_assertion: true,
        sign_response: false,
        encrypt_to: Some((&sp().key.cert, Method::default())),
    });
    let weak = xml.replace(enc::RSA_OAEP_MGF1P, enc::RSA_1_5);
    assert!(matches!(
        response::read(&weak, &trusted(idp()), Some(&sp().key)),
        Err(SamlError::Encryption(_))
    ));
    let dtd = format!("<!DOCTYPE r [<!ENTITY x \"y\">]>{xml}");
    assert!(matches!(
        response::read(&dtd, &trusted(idp()), Some(&sp().key)),
        Err(SamlError::Dtd)
    ));
}

#[test]
fn an_error_status_carries_no_assertion() {
    let env = Envelope {
        status: Status {
            code: response::STATUS_RESPONDER.into(),
            sub_code: Some(response::STATUS_REQUEST_DENIED.into()),
            message: Some("{\"code\":\"IDP_REQUIRED_ATTRIBUTES_MISSING\"}".into()),
            detail: None,
        },
        ..envelope()
    };
    let xml = response::write(
        &env,
        None,
        &idp().key,
        &Protection {
            sign_response: true,
            ..Default::default()
        },
    )
    .unwrap();
    let read = response::read(&xml, &trusted(idp()), None).unwrap();
    assert!(read.assertion.is_none());
    assert_eq!(read.envelope.status, env.status);
}

#[test]
fn authn_requests_signed_in_the_message_and_over_the_query() {
    let req = AuthnRequest {
        id: "_req1".into(),
        issue_instant: NOW,
        issuer: "https://fv.example/sp".into(),
        destination: Some("https://interkom.example/saml/sso".into()),
        acs_url: Some("https://fv.example/acs".into()),
        acs_index: None,
        protocol_binding: Some(BINDING_POST.into()),
        force_authn: true,
        is_passive: false,
        name_id_format: Some(response::NAMEID_PERSISTENT.into()),
        requested: Some(RequestedContext {
            comparison: "minimum".into(),
            class_refs: vec!["http://eidas.europa.eu/LoA/substantial".into()],
        }),
    };
    let xml = req.to_xml(None);
    // POST: signed inside.
    let signed = dsig::sign(&xml, &req.id, &sp().key).unwrap();
    let (read, ok) = AuthnRequest::read(&signed, Some(&trusted(sp()))).unwrap();
    assert_eq!(read, req);
    assert!(ok);
    let (_, ok) = AuthnRequest::read(&signed, Some(&trusted(stranger()))).unwrap();
    assert!(!ok, "another SP's key");
    let (_, ok) = AuthnRequest::read(&xml, Some(&trusted(sp()))).unwrap();
    assert!(!ok, "unsigned");
    // Redirect: the query signed.
    let url = binding::redirect_url(
        "https://interkom.example/saml/sso",
        Param::Request,
        &xml,
        Some("relay"),
        Some(&|m: &[u8]| sp().key.sign_raw(m)),
    )
    .unwrap();
    let q = url.split_once('?').unwrap().1;
    let r = binding::redirect_read(q, Param::Request).unwrap();
    let sig = r.signature.clone().unwrap();
    let alg = r.sig_alg.clone().unwrap();
    dsig::verify_redirect(&r.signed_part, &alg, &sig, &[sp().key.cert.clone()]).unwrap();
    assert!(
        dsig::verify_redirect(&r.signed_part, &alg, &sig, &[stranger().key.cert.clone()]).is_err()
    );
    let tampered = r.signed_part.replace("relay", "other");
    assert!(dsig::verify_redirect(&tampered, &alg, &sig, &[sp().key.cert.clone()]).is_err());
    assert!(dsig::verify_redirect(
        &r.signed_part,
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        &sig,
        &[sp().key.cert.clone()]
    )
    .is_err());
}

#[test]
fn logout_messages_and_metadata_round_trip() {
    let lr = LogoutRequest {
        id: "_l1".into(),
        issue_instant: NOW,
        issuer: "https://fv.example/sp".into(),
        destination: Some("https://interkom.example/saml/slo".into()),
        name_id: "a1b2c3".into(),
        name_id_format: Some(response::NAMEID_PERSISTENT.into()),
        sp_name_qualifier: None,
        session_indexes: vec!["s-1".into()],
    };
    let signed = dsig::sign(&lr.to_xml(), &lr.id, &sp().key).unwrap();
    let (read, ok) = LogoutRequest::read(&signed, Some(&trusted(sp()))).unwrap();
    assert_eq!(read, lr);
    assert!(ok);
    let resp = LogoutResponse {
        id: "_l2".into(),
        issue_instant: NOW,
        issuer: "https://interkom.example/saml".into(),
        destination: Some("https://fv.example/slo".into()),
        in_response_to: "_l1".into(),
        status: response::STATUS_SUCCESS.into(),
    };
    assert_eq!(LogoutResponse::read(&resp.to_xml()).unwrap(), resp);

    let certs = [idp().key.cert.clone(), stranger().key.cert.clone()];
    let md = IdpMetadata {
        entity_id: "https://interkom.example/saml",
        sso_url: "https://interkom.example/saml/sso",
        slo_url: "https://interkom.example/saml/slo",
        signing: &certs,
        name_id_formats: &[response::NAMEID_PERSISTENT],
    }
    .to_xml();
    assert!(!md.contains("validUntil") && !md.contains(" ID="));
    let read = PartnerIdp::read(&md).unwrap();
    assert_eq!(read.entity_id, "https://interkom.example/saml");
    assert_eq!(
        read.signing,
        certs.to_vec(),
        "the next certificate is published too"
    );
    assert_eq!(read.sso.len(), 2);
}
