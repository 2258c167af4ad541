//! This resource's identifiers (RFC 8707) per MCP path, its protected resource metadata
//! (RFC 9728) as a service, and the `WWW-Authenticate` challenges that point to it.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::json;
use tower_service::Service;

use super::issuer::split_origin;
use crate::body::Body;

/// Where protected resource metadata is served, before the resource's path.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The canonical URI of `/mcp` and what follows from it.
#[derive(Debug)]
pub(crate) struct Resource {
    /// `https://gateway.example.com/mcp`
    resource: String,
    /// `https://gateway.example.com`: the origin.
    origin: String,
    /// The path before `/mcp` (empty, or `/prefix` behind a proxy that mounts the gateway there).
    prefix: String,
}

impl Resource {
    pub(crate) fn new(resource: &str) -> Self {
        let (origin, path) = split_origin(resource);
        Self {
            resource: resource.to_owned(),
            origin: origin.to_owned(),
            prefix: path.strip_suffix("/mcp").unwrap_or_default().to_owned(),
        }
    }

    /// The `/mcp` resource's URI.
    pub(crate) fn uri(&self) -> &str {
        &self.resource
    }

    /// The URI of the resource a request path belongs to (`/github/mcp/…` → `…/github/mcp`).
    pub(crate) fn uri_of(&self, path: &str) -> String {
        format!("{}{}{}", self.origin, self.prefix, resource_path(path))
    }

    /// Whether `audience` is the URI of the resource a request path belongs to ([`uri_of`],
    /// compared without building it).
    ///
    /// [`uri_of`]: Self::uri_of
    pub(crate) fn is_uri_of(&self, audience: &str, path: &str) -> bool {
        audience
            .strip_prefix(self.origin.as_str())
            .and_then(|rest| rest.strip_prefix(self.prefix.as_str()))
            == Some(resource_path(path))
    }

    /// Where the metadata of the resource a request path belongs to is served.
    pub(crate) fn metadata_url(&self, path: &str) -> String {
        format!(
            "{}{METADATA_PATH}{}{}",
            self.origin,
            self.prefix,
            resource_path(path)
        )
    }
}

/// The MCP resource a request path belongs to: `/mcp`, `/{servers}/mcp` or `/mcp/{servers}`,
/// with anything after it dropped. Any other path belongs to `/mcp`.
pub(crate) fn resource_path(path: &str) -> &str {
    let mut segments = path.split('/').skip(1);
    let (first, second) = (segments.next().unwrap_or(""), segments.next());
    let end = if first == "mcp" {
        match second {
            Some(names) if !names.is_empty() => 1 + first.len() + 1 + names.len(),
            _ => return "/mcp",
        }
    } else if second == Some("mcp") && !first.is_empty() {
        1 + first.len() + 4
    } else {
        return "/mcp";
    };
    &path[..end]
}

/// What a challenge says besides where the metadata is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Problem {
    /// No credential: only where to start.
    None,
    /// A credential that is not valid here.
    InvalidToken(&'static str),
    /// A valid token without the required scopes.
    InsufficientScope,
}

/// `Bearer resource_metadata="…"`, with `scope` when scopes are required and the error of RFC
/// 6750 when there is one. Descriptions are fixed texts without quotes.
pub(crate) fn challenge(
    resource: &Resource,
    path: &str,
    required_scopes: &str,
    problem: Problem,
) -> HeaderValue {
    let mut value = format!(
        "Bearer resource_metadata=\"{}\"",
        resource.metadata_url(path)
    );
    if !required_scopes.is_empty() {
        value.push_str(&format!(", scope=\"{required_scopes}\""));
    }
    match problem {
        Problem::None => {}
        Problem::InvalidToken(why) => value.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{why}\""
        )),
        Problem::InsufficientScope => value.push_str(", error=\"insufficient_scope\""),
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// RFC 9728 protected resource metadata, as a service: mount it at
/// [`METADATA_PATH`] and `METADATA_PATH/{*path}` (it reads the whole request path). It sets no
/// CORS header itself: for browser-based clients, mount it behind an open CORS layer (any
/// origin, `GET`), as the gateway does with tower-http's `CorsLayer`.
///
/// `GET /.well-known/oauth-protected-resource` and `…/mcp` describe `/mcp`;
/// `…/{servers}/mcp` and `…/mcp/{servers}` describe that scoped path, whose URI is its own
/// resource identifier. Any syntactically valid scoped path is answered, known servers or not,
/// so the answers say nothing about the configuration.
#[derive(Clone, Debug)]
pub struct ProtectedResourceMetadata {
    pub(crate) resource: Arc<Resource>,
    pub(crate) authorization_servers: Arc<[String]>,
    pub(crate) scopes_supported: Arc<[String]>,
}

impl ProtectedResourceMetadata {
    fn answer(&self, method: &Method, path: &str) -> Response<Body> {
        let reply = |status: StatusCode, body: serde_json::Value| {
            let mut response = Response::new(Body::from(body.to_string()));
            *response.status_mut() = status;
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            response
        };
        if method != Method::GET && method != Method::HEAD {
            let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "use GET"}));
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let not_found = || reply(StatusCode::NOT_FOUND, json!({"error": "no such resource"}));
        let Some(rest) = path.strip_prefix(METADATA_PATH) else {
            return not_found();
        };
        let resource_uri = if rest.is_empty() || rest == "/" {
            self.resource.uri().to_owned()
        } else {
            let Some(mcp_path) = rest.strip_prefix(self.resource.prefix.as_str()) else {
                return not_found();
            };
            let canonical = resource_path(mcp_path) == mcp_path
                && mcp_path
                    .split('/')
                    .skip(1)
                    .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('%'));
            if !canonical {
                return not_found();
            }
            self.resource.uri_of(mcp_path)
        };
        reply(
            StatusCode::OK,
            json!({
                "resource": resource_uri,
                "authorization_servers": &*self.authorization_servers,
                "scopes_supported": &*self.scopes_supported,
                "bearer_methods_supported": ["header"],
            }),
        )
    }
}

impl<B> Service<Request<B>> for ProtectedResourceMetadata {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.answer(request.method(), request.uri().path())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mcp_path_belongs_to_its_resource() {
        for (path, resource) in [
            ("/mcp", "/mcp"),
            ("/mcp/", "/mcp"),
            ("/github/mcp", "/github/mcp"),
            ("/github,jira/mcp/extra", "/github,jira/mcp"),
            ("/mcp/github", "/mcp/github"),
            ("/mcp/github/x", "/mcp/github"),
            ("/mcp-rest/tools/list", "/mcp"),
            ("/registry.json", "/mcp"),
            ("/", "/mcp"),
        ] {
            assert_eq!(resource_path(path), resource, "{path}");
        }
        let r = Resource::new("https://gw.example.com/prefix/mcp");
        assert_eq!(
            r.uri_of("/github/mcp"),
            "https://gw.example.com/prefix/github/mcp"
        );
        assert!(r.is_uri_of("https://gw.example.com/prefix/github/mcp", "/github/mcp/x"));
        assert!(!r.is_uri_of("https://gw.example.com/prefix/github/mcp", "/mcp"));
        assert!(!r.is_uri_of("https://gw.example.com/github/mcp", "/github/mcp"));
        assert!(!r.is_uri_of("https://gw.example.com/prefix/github/mcpx", "/github/mcp"));
        assert_eq!(
            r.metadata_url("/mcp"),
            "https://gw.example.com/.well-known/oauth-protected-resource/prefix/mcp"
        );
    }
}
