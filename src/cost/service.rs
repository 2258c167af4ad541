//! [`Cost`]: the service, which starts a `tools/call`'s event before the call goes in.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::event::{CostHook, Outcome, Pending, SpendSink, ToolCallEvent};
use super::future::{Observe, ResponseFuture};
use crate::body::ReplyBody;
use crate::context::{self, ContextView};
use crate::engine::Principal;
use crate::gatekeeper::Gatekeeper;
use crate::metrics::Observed;
use crate::protocol::{McpRequest, Method};
use crate::reservation::BudgetSettler;

/// What the layer was built with, which every clone of the service shares.
pub(crate) struct Settings<H> {
    pub(crate) gatekeeper: Gatekeeper,
    pub(crate) hook: Arc<H>,
    pub(crate) sink: Arc<dyn SpendSink>,
}

impl<H> Clone for Settings<H> {
    fn clone(&self) -> Self {
        Self {
            gatekeeper: self.gatekeeper.clone(),
            hook: Arc::clone(&self.hook),
            sink: Arc::clone(&self.sink),
        }
    }
}

/// The service [`CostLayer`](super::CostLayer) produces.
pub struct Cost<S, H = ()> {
    inner: S,
    settings: Settings<H>,
}

impl<S, H> Cost<S, H> {
    pub(crate) fn new(inner: S, settings: Settings<H>) -> Self {
        Self { inner, settings }
    }
}

impl<S: Clone, H> Clone for Cost<S, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            settings: self.settings.clone(),
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

crate::inner_service::inner_access!(impl<S, H> Cost<S, H>);

/// The event of the request whose extensions are `ext`, if it is a `tools/call`, to complete
/// when its reply is seen.
fn start<H: CostHook>(ext: &mut http::Extensions, settings: &Settings<H>) -> Observe<H> {
    let gk = &settings.gatekeeper;
    let context = ContextView::of(ext, gk);
    let (policy, ext) = (context.policy(), context.extensions());
    let Some(head) = ext.get::<McpRequest>() else {
        return Observe::none();
    };
    if head.request_method() != Some(&Method::ToolsCall) {
        return Observe::none();
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
    let pending = Pending::new(
        event,
        Arc::clone(&settings.sink),
        ext.get::<BudgetSettler>().cloned(),
    )
    .observed_by(ext.get::<Observed>().cloned(), gk.metrics().cloned());
    Observe::call(
        pending,
        (id, head.era),
        Arc::clone(&settings.hook),
        gk.limits().max_list_response,
    )
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
        let settings = self.settings.clone();
        ResponseFuture::from_inner(context::inspect_then(
            &mut self.inner,
            request,
            &self.settings.gatekeeper,
            move |ext| Ok(start(ext, &settings)),
        ))
    }
}
