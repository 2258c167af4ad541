//! JSON-RPC reply builders.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{Era, RequestId};

/// JSON-RPC error codes the layers use.
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The caller is not allowed (server-defined range).
    pub const FORBIDDEN: i64 = -32001;
    /// The request body is too large (server-defined range).
    pub const TOO_LARGE: i64 = -32002;
    /// The caller is not authenticated (server-defined range).
    pub const UNAUTHORIZED: i64 = -32003;
    /// A rate, parallel or budget limit refused the call (server-defined range).
    pub const LIMITED: i64 = -32004;
    /// A routing header (`Mcp-Method`, `Mcp-Name`, `MCP-Protocol-Version`) disagrees with the
    /// body (protocol 2026-07-28, SEP-2243).
    pub const HEADER_MISMATCH: i64 = -32020;
}

/// A JSON-RPC error object with an optional id (`null` when the request had none).
#[must_use]
pub fn error(id: Option<&RequestId>, code: i64, message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id.map_or(Value::Null, RequestId::to_value),
        "error": {"code": code, "message": message},
    })
}

/// A `tools/call` result that reports an error to the model: `isError: true` with the text,
/// shaped for the caller's protocol era.
#[must_use]
pub(crate) fn tool_error_result(id: &RequestId, text: &str, era: Era) -> Value {
    let mut result = serde_json::Map::with_capacity(3);
    result.insert(
        "content".to_owned(),
        json!([{"type": "text", "text": text}]),
    );
    result.insert("isError".to_owned(), Value::Bool(true));
    era.shape_result(&mut result);
    json!({"jsonrpc": "2.0", "id": id.to_value(), "result": result})
}

/// Serialises a JSON value.
#[must_use]
pub fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("a Value always serialises"))
}
