//! The Kommunen's directories (Active Directory, OpenLDAP) as identity
//! sources: their registrations, the LDAP client interkom asks them with,
//! and the links of their entries to accounts. The login itself (the
//! form, brute-force protection, roles, audit) is the gateway's.
//!
//! - `config`: a registration and the defaults of each kind of server.
//! - `conn`: TLS, failover, timeouts, the pool ([`LdapFailure`]).
//! - `entry`: reading an entry defensively; account state; DNs.
//! - `client`: find a person, their groups, check a password, list all.
//! - `store`: registrations (password sealed) and links, cached per node.

pub mod client;
pub mod config;
pub mod conn;
pub mod entry;
pub(crate) mod store;

pub use client::{DirectorySource, Listing, PasswordCheck, Person};
pub use config::{AttributeNames, DirectoryKind, DirectorySourceConfig, GroupLookup};
pub use conn::LdapFailure;
pub use store::SourceList;
