//! The AuthnRequest: read (interkom as identity provider) and written
//! (interkom as service provider).

use uppsala::{Document, NodeId};

use crate::dsig::Trusted;
use crate::xml::{self, attr, escape, ns, only_child};
use crate::{instant, SamlError};

pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";

/// `RequestedAuthnContext`: what the SP asks the login to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedContext {
    /// `exact` (the default), `minimum`, `better` or `maximum`.
    pub comparison: String,
    pub class_refs: Vec<String>,
}

/// An AuthnRequest as interkom reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnRequest {
    pub id: String,
    pub issue_instant: i64,
    pub issuer: String,
    pub destination: Option<String>,
    pub acs_url: Option<String>,
    pub acs_index: Option<u32>,
    pub protocol_binding: Option<String>,
    pub force_authn: bool,
    pub is_passive: bool,
    pub name_id_format: Option<String>,
    pub requested: Option<RequestedContext>,
}

fn boolean(v: Option<&str>) -> Result<bool, SamlError> {
    match v {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(SamlError::invalid(format!("`{other}` is not a boolean"))),
    }
}

impl AuthnRequest {
    /// Reads an AuthnRequest; `trusted`: the SP's keys, to tell whether the
    /// request itself is signed (POST binding; the Redirect binding signs
    /// the query instead). Returns the request and whether a trusted
    /// signature covers it.
    pub fn read(xml: &str, trusted: Option<&Trusted>) -> Result<(AuthnRequest, bool), SamlError> {
        let doc = xml::parse(xml)?;
        let root = doc
            .document_element()
            .ok_or_else(|| SamlError::invalid("empty message"))?;
        if !xml::is(&doc, root, ns::SAMLP, "AuthnRequest") {
            return Err(SamlError::invalid("not an AuthnRequest"));
        }
        let req = Self::from_node(&doc, root)?;
        let signed = match trusted {
            Some(t) => t.covers(&doc, xml, root)?,
            None => false,
        };
        Ok((req, signed))
    }

    fn from_node(doc: &Document<'_>, root: NodeId) -> Result<AuthnRequest, SamlError> {
        let need = |name: &str| {
            attr(doc, root, name)
                .map(str::to_owned)
                .ok_or_else(|| SamlError::invalid(format!("AuthnRequest without {name}")))
        };
        if attr(doc, root, "Version") != Some("2.0") {
            return Err(SamlError::invalid("not SAML 2.0"));
        }
        let id = need("ID")?;
        if id.is_empty() || id.len() > 256 {
            return Err(SamlError::invalid("a malformed ID"));
        }
        let issuer = only_child(doc, root, ns::SAML, "Issuer")?
            .ok_or_else(|| SamlError::invalid("AuthnRequest without Issuer"))?;
        let name_id_format = match only_child(doc, root, ns::SAMLP, "NameIDPolicy")? {
            Some(p) => attr(doc, p, "Format").map(str::to_owned),
            None => None,
        };
        let requested = match only_child(doc, root, ns::SAMLP, "RequestedAuthnContext")? {
            Some(r) => {
                let class_refs = xml::elements(doc, r)
                    .into_iter()
                    .filter(|c| xml::is(doc, *c, ns::SAML, "AuthnContextClassRef"))
                    .map(|c| xml::text(doc, c))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(RequestedContext {
                    comparison: attr(doc, r, "Comparison").unwrap_or("exact").to_owned(),
                    class_refs,
                })
            }
            None => None,
        };
        Ok(AuthnRequest {
            id,
            issue_instant: instant::parse(&need("IssueInstant")?)?,
            issuer: xml::text(doc, issuer)?,
            destination: attr(doc, root, "Destination").map(str::to_owned),
            acs_url: attr(doc, root, "AssertionConsumerServiceURL").map(str::to_owned),
            acs_index: attr(doc, root, "AssertionConsumerServiceIndex")
                .map(|v| {
                    v.parse()
                        .map_err(|_| SamlError::invalid("a malformed ACS index"))
                })
                .transpose()?,
            protocol_binding: attr(doc, root, "ProtocolBinding").map(str::to_owned),
            force_authn: boolean(attr(doc, root, "ForceAuthn"))?,
            is_passive: boolean(attr(doc, root, "IsPassive"))?,
            name_id_format,
            requested,
        })
    }

    /// The request as interkom sends it to an IdP; `extensions`: the
    /// source's `<samlp:Extensions>` content (configured XML, e.g. the AKDB
    /// extension of BundID), inserted as given.
    pub fn to_xml(&self, extensions: Option<&str>) -> String {
        let mut x = format!(
            r#"<samlp:AuthnRequest xmlns:samlp="{}" xmlns:saml="{}" ID="{}" Version="2.0" IssueInstant="{}""#,
            ns::SAMLP,
            ns::SAML,
            escape(&self.id),
            instant::format(self.issue_instant)
        );
        if let Some(d) = &self.destination {
            x.push_str(&format!(r#" Destination="{}""#, escape(d)));
        }
        if let Some(a) = &self.acs_url {
            x.push_str(&format!(r#" AssertionConsumerServiceURL="{}""#, escape(a)));
        }
        if let Some(b) = &self.protocol_binding {
            x.push_str(&format!(r#" ProtocolBinding="{}""#, escape(b)));
        }
        if self.force_authn {
            x.push_str(r#" ForceAuthn="true""#);
        }
        x.push_str(&format!(
            "><saml:Issuer>{}</saml:Issuer>",
            escape(&self.issuer)
        ));
        if let Some(e) = extensions {
            x.push_str(&format!("<samlp:Extensions>{e}</samlp:Extensions>"));
        }
        if let Some(f) = &self.name_id_format {
            x.push_str(&format!(
                r#"<samlp:NameIDPolicy Format="{}" AllowCreate="true"/>"#,
                escape(f)
            ));
        }
        if let Some(r) = &self.requested {
            x.push_str(&format!(
                r#"<samlp:RequestedAuthnContext Comparison="{}">"#,
                escape(&r.comparison)
            ));
            for c in &r.class_refs {
                x.push_str(&format!(
                    "<saml:AuthnContextClassRef>{}</saml:AuthnContextClassRef>",
                    escape(c)
                ));
            }
            x.push_str("</samlp:RequestedAuthnContext>");
        }
        x.push_str("</samlp:AuthnRequest>");
        x
    }
}
