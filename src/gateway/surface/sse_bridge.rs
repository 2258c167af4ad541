//! The legacy HTTP+SSE endpoint (protocol 2024-11-05) as a bridge: `GET /sse` opens an event
//! stream that announces `/message?sessionId=…`; each message posted there goes through the
//! same layered stack as `/mcp`, and its reply is written to the caller's event stream. The
//! stream belongs to the key that opened it: a post with another key is refused like an unknown
//! session.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Query, State};
use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::{SinkExt, Stream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::combinators::BoxBody;
use serde::Deserialize;
use serde_json::{Value, json};

use super::internal::{McpResponse, Surface, internal_call, json_response};
use crate::body::ReplyBody;
use crate::engine::KeyDigest;
use crate::protocol::sse;

struct Bridge {
    owner: Option<KeyDigest>,
    tx: mpsc::Sender<Bytes>,
    /// The protocol version the caller's `initialize` negotiated.
    protocol: Option<String>,
}

/// What the bridge's endpoints share: the way in, and the open streams.
#[derive(Clone)]
pub(crate) struct BridgeState {
    surface: Surface,
    bridges: Arc<Bridges>,
}

impl BridgeState {
    pub(crate) fn new(surface: Surface) -> Self {
        Self {
            surface,
            bridges: Arc::default(),
        }
    }
}

/// Open legacy streams by session id.
#[derive(Default)]
struct Bridges {
    open: Mutex<HashMap<String, Bridge>>,
}

impl Bridges {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bridge>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, Infallible>> + Send>>;

/// The event stream; forgets its session when the caller goes away.
struct Events {
    // A Mutex only so the body is Sync; reached through `&mut`, never contended.
    inner: Mutex<BoxStream>,
    id: String,
    bridges: Arc<Bridges>,
}

impl Stream for Events {
    type Item = Result<Bytes, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
            .poll_next(cx)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.bridges.lock().remove(&self.id);
    }
}

pub(crate) async fn open(State(state): State<BridgeState>, headers: HeaderMap) -> McpResponse {
    // Authenticate (and check any scope) exactly as /mcp would, with a ping.
    let ping = json!({"jsonrpc": "2.0", "id": "sse-open", "method": "ping"});
    if let Err(refusal) =
        internal_call(&state.surface, &headers, None, Some("2025-06-18"), &ping).await
    {
        return refusal;
    }
    let owner = match (state.surface.digest)(&headers) {
        Ok(d) => d,
        Err(r) => return r.into_rest_response(),
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    state.bridges.lock().insert(
        id.clone(),
        Bridge {
            owner,
            tx,
            protocol: None,
        },
    );
    let endpoint = Bytes::from(format!(
        "event: endpoint\ndata: /message?sessionId={id}\n\n"
    ));
    let keepalive = futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_secs(15)).await;
        Some((Bytes::from_static(b": keep-alive\n\n"), ()))
    });
    let stream = futures_util::stream::once(async move { endpoint })
        .chain(futures_util::stream::select(rx, keepalive))
        .map(Ok::<_, Infallible>);
    let events = Events {
        inner: Mutex::new(Box::pin(stream)),
        id,
        bridges: Arc::clone(&state.bridges),
    };
    let body = http_body_util::StreamBody::new(events.map(|r| r.map(http_body::Frame::data)));
    let mut response = McpResponse::new(BoxBody::new(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(Deserialize)]
pub(crate) struct SessionQuery {
    #[serde(rename = "sessionId", alias = "session_id")]
    session_id: String,
}

pub(crate) async fn post(
    State(state): State<BridgeState>,
    Query(q): Query<SessionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> McpResponse {
    let not_found = || {
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "Session not found"}),
        )
    };
    let owner = match (state.surface.digest)(&headers) {
        Ok(d) => d,
        Err(r) => return r.into_rest_response(),
    };
    let (mut tx, protocol) = {
        let open = state.bridges.lock();
        match open.get(&q.session_id) {
            Some(b) if b.owner == owner => (b.tx.clone(), b.protocol.clone()),
            _ => return not_found(),
        }
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "the body is not JSON"}),
        );
    };
    match internal_call(
        &state.surface,
        &headers,
        None,
        protocol.as_deref(),
        &message,
    )
    .await
    {
        Ok(Some((reply, _))) => {
            if let Some(v) = reply
                .pointer("/result/protocolVersion")
                .and_then(Value::as_str)
                && message.get("method").and_then(Value::as_str) == Some("initialize")
                && let Some(b) = state.bridges.lock().get_mut(&q.session_id)
            {
                b.protocol = Some(v.to_owned());
            }
            let event = sse::message_event(&serde_json::to_string(&reply).expect("serialises"));
            if tx.send(event).await.is_err() {
                return not_found();
            }
        }
        Ok(None) => {}
        Err(refusal) => return refusal,
    }
    let mut r = McpResponse::new(BoxBody::from_bytes(Bytes::from_static(b"Accepted")));
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}
