//! One whole policy snapshot from the LiteLLM rows: the servers registered at start with their
//! current rules, and every key, team, organisation, end user and agent, each failing closed
//! alone when its rows cannot be used.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::levels::{self, LevelResult, Names};
use super::read::{KeyRow, MemberRow, Rows};
use super::servers::{self, DbServer};
use crate::config::Config;
use crate::engine::{
    Hierarchy, IdentitySpec, KeyDigest, KeyMaterial, KeySpec, MemberSpec, PermissionSpec, TeamSpec,
};
use crate::gatekeeper::PolicySnapshot;

/// The team id LiteLLM gives the keys of its admin UI's sessions.
const UI_TEAM_ID: &str = "litellm-dashboard";

/// The configuration with LiteLLM's servers added as they were at start: the upstreams the
/// gateway serves until it restarts.
#[derive(Clone, Debug)]
pub(crate) struct Start {
    pub(crate) config: Config,
    pub(crate) servers: Vec<DbServer>,
}

/// Adds the servers of `rows` to `base`.
pub(crate) fn start(
    base: &Config,
    rows: &Rows,
    salt_key: Option<&str>,
    problems: &mut Vec<String>,
) -> Start {
    let taken = |n: &str| {
        base.mcp_servers
            .iter()
            .any(|(name, s)| name == n || s.alias.as_deref() == Some(n))
    };
    let separator = base.settings().separator;
    let servers = servers::servers(&rows.servers, salt_key, &separator, &taken, problems);
    let mut config = base.clone();
    for s in &servers {
        config
            .mcp_servers
            .0
            .push((s.name.clone(), s.config.clone()));
    }
    Start { config, servers }
}

/// The configuration of this load: the servers of `start`, with the rules the rows hold now.
fn current_config(
    start: &Start,
    rows: &Rows,
    salt_key: Option<&str>,
    problems: &mut Vec<String>,
) -> (Config, HashSet<String>) {
    let started: HashSet<&str> = start.servers.iter().map(|s| s.name.as_str()).collect();
    let taken = |n: &str| {
        start.config.mcp_servers.iter().any(|(name, s)| {
            !started.contains(name) && (name == n || s.alias.as_deref() == Some(n))
        })
    };
    let separator = start.config.settings().separator;
    let now = servers::servers(&rows.servers, salt_key, &separator, &taken, problems);
    let mut config = start.config.clone();
    let mut withheld = HashSet::new();
    for s in &start.servers {
        let who = format!("LiteLLM MCP server {:?}", s.name);
        let Some((_, entry)) = config.mcp_servers.0.iter_mut().find(|(n, _)| *n == s.name) else {
            continue;
        };
        match now.iter().find(|c| c.server_id == s.server_id) {
            Some(c) => {
                if c.name != s.name || !servers::same_connection(&c.config, &s.config) {
                    problems.push(format!(
                        "{who}: renamed, or changed how it is reached; restart the gateway to \
                         apply (its access rules apply already)"
                    ));
                }
                entry.access_groups = c.config.access_groups.clone();
                entry.allowed_tools = c.config.allowed_tools.clone();
                entry.allow_all_keys = c.config.allow_all_keys;
                entry.mcp_info = c.config.mcp_info.clone();
            }
            None => {
                problems.push(format!(
                    "{who}: no longer registered (deleted, or not approved); nobody may use it, \
                     and a restart stops serving it"
                ));
                entry.access_groups = Vec::new();
                entry.allowed_tools = Some(Vec::new());
                entry.allow_all_keys = false;
                withheld.insert(s.name.clone());
            }
        }
    }
    for c in &now {
        if !start.servers.iter().any(|s| s.server_id == c.server_id) {
            problems.push(format!(
                "LiteLLM MCP server {:?}: registered after the gateway started; restart it to serve this server",
                c.name
            ));
        }
    }
    (config, withheld)
}

fn names(start: &Start, config: &Config, withheld: &HashSet<String>) -> Names {
    let mut refs = HashMap::new();
    let mut groups: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut all = BTreeSet::new();
    for (name, s) in config.mcp_servers.iter() {
        if withheld.contains(name) {
            continue;
        }
        all.insert(name.to_owned());
        for r in [
            Some(name),
            s.alias.as_deref(),
            s.server_name.as_deref(),
            s.server_id.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            refs.entry(r.to_owned()).or_insert_with(|| name.to_owned());
        }
        for g in &s.access_groups {
            groups.entry(g.clone()).or_default().insert(name.to_owned());
        }
    }
    for s in &start.servers {
        if !withheld.contains(&s.name) {
            refs.insert(s.server_id.clone(), s.name.clone());
        }
    }
    let public = config
        .mcp_servers
        .iter()
        .filter(|(name, s)| s.allow_all_keys && all.contains(*name))
        .map(|(name, _)| name.to_owned())
        .collect();
    Names {
        refs,
        groups,
        all,
        public,
    }
}

/// What a member's row allows, or nothing (reported) when it cannot be used.
fn usable(
    level: &LevelResult,
    who: &str,
    problems: &mut Vec<String>,
) -> Option<crate::engine::PermissionSpec> {
    match level {
        Ok(spec) => spec.clone(),
        Err(why) => {
            problems.push(format!("{who}: {why}; it grants nothing until fixed"));
            Some(levels::nothing())
        }
    }
}

fn over(spend: f64, max: Option<f64>, inclusive: bool) -> bool {
    max.is_some_and(|m| m.is_finite() && if inclusive { spend >= m } else { spend > m })
}

/// Builds the snapshot of `rows` over the servers of `start`, and what it could not use.
pub(crate) fn snapshot(
    start: &Start,
    rows: &Rows,
    salt_key: Option<&str>,
) -> Result<(PolicySnapshot, Vec<String>), String> {
    let mut problems = Vec::new();
    let (config, withheld) = current_config(start, rows, salt_key, &mut problems);
    let catalog = config.catalog().map_err(|e| e.to_string())?;
    let names = names(start, &config, &withheld);

    let mut perms: HashMap<&str, LevelResult> = HashMap::new();
    for p in &rows.permissions {
        let mut notes = Vec::new();
        let level = names.level(p, &mut notes);
        for note in notes {
            problems.push(format!("object permission {:?}: {note}", p.id));
        }
        perms.insert(
            &p.id,
            level.map_err(|why| format!("object permission {:?}: {why}", p.id)),
        );
    }
    let level_of = |id: &Option<String>| -> LevelResult {
        match id {
            None => Ok(None),
            Some(id) => perms
                .get(id.as_str())
                .cloned()
                .unwrap_or_else(|| Err(format!("its object permission {id:?} does not exist"))),
        }
    };
    // Unified access groups that grant MCP servers: additive grants this build does not read.
    let mcp_groups: HashSet<&str> = rows
        .access_groups
        .iter()
        .filter(|g| !g.mcp_server_ids.is_empty())
        .map(|g| g.id.as_str())
        .collect();
    let grants_by_group = |ids: &[String]| ids.iter().any(|g| mcp_groups.contains(g.as_str()));
    let group_refusal =
        "access groups (access_group_ids) that grant MCP servers are not supported yet";

    let mut spec: IdentitySpec = config.identity_spec(&catalog).map_err(|e| e.to_string())?;
    let mut org_over = HashSet::new();
    for o in &rows.organizations {
        let who = format!("organization {:?}", o.id);
        let mut level = level_of(&o.object_permission_id);
        let limits = levels::limits(&names, &o.limits, &who, &mut problems).unwrap_or_else(|why| {
            level = Err(why);
            None
        });
        let permissions = usable(&level, &who, &mut problems);
        if over(o.spend, o.max_budget, true) {
            org_over.insert(o.id.as_str());
        }
        spec.organizations.push(MemberSpec {
            id: o.id.clone(),
            permissions,
            limits,
        });
    }
    let orgs: HashSet<&str> = rows.organizations.iter().map(|o| o.id.as_str()).collect();
    // Each team's row, and whether its level (as the snapshot holds it) lists servers.
    let mut teams: HashMap<&str, (&MemberRow, bool)> = HashMap::new();
    for t in &rows.teams {
        let who = format!("team {:?}", t.id);
        let mut level = level_of(&t.object_permission_id);
        let mut organization_id = t.organization_id.clone();
        if grants_by_group(&t.access_group_ids) {
            level = Err(group_refusal.into());
        }
        if let Some(org) = &t.organization_id
            && !orgs.contains(org.as_str())
        {
            level = Err(format!("its organization {org:?} does not exist"));
            organization_id = None;
        }
        let limits = levels::limits(&names, &t.limits, &who, &mut problems).unwrap_or_else(|why| {
            level = Err(why);
            None
        });
        let permissions = usable(&level, &who, &mut problems);
        teams.insert(&t.id, (t, permissions.is_some()));
        spec.teams.push(TeamSpec {
            team_id: t.id.clone(),
            organization_id,
            permissions,
            limits,
        });
    }
    for e in &rows.end_users {
        let who = format!("end user {:?}", e.id);
        let mut level = level_of(&e.object_permission_id);
        let limits = levels::limits(&names, &e.limits, &who, &mut problems).unwrap_or_else(|why| {
            level = Err(why);
            None
        });
        let permissions = if e.blocked || over(e.spend, e.max_budget, false) {
            // Refused as LiteLLM refuses it, for every server.
            Some(levels::nothing())
        } else {
            usable(&level, &who, &mut problems)
        };
        spec.end_users.push(MemberSpec {
            id: e.id.clone(),
            permissions,
            limits,
        });
    }
    let mut agents = HashSet::new();
    for a in &rows.agents {
        let who = format!("agent {:?}", a.id);
        let level = if grants_by_group(&a.access_group_ids) {
            Err(group_refusal.into())
        } else {
            level_of(&a.object_permission_id)
        };
        agents.insert(a.id.as_str());
        let permissions = usable(&level, &who, &mut problems);
        spec.agents.push(MemberSpec {
            id: a.id.clone(),
            permissions,
            limits: None,
        });
    }
    let users: HashMap<&str, &MemberRow> = rows.users.iter().map(|u| (u.id.as_str(), u)).collect();
    let public_only = PermissionSpec {
        mcp_servers: Some(names.public.iter().cloned().collect()),
        ..PermissionSpec::default()
    };
    for k in &rows.keys {
        let Some(digest) = KeyDigest::parse(&k.token) else {
            // LiteLLM's other token kinds (not a SHA-256 digest) are not keys here.
            continue;
        };
        let who = match &k.key_alias {
            Some(alias) => format!("key {alias:?}"),
            None => format!("key {}", digest.short_id()),
        };
        if spec.master_key.as_ref().map(KeyMaterial::digest) == Some(digest) {
            // The master key stays the master key; the row is left out.
            problems.push(format!(
                "{who}: it is the master key of the configuration; the row is left out"
            ));
            continue;
        }
        let context = KeyContext {
            teams: &teams,
            orgs: &orgs,
            agents: &agents,
            users: &users,
            level_of: &level_of,
            grants_by_group: &grants_by_group,
            org_over: &org_over,
            public_only: &public_only,
        };
        let with_limits = key_spec(k, digest, &context).and_then(|mut key| {
            key.limits = levels::limits(&names, &k.limits, &who, &mut problems)?;
            Ok(key)
        });
        match with_limits {
            Ok(key) => spec.keys.push(key),
            Err(why) => {
                problems.push(format!("{who}: {why}; it is refused until fixed"));
                spec.keys.push(KeySpec {
                    key: Some(KeyMaterial::Digest(digest)),
                    key_alias: k.key_alias.clone(),
                    blocked: true,
                    hierarchy: Hierarchy::LiteLlm,
                    ..KeySpec::default()
                });
            }
        }
    }
    let identities = crate::config::build_identities(&catalog, &spec).map_err(|e| e.to_string())?;
    Ok((PolicySnapshot::new(Arc::new(catalog), identities), problems))
}

/// What a key's row is read against.
struct KeyContext<'a> {
    teams: &'a HashMap<&'a str, (&'a MemberRow, bool)>,
    orgs: &'a HashSet<&'a str>,
    agents: &'a HashSet<&'a str>,
    users: &'a HashMap<&'a str, &'a MemberRow>,
    level_of: &'a dyn Fn(&Option<String>) -> LevelResult,
    grants_by_group: &'a dyn Fn(&[String]) -> bool,
    org_over: &'a HashSet<&'a str>,
    /// A level that leaves only the `allow_all_keys` servers.
    public_only: &'a PermissionSpec,
}

fn key_spec(k: &KeyRow, digest: KeyDigest, cx: &KeyContext<'_>) -> Result<KeySpec, String> {
    let KeyContext {
        teams,
        orgs,
        agents,
        users,
        level_of,
        grants_by_group,
        org_over,
        public_only,
    } = *cx;
    // LiteLLM's UI sessions carry a team id of their own that is no team.
    let team_id = k.team_id.as_deref().filter(|t| *t != UI_TEAM_ID);
    let (team, team_restricts) = match team_id {
        Some(t) => {
            let (row, restricts) = *teams
                .get(t)
                .ok_or_else(|| format!("its team {t:?} does not exist"))?;
            (Some(row), restricts)
        }
        None => (None, false),
    };
    if let Some(o) = &k.organization_id
        && !orgs.contains(o.as_str())
    {
        return Err(format!("its organization {o:?} does not exist"));
    }
    if let Some(a) = &k.agent_id
        && !agents.contains(a.as_str())
    {
        return Err(format!("its agent {a:?} does not exist"));
    }
    if grants_by_group(&k.access_group_ids) {
        return Err(
            "access groups (access_group_ids) that grant MCP servers are not supported yet".into(),
        );
    }
    let mut permissions = level_of(&k.object_permission_id)?;
    // The internal user's own entitlement caps the key (LiteLLM's user ceiling).
    let user = k.user_id.as_deref().and_then(|u| users.get(u));
    let ceiling = match user {
        Some(u) => {
            level_of(&u.object_permission_id).map_err(|e| format!("its user's permission: {e}"))?
        }
        None => None,
    };
    if let Some(ceiling) = ceiling {
        permissions = Some(match &permissions {
            Some(own) => levels::both(own, &ceiling),
            None if team_restricts => ceiling,
            // Neither key nor team lists a server: as in LiteLLM, only the
            // allow_all_keys servers remain.
            None => public_only.clone(),
        });
    }
    let team_org = team.and_then(|t| t.organization_id.as_deref());
    let org = k.organization_id.as_deref().or(team_org);
    let over_budget = over(k.spend, k.max_budget, true)
        || team.is_some_and(|t| over(t.spend, t.max_budget, false))
        || org.is_some_and(|o| org_over.contains(o));
    Ok(KeySpec {
        key: Some(KeyMaterial::Digest(digest)),
        key_alias: k.key_alias.clone(),
        team_id: team_id.map(str::to_owned),
        organization_id: k.organization_id.clone(),
        agent_id: k.agent_id.clone(),
        permissions,
        expires_at: k.expires,
        blocked: k.blocked || team.is_some_and(|t| t.blocked),
        over_budget,
        hierarchy: Hierarchy::LiteLlm,
        limits: None,
    })
}
