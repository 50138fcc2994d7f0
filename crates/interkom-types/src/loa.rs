//! Levels of assurance (eIDAS / BSI TR-03107-1) and the authentication
//! methods that count as a second factor.

use serde::{Deserialize, Serialize};

/// A level of assurance, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loa {
    Low,
    Substantial,
    High,
}

impl Loa {
    pub const ALL: [Loa; 3] = [Loa::Low, Loa::Substantial, Loa::High];

    /// The `acr` value carried in tokens.
    pub fn acr(self) -> &'static str {
        match self {
            Loa::Low => "urn:interkom:loa:low",
            Loa::Substantial => "urn:interkom:loa:substantial",
            Loa::High => "urn:interkom:loa:high",
        }
    }

    pub fn from_acr(acr: &str) -> Option<Loa> {
        Loa::ALL.into_iter().find(|l| l.acr() == acr)
    }
}

/// Authentication methods (RFC 8176 `amr`) that count as a second factor.
pub const SECOND_FACTOR_AMR: &[&str] = &["otp", "hwk", "swk", "sc", "mfa", "fido", "face", "fpt"];

/// Whether these methods include a second factor.
pub fn has_second_factor<S: AsRef<str>>(amr: &[S]) -> bool {
    amr.iter().any(|m| SECOND_FACTOR_AMR.contains(&m.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_values_round_trip_and_order() {
        for l in Loa::ALL {
            assert_eq!(Loa::from_acr(l.acr()), Some(l));
        }
        assert!(Loa::Low < Loa::Substantial && Loa::Substantial < Loa::High);
        assert_eq!(Loa::from_acr("urn:interkom:loa:medium"), None);
        assert!(has_second_factor(&["pwd", "otp"]));
        assert!(!has_second_factor(&["pwd", "fed"]));
    }
}
