//! Filtering list replies: a whole JSON reply, or the one matching server-sent event.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde_json::Value;

use super::filter::ListFilter;
use crate::engine::Grant;
use crate::gatekeeper::Gatekeeper;
use crate::protocol::{jsonrpc, sse};

pin_project! {
    /// Filters the server-sent event that carries the reply to one list request, as it
    /// streams; every other event passes through as it arrives.
    pub(crate) struct FilterBody<B> {
        #[pin]
        inner: B,
        framer: sse::SseFramer,
        target: Target,
        ready: VecDeque<Bytes>,
        done: bool,
    }
}

/// Which events a [`FilterBody`] rewrites.
pub(crate) enum Target {
    /// The reply to one list request (POST streams).
    Reply(ListFilter),
    /// Any list result, whatever it answers (GET streams, which may replay earlier replies).
    AnyList(Grant, Gatekeeper),
    /// The reply to one read of an MCP App's UI resource, held to its pin.
    AppRead(super::app_read::AppRead),
}

impl<B> FilterBody<B> {
    pub(crate) fn sse(inner: B, target: Target, max_event: usize) -> Self {
        Self {
            inner,
            framer: sse::SseFramer::new(max_event),
            target,
            ready: VecDeque::new(),
            done: false,
        }
    }
}

/// Rewrites one event if the target covers it. A `Reply` stream also filters any other list
/// result it carries (whatever its id), so nothing list-shaped passes a stream unfiltered.
fn rewrite_event(raw: Bytes, target: &Target) -> Bytes {
    match target {
        Target::Reply(filter) => match filter_event(raw, filter) {
            (bytes, true) => bytes,
            (bytes, false) => any_list_event(bytes, &filter.grant, &filter.gatekeeper),
        },
        Target::AnyList(grant, gk) => any_list_event(raw, grant, gk),
        Target::AppRead(read) => {
            let Some(data) = sse::event_data(&raw) else {
                return raw;
            };
            match read.check(&data) {
                Some(Some(refusal)) => sse::replace_data(&raw, &refusal),
                _ => raw,
            }
        }
    }
}

fn any_list_event(raw: Bytes, grant: &Grant, gk: &Gatekeeper) -> Bytes {
    let Some(data) = sse::event_data(&raw) else {
        return raw;
    };
    let Ok(mut v) = serde_json::from_str::<Value>(&data) else {
        return raw;
    };
    if !super::filter::filter_any_list(grant, gk, &mut v) {
        return raw;
    }
    sse::replace_data(
        &raw,
        &serde_json::to_string(&v).expect("a Value always serialises"),
    )
}

fn overflow(target: &Target) -> Value {
    match target {
        Target::Reply(filter) => too_large(filter),
        Target::AnyList(..) => jsonrpc::error(
            None,
            jsonrpc::code::INTERNAL_ERROR,
            "The server's reply was too large to filter",
        ),
        Target::AppRead(read) => jsonrpc::error(
            Some(&read.id),
            jsonrpc::code::INTERNAL_ERROR,
            "The server's reply was too large to check",
        ),
    }
}

/// The reply that replaces one too large to filter (fail closed: never passed on unfiltered).
pub(crate) fn too_large(filter: &ListFilter) -> Value {
    crate::decision_events::warn("a list reply was too large to filter; answered with an error");
    jsonrpc::error(
        Some(&filter.id),
        jsonrpc::code::INTERNAL_ERROR,
        "The server's reply was too large to filter",
    )
}

/// Filters one whole JSON reply; anything unreadable becomes an error (fail closed).
pub(crate) fn filter_json(bytes: Bytes, filter: &ListFilter) -> Bytes {
    let filtered = std::str::from_utf8(&bytes)
        .map_err(|_| super::text_filter::Unreadable)
        .and_then(|t| filter.apply_text(t));
    match filtered {
        Ok(Some(text)) => Bytes::from(text),
        // Not our reply by its id: still, a list in it is filtered (fail closed).
        Ok(None) => {
            let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
                return bytes;
            };
            if super::filter::filter_any_list(&filter.grant, &filter.gatekeeper, &mut v) {
                jsonrpc::to_bytes(&v)
            } else {
                bytes
            }
        }
        Err(_) => unreadable(filter),
    }
}

fn unreadable(filter: &ListFilter) -> Bytes {
    jsonrpc::to_bytes(&jsonrpc::error(
        Some(&filter.id),
        jsonrpc::code::INTERNAL_ERROR,
        "The server's reply could not be read",
    ))
}

/// Filters one event if it carries our reply. Returns the bytes to send and whether it matched.
fn filter_event(raw: Bytes, filter: &ListFilter) -> (Bytes, bool) {
    let Some(data) = sse::event_data(&raw) else {
        return (raw, false);
    };
    match filter.apply_text(&data) {
        Ok(Some(json)) => (sse::replace_data(&raw, &json), true),
        Ok(None) => (raw, false),
        Err(_) => {
            // Unreadable to the strict parser. If a lenient one sees our reply in it, it is
            // replaced by an error (fail closed); anything else is another event, passed on.
            let ours = serde_json::from_str::<Value>(&data)
                .is_ok_and(|v| v.get("id").is_some_and(|id| filter.id.matches(id)));
            if ours {
                let err = String::from_utf8(unreadable(filter).to_vec()).expect("JSON is UTF-8");
                (sse::replace_data(&raw, &err), true)
            } else {
                (raw, false)
            }
        }
    }
}

impl<B> Body for FilterBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            if let Some(chunk) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            let frame = match std::task::ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    *this.done = true;
                    if let Some(rest) = this.framer.finish() {
                        this.ready.push_back(rewrite_event(rest, this.target));
                    }
                    continue;
                }
            };
            let mut data = match frame.into_data() {
                Ok(d) => d,
                Err(frame) => {
                    // Trailers pass through untouched.
                    return Poll::Ready(Some(Ok(
                        frame.map_data(|mut d: B::Data| d.copy_to_bytes(d.remaining()))
                    )));
                }
            };
            let chunk = data.copy_to_bytes(data.remaining());
            this.framer.push(&chunk);
            let mut out = BytesMut::new();
            loop {
                match this.framer.next_event() {
                    Ok(Some(event)) => out.extend_from_slice(&rewrite_event(event, this.target)),
                    Ok(None) => break,
                    Err(_) => {
                        let err =
                            serde_json::to_string(&overflow(this.target)).expect("serialises");
                        out.extend_from_slice(&sse::message_event(&err));
                        *this.done = true;
                        break;
                    }
                }
            }
            if !out.is_empty() {
                this.ready.push_back(out.freeze());
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.ready.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
