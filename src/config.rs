//! The configuration file: serde types for the YAML/JSON schema, validated into a
//! [`PolicySnapshot`](crate::gatekeeper::PolicySnapshot).
//!
//! LiteLLM's `mcp_servers` block loads unchanged. Every mistake is an error at load time that
//! names the file, the path inside it and the fix: unknown fields, unknown server or group
//! names in permissions, a separator inside a server name, a tool both allowed and disallowed,
//! duplicate keys. Fields LiteLLM accepts that this crate does not implement are errors that say
//! so, never silently ignored. Purely descriptive fields load.
//!
//! Note one difference from LiteLLM's database rows: here `mcp_servers: []` on a level means
//! *no servers at that level*; leave the field out to leave the level unrestricted.
//!
//! String values written `os.environ/NAME` are read from the environment at load time (keys,
//! credentials, headers, `env` of stdio servers, URLs).

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

mod audit;
mod compile;
mod deploy;
mod levels;
mod metrics;
mod oauth;
mod ssl;

pub use audit::{
    AuditConfig, AuditSettings, AuditSinkConfig, NewToolsConfig, PinStoreConfig, ToolPinningConfig,
};
#[cfg(feature = "postgres")]
pub(crate) use compile::build_identities;
pub use deploy::{
    DatabaseSchema, Deployment, LimitStoreConfig, LimitStoreSettings, SpendSinkConfig,
};
pub(crate) use levels::LevelEntry;
#[cfg(feature = "postgres")]
pub(crate) use levels::limits_from_json;
pub use levels::{
    AgentConfig, EndUserConfig, KeyConfig, ObjectPermission, OrganizationConfig, TeamConfig,
    ToolLimitConfig,
};
pub use metrics::MetricsConfig;
#[cfg(feature = "oauth")]
pub(crate) use oauth::check_url_text;
pub use oauth::{
    ALGORITHMS, ClaimPath, ClaimsConfig, IntrospectionConfig, IssuerConfig, OAuthConfig,
};
pub use ssl::{SslVerify, SslVerifySetting};

/// A configuration error: where, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    file: Option<PathBuf>,
    path: String,
    message: String,
}

impl ConfigError {
    fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            path: path.into(),
            message: message.into(),
        }
    }

    /// An error at `path` (`mcp_servers.github.url`) saying what is wrong and how to fix it.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::at(path, message)
    }

    fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_owned());
        self
    }

    /// The file, when loaded from one.
    #[must_use]
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The path inside the document (`mcp_servers.github.allowed_tools`), empty for the root.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong and how to fix it.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if !self.path.is_empty() {
            write!(f, "at {}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A map that keeps document order and refuses duplicate keys (JSON would keep the last one).
#[derive(Clone, Debug, PartialEq)]
pub struct UniqueMap<V>(pub(crate) Vec<(String, V)>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> UniqueMap<V> {
    /// Entries in document order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// How many entries it has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V> FromIterator<(String, V)> for UniqueMap<V> {
    /// The entries in iteration order; a key given twice keeps its last value, in its first
    /// place.
    fn from_iter<I: IntoIterator<Item = (String, V)>>(entries: I) -> Self {
        let mut out: Vec<(String, V)> = Vec::new();
        for (k, v) in entries {
            match out.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => out.push((k, v)),
            }
        }
        Self(out)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
                    }
                    let value = map.next_value()?;
                    out.push((key, value));
                }
                Ok(UniqueMap(out))
            }
        }
        de.deserialize_map(V2(PhantomData))
    }
}

/// A string that may be `os.environ/NAME`; never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The value, with `os.environ/NAME` read from the environment.
    ///
    /// # Errors
    ///
    /// When the variable is unset or not UTF-8.
    pub fn resolve(&self, path: &str) -> Result<String, ConfigError> {
        resolve_env(&self.0, path)
    }
}

pub(crate) fn resolve_env(value: &str, path: &str) -> Result<String, ConfigError> {
    match value.strip_prefix("os.environ/") {
        Some(name) => std::env::var(name).map_err(|_| {
            ConfigError::at(path, format!("environment variable {name} is not set (or not UTF-8); set it or write the value here"))
        }),
        None => Ok(value.to_owned()),
    }
}

/// `general_settings`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GeneralSettings {
    /// The master key (admin).
    pub master_key: Option<Secret>,
    /// The header carrying credentials meant for upstream servers (default `x-mcp-auth`).
    pub mcp_client_side_auth_header_name: Option<String>,
    /// Serve `/v1/mcp/registry.json`.
    #[serde(default)]
    pub enable_mcp_registry: bool,
    /// Between server and tool name (default `-`).
    pub tool_prefix_separator: Option<String>,
    /// `always` (default) or `never`.
    pub tool_prefix: Option<ToolPrefixConfig>,
    /// `tool_result` (default) or `jsonrpc_error`.
    pub denial_style: Option<DenialStyleConfig>,
    /// How upstream certificates are verified, unless a server says otherwise: `true` (the
    /// default), `false`, or the path of a PEM CA bundle used instead of the default roots.
    pub ssl_verify: Option<SslVerify>,
    /// How many seconds the gateway keeps the lists an upstream gave one caller's session
    /// (default 60; 0 keeps none). A list the upstream announces as changed is asked again.
    pub mcp_list_cache_ttl_seconds: Option<u64>,
    /// Accept OAuth 2.1 bearer tokens besides keys (needs the `oauth` feature to take effect).
    pub oauth: Option<OAuthConfig>,
    /// The Postgres database that holds keys, teams, organisations, end users, agents, server
    /// rules and spend (LiteLLM's name; `os.environ/DATABASE_URL` works). Needs the `postgres`
    /// feature.
    pub database_url: Option<Secret>,
    /// Where spend events go (see [`SpendSinkConfig`]).
    pub spend_sink: Option<SpendSinkConfig>,
    /// The secret every replica shares to bind MCP sessions to callers, at least 32 bytes.
    pub session_secret: Option<Secret>,
    /// Seconds between full reloads of the policy from the database, besides its change
    /// notifications (default 30).
    pub policy_resync_seconds: Option<u64>,
    /// Whose tables `database_url` holds: mcp-gatekeeper's own (`gatekeeper`, the default) or
    /// those of a LiteLLM proxy (`litellm`, read only; needs the `litellm-db` feature).
    pub database_schema: Option<DatabaseSchema>,
    /// The key LiteLLM encrypts MCP server credentials with (its `LITELLM_SALT_KEY`; without
    /// it, the master key, as LiteLLM does). Only with `database_schema: litellm`.
    pub litellm_salt_key: Option<Secret>,
    /// Seconds between two checks of a LiteLLM database for changes (default 2). Only with
    /// `database_schema: litellm`.
    pub policy_poll_seconds: Option<u64>,
    /// Where limit and budget counters live (see [`LimitStoreConfig`]; default in process).
    pub limit_store: Option<LimitStoreConfig>,
    /// `deny` (the default) or `allow`: what happens to a call whose limits cannot be checked
    /// because the limit store is unreachable.
    pub on_limit_store_error: Option<crate::limit::OnStoreError>,
    /// Where audit events go (see [`AuditConfig`]; default: `tracing` only).
    pub audit: Option<AuditConfig>,
    /// Where tool and prompt pins are kept (see [`PinStoreConfig`]).
    pub pin_store: Option<PinStoreConfig>,
    /// What the gateway measures and who may read `GET /metrics` (see [`MetricsConfig`];
    /// default: measured, the master key only).
    pub metrics: Option<MetricsConfig>,
    /// The origins browser MCP clients may call the gateway from (`https://app.example`, or
    /// `"*"` for any); none by default.
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
}

/// `general_settings.tool_prefix`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ToolPrefixConfig {
    /// Prefix every tool with its server.
    Always,
    /// Bare names.
    Never,
}

/// `general_settings.denial_style`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DenialStyleConfig {
    /// A tool result with `isError: true`.
    ToolResult,
    /// A JSON-RPC error.
    JsonrpcError,
}

/// How the gateway reaches a server.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Streamable HTTP (default).
    #[default]
    #[serde(
        alias = "streamable_http",
        alias = "streamable-http",
        alias = "streamablehttp"
    )]
    Http,
    /// Legacy HTTP+SSE.
    Sse,
    /// A child process speaking over stdin/stdout.
    Stdio,
}

/// `auth_type`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    /// No upstream credential.
    #[default]
    None,
    /// `X-API-Key: <auth_value>`.
    ApiKey,
    /// `Authorization: Bearer <auth_value>`.
    BearerToken,
    /// `Authorization: Basic <auth_value>` (already `user:pass` base64, as LiteLLM).
    Basic,
    /// `Authorization: Token <auth_value>`.
    Token,
    /// OAuth 2 (client credentials; authorization-code fields load but need a later release).
    Oauth2,
}

/// `mcp_info.mcp_server_cost_info`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CostInfoConfig {
    /// Price of a call to a tool without its own.
    pub default_cost_per_query: Option<f64>,
    /// Prices per tool.
    #[serde(default)]
    pub tool_name_to_cost_per_query: UniqueMap<f64>,
}

/// `mcp_info`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpInfo {
    /// Display name.
    pub server_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Logo.
    pub logo_url: Option<String>,
    /// Prices.
    pub mcp_server_cost_info: Option<CostInfoConfig>,
}

/// One entry of `mcp_servers`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The URL (http, sse).
    pub url: Option<String>,
    /// How to reach it.
    #[serde(default)]
    pub transport: Transport,
    /// stdio: the program.
    pub command: Option<String>,
    /// stdio: its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// stdio: its environment.
    #[serde(default)]
    pub env: UniqueMap<Secret>,
    /// Another name.
    pub alias: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// A display name (LiteLLM's `server_name`).
    pub server_name: Option<String>,
    /// LiteLLM's `server_id` (descriptive here).
    pub server_id: Option<String>,
    /// Upstream credential kind.
    #[serde(default)]
    pub auth_type: AuthType,
    /// Upstream credential.
    pub auth_value: Option<Secret>,
    /// OAuth 2 client id.
    pub client_id: Option<Secret>,
    /// OAuth 2 client secret.
    pub client_secret: Option<Secret>,
    /// OAuth 2 token endpoint.
    pub token_url: Option<String>,
    /// OAuth 2 scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// OAuth 2 authorization endpoint (authorization-code flow).
    pub authorization_url: Option<String>,
    /// OAuth 2 dynamic client registration endpoint.
    pub registration_url: Option<String>,
    /// Caller headers copied to this server.
    #[serde(default)]
    pub extra_headers: Vec<String>,
    /// Headers always sent to this server (they win over forwarded ones).
    #[serde(default)]
    pub static_headers: UniqueMap<Secret>,
    /// Access groups.
    #[serde(default)]
    pub access_groups: Vec<String>,
    /// Allow-list of tools.
    pub allowed_tools: Option<Vec<String>>,
    /// Deny-list of tools.
    #[serde(default)]
    pub disallowed_tools: Vec<String>,
    /// Allowed argument names per tool.
    #[serde(default)]
    pub allowed_params: UniqueMap<Vec<String>>,
    /// Offer to every caller.
    #[serde(default)]
    pub allow_all_keys: bool,
    /// Per-request timeout for this upstream, in seconds.
    pub timeout: Option<f64>,
    /// The protocol the gateway speaks to this server: `"2025-11-25"` (the default) opens every
    /// session with the initialize handshake; `"2026-07-28"` asks `server/discover` first and
    /// speaks 2026-07-28 when the server does, the handshake when it does not.
    pub protocol_version: Option<String>,
    /// How this server's certificate is verified; overrides `general_settings.ssl_verify`.
    pub ssl_verify: Option<SslVerify>,
    /// Mutual TLS: the PEM certificate chain shown to this server (with `ssl_client_key`).
    pub ssl_client_certificate: Option<Secret>,
    /// Mutual TLS: the PEM private key of `ssl_client_certificate`.
    pub ssl_client_key: Option<Secret>,
    /// Descriptive info and prices.
    pub mcp_info: Option<McpInfo>,
    /// `off` (the default), `observe` or `enforce`: whether tool and prompt definitions are
    /// held to their pins.
    pub tool_pinning: Option<ToolPinningConfig>,
    /// Pins given here: bare tool name → `sha256:…` (they win over learned and approved pins).
    #[serde(default)]
    pub pinned_tools: UniqueMap<String>,
    /// Pins of prompts, as `pinned_tools`.
    #[serde(default)]
    pub pinned_prompts: UniqueMap<String>,
    /// `pin` (the default: trust on first use) or `quarantine`: a definition without a pin that
    /// appears once the server's definitions were pinned.
    pub pin_new_tools: Option<NewToolsConfig>,
    /// When set, audit events carry this server's argument values, with the values of these
    /// argument names (at any depth) replaced by `"[redacted]"`; otherwise names only.
    pub audit_redact: Option<Vec<String>>,
    /// LiteLLM's OpenAPI-to-MCP conversion: not implemented.
    #[serde(default, deserialize_with = "unsupported")]
    pub spec_path: Option<()>,
}

fn unsupported<'de, D: Deserializer<'de>>(_: D) -> Result<Option<()>, D::Error> {
    Err(de::Error::custom(
        "LiteLLM accepts this field, but mcp-gatekeeper does not implement it yet; remove it",
    ))
}

/// The whole configuration document.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Settings.
    #[serde(default)]
    pub general_settings: GeneralSettings,
    /// Servers by name, in document order.
    #[serde(default)]
    pub mcp_servers: UniqueMap<ServerConfig>,
    /// Keys.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Teams.
    #[serde(default)]
    pub teams: Vec<TeamConfig>,
    /// Organisations.
    #[serde(default)]
    pub organizations: Vec<OrganizationConfig>,
    /// End users.
    #[serde(default)]
    pub end_users: Vec<EndUserConfig>,
    /// Agents.
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
}

fn serde_error<E: fmt::Display>(e: serde_path_to_error::Error<E>) -> ConfigError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let mut message = e.into_inner().to_string();
    // YAML errors repeat the location they occurred at ("mcp_servers.a: unknown field …").
    if let Some((head, rest)) = message.split_once(": ")
        && !head.is_empty()
        && path.starts_with(head)
    {
        message = rest.to_owned();
    }
    ConfigError::at(path, message)
}

impl Config {
    /// Parses JSON.
    ///
    /// # Errors
    ///
    /// Syntax errors, unknown fields, wrong types and duplicate keys, with their path.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let config = serde_path_to_error::deserialize(&mut de).map_err(serde_error)?;
        de.end().map_err(|e| ConfigError::at("", e.to_string()))?;
        Ok(config)
    }

    /// Parses YAML (feature `config-yaml`).
    ///
    /// # Errors
    ///
    /// Syntax errors, unknown fields, wrong types and duplicate keys, with their path.
    #[cfg(feature = "config-yaml")]
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        serde_path_to_error::deserialize(yaml_serde::Deserializer::from_str(text))
            .map_err(serde_error)
    }

    /// Reads a file: JSON for `.json`, YAML for `.yaml`/`.yml` (feature `config-yaml`).
    ///
    /// # Errors
    ///
    /// I/O errors and every parse error, naming the file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::at("", format!("cannot read the file: {e}")).in_file(path))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let parsed = match ext.as_str() {
            "json" => Self::from_json_str(&text),
            "yaml" | "yml" => Self::from_yaml_text(&text),
            _ => Err(ConfigError::at(
                "",
                "name the file .json, .yaml or .yml so its format is known",
            )),
        };
        let config = parsed.map_err(|e| e.in_file(path))?;
        config.validate().map_err(|e| e.in_file(path))?;
        Ok(config)
    }

    #[cfg(feature = "config-yaml")]
    fn from_yaml_text(text: &str) -> Result<Self, ConfigError> {
        Self::from_yaml_str(text)
    }

    #[cfg(not(feature = "config-yaml"))]
    fn from_yaml_text(_: &str) -> Result<Self, ConfigError> {
        Err(ConfigError::at(
            "",
            "YAML needs the `config-yaml` feature of mcp-gatekeeper; enable it or use JSON",
        ))
    }

    /// The master key and per-server secrets never print: see [`Secret`].
    #[must_use]
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.mcp_servers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s)
    }
}
