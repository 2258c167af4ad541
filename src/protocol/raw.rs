//! The strict visitors behind [`parse_request`](super::parse_request): one pass over the
//! message that reads only what a decision needs and refuses anything ambiguous.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::era::Era;
use super::fields::{AnswersSeed, Filter, FilterSeed, KeysSeed, MetaSeed, OptString};
use super::request::{McpRequest, MessageKind, Method, ParseError, RequestId};
use super::strict::{Key, SeenKeys, StrictAny, duplicate};

/// One message as read, before its checks.
#[derive(Default)]
pub(super) struct RawMessage<'a> {
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
    pub(super) fn deserialize_from<D: Deserializer<'a>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_map(MessageVisitor)
    }

    pub(super) fn finish(self) -> Result<McpRequest, ParseError> {
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
