//! A SAML identity provider forged in the tests: its key, its metadata,
//! the source registration for it and the Responses it sends — every byte
//! under the test's control (the malicious-response set, the cluster).

use std::sync::OnceLock;

use interkom_directory::saml_sources::{LevelName, RequestBinding, SamlSourceConfig};
use interkom_policy::{Loa, Population};
use interkom_saml::dsig::{self, Certificate, SigningKey};
use interkom_saml::metadata::IdpMetadata;
use interkom_saml::response::{self, Assertion, Attribute, Envelope, Protection, Status};
use rsa::pkcs8::EncodePrivateKey;

pub const IDP: &str = "https://idp.forged.test/idp";
pub const BPK2: &str = "urn:oid:1.3.6.1.4.1.25484.494450.3";
pub const LEVEL: &str = "urn:oid:1.2.40.0.10.2.1.1.261.94";

fn key() -> SigningKey {
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let der = private.to_pkcs8_der().unwrap();
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let cert = rcgen::CertificateParams::new(vec!["idp.forged.test".into()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    SigningKey::new(der.as_bytes(), Certificate(cert.der().to_vec())).unwrap()
}

/// The forged IdP's key (registered) and a stranger's (not).
pub fn idp_key() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(key)
}
pub fn stranger_key() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(key)
}

/// The metadata of the forged IdP.
pub fn metadata() -> String {
    IdpMetadata {
        entity_id: IDP,
        sso_url: "https://idp.forged.test/sso",
        slo_url: "https://idp.forged.test/slo",
        signing: std::slice::from_ref(&idp_key().cert),
        name_id_formats: &[response::NAMEID_TRANSIENT],
    }
    .to_xml()
}

/// Its registration as the citizens' source `forged`.
pub fn source() -> SamlSourceConfig {
    let level = |name: &str, loa| LevelName {
        name: name.into(),
        loa,
    };
    SamlSourceConfig {
        id: "forged".into(),
        tenant: "lk-luechow-dannenberg".into(),
        name: "Forged".into(),
        description: String::new(),
        population: Population::Citizen,
        metadata_url: None,
        metadata_file: None,
        binding: RequestBinding::Post,
        levels: vec![
            level("STORK-QAA-Level-1", Loa::Low),
            level("STORK-QAA-Level-3", Loa::Substantial),
            level("STORK-QAA-Level-4", Loa::High),
        ],
        level_attribute: Some(LEVEL.into()),
        pseudonym_attribute: BPK2.into(),
        attributes: [("given_name".to_owned(), "urn:oid:2.5.4.42".to_owned())].into(),
        extensions: None,
        requested_attribute: None,
        force_authn: false,
        clock_skew: 60,
    }
}

/// The id of the AuthnRequest on the page that posts it to the IdP.
pub fn request_id(page: &str) -> String {
    let request = crate::common::hidden(page, "SAMLRequest");
    let xml = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, request).unwrap(),
    )
    .unwrap();
    crate::common::attr(&xml, "ID")
}

/// A Response as the forged IdP would send it for request `irt`.
pub struct Forge {
    pub irt: String,
    pub acs: String,
    pub audience: String,
    pub now: i64,
}

impl Forge {
    pub fn assertion(&self, pseudonym: &str) -> Assertion {
        Assertion {
            id: interkom_saml::new_id(),
            issuer: IDP.into(),
            issue_instant: self.now,
            name_id: "_transient".into(),
            name_id_format: response::NAMEID_TRANSIENT.into(),
            sp_name_qualifier: None,
            recipient: self.acs.clone(),
            in_response_to: Some(self.irt.clone()),
            not_before: self.now - 5,
            not_on_or_after: self.now + 300,
            audience: self.audience.clone(),
            authn_instant: self.now,
            session_index: "_s".into(),
            class_ref: "STORK-QAA-Level-4".into(),
            attributes: vec![
                Attribute {
                    name: BPK2.into(),
                    friendly_name: Some("bPK2".into()),
                    values: vec![pseudonym.into()],
                },
                Attribute {
                    name: LEVEL.into(),
                    friendly_name: None,
                    values: vec!["STORK-QAA-Level-4".into()],
                },
                Attribute {
                    name: "urn:oid:2.5.4.42".into(),
                    friendly_name: Some("givenName".into()),
                    values: vec!["Erika".into()],
                },
            ],
        }
    }

    pub fn envelope(&self) -> Envelope {
        Envelope {
            id: interkom_saml::new_id(),
            issuer: IDP.into(),
            issue_instant: self.now,
            destination: self.acs.clone(),
            in_response_to: Some(self.irt.clone()),
            status: Status::success(),
        }
    }

    /// A Response around `inner` (assertions as XML), unsigned.
    pub fn wrap(&self, inner: &str) -> String {
        let shell =
            response::write(&self.envelope(), None, idp_key(), &Protection::default()).unwrap();
        shell.replace("</samlp:Response>", &format!("{inner}</samlp:Response>"))
    }

    /// A Response with `a` signed and encrypted to `to` (interkom's
    /// certificate), as BundID sends it.
    pub fn encrypted(&self, a: &Assertion, to: &Certificate) -> String {
        response::write(
            &self.envelope(),
            Some(a),
            idp_key(),
            &Protection {
                sign_assertion: true,
                sign_response: false,
                encrypt_to: Some((to, interkom_saml::enc::Method::default())),
            },
        )
        .unwrap()
    }

    pub fn signed(&self, a: &Assertion, key: &SigningKey) -> String {
        dsig::sign(&a.to_xml(), &a.id, key).unwrap()
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
