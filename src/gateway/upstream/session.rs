//! Requests posted on a streamable HTTP upstream's session, the one rmcp's client opened.
//!
//! rmcp's client decodes every reply through `ServerResult`, an untagged enum: serde buffers the
//! reply, clones it and tries each variant in turn, the dearest step of a relayed call. For a
//! `tools/call` the gateway knows which reply it expects, so it posts the request itself on the
//! caller's pooled upstream session (the session id and headers rmcp uses, read by
//! [`Recorder`]), with an id of its own that cannot meet rmcp's, and decodes only a
//! `CallToolResult`; what else arrives on the reply stream is sorted for the caller by
//! `tool_call`. Lists are asked the same way (see `lists`). A 2026-07-28 upstream has no
//! session: rmcp's client is recorded all the same (the headers it sends with), and a call
//! posted there states its method and name in headers of its own (see `per_request`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderName, HeaderValue};
use rmcp::model::{CallToolRequestParams, ClientJsonRpcMessage, ServerResult};
use rmcp::service::ServiceError;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use serde_json::{Value, json};

use super::http_clients::{Outgoing, Posted, UpstreamHttp};
use super::per_request::{self, PlainTools};
use super::wire::{
    Head, MAX_REPLY, Stream, TraceHeaders, decode_answer, encode, finish, gone, message_trace,
    next_event, read_all, trace_headers, unreadable,
};
use crate::protocol::sse;

/// What rmcp's client last sent with: the session and the headers (credentials, protocol
/// version). Filled by [`Recorder`] as rmcp talks to the upstream.
/// A stateless upstream has no session id: after the handshake rmcp posts without one.
type Seen = (Option<Arc<str>>, HashMap<HeaderName, HeaderValue>);

#[derive(Clone, Debug, Default)]
pub(crate) struct Session {
    seen: Arc<Mutex<Option<Arc<Seen>>>>,
}

impl Session {
    fn get(&self) -> Option<Arc<Seen>> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Notes what rmcp sends a message with, once the handshake is over.
    fn note(
        &self,
        message: &ClientJsonRpcMessage,
        session: Option<&Arc<str>>,
        headers: &HashMap<HeaderName, HeaderValue>,
    ) {
        if let rmcp::model::JsonRpcMessage::Request(r) = message
            && matches!(r.request, rmcp::model::ClientRequest::InitializeRequest(_))
        {
            return;
        }
        // A 2026-07-28 request states its method and name in headers of its own: they are not
        // the session's.
        let kept;
        let headers = if headers.keys().any(per_request::is_per_request) {
            kept = headers
                .iter()
                .filter(|(name, _)| !per_request::is_per_request(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            &kept
        } else {
            headers
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen
            .as_ref()
            .is_none_or(|seen| seen.0.as_ref() != session || &seen.1 != headers)
        {
            *seen = Some(Arc::new((session.cloned(), headers.clone())));
        }
    }
}

/// Where calls of one upstream session are posted directly: its URL, the session rmcp's client
/// recorded, and the upstream's HTTP clients.
pub(crate) struct Route {
    pub(crate) http: UpstreamHttp,
    pub(crate) url: Arc<Target>,
    pub(crate) session: Session,
    /// For a session of protocol 2026-07-28: the tools whose calls are posted directly (see
    /// `per_request`). Its lists are asked through rmcp's client, which keeps the schemas it
    /// needs for the calls it makes.
    pub(crate) latest: Option<PlainTools>,
}

/// An upstream's URL, as reqwest and as hyper take it.
pub(crate) struct Target {
    url: reqwest::Url,
    uri: Option<http::Uri>,
}

impl Target {
    pub(crate) fn new(url: reqwest::Url) -> Self {
        let uri = url.as_str().parse().ok();
        Self { url, uri }
    }
}

/// rmcp's HTTP client for one upstream session, noting what it sends with.
#[derive(Clone)]
pub(crate) struct Recorder {
    pub(crate) http: reqwest::Client,
    pub(crate) session: Session,
    /// What went wrong with TLS on the last request that failed for it, said for a person.
    pub(crate) tls_failure: Arc<std::sync::Mutex<Option<String>>>,
}

impl Recorder {
    fn noting<T>(
        &self,
        outcome: Result<T, StreamableHttpError<reqwest::Error>>,
    ) -> Result<T, StreamableHttpError<reqwest::Error>> {
        if let Err(StreamableHttpError::Client(e)) = &outcome
            && let Some(reason) = crate::tls::failure(e)
        {
            *self
                .tls_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(reason);
        }
        outcome
    }
}

type Post = Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>;

/// `headers` with the trace context headers of `message` (see [`message_trace`]) where
/// `headers` has none.
fn with_trace(
    message: &ClientJsonRpcMessage,
    mut headers: HashMap<HeaderName, HeaderValue>,
) -> HashMap<HeaderName, HeaderValue> {
    for (name, value) in message_trace(message) {
        headers.entry(name).or_insert(value);
    }
    headers
}

impl StreamableHttpClient for Recorder {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Post {
        self.session.note(&message, session_id.as_ref(), &headers);
        let headers = with_trace(&message, headers);
        let sent = self
            .http
            .post_message(uri, message, session_id, auth, headers)
            .await;
        self.noting(sent)
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        max: usize,
    ) -> Post {
        self.session.note(&message, session_id.as_ref(), &headers);
        let headers = with_trace(&message, headers);
        let sent = self
            .http
            .post_message_with_max_sse_event_size(uri, message, session_id, auth, headers, max)
            .await;
        self.noting(sent)
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Post {
        self.session.note(&message, session_id.as_ref(), &headers);
        let headers = with_trace(&message, headers);
        let sent = self
            .http
            .post_message_with_response_limits(uri, message, session_id, auth, headers, limits)
            .await;
        self.noting(sent)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<reqwest::Error>> {
        self.http
            .delete_session(uri, session_id, auth, headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<
        futures_util::stream::BoxStream<'static, Result<sse_stream::Sse, sse_stream::Error>>,
        StreamableHttpError<reqwest::Error>,
    > {
        let opened = self
            .http
            .get_stream(uri, session_id, last_event_id, auth, headers)
            .await;
        self.noting(opened)
    }
}

/// A `tools/call` posted on an upstream session: its reply is read an event at a time.
///
/// An exchange dropped before its answer (the caller cancelled or went away, the call timed
/// out) tells the upstream with `notifications/cancelled`, so that its tool stops too.
pub(crate) struct Exchange {
    id: String,
    to: Poster,
    reply: Reply,
    answered: bool,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (to, id) = (self.to.clone(), std::mem::take(&mut self.id));
        runtime.spawn(async move {
            to.reply(
                &json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {
                    "requestId": id, "reason": "the gateway's caller no longer waits for the call"
                }}),
            )
            .await;
        });
    }
}

/// Posts on one upstream session.
#[derive(Clone)]
pub(crate) struct Poster {
    http: UpstreamHttp,
    url: Arc<Target>,
    /// The session id (none for a stateless upstream) and headers rmcp's client sends with.
    seen: Arc<Seen>,
    /// Protocol 2026-07-28: each request states its method and name in headers.
    latest: bool,
}

impl Poster {
    /// Posts on the session `route` names; `None` when rmcp has not opened it yet.
    pub(crate) fn on(route: &Route) -> Option<Self> {
        Some(Self {
            http: route.http.clone(),
            url: Arc::clone(&route.url),
            seen: route.session.get()?,
            latest: route.latest.is_some(),
        })
    }

    /// Posts `body`, the message `method` (naming `name`, if it does), with the trace context
    /// headers `trace` (those the session's own headers do not set).
    async fn post(
        &self,
        body: Vec<u8>,
        method: Option<&str>,
        name: Option<&str>,
        trace: TraceHeaders,
    ) -> Result<Posted, ServiceError> {
        let (session_id, headers) = &*self.seen;
        let mut stated = match (self.latest, method) {
            (true, Some(method)) => per_request::stated(method, name),
            _ => Vec::new(),
        };
        // The trace context goes where the session's own headers do not set it.
        stated.extend(
            trace
                .into_iter()
                .filter(|(name, _)| !headers.contains_key(name)),
        );
        self.http
            .post(Outgoing {
                url: &self.url.url,
                uri: self.url.uri.as_ref(),
                session: session_id.as_deref(),
                headers,
                stated: &stated,
                body: body.into(),
            })
            .await
            .map_err(|_| gone())
    }

    /// Posts `body`, a request of `method` (naming `name`, if it does) with the trace context
    /// headers `trace`: the reply, and whether it is JSON (else an event stream). A 404 means
    /// the session is gone.
    pub(crate) async fn send(
        &self,
        body: Vec<u8>,
        method: &str,
        name: Option<&str>,
        trace: TraceHeaders,
    ) -> Result<(Stream, bool), ServiceError> {
        let response = self.post(body, Some(method), name, trace).await?;
        let is_json = crate::protocol::media_is(
            response.headers.get(http::header::CONTENT_TYPE),
            "application/json",
        );
        // A 2026-07-28 upstream gives some JSON-RPC errors an HTTP status of their own (400 for
        // a missing capability, 404 for an unknown method): the error is the reply.
        if self.latest && is_json && response.status.is_client_error() {
            return Ok((response.body, true));
        }
        if response.status == http::StatusCode::NOT_FOUND {
            return Err(gone());
        }
        if !response.status.is_success() {
            return Err(unreadable(&format!("HTTP {}", response.status)));
        }
        Ok((response.body, is_json))
    }

    /// Answers a request the upstream made on a call's stream (or sends a notification).
    pub(crate) async fn reply(&self, message: &Value) {
        let method = message.get("method").and_then(Value::as_str);
        let _ = self
            .post(
                serde_json::to_vec(message).unwrap_or_default(),
                method,
                None,
                Vec::new(),
            )
            .await;
    }
}

enum Reply {
    /// A JSON reply, not read yet.
    Json(Option<Stream>),
    /// An event stream.
    Sse(sse::SseFramer, Stream),
}

/// What the upstream sent next on a call's reply stream.
#[allow(clippy::large_enum_variant)] // handed over at once, never kept
pub(crate) enum Event {
    /// The reply to the call: a tool result, or (protocol 2026-07-28) a round of input
    /// required or a task.
    Answer(Result<ServerResult, ServiceError>),
    /// Anything else: a notification or a request of the upstream.
    Message(Value),
}

impl Exchange {
    /// Posts `params` as a `tools/call` on the session `session` describes. `None` when rmcp
    /// has not opened the session yet.
    pub(crate) async fn start(
        route: &Route,
        params: &CallToolRequestParams,
    ) -> Option<Result<Self, ServiceError>> {
        let to = Poster::on(route)?;
        let (id, body) = encode("tools/call", params)?;
        let mut exchange = Self {
            id,
            to,
            reply: Reply::Json(None),
            answered: false,
        };
        Some(
            async {
                let trace = trace_headers(params.meta.as_ref());
                let sent = exchange
                    .to
                    .send(body, "tools/call", Some(&params.name), trace);
                let (body, is_json) = match sent.await {
                    Ok(sent) => sent,
                    Err(e) => {
                        // Refused or never delivered: nothing runs upstream to cancel.
                        exchange.disarm();
                        return Err(e);
                    }
                };
                exchange.reply = if is_json {
                    Reply::Json(Some(body))
                } else {
                    Reply::Sse(sse::SseFramer::new(MAX_REPLY), body)
                };
                Ok(exchange)
            }
            .await,
        )
    }

    /// Nothing to cancel upstream when dropped.
    fn disarm(&mut self) {
        self.answered = true;
    }

    /// Where answers to the upstream's requests go.
    pub(crate) fn poster(&self) -> &Poster {
        &self.to
    }

    /// The next thing the upstream sent; after the answer, nothing more is read.
    pub(crate) async fn next(&mut self) -> Result<Event, ServiceError> {
        match &mut self.reply {
            Reply::Json(body) => {
                let mut body = body.take().ok_or_else(gone)?;
                let bytes = read_all(&mut body).await?;
                let text = std::str::from_utf8(&bytes).map_err(|_| unreadable("not UTF-8"))?;
                let done = decode_answer(&self.id, self.to.latest, text)
                    .ok_or_else(|| unreadable("not the reply"))?;
                self.answered = true;
                Ok(Event::Answer(done))
            }
            Reply::Sse(framer, body) => loop {
                let event = next_event(framer, body).await?;
                let Some(data) = sse::event_data(&event) else {
                    continue;
                };
                let Ok(head) = serde_json::from_str::<Head>(&data) else {
                    continue;
                };
                // The answer is decoded straight from its text; anything else is rare and read
                // whole.
                let ours = head.method.is_none()
                    && head.id.as_ref().and_then(Value::as_str) == Some(self.id.as_str());
                if ours && let Some(done) = decode_answer(&self.id, self.to.latest, &data) {
                    self.answered = true;
                    if let Reply::Sse(_, body) =
                        std::mem::replace(&mut self.reply, Reply::Json(None))
                    {
                        finish(body);
                    }
                    return Ok(Event::Answer(done));
                }
                let Ok(message) = serde_json::from_str::<Value>(&data) else {
                    continue;
                };
                return Ok(Event::Message(message));
            },
        }
    }
}
