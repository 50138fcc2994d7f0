//! The store of the gateway's context: sessions and tokens. It owns every
//! table the gateway writes and all the SQL on them; the rest of the crate
//! asks it for rows as types and never writes SQL.
//!
//! One type over portable SQL: every statement here is plain SQL that
//! SQLite and PostgreSQL both run as written (`$n` parameters, `RETURNING`,
//! `ON CONFLICT`), through sqlx's `Any` pool, so one implementation serves
//! both backends and the conformance suite (`conformance`, run against
//! both) holds it to one behaviour. Where the backends differ in what they
//! can do at all (PostgreSQL announces key rotations), the store says so
//! in one place.
//!
//! The store keeps no secrets: bearer handles, codes and tokens come in as
//! the keyed hashes the callers made of them. Every operation is a method
//! of [`Store`]; an operation that belongs to a caller's transaction (a
//! login ending, a code redeemed, a session ended) takes that transaction's
//! connection (`&mut sqlx::AnyConnection`) and commits nothing itself.
//!
//! # Layout
//! - `sessions`: single sign-on sessions.
//! - `codes`: authorization codes.
//! - `forward`: the host sessions of forward authentication.
//! - `tokens`: token families, refresh tokens, revoked access tokens and
//!   the `jti`s of client assertions.
//! - `rotations`: refresh-token rotations, committed in groups.
//! - `logins`: login requests, logins sent to an upstream, WebAuthn
//!   ceremonies — what a login keeps between two requests.
//! - `deliveries`: the outbox of back-channel logout.
//! - `throttle`: the brute-force counters of the login form.
//! - `keys`: the signing keys, encrypted, and the announcement of a
//!   rotation.
//! - `saml`: the replay cache of SAML requests.
//! - `purge`: the removal of expired rows.
//!
//! The store is a building block: it imports nothing of the crate above it.

mod codes;
#[cfg(test)]
mod conformance;
mod deliveries;
mod forward;
mod keys;
mod logins;
mod purge;
mod rotations;
mod saml;
mod sessions;
mod throttle;
mod tokens;

use interkom_types::Backend;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Transaction};

pub(crate) use codes::AuthCode;
pub(crate) use deliveries::Delivery;
pub use keys::KeyInfo;
pub(crate) use keys::{NewSigningKey, StoredKey};
pub(crate) use logins::{Ceremony, NewLoginRequest, UpstreamLogin};
pub(crate) use rotations::Rotation;
pub(crate) use saml::SentRequest;
pub(crate) use sessions::{Session, SessionUpstream, StepUp};
pub(crate) use tokens::{NewRefreshToken, RefreshToken, TokenFamily};

/// Applies the migrations of the gateway's tables.
pub async fn migrate(pool: &AnyPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

/// The sessions-and-tokens store over one database pool. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Store {
    pool: AnyPool,
    /// Read once from the pool: whether rotations can be announced.
    backend: Backend,
    /// The group commit of refresh-token rotations.
    rotations: rotations::Rotations,
}

impl Store {
    pub(crate) fn new(pool: AnyPool) -> Store {
        let backend = Backend::of(&pool);
        Store {
            pool,
            backend,
            rotations: Default::default(),
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction for operations that must happen together.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        self.pool.begin().await
    }

    /// A connection of the pool, for one operation that takes one.
    pub(crate) async fn acquire(&self) -> Result<PoolConnection<Any>, sqlx::Error> {
        self.pool.acquire().await
    }
}
