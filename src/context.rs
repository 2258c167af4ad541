//! Per-request state shared by the layers through request extensions: the policy snapshot,
//! the grant, and the parsed request head. Whichever layer first needs one computes it; the
//! others reuse it, so nothing is loaded, resolved or parsed twice.

use std::fmt::Display;
use std::sync::Arc;

use bytes::Bytes;
use http::{Extensions, Request, Response};
use tower_service::Service;

use crate::body::ReplyBody;
use crate::engine::{DenialStyle, Grant, Principal, Scope, ServerId};
use crate::future::{Post, PostProcess, ResponseFuture};
use crate::gatekeeper::{Gatekeeper, PolicySnapshot};
use crate::protocol::{self, CollectError, McpRequest, ParseError};
use crate::rejection::Rejection;

/// The server and bare name a permitted `tools/call` resolved to; later layers (allowed_params,
/// cost) read it from the request extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToolTarget {
    /// The server.
    pub server: ServerId,
    bare_start: usize,
}

impl ToolTarget {
    /// The target whose bare name starts at `bare_start` of the name the request used.
    pub(crate) fn new(server: ServerId, bare_start: usize) -> Self {
        Self { server, bare_start }
    }

    /// The bare tool name, given the name the request used.
    #[must_use]
    pub fn bare<'a>(&self, requested: &'a str) -> &'a str {
        &requested[self.bare_start..]
    }
}

/// Takes the policy snapshot of this request, unless a layer before did (the identity layer
/// does). Read it with [`policy`]: borrowed, so the layers do not each count a reference to
/// the one `Arc` every request shares.
pub(crate) fn take_policy(ext: &mut Extensions, gk: &Gatekeeper) {
    if ext.get::<Arc<PolicySnapshot>>().is_none() {
        ext.insert(gk.policy());
    }
}

/// The snapshot taken by [`take_policy`].
pub(crate) fn policy(ext: &Extensions) -> &PolicySnapshot {
    ext.get::<Arc<PolicySnapshot>>()
        .expect("take_policy runs before the policy is read")
}

/// How this request's refusals are rendered.
pub(crate) fn denial_style(ext: &mut Extensions, gk: &Gatekeeper) -> DenialStyle {
    take_policy(ext, gk);
    policy(ext).catalog().settings().denial_style
}

/// Resolves the grant once (hierarchy, then scope) and stores it.
pub(crate) fn ensure_grant(ext: &mut Extensions, gk: &Gatekeeper) -> Result<(), Rejection> {
    if ext.get::<Grant>().is_some() {
        return Ok(());
    }
    take_policy(ext, gk);
    let policy = policy(ext);
    let principal = ext
        .get::<Principal>()
        .ok_or_else(Rejection::missing_credential)?;
    let mut grant = Grant::resolve(policy.catalog(), principal);
    if let Some(scope) = ext.get::<Scope>() {
        scope.apply(&mut grant)?;
    }
    ext.insert(grant);
    Ok(())
}

/// Whether this request carries a JSON-RPC body to inspect that nobody parsed yet.
pub(crate) fn needs_inspection<B>(request: &Request<B>) -> bool {
    request.method() == http::Method::POST && request.extensions().get::<McpRequest>().is_none()
}

/// Collects and parses the body of a POST (bounded), checks the routing headers, stores the
/// parsed head, and hands the body back rebuilt from the same bytes.
pub(crate) async fn inspect<B>(
    request: Request<B>,
    gk: &Gatekeeper,
) -> Result<Request<B>, Rejection>
where
    B: http_body::Body + From<Bytes>,
    B::Error: Display,
{
    let (mut parts, body) = request.into_parts();
    let limit = gk.limits().max_request_body;
    let bytes = protocol::collect_limited(body, limit)
        .await
        .map_err(|e| match e {
            CollectError::TooLarge { limit } => Rejection::payload_too_large(limit),
            CollectError::Body(_) => Rejection::bad_request("the request body could not be read"),
        })?;
    let mut head =
        protocol::parse_request(&bytes).map_err(|e| Rejection::bad_request(e.to_string()))?;
    head.resolve_era(&parts.headers);
    protocol::check_routing_headers(&parts.headers, &head).map_err(|e| {
        let rejection = match e {
            ParseError::HeaderMismatch(why) => Rejection::header_mismatch(why),
            other => Rejection::bad_request(other.to_string()),
        };
        rejection.answering(&head)
    })?;
    parts.extensions.insert(head);
    Ok(Request::from_parts(parts, B::from(bytes)))
}

/// The call path of the layers that read the body: parse it first if no outer layer did (in a
/// boxed future), then `decide` on the request extensions, then either call the inner service
/// with the decided post-processing or answer with the refusal.
pub(crate) fn inspect_then<S, ReqBody, ResBody, P, D>(
    inner: &mut S,
    mut request: Request<ReqBody>,
    gk: &Gatekeeper,
    decide: D,
) -> ResponseFuture<S::Future, ResBody, S::Error, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body + From<Bytes> + Send + 'static,
    ReqBody::Error: Display,
    ResBody: ReplyBody,
    P: PostProcess<ResBody, S::Error>,
    D: FnOnce(&mut Extensions) -> Result<P, Rejection> + Send + 'static,
{
    let style = denial_style(request.extensions_mut(), gk);
    if !needs_inspection(&request) {
        return match decide(request.extensions_mut()) {
            Ok(post) => ResponseFuture::inner(inner.call(request), post),
            Err(rejection) => ResponseFuture::ready(rejection.into_response(style)),
        };
    }
    // The instance polled ready is the one that must be called: take it, leave a clone.
    let clone = inner.clone();
    let mut inner = std::mem::replace(inner, clone);
    let gk = gk.clone();
    ResponseFuture::boxed(Box::pin(async move {
        let mut request = match inspect(request, &gk).await {
            Ok(r) => r,
            Err(rejection) => return Ok(rejection.into_response(style)),
        };
        match decide(request.extensions_mut()) {
            Ok(post) => match inner.call(request).await {
                Ok(response) => Ok(match post.response(response) {
                    Post::Ready(r) => r,
                    Post::Later(f) => f.await,
                }),
                Err(e) => {
                    post.error(&e);
                    Err(e)
                }
            },
            Err(rejection) => Ok(rejection.into_response(style)),
        }
    }))
}
