//! The endpoint's replies to its callers, shaped as rmcp shapes them: JSON-RPC replies in JSON
//! or as an event stream, results stripped of what a caller before 2026-07-28 does not know,
//! and rmcp's refusals of unreadable bodies.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{Full, StreamBody};
use rmcp::model::{ErrorData, ServerResult};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::protocol::sse;

pub(crate) type McpResponse = Response<BoxBody<Bytes, Infallible>>;

/// A JSON-RPC reply to the caller's request `id`.
pub(crate) fn reply_bytes(id: &RawValue, answer: Result<&ServerResult, &ErrorData>) -> Vec<u8> {
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
pub(crate) fn legacy(mut result: ServerResult) -> ServerResult {
    result.strip_result_type_for_legacy_peer();
    result.strip_non_object_output_for_legacy_peer();
    result
}

/// A JSON reply with its exact length.
pub(crate) fn json_reply(body: Vec<u8>) -> McpResponse {
    let mut r = Response::new(BoxBody::new(Full::new(Bytes::from(body))));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn stream_response(body: BoxBody<Bytes, Infallible>) -> McpResponse {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Sends the reply `run` ends with (if any) as the last event to `tx`.
pub(crate) async fn then_reply<F>(run: F, tx: tokio::sync::mpsc::Sender<Bytes>)
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
pub(crate) fn sse_response<D>(
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

pub(crate) fn refused_body(status: StatusCode) -> McpResponse {
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

/// The reply to a request the layers read but whose parameters are not what its method takes
/// (a `tools/call` whose `arguments` is not an object, say): a JSON-RPC "invalid params" error
/// for its id, in JSON.
pub(crate) fn unreadable(parts: &http::request::Parts) -> McpResponse {
    let id = parts
        .extensions
        .get::<crate::protocol::McpRequest>()
        .and_then(|head| head.id.as_ref())
        .map_or(
            serde_json::Value::Null,
            crate::protocol::RequestId::to_value,
        );
    let id = serde_json::value::to_raw_value(&id)
        .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).expect("null is JSON"));
    let error = ErrorData::invalid_params("the parameters are not those of the method", None);
    json_reply(reply_bytes(&id, Err(&error)))
}
