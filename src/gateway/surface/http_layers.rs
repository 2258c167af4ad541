//! The HTTP layers around every endpoint of the gateway, from tower-http: a request id set and
//! passed back (`x-request-id`), credential headers marked sensitive (so no log or debug output
//! of a request shows them), a panic answered with a plain JSON 500 (never its message), a
//! bound on how long a request body may take to arrive, and CORS for browser MCP clients of
//! the configured origins.

use std::time::Duration;

use axum::Router;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

/// The request id header.
const REQUEST_ID: &str = "x-request-id";

/// Marks a request whose id the gateway made: the id is its answer's and its logs', never a
/// header of the caller's (so never forwarded upstream, and never part of what tells one
/// upstream session from another).
#[derive(Clone, Copy, Debug)]
struct Generated;

/// How long a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The request headers a browser MCP client sends besides the CORS-safe ones.
const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "accept",
    "last-event-id",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "x-litellm-api-key",
    "x-litellm-end-user-id",
    "x-litellm-agent-id",
    "x-mcp-servers",
    "x-mcp-auth",
    "x-request-id",
    "traceparent",
    "tracestate",
    "baggage",
];

/// The response headers a browser MCP client must be able to read.
const EXPOSED_HEADERS: &[&str] = &[
    "mcp-session-id",
    "mcp-protocol-version",
    "www-authenticate",
    "x-request-id",
];

/// `router` inside the gateway's HTTP layers; CORS answers the `origins` given (none: no CORS
/// header at all, so browsers keep other origins out).
pub(crate) fn around(router: Router, origins: &[HeaderValue], client_auth: &HeaderName) -> Router {
    let client_auth = client_auth.clone();
    let mut router = router
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(tower::util::MapRequestLayer::new(
            move |request: Request<axum::body::Body>| sensitive(request, &client_auth),
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(tower::util::MapRequestLayer::new(
            |mut request: Request<axum::body::Body>| {
                if !request.headers().contains_key(REQUEST_ID) {
                    request.extensions_mut().insert(Generated);
                }
                request
            },
        ));
    if !origins.is_empty() {
        router = router.layer(cors(origins));
    }
    router
}

/// What browsers of `origins` may do: every MCP method and header, the session and
/// authentication headers readable, no cookies.
fn cors(origins: &[HeaderValue]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(origins.iter().cloned())
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers(
            ALLOWED_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect::<Vec<_>>(),
        )
        .expose_headers(
            EXPOSED_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect::<Vec<_>>(),
        )
        .max_age(Duration::from_secs(600))
}

/// The open CORS of the RFC 9728 metadata: public and the same for everyone.
#[cfg(feature = "oauth")]
pub(crate) fn open_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD])
}

/// Takes out a request id the gateway made (see [`Generated`]), and marks every credential
/// header of `request` sensitive: the gateway key, `authorization`,
/// cookies, and every `x-mcp-…` header but the scope (`x-mcp-servers`), which carry
/// credentials for upstreams.
fn sensitive(
    mut request: Request<axum::body::Body>,
    client_auth: &HeaderName,
) -> Request<axum::body::Body> {
    if request.extensions().get::<Generated>().is_some() {
        request.headers_mut().remove(REQUEST_ID);
    }
    for (name, value) in request.headers_mut().iter_mut() {
        let name = name.as_str();
        let credential = name == header::AUTHORIZATION
            || name == header::PROXY_AUTHORIZATION
            || name == header::COOKIE
            || name == "x-litellm-api-key"
            || name == client_auth.as_str()
            || (name.starts_with("x-mcp-") && name != "x-mcp-servers");
        if credential {
            value.set_sensitive(true);
        }
    }
    request
}

/// A panic's answer: a JSON 500 that says nothing of the panic.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response<String> {
    let mut response = Response::new(r#"{"error":"internal error"}"#.to_owned());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
