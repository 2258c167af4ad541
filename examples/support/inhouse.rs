//! An in-house MCP server written with rmcp's macros, shared by the examples.

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct Search {
    /// What to look for.
    pub(crate) query: String,
    /// How many hits to return.
    pub(crate) limit: Option<u32>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct Ticket {
    /// The ticket title.
    pub(crate) title: String,
    /// The ticket body.
    pub(crate) body: Option<String>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct Confirm {
    /// Must be true.
    pub(crate) confirm: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct InHouse {
    tool_router: ToolRouter<Self>,
}

impl InHouse {
    pub(crate) fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl InHouse {
    #[tool(description = "Search the internal docs")]
    fn search_docs(&self, Parameters(s): Parameters<Search>) -> String {
        format!("3 documents match {:?} (limit {:?})", s.query, s.limit)
    }

    #[tool(description = "Open a ticket")]
    fn create_ticket(&self, Parameters(t): Parameters<Ticket>) -> String {
        format!(
            "opened ticket {:?} ({} bytes of body)",
            t.title,
            t.body.map_or(0, |b| b.len())
        )
    }

    #[tool(description = "Delete every record (never offered to anyone by the policy)")]
    fn delete_everything(&self, Parameters(c): Parameters<Confirm>) -> String {
        format!("deleted everything (confirm={})", c.confirm)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for InHouse {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("The in-house tools")
    }
}

/// The policy both examples load: a reader who may only search (with `query` alone), and a
/// writer who may also open tickets. Nobody may delete.
pub(crate) const POLICY: &str = r#"{
  "mcp_servers": {
    "inhouse": {
      "url": "http://127.0.0.1:3000/mcp",
      "disallowed_tools": ["delete_everything"],
      "allowed_params": {"search_docs": ["query"]}
    }
  },
  "keys": [
    {"key": "sk-reader", "key_alias": "reader",
     "object_permission": {"mcp_servers": ["inhouse"], "mcp_tool_permissions": {"inhouse": ["search_docs"]}}},
    {"key": "sk-writer", "key_alias": "writer", "object_permission": {"mcp_servers": ["inhouse"]}}
  ]
}"#;

pub(crate) fn curl_lines(base: &str) -> String {
    let h = "-H 'content-type: application/json' -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2025-06-18'";
    format!(
        "Try (stateless server, so no session is needed):\n  \
         curl -s {h} -H 'x-litellm-api-key: sk-reader' {base} -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}}'\n  \
         curl -s {h} -H 'x-litellm-api-key: sk-reader' {base} -d '{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{{\"name\":\"search_docs\",\"arguments\":{{\"query\":\"vpn\"}}}}}}'\n  \
         curl -s {h} -H 'x-litellm-api-key: sk-reader' {base} -d '{{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{{\"name\":\"search_docs\",\"arguments\":{{\"query\":\"vpn\",\"limit\":5}}}}}}'\n  \
         curl -s {h} -H 'x-litellm-api-key: sk-writer' {base} -d '{{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{{\"name\":\"delete_everything\",\"arguments\":{{\"confirm\":true}}}}}}'\n  \
         curl -s -i {h} {base} -d '{{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/list\"}}'   # no key: 401"
    )
}
