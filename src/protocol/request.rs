//! Lean, borrowed parse of one JSON-RPC message posted by an MCP client.
//!
//! Only what a policy decision needs is read: the message kind, the id, the method, the target
//! name (`params.name` or `params.uri`) and the top-level argument keys. Everything is checked
//! strictly so that what the layers decide on is exactly what the inner service will see:
//! duplicate keys at any level we read, a top-level array, a non-object `params` or `arguments`,
//! a non-string name and invalid UTF-8 are all errors, never guesses.

use std::fmt;
use std::sync::Arc;

use super::era::Era;
use super::raw::RawMessage;

/// A JSON-RPC request id as MCP allows it: a string or an integer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RequestId {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(Box<str>),
}

impl RequestId {
    /// The id as a `serde_json::Value`, for building replies.
    #[must_use]
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            Self::Number(n) => serde_json::Value::from(*n),
            Self::String(s) => serde_json::Value::from(&**s),
        }
    }

    /// Whether a JSON value (an `id` taken from a reply) is this id.
    #[must_use]
    pub fn matches(&self, value: &serde_json::Value) -> bool {
        match (self, value) {
            (Self::Number(n), serde_json::Value::Number(v)) => v.as_i64() == Some(*n),
            (Self::String(s), serde_json::Value::String(v)) => **s == **v,
            _ => false,
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// The MCP methods the layers act on; everything else is [`Method::Other`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `initialize`
    Initialize,
    /// `server/discover` (protocol 2026-07-28)
    Discover,
    /// `ping`
    Ping,
    /// `tools/list`
    ToolsList,
    /// `tools/call`
    ToolsCall,
    /// `prompts/list`
    PromptsList,
    /// `prompts/get`
    PromptsGet,
    /// `resources/list`
    ResourcesList,
    /// `resources/templates/list`
    ResourceTemplatesList,
    /// `resources/read`
    ResourcesRead,
    /// `resources/subscribe`
    ResourcesSubscribe,
    /// `resources/unsubscribe`
    ResourcesUnsubscribe,
    /// `completion/complete`
    CompletionComplete,
    /// `subscriptions/listen` (protocol 2026-07-28): a stream of the notifications a caller
    /// asks for; the resources it names are in [`McpRequest::subscriptions`].
    SubscriptionsListen,
    /// Any other method, notifications included.
    Other(Box<str>),
}

impl Method {
    /// Parses a method name.
    #[must_use]
    pub fn from_name(name: &str) -> Self {
        match name {
            "initialize" => Self::Initialize,
            "server/discover" => Self::Discover,
            "ping" => Self::Ping,
            "tools/list" => Self::ToolsList,
            "tools/call" => Self::ToolsCall,
            "prompts/list" => Self::PromptsList,
            "prompts/get" => Self::PromptsGet,
            "resources/list" => Self::ResourcesList,
            "resources/templates/list" => Self::ResourceTemplatesList,
            "resources/read" => Self::ResourcesRead,
            "resources/subscribe" => Self::ResourcesSubscribe,
            "resources/unsubscribe" => Self::ResourcesUnsubscribe,
            "completion/complete" => Self::CompletionComplete,
            "subscriptions/listen" => Self::SubscriptionsListen,
            other => Self::Other(other.into()),
        }
    }

    /// The method's wire name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Initialize => "initialize",
            Self::Discover => "server/discover",
            Self::Ping => "ping",
            Self::ToolsList => "tools/list",
            Self::ToolsCall => "tools/call",
            Self::PromptsList => "prompts/list",
            Self::PromptsGet => "prompts/get",
            Self::ResourcesList => "resources/list",
            Self::ResourceTemplatesList => "resources/templates/list",
            Self::ResourcesRead => "resources/read",
            Self::ResourcesSubscribe => "resources/subscribe",
            Self::ResourcesUnsubscribe => "resources/unsubscribe",
            Self::CompletionComplete => "completion/complete",
            Self::SubscriptionsListen => "subscriptions/listen",
            Self::Other(name) => name,
        }
    }

    /// Which `params` field names this method's target, as `Mcp-Name` carries it.
    pub(super) fn target_field(&self) -> Option<&'static str> {
        match self {
            Self::ToolsCall | Self::PromptsGet => Some("name"),
            Self::ResourcesRead | Self::ResourcesSubscribe | Self::ResourcesUnsubscribe => {
                Some("uri")
            }
            // The tasks extension (SEP-2663) names a task by its id.
            Self::Other(name)
                if matches!(&**name, "tasks/get" | "tasks/update" | "tasks/cancel") =>
            {
                Some("taskId")
            }
            _ => None,
        }
    }

    /// Whether the reply to this method is a list the layers filter per caller.
    #[must_use]
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            Self::ToolsList | Self::PromptsList | Self::ResourcesList | Self::ResourceTemplatesList
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of JSON-RPC message a client posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// A request: has `method` and `id`.
    Request,
    /// A notification: has `method`, no `id`.
    Notification,
    /// A response to a server-initiated request (sampling, elicitation, roots): `id` and
    /// `result` or `error`, no `method`.
    Response,
}

/// The parsed head of one posted JSON-RPC message: everything the layers decide on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpRequest {
    /// Request, notification or response.
    pub kind: MessageKind,
    /// The id, for requests and responses.
    pub id: Option<RequestId>,
    /// The method, for requests and notifications.
    pub method: Option<Method>,
    /// `params.name` for `tools/call` and `prompts/get`, `params.uri` for resource reads and
    /// subscriptions, `params.taskId` for `tasks/get`, `tasks/update` and `tasks/cancel`.
    pub target: Option<Arc<str>>,
    /// The top-level keys of `params.arguments` of a `tools/call`, in body order (shared: the
    /// cost event lists them without a copy).
    pub argument_keys: Arc<[Box<str>]>,
    /// Whether a `tools/call` carried `params.arguments` at all.
    pub has_arguments: bool,
    /// The resource URIs a `subscriptions/listen` asks to be told about
    /// (`params.notifications.resourceSubscriptions`), in body order; empty otherwise.
    pub subscriptions: Arc<[Arc<str>]>,
    /// The protocol version the body states in `params._meta` (protocol 2026-07-28 and later),
    /// exactly as sent.
    pub protocol_version: Option<Box<str>>,
    /// The protocol era this message speaks: what the body states, else (once
    /// [`McpRequest::resolve_era`] has seen the headers) what the `MCP-Protocol-Version`
    /// header states, else the oldest handshake revision.
    /// Every answer the layers build for it is shaped for this era.
    pub era: Era,
}

impl McpRequest {
    /// The method, if this is a request with that method.
    #[must_use]
    pub fn request_method(&self) -> Option<&Method> {
        match self.kind {
            MessageKind::Request => self.method.as_ref(),
            _ => None,
        }
    }

    /// Settles [`McpRequest::era`] for a message that states no version in its body: the
    /// era of its `MCP-Protocol-Version` header, if it has one.
    pub fn resolve_era(&mut self, headers: &http::HeaderMap) {
        if self.protocol_version.is_none() {
            self.era = Era::from_header(headers).unwrap_or_default();
        }
    }

    /// The tool name of a `tools/call` request.
    #[must_use]
    pub fn tool_name(&self) -> Option<&str> {
        match self.request_method() {
            Some(Method::ToolsCall) => self.target.as_deref(),
            _ => None,
        }
    }
}

/// Why a posted body was refused before any policy ran.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The body is not UTF-8.
    InvalidUtf8,
    /// A JSON array: batches were removed from MCP.
    Batch,
    /// Not JSON, not an object, a duplicate key, or a field of the wrong type.
    Invalid(String),
    /// `Mcp-Method` or `Mcp-Name` disagrees with the body, or is malformed.
    HeaderMismatch(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUtf8 => f.write_str("request body is not valid UTF-8"),
            Self::Batch => f.write_str("JSON-RPC batches are not supported"),
            Self::Invalid(why) => write!(f, "invalid JSON-RPC message: {why}"),
            Self::HeaderMismatch(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses one posted JSON-RPC message.
///
/// # Errors
///
/// Fails closed on anything that is not one well-formed JSON-RPC object: see [`ParseError`].
pub fn parse_request(body: &[u8]) -> Result<McpRequest, ParseError> {
    let text = std::str::from_utf8(body).map_err(|_| ParseError::InvalidUtf8)?;
    if text.trim_start().starts_with('[') {
        return Err(ParseError::Batch);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let raw =
        RawMessage::deserialize_from(&mut de).map_err(|e| ParseError::Invalid(e.to_string()))?;
    de.end().map_err(|e| ParseError::Invalid(e.to_string()))?;
    raw.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> McpRequest {
        parse_request(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn err(body: &[u8]) -> ParseError {
        parse_request(body).expect_err(&String::from_utf8_lossy(body))
    }

    #[test]
    fn input_required_answers_must_have_their_types() {
        let call = |extra: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t"{extra}}}}}"#
            )
        };
        ok(&call(
            r#","inputResponses":{"a":{"action":"accept"}},"requestState":"s""#,
        ));
        for bad in [
            r#","inputResponses":3"#,
            r#","inputResponses":null"#,
            r#","inputResponses":[]"#,
            r#","requestState":{}"#,
            r#","inputResponses":{"a":{},"a":{}}"#,
            r#","inputResponses":{"a":5}"#,
        ] {
            assert!(
                matches!(err(call(bad).as_bytes()), ParseError::Invalid(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_listen_names_its_resources_and_nothing_else_is_guessed() {
        let listen = |notifications: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{{"notifications":{notifications}}}}}"#
            )
        };
        let head = ok(&listen(
            r#"{"toolsListChanged":true,"resourceSubscriptions":["a://1","b://2"]}"#,
        ));
        assert_eq!(head.method, Some(Method::SubscriptionsListen));
        let uris: Vec<&str> = head.subscriptions.iter().map(|u| &**u).collect();
        assert_eq!(uris, ["a://1", "b://2"]);
        assert!(
            ok(&listen(r#"{"promptsListChanged":true}"#))
                .subscriptions
                .is_empty()
        );
        for bad in [
            "3",
            "[]",
            "null",
            r#"{"resourceSubscriptions":"a://1"}"#,
            r#"{"resourceSubscriptions":["a://1",2]}"#,
            r#"{"resourceSubscriptions":[{"uri":"a://1"}]}"#,
            r#"{"resourceSubscriptions":[],"resourceSubscriptions":["a://1"]}"#,
        ] {
            assert!(
                matches!(err(listen(bad).as_bytes()), ParseError::Invalid(_)),
                "{bad}"
            );
        }
        assert!(matches!(
            err(br#"{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{}}"#),
            ParseError::Invalid(_)
        ));
        // Another method's `params.notifications` is not read as a filter.
        let other =
            ok(r#"{"jsonrpc":"2.0","id":1,"method":"x/y","params":{"notifications":[1,2]}}"#);
        assert!(other.subscriptions.is_empty());
        // Duplicate keys stay errors at any depth, whatever the method.
        assert!(matches!(
            err(br#"{"jsonrpc":"2.0","id":1,"method":"x/y","params":{"notifications":{"a":1,"a":2}}}"#),
            ParseError::Invalid(_)
        ));
    }

    #[test]
    fn parses_a_tool_call() {
        let r = ok(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"gh-create_issue","arguments":{"title":"x","body":{"a":1}}}}"#,
        );
        assert_eq!(r.kind, MessageKind::Request);
        assert_eq!(r.id, Some(RequestId::Number(7)));
        assert_eq!(r.method, Some(Method::ToolsCall));
        assert_eq!(r.tool_name(), Some("gh-create_issue"));
        assert_eq!(*r.argument_keys, ["title", "body"].map(Box::<str>::from));
        assert!(r.has_arguments);
    }

    #[test]
    fn classifies_notifications_and_responses() {
        let n = ok(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(n.kind, MessageKind::Notification);
        let r = ok(r#"{"jsonrpc":"2.0","id":"s-1","result":{"action":"accept"}}"#);
        assert_eq!(r.kind, MessageKind::Response);
        assert_eq!(r.id, Some(RequestId::String("s-1".into())));
        let e = ok(r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no"}}"#);
        assert_eq!(e.kind, MessageKind::Response);
    }

    #[test]
    fn many_keys_are_checked_in_linear_time_and_exactly() {
        let keys: Vec<String> = (0..5000).map(|i| format!("\"k{i}\":{i}")).collect();
        let body = |extra: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{{{}{extra}}},"_meta":{{{}{extra}}}}}}}"#,
                keys.join(","),
                keys.join(",")
            )
        };
        let r = ok(&body(""));
        assert_eq!(r.argument_keys.len(), 5000);
        assert_eq!(&*r.argument_keys[4999], "k4999");
        // In order across the keys kept in place and those after them.
        assert!(
            r.argument_keys[..10]
                .iter()
                .enumerate()
                .all(|(i, k)| **k == format!("k{i}"))
        );
        err(body(r#","k17":0"#).as_bytes());
        err(body(r#","k7":0"#).as_bytes());
        err(body(r#","k\u0031":0"#).as_bytes());
    }

    #[test]
    fn escaped_names_are_unescaped_as_the_server_sees_them() {
        let r = ok(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"del\u0065te","arguments":{"\u0061":1}}}"#,
        );
        assert_eq!(r.tool_name(), Some("delete"));
        assert_eq!(*r.argument_keys, [Box::<str>::from("a")]);
    }

    #[test]
    fn fails_closed_on_ambiguity() {
        let cases: &[&[u8]] = &[
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping","params":{"name":"a"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"\u0078":2}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["a"]}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"a"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":null}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":"x"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            br#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"a"}}"#,
            br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            br#"{"id":1,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"} {"x":1}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}x"#,
            br#""tools/call""#,
            br#"null"#,
            b"",
            // duplicates at any depth, and requests without an id
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"p":1,"p":2}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"q":[{"k":1,"k":2}]}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","x":{"y":{"z":1,"\u007a":2}}}"#,
            br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}}"#,
            br#"{"jsonrpc":"2.0","method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":1}}"#,
            // Found by fuzzing: values a JSON parser rejects must not pass our skip.
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1e99999}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"x":"\ud800"}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","x":[1e400]}"#,
        ];
        for body in cases {
            assert!(
                matches!(err(body), ParseError::Invalid(_)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            err(br#" [{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            ParseError::Batch
        );
        assert_eq!(
            err(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\xff\"}}"),
            ParseError::InvalidUtf8
        );
    }
}
