//! The Response with its Assertion: written by interkom as identity
//! provider, read by interkom as service provider.
//!
//! Reading follows one rule against signature wrapping: only the single
//! Assertion (or EncryptedAssertion) directly under the Response is read,
//! and only if it — or the Response holding it — is the node a trusted
//! signature covered.

use crate::dsig::{self, SigningKey, Trusted};
use crate::enc::{self, Method};
use crate::xml::{self, attr, escape, ns, only_child};
use crate::{instant, SamlError};

pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
pub const STATUS_REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";
pub const STATUS_REQUEST_DENIED: &str = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied";
pub const STATUS_NO_AUTHN_CONTEXT: &str = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext";
pub const STATUS_AUTHN_FAILED: &str = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed";
pub const STATUS_NO_PASSIVE: &str = "urn:oasis:names:tc:SAML:2.0:status:NoPassive";
pub const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
pub const NAMEID_TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
pub const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
pub const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
pub const ATTRNAME_URI: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";
pub const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// An attribute with its values (by URI `Name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub friendly_name: Option<String>,
    pub values: Vec<String>,
}

/// What an assertion says about a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    pub id: String,
    pub issuer: String,
    pub issue_instant: i64,
    pub name_id: String,
    pub name_id_format: String,
    /// The SP the NameID is for (pairwise identifiers).
    pub sp_name_qualifier: Option<String>,
    /// The ACS URL (SubjectConfirmationData `Recipient`).
    pub recipient: String,
    pub in_response_to: Option<String>,
    pub not_before: i64,
    pub not_on_or_after: i64,
    pub audience: String,
    pub authn_instant: i64,
    pub session_index: String,
    pub class_ref: String,
    pub attributes: Vec<Attribute>,
}

impl Assertion {
    pub fn to_xml(&self) -> String {
        let irt = self
            .in_response_to
            .as_deref()
            .map(|i| format!(r#" InResponseTo="{}""#, escape(i)))
            .unwrap_or_default();
        let spq = self
            .sp_name_qualifier
            .as_deref()
            .map(|q| format!(r#" SPNameQualifier="{}""#, escape(q)))
            .unwrap_or_default();
        let mut x = format!(
            concat!(
                r#"<saml:Assertion xmlns:saml="{ns}" xmlns:xsi="{xsi}" xmlns:xs="http://www.w3.org/2001/XMLSchema" ID="{id}" Version="2.0" IssueInstant="{at}">"#,
                r#"<saml:Issuer>{issuer}</saml:Issuer>"#,
                r#"<saml:Subject><saml:NameID Format="{fmt}"{spq}>{nameid}</saml:NameID>"#,
                r#"<saml:SubjectConfirmation Method="{bearer}"><saml:SubjectConfirmationData{irt} NotOnOrAfter="{until}" Recipient="{recipient}"/></saml:SubjectConfirmation></saml:Subject>"#,
                r#"<saml:Conditions NotBefore="{nb}" NotOnOrAfter="{until}"><saml:AudienceRestriction><saml:Audience>{aud}</saml:Audience></saml:AudienceRestriction></saml:Conditions>"#,
                r#"<saml:AuthnStatement AuthnInstant="{authn}" SessionIndex="{sidx}"><saml:AuthnContext><saml:AuthnContextClassRef>{class}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"#,
            ),
            ns = ns::SAML,
            xsi = ns::XSI,
            id = escape(&self.id),
            at = instant::format(self.issue_instant),
            issuer = escape(&self.issuer),
            fmt = escape(&self.name_id_format),
            spq = spq,
            nameid = escape(&self.name_id),
            bearer = BEARER,
            irt = irt,
            until = instant::format(self.not_on_or_after),
            recipient = escape(&self.recipient),
            nb = instant::format(self.not_before),
            aud = escape(&self.audience),
            authn = instant::format(self.authn_instant),
            sidx = escape(&self.session_index),
            class = escape(&self.class_ref),
        );
        if !self.attributes.is_empty() {
            x.push_str("<saml:AttributeStatement>");
            for a in &self.attributes {
                let friendly = a
                    .friendly_name
                    .as_deref()
                    .map(|f| format!(r#" FriendlyName="{}""#, escape(f)))
                    .unwrap_or_default();
                x.push_str(&format!(
                    r#"<saml:Attribute Name="{}" NameFormat="{ATTRNAME_URI}"{friendly}>"#,
                    escape(&a.name)
                ));
                for v in &a.values {
                    x.push_str(&format!(
                        r#"<saml:AttributeValue xsi:type="xs:string">{}</saml:AttributeValue>"#,
                        escape(v)
                    ));
                }
                x.push_str("</saml:Attribute>");
            }
            x.push_str("</saml:AttributeStatement>");
        }
        x.push_str("</saml:Assertion>");
        x
    }
}

/// A Response's status: success, or a top-level code with a second-level
/// one and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: String,
    pub sub_code: Option<String>,
    pub message: Option<String>,
    /// The text of `StatusDetail` (BundID's AKDB extension puts a JSON
    /// error there), as received.
    pub detail: Option<String>,
}

impl Status {
    pub fn success() -> Status {
        Status {
            code: STATUS_SUCCESS.into(),
            sub_code: None,
            message: None,
            detail: None,
        }
    }

    pub fn is_success(&self) -> bool {
        self.code == STATUS_SUCCESS
    }

    fn to_xml(&self) -> String {
        let sub = self
            .sub_code
            .as_deref()
            .map(|s| format!(r#"<samlp:StatusCode Value="{}"/>"#, escape(s)))
            .unwrap_or_default();
        let msg = self
            .message
            .as_deref()
            .map(|m| format!("<samlp:StatusMessage>{}</samlp:StatusMessage>", escape(m)))
            .unwrap_or_default();
        format!(
            r#"<samlp:Status><samlp:StatusCode Value="{}">{sub}</samlp:StatusCode>{msg}</samlp:Status>"#,
            escape(&self.code)
        )
    }
}

/// The envelope of a Response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub issuer: String,
    pub issue_instant: i64,
    pub destination: String,
    pub in_response_to: Option<String>,
    pub status: Status,
}

/// How a Response is protected.
#[derive(Debug, Clone, Default)]
pub struct Protection<'a> {
    pub sign_assertion: bool,
    pub sign_response: bool,
    /// Encrypt the (signed) assertion to this certificate.
    pub encrypt_to: Option<(&'a dsig::Certificate, Method)>,
}

/// Writes a Response (with the assertion, signed and encrypted as asked).
pub fn write(
    env: &Envelope,
    assertion: Option<&Assertion>,
    key: &SigningKey,
    p: &Protection<'_>,
) -> Result<String, SamlError> {
    let inner = match assertion {
        None => String::new(),
        Some(a) => {
            let mut x = a.to_xml();
            if p.sign_assertion {
                x = dsig::sign(&x, &a.id, key)?;
            }
            match p.encrypt_to {
                Some((cert, method)) => format!(
                    r#"<saml:EncryptedAssertion xmlns:saml="{}">{}</saml:EncryptedAssertion>"#,
                    ns::SAML,
                    enc::encrypt(&x, cert, method)?
                ),
                None => x,
            }
        }
    };
    let irt = env
        .in_response_to
        .as_deref()
        .map(|i| format!(r#" InResponseTo="{}""#, escape(i)))
        .unwrap_or_default();
    let x = format!(
        concat!(
            r#"<samlp:Response xmlns:samlp="{samlp}" xmlns:saml="{saml}" ID="{id}" Version="2.0" IssueInstant="{at}" Destination="{dest}"{irt}>"#,
            r#"<saml:Issuer>{issuer}</saml:Issuer>{status}{inner}</samlp:Response>"#
        ),
        samlp = ns::SAMLP,
        saml = ns::SAML,
        id = escape(&env.id),
        at = instant::format(env.issue_instant),
        dest = escape(&env.destination),
        irt = irt,
        issuer = escape(&env.issuer),
        status = env.status.to_xml(),
        inner = inner,
    );
    if p.sign_response {
        dsig::sign(&x, &env.id, key)
    } else {
        Ok(x)
    }
}

/// A Response as read, with its assertion (if the status is success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub envelope: Envelope,
    pub assertion: Option<Assertion>,
}

/// Reads a Response. The assertion must be signed by a key in `trusted`
/// (itself, or the Response holding it); `decrypt_key`: the SP's private
/// key (PKCS#8 PEM) for an EncryptedAssertion.
pub fn read(
    xml: &str,
    trusted: &Trusted,
    decrypt_key: Option<&SigningKey>,
) -> Result<Read, SamlError> {
    let doc = xml::parse(xml)?;
    let root = doc
        .document_element()
        .ok_or_else(|| SamlError::invalid("empty message"))?;
    if !xml::is(&doc, root, ns::SAMLP, "Response") || attr(&doc, root, "Version") != Some("2.0") {
        return Err(SamlError::invalid("not a SAML 2.0 Response"));
    }
    let need = |name: &str| {
        attr(&doc, root, name)
            .map(str::to_owned)
            .ok_or_else(|| SamlError::invalid(format!("Response without {name}")))
    };
    let status = only_child(&doc, root, ns::SAMLP, "Status")?
        .ok_or_else(|| SamlError::invalid("Response without Status"))?;
    let code = only_child(&doc, status, ns::SAMLP, "StatusCode")?
        .ok_or_else(|| SamlError::invalid("Status without StatusCode"))?;
    let sub_code = only_child(&doc, code, ns::SAMLP, "StatusCode")?
        .and_then(|s| attr(&doc, s, "Value").map(str::to_owned));
    let message = match only_child(&doc, status, ns::SAMLP, "StatusMessage")? {
        Some(m) => Some(xml::text(&doc, m)?),
        None => None,
    };
    let detail = only_child(&doc, status, ns::SAMLP, "StatusDetail")?
        .map(|d| {
            doc.text_content_deep(d)
                .trim()
                .chars()
                .take(4096)
                .collect::<String>()
        })
        .filter(|d| !d.is_empty());
    let issuer = match only_child(&doc, root, ns::SAML, "Issuer")? {
        Some(i) => xml::text(&doc, i)?,
        None => String::new(),
    };
    let envelope = Envelope {
        id: need("ID")?,
        issuer,
        issue_instant: instant::parse(&need("IssueInstant")?)?,
        destination: attr(&doc, root, "Destination").unwrap_or("").to_owned(),
        in_response_to: attr(&doc, root, "InResponseTo").map(str::to_owned),
        status: Status {
            code: attr(&doc, code, "Value").unwrap_or("").to_owned(),
            sub_code,
            message,
            detail,
        },
    };
    if !envelope.status.is_success() {
        return Ok(Read {
            envelope,
            assertion: None,
        });
    }
    let plain = only_child(&doc, root, ns::SAML, "Assertion")?;
    let encrypted = only_child(&doc, root, ns::SAML, "EncryptedAssertion")?;
    let response_signed = trusted.covers(&doc, xml, root)?;
    let assertion = match (plain, encrypted) {
        (Some(a), None) => {
            if !(response_signed || trusted.covers(&doc, xml, a)?) {
                return Err(SamlError::Signature("the assertion is not signed".into()));
            }
            read_assertion(&doc, a)?
        }
        (None, Some(e)) => {
            let key = decrypt_key
                .ok_or_else(|| SamlError::Encryption("no key to decrypt with".into()))?;
            let data = only_child(
                &doc,
                e,
                "http://www.w3.org/2001/04/xmlenc#",
                "EncryptedData",
            )?
            .and_then(|d| doc.node_source(d))
            .ok_or_else(|| SamlError::invalid("EncryptedAssertion without EncryptedData"))?;
            let plain_xml = enc::decrypt(&with_namespaces(data), key)?;
            let adoc = xml::parse(&plain_xml)?;
            let a = adoc
                .document_element()
                .filter(|a| xml::is(&adoc, *a, ns::SAML, "Assertion"))
                .ok_or_else(|| SamlError::invalid("the encrypted element is no Assertion"))?;
            if !(response_signed || trusted.covers(&adoc, &plain_xml, a)?) {
                return Err(SamlError::Signature("the assertion is not signed".into()));
            }
            read_assertion(&adoc, a)?
        }
        _ => return Err(SamlError::invalid("not exactly one assertion")),
    };
    Ok(Read {
        envelope,
        assertion: Some(assertion),
    })
}

/// An element cut out of its document keeps the namespaces it uses.
fn with_namespaces(fragment: &str) -> String {
    let Some(end) = fragment.find('>') else {
        return fragment.to_owned();
    };
    let mut head = fragment[..end].to_owned();
    for (prefix, uri) in [
        ("xenc", "http://www.w3.org/2001/04/xmlenc#"),
        ("ds", ns::DS),
        ("saml", ns::SAML),
    ] {
        let decl = format!("xmlns:{prefix}=");
        if !head.contains(&decl) && fragment.contains(&format!("{prefix}:")) {
            head.push_str(&format!(r#" {decl}"{uri}""#));
        }
    }
    if !head.contains("xmlns=") && fragment.starts_with("<EncryptedData") {
        head.push_str(r#" xmlns="http://www.w3.org/2001/04/xmlenc#""#);
    }
    format!("{head}{}", &fragment[end..])
}

fn read_assertion(doc: &uppsala::Document<'_>, a: uppsala::NodeId) -> Result<Assertion, SamlError> {
    let need = |name: &str| {
        attr(doc, a, name)
            .map(str::to_owned)
            .ok_or_else(|| SamlError::invalid(format!("Assertion without {name}")))
    };
    let child = |parent, local: &str| {
        only_child(doc, parent, ns::SAML, local)?
            .ok_or_else(|| SamlError::invalid(format!("Assertion without {local}")))
    };
    let issuer = xml::text(doc, child(a, "Issuer")?)?;
    let subject = child(a, "Subject")?;
    let name_id = child(subject, "NameID")?;
    let confirmation = child(subject, "SubjectConfirmation")?;
    if attr(doc, confirmation, "Method") != Some(BEARER) {
        return Err(SamlError::invalid("not a bearer confirmation"));
    }
    let data = child(confirmation, "SubjectConfirmationData")?;
    let conditions = child(a, "Conditions")?;
    let audience = child(child(conditions, "AudienceRestriction")?, "Audience")?;
    let statement = child(a, "AuthnStatement")?;
    let class_ref = child(child(statement, "AuthnContext")?, "AuthnContextClassRef")?;
    let mut attributes = Vec::new();
    if let Some(s) = only_child(doc, a, ns::SAML, "AttributeStatement")? {
        for at in xml::elements(doc, s) {
            if !xml::is(doc, at, ns::SAML, "Attribute") {
                continue;
            }
            let values = xml::elements(doc, at)
                .into_iter()
                .filter(|v| xml::is(doc, *v, ns::SAML, "AttributeValue"))
                .map(|v| attribute_value(doc, v))
                .collect::<Result<Vec<_>, _>>()?;
            attributes.push(Attribute {
                name: attr(doc, at, "Name").unwrap_or("").to_owned(),
                friendly_name: attr(doc, at, "FriendlyName").map(str::to_owned),
                values,
            });
        }
    }
    let time = |node, name: &str| -> Result<i64, SamlError> {
        instant::parse(
            attr(doc, node, name).ok_or_else(|| SamlError::invalid(format!("no {name}")))?,
        )
    };
    Ok(Assertion {
        id: need("ID")?,
        issuer,
        issue_instant: instant::parse(&need("IssueInstant")?)?,
        name_id: xml::text(doc, name_id)?,
        name_id_format: attr(doc, name_id, "Format")
            .unwrap_or(NAMEID_UNSPECIFIED)
            .to_owned(),
        sp_name_qualifier: attr(doc, name_id, "SPNameQualifier").map(str::to_owned),
        recipient: attr(doc, data, "Recipient").unwrap_or("").to_owned(),
        in_response_to: attr(doc, data, "InResponseTo").map(str::to_owned),
        not_before: attr(doc, conditions, "NotBefore")
            .map(instant::parse)
            .transpose()?
            .unwrap_or(i64::MIN),
        not_on_or_after: time(data, "NotOnOrAfter")?.min(time(conditions, "NotOnOrAfter")?),
        audience: xml::text(doc, audience)?,
        authn_instant: time(statement, "AuthnInstant")?,
        session_index: attr(doc, statement, "SessionIndex")
            .unwrap_or("")
            .to_owned(),
        class_ref: xml::text(doc, class_ref)?,
        attributes,
    })
}

/// A value as text, or — where it is complex (Mein Unternehmenskonto) —
/// as the XML of its content.
/// A simple value split by a comment is refused (as in a NameID): a
/// signature does not cover comments, so its parts could be read apart.
fn attribute_value(doc: &uppsala::Document<'_>, v: uppsala::NodeId) -> Result<String, SamlError> {
    if xml::elements(doc, v).is_empty() {
        return xml::text(doc, v);
    }
    Ok(inner_xml(doc, v).unwrap_or_default())
}

/// The content of an element as the XML it was written in.
fn inner_xml(doc: &uppsala::Document<'_>, v: uppsala::NodeId) -> Option<String> {
    doc.node_source(v)
        .and_then(|s| Some(s[s.find('>')? + 1..s.rfind("</")?].trim().to_owned()))
}
