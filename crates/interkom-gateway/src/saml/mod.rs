//! SAML 2.0: interkom as identity provider for Fachverfahren that speak
//! only SAML (`idp`: metadata, single sign-on; `slo`: single logout). Messages, bindings and XML security are
//! `interkom-saml`'s; the login is the one login flow's.

mod idp;
mod slo;

pub(crate) use idp::{idp_initiated, metadata, return_url, saml_return, sso_get, sso_post};
pub(crate) use slo::{slo_get, slo_post};
