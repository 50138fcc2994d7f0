//! End-to-end tests: real interkom nodes on ephemeral ports, on SQLite or
//! PostgreSQL (`INTERKOM_TEST_DB=sqlite|postgres`), driven over HTTP by the
//! `openidconnect` crate as relying party and by a cookie-keeping HTTP
//! client as the user's browser. The CLI tests run the real binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::type_complexity,
    unreachable_pub
)]

mod admin_api;
mod admin_audit;
mod audit;
mod authzen;
mod backchannel;
mod brokering;
mod bruteforce;
mod cli;
mod common;
mod crash;
mod directories;
mod errors;
mod flows;
mod forward;
mod fuzz;
mod keys;
mod metrics;
mod passkeys;
mod policy;
mod saml_forge;
mod saml_idp;
mod saml_malicious;
mod saml_sources;
mod security;
mod slapd;
mod tls;
mod tokens;
