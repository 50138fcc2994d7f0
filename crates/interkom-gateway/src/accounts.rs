//! Local accounts and browser sessions.
//!
//! Passwords are hashed with argon2id on the blocking pool, never on the
//! runtime's worker threads, and at most `max_concurrent` at once so memory
//! stays bounded under a login storm. An unknown username costs the same
//! verification as a known one (no user enumeration by timing).

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Serialize;
use sqlx::AnyPool;
use tokio::sync::Semaphore;

use crate::config::Argon2Config;
use crate::crypto::{random_token, MasterKey};
use crate::{Gateway, GatewayError};

pub(crate) struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Verified against when the user does not exist.
    dummy_hash: String,
}

impl PasswordHasher {
    pub(crate) fn new(cfg: &Argon2Config) -> Result<PasswordHasher, GatewayError> {
        let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
            .map_err(|e| GatewayError::Invalid(format!("argon2 parameters: {e}")))?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let max = if cfg.max_concurrent == 0 {
            cores
        } else {
            cfg.max_concurrent
        };
        let dummy_hash = hash_with(&params, "interkom-dummy-password")?;
        Ok(PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(max)),
            dummy_hash,
        })
    }

    pub(crate) async fn hash(&self, password: String) -> Result<String, GatewayError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| GatewayError::Crypto("hasher closed"))?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || hash_with(&params, &password))
            .await
            .map_err(|_| GatewayError::Crypto("hash task failed"))?
    }

    /// True only when `stored` exists and matches. Runs a full verification
    /// either way.
    pub(crate) async fn verify(&self, stored: Option<String>, password: String) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        ok && known
    }
}

fn hash_with(params: &Params, password: &str) -> Result<String, GatewayError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| GatewayError::Crypto("password hashing failed"))
}

/// A local account.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub tenant: String,
    pub username: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub disabled: i64,
}

const USER_COLUMNS: &str = "id, tenant, username, password_hash, name, email, disabled";

pub(crate) async fn user_by_username(
    pool: &AnyPool,
    username: &str,
) -> Result<Option<User>, GatewayError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
    ))
    .bind(username)
    .fetch_optional(pool)
    .await?)
}

pub(crate) async fn user_by_id(pool: &AnyPool, id: &str) -> Result<Option<User>, GatewayError> {
    Ok(
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// A new local account.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub tenant: String,
    pub username: String,
    pub password: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub roles: Vec<String>,
}

fn valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 128
        && u.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}

impl Gateway {
    /// Creates a local account with its roles in its home tenant; returns
    /// its subject id.
    pub async fn add_user(&self, u: NewUser) -> Result<String, GatewayError> {
        if self.tenants.get(&u.tenant).is_none() {
            return Err(GatewayError::Invalid(format!(
                "unknown tenant `{}`",
                u.tenant
            )));
        }
        if !valid_username(&u.username) {
            return Err(GatewayError::Invalid(
                "username: letters, digits and . - _ @, at most 128 characters".into(),
            ));
        }
        if u.password.chars().count() < 8 {
            return Err(GatewayError::Invalid(
                "password must have at least 8 characters".into(),
            ));
        }
        if let Some(r) = u
            .roles
            .iter()
            .find(|r| !interkom_policy::roles::valid_role(r))
        {
            return Err(GatewayError::Invalid(format!("invalid role name `{r}`")));
        }
        if user_by_username(&self.pool, &u.username).await?.is_some() {
            return Err(GatewayError::Invalid(format!(
                "username `{}` is taken",
                u.username
            )));
        }
        let hash = self.hasher.hash(u.password).await?;
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO users (id, tenant, username, password_hash, name, email, disabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
        )
        .bind(&id)
        .bind(&u.tenant)
        .bind(&u.username)
        .bind(hash)
        .bind(&u.name)
        .bind(&u.email)
        .bind(self.clock.now())
        .execute(&self.pool)
        .await?;
        for role in &u.roles {
            interkom_policy::roles::assign(&self.pool, &id, &u.tenant, role).await?;
        }
        Ok(id)
    }

    pub async fn find_user(&self, username: &str) -> Result<Option<User>, GatewayError> {
        user_by_username(&self.pool, username).await
    }
}

/// A browser session (single sign-on).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Session {
    pub(crate) sid: String,
    pub(crate) user_id: String,
    pub(crate) auth_time: i64,
    pub(crate) acr: String,
    pub(crate) amr: String,
    pub(crate) expires_at: i64,
}

pub(crate) const SESSION_COOKIE: &str = "interkom_session";

pub(crate) async fn session_by_handle(
    pool: &AnyPool,
    master: &MasterKey,
    handle: &str,
    now: i64,
) -> Result<Option<Session>, GatewayError> {
    let s: Option<Session> = sqlx::query_as(
        "SELECT sid, user_id, auth_time, acr, amr, expires_at FROM sessions WHERE handle_hash = $1",
    )
    .bind(master.keyed_hash(handle))
    .fetch_optional(pool)
    .await?;
    Ok(s.filter(|s| s.expires_at > now))
}

/// Creates a session on `conn` (the caller's transaction); returns
/// (cookie handle, session).
pub(crate) async fn create_session(
    gw: &Gateway,
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    acr: &str,
    amr: &[&str],
) -> Result<(String, Session), GatewayError> {
    let now = gw.clock.now();
    let handle = random_token(32);
    let session = Session {
        sid: random_token(16),
        user_id: user_id.to_owned(),
        auth_time: now,
        acr: acr.to_owned(),
        amr: serde_json::to_string(amr)?,
        expires_at: now + gw.cfg.session_ttl,
    };
    sqlx::query(
        "INSERT INTO sessions (handle_hash, sid, user_id, auth_time, acr, amr, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(gw.master.keyed_hash(&handle))
    .bind(&session.sid)
    .bind(&session.user_id)
    .bind(session.auth_time)
    .bind(&session.acr)
    .bind(&session.amr)
    .bind(now)
    .bind(session.expires_at)
    .execute(conn)
    .await?;
    Ok((handle, session))
}

/// Ends a session and revokes the token families issued under it.
pub(crate) async fn end_session(gw: &Gateway, sid: &str) -> Result<(), GatewayError> {
    let mut tx = gw.pool.begin().await?;
    sqlx::query("DELETE FROM sessions WHERE sid = $1")
        .bind(sid)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE token_families SET revoked_at = $1 WHERE sid = $2 AND revoked_at IS NULL")
        .bind(gw.clock.now())
        .bind(sid)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
