//! Encrypted assertions: XML Encryption of the Assertion element to the
//! recipient's certificate (a fresh content key, transported with
//! RSA-OAEP), by `bergshamra`. The insecure `rsa-1_5` key transport is
//! refused before anything is decrypted.

use bergshamra::keys::loader;
use bergshamra::{EncContext, KeysManager};

use crate::dsig::{Certificate, SigningKey};
use crate::SamlError;

pub const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
pub const AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
pub const AES256_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";
pub const AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
pub const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
pub const RSA_OAEP_11: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
pub const RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";

/// How an assertion is encrypted for a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    /// The content cipher (`AES256_GCM` by default).
    pub content: &'static str,
    /// `RSA_OAEP_MGF1P` (SHA-1, which libxmlsec1 1.2 and node-saml
    /// decrypt), or `RSA_OAEP_11` with SHA-256 and MGF1-SHA256.
    pub key_transport: &'static str,
}

impl Default for Method {
    fn default() -> Method {
        Method {
            content: AES256_GCM,
            key_transport: RSA_OAEP_MGF1P,
        }
    }
}

impl Method {
    /// A method by its names in a registration: `aes256-gcm`, `aes128-gcm`,
    /// `aes256-cbc`, `aes128-cbc`; `rsa-oaep-mgf1p`, `rsa-oaep`.
    pub fn parse(content: &str, key_transport: &str) -> Option<Method> {
        let content = match content {
            "aes256-gcm" => AES256_GCM,
            "aes128-gcm" => AES128_GCM,
            "aes256-cbc" => AES256_CBC,
            "aes128-cbc" => AES128_CBC,
            _ => return None,
        };
        let key_transport = match key_transport {
            "rsa-oaep-mgf1p" => RSA_OAEP_MGF1P,
            "rsa-oaep" => RSA_OAEP_11,
            _ => return None,
        };
        Some(Method {
            content,
            key_transport,
        })
    }

    fn key_transport_xml(&self) -> String {
        if self.key_transport == RSA_OAEP_11 {
            format!(
                concat!(
                    r#"<xenc:EncryptionMethod Algorithm="{}">"#,
                    r#"<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>"#,
                    r#"<xenc11:MGF xmlns:xenc11="http://www.w3.org/2009/xmlenc11#" Algorithm="http://www.w3.org/2009/xmlenc11#mgf1sha256"/>"#,
                    r#"</xenc:EncryptionMethod>"#
                ),
                RSA_OAEP_11
            )
        } else {
            format!(
                concat!(
                    r#"<xenc:EncryptionMethod Algorithm="{}">"#,
                    r#"<ds:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/>"#,
                    r#"</xenc:EncryptionMethod>"#
                ),
                RSA_OAEP_MGF1P
            )
        }
    }
}

/// `<xenc:EncryptedData>` of element `xml` for the holder of `cert`.
pub fn encrypt(xml: &str, cert: &Certificate, method: Method) -> Result<String, SamlError> {
    let template = format!(
        concat!(
            r#"<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" "#,
            r#"xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Type="http://www.w3.org/2001/04/xmlenc#Element">"#,
            r#"<xenc:EncryptionMethod Algorithm="{content}"/><ds:KeyInfo><xenc:EncryptedKey>{kt}"#,
            r#"<xenc:CipherData><xenc:CipherValue></xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>"#,
            r#"<xenc:CipherData><xenc:CipherValue></xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>"#
        ),
        content = method.content,
        kt = method.key_transport_xml(),
    );
    let mut km = KeysManager::new();
    km.add_key(loader::load_x509_cert_der(&cert.0).map_err(|e| SamlError::Key(e.to_string()))?);
    bergshamra::encrypt(&EncContext::new(km), &template, xml.as_bytes())
        .map_err(|e| SamlError::Encryption(e.to_string()))
}

/// Decrypts an `<xenc:EncryptedData>` (as its own document) with the
/// recipient's private key; returns the element it held.
pub fn decrypt(encrypted_data: &str, key: &SigningKey) -> Result<String, SamlError> {
    if encrypted_data.contains(RSA_1_5) {
        return Err(SamlError::Encryption(
            "RSA PKCS#1 v1.5 key transport is refused".into(),
        ));
    }
    let mut km = KeysManager::new();
    km.add_key(key.key().clone());
    let ctx = EncContext::new(km).with_disable_cipher_reference(true);
    bergshamra::decrypt(&ctx, encrypted_data).map_err(|e| SamlError::Encryption(e.to_string()))
}
