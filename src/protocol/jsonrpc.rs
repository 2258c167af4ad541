//! JSON-RPC reply builders.

use bytes::Bytes;
use serde_json::{Value, json};

use super::RequestId;

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

/// A `tools/call` result that reports an error to the model: `isError: true` with the text.
#[must_use]
pub fn tool_error_result(id: &RequestId, text: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id.to_value(),
        "result": {"content": [{"type": "text", "text": text}], "isError": true},
    })
}

/// Serialises a JSON value.
#[must_use]
pub fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("a Value always serialises"))
}
