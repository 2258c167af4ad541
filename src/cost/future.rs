//! The response future of [`Cost`](super::Cost): a tool call's reply is watched, its hook run
//! and its event completed as the reply goes out (a JSON reply here, a stream by its body).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, header};
use serde_json::Value;

use super::body::{self, CostBody};
use super::event::{CostHook, HookDecision, Outcome, Pending};
use super::{hook, reply};
use crate::body::{Failing, Prefixed, ReplyBody};
use crate::future::{Post, PostProcess};
use crate::protocol::{self, Collected, Era, RequestId};

/// Wraps the reply of a tool call so the event is completed when it is seen.
pub(crate) struct Observe<H: CostHook> {
    call: Option<(Pending, RequestId, Era, Arc<H>, usize)>,
}

impl<H: CostHook> Observe<H> {
    /// Nothing to observe: not a `tools/call`.
    pub(crate) fn none() -> Self {
        Self { call: None }
    }

    /// The call of `pending`, answering request `id` of a caller of `era`; replies past
    /// `limit` bytes are passed on unread.
    pub(crate) fn call(
        pending: Pending,
        (id, era): (RequestId, Era),
        hook: Arc<H>,
        limit: usize,
    ) -> Self {
        Self {
            call: Some((pending, id, era, hook, limit)),
        }
    }
}

impl<H: CostHook> fmt::Debug for Observe<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observe").finish_non_exhaustive()
    }
}

crate::future::layer_future!(
    /// Response future of [`Cost`]: a tool call's outcome is recorded, and its hook run, as
    /// the reply goes out.
    Observe<H>, H: CostHook; where B: ReplyBody + Sync, B::Error: Send + Sync,
);

impl<B, E, H> PostProcess<B, E> for Observe<H>
where
    B: ReplyBody + Sync,
    B::Error: Send + Sync,
    H: CostHook,
{
    fn response(self, response: Response<B>) -> Post<B> {
        let Some((pending, id, era, hook, limit)) = self.call else {
            return Post::Ready(response);
        };
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE);
        let json = protocol::media_is(content_type, "application/json");
        let sse = protocol::media_is(content_type, "text/event-stream");
        if status.is_success() && json {
            return Post::Later(Box::pin(json_reply(
                response, pending, id, era, hook, limit,
            )));
        }
        let (mut parts, body) = response.into_parts();
        let mode = if status.is_success() && sse {
            parts.headers.remove(header::CONTENT_LENGTH);
            body::Mode::sse(limit)
        } else {
            body::Mode::Status(status.as_u16())
        };
        Post::Ready(Response::from_parts(
            parts,
            B::wrap(CostBody::new(body, mode, pending, (id, era), hook)),
        ))
    }

    fn error(self, _: &E) {
        if let Some((mut pending, ..)) = self.call {
            pending.record(Outcome::TransportError { status: None }, None);
        }
    }
}

/// A JSON reply to a tool call: read whole (bounded), its outcome noted, the hook run, and sent
/// on with an exact `content-length` (never turned into a chunked reply).
async fn json_reply<B, H>(
    response: Response<B>,
    mut pending: Pending,
    id: RequestId,
    era: Era,
    hook: Arc<H>,
    limit: usize,
) -> Response<B>
where
    B: ReplyBody + Sync,
    B::Error: Send + Sync,
    H: CostHook,
{
    let (mut parts, body) = response.into_parts();
    match protocol::collect_up_to(body, limit).await {
        Collected::Whole(bytes) => {
            let (outcome, reply) = read_reply(&bytes, &id, hook.wants_reply());
            let decision = match pending.settle(outcome) {
                Some(event) => hook::run(&*hook, event, reply.as_ref()).await,
                None => HookDecision::default(),
            };
            let bytes = match decision.replace_result {
                Some(result) => Bytes::from(reply::replaced(reply, &bytes, &id, era, result)),
                None => bytes,
            };
            pending.commit(decision.cost);
            // The body has an exact size, from which the server frames it; a length the inner
            // service gave is kept when it is still right and corrected when it is not.
            let stated = parts.headers.get(header::CONTENT_LENGTH);
            if stated
                .is_some_and(|v| v.to_str().ok().and_then(|v| v.parse().ok()) != Some(bytes.len()))
            {
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, bytes.len().into());
            }
            Response::from_parts(parts, B::from_bytes(bytes))
        }
        Collected::TooLarge { head, rest } => {
            // Too large to read: pass it on unchanged (same bytes, same length), unobserved.
            if let Some(event) = pending.settle(Outcome::Unknown) {
                let decision = hook::run(&*hook, event, None).await;
                pending.commit(decision.cost);
            }
            Response::from_parts(parts, B::wrap(Prefixed::new(head, rest)))
        }
        Collected::Failed(e) => {
            pending.record(Outcome::TransportError { status: None }, None);
            Response::from_parts(parts, B::wrap(Failing(Some(e))))
        }
    }
}

/// How a reply ended, and (when the hook reads replies) the reply itself.
fn read_reply(bytes: &[u8], id: &RequestId, full: bool) -> (Outcome, Option<Value>) {
    reply::reply_to(bytes, id, full).unwrap_or((Outcome::Unknown, None))
}
