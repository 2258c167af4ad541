//! Building one whole policy snapshot from the configuration and the database's rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;
use tokio_postgres::Row;

use super::{Database, DbError};
use crate::config::Config;
use crate::engine::{
    Catalog, IdentitySpec, KeyDigest, KeyMaterial, KeySpec, LimitSpec, MemberSpec, PermissionSpec,
    ServerSpec, TeamSpec,
};
use crate::gatekeeper::PolicySnapshot;

/// A snapshot, and what could not be used in it (each such principal fails closed).
pub(crate) struct Loaded {
    pub(crate) snapshot: PolicySnapshot,
    pub(crate) problems: Vec<String>,
}

/// A level whose row could not be used grants nothing.
fn nothing() -> PermissionSpec {
    PermissionSpec {
        mcp_servers: Some(Vec::new()),
        mcp_access_groups: None,
        mcp_tool_permissions: None,
    }
}

/// `{"name": ["text", ...]}` as pairs, or `None` when the value has another shape.
pub(crate) fn string_lists(value: &Value) -> Option<Vec<(String, Vec<String>)>> {
    value
        .as_object()?
        .iter()
        .map(|(k, v)| {
            let list = v
                .as_array()?
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?;
            Some((k.clone(), list))
        })
        .collect()
}

fn prices(value: &Value) -> Option<Vec<(String, f64)>> {
    value
        .as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), v.as_f64().filter(|p| *p >= 0.0)?)))
        .collect()
}

/// The object permissions of the rows, and what could not be used.
struct Levels<'a> {
    permissions: HashMap<i64, Result<PermissionSpec, String>>,
    problems: &'a mut Vec<String>,
}

impl Levels<'_> {
    /// The permissions of `who`'s row (object permission `id`), and whether they could be
    /// used: when not, the problem is reported and the level grants nothing.
    fn of(&mut self, who: String, id: Option<i64>) -> (Option<PermissionSpec>, bool) {
        let Some(id) = id else {
            return (None, true);
        };
        match self.permissions.get(&id) {
            Some(Ok(spec)) => (Some(spec.clone()), true),
            Some(Err(why)) => {
                self.problems.push(format!(
                    "{who}: object permission {id}: {why}; refused until fixed"
                ));
                (Some(nothing()), false)
            }
            // The foreign key keeps the row, unless it was bypassed (a restore with triggers
            // off, a logical replica).
            None => {
                self.problems.push(format!(
                    "{who}: its object permission {id} does not exist; refused until fixed"
                ));
                (Some(nothing()), false)
            }
        }
    }

    /// The limits of `who`'s row, and whether they could be used: when not, the problem is
    /// reported and the row's callers are refused (a limit is never silently lifted).
    fn limits(
        &mut self,
        catalog: &Catalog,
        who: &str,
        limits: Option<Value>,
    ) -> (Option<LimitSpec>, bool) {
        let Some(value) = limits else {
            return (None, true);
        };
        match crate::config::limits_from_json(&value, catalog, "limits") {
            Ok(spec) => (spec, true),
            Err(e) => {
                self.problems
                    .push(format!("{who}: {e}; refused until fixed"));
                (None, false)
            }
        }
    }
}

/// Rows that repeat what the configuration defines (the same key, or the master key; a team,
/// organisation, end user or agent of the same id): the configuration's entry applies, the row
/// is left out and reported, and the rest of the policy loads. `from_config` counts the
/// configuration's keys, teams, organisations, end users and agents, which come first.
fn drop_duplicates(spec: &mut IdentitySpec, from_config: &[usize; 5], problems: &mut Vec<String>) {
    use std::collections::HashSet;
    fn drop<T>(
        list: &mut Vec<T>,
        from_config: usize,
        id: impl Fn(&T) -> &str,
        what: &str,
        problems: &mut Vec<String>,
    ) {
        let configured: HashSet<String> = list[..from_config]
            .iter()
            .map(|t| id(t).to_owned())
            .collect();
        let mut i = 0;
        list.retain(|t| {
            i += 1;
            let repeated = i > from_config && configured.contains(id(t));
            if repeated {
                problems.push(format!(
                    "{what} {:?}: defined in the configuration too; the configuration's entry \
                     applies and the row is left out",
                    id(t)
                ));
            }
            !repeated
        });
    }
    let [keys, teams, orgs, end_users, agents] = *from_config;
    drop(&mut spec.teams, teams, |t| &t.team_id, "team", problems);
    drop(
        &mut spec.organizations,
        orgs,
        |o| &o.id,
        "organization",
        problems,
    );
    drop(
        &mut spec.end_users,
        end_users,
        |e| &e.id,
        "end user",
        problems,
    );
    drop(&mut spec.agents, agents, |a| &a.id, "agent", problems);
    let mut taken: HashSet<KeyDigest> = spec.keys[..keys]
        .iter()
        .filter_map(|k| k.key.as_ref().map(KeyMaterial::digest))
        .chain(spec.master_key.as_ref().map(KeyMaterial::digest))
        .collect();
    let mut i = 0;
    spec.keys.retain(|k| {
        i += 1;
        let Some(digest) = k.key.as_ref().map(KeyMaterial::digest) else {
            return true;
        };
        if i <= keys || taken.insert(digest) {
            return true;
        }
        let who = k
            .key_alias
            .as_ref()
            .map_or_else(|| digest.short_id().to_string(), |a| format!("{a:?}"));
        problems.push(format!(
            "key {who}: the same key is in the configuration (or is the master key); the \
             configuration's entry applies and the row is left out"
        ));
        false
    });
}

/// References to ids that do not exist — which the foreign keys prevent, unless they were
/// bypassed (a restore with triggers off, a logical replica) — fail closed for the principal
/// that holds them, and are reported; the rest of the policy loads. A team whose organisation
/// is missing grants nothing (so neither do its keys); a key whose team, organisation or agent
/// is missing is refused.
fn fail_dangling(spec: &mut IdentitySpec, problems: &mut Vec<String>) {
    use std::collections::HashSet;
    let orgs: HashSet<String> = spec.organizations.iter().map(|o| o.id.clone()).collect();
    let agents: HashSet<String> = spec.agents.iter().map(|a| a.id.clone()).collect();
    for team in &mut spec.teams {
        if let Some(org) = &team.organization_id
            && !orgs.contains(org)
        {
            problems.push(format!(
                "team {:?}: its organization {org:?} does not exist; it grants nothing until \
                 fixed",
                team.team_id
            ));
            team.organization_id = None;
            team.permissions = Some(nothing());
        }
    }
    let teams: HashSet<String> = spec.teams.iter().map(|t| t.team_id.clone()).collect();
    for key in &mut spec.keys {
        let mut missing = Vec::new();
        if let Some(team) = key.team_id.take_if(|t| !teams.contains(t)) {
            missing.push(format!("its team {team:?}"));
        }
        if let Some(org) = key.organization_id.take_if(|o| !orgs.contains(o)) {
            missing.push(format!("its organization {org:?}"));
        }
        if let Some(agent) = key.agent_id.take_if(|a| !agents.contains(a)) {
            missing.push(format!("its agent {agent:?}"));
        }
        if missing.is_empty() {
            continue;
        }
        let who = match (&key.key_alias, &key.key) {
            (Some(alias), _) => format!("key {alias:?}"),
            (None, Some(KeyMaterial::Digest(d))) => format!("key {}", d.short_id()),
            (None, _) => "a key".to_owned(),
        };
        problems.push(format!(
            "{who}: {} does not exist; refused until fixed",
            missing.join(", ")
        ));
        key.blocked = true;
    }
}

/// Reads every policy table in one read-only, repeatable-read transaction.
async fn rows(db: &Database) -> Result<[Vec<Row>; 7], DbError> {
    let mut client = db.client().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| DbError::new("starting to read the policy", e))?;
    let mut out: [Vec<Row>; 7] = Default::default();
    let queries = [
        "SELECT id, mcp_servers, mcp_access_groups, mcp_tool_permissions FROM gk_object_permissions",
        "SELECT organization_id, object_permission_id, limits FROM gk_organizations \
         ORDER BY organization_id",
        "SELECT team_id, organization_id, object_permission_id, limits FROM gk_teams \
         ORDER BY team_id",
        "SELECT user_id, object_permission_id, limits FROM gk_end_users ORDER BY user_id",
        "SELECT agent_id, object_permission_id, limits FROM gk_agents ORDER BY agent_id",
        "SELECT key_digest, key_alias, team_id, organization_id, agent_id, object_permission_id, \
         expires_at, blocked, limits FROM gk_keys ORDER BY key_digest",
        "SELECT server_name, access_groups, allowed_tools, disallowed_tools, allowed_params, \
         allow_all_keys, default_cost_per_query, tool_costs FROM gk_server_rules \
         ORDER BY server_name",
    ];
    for (slot, sql) in out.iter_mut().zip(queries) {
        *slot = tx
            .query(sql, &[])
            .await
            .map_err(|e| DbError::new("reading the policy", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| DbError::new("reading the policy", e))?;
    Ok(out)
}

/// The configuration's servers with the database's rules over them.
fn servers(config: &Config, rules: &[Row], problems: &mut Vec<String>) -> Result<Catalog, DbError> {
    let mut specs: Vec<ServerSpec> = config
        .server_specs()
        .map_err(|e| DbError::new("reading the configuration", e.to_string()))?;
    for row in rules {
        let name: String = row.get(0);
        let Some(spec) = specs.iter_mut().find(|s| s.name == name) else {
            problems.push(format!(
                "gk_server_rules: server {name:?} is not in the configuration; its row is ignored"
            ));
            continue;
        };
        if let Some(groups) = row.get::<_, Option<Vec<String>>>(1) {
            spec.access_groups = groups;
        }
        if let Some(allowed) = row.get::<_, Option<Vec<String>>>(2) {
            spec.allowed_tools = Some(allowed);
        }
        if let Some(disallowed) = row.get::<_, Option<Vec<String>>>(3) {
            spec.disallowed_tools = disallowed;
        }
        if let Some(params) = row.get::<_, Option<Value>>(4) {
            match string_lists(&params) {
                Some(p) => spec.allowed_params = p,
                None => {
                    // Unreadable argument rules: no argument passes rather than every one.
                    problems.push(format!(
                        "gk_server_rules: allowed_params of {name:?} is not {{tool: [names]}}; \
                         none of its tools is offered until it is fixed"
                    ));
                    spec.allowed_tools = Some(Vec::new());
                }
            }
        }
        if let Some(all) = row.get::<_, Option<bool>>(5) {
            spec.allow_all_keys = all;
        }
        if let Some(default) = row.get::<_, Option<f64>>(6) {
            spec.cost.default_cost_per_query = Some(default);
        }
        if let Some(costs) = row.get::<_, Option<Value>>(7) {
            match prices(&costs) {
                Some(p) => spec.cost.tool_name_to_cost_per_query = p,
                None => problems.push(format!(
                    "gk_server_rules: tool_costs of {name:?} is not {{tool: price}}; \
                     the configured prices stay"
                )),
            }
        }
    }
    config
        .catalog_of(specs)
        .map_err(|e| DbError::new("building the catalog from gk_server_rules", e.to_string()))
}

/// Builds the whole snapshot: the configuration's servers and identities, then the database's.
pub(crate) async fn load(db: &Database, config: &Config) -> Result<Loaded, DbError> {
    let [perms, orgs, teams, users, agents, keys, rules] = rows(db).await?;
    let mut problems = Vec::new();
    let catalog = servers(config, &rules, &mut problems)?;
    let mut spec: IdentitySpec = config
        .identity_spec(&catalog)
        .map_err(|e| DbError::new("reading the configuration", e.to_string()))?;

    let from_config = [
        spec.keys.len(),
        spec.teams.len(),
        spec.organizations.len(),
        spec.end_users.len(),
        spec.agents.len(),
    ];
    // Object permissions by id: each usable against this catalog, or why not.
    let mut permissions = HashMap::new();
    for row in &perms {
        let id: i64 = row.get(0);
        let tools = row.get::<_, Option<Value>>(3);
        let spec = PermissionSpec {
            mcp_servers: row.get(1),
            mcp_access_groups: row.get(2),
            mcp_tool_permissions: None,
        };
        let spec = match tools.map(|t| string_lists(&t)) {
            Some(None) => Err("mcp_tool_permissions is not {server: [tools]}".to_owned()),
            Some(Some(t)) => Ok(PermissionSpec {
                mcp_tool_permissions: Some(t),
                ..spec
            }),
            None => Ok(spec),
        }
        .and_then(|s| match catalog.compile_permissions(&s) {
            Ok(_) => Ok(s),
            Err(e) => Err(e.to_string()),
        });
        permissions.insert(id, spec);
    }
    let mut levels = Levels {
        permissions,
        problems: &mut problems,
    };
    for row in &orgs {
        let id: String = row.get(0);
        let who = format!("organization {id:?}");
        let (permissions, _) = levels.of(who.clone(), row.get(1));
        let (limits, usable) = levels.limits(&catalog, &who, row.get(2));
        spec.organizations.push(MemberSpec {
            id,
            permissions: if usable { permissions } else { Some(nothing()) },
            limits,
        });
    }
    for row in &teams {
        let id: String = row.get(0);
        let who = format!("team {id:?}");
        let (permissions, _) = levels.of(who.clone(), row.get(2));
        let (limits, usable) = levels.limits(&catalog, &who, row.get(3));
        spec.teams.push(TeamSpec {
            team_id: id,
            organization_id: row.get(1),
            permissions: if usable { permissions } else { Some(nothing()) },
            limits,
        });
    }
    for row in &users {
        let id: String = row.get(0);
        let who = format!("end user {id:?}");
        let (permissions, _) = levels.of(who.clone(), row.get(1));
        let (limits, usable) = levels.limits(&catalog, &who, row.get(2));
        spec.end_users.push(MemberSpec {
            id,
            permissions: if usable { permissions } else { Some(nothing()) },
            limits,
        });
    }
    for row in &agents {
        let id: String = row.get(0);
        let who = format!("agent {id:?}");
        let (permissions, _) = levels.of(who.clone(), row.get(1));
        let (limits, usable) = levels.limits(&catalog, &who, row.get(2));
        spec.agents.push(MemberSpec {
            id,
            permissions: if usable { permissions } else { Some(nothing()) },
            limits,
        });
    }
    for row in &keys {
        let raw: Vec<u8> = row.get(0);
        let Ok(digest) = <[u8; 32]>::try_from(raw.as_slice()) else {
            continue; // The schema's CHECK keeps digests 32 bytes long.
        };
        let digest = KeyDigest(digest);
        let alias: Option<String> = row.get(1);
        let who = match &alias {
            Some(alias) => format!("key {alias:?}"),
            None => format!("key {}", digest.short_id()),
        };
        let (limits, limits_usable) = levels.limits(&catalog, &who, row.get(8));
        let (permissions, usable) = levels.of(who, row.get(5));
        spec.keys.push(KeySpec {
            key: Some(KeyMaterial::Digest(digest)),
            key_alias: alias,
            team_id: row.get(2),
            organization_id: row.get(3),
            agent_id: row.get(4),
            permissions,
            expires_at: row.get::<_, Option<SystemTime>>(6),
            blocked: row.get::<_, bool>(7) || !usable || !limits_usable,
            over_budget: false,
            hierarchy: crate::engine::Hierarchy::Gatekeeper,
            limits,
        });
    }
    drop_duplicates(&mut spec, &from_config, &mut problems);
    fail_dangling(&mut spec, &mut problems);
    let identities = crate::config::build_identities(&catalog, &spec)
        .map_err(|e| DbError::new("building the identities", e.to_string()))?;
    Ok(Loaded {
        snapshot: PolicySnapshot::new(Arc::new(catalog), identities),
        problems,
    })
}
