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
    pub(crate) fn to_value(&self) -> serde_json::Value {
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
    pub(crate) fn from_name(name: &str) -> Self {
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
    pub(crate) fn is_list(&self) -> bool {
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
    /// The request a `notifications/cancelled` names (`params.requestId`).
    pub(crate) cancels: Option<RequestId>,
    /// `params._meta.traceparent`: the caller's W3C trace context, exactly as sent.
    pub(crate) traceparent: Option<Box<str>>,
    /// Whether `params` carries what only a caller on 2026-07-28 sends: the answers of a round
    /// (`inputResponses`, `requestState`) or the protocol's own keys in `_meta`.
    pub(crate) per_request: bool,
}

impl McpRequest {
    /// The method, if this is a request with that method.
    #[must_use]
    pub(crate) fn request_method(&self) -> Option<&Method> {
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
    #[cfg(any(test, feature = "gateway"))]
    #[must_use]
    pub(crate) fn tool_name(&self) -> Option<&str> {
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
