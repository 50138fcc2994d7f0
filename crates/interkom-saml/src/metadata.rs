//! Metadata: interkom's (as identity provider; as service provider) and
//! what interkom reads of a partner's.
//!
//! interkom's metadata has no `validUntil` and no `ID` (BundID derives its
//! pseudonym from the SP's entity id, which never changes), and lists a
//! second certificate ahead of a key rotation.

use crate::authn::{BINDING_POST, BINDING_REDIRECT};
use crate::dsig::Certificate;
use crate::xml::{self, attr, escape, ns};
use crate::SamlError;

/// interkom as identity provider.
pub struct IdpMetadata<'a> {
    pub entity_id: &'a str,
    pub sso_url: &'a str,
    pub slo_url: &'a str,
    /// The signing certificates, the current one first.
    pub signing: &'a [Certificate],
    pub name_id_formats: &'a [&'a str],
}

fn key_descriptor(use_: &str, c: &Certificate) -> String {
    format!(
        r#"<md:KeyDescriptor use="{use_}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
        c.base64()
    )
}

impl IdpMetadata<'_> {
    pub fn to_xml(&self) -> String {
        let mut x = format!(
            r#"<md:EntityDescriptor xmlns:md="{}" xmlns:ds="{}" entityID="{}"><md:IDPSSODescriptor WantAuthnRequestsSigned="false" protocolSupportEnumeration="{}">"#,
            ns::MD,
            ns::DS,
            escape(self.entity_id),
            ns::SAMLP
        );
        for c in self.signing {
            x.push_str(&key_descriptor("signing", c));
        }
        for b in [BINDING_REDIRECT, BINDING_POST] {
            x.push_str(&format!(
                r#"<md:SingleLogoutService Binding="{b}" Location="{}"/>"#,
                escape(self.slo_url)
            ));
        }
        for f in self.name_id_formats {
            x.push_str(&format!("<md:NameIDFormat>{}</md:NameIDFormat>", escape(f)));
        }
        for b in [BINDING_REDIRECT, BINDING_POST] {
            x.push_str(&format!(
                r#"<md:SingleSignOnService Binding="{b}" Location="{}"/>"#,
                escape(self.sso_url)
            ));
        }
        x.push_str("</md:IDPSSODescriptor></md:EntityDescriptor>");
        x
    }
}

/// interkom as service provider (of an identity source such as BundID).
pub struct SpOwnMetadata<'a> {
    /// Never changes once in production: BundID derives the pseudonym
    /// from it.
    pub entity_id: &'a str,
    pub acs_url: &'a str,
    /// Where the IdP sends logout messages, if interkom takes them.
    pub slo_url: Option<&'a str>,
    /// The certificates, the current one first, then one published ahead
    /// of a rotation; each for signing and for encryption.
    pub certs: &'a [Certificate],
    pub name_id_formats: &'a [&'a str],
    /// The organisation shown by the IdP (`md:Organization`), if any.
    pub organization: Option<(&'a str, &'a str)>,
}

impl SpOwnMetadata<'_> {
    pub fn to_xml(&self) -> String {
        let mut x = format!(
            r#"<md:EntityDescriptor xmlns:md="{}" xmlns:ds="{}" entityID="{}"><md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true" protocolSupportEnumeration="{}">"#,
            ns::MD,
            ns::DS,
            escape(self.entity_id),
            ns::SAMLP
        );
        for c in self.certs {
            x.push_str(&key_descriptor("signing", c));
            x.push_str(&key_descriptor("encryption", c));
        }
        for b in [BINDING_REDIRECT, BINDING_POST] {
            if let Some(slo) = self.slo_url {
                x.push_str(&format!(
                    r#"<md:SingleLogoutService Binding="{b}" Location="{}"/>"#,
                    escape(slo)
                ));
            }
        }
        for f in self.name_id_formats {
            x.push_str(&format!("<md:NameIDFormat>{}</md:NameIDFormat>", escape(f)));
        }
        x.push_str(&format!(
            r#"<md:AssertionConsumerService Binding="{BINDING_POST}" Location="{}" index="0" isDefault="true"/>"#,
            escape(self.acs_url)
        ));
        x.push_str("</md:SPSSODescriptor>");
        if let Some((name, url)) = self.organization {
            x.push_str(&format!(
                r#"<md:Organization><md:OrganizationName xml:lang="de">{n}</md:OrganizationName><md:OrganizationDisplayName xml:lang="de">{n}</md:OrganizationDisplayName><md:OrganizationURL xml:lang="de">{u}</md:OrganizationURL></md:Organization>"#,
                n = escape(name),
                u = escape(url)
            ));
        }
        x.push_str("</md:EntityDescriptor>");
        x
    }
}

/// An endpoint of a partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub binding: String,
    pub location: String,
    pub index: Option<u32>,
    pub is_default: bool,
}

/// What interkom reads of a service provider's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpMetadata {
    pub entity_id: String,
    pub acs: Vec<Endpoint>,
    pub slo: Vec<Endpoint>,
    pub signing: Vec<Certificate>,
    pub encryption: Vec<Certificate>,
    pub name_id_formats: Vec<String>,
    pub authn_requests_signed: bool,
}

/// What interkom reads of an identity provider's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerIdp {
    pub entity_id: String,
    pub sso: Vec<Endpoint>,
    pub slo: Vec<Endpoint>,
    pub signing: Vec<Certificate>,
}

fn endpoints(doc: &uppsala::Document<'_>, role: uppsala::NodeId, local: &str) -> Vec<Endpoint> {
    xml::elements(doc, role)
        .into_iter()
        .filter(|e| xml::is(doc, *e, ns::MD, local))
        .filter_map(|e| {
            Some(Endpoint {
                binding: attr(doc, e, "Binding")?.to_owned(),
                location: attr(doc, e, "Location")?.to_owned(),
                index: attr(doc, e, "index").and_then(|i| i.parse().ok()),
                is_default: attr(doc, e, "isDefault") == Some("true"),
            })
        })
        .collect()
}

/// The certificates of a role's key descriptors for `use_` (a descriptor
/// without `use` serves both).
fn certs(
    doc: &uppsala::Document<'_>,
    role: uppsala::NodeId,
    use_: &str,
) -> Result<Vec<Certificate>, SamlError> {
    let mut out = Vec::new();
    for kd in xml::elements(doc, role) {
        if !xml::is(doc, kd, ns::MD, "KeyDescriptor") {
            continue;
        }
        if attr(doc, kd, "use").is_some_and(|u| u != use_) {
            continue;
        }
        for c in doc.get_elements_by_tag_name_ns(ns::DS, "X509Certificate") {
            if is_inside(doc, c, kd) {
                out.push(Certificate::parse(&doc.text_content_deep(c))?);
            }
        }
    }
    Ok(out)
}

fn is_inside(
    doc: &uppsala::Document<'_>,
    mut node: uppsala::NodeId,
    ancestor: uppsala::NodeId,
) -> bool {
    while let Some(p) = doc.parent(node) {
        if p == ancestor {
            return true;
        }
        node = p;
    }
    false
}

fn role(doc: &uppsala::Document<'_>, local: &str) -> Result<(String, uppsala::NodeId), SamlError> {
    let root = doc
        .document_element()
        .filter(|r| xml::is(doc, *r, ns::MD, "EntityDescriptor"))
        .ok_or_else(|| SamlError::invalid("not an EntityDescriptor"))?;
    let entity_id = attr(doc, root, "entityID")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| SamlError::invalid("metadata without entityID"))?
        .to_owned();
    let role = xml::only_child(doc, root, ns::MD, local)?
        .ok_or_else(|| SamlError::invalid(format!("metadata without {local}")))?;
    Ok((entity_id, role))
}

impl SpMetadata {
    pub fn read(xml_text: &str) -> Result<SpMetadata, SamlError> {
        let doc = xml::parse(xml_text)?;
        let (entity_id, sp) = role(&doc, "SPSSODescriptor")?;
        let name_id_formats = xml::elements(&doc, sp)
            .into_iter()
            .filter(|e| xml::is(&doc, *e, ns::MD, "NameIDFormat"))
            .map(|e| xml::text(&doc, e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SpMetadata {
            entity_id,
            acs: endpoints(&doc, sp, "AssertionConsumerService"),
            slo: endpoints(&doc, sp, "SingleLogoutService"),
            signing: certs(&doc, sp, "signing")?,
            encryption: certs(&doc, sp, "encryption")?,
            name_id_formats,
            authn_requests_signed: attr(&doc, sp, "AuthnRequestsSigned") == Some("true"),
        })
    }
}

impl PartnerIdp {
    pub fn read(xml_text: &str) -> Result<PartnerIdp, SamlError> {
        let doc = xml::parse(xml_text)?;
        let (entity_id, idp) = role(&doc, "IDPSSODescriptor")?;
        Ok(PartnerIdp {
            entity_id,
            sso: endpoints(&doc, idp, "SingleSignOnService"),
            slo: endpoints(&doc, idp, "SingleLogoutService"),
            signing: certs(&doc, idp, "signing")?,
        })
    }
}
