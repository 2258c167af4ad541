//! Per-request state shared by the layers through request extensions: the policy snapshot,
//! the grant, and the parsed request head. Whichever layer first needs one computes it; the
//! others reuse it, so nothing is loaded, resolved or parsed twice.

use std::fmt::Display;
use std::sync::Arc;

use bytes::Bytes;
use http::{Extensions, Request, Response};
use tower_service::Service;

use crate::body::ReplyBody;
use crate::engine::{Attribution, DenialStyle, Grant, NameKind, Principal, Scope, ServerId};
use crate::future::{Post, PostProcess, ResponseFuture};
use crate::gatekeeper::{Gatekeeper, PolicySnapshot};
use crate::metrics::{
    OTHER, Observed, Parsed, SpanContext, TargetKind, method_label, version_label,
};
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

/// The server and bare name of `name`, the tool a `tools/call` names: the permission layer's
/// [`ToolTarget`] when it attributed the call, else attributed here as it would be. `None` for
/// a name no server owns (the permission layer's to refuse).
pub(crate) fn tool_target<'n>(
    ext: &Extensions,
    policy: &PolicySnapshot,
    gk: &Gatekeeper,
    name: &'n str,
) -> Option<(ServerId, &'n str)> {
    if let Some(t) = ext.get::<ToolTarget>() {
        return Some((t.server, t.bare(name)));
    }
    let index = gk.name_index();
    match policy
        .catalog()
        .attribute(gk.mount(), Some(&index), NameKind::Tool, name)
    {
        Some(Attribution::Server(server, bare)) => Some((server, bare)),
        _ => None,
    }
}

/// The request's context as a layer reads it, borrowed from the request's extensions: the
/// policy snapshot (taken by whichever layer comes first, the identity layer when it runs, and
/// kept for the whole request), how refusals are rendered, and the grant (resolved once, by
/// whichever layer first needs it). Borrowed, so that the layers do not each count a reference
/// to the one snapshot every request shares.
pub(crate) struct ContextView<'a> {
    ext: &'a mut Extensions,
    gk: &'a Gatekeeper,
}

impl<'a> ContextView<'a> {
    /// The context of the request whose extensions are `ext`, its policy snapshot taken from
    /// `gk` unless a layer before took it.
    pub(crate) fn of(ext: &'a mut Extensions, gk: &'a Gatekeeper) -> Self {
        if ext.get::<Arc<PolicySnapshot>>().is_none() {
            ext.insert(gk.policy());
        }
        Self { ext, gk }
    }

    /// The request's policy snapshot.
    pub(crate) fn policy(&self) -> &PolicySnapshot {
        self.ext
            .get::<Arc<PolicySnapshot>>()
            .expect("taken when the view was made")
    }

    /// How this request's refusals are rendered.
    pub(crate) fn denial_style(&self) -> DenialStyle {
        self.policy().catalog().settings().denial_style
    }

    /// The request's extensions, to read.
    pub(crate) fn extensions(&self) -> &Extensions {
        self.ext
    }

    /// The request's extensions, to add to.
    pub(crate) fn extensions_mut(&mut self) -> &mut Extensions {
        self.ext
    }

    /// The caller's grant: resolved once (hierarchy, then scope) and kept; refused without a
    /// principal, or when the scope names what the caller may not use.
    pub(crate) fn grant(&mut self) -> Result<&Grant, Rejection> {
        if self.ext.get::<Grant>().is_none() {
            let principal = self
                .ext
                .get::<Principal>()
                .ok_or_else(Rejection::missing_credential)?;
            let catalog = self.policy().catalog();
            let mut grant = Grant::resolve(catalog, principal);
            if catalog.pins_definitions() {
                grant = grant.with_pins(Arc::clone(self.gk.pins()));
            }
            if let Some(scope) = self.ext.get::<Scope>() {
                scope.apply(&mut grant)?;
            }
            self.ext.insert(grant);
        }
        Ok(self.ext.get::<Grant>().expect("resolved above"))
    }
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
    if let Some(observed) = parts.extensions.get::<Observed>() {
        observed.set(measured(&head, &parts.headers));
    }
    protocol::check_routing_headers(&parts.headers, &head).map_err(|e| {
        let rejection = match e {
            ParseError::HeaderMismatch(why) => Rejection::header_mismatch(why),
            other => Rejection::bad_request(other.to_string()),
        };
        rejection.answering(&head)
    })?;
    // A tool call's body is kept only where an audit event may carry its argument values.
    let keep_body = head.request_method() == Some(&protocol::Method::ToolsCall)
        && gk.audit().builds_events()
        && parts
            .extensions
            .get::<Arc<PolicySnapshot>>()
            .is_some_and(|p| p.catalog().audits_argument_values());
    parts.extensions.insert(head);
    if keep_body {
        parts
            .extensions
            .insert(crate::audit::AuditedBody(bytes.clone()));
    }
    Ok(Request::from_parts(parts, B::from(bytes)))
}

/// What a measurement of `head` names (see `metered`): its method, the tool or prompt it names,
/// and its protocol version, each as a bounded label.
fn measured(head: &McpRequest, headers: &http::HeaderMap) -> Parsed {
    use protocol::Method;
    let method = head
        .method
        .as_ref()
        .map_or(OTHER, |m| method_label(m.as_str()));
    let kind = match head.request_method() {
        Some(Method::ToolsCall) => Some(TargetKind::Tool),
        Some(Method::PromptsGet) => Some(TargetKind::Prompt),
        _ => None,
    };
    let version = head.protocol_version.as_deref().or_else(|| {
        headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok())
    });
    Parsed {
        method,
        target: kind.and_then(|k| Some((Arc::clone(head.target.as_ref()?), k))),
        protocol_version: version.map(version_label),
        traceparent: head
            .traceparent
            .as_deref()
            .and_then(SpanContext::from_traceparent),
    }
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
    let style = ContextView::of(request.extensions_mut(), gk).denial_style();
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
    // Who asked, for the event of a body refused before any layer decided on it (only
    // counted, without the caller, when no event is built).
    let caller = gk
        .audit()
        .builds_events()
        .then(|| request.extensions().get::<Principal>().cloned())
        .flatten();
    ResponseFuture::boxed(Box::pin(async move {
        let mut request = match inspect(request, &gk).await {
            Ok(r) => r,
            Err(rejection) => {
                crate::decision_events::refused(gk.audit(), caller.as_ref(), None, &rejection);
                return Ok(rejection.into_response(style));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::KeyDigest;

    fn gatekeeper(servers_of_k: &str) -> Gatekeeper {
        let doc = format!(
            r#"{{"mcp_servers": {{"a": {{"url": "u"}}, "b": {{"url": "u"}}}},
                "keys": [{{"key": "k", "object_permission": {{"mcp_servers": {servers_of_k}}}}}]}}"#
        );
        Gatekeeper::new(Config::from_json_str(&doc).unwrap().policy().unwrap())
    }

    #[test]
    fn the_snapshot_is_taken_once_and_the_grant_resolved_once_within_its_scope() {
        let gk = gatekeeper(r#"["a", "b"]"#);
        let mut ext = Extensions::new();
        // No principal: the grant is refused, and nothing is kept.
        assert!(ContextView::of(&mut ext, &gk).grant().is_err());
        assert!(ext.get::<Grant>().is_none());
        let principal = gk
            .policy()
            .identities()
            .principal(&KeyDigest::of("k"), None, None)
            .unwrap();
        ext.insert(principal);
        let catalog = Arc::clone(ContextView::of(&mut ext, &gk).policy().catalog());
        let a = catalog.lookup("a").unwrap();
        let b = catalog.lookup("b").unwrap();
        ext.insert(Scope::resolve(&catalog, ["b"]));
        // A reload after the view first took the snapshot changes nothing for this request.
        gk.reload(
            Config::from_json_str(r#"{"mcp_servers": {"c": {"url": "u"}}}"#)
                .unwrap()
                .policy()
                .unwrap(),
        );
        let mut view = ContextView::of(&mut ext, &gk);
        assert!(view.policy().catalog().lookup("a").is_some());
        let effective = view.grant().unwrap().effective();
        assert!(effective.contains(b) && !effective.contains(a));
        // Kept: a second view reads the same grant, even after its scope is gone.
        ext.remove::<Scope>();
        let again = ContextView::of(&mut ext, &gk).grant().unwrap().effective();
        assert!(again.contains(b) && !again.contains(a));
    }

    #[test]
    fn a_scope_beyond_the_grant_is_refused() {
        let gk = gatekeeper(r#"["a"]"#);
        let mut ext = Extensions::new();
        let policy = gk.policy();
        ext.insert(
            policy
                .identities()
                .principal(&KeyDigest::of("k"), None, None)
                .unwrap(),
        );
        ext.insert(Scope::resolve(policy.catalog(), ["b"]));
        let mut view = ContextView::of(&mut ext, &gk);
        assert_eq!(view.denial_style(), DenialStyle::ToolResult);
        assert!(view.grant().is_err());
    }
}
