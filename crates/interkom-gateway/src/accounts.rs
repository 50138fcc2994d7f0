//! Local accounts and browser sessions.
//!
//! Passwords are hashed with argon2id on the blocking pool, never on the
//! runtime's worker threads, and at most `max_concurrent` at once so memory
//! stays bounded under a login storm. An unknown username costs the same
//! verification as a known one (no user enumeration by timing).

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde::Serialize;
use sqlx::AnyPool;
use tokio::sync::oneshot;

use crate::config::Argon2Config;
use crate::crypto::{random_token, MasterKey};
use crate::{Gateway, GatewayError};

/// argon2id on a small pool of dedicated threads, each keeping its 19 MiB
/// working memory between hashes: no allocation, zeroing or page faults per
/// login, memory bounded at threads × m, and the async runtime's workers
/// never block on a hash.
pub(crate) struct PasswordHasher {
    params: Params,
    jobs: std::sync::mpsc::SyncSender<Job>,
}

enum Job {
    Hash(String, oneshot::Sender<Option<String>>),
    Verify(String, String, oneshot::Sender<bool>),
}

impl PasswordHasher {
    pub(crate) fn new(cfg: &Argon2Config) -> Result<PasswordHasher, GatewayError> {
        let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
            .map_err(|e| GatewayError::Invalid(format!("argon2 parameters: {e}")))?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let threads = if cfg.max_concurrent == 0 {
            cores
        } else {
            cfg.max_concurrent
        };
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(1024);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let params = params.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(&rx, &params))
                .map_err(|_| GatewayError::Crypto("cannot start password threads"))?;
        }
        Ok(PasswordHasher { params, jobs })
    }

    pub(crate) async fn hash(&self, password: String) -> Result<String, GatewayError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Hash(password, tx))?;
        rx.await
            .ok()
            .flatten()
            .ok_or(GatewayError::Crypto("password hashing failed"))
    }

    /// True only when `stored` exists and matches. Runs a full verification
    /// either way.
    pub(crate) async fn verify(&self, stored: Option<String>, password: String) -> bool {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.unmatchable_hash());
        let (tx, rx) = oneshot::channel();
        if self.send(Job::Verify(hash, password, tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false) && known
    }

    fn send(&self, job: Job) -> Result<(), GatewayError> {
        // The queue is deep; a full queue means a login storm, and waiting
        // for room briefly on this thread is the back-pressure we want.
        self.jobs
            .send(job)
            .map_err(|_| GatewayError::Crypto("password threads stopped"))
    }

    /// A hash with the configured parameters that no password matches
    /// (random salt and output): verifying against it costs exactly what a
    /// real verification costs, and nothing is computed ahead of time.
    fn unmatchable_hash(&self) -> String {
        use base64::engine::general_purpose::STANDARD_NO_PAD;
        use base64::Engine;
        use rand::RngCore;
        let mut salt = [0u8; 16];
        let mut out = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut out);
        format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost(),
            STANDARD_NO_PAD.encode(salt),
            STANDARD_NO_PAD.encode(out)
        )
    }
}

fn worker(rx: &std::sync::Mutex<std::sync::mpsc::Receiver<Job>>, params: &Params) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        match job {
            Ok(Job::Hash(password, reply)) => {
                let _ = reply.send(hash_with(params, &password, &mut memory));
            }
            Ok(Job::Verify(hash, password, reply)) => {
                let _ = reply.send(verify_with(&hash, &password, &mut memory));
            }
            Err(_) => return,
        }
    }
}

/// Runs argon2 into `memory`, growing it when the parameters need more.
fn raw_hash(
    alg: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> bool {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    Argon2::new(alg, version, params)
        .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        .is_ok()
}

fn hash_with(params: &Params, password: &str, memory: &mut Vec<Block>) -> Option<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.as_salt().decode_b64(&mut salt_bytes).ok()?;
    let mut out = [0u8; 32];
    if !raw_hash(
        Algorithm::Argon2id,
        Version::V0x13,
        params.clone(),
        password.as_bytes(),
        salt_raw,
        &mut out,
        memory,
    ) {
        return None;
    }
    let output = argon2::password_hash::Output::new(&out).ok()?;
    Some(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        salt.as_str(),
        output
    ))
}

/// Verifies `password` against a PHC string, with the parameters stored in
/// it (hashes made under older parameters keep working).
fn verify_with(hash: &str, password: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else {
        return false;
    };
    let Ok(alg) = Algorithm::try_from(phc.algorithm) else {
        return false;
    };
    let version = phc
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or(Version::V0x13);
    let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(&phc), phc.salt, phc.hash)
    else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    raw_hash(
        alg,
        version,
        params,
        password.as_bytes(),
        salt_raw,
        &mut out,
        memory,
    ) && bool::from(subtle::ConstantTimeEq::ct_eq(
        out.as_slice(),
        expected.as_bytes(),
    ))
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
        // The policy knows a person by account id and username alike: a
        // username must never name another account or a policy subject.
        let collides = uuid::Uuid::parse_str(&u.username).is_ok()
            || user_by_id(&self.pool, &u.username).await?.is_some()
            || self
                .policy
                .policy_set()
                .subjects
                .iter()
                .any(|s| s.id == u.username);
        if collides || user_by_username(&self.pool, &u.username).await?.is_some() {
            return Err(GatewayError::Invalid(format!(
                "username `{}` is taken",
                u.username
            )));
        }
        let hash = self.hasher.hash(u.password).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let inserted = sqlx::query(
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
        .await;
        match inserted {
            Ok(_) => {}
            // Two requests for one username at once: the second is told.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(GatewayError::Invalid(format!(
                    "username `{}` is taken",
                    u.username
                )))
            }
            Err(e) => return Err(e.into()),
        }
        for role in &u.roles {
            interkom_policy::roles::assign(&self.pool, &id, &u.tenant, role).await?;
        }
        // The policy knows subjects by their accounts: every node reloads.
        interkom_policy::store::touch(&self.pool).await?;
        self.policy.reload().await?;
        Ok(id)
    }

    /// `ev` about this account: its subject, and the tenant it belongs to
    /// (whose subtree sees the event).
    pub(crate) fn about(
        &self,
        ev: interkom_audit::AuditEvent,
        user: &User,
    ) -> interkom_audit::AuditEvent {
        let ev = ev.subject(&user.id, Some(user.tenant.clone()));
        match self.tenants.get(&user.tenant) {
            Some(t) => ev.tenant(&t.id, t.path_string()),
            None => ev,
        }
    }

    pub async fn find_user(&self, username: &str) -> Result<Option<User>, GatewayError> {
        user_by_username(&self.pool, username).await
    }

    /// An account by its subject id.
    pub async fn user(&self, id: &str) -> Result<Option<User>, GatewayError> {
        user_by_id(&self.pool, id).await
    }

    /// Gives an account a new random password (returned once, for handing
    /// over on a separate channel) and ends its sessions and tokens.
    pub async fn reset_password(&self, id: &str) -> Result<String, GatewayError> {
        // 15 random bytes: 120 bits, 20 characters.
        let password = crate::crypto::random_token(15);
        let hash = self.hasher.hash(password.clone()).await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.end_sessions_of(id).await?;
        Ok(password)
    }

    /// Locks or unlocks an account; locking ends its sessions and tokens.
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> Result<(), GatewayError> {
        sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(id)
            .execute(&self.pool)
            .await?;
        if disabled {
            self.end_sessions_of(id).await?;
        }
        // The policy decides only for enabled accounts: every node reloads.
        interkom_policy::store::touch(&self.pool).await?;
        self.policy.reload().await?;
        Ok(())
    }

    /// Updates an account's display name and e-mail address.
    pub async fn set_profile(
        &self,
        id: &str,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<(), GatewayError> {
        sqlx::query("UPDATE users SET name = $1, email = $2 WHERE id = $3")
            .bind(name)
            .bind(email)
            .bind(id)
            .execute(&self.pool)
            .await?;
        // Conditions may name the e-mail address: every node reloads.
        interkom_policy::store::touch(&self.pool).await?;
        self.policy.reload().await?;
        Ok(())
    }

    /// Ends every session of an account, revokes its refresh tokens and
    /// tells the clients that asked to hear (back-channel logout).
    pub(crate) async fn end_sessions_of(&self, id: &str) -> Result<(), GatewayError> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        // Writing first (see `end_session`); the sessions deleted are the
        // ones announced, whatever starts meanwhile.
        let sids: Vec<String> =
            sqlx::query_scalar("DELETE FROM sessions WHERE user_id = $1 RETURNING sid")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        for sid in &sids {
            crate::backchannel::queue(&mut tx, id, sid, now).await?;
        }
        sqlx::query(
            "UPDATE token_families SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.logout_wake.notify_one();
        Ok(())
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
    /// The upstream the login came from.
    pub(crate) upstream: Option<String>,
}

pub(crate) const SESSION_COOKIE: &str = "interkom_session";

pub(crate) async fn session_by_handle(
    pool: &AnyPool,
    master: &MasterKey,
    handle: &str,
    now: i64,
) -> Result<Option<Session>, GatewayError> {
    let s: Option<Session> = sqlx::query_as(
        "SELECT sid, user_id, auth_time, acr, amr, expires_at, upstream FROM sessions WHERE handle_hash = $1",
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
    auth_time: i64,
    upstream: Option<&str>,
) -> Result<(String, Session), GatewayError> {
    let now = gw.clock.now();
    let handle = random_token(32);
    let session = Session {
        sid: random_token(16),
        user_id: user_id.to_owned(),
        auth_time,
        acr: acr.to_owned(),
        amr: serde_json::to_string(amr)?,
        expires_at: now + gw.cfg.session_ttl,
        upstream: upstream.map(str::to_owned),
    };
    sqlx::query(
        "INSERT INTO sessions (handle_hash, sid, user_id, auth_time, acr, amr, created_at, expires_at, upstream) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(gw.master.keyed_hash(&handle))
    .bind(&session.sid)
    .bind(&session.user_id)
    .bind(session.auth_time)
    .bind(&session.acr)
    .bind(&session.amr)
    .bind(now)
    .bind(session.expires_at)
    .bind(&session.upstream)
    .execute(conn)
    .await?;
    Ok((handle, session))
}

/// Raises a session's level after a step-up and gives it a new handle (the
/// old cookie is worthless from now on); `None` if it ended meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn step_up_session(
    gw: &Gateway,
    conn: &mut sqlx::AnyConnection,
    sid: &str,
    user_id: &str,
    acr: &str,
    amr: &[&str],
    auth_time: i64,
    upstream: Option<&str>,
) -> Result<Option<(String, Session)>, GatewayError> {
    let handle = random_token(32);
    let amr = serde_json::to_string(amr)?;
    let expires_at: Option<i64> = sqlx::query_scalar(
        "UPDATE sessions SET handle_hash = $1, acr = $2, amr = $3, auth_time = $4, upstream = $5 \
         WHERE sid = $6 AND user_id = $7 AND expires_at > $8 RETURNING expires_at",
    )
    .bind(gw.master.keyed_hash(&handle))
    .bind(acr)
    .bind(&amr)
    .bind(auth_time)
    .bind(upstream)
    .bind(sid)
    .bind(user_id)
    .bind(gw.clock.now())
    .fetch_optional(conn)
    .await?;
    Ok(expires_at.map(|expires_at| {
        (
            handle,
            Session {
                sid: sid.to_owned(),
                user_id: user_id.to_owned(),
                auth_time,
                acr: acr.to_owned(),
                amr,
                expires_at,
                upstream: upstream.map(str::to_owned),
            },
        )
    }))
}

/// Ends a session and revokes the token families issued under it.
pub(crate) async fn end_session(gw: &Gateway, sid: &str) -> Result<(), GatewayError> {
    let now = gw.clock.now();
    let mut tx = gw.pool.begin().await?;
    // Writing first: on SQLite a transaction that read first cannot take
    // the write lock once another connection has written.
    let user: Option<String> =
        sqlx::query_scalar("DELETE FROM sessions WHERE sid = $1 RETURNING user_id")
            .bind(sid)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(user) = &user {
        crate::backchannel::queue(&mut tx, user, sid, now).await?;
    }
    sqlx::query("UPDATE token_families SET revoked_at = $1 WHERE sid = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(sid)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    gw.logout_wake.notify_one();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let h = PasswordHasher::new(&Argon2Config::default()).unwrap();
        let stored = h.hash("Richtig-2026!".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify(Some(stored.clone()), "Richtig-2026!".into()).await);
        assert!(!h.verify(Some(stored.clone()), "falsch".into()).await);
        // Interoperable with the argon2 crate's own PHC handling, both ways.
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let phc = PasswordHash::new(&stored).unwrap();
        assert!(Argon2::default()
            .verify_password(b"Richtig-2026!", &phc)
            .is_ok());
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(19456, 2, 1, None).unwrap(),
        )
        .hash_password(b"Anders-2026!", &salt)
        .unwrap()
        .to_string();
        assert!(h.verify(Some(theirs.clone()), "Anders-2026!".into()).await);
        assert!(!h.verify(Some(theirs), "anders-2026!".into()).await);
        assert!(!h.verify(Some("$argon2id$garbage".into()), "x".into()).await);
        // The stand-in for an unknown user parses with the same parameters
        // (so it costs a full verification) and matches nothing.
        let dummy = h.unmatchable_hash();
        assert!(PasswordHash::new(&dummy).is_ok());
        assert!(dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(!h.verify(None, "Richtig-2026!".into()).await);
    }
}
