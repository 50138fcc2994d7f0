//! What can go wrong with a SAML message. The messages name the rule that
//! was broken (for the audit trail and the error page), never key material.

/// Why a SAML message or operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    /// Too large, before or after inflating.
    #[error("the message is larger than {0} bytes")]
    TooLarge(usize),
    /// A DTD or entity declaration (XXE, billion laughs): refused unparsed.
    #[error("the message carries a DTD or entity declaration")]
    Dtd,
    #[error("the message is not well-formed XML: {0}")]
    Xml(String),
    #[error("the message's encoding is broken: {0}")]
    Encoding(&'static str),
    /// A required element or attribute is missing or malformed.
    #[error("{0}")]
    Invalid(String),
    /// The signature is missing, wrong, made by another key, or does not
    /// cover what is read.
    #[error("signature: {0}")]
    Signature(String),
    #[error("encryption: {0}")]
    Encryption(String),
    #[error("key: {0}")]
    Key(String),
}

impl SamlError {
    pub(crate) fn invalid(m: impl Into<String>) -> SamlError {
        SamlError::Invalid(m.into())
    }
}
