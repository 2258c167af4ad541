//! Hands an MCP tool list to an OpenAI-style model and turns its tool call back into an MCP
//! `tools/call`: `cargo run --features openai --example openai_bridge`.

use mcp_gatekeeper::openai::{to_mcp_call_params, to_openai_tools};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // What `tools/list` returned through the gateway (already filtered for this caller).
    let listed = json!({"tools": [
        {"name": "github-create_issue", "description": "Open an issue",
         "inputSchema": {"type": "object", "properties": {"title": {"type": "string"}, "body": {"type": "string"}}, "required": ["title"]}},
        {"name": "wiki-read_wiki_contents", "description": "Read a wiki page",
         "inputSchema": {"type": "object", "properties": {"page": {"type": "string"}}}}
    ]});
    let tools = to_openai_tools(&listed);
    println!(
        "tools for the chat completion request:\n{}",
        serde_json::to_string_pretty(&tools)?
    );

    // What the model answered.
    let model_call = json!({"id": "call_abc", "type": "function",
        "function": {"name": "github-create_issue", "arguments": "{\"title\":\"Crash on start\"}"}});
    let params = to_mcp_call_params(&model_call)?;
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
    println!(
        "MCP request to send to the gateway:\n{}",
        serde_json::to_string_pretty(&request)?
    );
    Ok(())
}
