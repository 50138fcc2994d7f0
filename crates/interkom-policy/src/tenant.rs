//! The administrative tree.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::AnyPool;

use crate::PolicyError;

/// The level of a tenant. A Stadt without Samtgemeinde sits on the
/// Samtgemeinde level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Kreis,
    Samtgemeinde,
    Gemeinde,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Kreis => "kreis",
            Level::Samtgemeinde => "samtgemeinde",
            Level::Gemeinde => "gemeinde",
        }
    }
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "kreis" => Some(Level::Kreis),
            "samtgemeinde" => Some(Level::Samtgemeinde),
            "gemeinde" => Some(Level::Gemeinde),
            _ => None,
        }
    }
    /// The level a tenant's parent must have.
    fn parent_level(self) -> Option<Level> {
        match self {
            Level::Kreis => None,
            Level::Samtgemeinde => Some(Level::Kreis),
            Level::Gemeinde => Some(Level::Samtgemeinde),
        }
    }
}

/// A tenant as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub id: String,
    pub name: String,
    pub level: Level,
    #[serde(default)]
    pub parent: Option<String>,
}

/// A tenant with its position in the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub level: Level,
    pub parent: Option<String>,
    /// Tenant ids from the Kreis down to this one.
    pub path: Vec<String>,
}

impl Tenant {
    /// The stored form of the path: `/kreis/sg/gemeinde/`.
    pub fn path_string(&self) -> String {
        let mut s = String::from("/");
        for p in &self.path {
            s.push_str(p);
            s.push('/');
        }
        s
    }
}

/// The whole tree in memory (a Land has about 11,400 tenants: small).
#[derive(Debug, Clone, Default)]
pub struct TenantTree {
    by_id: HashMap<String, Tenant>,
    order: Vec<String>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl TenantTree {
    /// Validates a configured tree: ids are slugs, unique, parents exist and
    /// sit one level up, exactly the Kreis tenants have no parent.
    pub fn from_specs(specs: &[TenantSpec]) -> Result<TenantTree, PolicyError> {
        let mut specs_by_id = HashMap::new();
        for s in specs {
            if !valid_id(&s.id) {
                return Err(PolicyError::InvalidTree(format!(
                    "tenant id `{}` must be a slug of a-z, 0-9 and '-'",
                    s.id
                )));
            }
            if specs_by_id.insert(s.id.clone(), s).is_some() {
                return Err(PolicyError::InvalidTree(format!(
                    "tenant id `{}` appears twice",
                    s.id
                )));
            }
        }
        let mut tree = TenantTree::default();
        for s in specs {
            match (&s.parent, s.level.parent_level()) {
                (None, None) => {}
                (Some(p), Some(want)) => {
                    let parent = specs_by_id.get(p).ok_or_else(|| {
                        PolicyError::InvalidTree(format!(
                            "parent `{p}` of `{}` does not exist",
                            s.id
                        ))
                    })?;
                    if parent.level != want {
                        return Err(PolicyError::InvalidTree(format!(
                            "`{}` is a {} but its parent `{p}` is a {}",
                            s.id,
                            s.level.as_str(),
                            parent.level.as_str()
                        )));
                    }
                }
                (None, Some(_)) => {
                    return Err(PolicyError::InvalidTree(format!(
                        "`{}` needs a parent",
                        s.id
                    )))
                }
                (Some(_), None) => {
                    return Err(PolicyError::InvalidTree(format!(
                        "`{}` is a Kreis and has no parent",
                        s.id
                    )))
                }
            }
            let mut path = vec![s.id.clone()];
            let mut cur = s.parent.clone();
            while let Some(p) = cur {
                path.push(p.clone());
                cur = specs_by_id.get(&p).and_then(|x| x.parent.clone());
            }
            path.reverse();
            tree.order.push(s.id.clone());
            tree.by_id.insert(
                s.id.clone(),
                Tenant {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    level: s.level,
                    parent: s.parent.clone(),
                    path,
                },
            );
        }
        Ok(tree)
    }

    pub fn get(&self, id: &str) -> Option<&Tenant> {
        self.by_id.get(id)
    }

    /// Tenants in tree order (parents before children).
    pub fn iter(&self) -> impl Iterator<Item = &Tenant> {
        let mut v: Vec<&Tenant> = self
            .order
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v.into_iter()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Loads the tree as stored.
    pub async fn load(pool: &AnyPool) -> Result<TenantTree, PolicyError> {
        let rows: Vec<(String, String, String, Option<String>)> =
            sqlx::query_as("SELECT id, name, level, parent FROM tenants ORDER BY path")
                .fetch_all(pool)
                .await?;
        let specs = rows
            .into_iter()
            .map(|(id, name, level, parent)| {
                let level = Level::parse(&level)
                    .ok_or_else(|| PolicyError::InvalidTree(format!("stored level `{level}`")))?;
                Ok(TenantSpec {
                    id,
                    name,
                    level,
                    parent,
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        TenantTree::from_specs(&specs)
    }

    /// Stores the configured tree: inserts new tenants and updates names.
    /// Tenants are never deleted here (audit events and accounts refer to them).
    pub async fn store(&self, pool: &AnyPool) -> Result<(), PolicyError> {
        let mut tx = pool.begin().await?;
        for t in self.iter() {
            sqlx::query(
                "INSERT INTO tenants (id, name, level, parent, path) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name",
            )
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.level.as_str())
            .bind(&t.parent)
            .bind(t.path_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
