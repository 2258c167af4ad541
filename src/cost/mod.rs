//! [`CostLayer`]: one [`ToolCallEvent`] for every `tools/call` that reaches the service.
//!
//! The event (server, bare and prefixed tool name, argument names, principal ids, session,
//! start, duration, outcome, price) is built when the reply to the call is seen: a success, an
//! `isError` result, a JSON-RPC error, or an HTTP failure. An async [`CostHook`] may then set
//! the cost and replace the result before it reaches the caller; a hook that fails or panics
//! never breaks the call. The event then goes to a [`SpendSink`]. A call whose client goes away
//! first is still recorded, once, with [`Outcome::Disconnected`].
//!
//! Every call the server answers is one event; a request refused before it (here by the
//! identity layer) is none (`server`, `call` and `text` are hidden):
//!
//! ```
//! # use mcp_gatekeeper::{body::Body, config::Config, Gatekeeper};
//! # use http_body_util::BodyExt;
//! # use tower::{ServiceBuilder, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_json_str(r#"{
//!   "mcp_servers": {"wiki": {"url": "http://127.0.0.1:9001/mcp",
//!                            "disallowed_tools": ["delete_page"],
//!                            "allowed_params": {"search": ["query"]}},
//!                   "payroll": {"url": "http://127.0.0.1:9002/mcp"}},
//!   "keys": [{"key": "sk-alice", "object_permission": {"mcp_servers": ["wiki"]}}]
//! }"#)?;
//! let gatekeeper = Gatekeeper::new(config.policy()?);
//! # let server = tower::service_fn(|_: http::Request<Body>| async {
//! #     let reply = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
//! #     Ok::<_, std::convert::Infallible>(
//! #         http::Response::builder()
//! #             .header("content-type", "application/json")
//! #             .body(Body::from(reply))
//! #             .unwrap(),
//! #     )
//! # });
//! # let call = |key: &str, tool: &str, arguments: &str| {
//! #     http::Request::post("/mcp")
//! #         .header("x-litellm-api-key", key)
//! #         .header("content-type", "application/json")
//! #         .body(Body::from(format!(
//! #             r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
//! #         )))
//! #         .unwrap()
//! # };
//! # let text = |r: http::Response<Body>| async move {
//! #     String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
//! # };
//! use std::sync::{Arc, Mutex};
//! use mcp_gatekeeper::cost::{CostLayer, Outcome, ToolCallEvent};
//! use mcp_gatekeeper::identity::IdentityLayer;
//!
//! let events = Arc::new(Mutex::new(Vec::<ToolCallEvent>::new()));
//! let seen = Arc::clone(&events);
//! let service = ServiceBuilder::new()
//!     .layer(IdentityLayer::new(gatekeeper.clone()))
//!     .layer(CostLayer::new(gatekeeper).sink(move |e: ToolCallEvent| seen.lock().unwrap().push(e)))
//!     .service(server);
//! let answered = service.clone().oneshot(call("sk-alice", "wiki-search", "{}")).await?;
//! let _ = text(answered).await;
//! // A request the identity layer refuses never reaches the cost layer: no event.
//! let refused = service.oneshot(call("sk-mallory", "wiki-search", "{}")).await?;
//! assert_eq!(refused.status(), 401);
//! let events = events.lock().unwrap();
//! assert_eq!(events.len(), 1);
//! assert_eq!((&*events[0].tool, events[0].outcome), ("search", Outcome::Success));
//! # Ok(()) }
//! ```

mod body;
mod event;

pub use event::{CostHook, HookDecision, JsonlSink, Outcome, SpendSink, ToolCallEvent};

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response, header};
use serde_json::Value;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{BoxError, ReplyBody};
use crate::body::{Failing, Prefixed};
use crate::context::{self, ContextView};
use crate::engine::Principal;
use crate::future::{self, Post, PostProcess};
use crate::gatekeeper::Gatekeeper;
use crate::limit_hold::BudgetSettler;
use crate::protocol::{self, Collected};
use crate::protocol::{Era, McpRequest, Method, RequestId};

use self::body::CostBody;

/// Adds [`Cost`] to a service. See the [module docs](self).
pub struct CostLayer<H = ()> {
    gatekeeper: Gatekeeper,
    hook: Arc<H>,
    sink: Arc<dyn SpendSink>,
}

impl<H> Clone for CostLayer<H> {
    fn clone(&self) -> Self {
        Self {
            gatekeeper: self.gatekeeper.clone(),
            hook: Arc::clone(&self.hook),
            sink: Arc::clone(&self.sink),
        }
    }
}

impl<H> fmt::Debug for CostLayer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CostLayer").finish_non_exhaustive()
    }
}

impl CostLayer {
    /// Cost events with catalog prices and no hook, dropped (set a sink with [`Self::sink`]).
    #[must_use]
    pub fn new(gatekeeper: Gatekeeper) -> Self {
        Self {
            gatekeeper,
            hook: Arc::new(()),
            sink: Arc::new(()),
        }
    }
}

impl<H: CostHook> CostLayer<H> {
    /// Calls `hook` for every tool call.
    #[must_use]
    pub fn hook<H2: CostHook>(self, hook: H2) -> CostLayer<H2> {
        CostLayer {
            gatekeeper: self.gatekeeper,
            hook: Arc::new(hook),
            sink: self.sink,
        }
    }

    /// Sends finished events to `sink`.
    #[must_use]
    pub fn sink(mut self, sink: impl SpendSink) -> Self {
        self.sink = Arc::new(sink);
        self
    }
}

impl<S, H> Layer<S> for CostLayer<H> {
    type Service = Cost<S, H>;
    fn layer(&self, inner: S) -> Self::Service {
        Cost {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`CostLayer`] produces.
pub struct Cost<S, H = ()> {
    inner: S,
    layer: CostLayer<H>,
}

impl<S: Clone, H> Clone for Cost<S, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, H> fmt::Debug for Cost<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cost")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

crate::inner::inner_access!(impl<S, H> Cost<S, H>);

/// Holds an unfinished event; records it as disconnected if dropped before the reply.
pub(crate) struct Pending {
    event: Option<ToolCallEvent>,
    started: Instant,
    sink: Arc<dyn SpendSink>,
    /// The reservation of the limit layer outside, told the final cost.
    settler: Option<BudgetSettler>,
}

impl Pending {
    /// Fills in how the call ended, for the hook to see.
    pub(crate) fn settle(&mut self, outcome: Outcome) -> Option<&ToolCallEvent> {
        let event = self.event.as_mut()?;
        event.duration = self.started.elapsed();
        event.outcome = outcome;
        Some(event)
    }

    /// Sends the settled event to the sink, once.
    pub(crate) fn commit(&mut self, cost: Option<f64>) {
        if let Some(mut event) = self.event.take() {
            if let Some(cost) = cost.filter(|c| c.is_finite()) {
                event.cost = cost;
            }
            if let Some(settler) = &self.settler {
                match event.outcome {
                    // It never reached the upstream.
                    Outcome::TransportError { .. } => settler.release(),
                    _ => settler.settle(event.cost),
                }
            }
            self.sink.record(event);
        }
    }

    pub(crate) fn record(&mut self, outcome: Outcome, cost: Option<f64>) {
        self.settle(outcome);
        self.commit(cost);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.record(Outcome::Disconnected, None);
    }
}

/// Wraps the reply of a tool call so the event is completed when it is seen.
pub(crate) struct Observe<H: CostHook> {
    call: Option<(Pending, RequestId, Era, Arc<H>, usize)>,
}

impl<H: CostHook> fmt::Debug for Observe<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observe").finish_non_exhaustive()
    }
}

future::layer_future!(
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
                Some(event) => run_hook(&*hook, event, reply.as_ref()).await,
                None => HookDecision::default(),
            };
            let bytes = match decision.replace_result {
                Some(result) => Bytes::from(body::replaced(reply, &bytes, &id, era, result)),
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
                let decision = run_hook(&*hook, event, None).await;
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
    reply_to(bytes, id, full).unwrap_or((Outcome::Unknown, None))
}

/// How `bytes`, if it is the JSON-RPC reply to `id`, ended; the whole reply too when `full`
/// (only hooks that read replies need the tree: the rest is a lean read of `error.code` and
/// `result.isError`).
pub(crate) fn reply_to(
    bytes: &[u8],
    id: &RequestId,
    full: bool,
) -> Option<(Outcome, Option<Value>)> {
    if full {
        return match serde_json::from_slice::<Value>(bytes) {
            Ok(v) if v.get("id").is_some_and(|i| id.matches(i)) => {
                Some((body::outcome_of(&v), Some(v)))
            }
            _ => None,
        };
    }
    #[derive(serde::Deserialize)]
    struct Lean {
        id: Option<Value>,
        error: Option<LeanError>,
        result: Option<LeanResult>,
    }
    #[derive(serde::Deserialize)]
    struct LeanError {
        #[serde(default)]
        code: i64,
    }
    #[derive(serde::Deserialize)]
    struct LeanResult {
        #[serde(rename = "isError", default)]
        is_error: Option<bool>,
    }
    let lean = serde_json::from_slice::<Lean>(bytes).ok()?;
    if !lean.id.as_ref().is_some_and(|i| id.matches(i)) {
        return None;
    }
    let outcome = match lean {
        Lean { error: Some(e), .. } => Outcome::JsonRpcError { code: e.code },
        Lean {
            result: Some(r), ..
        } if r.is_error == Some(true) => Outcome::ToolError,
        Lean {
            result: Some(_), ..
        } => Outcome::Success,
        _ => Outcome::Unknown,
    };
    Some((outcome, None))
}

/// The hook's future, with a panic while building or running it caught.
pub(crate) type HookFuture =
    Pin<Box<dyn Future<Output = std::thread::Result<Result<HookDecision, BoxError>>> + Send>>;

pub(crate) fn hook_future<H: CostHook>(
    hook: &Arc<H>,
    event: &ToolCallEvent,
    reply: Option<&Value>,
) -> HookFuture {
    match std::panic::catch_unwind(AssertUnwindSafe(|| hook.on_tool_call(event, reply))) {
        Ok(f) => Box::pin(AssertUnwindSafe(f).catch_unwind()),
        Err(panic) => Box::pin(std::future::ready(Err(panic))),
    }
}

/// What the hook decided; a failing or panicking hook decides nothing and breaks nothing.
pub(crate) fn decision(
    outcome: std::thread::Result<Result<HookDecision, BoxError>>,
) -> HookDecision {
    match outcome {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            crate::trace::backend_error(&*e);
            HookDecision::default()
        }
        Err(_) => {
            crate::trace::warn("the cost hook panicked; the call goes on");
            HookDecision::default()
        }
    }
}

/// The hook's decision, its future run in place (inside a future that is already boxed), a
/// panic while building or running it caught.
async fn run_hook<H: CostHook>(
    hook: &H,
    event: &ToolCallEvent,
    reply: Option<&Value>,
) -> HookDecision {
    decision(
        match std::panic::catch_unwind(AssertUnwindSafe(|| hook.on_tool_call(event, reply))) {
            Ok(f) => AssertUnwindSafe(f).catch_unwind().await,
            Err(panic) => Err(panic),
        },
    )
}

fn start<H: CostHook>(ext: &mut http::Extensions, layer: &CostLayer<H>) -> Observe<H> {
    let gk = &layer.gatekeeper;
    let context = ContextView::of(ext, gk);
    let (policy, ext) = (context.policy(), context.extensions());
    let Some(head) = ext.get::<McpRequest>() else {
        return Observe { call: None };
    };
    if head.request_method() != Some(&Method::ToolsCall) {
        return Observe { call: None };
    }
    let qualified = head.target.clone().unwrap_or_default();
    let name = &*qualified;
    let catalog = policy.catalog();
    let target = context::tool_target(ext, policy, gk, name);
    // The names only: the principal's permission sets are not the event's.
    let p = ext.get::<Principal>();
    let name_of = |f: fn(&Principal) -> &Option<Arc<str>>| p.and_then(|p| f(p).clone());
    // The strings are the catalog's and the parsed head's, shared; only a bare name that
    // differs from the name sent (a prefixed one) is a string of its own.
    let tool = match target {
        Some((_, bare)) if bare != name => Arc::from(bare),
        _ => Arc::clone(&qualified),
    };
    let cost = target.map_or(0.0, |(s, bare)| catalog.server(s).price(bare));
    let event = ToolCallEvent {
        server: target.map(|(s, _)| Arc::clone(catalog.server(s).shared_name())),
        tool,
        qualified_tool: qualified,
        argument_keys: Arc::clone(&head.argument_keys),
        key_id: name_of(|p| &p.key_id),
        key_alias: name_of(|p| &p.key_alias),
        team_id: name_of(|p| &p.team_id),
        organization_id: name_of(|p| &p.organization_id),
        end_user_id: name_of(|p| &p.end_user_id),
        agent_id: name_of(|p| &p.agent_id),
        session_id: ext.get::<SessionId>().map(|s| s.0.clone()),
        started_at: SystemTime::now(),
        duration: Duration::ZERO,
        outcome: Outcome::Unknown,
        cost,
    };
    let id = head.id.clone().expect("requests have an id");
    let pending = Pending {
        event: Some(event),
        started: Instant::now(),
        sink: Arc::clone(&layer.sink),
        settler: ext.get::<BudgetSettler>().cloned(),
    };
    Observe {
        call: Some((
            pending,
            id,
            head.era,
            Arc::clone(&layer.hook),
            gk.limits().max_list_response,
        )),
    }
}

/// The MCP session id of a request, copied into extensions for the cost event.
#[derive(Clone, Debug)]
struct SessionId(String);

impl<S, H, ReqBody, ResBody> Service<Request<ReqBody>> for Cost<S, H>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    H: CostHook,
    ReqBody: http_body::Body + From<Bytes> + Send + 'static,
    ReqBody::Error: fmt::Display,
    ResBody: ReplyBody + Sync,
    ResBody::Error: Send + Sync,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // Only a tool call's event names its session; the body may not be parsed yet (this layer
        // used alone), in which case the id is kept in case it is one.
        let may_be_call = request.method() == http::Method::POST
            && request
                .extensions()
                .get::<McpRequest>()
                .is_none_or(|h| h.request_method() == Some(&Method::ToolsCall));
        if let Some(id) = request
            .headers()
            .get(crate::protocol::SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|_| may_be_call)
        {
            let id = SessionId(id.to_owned());
            request.extensions_mut().insert(id);
        }
        let layer = self.layer.clone();
        ResponseFuture::from_inner(context::inspect_then(
            &mut self.inner,
            request,
            &self.layer.gatekeeper,
            move |ext| Ok(start(ext, &layer)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lean_read_of_a_reply_agrees_with_the_whole_read() {
        let id = RequestId::Number(7);
        let replies = [
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":true}}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":false}}"#,
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"no"}}"#,
            r#"{"jsonrpc":"2.0","id":7}"#,
        ];
        for reply in replies {
            let lean = reply_to(reply.as_bytes(), &id, false).expect("the reply to 7");
            let whole = reply_to(reply.as_bytes(), &id, true).expect("the reply to 7");
            assert_eq!(lean.0, whole.0, "{reply}");
            assert!(lean.1.is_none() && whole.1.is_some());
        }
        // Not the reply to 7: another id, a notification, not JSON.
        for other in [
            r#"{"jsonrpc":"2.0","id":8,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":"7","result":{}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
            "not json",
        ] {
            assert!(reply_to(other.as_bytes(), &id, false).is_none(), "{other}");
            assert!(reply_to(other.as_bytes(), &id, true).is_none(), "{other}");
        }
    }
}
