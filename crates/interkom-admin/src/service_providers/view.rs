//! SAML service providers as the admin API shows them.

use interkom_directory::service_providers::ServiceProviderConfig;
use serde::Serialize;
use utoipa::ToSchema;

/// The SAML service providers of the caller's subtree.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ServiceProviderList {
    #[schema(value_type = Vec<ServiceProviderDoc>)]
    pub(crate) service_providers: Vec<ServiceProviderConfig>,
}

/// A Fachverfahren that logs in over SAML 2.0 with interkom as its
/// identity provider.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ServiceProviderDoc {
    /// A slug; its logins run as client `saml:<id>`.
    id: String,
    tenant: String,
    name: String,
    /// Its entity id (an AuthnRequest's Issuer); one SP's only.
    entity_id: String,
    /// Assertion consumer service URLs (HTTP-POST), the default first;
    /// a request naming another is refused.
    acs_urls: Vec<String>,
    /// Its single-logout endpoint (HTTP-Redirect).
    slo_url: Option<String>,
    /// Its signing certificates (base64 DER or PEM).
    signing_certs: Option<Vec<String>>,
    /// Its encryption certificate.
    encryption_cert: Option<String>,
    /// `{content: aes256-gcm|aes128-gcm|aes256-cbc|aes128-cbc,
    /// key_transport: rsa-oaep-mgf1p|rsa-oaep}`: encrypt assertions.
    #[schema(value_type = Option<Object>)]
    encryption: Option<serde_json::Value>,
    /// `persistent` (pairwise, default), `transient`, `email`, `unspecified`.
    name_id_format: Option<String>,
    /// `username`, `name`, `mail`, `tenant`, `tenant_path`, `level`,
    /// `roles` (default all).
    attributes: Option<Vec<String>>,
    /// The policy resource its logins are decided on.
    resource: Option<String>,
    sign_response: Option<bool>,
    sign_assertion: Option<bool>,
    require_signed_requests: Option<bool>,
    idp_initiated: Option<bool>,
}
