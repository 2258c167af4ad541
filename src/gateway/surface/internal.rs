//! One MCP request made from inside the gateway, through the same layered stack as `/mcp`:
//! what the REST endpoints and the legacy `/sse` bridge are built on. It never skips a layer:
//! whatever a caller could not do on `/mcp`, it cannot do here.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::body::ReplyBody;
use crate::gateway::shared::GatewayState;
use crate::protocol::sse;
use crate::rejection::Rejection;

pub(crate) type McpResponse = http::Response<BoxBody<Bytes, Infallible>>;
pub(crate) type Internal = BoxCloneSyncService<Request<axum::body::Body>, McpResponse, Infallible>;

/// Reads the key digest of a request as the identity layer does.
pub(crate) type DigestFn =
    dyn Fn(&HeaderMap) -> Result<Option<crate::engine::KeyDigest>, Rejection> + Send + Sync;

/// What every HTTP endpoint besides `/mcp` reaches the gateway through.
#[derive(Clone)]
pub(crate) struct Surface {
    pub(crate) shared: Arc<GatewayState>,
    /// The layered stack over a stateless, JSON-answering instance of the gateway.
    pub(crate) internal: Internal,
    pub(crate) digest: Arc<DigestFn>,
}

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
    state: &Surface,
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
        crate::decision_events::warn(&format!(
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

pub(crate) fn bad(message: &str) -> McpResponse {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}
