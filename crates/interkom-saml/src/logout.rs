//! Single logout: LogoutRequest and LogoutResponse, both directions.

use crate::dsig::Trusted;
use crate::xml::{self, attr, escape, ns, only_child};
use crate::{instant, SamlError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub id: String,
    pub issue_instant: i64,
    pub issuer: String,
    pub destination: Option<String>,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub sp_name_qualifier: Option<String>,
    pub session_indexes: Vec<String>,
}

impl LogoutRequest {
    /// Reads a LogoutRequest; true when a trusted signature covers it
    /// (POST binding).
    pub fn read(xml: &str, trusted: Option<&Trusted>) -> Result<(LogoutRequest, bool), SamlError> {
        let doc = xml::parse(xml)?;
        let root = doc
            .document_element()
            .filter(|r| xml::is(&doc, *r, ns::SAMLP, "LogoutRequest"))
            .ok_or_else(|| SamlError::invalid("not a LogoutRequest"))?;
        let need = |name: &str| {
            attr(&doc, root, name)
                .map(str::to_owned)
                .ok_or_else(|| SamlError::invalid(format!("LogoutRequest without {name}")))
        };
        let issuer = only_child(&doc, root, ns::SAML, "Issuer")?
            .ok_or_else(|| SamlError::invalid("LogoutRequest without Issuer"))?;
        let name_id = only_child(&doc, root, ns::SAML, "NameID")?
            .ok_or_else(|| SamlError::invalid("LogoutRequest without NameID"))?;
        let session_indexes = xml::elements(&doc, root)
            .into_iter()
            .filter(|c| xml::is(&doc, *c, ns::SAMLP, "SessionIndex"))
            .map(|c| xml::text(&doc, c))
            .collect::<Result<Vec<_>, _>>()?;
        let req = LogoutRequest {
            id: need("ID")?,
            issue_instant: instant::parse(&need("IssueInstant")?)?,
            issuer: xml::text(&doc, issuer)?,
            destination: attr(&doc, root, "Destination").map(str::to_owned),
            name_id: xml::text(&doc, name_id)?,
            name_id_format: attr(&doc, name_id, "Format").map(str::to_owned),
            sp_name_qualifier: attr(&doc, name_id, "SPNameQualifier").map(str::to_owned),
            session_indexes,
        };
        let signed = match trusted {
            Some(t) => t.covers(&doc, xml, root)?,
            None => false,
        };
        Ok((req, signed))
    }

    pub fn to_xml(&self) -> String {
        let mut x = format!(
            r#"<samlp:LogoutRequest xmlns:samlp="{}" xmlns:saml="{}" ID="{}" Version="2.0" IssueInstant="{}""#,
            ns::SAMLP,
            ns::SAML,
            escape(&self.id),
            instant::format(self.issue_instant)
        );
        if let Some(d) = &self.destination {
            x.push_str(&format!(r#" Destination="{}""#, escape(d)));
        }
        x.push_str(&format!(
            "><saml:Issuer>{}</saml:Issuer><saml:NameID",
            escape(&self.issuer)
        ));
        if let Some(f) = &self.name_id_format {
            x.push_str(&format!(r#" Format="{}""#, escape(f)));
        }
        if let Some(q) = &self.sp_name_qualifier {
            x.push_str(&format!(r#" SPNameQualifier="{}""#, escape(q)));
        }
        x.push_str(&format!(">{}</saml:NameID>", escape(&self.name_id)));
        for s in &self.session_indexes {
            x.push_str(&format!(
                "<samlp:SessionIndex>{}</samlp:SessionIndex>",
                escape(s)
            ));
        }
        x.push_str("</samlp:LogoutRequest>");
        x
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutResponse {
    pub id: String,
    pub issue_instant: i64,
    pub issuer: String,
    pub destination: Option<String>,
    pub in_response_to: String,
    pub status: String,
}

impl LogoutResponse {
    pub fn read(xml: &str) -> Result<LogoutResponse, SamlError> {
        let doc = xml::parse(xml)?;
        let root = doc
            .document_element()
            .filter(|r| xml::is(&doc, *r, ns::SAMLP, "LogoutResponse"))
            .ok_or_else(|| SamlError::invalid("not a LogoutResponse"))?;
        let need = |name: &str| {
            attr(&doc, root, name)
                .map(str::to_owned)
                .ok_or_else(|| SamlError::invalid(format!("LogoutResponse without {name}")))
        };
        let status = only_child(&doc, root, ns::SAMLP, "Status")?
            .and_then(|s| only_child(&doc, s, ns::SAMLP, "StatusCode").ok().flatten())
            .and_then(|c| attr(&doc, c, "Value").map(str::to_owned))
            .ok_or_else(|| SamlError::invalid("LogoutResponse without StatusCode"))?;
        let issuer = match only_child(&doc, root, ns::SAML, "Issuer")? {
            Some(i) => xml::text(&doc, i)?,
            None => String::new(),
        };
        Ok(LogoutResponse {
            id: need("ID")?,
            issue_instant: instant::parse(&need("IssueInstant")?)?,
            issuer,
            destination: attr(&doc, root, "Destination").map(str::to_owned),
            in_response_to: need("InResponseTo")?,
            status,
        })
    }

    pub fn to_xml(&self) -> String {
        let dest = self
            .destination
            .as_deref()
            .map(|d| format!(r#" Destination="{}""#, escape(d)))
            .unwrap_or_default();
        format!(
            concat!(
                r#"<samlp:LogoutResponse xmlns:samlp="{}" xmlns:saml="{}" ID="{}" Version="2.0" IssueInstant="{}"{} InResponseTo="{}">"#,
                r#"<saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode Value="{}"/></samlp:Status></samlp:LogoutResponse>"#
            ),
            ns::SAMLP,
            ns::SAML,
            escape(&self.id),
            instant::format(self.issue_instant),
            dest,
            escape(&self.in_response_to),
            escape(&self.issuer),
            escape(&self.status),
        )
    }
}
