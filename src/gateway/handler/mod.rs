//! The aggregating MCP server: one rmcp `ServerHandler` whose tools, prompts and resources are
//! those of every upstream the caller may use, prefixed by server, and whose calls are routed
//! to the right upstream session of that caller. Its children hold the rest of its handling:
//! routing and merging (`aggregate`), the rounds of a call on protocol 2026-07-28, tasks and
//! listening.
//!
//! This wing knows no transport: it takes the caller as `caller` read it, never reads a body,
//! and never decides what a caller may do (the layers did).

#![allow(deprecated)] // logging/setLevel and resource subscriptions are legacy, still served

pub(crate) mod aggregate;
mod input_rounds;
mod listen;
mod tasks;
mod tool_rounds;

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult, ErrorData,
    GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, Reference,
    RequestMetaObject, ServerCapabilities, ServerConfig, SetLevelRequestParams,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::model::{
    CancelTaskParams, GetTaskParams, GetTaskResult, TASKS_EXTENSION_ID, UpdateTaskParams,
};
use rmcp::model::{ServerRequest, ServerResult};
use rmcp::service::{Peer, RequestContext, ServiceError, SubscriptionContext};
use rmcp::{RoleClient, RoleServer, ServerHandler};

use crate::engine::NameKind;
use crate::gateway::caller::Caller;
use crate::gateway::caller::list_cache::Listed;
use crate::gateway::shared::GatewayState;
use crate::gateway::upstream::client::Relay;
use crate::gateway::upstream::tool_call::{self, ToolCall, forward_meta, relayed};
use crate::metrics::SessionClock;
use crate::permission::ReplayedLists;
use aggregate::Upstreams;

/// One downstream session of the gateway (or one request, when stateless).
#[derive(Clone)]
pub struct GatewayHandler {
    pub(crate) shared: Arc<GatewayState>,
    /// Times the session, when metrics are on (see [`Self::for_session`]).
    session: Option<Arc<SessionClock>>,
}

impl std::fmt::Debug for GatewayHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayHandler").finish_non_exhaustive()
    }
}

impl GatewayHandler {
    /// A handler for requests that are not a session's (its own use, or a transport the
    /// gateway does not serve itself).
    pub(crate) fn new(shared: Arc<GatewayState>) -> Self {
        Self {
            shared,
            session: None,
        }
    }

    /// A handler for one session of the gateway's HTTP endpoint, timed from now to its end
    /// when metrics are on (`mcp.server.session.duration`).
    pub(crate) fn for_session(shared: &Arc<GatewayState>) -> Self {
        let session = shared.gatekeeper.metrics().map(|metrics| {
            Arc::new(SessionClock::new(
                Arc::clone(metrics),
                crate::metrics::SessionSide::Server,
                None,
                "tcp",
            ))
        });
        Self {
            shared: Arc::clone(shared),
            session,
        }
    }

    /// The upstreams the caller of `ctx` may use.
    pub(crate) fn upstreams<'a>(&'a self, ctx: &'a RequestContext<RoleServer>) -> Upstreams<'a> {
        Upstreams::of(&self.shared, Caller::from_context(ctx))
    }

    /// Where a prefixed (or, unprefixed, indexed) name of the caller of `ctx` goes.
    pub(crate) fn route<'n>(
        &self,
        ctx: &RequestContext<RoleServer>,
        kind: NameKind,
        name: &'n str,
    ) -> Result<(String, Cow<'n, str>), ErrorData> {
        self.upstreams(ctx).route(kind, name)
    }

    /// Asks `server` with `f` on the pooled session of the caller of `ctx`; the caller's
    /// `notifications/cancelled` (or, stateless, its going away) ends the upstream request too.
    pub(crate) async fn one<T, F, Fut>(
        &self,
        ctx: &RequestContext<RoleServer>,
        server: &str,
        asked: impl Into<aggregate::Asked>,
        f: F,
    ) -> Result<T, ErrorData>
    where
        F: FnOnce(Peer<RoleClient>, Relay) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let upstreams = self.upstreams(ctx);
        tokio::select! {
            done = upstreams.one(Some(&ctx.peer), server, asked, f) => done,
            () = ctx.ct.cancelled() => Err(ErrorData::internal_error("the request was cancelled", None)),
        }
    }

    /// Passes the trace context of the caller of `ctx` on in `meta`, the `_meta` of a request
    /// to an upstream for `method` (see [`tool_call::traced`]): what that request is, for its
    /// measurement, with its span when a recorder takes spans.
    pub(crate) fn traced(
        ctx: &RequestContext<RoleServer>,
        method: &'static str,
        meta: &mut Option<RequestMetaObject>,
    ) -> aggregate::Asked {
        let observed = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<crate::metrics::Observed>());
        aggregate::Asked {
            method,
            span: tool_call::traced(meta, observed, Some(&ctx.meta)),
        }
    }

    /// One list from every upstream the caller of `ctx` may use, merged (see
    /// [`aggregate::merge`]).
    async fn merged<T, F, Fut>(
        &self,
        ctx: &RequestContext<RoleServer>,
        kind: Option<NameKind>,
        fetch: F,
        name: impl Fn(&T) -> &str,
        set_name: impl Fn(&mut T, String),
        ui: impl Fn(&mut T, &dyn Fn(&str) -> Option<String>),
    ) -> Vec<T>
    where
        F: Fn(Peer<RoleClient>, Relay) -> Fut,
        Fut: Future<Output = Result<(Vec<T>, bool), ServiceError>>,
    {
        let lists = self.upstreams(ctx).all(Some(&ctx.peer), fetch).await;
        let replayed = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<ReplayedLists>());
        let lists = lists
            .into_iter()
            .map(|(id, server, (items, kept))| {
                if let (true, Some(replayed)) = (kept, replayed) {
                    replayed.mark(&server);
                }
                (id, server, items)
            })
            .collect();
        aggregate::merge(&self.shared, kind, lists, name, set_name, ui)
    }
}

impl ServerHandler for GatewayHandler {
    async fn on_initialized(&self, ctx: rmcp::service::NotificationContext<RoleServer>) {
        if let (Some(clock), Some(info)) = (&self.session, ctx.peer.peer_info()) {
            clock.opened(info.protocol_version.as_str());
        }
        // Remembered for the endpoint, which takes this session's calls without us.
        let session = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok());
        if let Some(session) = session {
            self.shared.note_downstream(session, ctx.peer.clone());
        }
    }

    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_logging()
            .enable_completions()
            .build();
        // Tasks come only from upstreams spoken to in 2026-07-28 (chosen, or found by
        // discovery); the gateway routes them.
        if self
            .shared
            .upstreams
            .values()
            .any(crate::gateway::upstream::spec::UpstreamSpec::may_speak_latest)
        {
            capabilities
                .extensions
                .get_or_insert_with(Default::default)
                .insert(TASKS_EXTENSION_ID.to_owned(), Default::default());
        }
        ServerConfig::new(capabilities).with_server_info(Implementation::new(
            "mcp-gatekeeper",
            env!("CARGO_PKG_VERSION"),
        ))
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // Every kind, narrowed per caller by what it may see (see `listeners`).
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        self.serve_listen(context).await
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let fetch = |peer: Peer<RoleClient>, relay: Relay| async move {
            let (tools, replayed) = relay
                .lists()
                .get_or_fetch(Listed::Tools, || peer.list_all_tools())
                .await?;
            if !replayed {
                relay.listed_tools(&tools);
            }
            Ok((tools, replayed))
        };
        let tools = self
            .merged(
                &ctx,
                Some(NameKind::Tool),
                fetch,
                |t| &t.name,
                |t, n| t.name = Cow::Owned(n),
                crate::gateway::upstream::lists::present_tool_ui,
            )
            .await;
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if crate::gateway::caller::is_modern(&ctx) {
            // No requests to the caller on this protocol: the upstream's are returned in an
            // `InputRequiredResult` and answered by calling again.
            return self.call_tool_in_rounds(request, ctx).await;
        }
        let (server, bare) = self.route(&ctx, NameKind::Tool, &request.name)?;
        let bare = bare.into_owned();
        let wanted = ctx.meta.get_progress_token().or_else(|| {
            request
                .meta
                .as_ref()
                .and_then(RequestMetaObject::get_progress_token)
        });
        let mut params = request;
        params.name = Cow::Owned(bare);
        params.meta = forward_meta(params.meta.take());
        let asked = Self::traced(&ctx, "tools/call", &mut params.meta);
        // Neither exists before 2026-07-28: nothing of the caller's is passed on as one.
        (params.input_responses, params.request_state) = (None, None);
        let mut call = ToolCall::new(params, wanted);
        call.asking.tasks = declares_tasks(&ctx);
        let upstreams = self.upstreams(&ctx);
        let mut side = SessionSide {
            peer: ctx.peer.clone(),
            ct: ctx.ct.clone(),
        };
        let (side, at, adopter) = (&mut side, &server, upstreams.caller());
        let answered = upstreams
            .one(Some(&ctx.peer), &server, asked, |peer, relay| async move {
                // A handshake caller hears the log messages of an upstream that takes a level
                // per request at the level it set, or at every level (as a handshake server
                // that was never given a level may send them all).
                call.asking.log_level = Some(relay.log_level().unwrap_or(LoggingLevel::Debug));
                match tool_call::call_tool(peer, relay, call, side).await? {
                    Some(ServerResult::CreateTaskResult(r)) => Ok(Some(CallToolResponse::Task(
                        self.adopt_task(adopter, at, r),
                    ))),
                    Some(result) => {
                        tool_call::tool_result(result).map(|r| Some(CallToolResponse::Complete(r)))
                    }
                    None => Ok(None),
                }
            })
            .await?;
        answered.ok_or_else(|| ErrorData::internal_error("the request was cancelled", None))
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        self.serve_get_task(request, ctx).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.serve_update_task(request, ctx).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.serve_cancel_task(request, ctx).await
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let fetch = |peer: Peer<RoleClient>, relay: Relay| async move {
            relay
                .lists()
                .get_or_fetch(Listed::Prompts, || peer.list_all_prompts())
                .await
        };
        let prompts = self
            .merged(
                &ctx,
                Some(NameKind::Prompt),
                fetch,
                |p| &p.name,
                |p, n| p.name = n,
                |_, _| {},
            )
            .await;
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let (server, bare) = self.route(&ctx, NameKind::Prompt, &request.name)?;
        let bare = bare.into_owned();
        let mut params = request;
        params.name.clone_from(&bare);
        params.meta = forward_meta(params.meta.take());
        let mut response = self.ask_for_input(&ctx, &server, &bare, params).await?;
        if let GetPromptResponse::Complete(result) = &mut response {
            relayed(&mut result.result_type, &mut result.meta);
        }
        Ok(response)
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let fetch = |peer: Peer<RoleClient>, relay: Relay| async move {
            relay
                .lists()
                .get_or_fetch(Listed::Resources, || peer.list_all_resources())
                .await
        };
        let resources = self
            .merged(
                &ctx,
                Some(NameKind::Resource),
                fetch,
                |r| &r.uri,
                |r, n| r.uri = n,
                |_, _| {},
            )
            .await;
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let fetch = |peer: Peer<RoleClient>, relay: Relay| async move {
            relay
                .lists()
                .get_or_fetch(Listed::ResourceTemplates, || {
                    peer.list_all_resource_templates()
                })
                .await
        };
        let templates = self
            .merged(
                &ctx,
                Some(NameKind::Resource),
                fetch,
                |t| &t.uri_template,
                |t, n| t.uri_template = n,
                |_, _| {},
            )
            .await;
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let (server, bare) = self.route(&ctx, NameKind::Resource, &request.uri)?;
        let bare = bare.into_owned();
        let mut params = request;
        params.uri.clone_from(&bare);
        params.meta = forward_meta(params.meta.take());
        let mut response = self.ask_for_input(&ctx, &server, &bare, params).await?;
        if let ReadResourceResponse::Complete(result) = &mut response {
            relayed(&mut result.result_type, &mut result.meta);
            for c in &mut result.contents {
                name_contents_uri(&self.shared, &server, c);
            }
        }
        Ok(response)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let (server, bare) = self.route(&ctx, NameKind::Resource, &request.uri)?;
        let uri = bare.into_owned();
        self.one(
            &ctx,
            &server,
            "resources/subscribe",
            |peer, relay| async move { relay.subscribe_upstream(&peer, uri).await },
        )
        .await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let (server, bare) = self.route(&ctx, NameKind::Resource, &request.uri)?;
        let uri = bare.into_owned();
        self.one(
            &ctx,
            &server,
            "resources/unsubscribe",
            |peer, relay| async move { relay.unsubscribe_upstream(&peer, uri).await },
        )
        .await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let mut params = request.clone();
        let server = match &mut params.r#ref {
            Reference::Prompt(p) => {
                let (server, bare) = self.route(&ctx, NameKind::Prompt, &p.name)?;
                p.name = bare.into_owned();
                server
            }
            Reference::Resource(r) => {
                let (server, bare) = self.route(&ctx, NameKind::Resource, &r.uri)?;
                r.uri = bare.into_owned();
                server
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "unsupported completion reference",
                    None,
                ));
            }
        };
        params.meta = forward_meta(request.meta.clone());
        let asked = Self::traced(&ctx, "completion/complete", &mut params.meta);
        self.one(&ctx, &server, asked, |peer, _| async move {
            peer.complete(params).await
        })
        .await
        .map(|mut result| {
            relayed(&mut result.result_type, &mut result.meta);
            result
        })
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let _ = self
            .upstreams(&ctx)
            .all(Some(&ctx.peer), |peer, relay| {
                let params = request.clone();
                async move {
                    // An upstream without the handshake takes the level with each request.
                    if crate::gateway::upstream::client::per_request(&peer) {
                        relay.set_log_level(params.level);
                        return Ok(());
                    }
                    peer.set_level(params).await
                }
            })
            .await;
        Ok(())
    }
}

/// Whether the caller declared the tasks extension (for this request, or its session).
pub(crate) fn declares_tasks(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.client_capabilities()
        .is_some_and(|c| c.supports_tasks())
}

/// The caller's end of a call made on an rmcp session: notices and the upstream's requests go
/// to the caller on that session, and the request's cancellation ends the call.
struct SessionSide {
    peer: Peer<RoleServer>,
    ct: tokio_util::sync::CancellationToken,
}

impl tool_call::CallerSide for SessionSide {
    async fn notify(&mut self, notice: tool_call::Notice) {
        let _ = match notice {
            tool_call::Notice::Progress(p) => self.peer.notify_progress(p).await,
            tool_call::Notice::Log(p) => self.peer.notify_logging_message(p).await,
        };
    }

    async fn ask(&mut self, ask: tool_call::Ask) {
        let peer = self.peer.clone();
        // Answered in a task of its own: the call's stream is read on meanwhile.
        tokio::spawn(async move {
            let answer = match serde_json::from_value::<ServerRequest>(ask.request()) {
                Ok(request) => match peer.send_request(request).await {
                    Ok(result) => Ok(serde_json::to_value(result).unwrap_or_default()),
                    Err(ServiceError::McpError(e)) => Err(e),
                    Err(other) => Err(ErrorData::internal_error(
                        format!("the client did not answer: {other}"),
                        None,
                    )),
                },
                Err(_) => Err(ErrorData::method_not_found::<rmcp::model::PingRequestMethod>()),
            };
            ask.answer(answer).await;
        });
    }

    fn cancelled(&self) -> impl Future<Output = ()> + Send {
        self.ct.clone().cancelled_owned()
    }
}

/// Resource contents name their URI: name it as the caller names `server`'s resources.
fn name_contents_uri(
    shared: &GatewayState,
    server: &str,
    contents: &mut rmcp::model::ResourceContents,
) {
    let uri = match contents {
        rmcp::model::ResourceContents::TextResourceContents { uri, .. }
        | rmcp::model::ResourceContents::BlobResourceContents { uri, .. } => uri,
        #[allow(unreachable_patterns)]
        _ => return,
    };
    *uri = shared.resource_name(server, uri);
}
