//! The body that watches a streamed tool call reply (server-sent events, or an HTTP failure),
//! runs the hook when the reply is seen, and completes the event.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde_json::Value;

use super::event::{CostHook, Outcome, Pending};
use super::hook::{self, HookFuture};
use super::reply::replaced;
use crate::protocol::{Era, RequestId, sse};

pub(crate) enum Mode {
    /// Not a readable reply (an HTTP error, or an unknown type): pass through, settle at the end.
    Status(u16),
    Sse {
        framer: sse::SseFramer,
    },
    /// Done observing: pass the rest through.
    Through,
}

impl Mode {
    pub(crate) fn sse(limit: usize) -> Self {
        Self::Sse {
            framer: sse::SseFramer::new(limit),
        }
    }
}

/// The reply held back while the hook decides.
enum Held {
    /// Send these bytes as they are.
    Raw(Bytes),
    /// An event carrying the reply (read whole if the hook reads replies); replaced if the
    /// hook says so.
    Event(Option<Value>, Bytes),
}

pin_project! {
    pub(crate) struct CostBody<B, H> {
        #[pin]
        inner: B,
        mode: Mode,
        pending: Pending,
        id: RequestId,
        era: Era,
        hook: Arc<H>,
        // A Mutex only to make the body Sync (boxed bodies must be); it is reached through
        // `&mut` and never contended.
        hook_fut: Mutex<Option<HookFuture>>,
        held: Option<Held>,
        after: BytesMut,
        ready: VecDeque<Bytes>,
        done: bool,
    }
}

impl<B, H: CostHook> CostBody<B, H> {
    pub(crate) fn new(
        inner: B,
        mode: Mode,
        pending: Pending,
        (id, era): (RequestId, Era),
        hook: Arc<H>,
    ) -> Self {
        Self {
            inner,
            mode,
            pending,
            id,
            era,
            hook,
            hook_fut: Mutex::new(None),
            held: None,
            after: BytesMut::new(),
            ready: VecDeque::new(),
            done: false,
        }
    }
}

fn start_hook<H: CostHook>(
    pending: &mut Pending,
    hook: &Arc<H>,
    slot: &mut Mutex<Option<HookFuture>>,
    outcome: Outcome,
    reply: Option<&Value>,
) {
    if let Some(event) = pending.settle(outcome) {
        *slot
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Box::pin(hook::run(&**hook, event, reply)));
    }
}

impl<B, H> Body for CostBody<B, H>
where
    B: Body,
    B::Data: Buf,
    H: CostHook,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            // What came before the held reply goes out at once.
            if let Some(chunk) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            // A hook in flight holds the reply (and all after it) back until it decides.
            let slot = this
                .hook_fut
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(fut) = slot.as_mut() {
                let decided = std::task::ready!(fut.as_mut().poll(cx));
                *slot = None;
                let bytes = match (this.held.take(), decided.replace_result) {
                    (Some(Held::Event(v, raw)), Some(r)) => {
                        let data = sse::event_data(&raw).unwrap_or_default();
                        sse::replace_data(
                            &raw,
                            &replaced(v, data.as_bytes(), this.id, *this.era, r),
                        )
                    }
                    (Some(Held::Event(_, b) | Held::Raw(b)), _) => b,
                    (None, _) => Bytes::new(),
                };
                if !bytes.is_empty() {
                    this.ready.push_back(bytes);
                }
                if !this.after.is_empty() {
                    this.ready.push_back(this.after.split().freeze());
                }
                this.pending.commit(decided.cost);
                continue;
            }
            if *this.done {
                return Poll::Ready(None);
            }
            let frame = match std::task::ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    this.pending
                        .record(Outcome::TransportError { status: None }, None);
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    *this.done = true;
                    match std::mem::replace(this.mode, Mode::Through) {
                        Mode::Status(status) => {
                            let outcome = if (200..300).contains(&status) {
                                Outcome::Unknown
                            } else {
                                Outcome::TransportError {
                                    status: Some(status),
                                }
                            };
                            start_hook(this.pending, this.hook, this.hook_fut, outcome, None);
                        }
                        Mode::Sse { mut framer } => {
                            start_hook(
                                this.pending,
                                this.hook,
                                this.hook_fut,
                                Outcome::Unknown,
                                None,
                            );
                            if let Some(rest) = framer.finish() {
                                *this.held = Some(Held::Raw(rest));
                            }
                        }
                        Mode::Through => {}
                    }
                    continue;
                }
            };
            let mut data = match frame.into_data() {
                Ok(d) => d,
                Err(frame) => {
                    return Poll::Ready(Some(Ok(
                        frame.map_data(|mut d: B::Data| d.copy_to_bytes(d.remaining()))
                    )));
                }
            };
            let chunk = data.copy_to_bytes(data.remaining());
            match this.mode {
                Mode::Status(_) | Mode::Through if this.held.is_some() => {
                    this.after.extend_from_slice(&chunk)
                }
                Mode::Status(_) | Mode::Through => this.ready.push_back(chunk),
                Mode::Sse { framer } => {
                    framer.push(&chunk);
                    let mut before = BytesMut::new();
                    let mut overflowed = false;
                    loop {
                        match framer.next_event() {
                            Ok(Some(event)) => {
                                if this.held.is_some() {
                                    this.after.extend_from_slice(&event);
                                    continue;
                                }
                                let reply = sse::event_data(&event).and_then(|d| {
                                    super::reply::reply_to(
                                        d.as_bytes(),
                                        this.id,
                                        this.hook.wants_reply(),
                                    )
                                });
                                match reply {
                                    Some((outcome, v)) => {
                                        start_hook(
                                            this.pending,
                                            this.hook,
                                            this.hook_fut,
                                            outcome,
                                            v.as_ref(),
                                        );
                                        *this.held = Some(Held::Event(v, event));
                                    }
                                    None => before.extend_from_slice(&event),
                                }
                            }
                            Ok(None) => break,
                            Err(_) => {
                                // Too large to watch: pass the rest through unobserved.
                                if let Some(rest) = framer.finish() {
                                    if this.held.is_some() {
                                        this.after.extend_from_slice(&rest);
                                    } else {
                                        before.extend_from_slice(&rest);
                                    }
                                }
                                if this.held.is_none() {
                                    start_hook(
                                        this.pending,
                                        this.hook,
                                        this.hook_fut,
                                        Outcome::Unknown,
                                        None,
                                    );
                                }
                                overflowed = true;
                                break;
                            }
                        }
                    }
                    if this.held.is_some() || overflowed {
                        *this.mode = Mode::Through;
                    }
                    if !before.is_empty() {
                        this.ready.push_back(before.freeze());
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.ready.is_empty() && self.held.is_none() && self.after.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
