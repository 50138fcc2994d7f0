//! Leistungen as the admin API shows them.

use interkom_policy::LeistungSpec;
use serde::Serialize;
use utoipa::ToSchema;

/// The Leistungen of the caller's subtree.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LeistungList {
    #[schema(value_type = Vec<LeistungDoc>)]
    pub(crate) leistungen: Vec<LeistungSpec>,
}

/// An online service of a tenant for citizens and businesses, with the
/// identification its legal basis requires.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct LeistungDoc {
    /// A slug.
    id: String,
    /// Shown to the person.
    name: String,
    /// The tenant that offers it.
    tenant: String,
    /// The OIDC client (or `saml:<id>`, a SAML SP) it logs in through.
    client: String,
    /// `citizen`, `business`.
    populations: Vec<String>,
    /// The required Vertrauensniveau: `low` (niedrig), `substantial`
    /// (substanziell), `high` (hoch).
    loa: String,
    /// The identity sources accepted (empty: all of its populations that
    /// reach the level); only those of its tenant or a tenant above it
    /// count.
    sources: Option<Vec<String>>,
    /// The claims it receives: `given_name`, `family_name`, `birthdate`,
    /// `place_of_birth`, `birth_name`, `nationality`, `address`, `email`,
    /// `organisation`.
    claims: Option<Vec<String>>,
    /// Its legal basis, shown to the person.
    legal_basis: Option<String>,
}
