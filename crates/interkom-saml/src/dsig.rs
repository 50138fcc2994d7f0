//! Enveloped XML signatures (exclusive C14N, RSA-SHA256, SHA-256 digest):
//! made and checked by `bergshamra`. What is added here is the SAML rule
//! against signature wrapping: an element counts as signed only if it is
//! the node a valid signature's reference resolved to, checked against the
//! expected keys only (never a key the message brings along).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bergshamra::keys::loader;
use bergshamra::{DsigContext, KeysManager, VerifyResult};
use uppsala::{Document, NodeId};

use crate::SamlError;

pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const RSA_PSS_SHA256: &str = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1";

/// An X.509 certificate (DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate(pub Vec<u8>);

impl Certificate {
    /// From the base64 of metadata's `<ds:X509Certificate>` or from PEM.
    pub fn parse(text: &str) -> Result<Certificate, SamlError> {
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.chars())
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|_| SamlError::Key("a certificate is not base64".into()))?;
        loader::load_x509_cert_der(&der).map_err(|e| SamlError::Key(e.to_string()))?;
        Ok(Certificate(der))
    }

    /// The base64 form metadata and KeyInfo carry.
    pub fn base64(&self) -> String {
        STANDARD.encode(&self.0)
    }

    /// The certificate's public key (SubjectPublicKeyInfo, DER).
    pub fn spki(&self) -> Result<Vec<u8>, SamlError> {
        loader::load_x509_cert_der(&self.0)
            .map_err(|e| SamlError::Key(e.to_string()))?
            .to_spki_der()
            .ok_or_else(|| SamlError::Key("a certificate without a usable key".into()))
    }
}

/// An RSA private key (PKCS#8 DER) with its certificate, parsed once:
/// parsing (and the key's CRT values) would otherwise be paid per message.
#[derive(Clone)]
pub struct SigningKey {
    key: bergshamra::keys::Key,
    rsa: rsa::RsaPrivateKey,
    pub cert: Certificate,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn new(pkcs8_der: &[u8], cert: Certificate) -> Result<SigningKey, SamlError> {
        let b64 = STANDARD.encode(pkcs8_der);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        let key = loader::load_rsa_private_pem(pem.as_bytes())
            .map_err(|e| SamlError::Key(e.to_string()))?;
        use rsa::pkcs8::DecodePrivateKey;
        let rsa = rsa::RsaPrivateKey::from_pkcs8_der(pkcs8_der)
            .map_err(|e| SamlError::Key(e.to_string()))?;
        Ok(SigningKey { key, rsa, cert })
    }

    fn context(&self) -> DsigContext {
        let mut km = KeysManager::new();
        km.add_key(self.key.clone());
        DsigContext::new(km)
    }

    /// The parsed key, for decryption.
    pub(crate) fn key(&self) -> &bergshamra::keys::Key {
        &self.key
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `msg` (the Redirect binding's
    /// query signature).
    pub fn sign_raw(&self, msg: &[u8]) -> Result<Vec<u8>, SamlError> {
        use rsa::signature::{SignatureEncoding, Signer};
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(self.rsa.clone());
        Ok(signer.sign(msg).to_vec())
    }
}

/// The empty signature of element `id` (filled in by [`sign`]).
fn template(id: &str, cert: &Certificate) -> String {
    format!(
        concat!(
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="{c14n}"/><ds:SignatureMethod Algorithm="{alg}"/>"#,
            r##"<ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="{env}"/>"##,
            r#"<ds:Transform Algorithm="{c14n}"/></ds:Transforms><ds:DigestMethod Algorithm="{dig}"/>"#,
            r#"<ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>"#,
            r#"<ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data>"#,
            r#"<ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"#,
        ),
        c14n = EXC_C14N,
        alg = RSA_SHA256,
        env = ENVELOPED,
        dig = SHA256,
        id = id,
        cert = cert.base64(),
    )
}

/// Signs the element that `xml` is (its `ID` is `id`): the signature goes
/// right after its `<saml:Issuer>` (where the schema wants it), or first.
/// Elements already signed inside it (an Assertion in a Response) stay as
/// they are: the new signature is the first in document order.
pub fn sign(xml: &str, id: &str, key: &SigningKey) -> Result<String, SamlError> {
    let sig = template(id, &key.cert);
    let at = match xml.find("</saml:Issuer>") {
        // The element's own Issuer comes before any nested element's.
        Some(i) if xml[..i].matches('<').count() <= 2 => i + "</saml:Issuer>".len(),
        _ => xml
            .find('>')
            .map(|i| i + 1)
            .ok_or_else(|| SamlError::invalid("no element to sign"))?,
    };
    let mut templated = String::with_capacity(xml.len() + sig.len());
    templated.push_str(&xml[..at]);
    templated.push_str(&sig);
    templated.push_str(&xml[at..]);
    bergshamra::sign(&key.context(), &templated).map_err(|e| SamlError::Signature(e.to_string()))
}

/// Keys a message is checked against (an IdP's or SP's certificates).
pub struct Trusted {
    ctx: DsigContext,
}

impl Trusted {
    pub fn new(certs: &[Certificate]) -> Result<Trusted, SamlError> {
        if certs.is_empty() {
            return Err(SamlError::Key("no certificate to check against".into()));
        }
        let mut km = KeysManager::new();
        for c in certs {
            km.add_key(
                loader::load_x509_cert_der(&c.0).map_err(|e| SamlError::Key(e.to_string()))?,
            );
        }
        // trusted keys only, strict reference positions (bergshamra's SAML
        // defaults), the `ID` attribute as the id.
        let ctx = DsigContext::new(km);
        Ok(Trusted { ctx })
    }

    /// The elements of `doc` (parsed from `xml`) that a valid signature by a
    /// trusted key covers.
    pub fn signed_nodes(&self, doc: &Document<'_>, xml: &str) -> Result<Vec<NodeId>, SamlError> {
        let results = match bergshamra::dsig::verify::verify_all_document_with_source(
            &self.ctx,
            doc,
            Some(xml),
        ) {
            Ok(r) => r,
            Err(bergshamra::Error::MissingElement(_)) => return Ok(Vec::new()),
            Err(e) => return Err(SamlError::Signature(e.to_string())),
        };
        let mut nodes = Vec::new();
        for r in results {
            if let VerifyResult::Valid { references, .. } = &r {
                if !r.all_reference_digests_verified() {
                    continue;
                }
                nodes.extend(references.iter().filter_map(|x| x.resolved_node));
            }
        }
        Ok(nodes)
    }

    /// Whether element `id` of `doc` is covered by a valid signature.
    pub fn covers(&self, doc: &Document<'_>, xml: &str, id: NodeId) -> Result<bool, SamlError> {
        Ok(self.signed_nodes(doc, xml)?.contains(&id))
    }
}

/// Checks an HTTP-Redirect signature (RSA-SHA256 only) over
/// `signed_part` against `certs`.
pub fn verify_redirect(
    signed_part: &str,
    sig_alg: &str,
    signature: &[u8],
    certs: &[Certificate],
) -> Result<(), SamlError> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    if sig_alg != RSA_SHA256 {
        return Err(SamlError::Signature(format!(
            "SigAlg `{sig_alg}` is not accepted"
        )));
    }
    let sig = rsa::pkcs1v15::Signature::try_from(signature)
        .map_err(|_| SamlError::Signature("malformed".into()))?;
    for c in certs {
        let Ok(pk) = rsa::RsaPublicKey::from_public_key_der(&c.spki()?) else {
            continue;
        };
        let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk);
        if vk.verify(signed_part.as_bytes(), &sig).is_ok() {
            return Ok(());
        }
    }
    Err(SamlError::Signature("not made by the sender's key".into()))
}
