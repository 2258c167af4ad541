//! Configuration of tool pinning (per server) and of the audit trail and the pin store
//! (`general_settings`).

use serde::Deserialize;

use super::{ConfigError, ServerConfig};
use crate::engine::{NewTools, PinDigest, PinMode, PinRules};

/// `mcp_servers.<name>.tool_pinning`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ToolPinningConfig {
    /// Definitions are not looked at (the default).
    #[default]
    Off,
    /// Changes are reported (audit event, `/health`), nothing is withheld.
    Observe,
    /// Tools and prompts whose definitions no longer match their pins are withheld from lists
    /// and refused.
    Enforce,
}

/// `mcp_servers.<name>.pin_new_tools`: a tool or prompt without a pin that appears once the
/// server's definitions were pinned.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NewToolsConfig {
    /// Pinned as first seen (trust on first use; the default).
    #[default]
    Pin,
    /// Quarantined until approved.
    Quarantine,
}

/// `general_settings.audit`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Where events go.
    #[serde(default)]
    pub sinks: Vec<AuditSinkConfig>,
    /// How many events may wait to be written before new ones are dropped (default 10,000).
    pub queue_capacity: Option<usize>,
}

/// One entry of `general_settings.audit.sinks`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuditSinkConfig {
    /// `{type: jsonl, path: …}`: one JSON line per event, appended to a local file.
    Jsonl {
        /// The file.
        path: String,
    },
    /// `{type: postgres}`: rows of `gk_audit` in `general_settings.database_url` (needs the
    /// `postgres` feature).
    Postgres,
}

/// `general_settings.pin_store`: where learned and approved pins are kept.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PinStoreConfig {
    /// `{type: file, path: …}`: a JSON file (by default `<config>.pins.json` next to the
    /// configuration file).
    File {
        /// The file.
        path: String,
    },
    /// `{type: postgres}`: `gk_tool_pins` in `general_settings.database_url` (the default when
    /// the database holds mcp-gatekeeper's tables).
    Postgres,
    /// `{type: memory}`: not kept; a restart trusts what it first sees again.
    Memory,
}

fn digests(
    pins: &super::UniqueMap<String>,
    at: &str,
) -> Result<std::collections::HashMap<Box<str>, PinDigest>, ConfigError> {
    pins.0
        .iter()
        .map(|(name, digest)| {
            let pin = digest
                .trim()
                .parse::<PinDigest>()
                .map_err(|e| ConfigError::at(format!("{at}.{name}"), e.to_string()))?;
            Ok((name.as_str().into(), pin))
        })
        .collect()
}

/// The pinning rules of server `name`.
pub(super) fn pin_rules(name: &str, s: &ServerConfig) -> Result<PinRules, ConfigError> {
    let at = |field: &str| format!("mcp_servers.{name}.{field}");
    let mode = match s.tool_pinning.unwrap_or_default() {
        ToolPinningConfig::Off => PinMode::Off,
        ToolPinningConfig::Observe => PinMode::Observe,
        ToolPinningConfig::Enforce => PinMode::Enforce,
    };
    if mode == PinMode::Off {
        for (set, field) in [
            (!s.pinned_tools.0.is_empty(), "pinned_tools"),
            (!s.pinned_prompts.0.is_empty(), "pinned_prompts"),
            (s.pin_new_tools.is_some(), "pin_new_tools"),
        ] {
            if set {
                return Err(ConfigError::at(
                    at(field),
                    "has no effect without tool_pinning: observe or enforce",
                ));
            }
        }
    }
    Ok(PinRules {
        mode,
        new_tools: match s.pin_new_tools.unwrap_or_default() {
            NewToolsConfig::Pin => NewTools::Pin,
            NewToolsConfig::Quarantine => NewTools::Quarantine,
        },
        tools: digests(&s.pinned_tools, &at("pinned_tools"))?,
        prompts: digests(&s.pinned_prompts, &at("pinned_prompts"))?,
    })
}

/// The audit trail's settings, resolved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditSettings {
    /// Where events go (none: `tracing` only).
    pub sinks: Vec<AuditSinkConfig>,
    /// The queue's capacity.
    pub queue_capacity: usize,
}

impl AuditConfig {
    pub(super) fn settings(
        config: Option<&Self>,
        has_database: bool,
    ) -> Result<AuditSettings, ConfigError> {
        let Some(c) = config else {
            return Ok(AuditSettings {
                sinks: Vec::new(),
                queue_capacity: 10_000,
            });
        };
        if c.queue_capacity == Some(0) {
            return Err(ConfigError::at(
                "general_settings.audit.queue_capacity",
                "the queue must hold at least one event",
            ));
        }
        for (i, sink) in c.sinks.iter().enumerate() {
            match sink {
                AuditSinkConfig::Postgres if !has_database => {
                    return Err(ConfigError::at(
                        format!("general_settings.audit.sinks[{i}]"),
                        "a postgres sink writes to general_settings.database_url: set it",
                    ));
                }
                AuditSinkConfig::Jsonl { path } if path.trim().is_empty() => {
                    return Err(ConfigError::at(
                        format!("general_settings.audit.sinks[{i}].path"),
                        "name the file events are appended to",
                    ));
                }
                _ => {}
            }
        }
        Ok(AuditSettings {
            sinks: c.sinks.clone(),
            queue_capacity: c.queue_capacity.unwrap_or(10_000),
        })
    }
}
