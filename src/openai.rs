//! MCP tools ⇄ OpenAI function tools: the bridge an SDK uses to hand an MCP server's tools to an
//! OpenAI-style model and turn the model's tool calls back into MCP `tools/call` params.
//!
//! Pure functions over `serde_json::Value`; no I/O.

use serde_json::{Map, Value, json};

/// Why an OpenAI tool call could not be turned into MCP call params.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolCallError {
    /// The call has no `function.name` string.
    MissingName,
    /// `function.arguments` is not a JSON object (nor a string holding one).
    BadArguments(String),
}

impl std::fmt::Display for ToolCallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingName => f.write_str("the tool call has no function name"),
            Self::BadArguments(why) => {
                write!(f, "the tool call's arguments are not a JSON object: {why}")
            }
        }
    }
}

impl std::error::Error for ToolCallError {}

/// One MCP tool (as listed by `tools/list`) as an OpenAI function tool:
/// `{"type": "function", "function": {"name", "description", "parameters"}}`.
///
/// A missing or non-object `inputSchema` becomes an empty object schema, which OpenAI requires.
#[must_use]
pub fn to_openai_tool(tool: &Value) -> Value {
    let mut function = Map::new();
    function.insert(
        "name".into(),
        tool.get("name").cloned().unwrap_or(Value::Null),
    );
    if let Some(d) = tool.get("description").filter(|d| d.is_string()) {
        function.insert("description".into(), d.clone());
    }
    let parameters = match tool.get("inputSchema") {
        Some(Value::Object(schema)) => {
            let mut schema = schema.clone();
            schema.entry("type").or_insert_with(|| json!("object"));
            schema.entry("properties").or_insert_with(|| json!({}));
            Value::Object(schema)
        }
        _ => json!({"type": "object", "properties": {}}),
    };
    function.insert("parameters".into(), parameters);
    json!({"type": "function", "function": function})
}

/// Every tool of a `tools/list` result (the `result` object or the bare `tools` array).
#[must_use]
pub fn to_openai_tools(list: &Value) -> Vec<Value> {
    let tools = list.get("tools").unwrap_or(list);
    tools
        .as_array()
        .map(|t| t.iter().map(to_openai_tool).collect())
        .unwrap_or_default()
}

/// An OpenAI tool call (`{"id", "type": "function", "function": {"name", "arguments"}}`, where
/// `arguments` is usually a JSON string) as MCP `tools/call` params `{"name", "arguments"}`.
///
/// # Errors
///
/// [`ToolCallError`] when the name is missing or the arguments are not a JSON object.
pub fn to_mcp_call_params(call: &Value) -> Result<Value, ToolCallError> {
    let function = call.get("function").unwrap_or(call);
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or(ToolCallError::MissingName)?;
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            Ok(other) => return Err(ToolCallError::BadArguments(format!("got {other}"))),
            Err(e) => return Err(ToolCallError::BadArguments(e.to_string())),
        },
        Some(Value::Object(m)) => m.clone(),
        Some(other) => return Err(ToolCallError::BadArguments(format!("got {other}"))),
    };
    Ok(json!({"name": name, "arguments": arguments}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_convert_both_ways() {
        let list = json!({"tools": [
            {"name": "github-create_issue", "description": "Open an issue", "inputSchema": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}},
            {"name": "ping"}
        ]});
        let tools = to_openai_tools(&list);
        assert_eq!(
            tools[0],
            json!({"type": "function", "function": {"name": "github-create_issue", "description": "Open an issue",
            "parameters": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}}})
        );
        assert_eq!(
            tools[1]["function"]["parameters"],
            json!({"type": "object", "properties": {}})
        );
        let call = json!({"id": "call_1", "type": "function", "function": {"name": "github-create_issue", "arguments": "{\"title\":\"x\"}"}});
        assert_eq!(
            to_mcp_call_params(&call).unwrap(),
            json!({"name": "github-create_issue", "arguments": {"title": "x"}})
        );
        let empty = json!({"function": {"name": "ping", "arguments": ""}});
        assert_eq!(
            to_mcp_call_params(&empty).unwrap(),
            json!({"name": "ping", "arguments": {}})
        );
        assert_eq!(
            to_mcp_call_params(&json!({"function": {"arguments": "{}"}})),
            Err(ToolCallError::MissingName)
        );
        assert!(matches!(
            to_mcp_call_params(&json!({"function": {"name": "a", "arguments": "[1]"}})),
            Err(ToolCallError::BadArguments(_))
        ));
        assert!(matches!(
            to_mcp_call_params(&json!({"function": {"name": "a", "arguments": "{bad"}})),
            Err(ToolCallError::BadArguments(_))
        ));
    }
}
