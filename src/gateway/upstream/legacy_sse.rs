//! The client side of the legacy HTTP+SSE transport (protocol 2024-11-05), which rmcp 3.11 no
//! longer ships: a GET event stream that first announces an `endpoint`, then carries the
//! server's messages; the client POSTs its messages to that endpoint.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_channel::mpsc;
use futures_util::{SinkExt, Stream, StreamExt};
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};

use crate::protocol::sse;

/// The largest event accepted from an upstream.
const MAX_EVENT: usize = 16 << 20;

/// Messages from the server; stops the background reader when dropped.
pub(crate) struct Incoming {
    rx: mpsc::Receiver<ServerJsonRpcMessage>,
    reader: tokio::task::AbortHandle,
}

impl Stream for Incoming {
    type Item = ServerJsonRpcMessage;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_next_unpin(cx)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Opens the event stream, waits for the endpoint, and returns a sink/stream transport.
pub(crate) async fn connect(
    http: reqwest::Client,
    url: String,
    headers: HashMap<HeaderName, HeaderValue>,
) -> Result<(mpsc::Sender<ClientJsonRpcMessage>, Incoming), String> {
    let base =
        reqwest::Url::parse(&url).map_err(|_| "the sse url is not a valid URL".to_owned())?;
    let mut get = http
        .get(base.clone())
        .header(http::header::ACCEPT, "text/event-stream");
    for (k, v) in &headers {
        get = get.header(k, v);
    }
    let response = get
        .send()
        .await
        .map_err(|e| match crate::tls::failure(&e) {
            Some(tls) => format!("cannot open the event stream: {tls}"),
            None => format!("cannot open the event stream: {}", e.without_url()),
        })?;
    if !response.status().is_success() {
        return Err(format!("the event stream answered {}", response.status()));
    }
    let (endpoint_tx, endpoint_rx) = tokio::sync::oneshot::channel::<reqwest::Url>();
    let (mut to_client, from_server) = mpsc::channel::<ServerJsonRpcMessage>(64);
    let stream_base = base.clone();
    let reader = tokio::spawn(async move {
        let base = stream_base;
        let mut endpoint_tx = Some(endpoint_tx);
        let mut framer = sse::SseFramer::new(MAX_EVENT);
        let mut body = response.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            framer.push(&chunk);
            loop {
                let event = match framer.next_event() {
                    Ok(Some(e)) => e,
                    Ok(None) => break,
                    Err(_) => return, // an oversized event ends the session
                };
                let Some(data) = sse::event_data(&event) else {
                    continue;
                };
                match sse::event_field(&event, "event").unwrap_or("message") {
                    "endpoint" => {
                        if let (Some(tx), Ok(url)) = (endpoint_tx.take(), base.join(data.trim())) {
                            let _ = tx.send(url);
                        }
                    }
                    "message" => {
                        if let Ok(message) = serde_json::from_str::<ServerJsonRpcMessage>(&data)
                            && to_client.send(message).await.is_err()
                        {
                            return;
                        }
                    }
                    _ => {}
                }
            }
        }
    });
    let endpoint = tokio::time::timeout(Duration::from_secs(10), endpoint_rx)
        .await
        .map_err(|_| "the event stream announced no endpoint".to_owned())?
        .map_err(|_| "the event stream ended before announcing an endpoint".to_owned())?;
    if endpoint.origin() != base.origin() {
        reader.abort();
        return Err(
            "the announced endpoint is on another origin; refusing to send messages there"
                .to_owned(),
        );
    }
    let (to_server, mut outgoing) = mpsc::channel::<ClientJsonRpcMessage>(64);
    let writer_http = http.clone();
    let stop_reading = reader.abort_handle();
    tokio::spawn(async move {
        while let Some(message) = outgoing.next().await {
            let Ok(body) = serde_json::to_vec(&message) else {
                continue;
            };
            let mut post = writer_http
                .post(endpoint.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body);
            for (k, v) in &headers {
                post = post.header(k, v);
            }
            for (k, v) in super::wire::message_trace(&message) {
                if !headers.contains_key(&k) {
                    post = post.header(k, v);
                }
            }
            match post.send().await {
                Ok(r) if r.status().is_success() => {}
                _ => {
                    // The session is gone (the server restarted, say): end the event stream
                    // too, so requests waiting for an answer fail now instead of timing out.
                    stop_reading.abort();
                    break;
                }
            }
        }
    });
    Ok((
        to_server,
        Incoming {
            rx: from_server,
            reader: reader.abort_handle(),
        },
    ))
}
