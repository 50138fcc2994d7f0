//! Accounts and their passwords.
//!
//! Passwords are hashed with argon2id on the blocking pool, never on the
//! runtime's worker threads, and at most `max_concurrent` at once so memory
//! stays bounded under a login storm. An unknown username costs the same
//! verification as a known one (no user enumeration by timing).

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use interkom_types::{AccountId, Secret, TenantId};
use serde::{Deserialize, Serialize};
use sqlx::AnyPool;
use tokio::sync::oneshot;

use crate::crypto::random_token;
use crate::{Directory, DirectoryError};

/// argon2id on a small pool of dedicated threads, each keeping its 19 MiB
/// working memory between hashes while logins keep coming (no allocation or
/// page faults per login in a burst) and giving it back when they stop:
/// memory bounded at threads × m under load and none of it at rest, and the
/// async runtime's workers never block on a hash.
pub(crate) struct PasswordHasher {
    params: Params,
    /// One queue per thread (so each can tell when it has been idle),
    /// served in turn: every hash costs the same.
    jobs: Vec<std::sync::mpsc::SyncSender<Job>>,
    next: std::sync::atomic::AtomicUsize,
}

enum Job {
    Hash(String, oneshot::Sender<Option<String>>),
    Verify(String, String, oneshot::Sender<bool>),
}

impl PasswordHasher {
    pub(crate) fn new(cfg: &Argon2Config) -> Result<PasswordHasher, DirectoryError> {
        let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
            .map_err(|e| DirectoryError::Invalid(format!("argon2 parameters: {e}")))?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let threads = if cfg.max_concurrent == 0 {
            cores
        } else {
            cfg.max_concurrent
        };
        let mut jobs = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(1024 / threads.max(1));
            let params = params.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(&rx, &params))
                .map_err(|_| DirectoryError::Crypto("cannot start password threads"))?;
            jobs.push(tx);
        }
        Ok(PasswordHasher {
            params,
            jobs,
            next: Default::default(),
        })
    }

    pub(crate) async fn hash(&self, password: String) -> Result<String, DirectoryError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Hash(password, tx))?;
        rx.await
            .ok()
            .flatten()
            .ok_or(DirectoryError::Crypto("password hashing failed"))
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

    fn send(&self, job: Job) -> Result<(), DirectoryError> {
        let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The queues are deep; a full one means a login storm, and waiting
        // for room briefly on this thread is the back-pressure we want.
        self.jobs[turn % self.jobs.len()]
            .send(job)
            .map_err(|_| DirectoryError::Crypto("password threads stopped"))
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

/// How long a password thread keeps its working memory without a job: a
/// burst of logins reuses it, a quiet server gives it back.
const KEEP_MEMORY: std::time::Duration = std::time::Duration::from_secs(2);

fn worker(rx: &std::sync::mpsc::Receiver<Job>, params: &Params) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = if memory.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(KEEP_MEMORY)
        };
        match job {
            Ok(Job::Hash(password, reply)) => {
                let _ = reply.send(hash_with(params, &password, &mut memory));
            }
            Ok(Job::Verify(hash, password, reply)) => {
                let _ = reply.send(verify_with(&hash, &password, &mut memory));
            }
            Err(RecvTimeoutError::Timeout) => give_back(&mut memory),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Frees the working memory; the allocator returns it to the system at its
/// next collection (the binary makes one a second).
fn give_back(memory: &mut Vec<Block>) {
    *memory = Vec::new();
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

/// argon2id parameters for local passwords. Never below OWASP's minimum
/// (m = 19 MiB, t = 2, p = 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2Config {
    /// Memory in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes computed at once (each takes `memory_kib`); 0 = number of cores.
    #[serde(default)]
    pub max_concurrent: usize,
}

impl Default for Argon2Config {
    fn default() -> Self {
        Argon2Config {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 0,
        }
    }
}

/// An account: staff with a home tenant, or a citizen or a business
/// (`population`; see `people`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: AccountId,
    pub tenant: TenantId,
    pub username: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub disabled: i64,
    /// `staff`, `citizen` or `business`.
    #[serde(skip)]
    pub population: String,
}

impl User {
    pub fn is_enabled(&self) -> bool {
        self.disabled == 0
    }

    /// Staff (not a citizen or a business).
    pub fn is_staff(&self) -> bool {
        self.population == "staff"
    }
}

const USER_COLUMNS: &str = "id, tenant, username, password_hash, name, email, disabled, population";

async fn user_by_username(pool: &AnyPool, username: &str) -> Result<Option<User>, DirectoryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = $1 AND population = 'staff'"
    ))
    .bind(username)
    .fetch_optional(pool)
    .await?)
}

async fn user_by_id(pool: &AnyPool, id: &str) -> Result<Option<User>, DirectoryError> {
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
    pub tenant: TenantId,
    pub username: String,
    pub password: Secret,
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

impl Directory {
    /// Creates a local account with its roles in its home tenant; returns
    /// its subject id.
    pub async fn add_user(&self, u: NewUser) -> Result<String, DirectoryError> {
        if self.0.tenants.get(&u.tenant).is_none() {
            return Err(DirectoryError::Invalid(format!(
                "unknown tenant `{}`",
                u.tenant
            )));
        }
        if !valid_username(&u.username) {
            return Err(DirectoryError::Invalid(
                "username: letters, digits and . - _ @, at most 128 characters".into(),
            ));
        }
        if u.password.expose().chars().count() < 8 {
            return Err(DirectoryError::Invalid(
                "password must have at least 8 characters".into(),
            ));
        }
        if let Some(r) = u
            .roles
            .iter()
            .find(|r| !interkom_policy::roles::valid_role(r))
        {
            return Err(DirectoryError::Invalid(format!("invalid role name `{r}`")));
        }
        let pool = &self.0.pool;
        // The policy knows a person by account id and username alike: a
        // username must never name another account or a policy subject.
        let collides = uuid::Uuid::parse_str(&u.username).is_ok()
            || user_by_id(pool, &u.username).await?.is_some()
            || self
                .0
                .policy
                .policy_set()
                .subjects
                .iter()
                .any(|s| s.id == u.username);
        if collides || user_by_username(pool, &u.username).await?.is_some() {
            return Err(DirectoryError::Taken(format!(
                "username `{}` is taken",
                u.username
            )));
        }
        let hash = self.0.hasher.hash(u.password.expose().to_owned()).await?;
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
        .bind(self.0.clock.now())
        .execute(pool)
        .await;
        // Two requests for one username at once: the second is told.
        if !crate::inserted(inserted)? {
            return Err(DirectoryError::Taken(format!(
                "username `{}` is taken",
                u.username
            )));
        }
        for role in &u.roles {
            interkom_policy::roles::assign(pool, &id, &u.tenant, role).await?;
        }
        // The policy knows subjects by their accounts: every node reloads.
        self.policy_changed().await?;
        Ok(id)
    }

    pub async fn find_user(&self, username: &str) -> Result<Option<User>, DirectoryError> {
        user_by_username(&self.0.pool, username).await
    }

    /// An account by its subject id.
    pub async fn user(&self, id: &str) -> Result<Option<User>, DirectoryError> {
        user_by_id(&self.0.pool, id).await
    }

    /// Accounts of `tenants`, by username, after `after` (a page's cursor),
    /// at most `limit`.
    pub async fn users_in(
        &self,
        tenants: &[String],
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<User>, DirectoryError> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=tenants.len()).map(|i| format!("${i}")).collect();
        let mut sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE population = 'staff' AND tenant IN ({})",
            marks.join(",")
        );
        if after.is_some() {
            sql.push_str(&format!(" AND username > ${}", tenants.len() + 1));
        }
        sql.push_str(&format!(" ORDER BY username LIMIT {}", limit.max(0)));
        let mut query = sqlx::query_as::<_, User>(&sql);
        for t in tenants {
            query = query.bind(t);
        }
        if let Some(a) = after {
            query = query.bind(a);
        }
        Ok(query.fetch_all(&self.0.pool).await?)
    }

    /// Whether `password` is the account's; an unknown account (`None`)
    /// costs the same time and never matches.
    pub async fn verify_password(&self, user: Option<&User>, password: String) -> bool {
        self.0
            .hasher
            .verify(user.and_then(|u| u.password_hash.clone()), password)
            .await
    }

    /// Gives an account a new random password and returns it once (for
    /// handing over on a separate channel). Its sessions are the gateway's
    /// to end.
    pub async fn new_password(&self, id: &str) -> Result<Secret, DirectoryError> {
        // 15 random bytes: 120 bits, 20 characters.
        let password = random_token(15);
        let hash = self.0.hasher.hash(password.clone()).await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(&self.0.pool)
            .await?;
        Ok(Secret::from(password))
    }

    /// Locks or unlocks an account (the gateway ends the sessions of a
    /// locked one).
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> Result<(), DirectoryError> {
        sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(id)
            .execute(&self.0.pool)
            .await?;
        // The policy decides only for enabled accounts: every node reloads.
        self.policy_changed().await
    }

    /// Updates an account's display name and e-mail address.
    pub async fn set_profile(
        &self,
        id: &str,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<(), DirectoryError> {
        sqlx::query("UPDATE users SET name = $1, email = $2 WHERE id = $3")
            .bind(name)
            .bind(email)
            .bind(id)
            .execute(&self.0.pool)
            .await?;
        // Conditions may name the e-mail address: every node reloads.
        self.policy_changed().await
    }

    /// Creates an account without a local password (its identity lives at
    /// an upstream) under the first free name of `candidates`; `None` when
    /// every one is taken.
    pub async fn provision(
        &self,
        tenant: &str,
        candidates: &[String],
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<Option<User>, DirectoryError> {
        let now = self.0.clock.now();
        for username in candidates {
            let id = uuid::Uuid::new_v4().to_string();
            let inserted = sqlx::query(
                "INSERT INTO users (id, tenant, username, password_hash, name, email, disabled, created_at) \
                 VALUES ($1, $2, $3, NULL, $4, $5, 0, $6)",
            )
            .bind(&id)
            .bind(tenant)
            .bind(username)
            .bind(name)
            .bind(email)
            .bind(now)
            .execute(&self.0.pool)
            .await;
            if crate::inserted(inserted)? {
                self.policy_changed().await?;
                return user_by_id(&self.0.pool, &id).await;
            }
        }
        Ok(None)
    }

    /// The account of a first login, made with `link` in one transaction
    /// (so a concurrent first login of the same identity waits, then gets
    /// the account the first one made): the first free name of
    /// `candidates`; `Ok(None)` when none is free. `link` inserts the link
    /// and says whether it was new; when it was not, nothing is kept.
    pub(crate) async fn provision_linked<F>(
        &self,
        tenant: &str,
        candidates: &[String],
        name: Option<&str>,
        email: Option<&str>,
        link: F,
    ) -> Result<Option<Result<User, ()>>, DirectoryError>
    where
        F: for<'c> Fn(
            &'c mut sqlx::AnyConnection,
            &'c str,
        ) -> futures_util::future::BoxFuture<'c, Result<bool, DirectoryError>>,
    {
        let now = self.0.clock.now();
        for username in candidates {
            let id = uuid::Uuid::new_v4().to_string();
            let mut tx = self.0.pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO users (id, tenant, username, password_hash, name, email, disabled, created_at) \
                 VALUES ($1, $2, $3, NULL, $4, $5, 0, $6)",
            )
            .bind(&id)
            .bind(tenant)
            .bind(username)
            .bind(name)
            .bind(email)
            .bind(now)
            .execute(&mut *tx)
            .await;
            if !crate::inserted(inserted)? {
                tx.rollback().await?;
                continue;
            }
            if !link(&mut tx, &id).await? {
                // Linked by another first login meanwhile.
                tx.rollback().await?;
                return Ok(Some(Err(())));
            }
            tx.commit().await?;
            self.policy_changed().await?;
            return Ok(user_by_id(&self.0.pool, &id).await?.map(Ok));
        }
        Ok(None)
    }

    /// Removes an account made a moment ago that is not wanted after all
    /// (a first login that lost a race: no roles, sessions or links yet).
    pub async fn discard(&self, id: &str) -> Result<(), DirectoryError> {
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.0.pool)
            .await?;
        Ok(())
    }

    /// The roles an account holds in a tenant.
    pub async fn roles_in(&self, id: &str, tenant: &str) -> Result<Vec<String>, DirectoryError> {
        Ok(interkom_policy::roles::roles_in(&self.0.pool, id, tenant).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_account_never_prints_its_password() {
        let u = NewUser {
            tenant: "hitzacker".into(),
            username: "m.muster".into(),
            password: Secret::new("Kennwort-2026-geheim"),
            name: None,
            email: None,
            roles: vec![],
        };
        assert!(!format!("{u:?}").contains("Kennwort"));
    }

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
