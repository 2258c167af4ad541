//! `tools/call` answered by the endpoint itself: the call goes to its upstream through
//! `tool_call`, and the caller's side is the response the endpoint writes.
//!
//! Like rmcp, it answers in JSON when the answer comes first (with `json_response`) and
//! otherwise streams: the upstream's progress (when asked for) and log messages are passed on
//! as they come, then the answer. The upstream's requests of its client (sampling, elicitation,
//! roots) go to the caller on the same stream under an id of the gateway's, and the caller's
//! answer, posted on its session, goes back to the upstream (see `sessions`). A
//! stateless caller cannot answer (its answer would have no session to come back on): there a
//! request is refused at once, where rmcp's stateless server would let the upstream wait for
//! its timeout.

#![allow(deprecated)] // log messages are deprecated in the newest protocol, still relayed

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use http_body_util::combinators::BoxBody;
use rmcp::model::{CallToolRequestParams, ErrorData, LoggingLevel, ServerResult};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::reply::{
    McpResponse, json_reply, legacy, reply_bytes, sse_response, stream_response, then_reply,
    unreadable,
};
use super::route::{CallPlan, Endpoint};
use super::sessions::{Running, Sessions};
use crate::gateway::handler::aggregate::{Asked, Upstreams};
use crate::gateway::shared::GatewayState;
use crate::gateway::upstream::tool_call::{self, Ask, CallerSide, Notice, ToolCall, forward_meta};
use crate::metrics::Observed;
use crate::protocol::sse;

/// The parts of the posted message the endpoint reads.
#[derive(serde::Deserialize)]
struct Envelope {
    id: Box<RawValue>,
    params: CallToolRequestParams,
}

/// The caller's end of a call on the endpoint: the event stream the endpoint writes.
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

/// Answers the `tools/call` the endpoint took (see `route`), whose body the layers read as
/// `bytes`.
pub(crate) async fn answer(
    shared: &Arc<GatewayState>,
    endpoint: &Endpoint,
    plan: CallPlan,
    parts: &http::request::Parts,
    bytes: &[u8],
) -> McpResponse {
    let Ok(Envelope { id, params }) = serde_json::from_slice::<Envelope>(bytes) else {
        return unreadable(parts);
    };
    let CallPlan {
        session,
        caller,
        server,
        bare,
    } = plan;
    let session = match (&endpoint.sessions, session) {
        (Some(sessions), Some(session)) => Some((Arc::clone(sessions), session)),
        _ => None,
    };
    let running = session.as_ref().map(|(sessions, session)| {
        let key = serde_json::from_str::<Value>(id.get())
            .map_or_else(|_| id.get().to_owned(), |v| v.to_string());
        sessions.run(session, key)
    });
    let progress = params.meta.as_ref().and_then(|m| m.get_progress_token());
    let mut params = params;
    params.name = bare.into();
    params.meta = forward_meta(params.meta.take());
    let span = tool_call::traced(&mut params.meta, parts.extensions.get::<Observed>(), None);
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
        .and_then(|(_, session)| shared.downstream(session));
    let shared = Arc::clone(shared);
    // The whole call, to the bytes of its reply (none when the caller cancelled it).
    let run = async move {
        let answered = Upstreams::of(&shared, caller)
            .one(
                downstream.as_ref(),
                &server,
                Asked {
                    method: "tools/call",
                    span,
                },
                |peer, relay| {
                    let side = &mut side;
                    // As for a handshake caller through rmcp: the log messages of an upstream that
                    // takes a level per request, at the level set, or at every level.
                    let mut call = call;
                    call.asking.log_level = Some(relay.log_level().unwrap_or(LoggingLevel::Debug));
                    async move {
                        match tool_call::call_tool(peer, relay, call, side).await? {
                            Some(result) => tool_call::tool_result(result).map(Some),
                            None => Ok(None),
                        }
                    }
                },
            )
            .await;
        let answer = match answered {
            Ok(None) => return None,
            Ok(Some(result)) => Ok(legacy(ServerResult::CallToolResult(result))),
            Err(error) => Err(error),
        };
        Some(reply_bytes(&id, answer.as_ref()))
    };
    if !endpoint.json_response {
        // An event stream from the start, as rmcp's: the caller has its headers (and can
        // cancel) however long the upstream takes before its first word.
        return sse_response(None, then_reply(run, tx), rx);
    }
    // JSON when the answer comes before anything else for the caller, else a stream.
    let mut run = Box::pin(run);
    let first = tokio::select! {
        biased;
        reply = &mut run => Ok(reply),
        Some(event) = rx.recv() => Err(event),
    };
    match first {
        Ok(reply) if rx.is_empty() => match reply {
            Some(reply) => json_reply(reply),
            None => stream_response(BoxBody::new(Full::new(Bytes::new()))),
        },
        Ok(reply) => sse_response(None, then_reply(std::future::ready(reply), tx), rx),
        Err(event) => sse_response(Some(event), then_reply(run, tx), rx),
    }
}
