//! The console's pages, one module per resource of the admin API.

pub(crate) mod applications;
pub(crate) mod audit;
pub(crate) mod clients;
pub(crate) mod directories;
pub(crate) mod grants;
pub(crate) mod leistungen;
pub(crate) mod overview;
pub(crate) mod policy;
pub(crate) mod proposals;
pub(crate) mod resources;
pub(crate) mod saml_sources;
pub(crate) mod service_providers;
pub(crate) mod upstreams;
pub(crate) mod users;
