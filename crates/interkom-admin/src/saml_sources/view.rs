//! SAML identity sources as the admin API shows them.

use interkom_directory::saml_sources::{SamlSource, SamlSourceConfig};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A source as registered, with what its metadata says.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SamlSourceView {
    #[serde(flatten)]
    pub(crate) source: SamlSourceConfig,
    /// The IdP's entity id (from its metadata).
    pub(crate) entity_id: String,
    /// When the metadata kept was given or last fetched (Unix seconds).
    pub(crate) metadata_fetched_at: i64,
}

impl SamlSourceView {
    pub(crate) fn of(s: &SamlSource) -> SamlSourceView {
        SamlSourceView {
            source: s.cfg.clone(),
            entity_id: s.idp.entity_id.clone(),
            metadata_fetched_at: s.fetched_at,
        }
    }
}

/// The SAML identity sources of the caller's subtree.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct SamlSourceList {
    #[schema(value_type = Vec<SamlSourceDoc>)]
    pub(crate) saml_sources: Vec<SamlSourceView>,
}

/// What `PUT /saml-sources/{id}` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SamlSourceBody {
    /// The registration (as `GET` shows it, without `entity_id` and
    /// `metadata_fetched_at`).
    #[schema(value_type = SamlSourceDoc)]
    pub(crate) source: SamlSourceConfig,
    /// The IdP's metadata. Without it: fetched now from
    /// `source.metadata_url` (https, a public address), or — for a source
    /// already registered — the copy kept.
    #[serde(default)]
    pub(crate) metadata: Option<String>,
}

/// A SAML 2.0 identity provider interkom is a service provider of (BundID,
/// Mein Unternehmenskonto, eIDAS): every name it uses is configuration.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct SamlSourceDoc {
    /// A slug.
    id: String,
    /// The tenant that registers it. A Leistung that names no sources
    /// accepts those of its own tenant and the tenants above it.
    tenant: String,
    /// Shown on the Leistung's page, e.g. "BundID".
    name: String,
    description: Option<String>,
    /// `citizen` or `business`.
    population: String,
    /// Where its metadata is fetched and refreshed (https, public).
    metadata_url: Option<String>,
    /// `post` (default) or `redirect`: how AuthnRequests travel.
    binding: Option<String>,
    /// The IdP's level names, lowest first: `[{name, loa}]` with `loa`
    /// `low`, `substantial` or `high`.
    #[schema(value_type = Vec<Object>)]
    levels: Vec<serde_json::Value>,
    /// An attribute that states the level too (the lower counts).
    level_attribute: Option<String>,
    /// The attribute with the stable pseudonym accounts are linked on.
    pseudonym_attribute: String,
    /// Claim → attribute `Name`.
    #[schema(value_type = Option<Object>)]
    attributes: Option<serde_json::Value>,
    /// The `<samlp:Extensions>` template.
    extensions: Option<String>,
    /// One requested attribute inside the template.
    requested_attribute: Option<String>,
    force_authn: Option<bool>,
    /// Seconds of clock difference tolerated (0–600, default 60).
    clock_skew: Option<i64>,
    /// From the metadata (read only).
    entity_id: Option<String>,
    /// Read only.
    metadata_fetched_at: Option<i64>,
}
