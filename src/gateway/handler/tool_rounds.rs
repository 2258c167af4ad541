//! Tool calls of callers on protocol 2026-07-28, which forbids requests from server to client.
//!
//! Upstreams on an older protocol still ask their client for sampling, elicitation or roots in
//! the middle of a call. For a caller on the newest protocol the gateway keeps the upstream call
//! running, answers the caller with an `InputRequiredResult` that carries the upstream's
//! requests and an opaque `requestState`, and when the caller calls again with its
//! `inputResponses` and that state, hands the answers to the upstream and goes on waiting. The
//! state is random, names the caller's key, the server and the tool, and expires: it cannot be
//! used by another key or for another call. A request the caller did not declare the
//! capability for (in its request's `_meta`) fails the call with -32021 instead.
#![allow(deprecated)] // a caller's log level (deprecated by SEP-2577) still travels in `_meta`

use std::collections::HashMap;
use std::time::Instant;

use rmcp::RoleServer;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientCapabilities, ErrorData, InputRequest,
    InputRequests, InputRequiredResult, LoggingLevel, ProgressToken, RequestMetaObject,
    ServerResult,
};
use rmcp::service::{Peer, RequestContext, ServiceError};
use tokio::sync::{mpsc, oneshot};

use super::aggregate::Upstreams;
use super::{GatewayHandler, declares_tasks};
use crate::engine::NameKind;
use crate::gateway::caller::Caller;
use crate::gateway::caller::input_state::stale;
use crate::gateway::upstream::client::{Asking, Pending, PendingSender};
use crate::gateway::upstream::parked::InFlight;
use crate::gateway::upstream::tool_call::{self, Ask, CallerSide, Notice, ToolCall, forward_meta};

fn progress_token(
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Option<ProgressToken> {
    ctx.meta.get_progress_token().or_else(|| {
        request
            .meta
            .as_ref()
            .and_then(RequestMetaObject::get_progress_token)
    })
}

/// The log level the request opts in to log messages at (protocol 2026-07-28: in `_meta`).
fn asks_for_logs(
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Option<LoggingLevel> {
    ctx.meta
        .log_level()
        .or_else(|| request.meta.as_ref().and_then(RequestMetaObject::log_level))
}

/// The capability `request` needs of the caller, if `declared` lacks it.
fn undeclared(
    request: &InputRequest,
    declared: Option<&ClientCapabilities>,
) -> Option<ClientCapabilities> {
    let mut missing = ClientCapabilities::default();
    match request {
        InputRequest::CreateMessage(_) if declared.is_none_or(|c| c.sampling.is_none()) => {
            missing.sampling = Some(Default::default());
        }
        InputRequest::Elicitation(_) if declared.is_none_or(|c| c.elicitation.is_none()) => {
            missing.elicitation = Some(Default::default());
        }
        InputRequest::ListRoots(_) if declared.is_none_or(|c| c.roots.is_none()) => {
            missing.roots = Some(Default::default());
        }
        _ => return None,
    }
    Some(missing)
}

impl GatewayHandler {
    pub(crate) async fn call_tool_in_rounds(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (server, bare) = self.route(&ctx, NameKind::Tool, &request.name)?;
        let bare = bare.into_owned();
        let caller = Caller::from_context(&ctx);
        let owner = caller.digest.map(|d| d.0);
        let token = progress_token(&request, &ctx);
        let call = match &request.request_state {
            Some(state) => {
                let mut call = self.shared.parked.take(state).ok_or_else(stale)?;
                if call.owner != owner || call.server != server || call.tool != bare {
                    // Not this caller's, or not this call's: the owner keeps it; the asker
                    // learns nothing it could not have guessed.
                    self.shared.parked.park(state.clone(), call);
                    return Err(stale());
                }
                let mut answers = request.input_responses.clone().unwrap_or_default();
                for (key, reply) in call.waiting.drain() {
                    let answer = answers.remove(&key).ok_or_else(|| {
                        ErrorData::invalid_params(format!("no answer for input {key}"), None)
                    });
                    let _ = reply.send(answer);
                }
                if let Ok(relay) = call.relay_rx.try_recv() {
                    call.relay = Some(relay);
                }
                if let Some(relay) = &call.relay {
                    relay.attach(ctx.peer.clone());
                }
                call
            }
            None => self.start(caller, &ctx, server, bare, &request),
        };
        self.drive(call, &ctx.peer, token, ctx.client_capabilities())
            .await
    }

    /// Starts the upstream call in a task of its own, so that it outlives this request.
    fn start(
        &self,
        caller: Caller,
        ctx: &RequestContext<RoleServer>,
        server: String,
        bare: String,
        request: &CallToolRequestParams,
    ) -> InFlight {
        let downstream = ctx.peer.clone();
        // Progress or log messages the caller asked for may still be on their way when the
        // answer arrives: the call lingers a moment for them.
        let log_level = asks_for_logs(request, ctx);
        let wants_progress = progress_token(request, ctx).is_some() || log_level.is_some();
        let asking = Asking {
            tasks: declares_tasks(ctx),
            log_level,
        };
        let owner = caller.digest.map(|d| d.0);
        let mut params = request.clone();
        params.name = bare.clone().into();
        params.meta = forward_meta(request.meta.clone());
        let observed = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<crate::metrics::Observed>());
        let span = crate::gateway::upstream::tool_call::traced(
            &mut params.meta,
            observed,
            Some(&ctx.meta),
        );
        // Answers given unasked (no state of ours) are the caller's to give the upstream.
        params.request_state = None;
        let (held_tx, held) = mpsc::unbounded_channel();
        let (notices_tx, progress) = mpsc::channel(64);
        let (done_tx, done) = oneshot::channel();
        let (relay_tx, relay_rx) = oneshot::channel();
        let handler = self.clone();
        let upstream = server.clone();
        let (adopter, adopted_at) = (caller.clone(), upstream.clone());
        let token = progress_token(request, ctx);
        tokio::spawn(async move {
            let (adopter, adopted_at, adopting) = (&adopter, &adopted_at, &handler);
            let result = Upstreams::of(&handler.shared, caller)
                .one(
                    Some(&downstream),
                    &upstream,
                    super::aggregate::Asked {
                        method: "tools/call",
                        span,
                    },
                    |peer, relay| async move {
                        relay.hold(held_tx.clone());
                        let _ = relay_tx.send(relay.clone());
                        let mut call = ToolCall::new(params, token);
                        call.asking = asking;
                        call.linger = wants_progress;
                        // A 2026-07-28 upstream's input-required results are held for this
                        // caller's rounds like any request of its client.
                        call.held = Some(held_tx.clone());
                        let mut side = RoundsSide {
                            notices: notices_tx,
                            held: held_tx.clone(),
                            logs: log_level.is_some(),
                        };
                        let answer =
                            tool_call::call_tool(peer, relay.clone(), call, &mut side).await;
                        relay.release(&held_tx);
                        match answer? {
                            Some(ServerResult::CreateTaskResult(r)) => Ok(CallToolResponse::Task(
                                adopting.adopt_task(adopter, adopted_at, r),
                            )),
                            Some(result) => {
                                tool_call::tool_result(result).map(CallToolResponse::Complete)
                            }
                            None => Err(ServiceError::Cancelled { reason: None }),
                        }
                    },
                )
                .await;
            let _ = done_tx.send(result);
        });
        InFlight {
            owner,
            server,
            tool: bare,
            done,
            held,
            progress,
            waiting: HashMap::new(),
            asked: 0,
            parked_at: Instant::now(),
            relay: None,
            relay_rx,
        }
    }

    /// Waits for the upstream's answer, relaying progress; returns early with an
    /// `InputRequiredResult` (and parks the call) when the upstream asks its client something.
    async fn drive(
        &self,
        mut call: InFlight,
        downstream: &Peer<RoleServer>,
        token: Option<ProgressToken>,
        declared: Option<ClientCapabilities>,
    ) -> Result<CallToolResponse, ErrorData> {
        let relay = |notice: Notice| {
            let to = token.clone();
            async move {
                match notice {
                    Notice::Progress(mut p) => {
                        if let Some(to) = to {
                            p.progress_token = to;
                            let _ = downstream.notify_progress(p).await;
                        }
                    }
                    Notice::Log(p) => {
                        let _ = downstream.notify_logging_message(p).await;
                    }
                }
            }
        };
        loop {
            tokio::select! {
                biased;
                Some(p) = call.progress.recv() => relay(p).await,
                Some(first) = call.held.recv() => {
                    let mut requests = InputRequests::new();
                    let mut next = Some(first);
                    while let Some(Pending { asked }) = next {
                        for (key, request, reply) in asked {
                            // The caller cannot be asked what it did not declare it can
                            // answer: the call fails at once, and so does the upstream's request.
                            if let Some(missing) = undeclared(&request, declared.as_ref()) {
                                let refusal =
                                    ErrorData::missing_required_client_capability(missing);
                                let _ = reply.send(Err(refusal.clone()));
                                return Err(refusal);
                            }
                            // The upstream's own key where it gave one (a 2026-07-28 upstream's
                            // input-required result) and it is free, else one of ours.
                            let free = |k: &String| {
                                !requests.contains_key(k) && !call.waiting.contains_key(k)
                            };
                            let key = match key.filter(free) {
                                Some(key) => key,
                                None => loop {
                                    call.asked += 1;
                                    let key = format!("upstream-{}", call.asked);
                                    if free(&key) {
                                        break key;
                                    }
                                },
                            };
                            requests.insert(key.clone(), request);
                            call.waiting.insert(key, reply);
                        }
                        next = call.held.try_recv().ok();
                    }
                    let state = uuid::Uuid::new_v4().simple().to_string();
                    call.parked_at = Instant::now();
                    self.shared.parked.park(state.clone(), call);
                    return Ok(CallToolResponse::InputRequired(InputRequiredResult::new(
                        Some(requests),
                        Some(state),
                    )));
                }
                done = &mut call.done => {
                    // The upstream call waited for late progress before it ended.
                    while let Ok(p) = call.progress.try_recv() {
                        relay(p).await;
                    }
                    return done.unwrap_or_else(|_| {
                        Err(ErrorData::internal_error("the upstream call was dropped", None))
                    });
                }
            }
        }
    }
}

/// The caller's end of a 2026-07-28 call: notices wait for the caller's current request (see
/// `drive`), and the upstream's requests of its client are held for the caller's next round.
struct RoundsSide {
    notices: mpsc::Sender<Notice>,
    held: PendingSender,
    /// Whether the caller asked for log messages.
    logs: bool,
}

impl CallerSide for RoundsSide {
    async fn notify(&mut self, notice: Notice) {
        if matches!(notice, Notice::Log(_)) && !self.logs {
            return;
        }
        // Never waits: an upstream is not held up by a caller between rounds.
        let _ = self.notices.try_send(notice);
    }

    async fn ask(&mut self, ask: Ask) {
        let Ok(request) = serde_json::from_value::<InputRequest>(ask.request()) else {
            let refusal = ErrorData::method_not_found::<rmcp::model::PingRequestMethod>();
            return ask.answer(Err(refusal)).await;
        };
        let held = self.held.clone();
        // Answered in a task of its own: the call's stream is read on meanwhile.
        tokio::spawn(async move {
            let answer = crate::gateway::upstream::client::hold(&held, vec![(None, request)])
                .await
                .and_then(|mut answers| answers.pop())
                .unwrap_or_else(|| Err(ErrorData::internal_error("the call is over", None)));
            ask.answer(answer).await;
        });
    }

    fn cancelled(&self) -> impl std::future::Future<Output = ()> + Send {
        // A call between rounds runs on until its caller comes back or its state expires.
        std::future::pending()
    }
}
