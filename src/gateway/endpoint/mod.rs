//! The MCP endpoint as an HTTP service: [`GatewayService`], rmcp's streamable HTTP server with
//! `tools/call` and the list methods answered through the handler's call path by the endpoint
//! itself (see `route`), the sessions it keeps, and its replies.
//!
//! This wing never decides what a caller may do (the layers did) and never speaks to an
//! upstream but through the `upstream` wing's call path and the handler's routing.

pub(crate) mod call;
pub(crate) mod lists;
pub(crate) mod reply;
pub(crate) mod route;
pub(crate) mod sessions;

use std::fmt;
use std::sync::Arc;

use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};

use crate::gateway::handler::GatewayHandler;
use crate::gateway::shared::GatewayState;

/// The gateway's MCP endpoint: rmcp's streamable HTTP service, with `tools/call` and the list
/// methods answered by the gateway itself.
///
/// A `tools/call` of a caller on a protocol with the initialize handshake, for a streamable
/// HTTP upstream spoken to with the handshake, is posted on the caller's pooled upstream session
/// and answered by the gateway itself, without rmcp's server side (which decodes every request
/// through an untagged enum and runs it through a service of its own); a list of tools,
/// prompts, resources or resource templates over streamable HTTP upstreams is served from the
/// sessions' kept lists or asked of each upstream the same way, and the lists merged. Where a
/// request goes is decided before its body is read, from what the layers parsed and attributed:
/// every other request goes to rmcp unchanged, and nothing the endpoint takes is handed back;
/// answers are the same either way. On a stateful endpoint the upstream's requests of its
/// client reach the caller on the call's stream and the caller's answers (on the same session
/// only) go back to the upstream; the caller's `notifications/cancelled` ends the call. On a
/// stateless endpoint, where a caller cannot answer, they are refused at once instead of
/// waiting for the upstream's timeout.
#[derive(Clone)]
pub struct GatewayService {
    shared: Arc<GatewayState>,
    endpoint: Option<Arc<route::Endpoint>>,
    rmcp: Arc<StreamableHttpService<GatewayHandler, LocalSessionManager>>,
}

impl fmt::Debug for GatewayService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayService")
            .field("answers_calls", &self.endpoint.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> tower_service::Service<http::Request<B>> for GatewayService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: fmt::Display,
{
    type Response = reply::McpResponse;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use route::Route;
        let rmcp = Arc::clone(&self.rmcp);
        let Some(endpoint) = self.endpoint.clone() else {
            return Box::pin(async move { Ok(Box::pin(rmcp.handle(request)).await) });
        };
        let shared = Arc::clone(&self.shared);
        // Each way's future is boxed where it is taken, so that this one stays small: a future
        // is copied whole each time it moves.
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let route = endpoint.route(&shared, &parts).await;
            let max = endpoint.max_body;
            Ok(match route {
                Route::Rmcp => {
                    // A new session's id is in the response to its `initialize`.
                    let asked = parts.headers.get("mcp-session-id").cloned();
                    let response =
                        Box::pin(rmcp.handle(http::Request::from_parts(parts, body))).await;
                    let session =
                        asked.or_else(|| response.headers().get("mcp-session-id").cloned());
                    rmcp_saw(&endpoint, session.as_ref(), response)
                }
                Route::Cancelled => route::accepted(),
                Route::Call(plan) => match route::collect(body, max).await {
                    Ok(bytes) => {
                        Box::pin(call::answer(&shared, &endpoint, plan, &parts, &bytes)).await
                    }
                    Err(refused) => refused,
                },
                Route::List(method, caller, session) => match route::collect(body, max).await {
                    Ok(bytes) => {
                        let list = lists::Request {
                            method: &method,
                            caller,
                            session,
                            parts: &parts,
                            bytes: &bytes,
                        };
                        Box::pin(lists::answer(&shared, &endpoint, list)).await
                    }
                    Err(refused) => refused,
                },
                Route::Answer(session) => match route::collect(body, max).await {
                    Ok(bytes) => Box::pin(endpoint.on_answer(&session, &bytes)).await,
                    Err(refused) => refused,
                },
            })
        })
    }
}

/// Notes that rmcp handled a request of `session` (see `sessions`).
fn rmcp_saw(
    endpoint: &route::Endpoint,
    session: Option<&http::HeaderValue>,
    response: reply::McpResponse,
) -> reply::McpResponse {
    if let (Some(sessions), Some(session)) = (&endpoint.sessions, session)
        && response.status().is_success()
        && let Ok(session) = session.to_str()
    {
        sessions.saw(session);
    }
    response
}

impl GatewayService {
    /// The endpoint over `shared` with `config` (its allowed hosts, if the gateway has them).
    pub(crate) fn new(shared: Arc<GatewayState>, mut config: StreamableHttpServerConfig) -> Self {
        if let Some(hosts) = &shared.allowed_hosts {
            config.allowed_hosts.clone_from(hosts);
        }
        let manager = Arc::new(LocalSessionManager::default());
        let endpoint = route::Endpoint::for_config(&config, &manager).map(Arc::new);
        let for_sessions = Arc::clone(&shared);
        Self {
            shared,
            endpoint,
            rmcp: Arc::new(StreamableHttpService::new(
                move || Ok(GatewayHandler::for_session(&for_sessions)),
                manager,
                config,
            )),
        }
    }
}
