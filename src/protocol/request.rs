//! Lean, borrowed parse of one JSON-RPC message posted by an MCP client.
//!
//! Only what a policy decision needs is read: the message kind, the id, the method, the target
//! name (`params.name` or `params.uri`) and the top-level argument keys. Everything is checked
//! strictly so that what the layers decide on is exactly what the inner service will see:
//! duplicate keys at any level we read, a top-level array, a non-object `params` or `arguments`,
//! a non-string name and invalid UTF-8 are all errors, never guesses.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::era::Era;
use super::fields::{AnswersSeed, Filter, FilterSeed, KeysSeed, MetaSeed, OptString};
use super::strict::{Key, SeenKeys, StrictAny, duplicate};

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
    fn target_field(&self) -> Option<&'static str> {
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

/// Checks the `Mcp-Method` and `Mcp-Name` headers (protocol 2026-07-28) against the body.
///
/// Absent headers are fine (older protocol versions do not send them); present ones must agree
/// with the body exactly, after `=?base64?…?=` decoding.
///
/// # Errors
///
/// [`ParseError::HeaderMismatch`] when a header is repeated, undecodable or disagrees.
pub fn check_routing_headers(
    headers: &http::HeaderMap,
    request: &McpRequest,
) -> Result<(), ParseError> {
    if let Some(value) = single_header(headers, "mcp-method")? {
        let body = request.method.as_ref().map(Method::as_str);
        if body != Some(value.as_ref()) {
            return Err(ParseError::HeaderMismatch(
                "Mcp-Method header does not match the request body".into(),
            ));
        }
    }
    if let Some(value) = single_header(headers, "mcp-name")? {
        let expected = request
            .method
            .as_ref()
            .and_then(Method::target_field)
            .and(request.target.as_deref());
        if expected != Some(value.as_ref()) {
            return Err(ParseError::HeaderMismatch(
                "Mcp-Name header does not match the request body".into(),
            ));
        }
    }
    if let Some(stated) = request.protocol_version.as_deref() {
        match single_header(headers, "mcp-protocol-version")? {
            Some(header) if header == stated => {}
            Some(_) => {
                return Err(ParseError::HeaderMismatch(
                    "MCP-Protocol-Version header does not match the protocol version in _meta"
                        .into(),
                ));
            }
            None => {
                return Err(ParseError::HeaderMismatch(
                    "a protocol version in _meta needs the MCP-Protocol-Version header".into(),
                ));
            }
        }
    }
    Ok(())
}

fn single_header<'h>(
    headers: &'h http::HeaderMap,
    name: &str,
) -> Result<Option<Cow<'h, str>>, ParseError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ParseError::HeaderMismatch(format!(
            "repeated {name} header"
        )));
    }
    let text = first
        .to_str()
        .map_err(|_| ParseError::HeaderMismatch(format!("{name} header is not visible ASCII")))?;
    decode_header_value(text)
        .map(Some)
        .ok_or_else(|| ParseError::HeaderMismatch(format!("{name} header is not valid base64")))
}

/// Decodes a header value that may be wrapped as `=?base64?<standard base64>?=`.
#[must_use]
pub fn decode_header_value(value: &str) -> Option<Cow<'_, str>> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(inner) => String::from_utf8(base64_decode(inner)?)
            .ok()
            .map(Cow::Owned),
        None => Some(Cow::Borrowed(value)),
    }
}

fn base64_decode(input: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = input.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let chunks = bytes.len() / 4;
    for (i, chunk) in bytes.chunks_exact(4).enumerate() {
        let last = i + 1 == chunks;
        let pad = if last {
            chunk.iter().rev().take_while(|&&c| c == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return None;
        }
        let mut acc = 0u32;
        for &c in &chunk[..4 - pad] {
            acc = (acc << 6) | sextet(c)?;
        }
        acc <<= 6 * pad as u32;
        let triple = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&triple[..3 - pad]);
    }
    Some(out)
}

// ---- strict visitors -------------------------------------------------------------------------

#[derive(Default)]
struct RawMessage<'a> {
    jsonrpc: Option<Cow<'a, str>>,
    id: Option<RawId>,
    method: Option<Cow<'a, str>>,
    params: Option<RawParams>,
    has_params: bool,
    has_result: bool,
    has_error: bool,
}

#[derive(Debug)]
enum RawId {
    Id(RequestId),
    Null,
}

#[derive(Default)]
struct RawParams {
    name: Option<Arc<str>>,
    uri: Option<Arc<str>>,
    task_id: Option<Arc<str>>,
    arguments: Option<Arc<[Box<str>]>>,
    subscriptions: Option<Filter>,
    protocol_version: Option<Box<str>>,
}

impl<'a> RawMessage<'a> {
    fn deserialize_from<D: Deserializer<'a>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_map(MessageVisitor)
    }

    fn finish(self) -> Result<McpRequest, ParseError> {
        let invalid = |s: &str| Err(ParseError::Invalid(s.to_owned()));
        if self.jsonrpc.as_deref() != Some("2.0") {
            return invalid("\"jsonrpc\" must be \"2.0\"");
        }
        let id = match self.id {
            Some(RawId::Id(id)) => Some(id),
            Some(RawId::Null) => return invalid("\"id\" must be a string or an integer"),
            None => None,
        };
        let kind = match (&self.method, &id) {
            (Some(_), Some(_)) => MessageKind::Request,
            // MCP's client notifications are all `notifications/…`: a request method without
            // an id is neither a request we can check nor a notification a server expects.
            (Some(m), None) if m.starts_with("notifications/") => MessageKind::Notification,
            (Some(_), None) => return invalid("a request needs an \"id\""),
            (None, Some(_)) if self.has_result != self.has_error => MessageKind::Response,
            _ => return invalid("not a request, notification or response"),
        };
        if kind != MessageKind::Response && (self.has_result || self.has_error) {
            return invalid("a request cannot carry \"result\" or \"error\"");
        }
        let method = self.method.as_deref().map(Method::from_name);
        let params = self.params.unwrap_or_default();
        let target = match method.as_ref().and_then(Method::target_field) {
            Some("name") => params.name,
            Some("taskId") => params.task_id,
            Some(_) => params.uri,
            None => None,
        };
        let calls_tool = kind == MessageKind::Request && method == Some(Method::ToolsCall);
        if calls_tool && target.is_none() {
            return invalid("tools/call needs a string \"params.name\"");
        }
        if kind == MessageKind::Request
            && matches!(method, Some(Method::PromptsGet))
            && target.is_none()
        {
            return invalid("prompts/get needs a string \"params.name\"");
        }
        if kind == MessageKind::Request
            && matches!(method, Some(Method::ResourcesRead))
            && target.is_none()
        {
            return invalid("resources/read needs a string \"params.uri\"");
        }
        let _ = self.has_params;
        let subscriptions = match (kind, &method, params.subscriptions) {
            (MessageKind::Request, Some(Method::SubscriptionsListen), filter) => match filter {
                Some(Filter::Uris(uris)) => uris.unwrap_or_default().into(),
                Some(Filter::Malformed) => {
                    return invalid(
                        "subscriptions/listen needs \"params.notifications\" as an object whose \
                         \"resourceSubscriptions\" is an array of strings",
                    );
                }
                None => {
                    return invalid("subscriptions/listen needs \"params.notifications\"");
                }
            },
            _ => Arc::default(),
        };
        let has_arguments = params.arguments.is_some();
        let era = params
            .protocol_version
            .as_deref()
            .and_then(Era::from_version)
            .unwrap_or_default();
        Ok(McpRequest {
            kind,
            id,
            method,
            target,
            argument_keys: if calls_tool {
                params.arguments.unwrap_or_default()
            } else {
                Arc::default()
            },
            has_arguments: calls_tool && has_arguments,
            subscriptions,
            protocol_version: params.protocol_version,
            era,
        })
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = RawMessage<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut msg = RawMessage::default();
        let mut seen = SeenKeys::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if !seen.insert(key.clone()) {
                return Err(duplicate(&key));
            }
            match &*key {
                "jsonrpc" => msg.jsonrpc = Some(map.next_value::<Key<'de>>()?.0),
                "id" => msg.id = Some(map.next_value_seed(IdSeed)?),
                "method" => msg.method = Some(map.next_value::<Key<'de>>()?.0),
                "params" => {
                    msg.has_params = true;
                    msg.params = Some(map.next_value_seed(ParamsSeed)?);
                }
                "result" => {
                    msg.has_result = true;
                    map.next_value::<StrictAny>()?;
                }
                "error" => {
                    msg.has_error = true;
                    map.next_value::<StrictAny>()?;
                }
                _ => {
                    map.next_value::<StrictAny>()?;
                }
            }
        }
        Ok(msg)
    }
}

struct IdSeed;

impl<'de> DeserializeSeed<'de> for IdSeed {
    type Value = RawId;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<RawId, D::Error> {
        de.deserialize_any(IdVisitor)
    }
}

struct IdVisitor;

impl<'de> Visitor<'de> for IdVisitor {
    type Value = RawId;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or integer id")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawId, E> {
        Ok(RawId::Id(RequestId::Number(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawId, E> {
        i64::try_from(v)
            .map(|n| RawId::Id(RequestId::Number(n)))
            .map_err(|_| E::custom("id out of range"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawId, E> {
        Ok(RawId::Id(RequestId::String(v.into())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawId, E> {
        Ok(RawId::Null)
    }
}

struct ParamsSeed;

impl<'de> DeserializeSeed<'de> for ParamsSeed {
    type Value = RawParams;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<RawParams, D::Error> {
        de.deserialize_map(ParamsVisitor)
    }
}

struct ParamsVisitor;

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = RawParams;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"params\" as an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawParams, A::Error> {
        let mut params = RawParams::default();
        let mut seen = SeenKeys::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if !seen.insert(key.clone()) {
                return Err(duplicate(&key));
            }
            match &*key {
                "name" => params.name = Some(map.next_value::<OptString>()?.0),
                "uri" => params.uri = Some(map.next_value::<OptString>()?.0),
                "taskId" => params.task_id = Some(map.next_value::<OptString>()?.0),
                "arguments" => params.arguments = Some(map.next_value_seed(KeysSeed)?),
                "_meta" => params.protocol_version = map.next_value_seed(MetaSeed)?,
                // What a `subscriptions/listen` asks for: the URIs are checked like reads.
                "notifications" => params.subscriptions = Some(map.next_value_seed(FilterSeed)?),
                // The answers to an input-required round (2026-07-28): an object of answers
                // and an opaque string. Anything else is refused here, never passed on.
                "inputResponses" => map.next_value_seed(AnswersSeed)?,
                "requestState" => {
                    map.next_value::<Key<'de>>()?;
                }
                _ => {
                    map.next_value::<StrictAny>()?;
                }
            }
        }
        Ok(params)
    }
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

    #[test]
    fn routing_headers_must_agree() {
        let r = ok(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#);
        let mut h = http::HeaderMap::new();
        assert!(check_routing_headers(&h, &r).is_ok());
        h.insert("mcp-method", "tools/call".parse().unwrap());
        h.insert("mcp-name", "echo".parse().unwrap());
        assert!(check_routing_headers(&h, &r).is_ok());
        h.insert("mcp-name", "=?base64?ZWNobw==?=".parse().unwrap());
        assert!(check_routing_headers(&h, &r).is_ok());
        h.insert("mcp-name", "=?base64?ZGVsZXRl?=".parse().unwrap());
        assert!(check_routing_headers(&h, &r).is_err());
        h.insert("mcp-name", "=?base64?!!?=".parse().unwrap());
        assert!(check_routing_headers(&h, &r).is_err());
        h.insert("mcp-name", "echo".parse().unwrap());
        h.insert("mcp-method", "tools/list".parse().unwrap());
        assert!(check_routing_headers(&h, &r).is_err());
        h.insert("mcp-method", "tools/call".parse().unwrap());
        h.append("mcp-name", "echo".parse().unwrap());
        assert!(check_routing_headers(&h, &r).is_err(), "repeated header");
        let list = ok(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        let mut h = http::HeaderMap::new();
        h.insert("mcp-name", "echo".parse().unwrap());
        assert!(
            check_routing_headers(&h, &list).is_err(),
            "a name where the method has none"
        );
        // The tasks extension names a task by its id.
        for method in ["tasks/get", "tasks/update", "tasks/cancel"] {
            let task = ok(&format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"taskId":"t-1"}}}}"#
            ));
            assert_eq!(task.target.as_deref(), Some("t-1"));
            let mut h = http::HeaderMap::new();
            h.insert("mcp-name", "t-1".parse().unwrap());
            assert!(check_routing_headers(&h, &task).is_ok(), "{method}");
            h.insert("mcp-name", "t-2".parse().unwrap());
            assert!(check_routing_headers(&h, &task).is_err(), "{method}");
        }
        let other = ok(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"taskId":"t-1"}}"#);
        assert_eq!(
            other.target, None,
            "a taskId counts only for the task methods"
        );
    }

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert!(base64_decode("Zm9").is_none());
        assert!(base64_decode("Z===").is_none());
        assert!(base64_decode("Zg==Zm9v").is_none());
    }
}
