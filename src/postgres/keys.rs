//! Key management: create (the key is shown once), revoke, rotate, list.
//!
//! Every change commits in one transaction and notifies the running gateways, which refuse a
//! revoked key as soon as they have reloaded (well within a second on a healthy database).

use std::fmt;
use std::time::SystemTime;

use super::{Database, DbError};
use crate::engine::{KeyDigest, PermissionSpec};

/// A key to create.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct NewKey {
    /// A unique printable name.
    pub alias: Option<String>,
    /// The key's team (a row of `gk_teams`).
    pub team_id: Option<String>,
    /// The key's organisation (else its team's).
    pub organization_id: Option<String>,
    /// The agent the key belongs to.
    pub agent_id: Option<String>,
    /// The key level's permissions (`None`: unrestricted at the key level).
    pub permissions: Option<PermissionSpec>,
    /// When it stops working.
    pub expires_at: Option<SystemTime>,
}

impl NewKey {
    /// A key with this alias and nothing else set.
    #[must_use]
    pub fn alias(alias: impl Into<String>) -> Self {
        Self {
            alias: Some(alias.into()),
            ..Self::default()
        }
    }
}

/// A created key: the plaintext, which is not stored and cannot be shown again, and its digest.
pub struct CreatedKey {
    /// The key to hand to its holder (`sk-` and 64 hex digits).
    pub key: String,
    /// What the database keeps.
    pub digest: KeyDigest,
}

impl fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedKey")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// Which key: by alias, by the key itself, or by its digest.
#[derive(Clone)]
pub enum KeyRef {
    /// The key's alias.
    Alias(String),
    /// The plaintext key (hashed here, never sent to the database).
    Key(String),
    /// The digest.
    Digest(KeyDigest),
}

impl fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Alias(a) => write!(f, "Alias({a:?})"),
            Self::Key(k) => write!(f, "Key({:?})", KeyDigest::of(k)),
            Self::Digest(d) => write!(f, "Digest({d:?})"),
        }
    }
}

impl KeyRef {
    fn condition(
        &self,
    ) -> (
        &'static str,
        Box<dyn tokio_postgres::types::ToSql + Sync + Send>,
    ) {
        match self {
            Self::Alias(a) => ("key_alias = $1", Box::new(a.clone())),
            Self::Key(k) => ("key_digest = $1", Box::new(KeyDigest::of(k).0.to_vec())),
            Self::Digest(d) => ("key_digest = $1", Box::new(d.0.to_vec())),
        }
    }
}

/// A stored key, as [`Database::list_keys`] shows it (never the key).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The digest.
    pub digest: KeyDigest,
    /// The alias.
    pub alias: Option<String>,
    /// The team.
    pub team_id: Option<String>,
    /// The organisation.
    pub organization_id: Option<String>,
    /// The agent.
    pub agent_id: Option<String>,
    /// When it stops working.
    pub expires_at: Option<SystemTime>,
    /// Whether it is blocked (revoked).
    pub blocked: bool,
    /// When it was created.
    pub created_at: SystemTime,
}

/// A new key: `sk-` and 64 hex digits from two random UUIDs (244 random bits).
fn fresh_key() -> String {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    format!("sk-{}{}", a.simple(), b.simple())
}

/// Stores a fresh key with `new`'s alias, team, organisation, agent and expiry, and the
/// permissions row `permission_id`; returns it (the only time the key is seen).
async fn insert_key(
    tx: &deadpool_postgres::Transaction<'_>,
    new: &NewKey,
    permission_id: Option<i64>,
) -> Result<CreatedKey, DbError> {
    let key = fresh_key();
    let digest = KeyDigest::of(&key);
    tx.execute(
        "INSERT INTO gk_keys (key_digest, key_alias, team_id, organization_id, agent_id, \
         object_permission_id, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &digest.0.as_slice(),
            &new.alias,
            &new.team_id,
            &new.organization_id,
            &new.agent_id,
            &permission_id,
            &new.expires_at,
        ],
    )
    .await
    .map_err(|e| DbError::new("storing the key", e))?;
    Ok(CreatedKey { key, digest })
}

fn not_found(key: &KeyRef) -> DbError {
    DbError::new("finding the key", format!("no key matches {key:?}"))
}

impl Database {
    /// Creates a key. Its permissions, if any, get a row of their own in
    /// `gk_object_permissions`.
    ///
    /// # Errors
    ///
    /// A duplicate alias, an unknown team, organisation or agent, or a database failure.
    pub async fn create_key(&self, new: &NewKey) -> Result<CreatedKey, DbError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| DbError::new("creating a key", e))?;
        let permission_id: Option<i64> = match &new.permissions {
            None => None,
            Some(p) => {
                let tools = p.mcp_tool_permissions.as_ref().map(|t| {
                    serde_json::Value::Object(
                        t.iter()
                            .map(|(s, tools)| (s.clone(), serde_json::json!(tools)))
                            .collect(),
                    )
                });
                let row = tx
                    .query_one(
                        "INSERT INTO gk_object_permissions \
                         (mcp_servers, mcp_access_groups, mcp_tool_permissions) \
                         VALUES ($1, $2, $3) RETURNING id",
                        &[&p.mcp_servers, &p.mcp_access_groups, &tools],
                    )
                    .await
                    .map_err(|e| DbError::new("storing the key's permissions", e))?;
                Some(row.get(0))
            }
        };
        let created = insert_key(&tx, new, permission_id).await?;
        tx.commit()
            .await
            .map_err(|e| DbError::new("creating a key", e))?;
        Ok(created)
    }

    /// Revokes a key: it stays listed, blocked, and is refused everywhere once the gateways
    /// have reloaded.
    ///
    /// # Errors
    ///
    /// No such key, or a database failure.
    pub async fn revoke_key(&self, key: &KeyRef) -> Result<(), DbError> {
        let client = self.client().await?;
        let (condition, value) = key.condition();
        let n = client
            .execute(
                &format!("UPDATE gk_keys SET blocked = true, updated_at = now() WHERE {condition}"),
                &[&*value],
            )
            .await
            .map_err(|e| DbError::new("revoking the key", e))?;
        if n == 0 {
            return Err(not_found(key));
        }
        Ok(())
    }

    /// Replaces a key with a new one of the same alias, team, organisation, agent,
    /// permissions and expiry, in one transaction: the old key is revoked (its alias moves to
    /// the new one) and the new key is returned once.
    ///
    /// # Errors
    ///
    /// No such key, or a database failure.
    pub async fn rotate_key(&self, key: &KeyRef) -> Result<CreatedKey, DbError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| DbError::new("rotating a key", e))?;
        let (condition, value) = key.condition();
        let old = tx
            .query_opt(
                &format!(
                    "SELECT key_digest, key_alias, team_id, organization_id, agent_id, \
                     object_permission_id, expires_at FROM gk_keys \
                     WHERE {condition} AND NOT blocked FOR UPDATE"
                ),
                &[&*value],
            )
            .await
            .map_err(|e| DbError::new("rotating the key", e))?
            .ok_or_else(|| not_found(key))?;
        let old_digest: Vec<u8> = old.get(0);
        tx.execute(
            "UPDATE gk_keys SET blocked = true, key_alias = NULL, updated_at = now() \
             WHERE key_digest = $1",
            &[&old_digest],
        )
        .await
        .map_err(|e| DbError::new("revoking the old key", e))?;
        let same = NewKey {
            alias: old.get(1),
            team_id: old.get(2),
            organization_id: old.get(3),
            agent_id: old.get(4),
            permissions: None,
            expires_at: old.get(6),
        };
        let created = insert_key(&tx, &same, old.get(5)).await?;
        tx.commit()
            .await
            .map_err(|e| DbError::new("rotating a key", e))?;
        Ok(created)
    }

    /// Every stored key, newest first (never the keys themselves).
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, DbError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key_digest, key_alias, team_id, organization_id, agent_id, expires_at, \
                 blocked, created_at FROM gk_keys ORDER BY created_at DESC, key_digest",
                &[],
            )
            .await
            .map_err(|e| DbError::new("listing the keys", e))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let raw: Vec<u8> = r.get(0);
                Some(KeyInfo {
                    digest: KeyDigest(raw.as_slice().try_into().ok()?),
                    alias: r.get(1),
                    team_id: r.get(2),
                    organization_id: r.get(3),
                    agent_id: r.get(4),
                    expires_at: r.get(5),
                    blocked: r.get(6),
                    created_at: r.get(7),
                })
            })
            .collect())
    }
}
