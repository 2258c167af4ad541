//! The lean, strict parse of one posted JSON-RPC message: one pass that reads only what a
//! decision needs (see [`McpRequest`]) and refuses anything ambiguous.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::era::Era;
use super::fields::{
    AnswersSeed, Filter, FilterSeed, KeysSeed, MaybeId, Meta, MetaSeed, OptString,
};
use super::request::{McpRequest, MessageKind, Method, ParseError, RequestId};
use super::strict::{Key, SeenKeys, StrictAny, duplicate};

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

/// One message as read, before its checks.
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
    meta: Meta,
    /// `params.inputResponses` or `params.requestState` (2026-07-28's rounds) was there.
    rounds: bool,
    request_id: Option<RequestId>,
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
        let cancels = match (&kind, &method) {
            (MessageKind::Notification, Some(Method::Other(m)))
                if &**m == "notifications/cancelled" =>
            {
                params.request_id
            }
            _ => None,
        };
        let per_request = params.rounds || params.meta.protocol_keys;
        let era = params
            .meta
            .version
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
            protocol_version: params.meta.version,
            traceparent: params.meta.traceparent,
            era,
            cancels,
            per_request,
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
                "_meta" => params.meta = map.next_value_seed(MetaSeed)?,
                "requestId" => params.request_id = map.next_value::<MaybeId>()?.0,
                // What a `subscriptions/listen` asks for: the URIs are checked like reads.
                "notifications" => params.subscriptions = Some(map.next_value_seed(FilterSeed)?),
                // The answers to an input-required round (2026-07-28): an object of answers
                // and an opaque string. Anything else is refused here, never passed on.
                "inputResponses" => {
                    map.next_value_seed(AnswersSeed)?;
                    params.rounds = true;
                }
                "requestState" => {
                    map.next_value::<Key<'de>>()?;
                    params.rounds = true;
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
    fn a_cancellation_names_its_request_and_a_round_or_protocol_key_marks_a_call_per_request() {
        let cancel = |id: &str| {
            ok(&format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id}}}}}"#
            ))
            .cancels
        };
        assert_eq!(cancel("7"), Some(RequestId::Number(7)));
        assert_eq!(cancel(r#""a-1""#), Some(RequestId::String("a-1".into())));
        // Not an id: read (strictly) and named nowhere, the message still accepted.
        for other in [
            "null",
            "1.5",
            "true",
            r#"{"x":1}"#,
            "[1]",
            "18446744073709551615",
        ] {
            assert_eq!(cancel(other), None, "{other}");
        }
        err(br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":{"x":1,"x":2}}}"#);
        // Only a cancellation names one: another message's `requestId` is not read as one.
        let progress = ok(
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"requestId":7,"progressToken":1,"progress":1}}"#,
        );
        assert_eq!(progress.cancels, None);
        let call = |params: &str| {
            ok(&format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a"{params}}}}}"#
            ))
            .per_request
        };
        assert!(!call(""));
        assert!(!call(r#","_meta":{"progressToken":1,"example.com/x":2}"#));
        assert!(call(r#","inputResponses":{"a":{"action":"accept"}}"#));
        assert!(call(r#","requestState":"s""#));
        assert!(call(
            r#","_meta":{"io.modelcontextprotocol/logLevel":"info"}"#
        ));
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
