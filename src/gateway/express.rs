//! The express path: a `tools/call` on a stateless endpoint, from a caller of a protocol with
//! the initialize handshake, to a streamable HTTP upstream, without rmcp's server side.
//!
//! rmcp's server decodes every request through `ClientRequest` (an untagged enum: serde buffers
//! the message and tries each variant), starts a one-shot service with a task of its own for
//! it, and encodes the reply through `ServerJsonRpcMessage`; with the reply decoding of its
//! client, that was most of what the gateway spent on a call. A `tools/call` needs none of it:
//! the layers have parsed and allowed the request, so the express path decodes only its
//! parameters, posts them on the caller's pooled upstream session (see `direct`) and writes
//! the answer itself. Whatever it is not sure of goes to rmcp unchanged, before anything was
//! sent upstream: another method, a session, a protocol or `Host` rmcp would judge, a name
//! that does not route, an upstream of another transport, a session not recorded yet.
//!
//! Like rmcp in stateless mode, it answers in JSON when the answer comes first (with
//! `json_response`) and otherwise streams: the upstream's progress (when asked for) and log
//! messages are passed on as they come, then the answer. The upstream's requests of its client
//! cannot reach a stateless caller, whose answer would have no session to come back on: a
//! `ping` is answered, anything else refused at once, where rmcp's stateless server would let
//! the upstream wait for its timeout.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use rmcp::model::{CallToolRequestParams, CallToolResult, ErrorData, ProtocolVersion};
use rmcp::service::ServiceError;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::direct::{Event, Exchange};
use super::handler::{forward_meta, upstream_error};
use super::pool::{Caller, Failure};
use super::upstream::UpstreamTransport;
use super::{Gateway, Shared};
use crate::engine::NameKind;
use crate::protocol::sse;
use crate::protocol::{McpRequest, MessageKind, Method};

pub(crate) type McpResponse = Response<BoxBody<Bytes, Infallible>>;

/// What the express path needs of the endpoint's settings.
#[derive(Debug)]
pub(crate) struct Express {
    /// Normalised `(host, port)` pairs; empty allows every host, as with rmcp.
    allowed_hosts: Vec<(String, Option<u16>)>,
    /// Whether an `Origin` header needs rmcp's judgement.
    checks_origin: bool,
    json_response: bool,
    max_body: usize,
}

impl Express {
    /// The express path for an endpoint with `config`, if the endpoint is stateless.
    pub(crate) fn for_config(config: &StreamableHttpServerConfig) -> Option<Self> {
        if config.legacy_session_mode || config.stateless_protocol_metadata_required {
            return None;
        }
        Some(Self {
            allowed_hosts: config
                .allowed_hosts
                .iter()
                .filter_map(|h| allowed_authority(h))
                .collect(),
            // rmcp keeps whether it checks an empty allow-list to itself: any `Origin` is its.
            checks_origin: true,
            json_response: config.json_response,
            max_body: config.max_request_body_bytes,
        })
    }

    /// Whether `parts` (already through the layers) is a request the express path can take;
    /// the body is judged after.
    pub(crate) fn takes<B>(&self, request: &Request<B>) -> bool {
        let head = request.extensions().get::<McpRequest>();
        let headers = request.headers();
        request.method() == http::Method::POST
            && head.is_some_and(|h| {
                h.kind == MessageKind::Request
                    && h.method == Some(Method::ToolsCall)
                    && h.id.is_some()
            })
            && handshake_protocol(headers)
            && !headers.contains_key("mcp-method")
            && !headers.contains_key("mcp-name")
            && !(self.checks_origin && headers.contains_key(header::ORIGIN))
            && self.host_allowed(headers, request.uri())
            && media_types_fit(headers)
    }

    fn host_allowed(&self, headers: &HeaderMap, uri: &http::Uri) -> bool {
        let authority = match headers.get(header::HOST) {
            Some(h) => match h
                .to_str()
                .ok()
                .and_then(|h| http::uri::Authority::try_from(h).ok())
            {
                Some(a) => a,
                None => return false, // rmcp answers 400
            },
            None => match uri.authority() {
                Some(a) => a.clone(),
                None => return false,
            },
        };
        if self.allowed_hosts.is_empty() {
            return true;
        }
        let host = normalise_host(authority.host());
        let port = authority.port_u16();
        self.allowed_hosts
            .iter()
            .any(|(h, p)| *h == host && p.is_none_or(|p| Some(p) == port))
    }
}

fn normalise_host(host: &str) -> String {
    host.trim_matches('[')
        .trim_matches(']')
        .to_ascii_lowercase()
}

/// An entry of `allowed_hosts` as rmcp reads it: an authority, or else a bare host.
fn allowed_authority(allowed: &str) -> Option<(String, Option<u16>)> {
    let allowed = allowed.trim();
    if allowed.is_empty() {
        return None;
    }
    Some(match http::uri::Authority::try_from(allowed) {
        Ok(a) => (normalise_host(a.host()), a.port_u16()),
        Err(_) => (normalise_host(allowed), None),
    })
}

/// A known protocol version from before 2026-07-28 in `MCP-Protocol-Version`.
fn handshake_protocol(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all("mcp-protocol-version").iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return false;
    };
    v.to_str().is_ok_and(|v| {
        v < ProtocolVersion::V_2026_07_28.as_str()
            && ProtocolVersion::KNOWN_VERSIONS
                .iter()
                .any(|k| k.as_str() == v)
    })
}

/// Accepts JSON and event streams, and sends JSON (rmcp answers anything else with 406/415).
fn media_types_fit(headers: &HeaderMap) -> bool {
    let essence = |v: &str| {
        v.split_once(';')
            .map_or(v, |(e, _)| e)
            .trim()
            .to_ascii_lowercase()
    };
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(header::ACCEPT) {
        for item in value.to_str().unwrap_or_default().split(',') {
            match essence(item).as_str() {
                "application/json" => json = true,
                "text/event-stream" => sse = true,
                _ => {}
            }
        }
    }
    json && sse
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| essence(v) == "application/json")
}

/// The whole body, if it is readable (else 400) and at most `max` bytes (else 413); the layers
/// have read it already, so in practice this takes over their buffer without a copy.
async fn collect<B>(body: B, max: usize) -> Result<Bytes, StatusCode>
where
    B: http_body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut more: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| StatusCode::BAD_REQUEST)?.into_data() else {
            continue;
        };
        match &first {
            None => first = Some(data),
            Some(f) => {
                if more.is_empty() {
                    more.extend_from_slice(f);
                }
                more.extend_from_slice(&data);
            }
        }
        if first.as_ref().map_or(0, Bytes::len).max(more.len()) > max {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
    }
    Ok(if more.is_empty() {
        first.unwrap_or_default()
    } else {
        Bytes::from(more)
    })
}

/// The parts of the posted message the express path reads.
#[derive(serde::Deserialize)]
struct Envelope {
    id: Box<RawValue>,
    params: CallToolRequestParams,
}

/// What the express path did with a request.
pub(crate) enum Taken {
    /// Answered it.
    Answered(McpResponse),
    /// Gave it back untouched, for rmcp.
    Back(Request<Full<Bytes>>),
}

/// How a call started: answered at once, or streaming from this event on.
enum Started {
    Answer(CallToolResult),
    Stream(Exchange, Bytes),
}

/// What to do with something the upstream sent on a call's stream besides the answer.
enum Pass {
    /// Pass it to the caller, as this event.
    Forward(Bytes),
    /// Answer the upstream with this.
    Answer(Value),
    Drop,
}

fn pass(message: &Value, progress: bool) -> Pass {
    let method = message.get("method").and_then(Value::as_str);
    // Passed on as parsed, not as sent: what the caller reads is what the gateway read.
    let event = || sse::message_event(&message.to_string());
    match (method, message.get("id")) {
        (Some("notifications/progress"), None) if progress => Pass::Forward(event()),
        (Some("notifications/message"), None) => Pass::Forward(event()),
        (Some("ping"), Some(id)) => Pass::Answer(json!({"jsonrpc": "2.0", "id": id, "result": {}})),
        (Some(_), Some(id)) => Pass::Answer(json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": -32601,
            "message": "the gateway cannot pass this request to its caller on a stateless endpoint"
        }})),
        _ => Pass::Drop,
    }
}

/// A JSON-RPC reply to the caller's request `id`.
fn reply_bytes(id: &RawValue, answer: Result<&CallToolResult, &ErrorData>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Reply<'a> {
        jsonrpc: &'static str,
        id: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<&'a CallToolResult>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a ErrorData>,
    }
    serde_json::to_vec(&Reply {
        jsonrpc: "2.0",
        id,
        result: answer.ok(),
        error: answer.err(),
    })
    .unwrap_or_default()
}

fn respond(json_response: bool, body: Vec<u8>) -> McpResponse {
    if json_response {
        let mut r = Response::new(BoxBody::new(Full::new(Bytes::from(body))));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    } else {
        let text = String::from_utf8(body).unwrap_or_default();
        stream_response(BoxBody::new(Full::new(sse::message_event(&text))))
    }
}

fn stream_response(body: BoxBody<Bytes, Infallible>) -> McpResponse {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

impl Gateway {
    /// Takes the `tools/call` of `parts` and `body` on the express path, or gives them back
    /// untouched (nothing was sent upstream) for rmcp.
    pub(crate) async fn express<B>(
        &self,
        express: &Express,
        parts: http::request::Parts,
        body: B,
    ) -> Taken
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
    {
        let bytes = match collect(body, express.max_body).await {
            Ok(b) => b,
            Err(status) => {
                let mut r = Response::new(BoxBody::new(Full::new(Bytes::from_static(
                    if status == StatusCode::PAYLOAD_TOO_LARGE {
                        b"Payload Too Large: the request body is over the limit"
                    } else {
                        b"Bad Request: the request body could not be read"
                    },
                ))));
                *r.status_mut() = status;
                return Taken::Answered(r);
            }
        };
        let back = |parts, bytes| Taken::Back(Request::from_parts(parts, Full::new(bytes)));
        let Ok(Envelope { id, params }) = serde_json::from_slice::<Envelope>(&bytes) else {
            return back(parts, bytes);
        };
        // Per-request protocol keys and the rounds of 2026-07-28 are rmcp's to judge.
        let per_request = params.meta.as_ref().is_some_and(|m| {
            m.0.0
                .keys()
                .any(|k| k.starts_with("io.modelcontextprotocol/"))
        });
        if per_request || params.input_responses.is_some() || params.request_state.is_some() {
            return back(parts, bytes);
        }
        let caller = Caller::from_parts(&parts, false);
        let handler = self.handler();
        let Ok((server, bare)) = handler.route_for(&caller, NameKind::Tool, &params.name) else {
            return back(parts, bytes);
        };
        let bare = bare.to_owned();
        let Some(spec) = self.shared.upstreams.get(&server) else {
            return back(parts, bytes);
        };
        if !matches!(spec.transport, UpstreamTransport::Http(_)) {
            return back(parts, bytes);
        }
        let deadline = Instant::now() + spec.timeout;
        let progress = params
            .meta
            .as_ref()
            .is_some_and(|m| m.get_progress_token().is_some());
        let mut params = params;
        params.name = bare.into();
        params.meta = forward_meta(params.meta.take());
        let http = self.shared.http.clone();
        let started = handler
            .one_as(&caller, None, &server, |_, relay| async move {
                let Some((url, session)) = relay.direct() else {
                    return Ok(None);
                };
                let Some(exchange) = Exchange::start(&http, url, session, &params).await else {
                    return Ok(None);
                };
                let mut exchange = exchange?;
                loop {
                    match exchange.next().await? {
                        Event::Answer(answer) => return Ok(Some(Started::Answer(answer?))),
                        Event::Message(message) => match pass(&message, progress) {
                            Pass::Forward(event) => {
                                return Ok(Some(Started::Stream(exchange, event)));
                            }
                            Pass::Answer(reply) => exchange.poster().reply(&reply).await,
                            Pass::Drop => {}
                        },
                    }
                }
            })
            .await;
        Taken::Answered(match started {
            Ok(None) => return back(parts, bytes),
            Ok(Some(Started::Answer(mut result))) => {
                // Callers before 2026-07-28 know no `resultType` (rmcp strips it too).
                result.result_type = None;
                respond(express.json_response, reply_bytes(&id, Ok(&result)))
            }
            Err(error) => respond(express.json_response, reply_bytes(&id, Err(&error))),
            Ok(Some(Started::Stream(exchange, first))) => {
                let shared = Arc::clone(&self.shared);
                stream(shared, server, exchange, first, id, progress, deadline)
            }
        })
    }
}

/// Streams the rest of a call: what the upstream sends is passed on as it comes, then the
/// answer. A caller that goes away ends the upstream request with it.
fn stream(
    shared: Arc<Shared>,
    server: String,
    mut exchange: Exchange,
    first: Bytes,
    id: Box<RawValue>,
    progress: bool,
    deadline: Instant,
) -> McpResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        if tx.send(first).await.is_err() {
            return;
        }
        let run = async {
            loop {
                match exchange.next().await {
                    Ok(Event::Answer(answer)) => {
                        break Some(answer.map(|mut r| {
                            r.result_type = None;
                            r
                        }));
                    }
                    Ok(Event::Message(message)) => match pass(&message, progress) {
                        Pass::Forward(event) => {
                            if tx.send(event).await.is_err() {
                                return None;
                            }
                        }
                        Pass::Answer(reply) => exchange.poster().reply(&reply).await,
                        Pass::Drop => {}
                    },
                    Err(e) => break Some(Err(e)),
                }
            }
        };
        let outcome = tokio::select! {
            o = tokio::time::timeout_at(deadline.into(), run) => match o {
                Ok(Some(o)) => o.map_err(Failure::Service),
                Ok(None) => return,
                Err(_) => Err(Failure::Timeout),
            },
            () = tx.closed() => return,
        };
        let bytes = match outcome {
            Ok(result) => {
                shared.report_success(&server);
                reply_bytes(&id, Ok(&result))
            }
            Err(Failure::Service(ServiceError::McpError(e))) => {
                shared.report_success(&server);
                reply_bytes(&id, Err(&e))
            }
            Err(failure) => {
                shared.report_failure(&server, &failure);
                reply_bytes(&id, Err(&upstream_error(&server, failure)))
            }
        };
        let _ = tx
            .send(sse::message_event(
                &String::from_utf8(bytes).unwrap_or_default(),
            ))
            .await;
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(Frame::data(event)), rx))
    });
    stream_response(BoxBody::new(StreamBody::new(events)))
}
