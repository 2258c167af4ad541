//! The HTTP clients of one upstream: reqwest's, which rmcp's client, the legacy SSE transport
//! and token requests use, and hyper's pooled client, which the requests the gateway posts on
//! an upstream session itself (`tools/call`, lists; see `session`) go through.
//!
//! A posted request is the hot path of every relayed call: hyper's client sends it without
//! reqwest's redirect and retry layers (which parse the URL again for every request). Both
//! clients trust the same roots and present the same client certificate. Where the
//! environment names a proxy (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`), which only reqwest
//! honours, and when the upstream answers a post with a redirect, the post goes through
//! reqwest instead, so a proxy or a redirect is followed on every path alike.

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyDataStream, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::tls::UpstreamTls;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A reply body as it arrives.
pub(crate) type Stream = BoxStream<'static, Result<Bytes, BoxError>>;

const SESSION: HeaderName = HeaderName::from_static("mcp-session-id");

type Direct = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The HTTP clients of one upstream (cheap to clone: both share their pools).
#[derive(Clone, Debug)]
pub(crate) struct UpstreamHttp {
    /// reqwest's client: rmcp's transport, legacy SSE, tokens, and posts a proxy or a
    /// redirect concerns.
    pub(crate) reqwest: reqwest::Client,
    /// hyper's client, for posts; `None` when the environment names a proxy.
    direct: Option<Direct>,
}

/// What an upstream answered to a post.
pub(crate) struct Posted {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Stream,
}

/// A post on its way, with what it carries.
pub(crate) struct Outgoing<'a> {
    pub(crate) url: &'a reqwest::Url,
    /// The same URL, as hyper takes it (`None` if it cannot).
    pub(crate) uri: Option<&'a http::Uri>,
    /// The upstream's session, if it has one.
    pub(crate) session: Option<&'a str>,
    pub(crate) headers: &'a HashMap<HeaderName, HeaderValue>,
    /// What this request states of itself in headers (protocol 2026-07-28).
    pub(crate) stated: &'a [(HeaderName, HeaderValue)],
    pub(crate) body: Bytes,
}

/// Whether the environment names a proxy for reqwest to use.
fn proxied() -> bool {
    [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

impl UpstreamHttp {
    /// The clients of an upstream reached with `tls`.
    pub(crate) fn new(tls: &UpstreamTls) -> Result<Self, String> {
        let reqwest = crate::tls::client(tls)?;
        let direct = if proxied() {
            None
        } else {
            let config = crate::tls::client_config(&tls.verify, tls.identity.as_ref(), false)?;
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            http.enforce_http(false);
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
                .enable_all_versions()
                .wrap_connector(http);
            Some(Client::builder(TokioExecutor::new()).build(connector))
        };
        Ok(Self { reqwest, direct })
    }

    /// Posts `post`: hyper's client when it can, reqwest's otherwise (see the module's doc).
    pub(crate) async fn post(&self, post: Outgoing<'_>) -> Result<Posted, BoxError> {
        if let (Some(direct), Some(uri)) = (&self.direct, post.uri) {
            let mut request = http::Request::post(uri.clone());
            if let Some(h) = request.headers_mut() {
                h.reserve(post.headers.len() + post.stated.len() + 3);
                h.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                h.insert(
                    http::header::ACCEPT,
                    HeaderValue::from_static("application/json, text/event-stream"),
                );
                if let Some(session) = post.session {
                    h.insert(SESSION, HeaderValue::from_str(session)?);
                }
                for (k, v) in post
                    .headers
                    .iter()
                    .chain(post.stated.iter().map(|(k, v)| (k, v)))
                {
                    h.append(k.clone(), v.clone());
                }
            }
            let response = direct
                .request(request.body(Full::new(post.body.clone()))?)
                .await?;
            if !response.status().is_redirection() {
                let (parts, body) = response.into_parts();
                return Ok(Posted {
                    status: parts.status,
                    headers: parts.headers,
                    body: BodyDataStream::new(body)
                        .map(|r| r.map_err(BoxError::from))
                        .boxed(),
                });
            }
        }
        let mut request = self
            .reqwest
            .post(post.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream");
        if let Some(session) = post.session {
            request = request.header(SESSION, session);
        }
        for (k, v) in post
            .headers
            .iter()
            .chain(post.stated.iter().map(|(k, v)| (k, v)))
        {
            request = request.header(k, v);
        }
        let response = request.body(post.body).send().await?;
        Ok(Posted {
            status: response.status(),
            headers: response.headers().clone(),
            body: response
                .bytes_stream()
                .map(|r| r.map_err(BoxError::from))
                .boxed(),
        })
    }
}
