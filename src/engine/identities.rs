//! The built-in identity store: keys, teams, organisations, end users and agents, in memory,
//! with keys held only as SHA-256 digests.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

pub use super::key_digest::{KeyDigest, KeyMaterial};
use super::limits::{LevelLimits, LimitError, LimitSpec, compile_level, subject};
use super::{Catalog, CatalogError, Hierarchy, Level, PermissionSpec, Permissions, Principal};

/// A virtual key.
#[derive(Clone, Debug, Default)]
pub struct KeySpec {
    /// The key (never printed).
    pub key: Option<KeyMaterial>,
    /// A printable name.
    pub key_alias: Option<String>,
    /// The key's team.
    pub team_id: Option<String>,
    /// The key's organisation (else its team's).
    pub organization_id: Option<String>,
    /// The agent the key belongs to.
    pub agent_id: Option<String>,
    /// The key's permissions.
    pub permissions: Option<PermissionSpec>,
    /// When the key stops working (`None`: never). Checked on every request.
    pub expires_at: Option<SystemTime>,
    /// A blocked key is refused (LiteLLM's `blocked`).
    pub blocked: bool,
    /// A key whose budget is spent is refused (LiteLLM's `spend` at or over `max_budget`, its
    /// own or its team's, organisation's).
    pub over_budget: bool,
    /// How this key's levels combine (the rule of the store it comes from).
    pub hierarchy: Hierarchy,
    /// The key's limits and budget.
    pub limits: Option<LimitSpec>,
}

/// Why a key names no principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRefusal {
    /// The store does not hold the key.
    Unknown,
    /// The key is blocked.
    Blocked,
    /// The key's expiry has passed.
    Expired,
    /// The key's budget (or its team's, organisation's) is spent.
    OverBudget,
}

/// A team.
#[derive(Clone, Debug, Default)]
pub struct TeamSpec {
    /// The id keys refer to.
    pub team_id: String,
    /// The team's organisation.
    pub organization_id: Option<String>,
    /// The team's permissions.
    pub permissions: Option<PermissionSpec>,
    /// The team's limits and budget.
    pub limits: Option<LimitSpec>,
}

/// An organisation, end user or agent: an id and permissions.
#[derive(Clone, Debug, Default)]
pub struct MemberSpec {
    /// The id.
    pub id: String,
    /// The permissions.
    pub permissions: Option<PermissionSpec>,
    /// The limits and budget.
    pub limits: Option<LimitSpec>,
}

/// A mistake in the identity part of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityConfigError {
    /// A key entry has no key.
    MissingKey,
    /// Two keys (or a key and the master key) are the same.
    DuplicateKey(String),
    /// Two entries share an id.
    DuplicateId {
        /// Which kind of entry.
        level: Level,
        /// The id.
        id: String,
    },
    /// An entry refers to an id that is not defined.
    UnknownId {
        /// Which kind of entry is missing.
        level: Level,
        /// The id.
        id: String,
    },
    /// The permissions name something the catalog lacks.
    Permissions(CatalogError),
    /// The limits of an entry are wrong.
    Limits {
        /// Which kind of entry.
        level: Level,
        /// The entry's id (a key's alias or position, never the key).
        id: String,
        /// What is wrong.
        error: LimitError,
    },
}

impl fmt::Display for IdentityConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingKey => f.write_str("a key entry needs `key` or `key_hash`"),
            Self::DuplicateKey(who) => write!(
                f,
                "the key of {who} is used twice; every key must be unique"
            ),
            Self::DuplicateId { level, id } => write!(f, "{level} id {id:?} is defined twice"),
            Self::UnknownId { level, id } => write!(
                f,
                "{level} {id:?} is not defined; add it to the {level} list or remove the reference"
            ),
            Self::Permissions(e) => e.fmt(f),
            Self::Limits { level, id, error } => write!(f, "the limits of {level} {id:?}: {error}"),
        }
    }
}

impl std::error::Error for IdentityConfigError {}

#[derive(Debug)]
struct KeyRecord {
    key_id: Arc<str>,
    alias: Option<Arc<str>>,
    team_id: Option<Arc<str>>,
    organization_id: Option<Arc<str>>,
    agent_id: Option<Arc<str>>,
    key: Option<Arc<Permissions>>,
    team: Option<Arc<Permissions>>,
    organization: Option<Arc<Permissions>>,
    expires_at: Option<SystemTime>,
    blocked: bool,
    over_budget: bool,
    hierarchy: Hierarchy,
    /// The key's, its team's and its organisation's limits.
    limits: [Option<Arc<LevelLimits>>; 3],
}

#[derive(Debug)]
struct Member {
    id: Arc<str>,
    permissions: Option<Arc<Permissions>>,
    limits: Option<Arc<LevelLimits>>,
}

#[derive(Debug)]
struct TeamRecord {
    permissions: Option<Arc<Permissions>>,
    organization_id: Option<Arc<str>>,
    limits: Option<Arc<LevelLimits>>,
}

/// Who a caller says it is when no key names it (an OAuth token's claims): the ids the store
/// looks up, and the permissions of the key level.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ClaimedIdentity<'a> {
    /// A printable id for the caller (a token's subject).
    pub key_id: Option<&'a str>,
    /// A display name.
    pub key_alias: Option<&'a str>,
    /// The team, which must be configured.
    pub team_id: Option<&'a str>,
    /// The organisation, which must be configured; else the team's.
    pub organization_id: Option<&'a str>,
    /// The end user.
    pub end_user_id: Option<&'a str>,
    /// The agent.
    pub agent_id: Option<&'a str>,
    /// The key level's permissions (for a token: what its scopes grant).
    pub permissions: Option<Arc<Permissions>>,
}

impl<'a> ClaimedIdentity<'a> {
    /// Nothing claimed yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

/// Keys, teams, organisations, end users and agents, compiled against one [`Catalog`].
#[derive(Debug, Default)]
pub struct IdentityStore {
    keys: HashMap<KeyDigest, KeyRecord>,
    master: Option<KeyDigest>,
    teams: HashMap<Box<str>, TeamRecord>,
    organizations: HashMap<Box<str>, Member>,
    end_users: HashMap<Box<str>, Member>,
    agents: HashMap<Box<str>, Member>,
}

/// Everything the store holds, uncompiled.
#[derive(Clone, Debug, Default)]
pub struct IdentitySpec {
    /// The master key: an admin that sees every server.
    pub master_key: Option<KeyMaterial>,
    /// Virtual keys.
    pub keys: Vec<KeySpec>,
    /// Teams.
    pub teams: Vec<TeamSpec>,
    /// Organisations.
    pub organizations: Vec<MemberSpec>,
    /// End users.
    pub end_users: Vec<MemberSpec>,
    /// Agents.
    pub agents: Vec<MemberSpec>,
}

fn compile(
    catalog: &Catalog,
    spec: Option<&PermissionSpec>,
) -> Result<Option<Arc<Permissions>>, IdentityConfigError> {
    spec.map(|s| catalog.compile_permissions(s).map(Arc::new))
        .transpose()
        .map_err(IdentityConfigError::Permissions)
}

/// The limits of one entry: `id` names its counters, `ledger` its spend, `named` it in errors.
fn limits(
    catalog: &Catalog,
    level: Level,
    (id, ledger, named): (&str, &str, &str),
    spec: Option<&LimitSpec>,
) -> Result<Option<Arc<LevelLimits>>, IdentityConfigError> {
    compile_level(catalog, level, &subject(level, id), ledger, spec).map_err(|error| {
        IdentityConfigError::Limits {
            level,
            id: named.to_owned(),
            error,
        }
    })
}

fn members(
    catalog: &Catalog,
    level: Level,
    specs: &[MemberSpec],
) -> Result<HashMap<Box<str>, Member>, IdentityConfigError> {
    let mut out = HashMap::new();
    for m in specs {
        let member = Member {
            id: m.id.as_str().into(),
            permissions: compile(catalog, m.permissions.as_ref())?,
            limits: limits(catalog, level, (&m.id, &m.id, &m.id), m.limits.as_ref())?,
        };
        if out.insert(m.id.as_str().into(), member).is_some() {
            return Err(IdentityConfigError::DuplicateId {
                level,
                id: m.id.clone(),
            });
        }
    }
    Ok(out)
}

impl IdentityStore {
    /// An empty store: every key is unknown.
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    /// Compiles and cross-checks identities against a catalog.
    ///
    /// # Errors
    ///
    /// Duplicate keys or ids, references to undefined teams, organisations or agents, and
    /// permissions naming servers or groups the catalog lacks.
    pub fn build(catalog: &Catalog, spec: &IdentitySpec) -> Result<Self, IdentityConfigError> {
        let orgs = members(catalog, Level::Organization, &spec.organizations)?;
        let end_users = members(catalog, Level::EndUser, &spec.end_users)?;
        let agents = members(catalog, Level::Agent, &spec.agents)?;
        let org = |id: &str| {
            orgs.get(id).ok_or_else(|| IdentityConfigError::UnknownId {
                level: Level::Organization,
                id: id.to_owned(),
            })
        };
        let mut teams = HashMap::new();
        for t in &spec.teams {
            if let Some(o) = &t.organization_id {
                org(o)?;
            }
            let perms = compile(catalog, t.permissions.as_ref())?;
            let id = t.team_id.as_str();
            let lims = limits(catalog, Level::Team, (id, id, id), t.limits.as_ref())?;
            if teams.insert(t.team_id.as_str(), (t, perms, lims)).is_some() {
                return Err(IdentityConfigError::DuplicateId {
                    level: Level::Team,
                    id: t.team_id.clone(),
                });
            }
        }
        let master = spec.master_key.as_ref().map(KeyMaterial::digest);
        let mut keys = HashMap::new();
        for (i, k) in spec.keys.iter().enumerate() {
            let digest = k
                .key
                .as_ref()
                .ok_or(IdentityConfigError::MissingKey)?
                .digest();
            let who = k.key_alias.clone().unwrap_or_else(|| format!("keys[{i}]"));
            if Some(digest) == master {
                return Err(IdentityConfigError::DuplicateKey(who));
            }
            let team =
                match &k.team_id {
                    Some(id) => Some(teams.get(id.as_str()).ok_or_else(|| {
                        IdentityConfigError::UnknownId {
                            level: Level::Team,
                            id: id.clone(),
                        }
                    })?),
                    None => None,
                };
            let organization_id = k
                .organization_id
                .as_deref()
                .or_else(|| team.and_then(|(t, ..)| t.organization_id.as_deref()));
            let organization = organization_id.map(org).transpose()?;
            if let Some(agent) = &k.agent_id
                && !agents.contains_key(agent.as_str())
            {
                return Err(IdentityConfigError::UnknownId {
                    level: Level::Agent,
                    id: agent.clone(),
                });
            }
            let key_id: Arc<str> = k
                .key_alias
                .as_deref()
                .map_or_else(|| digest.short_id().into(), Into::into);
            let record = KeyRecord {
                key_id: Arc::clone(&key_id),
                alias: k.key_alias.as_deref().map(Into::into),
                team_id: k.team_id.as_deref().map(Into::into),
                organization_id: organization.map(|o| Arc::clone(&o.id)),
                agent_id: k.agent_id.as_deref().map(Into::into),
                key: compile(catalog, k.permissions.as_ref())?,
                team: team.and_then(|(_, p, _)| p.clone()),
                organization: organization.and_then(|o| o.permissions.clone()),
                expires_at: k.expires_at,
                blocked: k.blocked,
                over_budget: k.over_budget,
                hierarchy: k.hierarchy,
                limits: [
                    limits(
                        catalog,
                        Level::Key,
                        (&digest.hex_prefix(), &key_id, &who),
                        k.limits.as_ref(),
                    )?,
                    team.and_then(|(.., l)| l.clone()),
                    organization.and_then(|o| o.limits.clone()),
                ],
            };
            if keys.insert(digest, record).is_some() {
                return Err(IdentityConfigError::DuplicateKey(who));
            }
        }
        let teams = teams
            .into_iter()
            .map(|(id, (t, permissions, limits))| {
                let record = TeamRecord {
                    permissions,
                    organization_id: t.organization_id.as_deref().map(Into::into),
                    limits,
                };
                (id.into(), record)
            })
            .collect();
        Ok(Self {
            keys,
            master,
            teams,
            organizations: orgs,
            end_users,
            agents,
        })
    }

    /// Whether a digest is the master key's.
    #[cfg(feature = "gateway")]
    #[must_use]
    pub(crate) fn is_master(&self, key: &KeyDigest) -> bool {
        self.master.as_ref() == Some(key)
    }

    /// Number of keys (the master key excluded).
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the store has no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.master.is_none()
    }

    /// The principal for a key digest, narrowed by the end user and agent the request names.
    ///
    /// `None` when the key is unknown, blocked or expired (see [`IdentityStore::resolve`]).
    /// Only digests are compared, never plaintext keys.
    #[must_use]
    pub fn principal(
        &self,
        key: &KeyDigest,
        end_user: Option<&str>,
        agent: Option<&str>,
    ) -> Option<Principal> {
        self.resolve(key, end_user, agent).ok()
    }

    /// The principal for a key digest, or why there is none: unknown, blocked, or past its
    /// expiry (compared with the clock now, so a key expires on time without a reload).
    ///
    /// # Errors
    ///
    /// The [`KeyRefusal`].
    pub fn resolve(
        &self,
        key: &KeyDigest,
        end_user: Option<&str>,
        agent: Option<&str>,
    ) -> Result<Principal, KeyRefusal> {
        let mut p = if self.master.as_ref() == Some(key) {
            Principal {
                key_id: Some("master".into()),
                is_admin: true,
                ..Principal::default()
            }
        } else {
            let r = self.keys.get(key).ok_or(KeyRefusal::Unknown)?;
            if r.blocked {
                return Err(KeyRefusal::Blocked);
            }
            if r.expires_at.is_some_and(|at| SystemTime::now() >= at) {
                return Err(KeyRefusal::Expired);
            }
            if r.over_budget {
                return Err(KeyRefusal::OverBudget);
            }
            let mut p = Principal {
                key_id: Some(Arc::clone(&r.key_id)),
                key_alias: r.alias.clone(),
                team_id: r.team_id.clone(),
                organization_id: r.organization_id.clone(),
                agent_id: r.agent_id.clone(),
                hierarchy: r.hierarchy,
                ..Principal::default()
            };
            p.set_level(Level::Key, r.key.clone());
            p.set_level(Level::Team, r.team.clone());
            p.set_level(Level::Organization, r.organization.clone());
            let [key, team, organization] = r.limits.clone();
            p.limits[Level::Key as usize] = key;
            p.limits[Level::Team as usize] = team;
            p.limits[Level::Organization as usize] = organization;
            p
        };
        self.narrow(&mut p, end_user, agent);
        Ok(p)
    }

    /// The principal of a caller that presents claims instead of a key (an OAuth token): the
    /// team, organisation, end user and agent permissions of the configuration apply to it as
    /// they would to a key's.
    ///
    /// # Errors
    ///
    /// The claimed team or organisation is not configured (fail closed: an id nobody set up
    /// grants nothing); the error names the level, not the id.
    pub fn claimed_principal(&self, claimed: &ClaimedIdentity<'_>) -> Result<Principal, Level> {
        let team = claimed
            .team_id
            .map(|id| self.teams.get(id).ok_or(Level::Team))
            .transpose()?;
        let organization_id = claimed
            .organization_id
            .map(Arc::<str>::from)
            .or_else(|| team.and_then(|t| t.organization_id.clone()));
        let organization = organization_id
            .as_deref()
            .map(|id| self.organizations.get(id).ok_or(Level::Organization))
            .transpose()?;
        let mut p = Principal {
            key_id: claimed.key_id.map(Into::into),
            key_alias: claimed.key_alias.map(Into::into),
            team_id: claimed.team_id.map(Into::into),
            organization_id,
            ..Principal::default()
        };
        p.set_level(Level::Key, claimed.permissions.clone());
        p.set_level(Level::Team, team.and_then(|t| t.permissions.clone()));
        p.set_level(
            Level::Organization,
            organization.and_then(|o| o.permissions.clone()),
        );
        p.limits[Level::Team as usize] = team.and_then(|t| t.limits.clone());
        p.limits[Level::Organization as usize] = organization.and_then(|o| o.limits.clone());
        self.narrow(&mut p, claimed.end_user_id, claimed.agent_id);
        Ok(p)
    }

    /// Adds the end user and agent levels a request names.
    fn narrow(&self, p: &mut Principal, end_user: Option<&str>, agent: Option<&str>) {
        if let Some(user) = end_user {
            match self.end_users.get(user) {
                Some(m) => {
                    p.end_user_id = Some(Arc::clone(&m.id));
                    p.set_level(Level::EndUser, m.permissions.clone());
                    p.limits[Level::EndUser as usize] = m.limits.clone();
                }
                None => p.end_user_id = Some(user.into()),
            }
        }
        // The key's own agent wins over the header.
        let agent_id = p.agent_id.clone().or_else(|| agent.map(Arc::from));
        if let Some(id) = agent_id {
            match self.agents.get(&*id) {
                Some(m) => {
                    p.agent_id = Some(Arc::clone(&m.id));
                    p.set_level(Level::Agent, m.permissions.clone());
                    p.limits[Level::Agent as usize] = m.limits.clone();
                }
                None => p.agent_id = Some(id),
            }
        }
    }
}
