//! The gateway's own requests to an upstream and the replies to them, as text: a request
//! serialised straight from its parameters, a reply stream read whole or an event at a time,
//! and a reply decoded straight from its text as the result expected (no untagged enum, no
//! `Value` tree).

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use rmcp::model::{CallToolResult, ErrorData, ServerResult};
use rmcp::service::ServiceError;
use serde_json::Value;

use crate::protocol::sse;

/// A whole JSON reply, at most [`MAX_REPLY`] bytes.
pub(crate) async fn read_all(body: &mut Stream) -> Result<Vec<u8>, ServiceError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.map_err(|_| gone())?);
        if bytes.len() > MAX_REPLY {
            return Err(unreadable("larger than 16 MiB"));
        }
    }
    Ok(bytes)
}

pub(crate) use super::http_clients::Stream;

/// Reads what is left of a reply stream after its answer, in the background, so that its
/// connection goes back to the pool: a body dropped before its end closes the connection, and
/// the next request pays for a new one (a TLS handshake, over https). An upstream that keeps
/// the stream open longer than a few seconds after its answer loses the connection instead.
pub(crate) fn finish(mut body: Stream) {
    tokio::spawn(async move {
        let drained = async {
            let mut read = 0;
            while let Some(Ok(chunk)) = body.next().await {
                read += chunk.len();
                if read > MAX_REPLY {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drained).await;
    });
}

/// The largest reply (or single event) read from an upstream.
pub(crate) const MAX_REPLY: usize = 16 << 20;

/// Ids of our own requests on a session rmcp also uses (rmcp numbers its own).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A request of ours, serialised straight from its parameters (no `Value` in between), and
/// its id.
pub(crate) fn encode<P: serde::Serialize>(
    method: &'static str,
    params: &P,
) -> Option<(String, Vec<u8>)> {
    #[derive(serde::Serialize)]
    struct Request<'a, P> {
        jsonrpc: &'static str,
        id: &'a str,
        method: &'static str,
        params: &'a P,
    }
    let id = format!("gk-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let body = serde_json::to_vec(&Request {
        jsonrpc: "2.0",
        id: &id,
        method,
        params,
    })
    .ok()?;
    Some((id, body))
}

/// The next event on an event stream, read further as needed.
pub(crate) async fn next_event(
    framer: &mut sse::SseFramer,
    body: &mut Stream,
) -> Result<bytes::Bytes, ServiceError> {
    loop {
        if let Some(event) = framer
            .next_event()
            .map_err(|_| unreadable("event too large"))?
        {
            return Ok(event);
        }
        match body.next().await {
            Some(chunk) => framer.push(&chunk.map_err(|_| gone())?),
            None => return Err(gone()),
        }
    }
}

/// W3C trace context headers: `traceparent`, `tracestate`, `baggage`.
pub(crate) type TraceHeaders = Vec<(http::HeaderName, http::HeaderValue)>;

/// The trace context headers of a request whose `_meta` is `meta`: its `traceparent`, when it
/// is a well-formed one, and beside it its `tracestate` and `baggage` (within the W3C limits of
/// 512 and 8,192 bytes). Anything malformed is left out; without a `traceparent`, nothing.
pub(crate) fn trace_headers(meta: Option<&rmcp::model::RequestMetaObject>) -> TraceHeaders {
    let Some(meta) = meta else {
        return Vec::new();
    };
    let Some(parent) = meta
        .get_traceparent()
        .filter(|tp| crate::metrics::SpanContext::from_traceparent(tp).is_some())
        .and_then(|tp| http::HeaderValue::from_str(tp).ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(3);
    out.push((http::HeaderName::from_static("traceparent"), parent));
    for (name, value, max) in [
        ("tracestate", meta.get_tracestate(), 512),
        ("baggage", meta.get_baggage(), 8_192),
    ] {
        if let Some(value) = value.filter(|v| v.len() <= max)
            && let Ok(value) = http::HeaderValue::from_str(value)
        {
            out.push((http::HeaderName::from_static(name), value));
        }
    }
    out
}

/// The trace context headers of `message` when it is a request the gateway passes a context
/// on with: a call, a prompt, a read, a completion (see [`trace_headers`]).
pub(crate) fn message_trace(message: &rmcp::model::ClientJsonRpcMessage) -> TraceHeaders {
    use rmcp::model::ClientRequest as R;
    let rmcp::model::JsonRpcMessage::Request(r) = message else {
        return Vec::new();
    };
    let meta = match &r.request {
        R::CallToolRequest(r) => r.params.meta.as_ref(),
        R::GetPromptRequest(r) => r.params.meta.as_ref(),
        R::ReadResourceRequest(r) => r.params.meta.as_ref(),
        R::CompleteRequest(r) => r.params.meta.as_ref(),
        _ => None,
    };
    trace_headers(meta)
}

/// The upstream said the session is gone: the pool opens a new one next time.
pub(crate) fn gone() -> ServiceError {
    ServiceError::TransportClosed
}

pub(crate) fn unreadable(what: &str) -> ServiceError {
    ServiceError::McpError(ErrorData::internal_error(
        format!("the upstream's reply could not be read: {what}"),
        None,
    ))
}

/// The reply to the call `id` in `text`, if it is that reply. A handshake upstream answers a
/// call with a tool result, decoded straight as one; a 2026-07-28 upstream may answer with
/// another kind of result (a round of input required, a task), read as such when the text
/// is not a tool result.
pub(crate) fn decode_answer(
    id: &str,
    latest: bool,
    text: &str,
) -> Option<Result<ServerResult, ServiceError>> {
    let answer = |r: Result<CallToolResult, _>| r.map(ServerResult::CallToolResult);
    match serde_json::from_str::<Typed<CallToolResult>>(text) {
        Ok(reply) => reply.of(id).map(answer),
        // Read a second time only when it is not a tool result.
        Err(_) if latest => decode_reply::<ServerResult>(id, text),
        Err(_) => decode_reply::<CallToolResult>(id, text).map(answer),
    }
}

/// A reply to our request, decoded as `R` straight from its text.
#[derive(serde::Deserialize)]
#[serde(bound = "R: serde::de::DeserializeOwned")]
pub(crate) struct Typed<R> {
    id: Value,
    #[serde(default)]
    result: Option<R>,
    #[serde(default)]
    error: Option<ErrorData>,
}

/// Just enough of a message to tell what it is.
#[derive(serde::Deserialize)]
pub(crate) struct Head {
    #[serde(default)]
    pub(crate) id: Option<Value>,
    #[serde(default)]
    pub(crate) method: Option<String>,
}

/// The reply to our request `id` in `text`, decoded as `R` straight from the text (no `Value`
/// tree); `None` when `text` is not that reply. A reply of ours that cannot be read fails the
/// request.
pub(crate) fn decode_reply<R: serde::de::DeserializeOwned>(
    id: &str,
    text: &str,
) -> Option<Result<R, ServiceError>> {
    match serde_json::from_str::<Typed<R>>(text) {
        Ok(reply) => reply.of(id),
        Err(_) => {
            let ours = serde_json::from_str::<Head>(text).is_ok_and(|h| {
                h.method.is_none() && h.id.as_ref().and_then(Value::as_str) == Some(id)
            });
            ours.then(|| Err(unreadable("not the expected result")))
        }
    }
}

impl<R> Typed<R> {
    /// Its result or error, if it is the reply to our request `id`.
    fn of(self, id: &str) -> Option<Result<R, ServiceError>> {
        if self.id.as_str() != Some(id) {
            return None;
        }
        Some(match (self.result, self.error) {
            (_, Some(e)) => Err(ServiceError::McpError(e)),
            (Some(r), None) => Ok(r),
            (None, None) => Err(unreadable("neither a result nor an error")),
        })
    }
}
