//! SAML 2.0: interkom as identity provider for Fachverfahren that speak
//! only SAML (`idp`: metadata, single sign-on; `slo`: single logout), and
//! as service provider of the identity sources of citizens and businesses
//! (`sp`: metadata, assertion consumer service). Messages, bindings and XML
//! security are `interkom-saml`'s; the login is the one login flow's.

mod idp;
mod slo;
mod sp;

pub(crate) use idp::{idp_initiated, metadata, return_url, saml_return, sso_get, sso_post};
pub(crate) use slo::{slo_get, slo_post, tell_service_providers};
pub(crate) use sp::{
    acs, choose_source, slo_get as sp_slo_get, slo_post as sp_slo_post, sp_continue, sp_metadata,
};
