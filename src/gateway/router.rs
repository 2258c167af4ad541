//! The HTTP surface of the gateway: the MCP endpoint behind the layers, and the REST, registry,
//! legacy SSE and health endpoints, all of which go through the same layered stack.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

use super::{Gateway, legacy};
use crate::body::ReplyBody;
use crate::cost::CostHook;
use crate::engine::{Grant, ToolPrefix};
use crate::identity::ResolveIdentity;
use crate::protocol::sse;
use crate::rejection::Rejection;
use crate::stack::GatekeeperLayer;

pub(crate) type McpResponse = http::Response<BoxBody<Bytes, Infallible>>;
pub(crate) type Internal = BoxCloneSyncService<Request<axum::body::Body>, McpResponse, Infallible>;

/// Reads the key digest of a request as the identity layer does.
pub(crate) type DigestFn =
    dyn Fn(&HeaderMap) -> Result<Option<crate::engine::KeyDigest>, Rejection> + Send + Sync;

#[derive(Clone)]
pub(crate) struct RouterState {
    pub(crate) gateway: Gateway,
    /// The layered stack over a stateless, JSON-answering instance of the gateway.
    pub(crate) internal: Internal,
    pub(crate) digest: Arc<DigestFn>,
    pub(crate) bridges: Arc<legacy::Bridges>,
}

/// The protocol version REST requests are made with.
const REST_PROTOCOL: &str = "2025-06-18";

/// Headers of a caller's HTTP request that are not carried into an internal MCP request.
const NOT_CARRIED: &[&str] = &[
    "content-length",
    "content-type",
    "accept",
    "transfer-encoding",
    "connection",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
];

/// What an internal MCP request got: the JSON-RPC reply (none for a notification), and the
/// refusal when the layers refused the request in-band (the reply then carries the refusal).
pub(crate) type Answer = Option<(Value, Option<Rejection>)>;

/// Sends one JSON-RPC request through the layered stack with the caller's headers, and
/// returns the JSON-RPC reply, or an HTTP-level refusal as a response.
pub(crate) async fn internal_call(
    state: &RouterState,
    headers: &HeaderMap,
    servers: Option<&str>,
    protocol: Option<&str>,
    body: &Value,
) -> Result<Answer, McpResponse> {
    let mut request = Request::post("/mcp")
        .body(axum::body::Body::from(
            serde_json::to_vec(body).expect("serialises"),
        ))
        .expect("a valid request");
    let h = request.headers_mut();
    for (name, value) in headers {
        if !NOT_CARRIED.contains(&name.as_str()) {
            h.append(name.clone(), value.clone());
        }
    }
    if !h.contains_key(header::HOST) {
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1"));
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    // An initialize names its version in the body; everything else in the header.
    if let Some(p) = protocol
        && body.get("method").and_then(Value::as_str) != Some("initialize")
    {
        h.insert(
            "mcp-protocol-version",
            HeaderValue::from_str(p).map_err(|_| bad("invalid protocol version"))?,
        );
    }
    if let Some(s) = servers {
        h.insert(
            "x-mcp-servers",
            HeaderValue::from_str(s).map_err(|_| bad("invalid server_id"))?,
        );
    }
    let response = state
        .internal
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    if let Some(r) = response.extensions().get::<Rejection>()
        && !r.is_in_band()
    {
        return Err(r.clone().into_rest_response());
    }
    let is_sse = crate::protocol::media_is(
        response.headers().get(header::CONTENT_TYPE),
        "text/event-stream",
    );
    let status = response.status();
    let refusal = response.extensions().get::<Rejection>().cloned();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if status == StatusCode::ACCEPTED || bytes.is_empty() {
        return Ok(None);
    }
    if !status.is_success() {
        crate::trace::warn(&format!(
            "internal MCP request failed with {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
        return Err(json_response(
            StatusCode::BAD_GATEWAY,
            &json!({"error": "the MCP service failed"}),
        ));
    }
    let id = body.get("id");
    let parsed = if is_sse {
        let mut framer = sse::SseFramer::new(64 << 20);
        framer.push(&bytes);
        let mut found = None;
        while let Ok(Some(event)) = framer.next_event() {
            if let Some(v) =
                sse::event_data(&event).and_then(|d| serde_json::from_str::<Value>(&d).ok())
                && v.get("id") == id
            {
                found = Some(v);
            }
        }
        found
    } else {
        serde_json::from_slice(&bytes).ok()
    };
    parsed.map(|v| Some((v, refusal))).ok_or_else(|| {
        json_response(
            StatusCode::BAD_GATEWAY,
            &json!({"error": "the MCP reply could not be read"}),
        )
    })
}

pub(crate) fn json_response(status: StatusCode, v: &Value) -> McpResponse {
    let mut r = McpResponse::new(BoxBody::from_bytes(Bytes::from(
        serde_json::to_vec(v).expect("serialises"),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn bad(message: &str) -> McpResponse {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

#[derive(Deserialize)]
struct ListQuery {
    server_id: Option<String>,
}

async fn rest_list(
    State(state): State<RouterState>,
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

async fn rest_call(
    State(state): State<RouterState>,
    headers: HeaderMap,
    body: Bytes,
) -> McpResponse {
    let Ok(call) = serde_json::from_slice::<CallBody>(&body) else {
        return bad("expected {\"server_id\", \"name\", \"arguments\"}");
    };
    let policy = state.gateway.gatekeeper().policy();
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

/// `{"status": "ok"}`; with the master key, each upstream's last outcome too (which names
/// servers and errors, so nobody else sees it).
async fn health(State(state): State<RouterState>, headers: HeaderMap) -> impl IntoResponse {
    let admin = matches!((state.digest)(&headers), Ok(Some(d)) if state.gateway.gatekeeper().policy().identities().is_master(&d));
    if admin {
        Json(json!({"status": "ok", "upstreams": state.gateway.shared.health_report()}))
    } else {
        Json(json!({"status": "ok"}))
    }
}

/// The registry of the servers the caller may use.
fn registry(gateway: &Gateway, request: &Request<axum::body::Body>) -> McpResponse {
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
        .filter(|s| gateway.shared.upstreams.contains_key(s.name()))
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

impl Gateway {
    /// The gateway behind `layer`, with every endpoint of the example gateway.
    ///
    /// The MCP endpoint is stateful (sessions, server-to-client requests relayed); REST and the
    /// legacy bridge use a stateless instance behind the same layers.
    pub fn router<R: ResolveIdentity, H: CostHook>(
        &self,
        layer: GatekeeperLayer<R, H>,
    ) -> axum::Router {
        let mcp = layer.layer(self.service(StreamableHttpServerConfig::default()));
        let mut stateless = StreamableHttpServerConfig::default();
        stateless.legacy_session_mode = false;
        stateless.json_response = true;
        let internal: Internal = BoxCloneSyncService::new(layer.layer(self.service(stateless)));
        let digest_layer = layer.clone();
        let state = RouterState {
            gateway: self.clone(),
            internal,
            digest: Arc::new(move |h: &HeaderMap| digest_layer.presented_digest(h)),
            bridges: Arc::default(),
        };
        let mut router = axum::Router::new()
            .route("/health", axum::routing::get(health))
            .route("/mcp-rest/tools/list", axum::routing::get(rest_list))
            .route("/mcp-rest/tools/call", axum::routing::post(rest_call))
            .route("/sse", axum::routing::get(legacy::open))
            .route("/message", axum::routing::post(legacy::post));
        if self.shared.registry {
            let gateway = self.clone();
            let inner = tower::service_fn(move |req: Request<axum::body::Body>| {
                let r = registry(&gateway, &req);
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
        router.with_state(state).fallback_service(mcp)
    }
}
