//! What a request to a 2026-07-28 upstream states for itself, posted by the gateway: that
//! protocol has no session, so its method and name travel in headers (`Mcp-Method`, `Mcp-Name`)
//! beside the client's `_meta` in the body, and a tool may ask for some of its arguments in
//! headers too (`x-mcp-header` in its input schema, `Mcp-Param-*`).
//!
//! The gateway posts a `tools/call` itself only for a tool it has seen listed on the session
//! with no argument headers in its schema and a name that travels as a plain header value; any
//! other call goes through rmcp's client, which writes those headers from the schemas it keeps.
//! Knowing a tool decides only the way a call takes, never whether it is made.

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock};

use http::{HeaderName, HeaderValue};
use serde_json::Value;

const METHOD: HeaderName = HeaderName::from_static("mcp-method");
const NAME: HeaderName = HeaderName::from_static("mcp-name");

/// Whether a header rmcp's client writes for one request only (its method, name, arguments).
pub(crate) fn is_per_request(name: &HeaderName) -> bool {
    let name = name.as_str();
    name == "mcp-method" || name == "mcp-name" || name.starts_with("mcp-param-")
}

/// The headers that state a request's method and, where it has one, its name.
pub(crate) fn stated(method: &str, name: Option<&str>) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(2);
    if let Ok(value) = HeaderValue::from_str(method) {
        out.push((METHOD, value));
    }
    if let Some(value) = name.filter(|n| travels_plain(n))
        && let Ok(value) = HeaderValue::from_str(value)
    {
        out.push((NAME, value));
    }
    out
}

/// Whether `value` is a header value as it is: printable ASCII, no space or tab at either end,
/// not what the protocol's Base64 form looks like.
fn travels_plain(value: &str) -> bool {
    let padded = value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']);
    let wrapped = value.starts_with("=?base64?") && value.ends_with("?=");
    value.bytes().all(|b| (0x20..0x7f).contains(&b)) && !padded && !wrapped
}

/// The tools of a 2026-07-28 session whose calls the gateway posts itself.
#[derive(Debug, Default)]
pub(crate) struct PlainTools {
    names: RwLock<HashSet<Box<str>>>,
}

impl PlainTools {
    /// Learns from a whole list the upstream gave now: its tools without argument headers.
    pub(crate) fn learn(&self, tools: &[rmcp::model::Tool]) {
        let plain = tools
            .iter()
            .filter(|t| travels_plain(&t.name) && !names_headers(&t.input_schema))
            .map(|t| Box::from(t.name.as_ref()))
            .collect();
        *self.names.write().unwrap_or_else(PoisonError::into_inner) = plain;
    }

    /// The upstream announced that its tools changed: none is known until the next list.
    pub(crate) fn forget(&self) {
        self.names
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Whether a call of `name` may be posted by the gateway.
    pub(crate) fn posts(&self, name: &str) -> bool {
        self.names
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name)
    }
}

/// Whether a schema holds `x-mcp-header` anywhere (where it is does not matter: rmcp's client
/// takes any such tool).
fn names_headers(schema: &serde_json::Map<String, Value>) -> bool {
    fn within(value: &Value) -> bool {
        match value {
            Value::Object(map) => names_headers(map),
            Value::Array(items) => items.iter().any(within),
            _ => false,
        }
    }
    schema
        .iter()
        .any(|(key, value)| key == "x-mcp-header" || within(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, schema: Value) -> rmcp::model::Tool {
        serde_json::from_value(json!({"name": name, "inputSchema": schema})).unwrap()
    }

    #[test]
    fn only_tools_without_argument_headers_and_with_plain_names_are_posted() {
        let plain = PlainTools::default();
        plain.learn(&[
            tool(
                "search",
                json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            ),
            tool(
                "deep",
                json!({"type": "object", "properties": {"a": {"type": "object",
                    "properties": {"b": {"type": "string", "x-mcp-header": "B"}}}}}),
            ),
            tool("héllo", json!({"type": "object"})),
            tool(" padded", json!({"type": "object"})),
            tool("=?base64?aGk=?=", json!({"type": "object"})),
        ]);
        assert!(plain.posts("search"));
        for name in ["deep", "héllo", " padded", "=?base64?aGk=?=", "unknown"] {
            assert!(!plain.posts(name), "{name}");
        }
        plain.forget();
        assert!(!plain.posts("search"));
    }

    #[test]
    fn a_request_states_its_method_and_plain_name() {
        let headers = stated("tools/call", Some("search"));
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0], (METHOD, HeaderValue::from_static("tools/call")));
        assert_eq!(headers[1], (NAME, HeaderValue::from_static("search")));
        assert_eq!(stated("notifications/cancelled", None).len(), 1);
        assert!(is_per_request(&HeaderName::from_static("mcp-param-region")));
        assert!(!is_per_request(&HeaderName::from_static(
            "mcp-protocol-version"
        )));
    }
}
