//! [`PermissionLayer`]: what the caller may list and call.
//!
//! Resolves the [`Grant`] once per request (the five-level hierarchy, then the scope), refuses
//! `tools/call`, `prompts/get`, `resources/read`/`subscribe` and a `subscriptions/listen` naming
//! a resource outside it, and filters the
//! replies of `tools/list`, `prompts/list`, `resources/list` and `resources/templates/list`, in
//! `application/json` and `text/event-stream` alike. Listing and calling use one predicate
//! ([`Grant::check_tool`]), so a caller can call exactly what it can list. Tool schemas in
//! `tools/list` are pruned to the server's `allowed_params`, so a model is never offered an
//! argument it may not send.
//!
//! One allowed and one refused request (`server` answers every call; `call` builds a
//! `tools/call` and `text` reads a reply; all three hidden):
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
//! use mcp_gatekeeper::{identity::IdentityLayer, permission::PermissionLayer};
//!
//! let service = ServiceBuilder::new()
//!     .layer(IdentityLayer::new(gatekeeper.clone()))
//!     .layer(PermissionLayer::new(gatekeeper))
//!     .service(server);
//! let allowed = service.clone().oneshot(call("sk-alice", "wiki-search", "{}")).await?;
//! assert!(!text(allowed).await.contains("isError"));
//! // Refused in-band: a tool result with `isError`, and the server never sees the call.
//! let refused = service.oneshot(call("sk-alice", "wiki-delete_page", "{}")).await?;
//! assert!(text(refused).await.contains(r#""isError":true"#));
//! # Ok(()) }
//! ```

mod app_read;
mod body;
mod filter;
mod raw;
mod replayed;
mod scan;
mod text_filter;

use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, header};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ReplyBody;
use crate::context::{self, ContextView};
use crate::engine::{Attribution, Denial, DeniedBy, Grant, NameKind, PinKind, Principal, ServerId};
use crate::future::{self, Post, PostProcess};
use crate::gatekeeper::Gatekeeper;
use crate::protocol::{self, CollectError, jsonrpc};
use crate::protocol::{McpRequest, MessageKind, Method};
use crate::rejection::Rejection;

use self::body::FilterBody;
pub use self::filter::ListFilter;
pub use self::replayed::ReplayedLists;
pub use self::text_filter::Unreadable;
pub use crate::context::ToolTarget;

/// Which server a name belongs to (and its name there), or why it belongs to none.
fn attribute<'n>(
    gk: &Gatekeeper,
    grant: &Grant,
    kind: NameKind,
    name: &'n str,
) -> Result<(ServerId, &'n str), Denial> {
    let index = gk.name_index();
    match grant
        .catalog()
        .attribute_within(gk.mount(), Some(&index), kind, name, || grant.effective())
    {
        Some(Attribution::Server(server, bare)) => Ok((server, bare)),
        Some(Attribution::Ambiguous) => Err(Denial {
            server: None,
            by: DeniedBy::Ambiguous,
        }),
        None => Err(Denial {
            server: None,
            by: DeniedBy::UnknownName,
        }),
    }
}

/// Resolves the server and bare name of a `tools/call` and checks it against the grant.
pub(crate) fn resolve_tool(
    gk: &Gatekeeper,
    grant: &Grant,
    name: &str,
) -> Result<ToolTarget, Denial> {
    let (server, bare) = attribute(gk, grant, NameKind::Tool, name)?;
    grant.check_tool(server, bare)?;
    Ok(ToolTarget::new(server, name.len() - bare.len()))
}

/// Checks a prompt or resource name against the grant (server level); its server and bare
/// name.
fn check_named<'n>(
    gk: &Gatekeeper,
    grant: &Grant,
    kind: NameKind,
    name: &'n str,
) -> Result<(ServerId, &'n str), Denial> {
    let (server, bare) = attribute(gk, grant, kind, name)?;
    match kind {
        NameKind::Prompt => grant.check_prompt(server, bare),
        _ => check_resource(gk, grant, server, name, bare),
    }
    .map(|()| (server, bare))
}

/// The check of a read's reply, when it reads a UI resource of a server that pins.
fn app_read(
    gk: &Gatekeeper,
    grant: &Grant,
    head: &McpRequest,
    (server, bare): (ServerId, &str),
    name: &str,
) -> Option<app_read::AppRead> {
    if !name.starts_with(crate::engine::UI_SCHEME) || grant.pins().is_none() {
        return None;
    }
    let spec = grant.catalog().server(server);
    if spec.pin_rules().mode == crate::engine::PinMode::Off {
        return None;
    }
    Some(app_read::AppRead {
        grant: grant.clone(),
        gatekeeper: gk.clone(),
        server,
        uri: crate::engine::server_uri(gk.mount(), name, bare).into(),
        asked: name.into(),
        id: head.id.clone()?,
        era: head.era,
        style: grant.catalog().settings().denial_style,
    })
}

/// Whether the grant covers resource `name` (`bare` on `server`). A UI resource of MCP Apps
/// (`ui://`) is covered only when a tool the caller may call names it (as the server's tool
/// list last said): the one predicate listing and reading both use.
pub(crate) fn check_resource(
    gk: &Gatekeeper,
    grant: &Grant,
    server: ServerId,
    name: &str,
    bare: &str,
) -> Result<(), Denial> {
    grant.check_server(server)?;
    if !name.starts_with(crate::engine::UI_SCHEME) {
        return Ok(());
    }
    let spec = grant.catalog().server(server);
    let uri = crate::engine::server_uri(gk.mount(), name, bare);
    let deny = |by| {
        Err(Denial {
            server: Some(server),
            by,
        })
    };
    let tools = gk.apps().tools_naming(spec.name(), &uri);
    if !tools.iter().any(|t| grant.check_tool(server, t).is_ok()) {
        return deny(DeniedBy::AppTool);
    }
    // Its content runs in the host: a changed one is held back as a changed tool is.
    if let Some(book) = grant.pins()
        && !book.admits(PinKind::App, spec.name(), &uri, spec.pin_rules())
    {
        return deny(DeniedBy::Quarantined);
    }
    Ok(())
}

/// Adds [`Permission`] to a service. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct PermissionLayer {
    gatekeeper: Gatekeeper,
}

impl PermissionLayer {
    /// Permission checks and list filtering under `gatekeeper`'s policy.
    #[must_use]
    pub fn new(gatekeeper: Gatekeeper) -> Self {
        Self { gatekeeper }
    }
}

impl<S> Layer<S> for PermissionLayer {
    type Service = Permission<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Permission {
            inner,
            gatekeeper: self.gatekeeper.clone(),
        }
    }
}

/// The service [`PermissionLayer`] produces.
#[derive(Clone)]
pub struct Permission<S> {
    inner: S,
    gatekeeper: Gatekeeper,
}

impl<S: fmt::Debug> fmt::Debug for Permission<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permission")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

crate::inner_service::inner_access!(impl<S> Permission<S>);

/// Wraps list replies in a filtering body.
#[derive(Debug)]
pub(crate) struct FilterReply {
    filter: Option<ListFilter>,
    /// A read of an MCP App's UI resource on a server that pins: its content is held to it.
    app: Option<Box<app_read::AppRead>>,
    /// On streams not tied to one request (GET), every list result is filtered.
    replay: Option<Grant>,
    gatekeeper: Gatekeeper,
}

future::layer_future!(
    /// Response future of [`Permission`]: a list reply is filtered for the caller on its way out.
    FilterReply; where B: ReplyBody + Sync, B::Error: Send + Sync,
);

impl<B: ReplyBody, E> PostProcess<B, E> for FilterReply
where
    B::Error: Send + Sync,
    B: Sync,
{
    fn response(self, response: Response<B>) -> Post<B> {
        let limits = *self.gatekeeper.limits();
        if let Some(grant) = self.replay {
            let is_sse = protocol::media_is(
                response.headers().get(header::CONTENT_TYPE),
                "text/event-stream",
            );
            if !is_sse {
                return Post::Ready(response);
            }
            let (parts, body) = response.into_parts();
            let target = body::Target::AnyList(grant, self.gatekeeper);
            return Post::Ready(Response::from_parts(
                parts,
                B::wrap(FilterBody::sse(body, target, limits.max_sse_event)),
            ));
        }
        if let Some(app) = self.app {
            return app_reply(response, *app, &limits);
        }
        let Some(filter) = self.filter else {
            return Post::Ready(response);
        };
        if !response.status().is_success() {
            return Post::Ready(response);
        }
        let content_type = response.headers().get(header::CONTENT_TYPE);
        let json = protocol::media_is(content_type, "application/json");
        let sse = protocol::media_is(content_type, "text/event-stream");
        let limits = *self.gatekeeper.limits();
        if json {
            // Read the (bounded) reply whole, filter it, and send it with its exact length.
            return Post::Later(Box::pin(async move {
                let (mut parts, body) = response.into_parts();
                let bytes = match protocol::collect_limited(body, limits.max_list_response).await {
                    Ok(bytes) => body::filter_json(bytes, &filter),
                    Err(CollectError::TooLarge { .. }) => {
                        jsonrpc::to_bytes(&body::too_large(&filter))
                    }
                    Err(CollectError::Body(_)) => jsonrpc::to_bytes(&jsonrpc::error(
                        Some(&filter.id),
                        jsonrpc::code::INTERNAL_ERROR,
                        "The server's reply could not be read",
                    )),
                };
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, bytes.len().into());
                Response::from_parts(parts, B::from_bytes(bytes))
            }));
        }
        if sse {
            return sse_rewritten(response, body::Target::Reply(filter), &limits);
        }
        // A list reply we cannot read is not passed on unfiltered.
        Post::Ready(
            Rejection::bad_request("unexpected content type in a list reply")
                .into_response(crate::engine::DenialStyle::JsonRpcError),
        )
    }
    fn error(self, _: &E) {}
}

/// An event-stream reply whose events `target` rewrites as they stream.
fn sse_rewritten<B>(
    response: Response<B>,
    target: body::Target,
    limits: &crate::gatekeeper::Limits,
) -> Post<B>
where
    B: ReplyBody + Sync,
    B::Error: Send + Sync,
{
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    Post::Ready(Response::from_parts(
        parts,
        B::wrap(FilterBody::sse(body, target, limits.max_sse_event)),
    ))
}

/// The reply to a read of a UI resource, its content held to its pin (JSON and SSE alike).
fn app_reply<B>(
    response: Response<B>,
    app: app_read::AppRead,
    limits: &crate::gatekeeper::Limits,
) -> Post<B>
where
    B: ReplyBody + Sync,
    B::Error: Send + Sync,
{
    if !response.status().is_success() {
        return Post::Ready(response);
    }
    let content_type = response.headers().get(header::CONTENT_TYPE);
    if protocol::media_is(content_type, "text/event-stream") {
        return sse_rewritten(response, body::Target::AppRead(app), limits);
    }
    let max = limits.max_list_response;
    Post::Later(Box::pin(async move {
        let (mut parts, body) = response.into_parts();
        let bytes = match protocol::collect_limited(body, max).await {
            Ok(bytes) => match std::str::from_utf8(&bytes).ok().map(|t| app.check(t)) {
                Some(Some(Some(refusal))) => Bytes::from(refusal),
                Some(Some(None) | None) => bytes,
                None => Bytes::from(app.unreadable()),
            },
            Err(_) => Bytes::from(app.unreadable()),
        };
        parts
            .headers
            .insert(header::CONTENT_LENGTH, bytes.len().into());
        Response::from_parts(parts, B::from_bytes(bytes))
    }))
}

/// The decision for one request: refuse, or forward (with a list filter for list replies).
fn decide(
    ext: &mut http::Extensions,
    gk: &Gatekeeper,
    is_post: bool,
) -> Result<FilterReply, Rejection> {
    ContextView::of(ext, gk).grant()?;
    let mut reply = FilterReply {
        filter: None,
        app: None,
        replay: None,
        gatekeeper: gk.clone(),
    };
    if !is_post {
        // A GET stream may replay earlier replies (resumption with Last-Event-ID): any list in
        // it is filtered for this caller too.
        reply.replay = ext.get::<Grant>().cloned();
        return Ok(reply);
    }
    let head = ext.get::<McpRequest>().expect("inspected before deciding");
    let grant = ext.get::<Grant>().expect("resolved above");
    if head.kind != MessageKind::Request {
        return Ok(reply);
    }
    let method = head.method.as_ref().expect("requests have a method");
    let target = head.target.as_deref().unwrap_or_default();
    let refused = |r: Rejection, server: Option<ServerId>| {
        let r = r.answering(head);
        let server = server.map(|s| grant.catalog().server(s));
        crate::decision_events::refused_on(
            gk.audit(),
            ext.get::<Principal>(),
            Some(head),
            server,
            &r,
        );
        Err(r)
    };
    let allowed = match method {
        Method::ToolsCall => match resolve_tool(gk, grant, target) {
            Ok(t) => {
                ext.insert(t);
                t.server
            }
            Err(d) => return refused(Rejection::tool_denied(target, d.by), d.server),
        },
        Method::PromptsGet => match check_named(gk, grant, NameKind::Prompt, target) {
            Ok((server, _)) => server,
            Err(d) => return refused(Rejection::prompt_denied(target, d.by), d.server),
        },
        Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => {
            match check_named(gk, grant, NameKind::Resource, target) {
                Ok(attributed) => {
                    if *method == Method::ResourcesRead {
                        reply.app = app_read(gk, grant, head, attributed, target).map(Box::new);
                    }
                    attributed.0
                }
                Err(d) => return refused(Rejection::resource_denied(target, d.by), d.server),
            }
        }
        // A listen stream tells of changes to the resources it names: only to those this
        // caller may read, so one it may not read refuses the stream as a read would be.
        Method::SubscriptionsListen => {
            for uri in head.subscriptions.iter() {
                if let Err(d) = check_named(gk, grant, NameKind::Resource, uri) {
                    return refused(Rejection::resource_denied(uri, d.by), d.server);
                }
            }
            return Ok(reply);
        }
        m if m.is_list() => {
            let id = head.id.clone().expect("requests have an id");
            let mut filter = ListFilter::new(grant.clone(), m.clone(), id, gk);
            if gk.audit().builds_events() {
                filter.caller = ext.get::<Principal>().cloned().map(Box::new);
            }
            // Pinning learns only from lists a server gave now: an inner service with a cache
            // marks what it replayed.
            let replayed = filter.grant.pins().map(|_| ReplayedLists::default());
            filter.replayed.clone_from(&replayed);
            reply.filter = Some(filter);
            if let Some(replayed) = replayed {
                ext.insert(replayed);
            }
            return Ok(reply);
        }
        _ => return Ok(reply),
    };
    let server = ext
        .get::<Grant>()
        .expect("resolved above")
        .catalog()
        .server(allowed);
    if let Some(pending) = crate::decision_events::allowed(gk.audit(), ext, server) {
        ext.insert(pending);
    }
    Ok(reply)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Permission<S>
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

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let gk = self.gatekeeper.clone();
        let is_post = request.method() == http::Method::POST;
        ResponseFuture::from_inner(context::inspect_then(
            &mut self.inner,
            request,
            &self.gatekeeper,
            move |ext| traced_decision(ext, &gk, is_post),
        ))
    }
}

/// [`decide`], as a step of the request's trace when a recorder takes spans.
fn traced_decision(
    ext: &mut http::Extensions,
    gk: &Gatekeeper,
    is_post: bool,
) -> Result<FilterReply, Rejection> {
    let traced = ext
        .get::<crate::metrics::Observed>()
        .filter(|o| o.records_spans())
        .cloned();
    let (Some(observed), Some(metrics)) = (traced, gk.metrics()) else {
        return decide(ext, gk, is_post);
    };
    let started = std::time::Instant::now();
    let decided = decide(ext, gk, is_post);
    let seconds = started.elapsed().as_secs_f64();
    let at = observed
        .wall_time(started)
        .expect("a slot that records spans knows when its request began");
    let (request, _) = observed.span();
    let (outcome, rule) = match &decided {
        Ok(_) => ("allowed", None),
        Err(r) => (
            "refused",
            Some(crate::decision_events::rule_of_rejection(r)),
        ),
    };
    metrics.step(&crate::metrics::Step {
        name: "mcp_gatekeeper.decide",
        outcome,
        rule,
        seconds,
        span: crate::metrics::Span {
            context: request.child(),
            parent: Some(request.span_id),
            started: at,
        },
    });
    decided
}
