//! [`AllowedParamsLayer`]: which arguments a `tools/call` may carry.
//!
//! Checks the top-level argument names of every `tools/call` against the server's
//! `allowed_params` for that tool and refuses the call, in-band, with LiteLLM's exact text when
//! one is not allowed. A tool without an entry accepts any argument; an empty entry accepts none.
//! (Tool schemas are pruned to the same names in `tools/list` by the permission layer.)
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
//! use mcp_gatekeeper::{identity::IdentityLayer, params::AllowedParamsLayer};
//!
//! let service = ServiceBuilder::new()
//!     .layer(IdentityLayer::new(gatekeeper.clone()))
//!     .layer(AllowedParamsLayer::new(gatekeeper))
//!     .service(server);
//! let allowed = call("sk-alice", "wiki-search", r#"{"query":"tower"}"#);
//! assert!(!text(service.clone().oneshot(allowed).await?).await.contains("isError"));
//! let refused = call("sk-alice", "wiki-search", r#"{"query":"tower","limit":5}"#);
//! assert!(text(service.oneshot(refused).await?).await.contains(r#""isError":true"#));
//! # Ok(()) }
//! ```

use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ReplyBody;
use crate::context::{self, ContextView};
use crate::future::{self, NoPost};
use crate::gatekeeper::Gatekeeper;
use crate::protocol::{McpRequest, Method};
use crate::rejection::Rejection;

/// Adds [`AllowedParams`] to a service. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct AllowedParamsLayer {
    gatekeeper: Gatekeeper,
}

impl AllowedParamsLayer {
    /// Argument checks under `gatekeeper`'s policy.
    #[must_use]
    pub fn new(gatekeeper: Gatekeeper) -> Self {
        Self { gatekeeper }
    }
}

impl<S> Layer<S> for AllowedParamsLayer {
    type Service = AllowedParams<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AllowedParams {
            inner,
            gatekeeper: self.gatekeeper.clone(),
        }
    }
}

/// The service [`AllowedParamsLayer`] produces.
#[derive(Clone)]
pub struct AllowedParams<S> {
    inner: S,
    gatekeeper: Gatekeeper,
}

impl<S: fmt::Debug> fmt::Debug for AllowedParams<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowedParams")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

crate::inner_service::inner_access!(impl<S> AllowedParams<S>);

future::layer_future!(
    /// Response future of [`AllowedParams`].
    NoPost; where
);

fn check(ext: &mut http::Extensions, gk: &Gatekeeper) -> Result<(), Rejection> {
    match refusal(ext, gk) {
        None => Ok(()),
        Some(refusal) => {
            crate::decision_events::refused_later(gk.audit(), ext, &refusal, None, None);
            Err(refusal)
        }
    }
}

/// The refusal of a `tools/call` whose arguments `allowed_params` does not allow.
fn refusal(ext: &mut http::Extensions, gk: &Gatekeeper) -> Option<Rejection> {
    let context = ContextView::of(ext, gk);
    let (policy, ext) = (context.policy(), context.extensions());
    let head = ext.get::<McpRequest>()?;
    if head.request_method() != Some(&Method::ToolsCall) {
        return None;
    }
    let name = head.target.as_deref().unwrap_or_default();
    let catalog = policy.catalog();
    // Unattributable names are the permission layer's to refuse.
    let (server, bare) = context::tool_target(ext, policy, gk, name)?;
    catalog
        .check_params(server, bare, &head.argument_keys)
        .err()
        .map(|d| Rejection::params_denied(&d).answering(head))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AllowedParams<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body + From<Bytes> + Send + 'static,
    ReqBody::Error: fmt::Display,
    ResBody: ReplyBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let gk = self.gatekeeper.clone();
        ResponseFuture::from_inner(context::inspect_then(
            &mut self.inner,
            request,
            &self.gatekeeper,
            move |ext| check(ext, &gk).map(|()| NoPost),
        ))
    }
}
