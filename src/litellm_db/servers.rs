//! LiteLLM's registered MCP servers as configuration entries: how each is reached (url,
//! transport, credentials, headers) and its rules (access groups, allowed tools,
//! `allow_all_keys`, prices).

use serde_json::{Map, Value, json};

use super::credentials;
use super::read::ServerRow;
use crate::config::ServerConfig;

/// A server of the LiteLLM database, ready for the configuration.
#[derive(Clone, Debug)]
pub(crate) struct DbServer {
    /// The name tools are prefixed with: LiteLLM's alias, else its server name, else its id.
    pub(crate) name: String,
    /// LiteLLM's `server_id`, which object permissions refer to.
    pub(crate) server_id: String,
    pub(crate) config: ServerConfig,
}

/// The auth types whose credential mcp-gatekeeper sends the way LiteLLM does.
const AUTH_TYPES: [&str; 5] = ["none", "api_key", "bearer_token", "basic", "token"];

/// A value from the database is taken as it is: it may not name an environment variable
/// of the gateway's process.
fn literal(value: &str, what: &str) -> Result<Value, String> {
    if value.starts_with("os.environ/") {
        return Err(format!(
            "{what} starts with os.environ/, which would read the gateway's environment"
        ));
    }
    Ok(Value::String(value.to_owned()))
}

fn credential(row: &ServerRow, salt_key: Option<&str>) -> Result<Option<Value>, String> {
    let Some(stored) = row
        .credentials
        .as_ref()
        .and_then(|c| c.get("auth_value"))
        .filter(|v| !v.is_null())
    else {
        return Ok(None);
    };
    let Some(stored) = stored.as_str() else {
        return Err("credentials.auth_value is not a string".into());
    };
    if stored.is_empty() {
        return Ok(None);
    }
    let Some(salt) = salt_key else {
        return Err(
            "its credential is encrypted, and neither general_settings.litellm_salt_key nor \
             master_key is set to open it"
                .into(),
        );
    };
    let plain = credentials::open(stored, salt)
        .map_err(|e| format!("its credential cannot be opened: {e}"))?;
    literal(&plain, "its credential").map(Some)
}

fn headers(row: &ServerRow) -> Result<Value, String> {
    let Some(value) = row.static_headers.as_ref().filter(|v| !v.is_null()) else {
        return Ok(json!({}));
    };
    let Some(object) = value.as_object() else {
        return Err("static_headers is not an object of header values".into());
    };
    let mut out = Map::new();
    for (name, v) in object {
        let Some(text) = v.as_str() else {
            return Err(format!("static_headers.{name} is not a string"));
        };
        out.insert(name.clone(), literal(text, "a static header")?);
    }
    Ok(Value::Object(out))
}

/// `mcp_info` keeps what the configuration's `mcp_info` has; prices of another shape are
/// dropped and reported (they never decide access).
fn info(row: &ServerRow, problems: &mut Vec<String>, who: &str) -> Value {
    let mut out = Map::new();
    let Some(object) = row.mcp_info.as_ref().and_then(Value::as_object) else {
        return Value::Object(out);
    };
    for key in ["server_name", "description", "logo_url"] {
        if let Some(text) = object.get(key).filter(|v| v.is_string()) {
            out.insert(key.into(), text.clone());
        }
    }
    if let Some(cost) = object.get("mcp_server_cost_info").filter(|v| !v.is_null()) {
        let default = cost.get("default_cost_per_query").filter(|v| !v.is_null());
        let tools = cost
            .get("tool_name_to_cost_per_query")
            .filter(|v| !v.is_null());
        let usable = cost.is_object()
            && default.is_none_or(|d| d.as_f64().is_some_and(|p| p >= 0.0))
            && tools.is_none_or(|t| {
                t.as_object()
                    .is_some_and(|m| m.values().all(|p| p.as_f64().is_some_and(|p| p >= 0.0)))
            });
        if usable {
            let mut c = Map::new();
            if let Some(d) = default {
                c.insert("default_cost_per_query".into(), d.clone());
            }
            if let Some(t) = tools {
                c.insert("tool_name_to_cost_per_query".into(), t.clone());
            }
            out.insert("mcp_server_cost_info".into(), Value::Object(c));
        } else {
            problems.push(format!(
                "{who}: mcp_info.mcp_server_cost_info is not {{default_cost_per_query, \
                 tool_name_to_cost_per_query}} with prices of 0 or more; its calls cost 0 \
                 until it is fixed"
            ));
        }
    }
    Value::Object(out)
}

fn entry(
    row: &ServerRow,
    salt_key: Option<&str>,
    who: &str,
    problems: &mut Vec<String>,
) -> Result<ServerConfig, String> {
    let transport = match row.transport.as_str() {
        "http" | "streamable_http" | "streamable-http" => "http",
        "sse" => "sse",
        "stdio" => {
            return Err(
                "stdio servers are not started from database rows (a row could run any \
                 command on the gateway's machine); define it in the configuration file"
                    .into(),
            );
        }
        other => {
            return Err(format!(
                "transport {other:?} is not one mcp-gatekeeper speaks"
            ));
        }
    };
    let auth_type = row.auth_type.as_deref().unwrap_or("none");
    if !AUTH_TYPES.contains(&auth_type) {
        return Err(format!(
            "auth_type {auth_type:?} is not supported for servers from the database (supported: {})",
            AUTH_TYPES.join(", ")
        ));
    }
    let mut object = Map::new();
    object.insert("url".into(), json!(row.url));
    object.insert("transport".into(), json!(transport));
    object.insert("server_id".into(), json!(row.server_id));
    if let Some(d) = &row.description {
        object.insert("description".into(), json!(d));
    }
    if let Some(alias) = row.alias.as_ref().and(row.server_name.as_ref()) {
        // Both spellings select the server, as in LiteLLM.
        object.insert("alias".into(), json!(alias));
    }
    object.insert("auth_type".into(), json!(auth_type));
    if auth_type != "none"
        && let Some(value) = credential(row, salt_key)?
    {
        object.insert("auth_value".into(), value);
    }
    object.insert("extra_headers".into(), json!(row.extra_headers));
    object.insert("static_headers".into(), headers(row)?);
    object.insert("access_groups".into(), json!(row.access_groups));
    // LiteLLM's empty list allows every tool.
    if !row.allowed_tools.is_empty() {
        object.insert("allowed_tools".into(), json!(row.allowed_tools));
    }
    object.insert("allow_all_keys".into(), json!(row.allow_all_keys));
    if let Some(t) = row.timeout.filter(|t| t.is_finite() && *t > 0.0) {
        object.insert("timeout".into(), json!(t));
    }
    object.insert("mcp_info".into(), info(row, problems, who));
    serde_json::from_value(Value::Object(object)).map_err(|e| e.to_string())
}

/// The servers of `rows` that can be served, in the database's order; each one that cannot
/// (a transport or auth type not supported, a credential that does not open, a name already
/// taken or holding the tool separator) is left out and reported.
pub(crate) fn servers(
    rows: &[ServerRow],
    salt_key: Option<&str>,
    separator: &str,
    taken: &dyn Fn(&str) -> bool,
    problems: &mut Vec<String>,
) -> Vec<DbServer> {
    let mut out: Vec<DbServer> = Vec::new();
    for row in rows {
        let name = row
            .alias
            .clone()
            .or_else(|| row.server_name.clone())
            .unwrap_or_else(|| row.server_id.clone());
        let who = format!("LiteLLM MCP server {name:?} ({})", row.server_id);
        let clash = |n: &str| {
            taken(n)
                || out
                    .iter()
                    .any(|s| s.name == n || s.config.alias.as_deref() == Some(n))
        };
        if name.is_empty() || name.contains(separator) {
            problems.push(format!(
                "{who}: its name is empty or holds the tool separator {separator:?}; it is not \
                 served (give it an alias without it, or set general_settings.tool_prefix_separator)"
            ));
            continue;
        }
        if clash(&name) {
            problems.push(format!(
                "{who}: another server already has this name; it is not served"
            ));
            continue;
        }
        match entry(row, salt_key, &who, problems) {
            Ok(mut config) => {
                if config
                    .alias
                    .as_deref()
                    .is_some_and(|a| a == name || a.contains(separator) || clash(a))
                {
                    config.alias = None;
                }
                out.push(DbServer {
                    name,
                    server_id: row.server_id.clone(),
                    config,
                });
            }
            Err(why) => problems.push(format!("{who}: {why}; it is not served")),
        }
    }
    out
}

/// Whether two entries reach a server the same way (rules aside).
pub(crate) fn same_connection(a: &ServerConfig, b: &ServerConfig) -> bool {
    a.url == b.url
        && a.transport == b.transport
        && a.auth_type == b.auth_type
        && a.auth_value == b.auth_value
        && a.extra_headers == b.extra_headers
        && a.static_headers == b.static_headers
        && a.timeout == b.timeout
}
