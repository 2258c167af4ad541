//! The HTTP surface of the gateway: the router with the MCP endpoint behind the layers, and the
//! REST, registry, legacy SSE, health, metrics and pin admin endpoints.
//!
//! Every endpoint here reaches the gateway through the same layered stack as `/mcp` (see
//! `internal`): this wing never calls the handler or an upstream directly.

mod http_layers;
pub(crate) mod internal;
mod metrics_endpoint;
mod pins_admin;
mod sse_bridge;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::Layer;
use tower::util::BoxCloneSyncService;

use self::internal::{Internal, McpResponse, Surface, bad, internal_call, json_response};
use crate::cost::CostHook;
use crate::engine::{Grant, ToolPrefix};
use crate::gateway::endpoint::GatewayService;
use crate::gateway::shared::GatewayState;
use crate::identity::ResolveIdentity;
use crate::rejection::Rejection;
use crate::stack::GatekeeperLayer;

/// The protocol version REST requests are made with.
const REST_PROTOCOL: &str = "2025-06-18";

#[derive(Deserialize)]
struct ListQuery {
    server_id: Option<String>,
}

async fn rest_list(
    State(state): State<Surface>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> McpResponse {
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    match internal_call(
        &state,
        &headers,
        q.server_id.as_deref(),
        Some(REST_PROTOCOL),
        &request,
    )
    .await
    {
        Ok(Some((_, Some(refusal)))) => refusal.into_rest_response(),
        Ok(Some((reply, None))) if reply.get("result").is_some() => json_response(
            StatusCode::OK,
            &json!({"tools": reply["result"]["tools"], "error": null, "message": "Successfully retrieved tools"}),
        ),
        Ok(reply) => json_response(
            StatusCode::BAD_GATEWAY,
            &json!({"tools": [], "error": reply.and_then(|(r, _)| r["error"]["message"].as_str().map(str::to_owned)), "message": "Failed to retrieve tools"}),
        ),
        Err(refusal) => refusal,
    }
}

#[derive(Deserialize)]
struct CallBody {
    server_id: Option<String>,
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

async fn rest_call(State(state): State<Surface>, headers: HeaderMap, body: Bytes) -> McpResponse {
    let Ok(call) = serde_json::from_slice::<CallBody>(&body) else {
        return bad("expected {\"server_id\", \"name\", \"arguments\"}");
    };
    let policy = state.shared.gatekeeper.policy();
    let catalog = policy.catalog();
    let settings = catalog.settings();
    // A bare name with a server_id is prefixed the way the MCP endpoint names it.
    let name = match (&call.server_id, settings.tool_prefix) {
        (Some(server), ToolPrefix::Always) if catalog.split_prefixed(&call.name).is_none() => {
            format!("{server}{}{}", settings.separator, call.name)
        }
        _ => call.name.clone(),
    };
    let mut params = json!({"name": name});
    if let Some(args) = call.arguments {
        params["arguments"] = args;
    }
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
    match internal_call(
        &state,
        &headers,
        call.server_id.as_deref(),
        Some(REST_PROTOCOL),
        &request,
    )
    .await
    {
        Ok(Some((_, Some(refusal)))) => refusal.into_rest_response(),
        Ok(Some((reply, None))) => {
            if let Some(result) = reply.get("result") {
                json_response(StatusCode::OK, result)
            } else {
                let code = reply["error"]["code"].as_i64().unwrap_or(0);
                let status = if code == -32602 || code == -32601 {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::BAD_GATEWAY
                };
                json_response(status, &json!({"error": reply["error"]["message"]}))
            }
        }
        Ok(None) => json_response(StatusCode::BAD_GATEWAY, &json!({"error": "no reply"})),
        Err(refusal) => refusal,
    }
}

/// `{"status": "ok"}` (or `degraded`, or `unavailable` with 503: see
/// [`GatewayBuilder::health_report`](crate::gateway::GatewayBuilder::health_report)); with the master
/// key, each upstream's last outcome and each reported part's details too (which name servers
/// and errors, so nobody else sees them).
async fn health(State(state): State<Surface>, headers: HeaderMap) -> impl IntoResponse {
    use crate::source::HealthState;
    let shared = &state.shared;
    let worst = shared
        .reports
        .iter()
        .map(|(_, r)| r.state())
        .max()
        .unwrap_or(HealthState::Ok);
    let code = if worst == HealthState::Unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let admin = matches!((state.digest)(&headers), Ok(Some(d)) if state.shared.gatekeeper.policy().identities().is_master(&d));
    let mut body = json!({"status": worst.as_str()});
    if admin {
        body["upstreams"] = shared.health_report();
        for (name, part) in &shared.reports {
            body[name.as_str()] = part.report();
        }
        let gk = &state.shared.gatekeeper;
        body["pins"] = pins_admin::quarantined(gk, gk.policy().catalog());
        body["audit"] = json!(gk.audit().stats());
    }
    (code, Json(body))
}

/// The registry of the servers the caller may use.
fn registry(shared: &GatewayState, request: &Request<axum::body::Body>) -> McpResponse {
    let Some(grant) = request.extensions().get::<Grant>() else {
        return Rejection::missing_credential().into_rest_response();
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let catalog = grant.catalog();
    let servers: Vec<Value> = grant
        .effective()
        .iter()
        .map(|id| catalog.server(id))
        .filter(|s| shared.upstreams.contains_key(s.name()))
        .map(|s| {
            json!({"server": {
                "name": s.name(),
                "title": s.name(),
                "description": s.description().unwrap_or_default(),
                "version": "1.0.0",
                "remotes": [{"type": "streamable-http", "url": format!("http://{host}/{}/mcp", s.name())}]
            }})
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "servers": servers }))
}

/// The router of every endpoint of the gateway over `shared`, behind `layer` (see
/// `Gateway::router`).
pub(crate) fn router<R: ResolveIdentity, H: CostHook>(
    shared: &Arc<GatewayState>,
    layer: GatekeeperLayer<R, H>,
) -> axum::Router {
    let mcp = layer.layer(GatewayService::new(
        Arc::clone(shared),
        StreamableHttpServerConfig::default(),
    ));
    let mut stateless = StreamableHttpServerConfig::default();
    stateless.legacy_session_mode = false;
    stateless.json_response = true;
    let internal: Internal =
        BoxCloneSyncService::new(layer.layer(GatewayService::new(Arc::clone(shared), stateless)));
    let digest_layer = layer.clone();
    let state = Surface {
        shared: Arc::clone(shared),
        internal,
        digest: Arc::new(move |h: &HeaderMap| digest_layer.presented_digest(h)),
    };
    let bridge = axum::Router::new()
        .route("/sse", axum::routing::get(sse_bridge::open))
        .route("/message", axum::routing::post(sse_bridge::post))
        .with_state(sse_bridge::BridgeState::new(state.clone()));
    let mut router = axum::Router::new()
        .route("/health", axum::routing::get(health))
        .route("/metrics", axum::routing::get(metrics_endpoint::scrape))
        .route("/mcp-rest/tools/list", axum::routing::get(rest_list))
        .route("/mcp-rest/tools/call", axum::routing::post(rest_call))
        .route("/admin/pins", axum::routing::get(pins_admin::list))
        .route(
            "/admin/pins/approve",
            axum::routing::post(pins_admin::approve),
        )
        .merge(bridge);
    if shared.registry {
        let shared = Arc::clone(shared);
        let inner = tower::service_fn(move |req: Request<axum::body::Body>| {
            let r = registry(&shared, &req);
            async move { Ok::<_, Infallible>(r) }
        });
        // The registry's own path would read as `/{servers}/mcp/…` ("v1"): the layers see it
        // as a plain path.
        let registry = tower::ServiceBuilder::new()
            .map_request(|mut r: Request<axum::body::Body>| {
                *r.uri_mut() = http::Uri::from_static("/registry.json");
                r
            })
            .service(layer.layer(inner));
        router = router.route_service("/v1/mcp/registry.json", registry);
    }
    #[cfg(feature = "oauth")]
    if let Some(oauth) = &shared.oauth {
        use crate::oauth::METADATA_PATH;
        let metadata = || {
            tower::ServiceBuilder::new()
                .layer(http_layers::open_cors())
                .map_response(|r: http::Response<crate::body::Body>| r.map(axum::body::Body::new))
                .service(oauth.metadata())
        };
        router = router
            .route_service(METADATA_PATH, metadata())
            .route_service(&format!("{METADATA_PATH}/{{*path}}"), metadata());
    }
    http_layers::around(
        router.with_state(state).fallback_service(mcp),
        &shared.cors_origins,
        &shared.client_auth_header,
    )
}
