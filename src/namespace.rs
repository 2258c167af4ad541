//! [`NamespaceLayer`]: which servers a request names.
//!
//! Reads `x-mcp-servers: a, b,dev_group` (comma list of server names, aliases or access groups)
//! and the paths `/{names}/mcp[/…]` and `/mcp/{names}[/…]`. A path that names servers replaces
//! the header. The inner service sees the path rewritten to `/mcp[/…]`.
//!
//! Scope only narrows: the request may use `allowed ∩ named`. If any named entry is unknown or
//! not allowed, the request gets 403 with one text for both cases, so names cannot be probed.
//! The path forms need the stack to see the full path: mount it at the root (for example
//! `Router::fallback_service`), not under `nest_service("/mcp", …)`.
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
//! use mcp_gatekeeper::{identity::IdentityLayer, namespace::NamespaceLayer};
//!
//! let service = ServiceBuilder::new()
//!     .layer(IdentityLayer::new(gatekeeper.clone()))
//!     .layer(NamespaceLayer::new(gatekeeper))
//!     .service(server);
//! let scoped = |servers: &str| {
//!     let mut request = call("sk-alice", "wiki-search", "{}");
//!     request.headers_mut().insert("x-mcp-servers", servers.parse().unwrap());
//!     request
//! };
//! assert_eq!(service.clone().oneshot(scoped("wiki")).await?.status(), 200);
//! // A server outside the key's grant is refused exactly as an unknown one would be.
//! assert_eq!(service.oneshot(scoped("payroll")).await?.status(), 403);
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::task::{Context, Poll};

use http::{HeaderName, Request, Response, Uri};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ReplyBody;
use crate::context::ContextView;
use crate::engine::{Grant, Scope};
use crate::future::{self, NoPost};
use crate::gatekeeper::Gatekeeper;
use crate::rejection::Rejection;

/// Adds [`Namespace`] to a service. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct NamespaceLayer {
    gatekeeper: Gatekeeper,
    header: HeaderName,
}

impl NamespaceLayer {
    /// Scope from `x-mcp-servers` and the path.
    #[must_use]
    pub fn new(gatekeeper: Gatekeeper) -> Self {
        Self {
            gatekeeper,
            header: HeaderName::from_static("x-mcp-servers"),
        }
    }

    /// Reads the scope from another header than `x-mcp-servers`.
    #[must_use]
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }
}

impl<S> Layer<S> for NamespaceLayer {
    type Service = Namespace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Namespace {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`NamespaceLayer`] produces.
#[derive(Clone)]
pub struct Namespace<S> {
    inner: S,
    layer: NamespaceLayer,
}

impl<S: fmt::Debug> fmt::Debug for Namespace<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

crate::inner_service::inner_access!(impl<S> Namespace<S>);

/// Where a path names servers: the names (percent-decoded) and the path rewritten to `/mcp`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PathScope {
    pub(crate) names: String,
    pub(crate) rewritten: String,
}

/// Parses `/{names}/mcp[/…]` and `/mcp/{names}[/…]`.
pub(crate) fn parse_path(path: &str) -> Result<Option<PathScope>, Rejection> {
    let Some(rest) = path.strip_prefix('/') else {
        return Ok(None);
    };
    // Every segment is checked, not only the ones we read: `/a/../mcp` must never be served,
    // and a path that a proxy in front would normalise into another one (nginx merges slashes;
    // RFC 3986 decodes encoded unreserved characters) is refused rather than read one way here
    // and another way there.
    if rest.starts_with('/') || rest.contains("//") {
        return Err(Rejection::bad_request(
            "path is not in canonical form: empty segment (doubled slash)",
        ));
    }
    for s in rest.split('/') {
        let decoded = percent_decode(s)
            .ok_or_else(|| Rejection::bad_request("invalid percent-encoding in path"))?;
        if decoded == "." || decoded == ".." || decoded.contains('/') || decoded.contains('\\') {
            return Err(Rejection::bad_request(
                "path segments may not be '.', '..' or contain slashes",
            ));
        }
        if encodes_unreserved(s) {
            return Err(Rejection::bad_request(
                "path is not in canonical form: percent-encoded unreserved character",
            ));
        }
    }
    let mut parts = rest.splitn(3, '/');
    let (first, second, tail) = (parts.next().unwrap_or(""), parts.next(), parts.next());
    let names = match (first, second) {
        ("mcp", Some(names)) if !names.is_empty() => names,
        (names, Some("mcp")) if !names.is_empty() => names,
        _ => return Ok(None),
    };
    let names = percent_decode(names).expect("checked above").into_owned();
    let rewritten = match tail {
        Some(t) => format!("/mcp/{t}"),
        None => "/mcp".to_owned(),
    };
    Ok(Some(PathScope { names, rewritten }))
}

/// Whether a path segment percent-encodes a character that needs no encoding (letters, digits,
/// `-`, `.`, `_`, `~`): RFC 3986 makes such a path equal to its decoded form, so normalisers
/// decode it.
fn encodes_unreserved(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'%'
            && s.get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .is_some_and(|d| {
                    d.is_ascii_alphanumeric() || matches!(d, b'-' | b'.' | b'_' | b'~')
                })
    })
}

fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Splits a comma list, trimming entries and dropping empty ones.
pub(crate) fn split_names(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn rewrite_uri(uri: &Uri, path: &str) -> Result<Uri, Rejection> {
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| Rejection::bad_request("invalid path"))?,
    );
    Uri::from_parts(parts).map_err(|_| Rejection::bad_request("invalid path"))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Namespace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: ReplyBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let gk = &self.layer.gatekeeper;
        let style = ContextView::of(request.extensions_mut(), gk).denial_style();
        ResponseFuture::from_inner(match scope_request(&mut request, &self.layer) {
            Ok(()) => future::ResponseFuture::inner(self.inner.call(request), NoPost),
            Err(rejection) => {
                crate::decision_events::refused(
                    gk.audit(),
                    request.extensions().get(),
                    None,
                    &rejection,
                );
                future::ResponseFuture::ready(rejection.into_response(style))
            }
        })
    }
}

future::layer_future!(
    /// Response future of [`Namespace`].
    NoPost; where
);

fn scope_request<B>(request: &mut Request<B>, layer: &NamespaceLayer) -> Result<(), Rejection> {
    // The extensions are taken out while the headers are read, and put back whatever happens.
    let mut ext = std::mem::take(request.extensions_mut());
    let scoped = scope_with(request, ContextView::of(&mut ext, &layer.gatekeeper), layer);
    *request.extensions_mut() = ext;
    scoped
}

fn scope_with<B>(
    request: &mut Request<B>,
    mut context: ContextView<'_>,
    layer: &NamespaceLayer,
) -> Result<(), Rejection> {
    let policy = context.policy();
    let from_path = parse_path(request.uri().path())?;
    // The scope is resolved (into owned entries) while the header is borrowed; several header
    // lines are one comma list, and the usual single line is not copied.
    let scope = {
        let mut header_list: Cow<'_, str> = Cow::Borrowed("");
        for v in request.headers().get_all(&layer.header) {
            let v = v.to_str().map_err(|_| {
                Rejection::bad_request(format!("{} header is not visible ASCII", layer.header))
            })?;
            header_list = if header_list.is_empty() {
                Cow::Borrowed(v)
            } else {
                Cow::Owned(format!("{header_list},{v}"))
            };
        }
        let list = match &from_path {
            Some(p) => p.names.as_str(),
            None => &*header_list,
        };
        (split_names(list).next().is_some())
            .then(|| Scope::resolve(policy.catalog(), split_names(list)))
    };
    if let Some(p) = &from_path {
        let uri = rewrite_uri(request.uri(), &p.rewritten)?;
        *request.uri_mut() = uri;
    }
    let Some(scope) = scope else {
        return Ok(());
    };
    let ext = context.extensions_mut();
    if let Some(grant) = ext.get_mut::<Grant>() {
        scope.apply(grant)?;
    } else if ext.get::<crate::engine::Principal>().is_some() {
        ext.insert(scope);
        return context.grant().map(|_| ());
    } else {
        scope.check_known()?;
    }
    ext.insert(scope);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_forms() {
        let p = parse_path("/github,jira/mcp").unwrap().unwrap();
        assert_eq!(
            p,
            PathScope {
                names: "github,jira".into(),
                rewritten: "/mcp".into()
            }
        );
        let p = parse_path("/mcp/a%2Cb/x").unwrap().unwrap();
        assert_eq!(
            p,
            PathScope {
                names: "a,b".into(),
                rewritten: "/mcp/x".into()
            }
        );
        assert_eq!(parse_path("/mcp").unwrap(), None);
        assert_eq!(parse_path("/mcp/").unwrap(), None);
        assert_eq!(parse_path("/health").unwrap(), None);
        assert!(parse_path("/a/../mcp").is_err());
        assert!(parse_path("/mcp/%2e%2e").is_err());
        for doubled in [
            "//github/mcp",
            "/mcp//github",
            "/github//mcp",
            "/github/mcp//x",
            "//mcp",
            "/mcp//",
        ] {
            assert!(parse_path(doubled).is_err(), "{doubled}");
        }
        for encoded in [
            "/github/%6Dcp",
            "/%67ithub/mcp",
            "/mcp/git%2Dhub",
            "/mcp/a%7Eb",
        ] {
            assert!(parse_path(encoded).is_err(), "{encoded}");
        }
        assert!(
            parse_path("/github/mcp/").is_ok(),
            "one trailing slash is canonical"
        );
        assert!(parse_path("/").unwrap().is_none());
        assert!(parse_path("/mcp/a%2Fb").is_err());
        assert!(parse_path("/mcp/%zz").is_err());
        assert!(parse_path("/mcp/%ff").is_err());
    }

    #[test]
    fn split_trims_and_drops_empty() {
        assert_eq!(
            split_names(" a, b,,dev_group ,").collect::<Vec<_>>(),
            ["a", "b", "dev_group"]
        );
        assert_eq!(split_names(" , ").count(), 0);
    }
}
