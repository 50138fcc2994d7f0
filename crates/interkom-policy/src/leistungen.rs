//! Leistungen: the online services a tenant offers to citizens and
//! businesses, and the identification each legally requires — the level of
//! assurance (Vertrauensniveau), the identity sources accepted, the data the
//! service receives (data minimisation) and the legal basis shown to the
//! person. Set in `policies/leistungen.toml`, through the admin API and the
//! console; part of the live policy, so every node sees a change at once.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::loa::Loa;
use crate::tenant::TenantTree;

/// Who a Leistung serves. Accounts of these populations are separate from
/// staff accounts: no tenant membership, no roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Population {
    /// Bürgerinnen und Bürger (BundID, eIDAS).
    Citizen,
    /// Unternehmen (Mein Unternehmenskonto).
    Business,
}

impl Population {
    pub fn as_str(self) -> &'static str {
        match self {
            Population::Citizen => "citizen",
            Population::Business => "business",
        }
    }

    pub fn parse(s: &str) -> Option<Population> {
        match s {
            "citizen" => Some(Population::Citizen),
            "business" => Some(Population::Business),
            _ => None,
        }
    }
}

/// The claims a Leistung may receive: what interkom takes over from an
/// identity source, by name. Nothing else leaves interkom.
pub const CLAIMS: &[&str] = &[
    "given_name",
    "family_name",
    "birthdate",
    "place_of_birth",
    "birth_name",
    "nationality",
    "address",
    "email",
    "organisation",
];

/// One Leistung.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeistungSpec {
    /// A slug, e.g. `hundesteuer-hitzacker`.
    pub id: String,
    /// Shown to the person, e.g. "Hundesteuer-Anmeldung".
    pub name: String,
    /// The tenant that offers it.
    pub tenant: String,
    /// The OIDC client, or `saml:<id>` for a SAML service provider, that
    /// the Leistung logs in through.
    pub client: String,
    pub populations: BTreeSet<Population>,
    /// The required Vertrauensniveau (niedrig / substanziell / hoch).
    pub loa: Loa,
    /// The identity sources accepted (empty: every source of the
    /// populations that reaches the level); only sources of the
    /// Leistung's tenant or a tenant above it count.
    #[serde(default)]
    pub sources: Vec<String>,
    /// The claims it receives (see [`CLAIMS`]).
    #[serde(default)]
    pub claims: BTreeSet<String>,
    /// Why it may ask (free text shown to the person, e.g. "§ 3 HStS").
    #[serde(default)]
    pub legal_basis: String,
}

impl LeistungSpec {
    /// Checks the form (the tenant and the client are checked where they
    /// are known).
    pub fn check(&self) -> Result<(), String> {
        let slug = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !slug(&self.id) {
            return Err(format!(
                "Leistung id `{}` must be 1-64 of a-z, 0-9 and `-`",
                self.id
            ));
        }
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err("a Leistung needs a name of at most 200 characters".into());
        }
        if self.client.is_empty() || self.client.len() > 200 {
            return Err("a Leistung needs a client".into());
        }
        if self.populations.is_empty() {
            return Err("a Leistung serves citizens, businesses or both".into());
        }
        if let Some(c) = self.claims.iter().find(|c| !CLAIMS.contains(&c.as_str())) {
            return Err(format!(
                "unknown claim `{c}` (known: {})",
                CLAIMS.join(", ")
            ));
        }
        if self.legal_basis.len() > 2000 {
            return Err("the legal basis is longer than 2000 characters".into());
        }
        Ok(())
    }

    /// Whether a change from `self` to `next` lowers what the Leistung
    /// requires or widens what it receives or accepts: such a change needs
    /// a second administrator's approval.
    pub fn weakened_by(&self, next: &LeistungSpec) -> bool {
        // Another tenant changes which tenants' sources it accepts.
        next.tenant != self.tenant
            || next.loa < self.loa
            || !next.claims.is_subset(&self.claims)
            || !next.populations.is_subset(&self.populations)
            || (!self.sources.is_empty()
                && (next.sources.is_empty()
                    || next.sources.iter().any(|s| !self.sources.contains(s))))
    }

    /// Whether the Leistung accepts source `source`, registered by tenant
    /// `source_tenant`: only a source of its own tenant or a tenant above
    /// it — one it names, or, naming none, any such. A Gemeinde's source
    /// never serves a neighbour's or the Kreis's Leistung, and a name
    /// alone (source ids are one namespace) never makes a source another
    /// Kommune registered acceptable.
    pub fn accepts(&self, source: &str, source_tenant: &str, tenants: &TenantTree) -> bool {
        let above = tenants
            .get(&self.tenant)
            .is_some_and(|t| t.path.iter().any(|p| p.as_str() == source_tenant));
        above && (self.sources.is_empty() || self.sources.iter().any(|s| s == source))
    }
}

/// `leistungen.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeistungenFile {
    #[allow(dead_code)]
    pub(crate) version: String,
    #[serde(default)]
    pub(crate) leistungen: Vec<LeistungSpec>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LeistungSpec {
        LeistungSpec {
            id: "meldebescheinigung".into(),
            name: "Meldebescheinigung".into(),
            tenant: "sg-elbtalaue".into(),
            client: "meldebescheinigung".into(),
            populations: [Population::Citizen].into(),
            loa: Loa::High,
            sources: vec!["bundid".into()],
            claims: ["given_name".to_string(), "family_name".to_string()].into(),
            legal_basis: "§ 18 BMG".into(),
        }
    }

    #[test]
    fn what_weakens_a_leistung() {
        let a = spec();
        assert!(!a.weakened_by(&a));
        let lower = LeistungSpec {
            loa: Loa::Substantial,
            ..spec()
        };
        assert!(a.weakened_by(&lower));
        assert!(!lower.weakened_by(&a), "raising the level is no weakening");
        let more = LeistungSpec {
            claims: ["given_name", "family_name", "address"]
                .map(String::from)
                .into(),
            ..spec()
        };
        assert!(a.weakened_by(&more));
        let any_source = LeistungSpec {
            sources: vec![],
            ..spec()
        };
        assert!(a.weakened_by(&any_source));
        let businesses = LeistungSpec {
            populations: [Population::Citizen, Population::Business].into(),
            ..spec()
        };
        assert!(a.weakened_by(&businesses));
        let fewer = LeistungSpec {
            claims: ["given_name".to_string()].into(),
            ..spec()
        };
        assert!(!a.weakened_by(&fewer));
        let moved = LeistungSpec {
            tenant: "hitzacker".into(),
            ..spec()
        };
        assert!(
            a.weakened_by(&moved),
            "another tenant accepts other sources"
        );
    }

    #[test]
    fn only_sources_of_the_own_tenant_or_above_are_accepted() {
        use crate::tenant::{Level, TenantSpec};
        let t = |id: &str, level, parent: Option<&str>| TenantSpec {
            id: id.into(),
            name: id.into(),
            level,
            parent: parent.map(str::to_owned),
        };
        let tree = TenantTree::from_specs(&[
            t("lk", Level::Kreis, None),
            t("sg-elbtalaue", Level::Samtgemeinde, Some("lk")),
            t("hitzacker", Level::Gemeinde, Some("sg-elbtalaue")),
            t("damnatz", Level::Gemeinde, Some("sg-elbtalaue")),
        ])
        .unwrap();
        let named = spec();
        assert!(named.accepts("bundid", "lk", &tree));
        assert!(named.accepts("bundid", "sg-elbtalaue", &tree));
        assert!(!named.accepts("muk", "lk", &tree), "not named");
        assert!(
            !named.accepts("bundid", "hitzacker", &tree),
            "a member Gemeinde's source of the same id"
        );
        let any = LeistungSpec {
            sources: vec![],
            tenant: "hitzacker".into(),
            ..spec()
        };
        assert!(any.accepts("konto-hitzacker", "hitzacker", &tree));
        assert!(any.accepts("bundid", "lk", &tree));
        assert!(
            !any.accepts("konto-damnatz", "damnatz", &tree),
            "a neighbour's"
        );
        assert!(!any.accepts("x", "nowhere", &tree));
    }

    #[test]
    fn form_is_checked() {
        assert!(spec().check().is_ok());
        let bad_claim = LeistungSpec {
            claims: ["password".to_string()].into(),
            ..spec()
        };
        assert!(bad_claim.check().unwrap_err().contains("unknown claim"));
        let nobody = LeistungSpec {
            populations: BTreeSet::new(),
            ..spec()
        };
        assert!(nobody.check().is_err());
    }
}
