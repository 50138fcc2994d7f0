//! Untrusted XML: refused before parsing when it is too large or declares
//! a DTD or entities (XXE, billion laughs); then read as a tree whose
//! nodes are the ones signature verification names.

use uppsala::{Document, NodeId};

use crate::SamlError;

/// The largest message read (decoded, inflated).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// Namespaces of SAML 2.0 and XML security.
pub mod ns {
    pub const SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
    pub const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
    pub const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
    pub const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
    pub const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
    pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
}

/// Checks what comes in before any parser sees it.
pub fn check_untrusted(xml: &str) -> Result<(), SamlError> {
    if xml.len() > MAX_MESSAGE {
        return Err(SamlError::TooLarge(MAX_MESSAGE));
    }
    // A DTD has no place in SAML: refused by its markup, whatever case.
    let lower = xml.as_bytes().windows(9).any(|w| {
        w[0] == b'<' && w[1] == b'!' && {
            let k: Vec<u8> = w[2..].iter().map(u8::to_ascii_uppercase).collect();
            k.starts_with(b"DOCTYPE") || k.starts_with(b"ENTITY")
        }
    });
    if lower {
        return Err(SamlError::Dtd);
    }
    Ok(())
}

/// Parses untrusted XML after [`check_untrusted`].
pub fn parse(xml: &str) -> Result<Document<'_>, SamlError> {
    check_untrusted(xml)?;
    uppsala::parse(xml).map_err(|e| SamlError::Xml(e.to_string()))
}

/// Whether node `id` is the element `ns:local`.
pub fn is(doc: &Document<'_>, id: NodeId, ns: &str, local: &str) -> bool {
    doc.element(id)
        .is_some_and(|e| e.matches_name_ns(ns, local))
}

/// The child elements of `id` (text, comments and PIs left out).
pub fn elements(doc: &Document<'_>, id: NodeId) -> Vec<NodeId> {
    doc.children(id)
        .into_iter()
        .filter(|c| doc.element(*c).is_some())
        .collect()
}

/// The only child element `ns:local` of `id`; more than one is an error
/// (a second Issuer or Assertion is how wrapping attacks begin).
pub fn only_child(
    doc: &Document<'_>,
    id: NodeId,
    ns: &str,
    local: &str,
) -> Result<Option<NodeId>, SamlError> {
    let found: Vec<NodeId> = elements(doc, id)
        .into_iter()
        .filter(|c| is(doc, *c, ns, local))
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        _ => Err(SamlError::invalid(format!("more than one {local}"))),
    }
}

/// The text of a simple element. Mixed content (a comment inside a NameID,
/// which splits its text) is refused rather than read in part.
pub fn text(doc: &Document<'_>, id: NodeId) -> Result<String, SamlError> {
    let children = doc.children(id);
    if children.len() > 1 {
        return Err(SamlError::invalid("an element with mixed content"));
    }
    Ok(doc.text_content_deep(id).trim().to_owned())
}

pub fn attr<'d>(doc: &'d Document<'_>, id: NodeId, name: &str) -> Option<&'d str> {
    doc.get_attribute(id, name)
}

/// Escapes text for an element or an attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtds_and_entities_are_refused_before_parsing() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><a>&lol2;</a>"#;
        assert!(matches!(check_untrusted(laughs), Err(SamlError::Dtd)));
        let xxe = r#"<!doctype a [<!entity x SYSTEM "file:///etc/passwd">]><a>&x;</a>"#;
        assert!(matches!(parse(xxe), Err(SamlError::Dtd)));
        let big = format!("<a>{}</a>", "x".repeat(MAX_MESSAGE));
        assert!(matches!(check_untrusted(&big), Err(SamlError::TooLarge(_))));
        assert!(parse("<a><b>x</b></a>").is_ok());
    }

    #[test]
    fn a_comment_inside_a_name_is_not_read_in_part() {
        let doc = parse("<a><n>admin<!---->.evil</n></a>").unwrap();
        let a = doc.document_element().unwrap();
        let n = elements(&doc, a)[0];
        assert!(text(&doc, n).is_err());
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
    }
}
