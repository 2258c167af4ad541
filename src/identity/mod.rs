//! [`IdentityLayer`]: who is calling.
//!
//! Reads the key (`x-litellm-api-key`, with or without `Bearer `, else `Authorization: Bearer`),
//! the end user (`x-litellm-end-user-id`) and the agent (`x-litellm-agent-id`), asks a
//! [`ResolveIdentity`] for the [`Principal`], and stores it in the request extensions. A missing
//! or unknown key is answered with 401 and `WWW-Authenticate: Bearer` before any MCP work.
//!
//! It also binds every MCP session to the key that opened it: a request carrying an
//! `Mcp-Session-Id` that this layer did not see created for the same key gets 404 (the MCP
//! signal to start a new session), so a leaked or guessed session id is useless to another key.
//!
//! One allowed and one refused request (`server` answers every call; `call` builds a
//! `tools/call`; both hidden):
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
//! use mcp_gatekeeper::identity::IdentityLayer;
//!
//! let service = ServiceBuilder::new()
//!     .layer(IdentityLayer::new(gatekeeper))
//!     .service(server);
//! // A known key reaches the server; an unknown one is refused before any MCP work.
//! let known = service.clone().oneshot(call("sk-alice", "wiki-search", "{}")).await?;
//! assert_eq!(known.status(), 200);
//! let unknown = service.oneshot(call("sk-mallory", "wiki-search", "{}")).await?;
//! assert_eq!(unknown.status(), 401);
//! # Ok(()) }
//! ```

mod presented;
mod sessions;

use std::fmt;
use std::future::{Future, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

#[cfg(feature = "gateway")]
pub(crate) use presented::credential;
use presented::{presented, session_header};
use sessions::Binding;
pub use sessions::SessionBindings;

use crate::body::{BoxError, ReplyBody};
use crate::engine::{KeyDigest, Principal};
use crate::future::{self, Post, PostProcess};
use crate::gatekeeper::{Gatekeeper, PolicySnapshot};
use crate::rejection::Rejection;

/// What a resolver is told about one request.
#[derive(Debug)]
#[non_exhaustive]
pub struct IdentityRequest<'a> {
    /// The request head.
    pub parts: &'a http::request::Parts,
    /// The credential presented, `Bearer ` removed: a key, or a token for a resolver that
    /// takes tokens.
    pub key: Option<&'a str>,
    /// Whether the credential came from `Authorization: Bearer` rather than the key header
    /// (which, when present, always wins and always carries a key).
    pub bearer: bool,
    /// Its SHA-256 digest.
    pub key_digest: Option<KeyDigest>,
    /// The end user the request names.
    pub end_user_id: Option<&'a str>,
    /// The agent the request names.
    pub agent_id: Option<&'a str>,
    /// The policy snapshot this request is decided with.
    pub policy: &'a Arc<PolicySnapshot>,
}

/// Why a resolver found no principal.
#[derive(Debug)]
#[non_exhaustive]
pub enum IdentityError {
    /// No key, or an unknown one (401).
    Unauthenticated,
    /// The backend failed (503); nothing is allowed meanwhile.
    Unavailable(BoxError),
    /// Refused with this answer (an OAuth resource server's 401 or 403 and its challenge).
    Refused(Rejection),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthenticated => f.write_str("unauthenticated"),
            Self::Unavailable(e) => write!(f, "identity backend unavailable: {e}"),
            Self::Refused(r) => write!(f, "refused: {r}"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// A resolver's answer: at once, or a future to await.
///
/// An answer at once (a lookup in memory, a cache hit) lets [`Identity`] call the inner service
/// straight from its own `call`, without boxing a future or cloning the inner service.
#[derive(Debug)]
// `Now` is the usual answer (a key in memory): boxing it would allocate on every request.
#[allow(clippy::large_enum_variant)]
pub enum Resolution<F> {
    /// The answer, now.
    Now(Result<Principal, IdentityError>),
    /// The answer, when this future completes.
    Later(F),
}

/// Resolves the caller of a request: at once, or asynchronously (a database, a token service).
///
/// Implemented for closures `Fn(&IdentityRequest<'_>) -> impl Future<Output = Result<Principal,
/// IdentityError>>`, which always answer later; the future must own what it needs (`'static`).
/// Permissions must be compiled against `request.policy.catalog()`; permissions compiled
/// against another catalog grant nothing.
///
/// # Example
///
/// A resolver that asks a backend once per key and answers from memory afterwards, so that
/// those requests cost the identity layer no boxed future:
///
/// ```
/// use std::collections::HashMap;
/// use std::future::Future;
/// use std::pin::Pin;
/// use std::sync::{Arc, RwLock};
///
/// use mcp_gatekeeper::engine::{KeyDigest, Principal};
/// use mcp_gatekeeper::identity::{IdentityError, IdentityRequest, ResolveIdentity, Resolution};
///
/// #[derive(Default)]
/// struct Remembering {
///     known: Arc<RwLock<HashMap<KeyDigest, Principal>>>,
/// }
///
/// impl ResolveIdentity for Remembering {
///     type Future = Pin<Box<dyn Future<Output = Result<Principal, IdentityError>> + Send>>;
///
///     fn resolve(&self, request: &IdentityRequest<'_>) -> Resolution<Self::Future> {
///         let Some(digest) = request.key_digest else {
///             return Resolution::Now(Err(IdentityError::Unauthenticated));
///         };
///         if let Some(known) = self.known.read().unwrap().get(&digest) {
///             return Resolution::Now(Ok(known.clone()));
///         }
///         let known = Arc::clone(&self.known);
///         Resolution::Later(Box::pin(async move {
///             // Ask the backend here; build the principal against `request.policy.catalog()`.
///             let principal = Principal {
///                 key_id: Some("from-the-backend".into()),
///                 ..Principal::default()
///             };
///             known.write().unwrap().insert(digest, principal.clone());
///             Ok(principal)
///         }))
///     }
/// }
/// ```
pub trait ResolveIdentity: Send + Sync + 'static {
    /// The future of an answer given later.
    type Future: Future<Output = Result<Principal, IdentityError>> + Send + 'static;
    /// Resolves one request: [`Resolution::Now`] when the answer is at hand,
    /// [`Resolution::Later`] with a future otherwise.
    fn resolve(&self, request: &IdentityRequest<'_>) -> Resolution<Self::Future>;
}

impl<F, Fut> ResolveIdentity for F
where
    F: Fn(&IdentityRequest<'_>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Principal, IdentityError>> + Send + 'static,
{
    type Future = Fut;
    fn resolve(&self, request: &IdentityRequest<'_>) -> Resolution<Fut> {
        Resolution::Later(self(request))
    }
}

/// The built-in resolver: the policy's [`IdentityStore`](crate::engine::IdentityStore), looked up
/// by key digest.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreResolver;

impl ResolveIdentity for StoreResolver {
    /// Never awaited: the store answers at once.
    type Future = Ready<Result<Principal, IdentityError>>;
    fn resolve(&self, request: &IdentityRequest<'_>) -> Resolution<Self::Future> {
        Resolution::Now(Self::lookup(request))
    }
}

impl StoreResolver {
    pub(crate) fn lookup(request: &IdentityRequest<'_>) -> Result<Principal, IdentityError> {
        use crate::engine::KeyRefusal;
        let Some(digest) = request.key_digest.as_ref() else {
            return Err(IdentityError::Unauthenticated);
        };
        let found =
            request
                .policy
                .identities()
                .resolve(digest, request.end_user_id, request.agent_id);
        found.map_err(|refusal| match refusal {
            KeyRefusal::Blocked => IdentityError::Refused(Rejection::key_blocked()),
            KeyRefusal::Expired => IdentityError::Refused(Rejection::key_expired()),
            KeyRefusal::OverBudget => IdentityError::Refused(Rejection::key_over_budget()),
            _ => IdentityError::Unauthenticated,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct HeaderNames {
    key: HeaderName,
    end_user: HeaderName,
    agent: HeaderName,
}

/// Adds [`Identity`] to a service. See the [module docs](self).
pub struct IdentityLayer<R = StoreResolver> {
    gatekeeper: Gatekeeper,
    resolver: Arc<R>,
    headers: Arc<HeaderNames>,
    sessions: Option<Arc<SessionBindings>>,
}

impl<R> Clone for IdentityLayer<R> {
    fn clone(&self) -> Self {
        Self {
            gatekeeper: self.gatekeeper.clone(),
            resolver: Arc::clone(&self.resolver),
            headers: Arc::clone(&self.headers),
            sessions: self.sessions.clone(),
        }
    }
}

impl<R> fmt::Debug for IdentityLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityLayer")
            .field("headers", &self.headers)
            .field("session_binding", &self.sessions.is_some())
            .finish_non_exhaustive()
    }
}

impl IdentityLayer {
    /// Identity from the policy's built-in store, with session binding on.
    #[must_use]
    pub fn new(gatekeeper: Gatekeeper) -> Self {
        Self::with_resolver(gatekeeper, StoreResolver)
    }
}

impl<R: ResolveIdentity> IdentityLayer<R> {
    /// Identity from a custom resolver.
    #[must_use]
    pub fn with_resolver(gatekeeper: Gatekeeper, resolver: R) -> Self {
        Self {
            gatekeeper,
            resolver: Arc::new(resolver),
            headers: Arc::new(HeaderNames {
                key: HeaderName::from_static("x-litellm-api-key"),
                end_user: HeaderName::from_static("x-litellm-end-user-id"),
                agent: HeaderName::from_static("x-litellm-agent-id"),
            }),
            sessions: Some(Arc::new(SessionBindings::default())),
        }
    }

    /// Reads the key from another header than `x-litellm-api-key`.
    #[must_use]
    pub fn key_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.headers).key = name;
        self
    }

    /// Reads the end user from another header than `x-litellm-end-user-id`.
    #[must_use]
    pub fn end_user_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.headers).end_user = name;
        self
    }

    /// Reads the agent from another header than `x-litellm-agent-id`.
    #[must_use]
    pub fn agent_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.headers).agent = name;
        self
    }

    /// Uses these session bindings (share them between several stacks of one process), or
    /// `None` to turn binding off (only where another component binds sessions to callers).
    #[must_use]
    pub fn session_bindings(mut self, bindings: Option<Arc<SessionBindings>>) -> Self {
        self.sessions = bindings;
        self
    }
}

impl<R> IdentityLayer<R> {
    /// The digest of the key a request presents, read as this layer reads it.
    #[cfg(feature = "gateway")]
    pub(crate) fn presented_digest(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Option<KeyDigest>, Rejection> {
        Ok(credential(headers, &self.headers)?.map(KeyDigest::of))
    }
}

impl<S, R> Layer<S> for IdentityLayer<R> {
    type Service = Identity<S, R>;
    fn layer(&self, inner: S) -> Self::Service {
        Identity {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`IdentityLayer`] produces.
pub struct Identity<S, R = StoreResolver> {
    inner: S,
    layer: IdentityLayer<R>,
}

impl<S: Clone, R> Clone for Identity<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for Identity<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

crate::inner_service::inner_access!(impl<S, R> Identity<S, R>);

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for Identity<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: ResolveIdentity,
    ReqBody: Send + 'static,
    ResBody: ReplyBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        ResponseFuture::from_inner(self.admit_call(request))
    }
}

impl<S, R> Identity<S, R> {
    fn admit_call<ReqBody, ResBody>(
        &mut self,
        request: Request<ReqBody>,
    ) -> future::ResponseFuture<S::Future, ResBody, S::Error, BindSession>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        R: ResolveIdentity,
        ReqBody: Send + 'static,
        ResBody: ReplyBody,
    {
        let policy = self.layer.gatekeeper.policy();
        let style = policy.catalog().settings().denial_style;
        if !policy.is_loaded() {
            // Never decide with a policy that was not loaded: everything waits for it.
            let rejection = Rejection::policy_unavailable();
            crate::decision_events::refused(self.layer.gatekeeper.audit(), None, None, &rejection);
            return future::ResponseFuture::ready(rejection.into_response(style));
        }
        let (parts, body) = request.into_parts();
        let (digest, resolution) = {
            let presented = match presented(&self.layer.headers, &parts) {
                Ok(p) => p,
                Err(rejection) => {
                    crate::decision_events::refused(
                        self.layer.gatekeeper.audit(),
                        None,
                        None,
                        &rejection,
                    );
                    return future::ResponseFuture::ready(rejection.into_response(style));
                }
            };
            let asked = IdentityRequest {
                parts: &parts,
                key: presented.key,
                bearer: presented.bearer,
                key_digest: presented.key.map(KeyDigest::of),
                end_user_id: presented.end_user,
                agent_id: presented.agent,
                policy: &policy,
            };
            // The usual case (the built-in store) is answered at once; otherwise the
            // resolver's future is awaited.
            let resolution = self.layer.resolver.resolve(&asked);
            (asked.key_digest, resolution)
        };
        let pending = match resolution {
            Resolution::Now(answer) => {
                // Called from here: no boxed future, no clone of the inner service.
                return match admit(
                    &self.layer,
                    parts,
                    outcome(&self.layer.gatekeeper, digest, answer),
                    policy,
                ) {
                    Ok((parts, post)) => future::ResponseFuture::inner(
                        self.inner.call(Request::from_parts(parts, body)),
                        post,
                    ),
                    Err(rejection) => future::ResponseFuture::ready(rejection.into_response(style)),
                };
            }
            Resolution::Later(pending) => pending,
        };
        // The instance polled ready is the one that must be called: take it, leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        future::ResponseFuture::boxed(Box::pin(async move {
            match admit(
                &layer,
                parts,
                outcome(&layer.gatekeeper, digest, pending.await),
                policy,
            ) {
                Ok((parts, post)) => {
                    let response = inner.call(Request::from_parts(parts, body)).await?;
                    Ok(post.bind(response))
                }
                Err(rejection) => Ok(rejection.into_response(style)),
            }
        }))
    }
}

/// The resolver's answer for a request that presented the key of `digest` (none: no key).
fn outcome(
    gk: &Gatekeeper,
    digest: Option<KeyDigest>,
    answer: Result<Principal, IdentityError>,
) -> Result<(Principal, Option<KeyDigest>), Rejection> {
    let refusal = match answer {
        // A token's caller is bound by its subject, not by the token (which is refreshed).
        Ok(principal) => {
            let bound = principal.caller_digest.or(digest);
            return Ok((principal, bound));
        }
        Err(IdentityError::Unauthenticated) if digest.is_none() => Rejection::missing_credential(),
        Err(IdentityError::Unauthenticated) => Rejection::invalid_credential(),
        Err(IdentityError::Unavailable(_e)) => {
            crate::decision_events::backend_error(&*_e);
            Rejection::identity_unavailable()
        }
        Err(IdentityError::Refused(rejection)) => rejection,
    };
    crate::decision_events::refused(gk.audit(), None, None, &refusal);
    Err(refusal)
}

/// Lets a resolved caller in: checks its session binding and records who it is in the
/// request extensions (the policy snapshot, the principal, the key digest).
fn admit<R>(
    layer: &IdentityLayer<R>,
    mut parts: http::request::Parts,
    found: Result<(Principal, Option<KeyDigest>), Rejection>,
    policy: Arc<PolicySnapshot>,
) -> Result<(http::request::Parts, BindSession), Rejection> {
    let (principal, digest) = found?;
    let binding = match &layer.sessions {
        None => {
            // Unbound, the header is still checked for its form (the binding checks it too).
            session_header(&parts.headers)?;
            None
        }
        Some(bindings) => match Binding::admit(bindings, &mut parts, digest) {
            Ok(binding) => Some(binding),
            Err(rejection) => {
                crate::decision_events::refused(
                    layer.gatekeeper.audit(),
                    Some(&principal),
                    None,
                    &rejection,
                );
                return Err(rejection);
            }
        },
    };
    parts.extensions.insert(policy);
    parts.extensions.insert(principal);
    if let Some(d) = digest {
        // Lets an aggregating service keep upstream sessions per caller.
        parts.extensions.insert(d);
    }
    Ok((parts, BindSession { binding }))
}

/// The post-processing of [`Identity`]: binds a session the inner service opens to the key
/// that opened it, and forgets a session deleted.
pub(crate) struct BindSession {
    binding: Option<Binding>,
}

impl fmt::Debug for BindSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BindSession")
            .field("binding", &self.binding.is_some())
            .finish()
    }
}

impl BindSession {
    fn bind<B>(self, response: Response<B>) -> Response<B> {
        match self.binding {
            Some(binding) => binding.bind(response),
            None => response,
        }
    }
}

future::layer_future!(
    /// Response future of [`Identity`]: a new MCP session is bound to the key that opened it
    /// on its way out.
    BindSession; where
);

impl<B, E> PostProcess<B, E> for BindSession {
    fn response(self, response: Response<B>) -> Post<B> {
        Post::Ready(self.bind(response))
    }
    fn error(self, _: &E) {}
}
