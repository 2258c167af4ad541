//! The express path: `tools/call` and the four list methods (tools, prompts, resources,
//! resource templates) from a caller of a protocol with the initialize handshake, to streamable
//! HTTP upstreams, without rmcp's server side (and, for lists, without its client's untagged
//! decode: each upstream's reply is decoded as the list result it must be, and the lists merged
//! as the handler merges them).
//!
//! rmcp's server decodes every request through `ClientRequest` (an untagged enum: serde buffers
//! the message and tries each variant), runs it through a service (a one-shot service and task
//! of its own when stateless, the session's worker and channels when stateful), and encodes
//! the reply through `ServerJsonRpcMessage`; with the reply decoding of its client, that was
//! most of what the gateway spent on a call. A `tools/call` needs none of it: the layers have
//! parsed and allowed the request, so the express path decodes only its parameters, posts them
//! on the caller's pooled upstream session (see `direct`) and writes the answer itself.
//! Whatever it is not sure of goes to rmcp unchanged, before anything was sent upstream:
//! another method, a protocol or `Host` rmcp would judge, a session rmcp does not have open or
//! has not seen lately (see `express_sessions`), a name that does not route, an upstream of
//! another transport, an upstream session not recorded yet.
//!
//! Like rmcp, it answers in JSON when the answer comes first (with `json_response`) and
//! otherwise streams: the upstream's progress (when asked for) and log messages are passed on
//! as they come, then the answer. The upstream's requests of its client (sampling, elicitation,
//! roots) go to the caller on the same stream under an id of the gateway's, and the caller's
//! answer, posted on its session, goes back to the upstream. A stateless caller cannot answer
//! (its answer would have no session to come back on): there a `ping` is answered and anything
//! else refused at once, where rmcp's stateless server would let the upstream wait for its
//! timeout.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{Full, StreamBody};
use rmcp::model::{CallToolRequestParams, ErrorData, ServerResult};
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::caller::Caller;
use super::express_sessions::{Running, Sessions};
use super::tool_call::{self, Ask, CallerSide, Notice, ToolCall, forward_meta};
use super::shared::Gateway;
use super::upstream::UpstreamTransport;
use crate::engine::NameKind;
use crate::protocol::{CollectError, McpRequest, MessageKind, Method};
use crate::protocol::{Era, sse};

pub(crate) type McpResponse = Response<BoxBody<Bytes, Infallible>>;

/// What the express path needs of the endpoint's settings.
#[derive(Debug)]
pub(crate) struct Express {
    /// Normalised `(host, port)` pairs; empty allows every host, as with rmcp.
    allowed_hosts: Vec<(String, Option<u16>)>,
    json_response: bool,
    max_body: usize,
    /// On a stateful endpoint.
    pub(crate) sessions: Option<Arc<Sessions>>,
}

/// Where a request goes.
pub(crate) enum Route {
    /// A `tools/call` for the express path (with the caller's session on a stateful endpoint).
    Call(Option<Arc<str>>),
    /// A `tools/list`, `prompts/list`, `resources/list` or `resources/templates/list` for the
    /// express path.
    List(Method, Option<Arc<str>>),
    /// A caller's answer on its session, perhaps to an upstream request passed on.
    Answer(Arc<str>),
    /// A caller's `notifications/cancelled` on its session: perhaps for a call in flight here.
    Cancel(Arc<str>),
    /// rmcp's.
    Rmcp,
}

impl Route {
    /// The express route for `head`, a request [`Express::takes`].
    fn express(head: &McpRequest, session: Option<Arc<str>>) -> Self {
        match &head.method {
            Some(Method::ToolsCall) | None => Self::Call(session),
            Some(list) => Self::List(list.clone(), session),
        }
    }
}

/// The one value of `name`, if there is exactly one and it is text.
fn one_header(headers: &HeaderMap, name: &str) -> Option<Arc<str>> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok().map(Arc::from),
        _ => None,
    }
}

impl Express {
    /// The express path for an endpoint with `config`, whose sessions (if stateful) `manager`
    /// keeps.
    pub(crate) fn for_config(
        config: &StreamableHttpServerConfig,
        manager: &Arc<LocalSessionManager>,
    ) -> Option<Self> {
        if !config.legacy_session_mode && config.stateless_protocol_metadata_required {
            return None;
        }
        Some(Self {
            sessions: config
                .legacy_session_mode
                .then(|| Arc::new(Sessions::new(Arc::clone(manager)))),
            allowed_hosts: config
                .allowed_hosts
                .iter()
                .filter_map(|h| allowed_authority(h))
                .collect(),
            json_response: config.json_response,
            max_body: config.max_request_body_bytes,
        })
    }

    /// Where `request` (already through the layers) goes; the body is judged after.
    pub(crate) fn route<B>(&self, request: &Request<B>) -> Route {
        let Some(head) = request.extensions().get::<McpRequest>() else {
            return Route::Rmcp;
        };
        if request.method() != http::Method::POST {
            return Route::Rmcp;
        }
        let session = one_header(request.headers(), "mcp-session-id");
        match (&self.sessions, session) {
            (Some(_), Some(session)) => match head.kind {
                MessageKind::Response => Route::Answer(session),
                MessageKind::Notification
                    if head
                        .method
                        .as_ref()
                        .is_some_and(|m| m.as_str() == "notifications/cancelled") =>
                {
                    Route::Cancel(session)
                }
                _ if self.takes(request, head) => Route::express(head, Some(session)),
                _ => Route::Rmcp,
            },
            (None, None) if self.takes(request, head) => Route::express(head, None),
            // A stateful endpoint's call without a session, or a stateless one's with.
            _ => Route::Rmcp,
        }
    }

    fn takes<B>(&self, request: &Request<B>, head: &McpRequest) -> bool {
        let headers = request.headers();
        head.kind == MessageKind::Request
            && matches!(
                head.method,
                Some(
                    Method::ToolsCall
                        | Method::ToolsList
                        | Method::PromptsList
                        | Method::ResourcesList
                        | Method::ResourceTemplatesList
                )
            )
            && head.id.is_some()
            && handshake_protocol(headers)
            && !headers.contains_key("mcp-method")
            && !headers.contains_key("mcp-name")
            // rmcp keeps to itself whether it checks an empty origin allow-list: any request
            // with an `Origin` is its to judge.
            && !headers.contains_key(header::ORIGIN)
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
    Era::from_header(headers).is_some_and(|era| !era.is_stateless())
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

/// The whole body, or rmcp's refusal of it: 413 past `max` bytes, 400 when it cannot be read.
/// The layers have read it already, so this takes over their buffer without a copy.
async fn collect<B: http_body::Body>(body: B, max: usize) -> Result<Bytes, McpResponse> {
    crate::protocol::collect_limited(body, max)
        .await
        .map_err(|e| {
            refused_body(match e {
                CollectError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                CollectError::Body(_) => StatusCode::BAD_REQUEST,
            })
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

/// The caller's end of a call on the express path: the event stream the endpoint writes.
struct StreamSide {
    events: tokio::sync::mpsc::Sender<Bytes>,
    /// The caller's session on a stateful endpoint.
    session: Option<(Arc<Sessions>, Arc<str>)>,
    /// Upstream requests passed to the caller, by the ids it sees: forgotten when the call ends.
    asked: Vec<String>,
    /// The call, registered with its session so that the caller can cancel it.
    running: Option<Running>,
}

impl Drop for StreamSide {
    fn drop(&mut self) {
        if let (Some((sessions, session)), false) = (&self.session, self.asked.is_empty()) {
            sessions.forget(session, &self.asked);
        }
    }
}

impl CallerSide for StreamSide {
    async fn notify(&mut self, notice: Notice) {
        let _ = self
            .events
            .send(sse::message_event(&notice.to_json()))
            .await;
    }

    async fn ask(&mut self, ask: Ask) {
        let Some((sessions, session)) = &self.session else {
            // A stateless caller's answer would have no session to come back on.
            let refusal = ErrorData::new(
                rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                "the gateway cannot pass this request to its caller on a stateless endpoint",
                None,
            );
            return ask.answer(Err(refusal)).await;
        };
        let theirs = ask.id();
        let mut message = ask.message;
        let ours = sessions.ask(session, ask.to, theirs);
        message["id"] = json!(ours);
        self.asked.push(ours);
        let _ = self
            .events
            .send(sse::message_event(&message.to_string()))
            .await;
    }

    fn cancelled(&self) -> impl std::future::Future<Output = ()> + Send {
        let token = self.running.as_ref().map(|r| r.token.clone());
        async move {
            match token {
                Some(token) => token.cancelled_owned().await,
                None => std::future::pending().await,
            }
        }
    }
}

/// A JSON-RPC reply to the caller's request `id`.
fn reply_bytes(id: &RawValue, answer: Result<&ServerResult, &ErrorData>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Reply<'a> {
        jsonrpc: &'static str,
        id: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<&'a ServerResult>,
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

/// `result` as rmcp's server gives it to a caller on a protocol before 2026-07-28: without
/// `resultType: "complete"`, and without tool output that is not an object (SEP-2106).
fn legacy(mut result: ServerResult) -> ServerResult {
    result.strip_result_type_for_legacy_peer();
    result.strip_non_object_output_for_legacy_peer();
    result
}

/// A JSON reply with its exact length.
fn json_reply(body: Vec<u8>) -> McpResponse {
    let mut r = Response::new(BoxBody::new(Full::new(Bytes::from(body))));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
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
        session: Option<Arc<str>>,
        parts: http::request::Parts,
        body: B,
    ) -> Taken
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
    {
        let bytes = match collect(body, express.max_body).await {
            Ok(b) => b,
            Err(refused) => return Taken::Answered(refused),
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
        // Only an upstream spoken to with the handshake takes a call posted directly; the
        // progress and log messages of a 2026-07-28 upstream come through rmcp's client.
        if !matches!(spec.transport, UpstreamTransport::Http(_))
            || spec.protocol != super::upstream::UpstreamProtocol::Handshake
        {
            return back(parts, bytes);
        }
        let session = match (&express.sessions, session) {
            (Some(sessions), Some(session)) => {
                if !sessions.usable(&session).await {
                    return back(parts, bytes);
                }
                Some((Arc::clone(sessions), session))
            }
            _ => None,
        };
        let running = session.as_ref().map(|(sessions, session)| {
            let key = serde_json::from_str::<Value>(id.get())
                .map_or_else(|_| id.get().to_owned(), |v| v.to_string());
            sessions.run(session, key)
        });
        let progress = params
            .meta
            .as_ref()
            .and_then(|m| m.get_progress_token());
        let mut params = params;
        params.name = bare.into();
        params.meta = forward_meta(params.meta.take());
        let call = ToolCall::new(params, progress);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let mut side = StreamSide {
            events: tx.clone(),
            session,
            asked: Vec::new(),
            running,
        };
        let downstream = side
            .session
            .as_ref()
            .and_then(|(_, session)| self.shared.downstream(session));
        // The whole call, to the bytes of its reply (none when the caller cancelled it).
        let run = async move {
            let answered = handler
                .one_as(&caller, downstream.as_ref(), &server, |peer, relay| {
                    let side = &mut side;
                    async move {
                        match tool_call::call_tool(peer, relay, call, side).await? {
                            Some(result) => tool_call::complete(result).map(Some),
                            None => Ok(None),
                        }
                    }
                })
                .await;
            let answer = match answered {
                Ok(None) => return None,
                Ok(Some(rmcp::model::CallToolResponse::Complete(result))) => {
                    Ok(legacy(ServerResult::CallToolResult(result)))
                }
                Ok(Some(_)) => Err(ErrorData::internal_error(
                    format!("upstream {server} gave an unexpected result"),
                    None,
                )),
                Err(error) => Err(error),
            };
            Some(reply_bytes(&id, answer.as_ref()))
        };
        if !express.json_response {
            // An event stream from the start, as rmcp's: the caller has its headers (and can
            // cancel) however long the upstream takes before its first word.
            return Taken::Answered(sse_response(None, then_reply(run, tx), rx));
        }
        // JSON when the answer comes before anything else for the caller, else a stream.
        let mut run = Box::pin(run);
        let first = tokio::select! {
            biased;
            reply = &mut run => Ok(reply),
            Some(event) = rx.recv() => Err(event),
        };
        Taken::Answered(match first {
            Ok(reply) if rx.is_empty() => match reply {
                Some(reply) => json_reply(reply),
                None => stream_response(BoxBody::new(Full::new(Bytes::new()))),
            },
            Ok(reply) => sse_response(None, then_reply(std::future::ready(reply), tx), rx),
            Err(event) => sse_response(Some(event), then_reply(run, tx), rx),
        })
    }
}

/// Sends the reply `run` ends with (if any) as the last event to `tx`.
async fn then_reply<F>(run: F, tx: tokio::sync::mpsc::Sender<Bytes>)
where
    F: std::future::Future<Output = Option<Vec<u8>>>,
{
    if let Some(reply) = run.await {
        let text = String::from_utf8(reply).unwrap_or_default();
        let _ = tx.send(sse::message_event(&text)).await;
    }
}

/// An event stream of what `driver` sends to `rx`. The driver runs as the body is read, in
/// the connection's own task (no task of its own to spawn and wake): a caller that goes away
/// drops it, and with it the upstream request.
fn sse_response<D>(
    first: Option<Bytes>,
    driver: D,
    rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> McpResponse
where
    D: std::future::Future<Output = ()> + Send + 'static,
{
    use futures_util::StreamExt as _;
    let first = futures_util::stream::iter(first.map(|event| Ok(Frame::data(event))));
    let events = first.chain(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(Frame::data(event)), rx))
    }));
    let driver = futures_util::stream::once(driver)
        .filter_map(|()| std::future::ready(None::<Result<Frame<Bytes>, Infallible>>));
    let body = futures_util::stream::select(driver, events);
    stream_response(BoxBody::new(StreamBody::new(Unshared::new(body))))
}

/// A stream made `Sync` (boxed bodies must be) by a lock that is only ever taken through
/// `&mut`, so never contended.
struct Unshared<S>(std::sync::Mutex<std::pin::Pin<Box<S>>>);

impl<S> Unshared<S> {
    fn new(stream: S) -> Self {
        Self(std::sync::Mutex::new(Box::pin(stream)))
    }
}

impl<S: futures_util::Stream> futures_util::Stream for Unshared<S> {
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        self.get_mut()
            .0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
            .poll_next(cx)
    }
}

impl Gateway {
    /// Takes the list request (of `L`) of `parts` and `body` on the express path, or gives them
    /// back untouched for rmcp: every upstream the caller may use is asked on its pooled session
    /// directly, each reply decoded as `L` straight from its text, and the lists merged as the
    /// handler merges them.
    pub(crate) async fn express_list<L, B>(
        &self,
        express: &Express,
        session: Option<Arc<str>>,
        parts: http::request::Parts,
        body: B,
    ) -> Taken
    where
        L: super::direct::Listing,
        B: http_body::Body<Data = Bytes> + Send + 'static,
    {
        #[derive(serde::Deserialize)]
        struct Id {
            id: Box<RawValue>,
        }
        let bytes = match collect(body, express.max_body).await {
            Ok(b) => b,
            Err(refused) => return Taken::Answered(refused),
        };
        let back = |parts, bytes| Taken::Back(Request::from_parts(parts, Full::new(bytes)));
        let Ok(Id { id }) = serde_json::from_slice::<Id>(&bytes) else {
            return back(parts, bytes);
        };
        let caller = Caller::from_parts(&parts, false);
        let handler = self.handler();
        let all_http = handler.servers(&caller).iter().all(|(_, name)| {
            self.shared
                .upstreams
                .get(name)
                .is_some_and(|s| matches!(s.transport, UpstreamTransport::Http(_)))
        });
        if !all_http {
            return back(parts, bytes);
        }
        if let (Some(sessions), Some(session)) = (&express.sessions, &session)
            && !sessions.usable(session).await
        {
            return back(parts, bytes);
        }
        let downstream = session.as_ref().and_then(|s| self.shared.downstream(s));
        let listed = handler
            .fan_out_as(&caller, downstream.as_ref(), |_, relay| async move {
                let seen = match relay.lists().kept(L::LISTED) {
                    Ok(items) => return Ok(Some(items)),
                    Err(seen) => seen,
                };
                let Some(route) = relay.direct() else {
                    return Ok(None);
                };
                let fetched =
                    super::direct::list_all::<L>(&route.http, &route.url, &route.session).await;
                match fetched {
                    Some(Ok(items)) => {
                        relay.lists().keep(L::LISTED, seen, &items);
                        Ok(Some(items))
                    }
                    Some(Err(e)) => Err(e),
                    None => Ok(None),
                }
            })
            .await;
        let mut merged = Vec::with_capacity(listed.len());
        for (id, name, items) in listed {
            // A session not recorded yet: rmcp's, whole (a list is safe to ask again).
            let Some(items) = items else {
                return back(parts, bytes);
            };
            merged.push((id, name, items));
        }
        let items = handler.merge(Some(L::KIND), merged, L::name, L::rename);
        let result = legacy(L::with_all(items));
        let reply = reply_bytes(&id, Ok(&result));
        Taken::Answered(if express.json_response {
            json_reply(reply)
        } else {
            stream_response(BoxBody::new(Full::new(sse::message_event(
                &String::from_utf8(reply).unwrap_or_default(),
            ))))
        })
    }
}

fn refused_body(status: StatusCode) -> McpResponse {
    let mut r = Response::new(BoxBody::new(Full::new(Bytes::from_static(
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            b"Payload Too Large: the request body is over the limit"
        } else {
            b"Bad Request: the request body could not be read"
        },
    ))));
    *r.status_mut() = status;
    r
}

impl Express {
    /// A caller's answer (`cancel` false) or `notifications/cancelled` (`cancel` true) on
    /// `session`. An answer to an upstream request passed on here goes to that upstream under
    /// its own id, once; a cancellation ends the call it names if it runs here. Everything
    /// else, cancellations included, goes on to rmcp.
    pub(crate) async fn on_session<B>(
        &self,
        cancel: bool,
        session: Arc<str>,
        parts: http::request::Parts,
        body: B,
    ) -> Taken
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
    {
        let bytes = match collect(body, self.max_body).await {
            Ok(b) => b,
            Err(refused) => return Taken::Answered(refused),
        };
        if let (Some(sessions), Ok(mut message)) =
            (&self.sessions, serde_json::from_slice::<Value>(&bytes))
        {
            if cancel {
                if let Some(id) = message.pointer("/params/requestId") {
                    sessions.cancel(&session, id.to_string());
                }
            } else if let Some((to, theirs)) = message
                .get("id")
                .and_then(Value::as_str)
                .and_then(|ours| sessions.answer(&session, ours))
            {
                message["id"] = theirs;
                to.reply(&message).await;
                let mut r = Response::new(BoxBody::new(Full::new(Bytes::new())));
                *r.status_mut() = StatusCode::ACCEPTED;
                return Taken::Answered(r);
            }
        }
        Taken::Back(Request::from_parts(parts, Full::new(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn express(allowed: &[&str]) -> Express {
        let mut config = StreamableHttpServerConfig::default();
        config.legacy_session_mode = false;
        config.allowed_hosts = allowed.iter().map(|h| (*h).to_owned()).collect();
        Express::for_config(&config, &Arc::new(LocalSessionManager::default())).unwrap()
    }

    fn with_host(host: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        h
    }

    #[test]
    fn hosts_are_judged_as_rmcp_judges_them_and_anything_unclear_goes_to_rmcp() {
        let x = express(&["localhost", "127.0.0.1", "::1", "api.example.com:8443"]);
        let uri = http::Uri::from_static("/mcp");
        for (host, allowed) in [
            (Some("127.0.0.1:4000"), true),
            (Some("LOCALHOST:80"), true),
            (Some("[::1]:4000"), true),
            (Some("api.example.com:8443"), true),
            (Some("api.example.com:443"), false),
            (Some("api.example.com"), false),
            (Some("127.0.0.1.evil.example"), false),
            (Some("evil.example"), false),
            (Some("localhost.:80"), false),
            (Some("a b"), false),
            (None, false),
        ] {
            assert_eq!(x.host_allowed(&with_host(host), &uri), allowed, "{host:?}");
        }
        // An empty list allows every host, as rmcp's does.
        assert!(express(&[]).host_allowed(&with_host(Some("anything.example")), &uri));
    }

    #[test]
    fn only_known_handshake_versions_and_full_media_types_take_the_express_path() {
        for (version, ok) in [
            (Some("2025-06-18"), true),
            (Some("2025-03-26"), true),
            (Some("2026-07-28"), false),
            (Some("2099-01-01"), false),
            (Some("2025-06-18 "), false),
            (None, false),
        ] {
            let mut h = HeaderMap::new();
            if let Some(v) = version {
                h.insert("mcp-protocol-version", HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(handshake_protocol(&h), ok, "{version:?}");
        }
        let mut twice = HeaderMap::new();
        twice.append(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-06-18"),
        );
        twice.append(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-06-18"),
        );
        assert!(!handshake_protocol(&twice));
        for (accept, content_type, ok) in [
            (
                "application/json, text/event-stream",
                "application/json",
                true,
            ),
            (
                "text/event-stream;q=0.9, Application/JSON",
                "application/json; charset=utf-8",
                true,
            ),
            ("application/json", "application/json", false),
            ("*/*", "application/json", false),
            ("application/json, text/event-stream", "text/plain", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).unwrap(),
            );
            assert_eq!(media_types_fit(&h), ok, "{accept} / {content_type}");
        }
    }
}
