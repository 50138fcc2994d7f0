//! The signing keys: the private half encrypted under the key-encryption
//! key (sealed and opened by `crate::keys`), the public JWK, the
//! publication window. A rotation is announced on PostgreSQL, so every
//! node reloads at once; SQLite serves one node and has no announcements.

use interkom_types::Alg;
use serde::Serialize;
use sqlx::postgres::PgListener;

use super::Store;

/// The PostgreSQL channel a rotation is announced on.
const CHANNEL: &str = "interkom_keys";

/// A stored signing key (no `Debug`: it carries the sealed private key).
#[derive(Clone, sqlx::FromRow)]
pub(crate) struct StoredKey {
    pub(crate) kid: String,
    pub(crate) alg: String,
    /// PKCS#8, AES-256-GCM under the key-encryption key (bound to `kid`).
    pub(crate) private_enc: String,
    pub(crate) public_jwk: String,
    pub(crate) created_at: i64,
    pub(crate) sign_from: i64,
    pub(crate) retire_at: Option<i64>,
}

/// A new signing key (published at once, not retired).
pub(crate) struct NewSigningKey<'a> {
    pub(crate) kid: &'a str,
    pub(crate) alg: Alg,
    pub(crate) private_enc: &'a str,
    pub(crate) public_jwk: &'a str,
    pub(crate) created_at: i64,
    pub(crate) sign_from: i64,
}

/// Summary of a stored key, for the CLI and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub created_at: i64,
    pub sign_from: i64,
    pub retire_at: Option<i64>,
}

impl Store {
    /// Every stored key, retired or not.
    pub(crate) async fn signing_keys(&self) -> Result<Vec<StoredKey>, sqlx::Error> {
        sqlx::query_as(
            "SELECT kid, alg, private_enc, public_jwk, created_at, sign_from, retire_at FROM signing_keys",
        )
        .fetch_all(&self.pool)
        .await
    }

    pub(crate) async fn insert_signing_key(
        &self,
        k: &NewSigningKey<'_>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_enc, public_jwk, created_at, sign_from, retire_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(k.kid)
        .bind(k.alg.as_str())
        .bind(k.private_enc)
        .bind(k.public_jwk)
        .bind(k.created_at)
        .bind(k.sign_from)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets the retirement of every unretired key of `alg` to `retire_at`.
    pub(crate) async fn retire_signing_keys(
        &self,
        alg: Alg,
        retire_at: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE signing_keys SET retire_at = $1 WHERE alg = $2 AND retire_at IS NULL")
            .bind(retire_at)
            .bind(alg.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every stored key, oldest first.
    pub(crate) async fn list_signing_keys(&self) -> Result<Vec<KeyInfo>, sqlx::Error> {
        let rows: Vec<(String, String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT kid, alg, created_at, sign_from, retire_at FROM signing_keys ORDER BY created_at, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(kid, alg, created_at, sign_from, retire_at)| KeyInfo {
                kid,
                alg,
                created_at,
                sign_from,
                retire_at,
            })
            .collect())
    }

    /// Tells the other nodes that the keys changed (PostgreSQL only;
    /// SQLite serves one node).
    pub(crate) async fn announce_rotation(&self) -> Result<(), sqlx::Error> {
        if self.backend.is_postgres() {
            sqlx::query(&format!("NOTIFY {CHANNEL}"))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// A listener to the announcements of rotations, on its own connection
    /// to the PostgreSQL database at `url`.
    pub(crate) async fn rotation_listener(url: &str) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }
}
