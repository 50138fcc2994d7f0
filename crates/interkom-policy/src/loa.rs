//! Levels of assurance and protection needs, and the mapping between them
//! (`policies/protection.toml`, rule 5 of the levels).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use interkom_types::Loa;

/// A protection need (Schutzbedarf, BSI 200-2), lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionNeed {
    Normal,
    Hoch,
    SehrHoch,
}

impl ProtectionNeed {
    pub const ALL: [ProtectionNeed; 3] = [
        ProtectionNeed::Normal,
        ProtectionNeed::Hoch,
        ProtectionNeed::SehrHoch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProtectionNeed::Normal => "normal",
            ProtectionNeed::Hoch => "hoch",
            ProtectionNeed::SehrHoch => "sehr_hoch",
        }
    }

    pub fn parse(s: &str) -> Option<ProtectionNeed> {
        ProtectionNeed::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

/// The classification of a resource for confidentiality, integrity and
/// availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protection {
    pub c: ProtectionNeed,
    pub i: ProtectionNeed,
    pub a: ProtectionNeed,
}

impl Protection {
    pub const NORMAL: Protection = Protection {
        c: ProtectionNeed::Normal,
        i: ProtectionNeed::Normal,
        a: ProtectionNeed::Normal,
    };

    /// The maximum principle of BSI 200-2: the highest class applies.
    pub fn overall(&self) -> ProtectionNeed {
        self.c.max(self.i).max(self.a)
    }
}

/// What a login must offer for one protection need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Minimum level of assurance; `None`: no requirement.
    #[serde(default, with = "acr_opt")]
    pub acr: Option<Loa>,
    /// Maximum seconds since the authentication.
    #[serde(default)]
    pub max_age: Option<i64>,
    #[serde(default)]
    pub second_factor: bool,
    /// Whether permits are audited too.
    #[serde(default)]
    pub audit_permits: bool,
}

mod acr_opt {
    use super::Loa;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Loa>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(l) => s.serialize_str(l.acr()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Loa>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => Loa::from_acr(&s).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown acr `{s}`: use urn:interkom:loa:low, urn:interkom:loa:substantial or urn:interkom:loa:high"
                ))
            }),
        }
    }
}

/// `policies/protection.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectionMapping {
    pub version: String,
    /// The need of resources that are not registered (AuthZEN requests
    /// naming only a type); `None`: such resources are unknown and denied.
    #[serde(default)]
    pub default_need: Option<ProtectionNeed>,
    pub needs: BTreeMap<ProtectionNeed, Requirement>,
}

impl ProtectionMapping {
    /// Every need must be mapped, and requirements must not weaken as the
    /// need grows.
    pub fn validate(&self) -> Result<(), String> {
        let mut prev: Option<(ProtectionNeed, &Requirement)> = None;
        for n in ProtectionNeed::ALL {
            let r = self
                .needs
                .get(&n)
                .ok_or_else(|| format!("protection need `{}` is not mapped", n.as_str()))?;
            if let Some(m) = r.max_age {
                if m <= 0 {
                    return Err(format!("`{}`: max_age must be positive", n.as_str()));
                }
            }
            if let Some((pn, p)) = prev {
                let weaker = r.acr < p.acr
                    || (p.second_factor && !r.second_factor)
                    || (p.audit_permits && !r.audit_permits)
                    || matches!((p.max_age, r.max_age), (Some(a), Some(b)) if b > a)
                    || (p.max_age.is_some() && r.max_age.is_none());
                if weaker {
                    return Err(format!(
                        "`{}` asks less than `{}`: requirements may only grow with the need",
                        n.as_str(),
                        pn.as_str()
                    ));
                }
            }
            prev = Some((n, r));
        }
        Ok(())
    }

    pub fn requirement(&self, need: ProtectionNeed) -> Requirement {
        self.needs.get(&need).copied().unwrap_or(Requirement {
            acr: Some(Loa::High),
            max_age: Some(0),
            second_factor: true,
            audit_permits: true,
        })
    }
}

pub use interkom_types::SECOND_FACTOR_AMR;
