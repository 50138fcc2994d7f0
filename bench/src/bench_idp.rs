//! interkom-bench-idp: the SAML identity provider of the `saml_acs`
//! benchmark — an RSA-2048 key with a self-signed certificate — written as
//! files for `scripts/bench-http`: `PREFIX.key` and `PREFIX.crt` (base64
//! DER, for `interkom-load --saml-idp PREFIX`), `PREFIX.xml` (its metadata)
//! and `PREFIX.json` (the source registration for `interkom saml-source
//! put`), citizens' source `bench-idp` with BundID's level and attribute
//! names.

use std::path::PathBuf;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Parser;
use rsa::pkcs8::EncodePrivateKey;

#[derive(Parser)]
#[command(
    name = "interkom-bench-idp",
    about = "Writes the saml_acs benchmark's IdP"
)]
struct Cli {
    /// Where the files go (`PREFIX.key`, `.crt`, `.xml`, `.json`).
    #[arg(long)]
    out: PathBuf,
}

/// The IdP's entity id.
pub const ENTITY: &str = "https://bench-idp.example/idp";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
    let der = private.to_pkcs8_der()?;
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec()),
        &rcgen::PKCS_RSA_SHA256,
    )?;
    let cert = rcgen::CertificateParams::new(vec!["bench-idp.example".into()])?.self_signed(&kp)?;
    let cert = interkom_saml::dsig::Certificate(cert.der().to_vec());
    let md = interkom_saml::metadata::IdpMetadata {
        entity_id: ENTITY,
        sso_url: "https://bench-idp.example/sso",
        slo_url: "https://bench-idp.example/slo",
        signing: std::slice::from_ref(&cert),
        name_id_formats: &[interkom_saml::response::NAMEID_TRANSIENT],
    }
    .to_xml();
    let source = serde_json::json!({
        "id": "bench-idp",
        "tenant": "lk-luechow-dannenberg",
        "name": "BundID (Last)",
        "population": "citizen",
        "levels": [
            { "name": "STORK-QAA-Level-1", "loa": "low" },
            { "name": "STORK-QAA-Level-3", "loa": "substantial" },
            { "name": "STORK-QAA-Level-4", "loa": "high" }
        ],
        "level_attribute": "urn:oid:1.2.40.0.10.2.1.1.261.94",
        "pseudonym_attribute": "urn:oid:1.3.6.1.4.1.25484.494450.3",
        "attributes": {
            "given_name": "urn:oid:2.5.4.42",
            "family_name": "urn:oid:2.5.4.4",
            "address": "urn:oid:2.5.4.16"
        }
    });
    let write = |ext: &str, text: String| {
        let path = cli.out.with_extension(ext);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("key", STANDARD.encode(der.as_bytes()))?;
    write("crt", STANDARD.encode(&cert.0))?;
    write("xml", md)?;
    write("json", serde_json::to_string_pretty(&source)?)?;
    Ok(())
}
