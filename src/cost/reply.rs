//! What a reply to a tool call says: how the call ended, and the reply with its result replaced
//! by a hook.

use serde_json::{Value, json};

use super::event::Outcome;
use crate::protocol::{Era, RequestId};

/// How the JSON-RPC reply `reply` ended.
pub(crate) fn outcome_of(reply: &Value) -> Outcome {
    if let Some(error) = reply.get("error") {
        return Outcome::JsonRpcError {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
        };
    }
    match reply.get("result") {
        Some(r) if r.get("isError").and_then(Value::as_bool) == Some(true) => Outcome::ToolError,
        Some(_) => Outcome::Success,
        // Neither a result nor an error: not a reply anyone can count as done.
        None => Outcome::Unknown,
    }
}

/// The reply to `id` with its result replaced (the id kept) and shaped for the caller's `era`:
/// `read` if the reply was read whole already, else read from `text`, else a bare reply to
/// `id`.
pub(crate) fn replaced(
    read: Option<Value>,
    text: &[u8],
    id: &RequestId,
    era: Era,
    mut result: Value,
) -> String {
    if let Some(fields) = result.as_object_mut() {
        era.shape_result(fields);
    }
    let mut reply = read
        .or_else(|| serde_json::from_slice(text).ok())
        .unwrap_or_else(|| json!({"jsonrpc": "2.0", "id": id.to_value()}));
    if let Some(obj) = reply.as_object_mut() {
        obj.remove("error");
        obj.insert("result".to_owned(), result);
    }
    serde_json::to_string(&reply).expect("a Value always serialises")
}

/// How `bytes`, if it is the JSON-RPC reply to `id`, ended; the whole reply too when `full`
/// (only hooks that read replies need the tree: the rest is a lean read of `error.code` and
/// `result.isError`).
pub(crate) fn reply_to(
    bytes: &[u8],
    id: &RequestId,
    full: bool,
) -> Option<(Outcome, Option<Value>)> {
    if full {
        return match serde_json::from_slice::<Value>(bytes) {
            Ok(v) if v.get("id").is_some_and(|i| id.matches(i)) => Some((outcome_of(&v), Some(v))),
            _ => None,
        };
    }
    #[derive(serde::Deserialize)]
    struct Lean {
        id: Option<Value>,
        error: Option<LeanError>,
        result: Option<LeanResult>,
    }
    #[derive(serde::Deserialize)]
    struct LeanError {
        #[serde(default)]
        code: i64,
    }
    #[derive(serde::Deserialize)]
    struct LeanResult {
        #[serde(rename = "isError", default)]
        is_error: Option<bool>,
    }
    let lean = serde_json::from_slice::<Lean>(bytes).ok()?;
    if !lean.id.as_ref().is_some_and(|i| id.matches(i)) {
        return None;
    }
    let outcome = match lean {
        Lean { error: Some(e), .. } => Outcome::JsonRpcError { code: e.code },
        Lean {
            result: Some(r), ..
        } if r.is_error == Some(true) => Outcome::ToolError,
        Lean {
            result: Some(_), ..
        } => Outcome::Success,
        _ => Outcome::Unknown,
    };
    Some((outcome, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lean_read_of_a_reply_agrees_with_the_whole_read() {
        let id = RequestId::Number(7);
        let replies = [
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":true}}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":false}}"#,
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"no"}}"#,
            r#"{"jsonrpc":"2.0","id":7}"#,
        ];
        for reply in replies {
            let lean = reply_to(reply.as_bytes(), &id, false).expect("the reply to 7");
            let whole = reply_to(reply.as_bytes(), &id, true).expect("the reply to 7");
            assert_eq!(lean.0, whole.0, "{reply}");
            assert!(lean.1.is_none() && whole.1.is_some());
        }
        // Not the reply to 7: another id, a notification, not JSON.
        for other in [
            r#"{"jsonrpc":"2.0","id":8,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":"7","result":{}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
            "not json",
        ] {
            assert!(reply_to(other.as_bytes(), &id, false).is_none(), "{other}");
            assert!(reply_to(other.as_bytes(), &id, true).is_none(), "{other}");
        }
    }
}
