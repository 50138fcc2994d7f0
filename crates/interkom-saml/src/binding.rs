//! The two bindings a browser carries SAML messages in.
//!
//! - HTTP-Redirect: the message DEFLATE-compressed, base64, in the query;
//!   its signature covers the query as sent (`SAMLRequest=…&RelayState=…
//!   &SigAlg=…`, the values as they came, still URL-encoded), so the
//!   signed part is cut from the raw query, never re-encoded.
//! - HTTP-POST: the message base64 in a form field, its signature inside
//!   the XML.
//!
//! Both are capped before and after decoding (a small DEFLATE stream can
//! inflate to gigabytes).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::xml::{escape, MAX_MESSAGE};
use crate::SamlError;

/// The signature algorithm of the Redirect binding interkom signs and
/// accepts.
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// Which message a binding carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Request,
    Response,
}

impl Param {
    pub fn name(self) -> &'static str {
        match self {
            Param::Request => "SAMLRequest",
            Param::Response => "SAMLResponse",
        }
    }
}

fn b64(value: &str) -> Result<Vec<u8>, SamlError> {
    // Line breaks and spaces are common in POSTed base64.
    let clean: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if clean.len() > MAX_MESSAGE * 4 / 3 + 4 {
        return Err(SamlError::TooLarge(MAX_MESSAGE));
    }
    STANDARD
        .decode(clean.as_bytes())
        .map_err(|_| SamlError::Encoding("not base64"))
}

fn utf8(bytes: Vec<u8>) -> Result<String, SamlError> {
    String::from_utf8(bytes).map_err(|_| SamlError::Encoding("not UTF-8"))
}

/// The message of an HTTP-POST form field.
pub fn post_decode(value: &str) -> Result<String, SamlError> {
    utf8(b64(value)?)
}

pub fn post_encode(xml: &str) -> String {
    STANDARD.encode(xml.as_bytes())
}

/// The message of an HTTP-Redirect parameter (already URL-decoded).
pub fn redirect_decode(value: &str) -> Result<String, SamlError> {
    let compressed = b64(value)?;
    let xml = miniz_oxide::inflate::decompress_to_vec_with_limit(&compressed, MAX_MESSAGE)
        .map_err(|e| match e.status {
            miniz_oxide::inflate::TINFLStatus::HasMoreOutput => SamlError::TooLarge(MAX_MESSAGE),
            _ => SamlError::Encoding("not DEFLATE"),
        })?;
    utf8(xml)
}

pub fn redirect_encode(xml: &str) -> String {
    STANDARD.encode(miniz_oxide::deflate::compress_to_vec(xml.as_bytes(), 6))
}

/// A message received over HTTP-Redirect.
#[derive(Debug, Clone)]
pub struct Redirected {
    pub xml: String,
    pub relay_state: Option<String>,
    /// `SigAlg` and the signature, when the sender signed.
    pub sig_alg: Option<String>,
    pub signature: Option<Vec<u8>>,
    /// The octets the signature covers, as they were sent.
    pub signed_part: String,
}

/// Reads an HTTP-Redirect query (`raw`: as received, still URL-encoded).
/// A parameter given twice is refused.
pub fn redirect_read(raw: &str, param: Param) -> Result<Redirected, SamlError> {
    let mut message = None;
    let mut relay = None;
    let mut sig_alg = None;
    let mut signature = None;
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, _) = part.split_once('=').unwrap_or((part, ""));
        let slot = match k {
            k if k == param.name() => &mut message,
            "RelayState" => &mut relay,
            "SigAlg" => &mut sig_alg,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(part).is_some() {
            return Err(SamlError::invalid(format!("`{k}` given twice")));
        }
    }
    let decode = |part: &str| -> String {
        let v = part.split_once('=').map_or("", |(_, v)| v);
        url::form_urlencoded::parse(format!("v={v}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let msg_part = message.ok_or_else(|| SamlError::invalid(format!("no {}", param.name())))?;
    let xml = redirect_decode(&decode(msg_part))?;
    // The order the specification fixes, whatever order they came in.
    let mut signed_part = msg_part.to_owned();
    if let Some(r) = relay {
        signed_part.push('&');
        signed_part.push_str(r);
    }
    if let Some(a) = sig_alg {
        signed_part.push('&');
        signed_part.push_str(a);
    }
    let signature = match signature {
        Some(s) => Some(b64(&decode(s))?),
        None => None,
    };
    Ok(Redirected {
        xml,
        relay_state: relay.map(decode),
        sig_alg: sig_alg.map(decode),
        signature,
        signed_part,
    })
}

/// Signs the octets of a Redirect query (RSA-SHA256); the signature.
pub type QuerySigner<'a> = &'a dyn Fn(&[u8]) -> Result<Vec<u8>, SamlError>;

/// The URL of an HTTP-Redirect message to `endpoint`; `sign` signs the
/// query with RSA-SHA256 (returns the signature octets) when given.
pub fn redirect_url(
    endpoint: &str,
    param: Param,
    xml: &str,
    relay_state: Option<&str>,
    sign: Option<QuerySigner<'_>>,
) -> Result<String, SamlError> {
    let enc = |v: &str| -> String { url::form_urlencoded::byte_serialize(v.as_bytes()).collect() };
    let mut q = format!("{}={}", param.name(), enc(&redirect_encode(xml)));
    if let Some(r) = relay_state {
        q.push_str("&RelayState=");
        q.push_str(&enc(r));
    }
    if let Some(sign) = sign {
        q.push_str("&SigAlg=");
        q.push_str(&enc(RSA_SHA256));
        let sig = sign(q.as_bytes())?;
        q.push_str("&Signature=");
        q.push_str(&enc(&STANDARD.encode(sig)));
    }
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    Ok(format!("{endpoint}{sep}{q}"))
}

/// The fields of an HTTP-POST form to `endpoint` (the page that posts it is
/// the caller's, with its own Content-Security-Policy).
pub fn post_fields(
    param: Param,
    xml: &str,
    relay_state: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut f = vec![(param.name(), post_encode(xml))];
    if let Some(r) = relay_state {
        f.push(("RelayState", r.to_owned()));
    }
    f
}

/// A minimal HTML form of [`post_fields`] (escaped), for pages that embed it.
pub fn post_form_html(endpoint: &str, fields: &[(&'static str, String)]) -> String {
    let mut html = format!(r#"<form method="post" action="{}">"#, escape(endpoint));
    for (k, v) in fields {
        html.push_str(&format!(
            r#"<input type="hidden" name="{k}" value="{}">"#,
            escape(v)
        ));
    }
    html.push_str("</form>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_round_trip_keeps_the_signed_part_as_sent() {
        let xml = "<samlp:AuthnRequest ID=\"_1\"/>";
        let url = redirect_url(
            "https://idp.example/sso",
            Param::Request,
            xml,
            Some("zurück"),
            Some(&|m: &[u8]| Ok(m.to_vec())),
        )
        .unwrap();
        let q = url.split_once('?').unwrap().1;
        let r = redirect_read(q, Param::Request).unwrap();
        assert_eq!(r.xml, xml);
        assert_eq!(r.relay_state.as_deref(), Some("zurück"));
        assert_eq!(r.sig_alg.as_deref(), Some(RSA_SHA256));
        // The "signature" here is the signed octets themselves.
        assert_eq!(r.signature.unwrap(), r.signed_part.as_bytes());
    }

    #[test]
    fn repeated_parameters_and_inflation_bombs_are_refused() {
        assert!(redirect_read("SAMLRequest=a&SAMLRequest=b", Param::Request).is_err());
        let bomb = STANDARD.encode(miniz_oxide::deflate::compress_to_vec(
            &vec![b'a'; MAX_MESSAGE * 4],
            9,
        ));
        assert!(matches!(
            redirect_decode(&bomb),
            Err(SamlError::TooLarge(_))
        ));
        assert!(redirect_decode("!!!").is_err());
        assert!(post_decode("////").is_err());
    }
}
