//! [`LimitLayer`]: rate limits, parallel limits and dollar budgets, decided before the call.
//!
//! For every `tools/call`, the limits of each level of the caller (key, team, organisation,
//! end user, agent) that apply to the tool are checked in one atomic step of a
//! [`LimitStore`]: calls per minute (`rpm_limit`, `mcp_rpm_limit` per server,
//! `mcp_tool_limits` per tool), calls in flight (`max_parallel_requests`, per tool
//! `max_parallel`), and the tool's price reserved against each `max_budget`. Every level is
//! checked on its own, so a narrower level can lower a limit but never raise a wider one's.
//!
//! A refused call never reaches the inner service: it is answered in the configured denial
//! style with a text that names the limit and when it resets (HTTP 429 with `Retry-After` on
//! REST). An admitted call's reservation is settled with its final cost (the one the cost
//! layer's hook decides, else the price) or released when the call is refused further in,
//! fails before it reaches the upstream, or is dropped before the inner service ran. Lists and
//! every other method pass untouched.
//!
//! ```
//! # use mcp_gatekeeper::{body::Body, config::Config, Gatekeeper};
//! # use http_body_util::BodyExt;
//! # use tower::{ServiceBuilder, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_json_str(r#"{
//!   "mcp_servers": {"wiki": {"url": "http://127.0.0.1:9001/mcp"}},
//!   "keys": [{"key": "sk-alice", "mcp_tool_limits": {"wiki": {"search": {"rpm": 2}}}}]
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
//! # let call = || {
//! #     http::Request::post("/mcp")
//! #         .header("x-litellm-api-key", "sk-alice")
//! #         .header("content-type", "application/json")
//! #         .body(Body::from(
//! #             r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wiki-search","arguments":{}}}"#,
//! #         ))
//! #         .unwrap()
//! # };
//! # let text = |r: http::Response<Body>| async move {
//! #     String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
//! # };
//! use mcp_gatekeeper::{identity::IdentityLayer, limit::LimitLayer};
//!
//! let service = ServiceBuilder::new()
//!     .layer(IdentityLayer::new(gatekeeper.clone()))
//!     .layer(LimitLayer::new(gatekeeper))
//!     .service(server);
//! for _ in 0..2 {
//!     assert!(!text(service.clone().oneshot(call()).await?).await.contains("isError"));
//! }
//! let third = text(service.oneshot(call()).await?).await;
//! assert!(third.contains(r#""isError":true"#) && third.contains("2 tool calls per minute"));
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ReplyBody;
use crate::context::{self, ContextView};
use crate::counters::{Admission, Admitting, CounterKind, CounterOp, InProcessStore, LimitStore};
use crate::engine::{
    DenialStyle, Level, Limit as LevelLimit, LimitKind, Nanos, Principal, ServerId,
};
use crate::gatekeeper::{Gatekeeper, PolicySnapshot};
use crate::protocol::{McpRequest, Method};
use crate::rejection::Rejection;
use crate::reservation::{CallHold, LimitRefusal};

/// What the layer does when its store cannot answer (`general_settings.on_limit_store_error`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Refuse the call (the default: a limit that cannot be checked is not lifted).
    #[default]
    Deny,
    /// Let the call through, uncounted.
    Allow,
}

/// Adds [`Limit`] to a service. See the [module docs](self).
#[derive(Clone)]
pub struct LimitLayer {
    gatekeeper: Gatekeeper,
    store: Arc<dyn LimitStore>,
    on_error: OnStoreError,
}

impl fmt::Debug for LimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitLayer")
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

impl LimitLayer {
    /// Limits under `gatekeeper`'s policy, counted in a store of this process that the
    /// layer's clones share (layer one service twice with one `LimitLayer`, or its clones, so
    /// both count against the same limits).
    #[must_use]
    pub fn new(gatekeeper: Gatekeeper) -> Self {
        Self {
            gatekeeper,
            store: Arc::new(InProcessStore::new()),
            on_error: OnStoreError::Deny,
        }
    }

    /// Counts in `store` instead (an `Arc` of a store also is one: keep a clone to read it).
    #[must_use]
    pub fn store(mut self, store: impl LimitStore) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// What to do when the store cannot answer (default [`OnStoreError::Deny`]).
    #[must_use]
    pub fn on_store_error(mut self, on_error: OnStoreError) -> Self {
        self.on_error = on_error;
        self
    }

    /// What the layer does when its store fails.
    #[must_use]
    pub fn on_error(&self) -> OnStoreError {
        self.on_error
    }

    /// The store the layer counts in.
    #[must_use]
    pub fn counters(&self) -> &Arc<dyn LimitStore> {
        &self.store
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = Limit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Limit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`LimitLayer`] produces.
#[derive(Clone)]
pub struct Limit<S> {
    inner: S,
    layer: LimitLayer,
}

impl<S: fmt::Debug> fmt::Debug for Limit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

crate::inner_service::inner_access!(impl<S> Limit<S>);

/// The counters a call is checked against, and the price it reserves.
struct Charge {
    counters: Vec<CounterOp>,
    price: Nanos,
}

/// The tool call this request is, and where it goes: `None` for anything else, or for a name
/// no server owns (the permission layer's to refuse).
fn target<'e>(
    ext: &'e http::Extensions,
    policy: &PolicySnapshot,
    gk: &Gatekeeper,
) -> Option<(&'e McpRequest, ServerId, &'e str)> {
    let head = ext.get::<McpRequest>()?;
    if head.request_method() != Some(&Method::ToolsCall) {
        return None;
    }
    let name = head.target.as_deref().unwrap_or_default();
    let (server, bare) = context::tool_target(ext, policy, gk, name)?;
    Some((head, server, bare))
}

/// Every limit of the caller that applies to a call of `bare` on `server`, level by level: the
/// order of the counters a charge holds.
fn applying<'a>(
    principal: &'a Principal,
    server: ServerId,
    bare: &'a str,
) -> impl Iterator<Item = (Level, &'a LevelLimit)> + 'a {
    Level::ALL
        .into_iter()
        .filter_map(|level| Some((level, principal.limits[level as usize].as_deref()?)))
        .flat_map(move |(level, of_level)| {
            of_level
                .applying_to(server, bare)
                .map(move |limit| (level, limit))
        })
}

/// What the limits of the caller say about this request: `None` when nothing applies.
fn charge(ext: &mut http::Extensions, gk: &Gatekeeper) -> Option<Charge> {
    let context = ContextView::of(ext, gk);
    let (policy, ext) = (context.policy(), context.extensions());
    let principal = ext.get::<Principal>()?;
    if principal.limits.iter().all(Option::is_none) {
        return None;
    }
    let (_, server, bare) = target(ext, policy, gk)?;
    let price = Nanos::from_dollars(policy.catalog().server(server).price(bare));
    let counters: Vec<CounterOp> = applying(principal, server, bare)
        .map(|(level, limit)| {
            let kind = counter_kind(limit.kind, price);
            let ledger = matches!(kind, CounterKind::Budget { .. })
                .then(|| (level, Arc::clone(&limit.ledger)));
            CounterOp {
                name: Arc::clone(&limit.counter),
                kind,
                ledger,
            }
        })
        .collect();
    (!counters.is_empty()).then_some(Charge { counters, price })
}

/// What a call takes from the counter of one limit, at `price`.
fn counter_kind(kind: LimitKind, price: Nanos) -> CounterKind {
    const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);
    match kind {
        LimitKind::Rate(limit) => CounterKind::Rate {
            limit,
            window: MINUTE,
        },
        LimitKind::Parallel(limit) => CounterKind::Parallel { limit },
        LimitKind::Budget { max, period } => CounterKind::Budget {
            max,
            period: period.map(|p| p.0),
            amount: price,
        },
    }
}

/// The refusal for the counter at `index` of the charge (found again: refusals are rare).
fn refusal(
    ext: &mut http::Extensions,
    gk: &Gatekeeper,
    index: usize,
    retry_after: Option<std::time::Duration>,
) -> Rejection {
    let (rejection, level, rule) = limit_refusal(ext, gk, index, retry_after);
    crate::decision_events::refused_later(gk.audit(), ext, &rejection, Some(rule), Some(level));
    rejection
}

fn limit_refusal(
    ext: &mut http::Extensions,
    gk: &Gatekeeper,
    index: usize,
    retry_after: Option<std::time::Duration>,
) -> (Rejection, &'static str, &'static str) {
    let context = ContextView::of(ext, gk);
    let (policy, ext) = (context.policy(), context.extensions());
    let principal = ext.get::<Principal>().expect("charged callers have one");
    let (head, server, bare) = target(ext, policy, gk).expect("charged requests are tool calls");
    let (_, limit) = applying(principal, server, bare)
        .nth(index)
        .expect("the store names one of the counters it was given");
    let text = LimitRefusal {
        limit,
        server: policy.catalog().server(server).name(),
        tool: bare,
        retry_after,
    }
    .to_string();
    let r = Rejection::limit_exceeded(text)
        .with_retry_after(retry_after)
        .answering(head);
    let rule = match limit.kind {
        crate::engine::LimitKind::Rate(_) => "rate",
        crate::engine::LimitKind::Parallel(_) => "parallel",
        crate::engine::LimitKind::Budget { .. } => "budget",
    };
    (r, crate::audit::level_name(limit.level), rule)
}

fn unavailable(ext: &http::Extensions, error: &crate::counters::StoreError) -> Rejection {
    crate::decision_events::backend_error(error);
    let mut r = Rejection::limits_unavailable();
    if let Some(head) = ext.get::<McpRequest>() {
        r = r.answering(head);
    }
    r
}

/// What became of one admission attempt.
enum Decided {
    /// Go on, holding this (nothing when no limit applied or the store failed open).
    Go(Option<CallHold>),
    /// Answer with this refusal.
    Refuse(Rejection),
}

fn decided(
    ext: &mut http::Extensions,
    layer: &LimitLayer,
    charge: Charge,
    admission: Result<Admission, crate::counters::StoreError>,
) -> Decided {
    match admission {
        Ok(Admission::Admitted(taken)) => {
            let hold = CallHold::new(Arc::clone(&layer.store), taken, charge.price);
            ext.insert(hold.settler());
            Decided::Go(Some(hold))
        }
        Ok(Admission::Refused { index, retry_after }) => {
            Decided::Refuse(refusal(ext, &layer.gatekeeper, index, retry_after))
        }
        Err(e) => match layer.on_error {
            OnStoreError::Deny => {
                let r = unavailable(ext, &e);
                crate::decision_events::refused_later(
                    layer.gatekeeper.audit(),
                    ext,
                    &r,
                    None,
                    None,
                );
                Decided::Refuse(r)
            }
            OnStoreError::Allow => {
                crate::decision_events::backend_error(&e);
                Decided::Go(None)
            }
        },
    }
}

pub use crate::reservation::ResponseFuture;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Limit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body + From<Bytes> + Send + 'static,
    ReqBody::Error: fmt::Display,
    ResBody: ReplyBody + Sync,
    ResBody::Error: Send + Sync,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let gk = &self.layer.gatekeeper;
        let style = ContextView::of(request.extensions_mut(), gk).denial_style();
        if !context::needs_inspection(&request) {
            let Some(charge) = charge(request.extensions_mut(), gk) else {
                return ResponseFuture::inner(self.inner.call(request), None);
            };
            match self.layer.store.admit(&charge.counters) {
                Admitting::Ready(Some(admission)) => {
                    return match decided(request.extensions_mut(), &self.layer, charge, admission) {
                        Decided::Go(hold) => ResponseFuture::inner(self.inner.call(request), hold),
                        Decided::Refuse(r) => ResponseFuture::ready(r.into_response(style)),
                    };
                }
                admitting => {
                    let inner = self.take_inner();
                    let layer = self.layer.clone();
                    return ResponseFuture::boxed(Box::pin(async move {
                        let admission = admitting.await;
                        go(inner, request, &layer, charge, admission, style).await
                    }));
                }
            }
        }
        let inner = self.take_inner();
        let layer = self.layer.clone();
        ResponseFuture::boxed(Box::pin(async move {
            let mut request = match context::inspect(request, &layer.gatekeeper).await {
                Ok(r) => r,
                Err(rejection) => return Ok(rejection.into_response(style)),
            };
            let Some(charge) = charge(request.extensions_mut(), &layer.gatekeeper) else {
                let mut inner = inner;
                return inner.call(request).await;
            };
            let admission = layer.store.admit(&charge.counters).await;
            go(inner, request, &layer, charge, admission, style).await
        }))
    }
}

impl<S: Clone> Limit<S> {
    /// The instance polled ready is the one that must be called: take it, leave a clone.
    fn take_inner(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

/// The boxed path after admission: call the inner service holding what was taken.
async fn go<S, ReqBody, ResBody>(
    mut inner: S,
    mut request: Request<ReqBody>,
    layer: &LimitLayer,
    charge: Charge,
    admission: Result<Admission, crate::counters::StoreError>,
    style: DenialStyle,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: ReplyBody + Sync,
    ResBody::Error: Send + Sync,
{
    match decided(request.extensions_mut(), layer, charge, admission) {
        Decided::Refuse(r) => Ok(r.into_response(style)),
        Decided::Go(hold) => {
            if let Some(h) = &hold {
                h.sent();
            }
            match inner.call(request).await {
                Ok(response) => Ok(crate::reservation::finish_response(response, hold)),
                Err(e) => {
                    if let Some(h) = hold {
                        h.release();
                    }
                    Err(e)
                }
            }
        }
    }
}
