//! Second-factor enrolments: TOTP credentials (secret sealed under the
//! key-encryption key, the last time step used), one-time recovery codes
//! (keyed hashes) and passkeys (webauthn-rs credentials, kept as the JSON
//! the gateway gives). How a factor is verified is the gateway's; what is
//! enrolled is kept here.

use crate::{Directory, DirectoryError};

fn totp_aad(user_id: &str) -> String {
    format!("totp|{user_id}")
}

fn recovery_hash(dir: &Directory, user_id: &str, normalised: &str) -> String {
    dir.0
        .master
        .keyed_hash(&format!("recovery|{user_id}|{normalised}"))
}

/// A TOTP secret shown for enrolment and not yet confirmed.
pub struct StagedTotp {
    pub secret: Vec<u8>,
    /// Names this very secret when it is confirmed (a second tab may have
    /// staged another meanwhile).
    pub token: String,
}

/// A registered passkey as stored.
pub struct StoredPasskey {
    /// The webauthn-rs credential, serialised.
    pub passkey: String,
    pub device_bound: bool,
}

impl Directory {
    /// Whether the account has a confirmed TOTP credential.
    pub async fn has_totp(&self, user_id: &str) -> Result<bool, DirectoryError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM totp_credentials WHERE user_id = $1 AND confirmed_at IS NOT NULL",
        )
        .bind(user_id)
        .fetch_one(&self.0.pool)
        .await?;
        Ok(n > 0)
    }

    /// The confirmed TOTP secret and the last time step used.
    pub async fn totp_secret(
        &self,
        user_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>, DirectoryError> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT secret_enc, last_step FROM totp_credentials \
             WHERE user_id = $1 AND confirmed_at IS NOT NULL",
        )
        .bind(user_id)
        .fetch_optional(&self.0.pool)
        .await?;
        let Some((sealed, last_step)) = row else {
            return Ok(None);
        };
        let secret = self
            .0
            .master
            .decrypt(&sealed, &totp_aad(user_id))
            .map_err(|_| DirectoryError::Crypto("TOTP secret cannot be opened"))?;
        Ok(Some((secret, last_step)))
    }

    /// Records `step` as used; false when it (or a later one) was used
    /// already: a code counts once, even when two nodes see it at the same
    /// moment.
    pub async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, DirectoryError> {
        let n = sqlx::query(
            "UPDATE totp_credentials SET last_step = $1 WHERE user_id = $2 AND last_step < $1",
        )
        .bind(step)
        .bind(user_id)
        .execute(&self.0.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Uses up a recovery code (normalised: 16 upper-case base32
    /// characters); false when it is not one of the account's unused ones.
    pub async fn use_recovery_code(
        &self,
        user_id: &str,
        normalised: &str,
    ) -> Result<bool, DirectoryError> {
        let n = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 \
             WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(self.0.clock.now())
        .bind(user_id)
        .bind(recovery_hash(self, user_id, normalised))
        .execute(&self.0.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Keeps a new TOTP secret for enrolment (replacing one not confirmed
    /// yet; a confirmed credential stays).
    pub async fn stage_totp(&self, user_id: &str, secret: &[u8]) -> Result<(), DirectoryError> {
        let sealed = self
            .0
            .master
            .encrypt(secret, &totp_aad(user_id))
            .map_err(|_| DirectoryError::Crypto("cannot seal the TOTP secret"))?;
        sqlx::query(
            "INSERT INTO totp_credentials (user_id, secret_enc, confirmed_at, last_step, created_at) \
             VALUES ($1, $2, NULL, 0, $3) \
             ON CONFLICT (user_id) DO UPDATE SET secret_enc = $2, created_at = $3 \
             WHERE totp_credentials.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(&sealed)
        .bind(self.0.clock.now())
        .execute(&self.0.pool)
        .await?;
        Ok(())
    }

    /// The staged TOTP secret; `None` when there is none or it is
    /// confirmed already.
    pub async fn staged_totp(&self, user_id: &str) -> Result<Option<StagedTotp>, DirectoryError> {
        let row: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT secret_enc, confirmed_at FROM totp_credentials WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.0.pool)
        .await?;
        let Some((sealed, None)) = row else {
            return Ok(None);
        };
        let secret = self
            .0
            .master
            .decrypt(&sealed, &totp_aad(user_id))
            .map_err(|_| DirectoryError::Crypto("TOTP secret cannot be opened"))?;
        Ok(Some(StagedTotp {
            secret,
            token: sealed,
        }))
    }

    /// Confirms the staged secret with the step its first code matched and
    /// replaces the recovery codes (normalised); false when it was
    /// confirmed or replaced meanwhile.
    pub async fn confirm_totp(
        &self,
        user_id: &str,
        staged: &StagedTotp,
        step: i64,
        recovery_codes: &[String],
    ) -> Result<bool, DirectoryError> {
        let mut tx = self.0.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE totp_credentials SET confirmed_at = $1, last_step = $2 \
             WHERE user_id = $3 AND secret_enc = $4 AND confirmed_at IS NULL",
        )
        .bind(self.0.clock.now())
        .bind(step)
        .bind(user_id)
        .bind(&staged.token)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for c in recovery_codes {
            sqlx::query(
                "INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES ($1, $2, NULL)",
            )
            .bind(user_id)
            .bind(recovery_hash(self, user_id, c))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The account's passkeys.
    pub async fn passkeys(&self, user_id: &str) -> Result<Vec<StoredPasskey>, DirectoryError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT passkey, device_bound FROM webauthn_credentials WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_all(&self.0.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(passkey, d)| StoredPasskey {
                passkey,
                device_bound: d != 0,
            })
            .collect())
    }

    /// One passkey of the account by credential id.
    pub async fn passkey(
        &self,
        user_id: &str,
        cred_id: &str,
    ) -> Result<Option<StoredPasskey>, DirectoryError> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT passkey, device_bound FROM webauthn_credentials WHERE cred_id = $1 AND user_id = $2",
        )
        .bind(cred_id)
        .bind(user_id)
        .fetch_optional(&self.0.pool)
        .await?;
        Ok(row.map(|(passkey, d)| StoredPasskey {
            passkey,
            device_bound: d != 0,
        }))
    }

    /// Registers a passkey; false when the credential belongs to an
    /// account already.
    pub async fn add_passkey(
        &self,
        user_id: &str,
        cred_id: &str,
        passkey: &str,
        device_bound: bool,
    ) -> Result<bool, DirectoryError> {
        let inserted = sqlx::query(
            "INSERT INTO webauthn_credentials (cred_id, user_id, passkey, device_bound, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(cred_id)
        .bind(user_id)
        .bind(passkey)
        .bind(i64::from(device_bound))
        .bind(self.0.clock.now())
        .execute(&self.0.pool)
        .await;
        crate::inserted(inserted)
    }

    /// Stores a passkey's state after a login (counter, backup state).
    pub async fn passkey_used(&self, cred_id: &str, passkey: &str) -> Result<(), DirectoryError> {
        sqlx::query(
            "UPDATE webauthn_credentials SET passkey = $1, last_used_at = $2 WHERE cred_id = $3",
        )
        .bind(passkey)
        .bind(self.0.clock.now())
        .bind(cred_id)
        .execute(&self.0.pool)
        .await?;
        Ok(())
    }

    /// Removes an account's TOTP credential, recovery codes and passkeys
    /// (an administrator's reset after a lost phone); true if there was
    /// anything to remove. Its sessions are the gateway's to end.
    pub async fn remove_second_factors(&self, user_id: &str) -> Result<bool, DirectoryError> {
        let mut tx = self.0.pool.begin().await?;
        let mut n = 0;
        for table in ["totp_credentials", "recovery_codes", "webauthn_credentials"] {
            n += sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Whether an account has a confirmed second factor.
    pub async fn has_second_factor(&self, user_id: &str) -> Result<bool, DirectoryError> {
        Ok(self.has_totp(user_id).await? || !self.passkeys(user_id).await?.is_empty())
    }
}
