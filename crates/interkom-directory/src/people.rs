//! Citizens and businesses: accounts of their own populations, separate
//! from staff. A person has no tenant membership and no roles, is never an
//! administrator and is no subject of the policy (which reads staff only);
//! the account's `tenant` column names the tenant whose source created it
//! (who answers for it), not a membership.
//!
//! A person is linked on the pseudonym the source gives in its configured
//! attribute (BundID's bPK2), kept as a keyed hash: a new pseudonym is a
//! new account, and a transient NameID never links. What the person's
//! Leistungen needed of their data is kept sealed, and the account is
//! deleted after a time without login (DSGVO).

use std::collections::BTreeMap;

use interkom_policy::Population;

use crate::{Directory, DirectoryError, User};

/// A person's data as the Leistungen needed it: claim → value.
pub type PersonData = BTreeMap<String, String>;

/// A person found or created at a login.
pub struct Linked {
    pub user: User,
    /// The account was made by this login.
    pub created: bool,
    /// What was kept of the person's data (for
    /// [`Directory::person_logged_in`]); empty for a new account, which
    /// was made with the data given.
    pub kept: PersonData,
}

/// A person's account with its sealed data, read in one statement.
#[derive(sqlx::FromRow)]
struct PersonRow {
    #[sqlx(flatten)]
    user: User,
    data_enc: Option<String>,
}

/// An account idle long enough to be deleted.
pub struct Idle {
    pub user_id: String,
    pub source: String,
    /// The keyed hash the account was linked on.
    pub pseudonym: String,
    pub tenant: String,
    pub population: String,
}

fn data_aad(user_id: &str) -> String {
    format!("interkom/person-data/{user_id}")
}

impl Directory {
    /// The keyed hash a person is linked on.
    pub fn pseudonym_key(&self, source: &str, pseudonym: &str) -> String {
        self.0
            .master
            .keyed_hash(&format!("person|{source}|{pseudonym}"))
    }

    /// The person of `population` that source `source` knows by
    /// `pseudonym`; made now if new. Never a staff account.
    pub async fn link_person(
        &self,
        population: Population,
        source: &str,
        tenant: &str,
        pseudonym: &str,
        data: &PersonData,
    ) -> Result<Linked, DirectoryError> {
        let key = self.pseudonym_key(source, pseudonym);
        for _ in 0..2 {
            if let Some(row) = self.person_by_key(source, &key).await? {
                if row.user.population != population.as_str() {
                    return Err(DirectoryError::Invalid(
                        "the pseudonym belongs to an account of another population".into(),
                    ));
                }
                let kept = self.unseal(&row.user.id, row.data_enc.as_deref())?;
                return Ok(Linked {
                    user: row.user,
                    created: false,
                    kept,
                });
            }
            let now = self.0.clock.now();
            let id = uuid::Uuid::new_v4().to_string();
            // A first login keeps its data with the link: no update after.
            let sealed = self.seal(&id, data)?;
            let mut tx = self.0.pool.begin().await?;
            sqlx::query(
                "INSERT INTO users (id, tenant, username, password_hash, name, email, disabled, created_at, population) \
                 VALUES ($1, $2, $3, NULL, NULL, NULL, 0, $4, $5)",
            )
            .bind(&id)
            .bind(tenant)
            .bind(format!("{}:{id}", population.as_str()))
            .bind(now)
            .bind(population.as_str())
            .execute(&mut *tx)
            .await?;
            let r = sqlx::query(
                "INSERT INTO people (user_id, source, pseudonym, data_enc, created_at, last_login_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(&id)
            .bind(source)
            .bind(&key)
            .bind(sealed)
            .bind(now)
            .execute(&mut *tx)
            .await;
            if !crate::inserted(r)? {
                // A first login of the same person on another node won.
                tx.rollback().await?;
                continue;
            }
            tx.commit().await?;
            // As inserted: no second round trip to read it back.
            return Ok(Linked {
                user: User {
                    id: id.clone().into(),
                    tenant: tenant.to_owned().into(),
                    username: format!("{}:{id}", population.as_str()),
                    password_hash: None,
                    name: None,
                    email: None,
                    disabled: 0,
                    population: population.as_str().to_owned(),
                },
                created: true,
                kept: PersonData::new(),
            });
        }
        Err(DirectoryError::Invalid(
            "the person could not be linked".into(),
        ))
    }

    async fn person_by_key(
        &self,
        source: &str,
        key: &str,
    ) -> Result<Option<PersonRow>, DirectoryError> {
        Ok(sqlx::query_as(
            "SELECT u.id, u.tenant, u.username, u.password_hash, u.name, u.email, u.disabled, \
             u.population, p.data_enc FROM people p JOIN users u ON u.id = p.user_id \
             WHERE p.source = $1 AND p.pseudonym = $2",
        )
        .bind(source)
        .bind(key)
        .fetch_optional(&self.0.pool)
        .await?)
    }

    /// Records a login of a person and keeps the data given, merged over
    /// `kept` (what [`Directory::link_person`] found; only what some
    /// Leistung needed is ever given).
    pub async fn person_logged_in(
        &self,
        user_id: &str,
        mut kept: PersonData,
        data: &PersonData,
    ) -> Result<(), DirectoryError> {
        let now = self.0.clock.now();
        kept.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
        let sealed = self.seal(user_id, &kept)?;
        sqlx::query("UPDATE people SET last_login_at = $1, data_enc = $2 WHERE user_id = $3")
            .bind(now)
            .bind(sealed)
            .bind(user_id)
            .execute(&self.0.pool)
            .await?;
        Ok(())
    }

    /// Whether any person is linked on source `source`.
    pub async fn source_has_people(&self, source: &str) -> Result<bool, DirectoryError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM people WHERE source = $1 LIMIT 1")
                .bind(source)
                .fetch_optional(&self.0.pool)
                .await?;
        Ok(found.is_some())
    }

    /// What is kept of a person's data (empty for staff).
    pub async fn person_data(&self, user_id: &str) -> Result<PersonData, DirectoryError> {
        let sealed: Option<Option<String>> =
            sqlx::query_scalar("SELECT data_enc FROM people WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.0.pool)
                .await?;
        self.unseal(user_id, sealed.flatten().as_deref())
    }

    fn seal(&self, user_id: &str, data: &PersonData) -> Result<Option<String>, DirectoryError> {
        if data.is_empty() {
            return Ok(None);
        }
        let sealed = self
            .0
            .master
            .encrypt(serde_json::to_string(data)?.as_bytes(), &data_aad(user_id))
            .map_err(|_| DirectoryError::Crypto("cannot seal a person's data"))?;
        Ok(Some(sealed))
    }

    fn unseal(&self, user_id: &str, sealed: Option<&str>) -> Result<PersonData, DirectoryError> {
        let Some(sealed) = sealed else {
            return Ok(PersonData::new());
        };
        let plain = self
            .0
            .master
            .decrypt(sealed, &data_aad(user_id))
            .map_err(|_| DirectoryError::Corrupt("a person's data"))?;
        serde_json::from_slice(&plain).map_err(|_| DirectoryError::Corrupt("a person's data"))
    }

    /// People without a login since `before`, at most `limit`.
    pub async fn idle_people(&self, before: i64, limit: i64) -> Result<Vec<Idle>, DirectoryError> {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(&format!(
            "SELECT p.user_id, p.source, p.pseudonym, u.tenant, u.population FROM people p \
             JOIN users u ON u.id = p.user_id WHERE p.last_login_at < $1 ORDER BY p.last_login_at LIMIT {}",
            limit.max(0)
        ))
        .bind(before)
        .fetch_all(&self.0.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(user_id, source, pseudonym, tenant, population)| Idle {
                user_id,
                source,
                pseudonym,
                tenant,
                population,
            })
            .collect())
    }

    /// Deletes a person's account with everything kept of it (sessions,
    /// consents, the link and the data); whether there was one. Staff
    /// accounts are never deleted here.
    pub async fn delete_person(&self, user_id: &str) -> Result<bool, DirectoryError> {
        let mut tx = self.0.pool.begin().await?;
        let is_person: Option<String> =
            sqlx::query_scalar("SELECT id FROM users WHERE id = $1 AND population <> 'staff'")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        if is_person.is_none() {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM sessions WHERE user_id = $1",
            "DELETE FROM consents WHERE account_id = $1",
            "DELETE FROM people WHERE user_id = $1",
            "DELETE FROM users WHERE id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
