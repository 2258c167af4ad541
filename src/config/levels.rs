//! The entries of the five levels (`keys`, `teams`, `organizations`, `end_users`, `agents`):
//! permissions, and the same limit and budget fields on each.

use serde::Deserialize;

use super::{ConfigError, Secret, UniqueMap};
use crate::engine::{BudgetPeriod, Catalog, LimitSpec, PermissionSpec, ToolLimitSpec};

/// Limits on one tool, in `mcp_tool_limits`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ToolLimitConfig {
    /// Calls per minute.
    pub rpm: Option<u64>,
    /// Calls in flight at once.
    pub max_parallel: Option<u64>,
}

/// The limit and budget fields every level's entry has (each entry declares them itself).
pub(crate) trait LevelEntry {
    /// The entry's limit and budget fields.
    fn limit_fields(&self) -> LimitFields<'_>;

    /// The entry's limits, checked against `catalog`; `at` names the entry in errors.
    fn limits(&self, catalog: &Catalog, at: &str) -> Result<Option<LimitSpec>, ConfigError> {
        limit_spec(self.limit_fields(), catalog, at)
    }
}

/// Implements [`LevelEntry`] for entries whose limit and budget fields are the six every level
/// has, under their configuration names.
macro_rules! level_entries {
    ($($entry:ty),*) => {$(
        impl LevelEntry for $entry {
            fn limit_fields(&self) -> LimitFields<'_> {
                LimitFields {
                    rpm_limit: self.rpm_limit,
                    max_parallel_requests: self.max_parallel_requests,
                    mcp_rpm_limit: self.mcp_rpm_limit.as_ref(),
                    mcp_tool_limits: self.mcp_tool_limits.as_ref(),
                    max_budget: self.max_budget,
                    budget_duration: self.budget_duration.as_deref(),
                }
            }
        }
    )*};
}

level_entries!(
    KeyConfig,
    TeamConfig,
    OrganizationConfig,
    EndUserConfig,
    AgentConfig
);

/// The limit fields alone: a `limits` column of the Postgres store.
#[cfg(feature = "postgres")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsDoc {
    rpm_limit: Option<u64>,
    max_parallel_requests: Option<u64>,
    mcp_rpm_limit: Option<UniqueMap<u64>>,
    mcp_tool_limits: Option<UniqueMap<UniqueMap<ToolLimitConfig>>>,
    max_budget: Option<f64>,
    budget_duration: Option<String>,
}

/// Reads limits written as the configuration writes them (a JSON object of the limit fields),
/// checked against `catalog`; `at` names the value in errors.
#[cfg(feature = "postgres")]
pub(crate) fn limits_from_json(
    value: &serde_json::Value,
    catalog: &Catalog,
    at: &str,
) -> Result<Option<LimitSpec>, ConfigError> {
    let doc: LimitsDoc = serde_path_to_error::deserialize(value)
        .map_err(|e| ConfigError::at(format!("{at}.{}", e.path()), e.inner().to_string()))?;
    limit_spec(
        LimitFields {
            rpm_limit: doc.rpm_limit,
            max_parallel_requests: doc.max_parallel_requests,
            mcp_rpm_limit: doc.mcp_rpm_limit.as_ref(),
            mcp_tool_limits: doc.mcp_tool_limits.as_ref(),
            max_budget: doc.max_budget,
            budget_duration: doc.budget_duration.as_deref(),
        },
        catalog,
        at,
    )
}

/// The limit and budget fields of one entry, borrowed.
pub(crate) struct LimitFields<'a> {
    rpm_limit: Option<u64>,
    max_parallel_requests: Option<u64>,
    mcp_rpm_limit: Option<&'a UniqueMap<u64>>,
    mcp_tool_limits: Option<&'a UniqueMap<UniqueMap<ToolLimitConfig>>>,
    max_budget: Option<f64>,
    budget_duration: Option<&'a str>,
}

/// The limits of one entry, checked: counts of at least one, known servers, a budget of zero
/// or more dollars, a readable duration that comes with a budget.
fn limit_spec(
    f: LimitFields<'_>,
    catalog: &Catalog,
    at: &str,
) -> Result<Option<LimitSpec>, ConfigError> {
    let path = |field: &str| format!("{at}.{field}");
    let count = |n: Option<u64>, field: &str| match n {
        Some(0) => Err(ConfigError::at(
            path(field),
            "a limit must be at least 1; to forbid calls, leave the server or tool out of the permissions",
        )),
        n => Ok(n),
    };
    let server = |name: &str, field: &str| {
        if catalog.lookup(name).is_some() {
            Ok(name.to_owned())
        } else {
            Err(ConfigError::at(
                format!("{}.{name}", path(field)),
                format!("`{name}` is not a configured server"),
            ))
        }
    };
    let mut spec = LimitSpec {
        rpm_limit: count(f.rpm_limit, "rpm_limit")?,
        max_parallel_requests: count(f.max_parallel_requests, "max_parallel_requests")?,
        ..LimitSpec::default()
    };
    for (name, n) in f.mcp_rpm_limit.into_iter().flat_map(UniqueMap::iter) {
        let n = count(Some(*n), &format!("mcp_rpm_limit.{name}"))?.unwrap_or(1);
        spec.mcp_rpm_limit.push((server(name, "mcp_rpm_limit")?, n));
    }
    for (name, tools) in f.mcp_tool_limits.into_iter().flat_map(UniqueMap::iter) {
        let name = server(name, "mcp_tool_limits")?;
        for (tool, t) in tools.iter() {
            let field = format!("mcp_tool_limits.{name}.{tool}");
            let limit = ToolLimitSpec {
                rpm: count(t.rpm, &format!("{field}.rpm"))?,
                max_parallel: count(t.max_parallel, &format!("{field}.max_parallel"))?,
            };
            spec.mcp_tool_limits
                .push((name.clone(), tool.to_owned(), limit));
        }
    }
    if let Some(max) = f.max_budget
        && !(max.is_finite() && max >= 0.0)
    {
        return Err(ConfigError::at(
            path("max_budget"),
            "a budget is a number of dollars, zero or more",
        ));
    }
    spec.max_budget = f.max_budget;
    if let Some(text) = f.budget_duration {
        if f.max_budget.is_none() {
            return Err(ConfigError::at(
                path("budget_duration"),
                "budget_duration needs max_budget",
            ));
        }
        spec.budget_duration = Some(
            BudgetPeriod::parse(text).map_err(|e| ConfigError::at(path("budget_duration"), e))?,
        );
    }
    Ok((!spec.is_empty()).then_some(spec))
}

/// `object_permission` of a key, team, organisation, end user or agent.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ObjectPermission {
    /// Servers (names or aliases). `[]` means none.
    pub mcp_servers: Option<Vec<String>>,
    /// Access groups.
    pub mcp_access_groups: Option<Vec<String>>,
    /// Tools per server.
    pub mcp_tool_permissions: Option<UniqueMap<Vec<String>>>,
}

impl ObjectPermission {
    pub(crate) fn spec(&self) -> PermissionSpec {
        PermissionSpec {
            mcp_servers: self.mcp_servers.clone(),
            mcp_access_groups: self.mcp_access_groups.clone(),
            mcp_tool_permissions: self.mcp_tool_permissions.as_ref().map(|m| m.0.clone()),
        }
    }
}

/// One entry of `keys`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The plaintext key (hashed at load).
    pub key: Option<Secret>,
    /// `sha256:<hex>` of the key.
    pub key_hash: Option<String>,
    /// A printable name.
    pub key_alias: Option<String>,
    /// Team.
    pub team_id: Option<String>,
    /// Organisation (else the team's).
    pub organization_id: Option<String>,
    /// Agent.
    pub agent_id: Option<String>,
    /// Permissions.
    pub object_permission: Option<ObjectPermission>,
    /// A blocked key is refused (LiteLLM's `blocked`).
    #[serde(default)]
    pub blocked: bool,
    /// Tool calls per minute, to any server (LiteLLM's `rpm_limit`).
    pub rpm_limit: Option<u64>,
    /// Tool calls in flight at once (LiteLLM's `max_parallel_requests`).
    pub max_parallel_requests: Option<u64>,
    /// Tool calls per minute per server (LiteLLM's `mcp_rpm_limit`).
    pub mcp_rpm_limit: Option<UniqueMap<u64>>,
    /// Limits per tool: `{server: {tool: {rpm, max_parallel}}}`.
    pub mcp_tool_limits: Option<UniqueMap<UniqueMap<ToolLimitConfig>>>,
    /// Dollars that tool calls may cost, counted from the servers' prices.
    pub max_budget: Option<f64>,
    /// When the budget starts again: `30s`, `1h`, `1d`, `30d`, `1mo`... (never when left out).
    pub budget_duration: Option<String>,
}

/// One entry of `teams`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    /// Id.
    pub team_id: String,
    /// Organisation.
    pub organization_id: Option<String>,
    /// Permissions.
    pub object_permission: Option<ObjectPermission>,
    /// Tool calls per minute, to any server (LiteLLM's `rpm_limit`).
    pub rpm_limit: Option<u64>,
    /// Tool calls in flight at once (LiteLLM's `max_parallel_requests`).
    pub max_parallel_requests: Option<u64>,
    /// Tool calls per minute per server (LiteLLM's `mcp_rpm_limit`).
    pub mcp_rpm_limit: Option<UniqueMap<u64>>,
    /// Limits per tool: `{server: {tool: {rpm, max_parallel}}}`.
    pub mcp_tool_limits: Option<UniqueMap<UniqueMap<ToolLimitConfig>>>,
    /// Dollars that tool calls may cost, counted from the servers' prices.
    pub max_budget: Option<f64>,
    /// When the budget starts again: `30s`, `1h`, `1d`, `30d`, `1mo`... (never when left out).
    pub budget_duration: Option<String>,
}

/// One entry of `organizations`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrganizationConfig {
    /// Id.
    pub organization_id: String,
    /// Permissions.
    pub object_permission: Option<ObjectPermission>,
    /// Tool calls per minute, to any server (LiteLLM's `rpm_limit`).
    pub rpm_limit: Option<u64>,
    /// Tool calls in flight at once (LiteLLM's `max_parallel_requests`).
    pub max_parallel_requests: Option<u64>,
    /// Tool calls per minute per server (LiteLLM's `mcp_rpm_limit`).
    pub mcp_rpm_limit: Option<UniqueMap<u64>>,
    /// Limits per tool: `{server: {tool: {rpm, max_parallel}}}`.
    pub mcp_tool_limits: Option<UniqueMap<UniqueMap<ToolLimitConfig>>>,
    /// Dollars that tool calls may cost, counted from the servers' prices.
    pub max_budget: Option<f64>,
    /// When the budget starts again: `30s`, `1h`, `1d`, `30d`, `1mo`... (never when left out).
    pub budget_duration: Option<String>,
}

/// One entry of `end_users`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndUserConfig {
    /// Id.
    pub user_id: String,
    /// Permissions.
    pub object_permission: Option<ObjectPermission>,
    /// Tool calls per minute, to any server (LiteLLM's `rpm_limit`).
    pub rpm_limit: Option<u64>,
    /// Tool calls in flight at once (LiteLLM's `max_parallel_requests`).
    pub max_parallel_requests: Option<u64>,
    /// Tool calls per minute per server (LiteLLM's `mcp_rpm_limit`).
    pub mcp_rpm_limit: Option<UniqueMap<u64>>,
    /// Limits per tool: `{server: {tool: {rpm, max_parallel}}}`.
    pub mcp_tool_limits: Option<UniqueMap<UniqueMap<ToolLimitConfig>>>,
    /// Dollars that tool calls may cost, counted from the servers' prices.
    pub max_budget: Option<f64>,
    /// When the budget starts again: `30s`, `1h`, `1d`, `30d`, `1mo`... (never when left out).
    pub budget_duration: Option<String>,
}

/// One entry of `agents`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Id.
    pub agent_id: String,
    /// Permissions.
    pub object_permission: Option<ObjectPermission>,
    /// Tool calls per minute, to any server (LiteLLM's `rpm_limit`).
    pub rpm_limit: Option<u64>,
    /// Tool calls in flight at once (LiteLLM's `max_parallel_requests`).
    pub max_parallel_requests: Option<u64>,
    /// Tool calls per minute per server (LiteLLM's `mcp_rpm_limit`).
    pub mcp_rpm_limit: Option<UniqueMap<u64>>,
    /// Limits per tool: `{server: {tool: {rpm, max_parallel}}}`.
    pub mcp_tool_limits: Option<UniqueMap<UniqueMap<ToolLimitConfig>>>,
    /// Dollars that tool calls may cost, counted from the servers' prices.
    pub max_budget: Option<f64>,
    /// When the budget starts again: `30s`, `1h`, `1d`, `30d`, `1mo`... (never when left out).
    pub budget_duration: Option<String>,
}
