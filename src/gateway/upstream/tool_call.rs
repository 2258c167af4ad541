//! A governed `tools/call` on its way to one upstream session: the one place a call is sent
//! upstream, whatever the transport, and where what the upstream sends meanwhile (progress,
//! log messages, requests of its client) is sorted for the caller, and cancellation ends it.
//!
//! A streamable HTTP upstream spoken to with the handshake gets the call posted on the
//! caller's pooled session (see `session`), and its reply stream is read here an event at a
//! time; so does a 2026-07-28 one for a tool its session listed with nothing to state in
//! headers but its method and name (see `per_request`), its input-required rounds then
//! settled through rmcp's client. Any other call (stdio, legacy SSE, a 2026-07-28 tool with
//! argument headers or not listed yet, an HTTP session rmcp has not recorded yet) goes through
//! rmcp's client as a full peer: progress comes back through the session's relay, and the
//! upstream's requests of its client are answered there (see `client`), where rmcp delivers
//! them. Either way the caller's side gets the same
//! [`Notice`]s; what that side is (an rmcp session, an event stream the endpoint writes, a
//! 2026-07-28 call parked between rounds) is its own business, never this module's.

#![allow(deprecated)] // log messages are deprecated in the newest protocol, still relayed

use std::future::Future;

use rmcp::RoleClient;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotification,
    CancelledNotificationParam, ClientRequest, ErrorData, LoggingMessageNotificationParam,
    ProgressNotificationParam, ProgressToken, RequestMetaObject, ServerResult,
};
use rmcp::service::{Peer, ServiceError};
use serde_json::{Value, json};

use super::client::{Asking, PendingSender, Relay};
use super::session::{Event, Exchange, Poster};

/// How long a call whose caller wants progress or log messages waits, after an rmcp peer's
/// answer, for notifications the upstream sent before it: rmcp hands each notification to a
/// task of its own but the answer straight to the caller.
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// A notification of the upstream's for the caller of the call it came with.
#[derive(Debug)]
pub(crate) enum Notice {
    /// Progress, under the caller's own token.
    Progress(ProgressNotificationParam),
    /// A log message.
    Log(LoggingMessageNotificationParam),
}

impl Notice {
    /// The notification as a JSON-RPC message.
    pub(crate) fn to_json(&self) -> String {
        let (method, params) = match self {
            Self::Progress(p) => ("notifications/progress", serde_json::to_value(p)),
            Self::Log(p) => ("notifications/message", serde_json::to_value(p)),
        };
        json!({"jsonrpc": "2.0", "method": method, "params": params.unwrap_or(Value::Null)})
            .to_string()
    }
}

/// A request the upstream made of its client on a call's reply stream, and where its answer
/// goes.
pub(crate) struct Ask {
    /// The request as the upstream sent it.
    pub(crate) message: Value,
    /// The upstream session the answer is posted on.
    pub(crate) to: Poster,
}

impl Ask {
    /// The upstream's id of its request.
    pub(crate) fn id(&self) -> Value {
        self.message.get("id").cloned().unwrap_or(Value::Null)
    }

    /// The request's method and parameters, without its id.
    pub(crate) fn request(&self) -> Value {
        json!({
            "method": self.message.get("method").cloned().unwrap_or(Value::Null),
            "params": self.message.get("params").cloned().unwrap_or(Value::Null),
        })
    }

    /// Posts the caller's answer (or a refusal) to the upstream.
    pub(crate) async fn answer(self, answer: Result<Value, ErrorData>) {
        let id = self.id();
        let message = match answer {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e}),
        };
        self.to.reply(&message).await;
    }
}

/// The caller's end of a call: where its notices and the upstream's requests go, and how it
/// says it no longer wants the answer.
pub(crate) trait CallerSide: Send {
    /// Passes a notice to the caller.
    fn notify(&mut self, notice: Notice) -> impl Future<Output = ()> + Send;
    /// Passes the upstream's request to the caller. The side answers it, now or later, by
    /// [`Ask::answer`] or by posting the caller's own answer on [`Ask::to`].
    fn ask(&mut self, ask: Ask) -> impl Future<Output = ()> + Send;
    /// Resolves when the caller cancels the call (or is gone).
    fn cancelled(&self) -> impl Future<Output = ()> + Send;
}

/// A tool call as the upstream gets it.
pub(crate) struct ToolCall {
    /// The call under the tool's bare name, its `_meta` without per-request protocol keys
    /// (see `handler::forward_meta`).
    pub(crate) params: CallToolRequestParams,
    /// The caller's progress token, when it asked for progress.
    pub(crate) progress: Option<ProgressToken>,
    /// What the call asks of a 2026-07-28 upstream on the caller's behalf.
    pub(crate) asking: Asking,
    /// Whether to wait a moment after an rmcp peer's answer for late notifications.
    pub(crate) linger: bool,
    /// The 2026-07-28 call whose rounds answer the upstream's input-required results, if the
    /// caller answers in rounds.
    pub(crate) held: Option<PendingSender>,
}

impl ToolCall {
    /// `params` (already under the bare name) for a caller that wants progress under
    /// `progress`, if any.
    pub(crate) fn new(mut params: CallToolRequestParams, progress: Option<ProgressToken>) -> Self {
        if let Some(token) = &progress {
            // Sent as is when posted; rmcp's client puts its own token in its place.
            params
                .meta
                .get_or_insert_with(RequestMetaObject::default)
                .set_progress_token(token.clone());
        }
        Self {
            params,
            progress,
            asking: Asking::default(),
            linger: false,
            held: None,
        }
    }
}

/// Sends `call` on the upstream session of `peer` and its `Relay`: its result (a tool result, or
/// a task the upstream created), or `None` when the caller cancelled first. A call given up
/// before its answer (cancelled, timed out, its caller gone) is cancelled upstream too.
pub(crate) async fn call_tool<S: CallerSide>(
    peer: Peer<RoleClient>,
    relay: Relay,
    mut call: ToolCall,
    side: &mut S,
) -> Result<Option<ServerResult>, ServiceError> {
    let (posted, latest) = match relay.call_route() {
        Some(route) => match &route.latest {
            None => (Exchange::start(route, &call.params).await, false),
            Some(plain) if plain.posts(&call.params.name) => {
                if let Some(stated) = stated_meta(&peer, call.asking) {
                    call.params
                        .meta
                        .get_or_insert_with(RequestMetaObject::default)
                        .extend(stated);
                }
                (Exchange::start(route, &call.params).await, true)
            }
            Some(_) => (None, false),
        },
        None => (None, false),
    };
    let Some(exchange) = posted else {
        return through_peer(&peer, &relay, call, side).await;
    };
    let answer = read_posted(exchange?, call.progress.is_some(), side).await?;
    match answer {
        // A 2026-07-28 upstream's input-required rounds are settled through rmcp's client.
        Some(result) if latest => {
            let held = call.held.as_ref();
            super::client::settle(&peer, &relay, call.params, result, held, call.asking)
                .await
                .map(Some)
        }
        answer => Ok(answer),
    }
}

/// The `_meta` each request to a 2026-07-28 upstream states, as rmcp's client states it: the
/// protocol version, the gateway as the client and what it answers for, and what the caller
/// asks for (see `client::options`).
fn stated_meta(peer: &Peer<RoleClient>, asking: Asking) -> Option<RequestMetaObject> {
    let info = peer.peer_info()?;
    let client = super::client::client_config();
    let mut meta = RequestMetaObject::default();
    meta.set_protocol_version(info.protocol_version.clone());
    meta.set_client_info(client.client_info);
    meta.set_client_capabilities(client.capabilities);
    if let Some(asked) = super::client::options(peer, asking).meta {
        meta.extend(asked);
    }
    Some(meta)
}

/// Reads a posted call's reply stream to its answer.
async fn read_posted<S: CallerSide>(
    mut exchange: Exchange,
    progress: bool,
    side: &mut S,
) -> Result<Option<ServerResult>, ServiceError> {
    loop {
        let event = tokio::select! {
            event = exchange.next() => event?,
            // Dropped unanswered, the exchange tells the upstream.
            () = side.cancelled() => return Ok(None),
        };
        match event {
            Event::Answer(answer) => return Ok(Some(answer?)),
            Event::Message(message) => {
                // Rare: only this needs a poster of its own (the exchange is not `Sync`).
                let to = exchange.poster().clone();
                sort(message, progress, &to, side).await;
            }
        }
    }
}

/// What the upstream sent on a call's stream besides the answer: progress (if the caller asked
/// for it) and log messages go to the caller, a `ping` is answered here, any other request goes
/// to the caller's side. Anything else, or anything malformed, is dropped.
async fn sort<S: CallerSide>(message: Value, progress: bool, to: &Poster, side: &mut S) {
    let method = message.get("method").and_then(Value::as_str);
    let params = || message.get("params").cloned().unwrap_or(Value::Null);
    match (method, message.get("id")) {
        (Some("notifications/progress"), None) if progress => {
            if let Ok(p) = serde_json::from_value(params()) {
                side.notify(Notice::Progress(p)).await;
            }
        }
        (Some("notifications/message"), None) => {
            if let Ok(p) = serde_json::from_value(params()) {
                side.notify(Notice::Log(p)).await;
            }
        }
        (Some("ping"), Some(id)) => {
            to.reply(&json!({"jsonrpc": "2.0", "id": id, "result": {}}))
                .await;
        }
        (Some(_), Some(_)) => {
            let to = to.clone();
            side.ask(Ask { message, to }).await;
        }
        _ => {}
    }
}

/// Sends the call through rmcp's client: progress comes back through the session's relay
/// under rmcp's token, mapped to the caller's; a 2026-07-28 upstream's input-required results
/// are settled through the caller (see `relay::settle`).
async fn through_peer<S: CallerSide>(
    peer: &Peer<RoleClient>,
    relay: &Relay,
    call: ToolCall,
    side: &mut S,
) -> Result<Option<ServerResult>, ServiceError> {
    let ToolCall {
        params,
        progress,
        asking,
        linger,
        held,
    } = call;
    let again = params.clone();
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = peer
        .send_request_with_option(request, super::client::options(peer, asking))
        .await?;
    let token = handle.progress_token.clone();
    // Dropped before the answer (cancelled, timed out), the guard tells the upstream.
    let mut unawaited = Unawaited {
        peer: peer.clone(),
        id: Some(handle.id.clone()),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let wants_progress = progress.is_some();
    match progress {
        Some(wanted) => relay.map_progress(token.clone(), wanted, tx),
        None => drop(tx),
    }
    let answer = handle.await_response();
    tokio::pin!(answer);
    let answer = loop {
        tokio::select! {
            biased;
            Some(p) = rx.recv() => side.notify(Notice::Progress(p)).await,
            a = &mut answer => break a,
            () = side.cancelled() => {
                relay.unmap_progress(&token);
                return Ok(None);
            }
        }
    };
    unawaited.id = None;
    if linger || wants_progress {
        let grace = tokio::time::sleep(LINGER);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                biased;
                Some(p) = rx.recv() => side.notify(Notice::Progress(p)).await,
                () = &mut grace => break,
            }
        }
    }
    relay.unmap_progress(&token);
    while let Ok(p) = rx.try_recv() {
        side.notify(Notice::Progress(p)).await;
    }
    super::client::settle(peer, relay, again, answer?, held.as_ref(), asking)
        .await
        .map(Some)
}

/// A request sent through rmcp's client whose answer is awaited: dropped before it comes, it
/// tells the upstream with `notifications/cancelled`, so that its tool stops too.
struct Unawaited {
    peer: Peer<RoleClient>,
    id: Option<rmcp::model::RequestId>,
}

impl Drop for Unawaited {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let peer = self.peer.clone();
        runtime.spawn(async move {
            let cancelled = CancelledNotification::new(CancelledNotificationParam::new(
                Some(id),
                Some("the gateway's caller no longer waits for the call".into()),
            ));
            let _ = peer.send_notification(cancelled.into()).await;
        });
    }
}

/// Keeps progress tokens, drops the per-request protocol keys of the downstream session.
pub(crate) fn forward_meta(meta: Option<RequestMetaObject>) -> Option<RequestMetaObject> {
    let mut meta = meta?;
    meta.0
        .0
        .retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
    (!meta.0.0.is_empty()).then_some(meta)
}

/// The trace context an upstream request carries in `meta`. The caller's `traceparent`,
/// `tracestate` and `baggage` go on (from `meta`, else from `carried`, the `_meta` rmcp's
/// server side kept apart). When a recorder takes the gateway's spans (`observed`'s), the
/// upstream is told instead a new child of the gateway's span of the caller's request as the
/// parent of its own: that span and its parent's id are returned.
pub(crate) fn traced(
    meta: &mut Option<RequestMetaObject>,
    observed: Option<&crate::metrics::Observed>,
    carried: Option<&rmcp::model::MetaObject>,
) -> Option<(crate::metrics::SpanContext, [u8; 8])> {
    if let Some(carried) = carried {
        for key in ["traceparent", "tracestate", "baggage"] {
            let Some(value) = carried.0.get(key) else {
                continue;
            };
            let own = &mut meta.get_or_insert_with(RequestMetaObject::default).0.0;
            if !own.contains_key(key) {
                own.insert(key.to_owned(), value.clone());
            }
        }
    }
    let (ours, _) = observed.filter(|o| o.records_spans())?.span();
    let span = ours.child();
    meta.get_or_insert_with(RequestMetaObject::default)
        .set_traceparent(span.traceparent());
    Some((span, ours.span_id))
}

/// What the gateway makes of a result it relays. An upstream on an older protocol sends results
/// without `resultType`; protocol 2026-07-28 requires it on every result the gateway returns
/// (rmcp drops it again for older callers). And the upstream's own identity
/// (`io.modelcontextprotocol/serverInfo` in `_meta`) is removed: the caller speaks to the
/// gateway and learns nothing of the servers behind it from a result.
pub(crate) fn relayed(
    result_type: &mut Option<rmcp::model::ResultType>,
    meta: &mut Option<rmcp::model::MetaObject>,
) {
    result_type.get_or_insert(rmcp::model::ResultType::COMPLETE);
    if let Some(m) = meta {
        m.remove("io.modelcontextprotocol/serverInfo");
        if m.is_empty() {
            *meta = None;
        }
    }
}

/// A tool result as the caller gets it (see [`relayed`]); any other result is not one a
/// `tools/call` may have.
pub(crate) fn tool_result(result: ServerResult) -> Result<CallToolResult, ServiceError> {
    match result {
        ServerResult::CallToolResult(mut r) => {
            relayed(&mut r.result_type, &mut r.meta);
            Ok(r)
        }
        _ => Err(ServiceError::UnexpectedResponse),
    }
}
