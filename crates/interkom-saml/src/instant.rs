//! SAML's timestamps: `xs:dateTime` in UTC (`2026-12-07T14:03:00Z`).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::SamlError;

/// `unix` seconds as SAML writes them.
pub fn format(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// A timestamp as unix seconds (fractions dropped); offsets other than UTC
/// are accepted as RFC 3339 allows.
pub fn parse(s: &str) -> Result<i64, SamlError> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|_| SamlError::invalid(format!("`{s}` is not a dateTime")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        assert_eq!(super::format(1_796_652_180), "2026-12-07T14:03:00Z");
        assert_eq!(super::parse("2026-12-07T14:03:00Z").unwrap(), 1_796_652_180);
        assert_eq!(
            super::parse("2026-12-07T14:03:00.123Z").unwrap(),
            1_796_652_180
        );
        assert!(super::parse("gestern").is_err());
    }
}
