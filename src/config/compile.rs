//! A loaded configuration compiled into what the layers decide with: the catalog's settings
//! and servers, and the identity store built against them. Every inconsistency the schema
//! cannot express (an unknown server or group in a permission, a tool both allowed and
//! disallowed, a duplicate key) is an error here, at the path that has it.

use std::sync::Arc;

use super::{
    Config, ConfigError, DenialStyleConfig, LevelEntry, ObjectPermission, ToolPrefixConfig,
    Transport,
};
use crate::engine::{
    Catalog, CatalogError, CostInfo, DenialStyle, IdentitySpec, IdentityStore, KeyDigest,
    KeyMaterial, KeySpec, MemberSpec, PermissionSpec, ServerSpec, Settings, TeamSpec, ToolPrefix,
};
use crate::gatekeeper::PolicySnapshot;

impl Config {
    /// The catalog settings.
    #[must_use]
    pub fn settings(&self) -> Settings {
        let g = &self.general_settings;
        Settings {
            separator: g
                .tool_prefix_separator
                .clone()
                .unwrap_or_else(|| "-".to_owned()),
            tool_prefix: match g.tool_prefix {
                Some(ToolPrefixConfig::Never) => ToolPrefix::Never,
                _ => ToolPrefix::Always,
            },
            denial_style: match g.denial_style {
                Some(DenialStyleConfig::JsonrpcError) => DenialStyle::JsonRpcError,
                _ => DenialStyle::ToolResult,
            },
        }
    }

    /// Checks everything [`Config::policy`] checks, without keeping the result.
    ///
    /// # Errors
    ///
    /// The first mistake, with its path and fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let deployment = self.general_settings.deployment()?;
        if deployment.database_schema == super::DatabaseSchema::Litellm {
            for (present, field) in [
                (!self.keys.is_empty(), "keys"),
                (!self.teams.is_empty(), "teams"),
                (!self.organizations.is_empty(), "organizations"),
                (!self.end_users.is_empty(), "end_users"),
                (!self.agents.is_empty(), "agents"),
            ] {
                if present {
                    return Err(ConfigError::at(
                        field,
                        "with database_schema: litellm, keys, teams, organisations, end users \
                         and agents come from LiteLLM's database; manage them there (the \
                         master key stays in general_settings)",
                    ));
                }
            }
        }
        self.policy().map(drop)
    }

    /// Builds the catalog.
    ///
    /// # Errors
    ///
    /// Catalog mistakes (names, separators, tool rules, prices, transports), with their path.
    pub fn catalog(&self) -> Result<Catalog, ConfigError> {
        let specs = self.server_specs()?;
        self.catalog_of(specs)
    }

    /// The servers' rules as the catalog takes them, checked field by field (the catalog
    /// checks the rest when built from them).
    ///
    /// # Errors
    ///
    /// A server without a url or command, a bad timeout or protocol version, with its path.
    pub(crate) fn server_specs(&self) -> Result<Vec<ServerSpec>, ConfigError> {
        let mut specs = Vec::new();
        for (name, s) in self.mcp_servers.iter() {
            let at = |field: &str| {
                format!(
                    "mcp_servers.{name}{}{field}",
                    if field.is_empty() { "" } else { "." }
                )
            };
            match s.transport {
                Transport::Http | Transport::Sse if s.url.is_none() => {
                    return Err(ConfigError::at(
                        at("url"),
                        "an http or sse server needs a url",
                    ));
                }
                Transport::Stdio if s.command.is_none() => {
                    return Err(ConfigError::at(
                        at("command"),
                        "a stdio server needs a command",
                    ));
                }
                _ => {}
            }
            if let Some(t) = s.timeout
                && !(t.is_finite() && t > 0.0)
            {
                return Err(ConfigError::at(
                    at("timeout"),
                    "the timeout must be a positive number of seconds",
                ));
            }
            if let Some(v) = &s.protocol_version
                && !matches!(v.as_str(), "2025-11-25" | "2026-07-28")
            {
                return Err(ConfigError::at(
                    at("protocol_version"),
                    "the protocol version must be \"2025-11-25\" (the handshake) or \"2026-07-28\" \
                     (2026-07-28 where the server speaks it)",
                ));
            }
            let cost = s
                .mcp_info
                .as_ref()
                .and_then(|i| i.mcp_server_cost_info.as_ref());
            specs.push(ServerSpec {
                name: name.to_owned(),
                alias: s.alias.clone(),
                description: s
                    .description
                    .clone()
                    .or_else(|| s.mcp_info.as_ref().and_then(|i| i.description.clone())),
                access_groups: s.access_groups.clone(),
                allowed_tools: s.allowed_tools.clone(),
                disallowed_tools: s.disallowed_tools.clone(),
                allowed_params: s.allowed_params.0.clone(),
                allow_all_keys: s.allow_all_keys,
                cost: CostInfo {
                    default_cost_per_query: cost.and_then(|c| c.default_cost_per_query),
                    tool_name_to_cost_per_query: cost
                        .map(|c| c.tool_name_to_cost_per_query.0.clone())
                        .unwrap_or_default(),
                },
                pinning: super::audit::pin_rules(name, s)?,
                audit_redact: s.audit_redact.clone(),
            });
        }
        Ok(specs)
    }

    /// Builds a catalog from this configuration's settings and `specs` (its servers, perhaps
    /// with rules from elsewhere), naming the configuration's paths in errors.
    ///
    /// # Errors
    ///
    /// Catalog mistakes, with their path.
    pub(crate) fn catalog_of(&self, specs: Vec<ServerSpec>) -> Result<Catalog, ConfigError> {
        Catalog::new(self.settings(), specs).map_err(|e| {
            let path = match &e {
                CatalogError::EmptySeparator => "general_settings.tool_prefix_separator".to_owned(),
                CatalogError::AllowedAndDisallowed { server, .. } => {
                    format!("mcp_servers.{server}.disallowed_tools")
                }
                CatalogError::BadPrice { server, .. } => {
                    format!("mcp_servers.{server}.mcp_info.mcp_server_cost_info")
                }
                CatalogError::SeparatorInName { name, .. }
                | CatalogError::DuplicateName(name)
                | CatalogError::GroupNamesServer(name) => {
                    self.mcp_servers
                        .iter()
                        .find(|(n, s)| *n == name || s.alias.as_deref() == Some(name))
                        .map(|(n, _)| {
                            if n == name {
                                format!("mcp_servers.{n}")
                            } else {
                                format!("mcp_servers.{n}.alias")
                            }
                        })
                        .unwrap_or_else(|| "mcp_servers".to_owned())
                        + if matches!(e, CatalogError::GroupNamesServer(_)) {
                            " (access_groups)"
                        } else {
                            ""
                        }
                }
                _ => "mcp_servers".to_owned(),
            };
            ConfigError::at(path, e.to_string())
        })
    }

    /// Builds the policy: the catalog and the identity store compiled against it.
    ///
    /// # Errors
    ///
    /// Any mistake, with its path and fix.
    pub fn policy(&self) -> Result<PolicySnapshot, ConfigError> {
        let catalog = self.catalog()?;
        let spec = self.identity_spec(&catalog)?;
        let identities = build_identities(&catalog, &spec)?;
        Ok(PolicySnapshot::new(Arc::new(catalog), identities))
    }

    /// The identities of the configuration (master key, keys, teams, organisations, end users,
    /// agents), checked against `catalog`.
    ///
    /// # Errors
    ///
    /// Any mistake, with its path and fix.
    pub(crate) fn identity_spec(&self, catalog: &Catalog) -> Result<IdentitySpec, ConfigError> {
        let perms = |path: String,
                     p: &Option<ObjectPermission>|
         -> Result<Option<PermissionSpec>, ConfigError> {
            let Some(p) = p else { return Ok(None) };
            let spec = p.spec();
            catalog
                .compile_permissions(&spec)
                .map_err(|e| ConfigError::at(format!("{path}.object_permission"), e.to_string()))?;
            Ok(Some(spec))
        };
        let defined = |kind: &str, found: bool, id: &str, path: String| {
            if found {
                Ok(())
            } else {
                Err(ConfigError::at(
                    path,
                    format!(
                        "{kind} {id:?} is not defined; add it to `{kind}s` or remove the reference"
                    ),
                ))
            }
        };
        let mut spec = IdentitySpec {
            master_key: self
                .general_settings
                .master_key
                .as_ref()
                .map(|k| {
                    k.resolve("general_settings.master_key")
                        .map(KeyMaterial::Plain)
                })
                .transpose()?,
            ..IdentitySpec::default()
        };
        for (i, o) in self.organizations.iter().enumerate() {
            spec.organizations.push(MemberSpec {
                id: o.organization_id.clone(),
                permissions: perms(format!("organizations[{i}]"), &o.object_permission)?,
                limits: o.limits(catalog, &format!("organizations[{i}]"))?,
            });
        }
        for (i, t) in self.teams.iter().enumerate() {
            if let Some(org) = &t.organization_id {
                defined(
                    "organization",
                    self.organizations.iter().any(|o| o.organization_id == *org),
                    org,
                    format!("teams[{i}].organization_id"),
                )?;
            }
            spec.teams.push(TeamSpec {
                team_id: t.team_id.clone(),
                organization_id: t.organization_id.clone(),
                permissions: perms(format!("teams[{i}]"), &t.object_permission)?,
                limits: t.limits(catalog, &format!("teams[{i}]"))?,
            });
        }
        for (i, u) in self.end_users.iter().enumerate() {
            spec.end_users.push(MemberSpec {
                id: u.user_id.clone(),
                permissions: perms(format!("end_users[{i}]"), &u.object_permission)?,
                limits: u.limits(catalog, &format!("end_users[{i}]"))?,
            });
        }
        for (i, a) in self.agents.iter().enumerate() {
            spec.agents.push(MemberSpec {
                id: a.agent_id.clone(),
                permissions: perms(format!("agents[{i}]"), &a.object_permission)?,
                limits: a.limits(catalog, &format!("agents[{i}]"))?,
            });
        }
        for (i, k) in self.keys.iter().enumerate() {
            let at = |f: &str| format!("keys[{i}].{f}");
            let key = match (&k.key, &k.key_hash) {
                (Some(key), None) => {
                    let plain = key.resolve(&at("key"))?;
                    if plain.is_empty() {
                        return Err(ConfigError::at(at("key"), "the key is empty"));
                    }
                    KeyMaterial::Plain(plain)
                }
                (None, Some(hash)) => {
                    KeyMaterial::Digest(KeyDigest::parse(hash).ok_or_else(|| {
                        ConfigError::at(
                            at("key_hash"),
                            "write the key hash as sha256:<64 hex digits>",
                        )
                    })?)
                }
                (Some(_), Some(_)) => {
                    return Err(ConfigError::at(
                        at("key"),
                        "give either key or key_hash, not both",
                    ));
                }
                (None, None) => {
                    return Err(ConfigError::at(
                        format!("keys[{i}]"),
                        "a key entry needs key or key_hash",
                    ));
                }
            };
            if let Some(team) = &k.team_id {
                defined(
                    "team",
                    self.teams.iter().any(|t| t.team_id == *team),
                    team,
                    at("team_id"),
                )?;
            }
            if let Some(org) = &k.organization_id {
                defined(
                    "organization",
                    self.organizations.iter().any(|o| o.organization_id == *org),
                    org,
                    at("organization_id"),
                )?;
            }
            if let Some(agent) = &k.agent_id {
                defined(
                    "agent",
                    self.agents.iter().any(|a| a.agent_id == *agent),
                    agent,
                    at("agent_id"),
                )?;
            }
            spec.keys.push(KeySpec {
                key: Some(key),
                key_alias: k.key_alias.clone(),
                team_id: k.team_id.clone(),
                organization_id: k.organization_id.clone(),
                agent_id: k.agent_id.clone(),
                permissions: perms(format!("keys[{i}]"), &k.object_permission)?,
                expires_at: None,
                blocked: k.blocked,
                over_budget: false,
                hierarchy: crate::engine::Hierarchy::Gatekeeper,
                limits: k.limits(catalog, &format!("keys[{i}]"))?,
            });
        }
        if let Some(oauth) = &self.general_settings.oauth {
            oauth.check()?;
            for (i, issuer) in oauth.issuers.iter().enumerate() {
                for (scope, p) in issuer.scopes.iter() {
                    catalog.compile_permissions(&p.spec()).map_err(|e| {
                        let at = format!("general_settings.oauth.issuers[{i}].scopes.{scope}");
                        ConfigError::at(at, e.to_string())
                    })?;
                }
            }
        }
        Ok(spec)
    }
}

/// Builds the identity store, naming the configuration's lists in errors.
pub(crate) fn build_identities(
    catalog: &Catalog,
    spec: &IdentitySpec,
) -> Result<IdentityStore, ConfigError> {
    IdentityStore::build(catalog, spec).map_err(|e| {
        let path = match &e {
            crate::engine::IdentityConfigError::DuplicateKey(_) => "keys",
            crate::engine::IdentityConfigError::DuplicateId { level, .. } => match level {
                crate::engine::Level::Team => "teams",
                crate::engine::Level::Organization => "organizations",
                crate::engine::Level::EndUser => "end_users",
                crate::engine::Level::Agent => "agents",
                crate::engine::Level::Key => "keys",
            },
            _ => "",
        };
        ConfigError::at(path, e.to_string())
    })
}
