//! interkom's vocabulary as types, shared by every crate.
//!
//! # Layout
//! - [`Backend`]: which database a pool talks to, fixed at connect.
//! - [`Clock`]: the time every crate reads (tests advance it instead of
//!   sleeping).
//! - [`TenantId`], [`AccountId`], [`ClientId`], [`ResourceId`]: ids, each
//!   its own type.
//! - [`Loa`]: the level of assurance of a login, carried as `acr`.
//! - [`Alg`]: the JWS algorithms interkom signs with.
//! - [`Lang`]: the languages of the pages (and [`cookie`], the one
//!   parser of `Cookie` headers).
//! - [`Secret`]: a value never printed by `{:?}` or `{}`, wiped on drop.
//! - `scratch` (feature `scratch`, tests only): scratch databases for the
//!   stores' conformance suites.

mod alg;
mod backend;
mod clock;
mod ids;
mod lang;
mod loa;
#[cfg(feature = "scratch")]
pub mod scratch;
mod secret;

pub use alg::Alg;
pub use backend::Backend;
pub use clock::Clock;
pub use ids::{AccountId, ClientId, ResourceId, TenantId};
pub use lang::{cookie, Lang};
pub use loa::{has_second_factor, Loa, SECOND_FACTOR_AMR};
pub use secret::Secret;
