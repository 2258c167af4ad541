//! The gateway's MCP endpoint, before rmcp: the requests it answers itself, and the rest.
//!
//! rmcp's server decodes every request through `ClientRequest` (an untagged enum: serde buffers
//! the message and tries each variant), runs it through a service (a one-shot service and task
//! of its own when stateless, the session's worker and channels when stateful), and encodes
//! the reply through `ServerJsonRpcMessage`. A `tools/call` and the four list methods (tools,
//! prompts, resources, resource templates) of a caller on a protocol with the initialize
//! handshake need none of it: the layers have parsed and allowed the request, so the endpoint
//! decodes only its parameters and answers it itself (see `call` and
//! `lists`). Where a request goes is decided before its body is read, from the head the layers
//! parsed, the tool target the permission layer attributed and the headers; whatever the
//! endpoint does not take goes to rmcp unchanged: another method, a protocol or `Host` rmcp
//! would judge, the fields of 2026-07-28's rounds, a session rmcp does not have open or has
//! not seen lately (see `sessions`), a name that does not route, an upstream that is not
//! spoken to with the handshake over streamable HTTP. Nothing taken here is handed back.
//!
//! On a stateful endpoint the caller's answers to upstream requests passed on by a call here,
//! and its cancellations of such calls, are taken here too ([`Endpoint::on_answer`]).

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::Full;
use http_body_util::combinators::BoxBody;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::Value;

use super::reply::{McpResponse, refused_body};
use super::sessions::Sessions;
use crate::context::ToolTarget;
use crate::engine::NameKind;
use crate::gatekeeper::PolicySnapshot;
use crate::gateway::caller::Caller;
use crate::gateway::handler::aggregate::Upstreams;
use crate::gateway::shared::GatewayState;
use crate::gateway::upstream::spec::{UpstreamSpec, UpstreamTransport};
use crate::protocol::{CollectError, Era, McpRequest, MessageKind, Method, RequestId};

/// What the endpoint answers itself, from its settings.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// Normalised `(host, port)` pairs; empty allows every host, as with rmcp.
    allowed_hosts: Vec<(String, Option<u16>)>,
    pub(crate) json_response: bool,
    pub(crate) max_body: usize,
    /// On a stateful endpoint.
    pub(crate) sessions: Option<Arc<Sessions>>,
}

/// Where a request goes.
pub(crate) enum Route {
    /// A `tools/call` for the endpoint.
    Call(CallPlan),
    /// A `tools/list`, `prompts/list`, `resources/list` or `resources/templates/list` for the
    /// endpoint (with the caller's session on a stateful endpoint).
    List(Method, Caller, Option<Arc<str>>),
    /// A caller's answer on its session to an upstream request passed on here.
    Answer(Arc<str>),
    /// A caller's `notifications/cancelled` of a call running here: cancelled already.
    Cancelled,
    /// rmcp's.
    Rmcp,
}

/// Where a `tools/call` taken by the endpoint goes.
pub(crate) struct CallPlan {
    /// The caller's session on a stateful endpoint.
    pub(crate) session: Option<Arc<str>>,
    pub(crate) caller: Caller,
    /// The upstream, and the name it knows the tool by.
    pub(crate) server: String,
    pub(crate) bare: String,
}

/// The one value of `name`, if there is exactly one and it is text.
fn one_header(headers: &HeaderMap, name: &str) -> Option<Arc<str>> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok().map(Arc::from),
        _ => None,
    }
}

impl Endpoint {
    /// The endpoint for an endpoint with `config`, whose sessions (if stateful) `manager`
    /// keeps.
    pub(crate) fn for_config(
        config: &StreamableHttpServerConfig,
        manager: &Arc<LocalSessionManager>,
    ) -> Option<Self> {
        if !config.legacy_session_mode && config.stateless_protocol_metadata_required {
            return None;
        }
        Some(Self {
            sessions: config
                .legacy_session_mode
                .then(|| Arc::new(Sessions::new(Arc::clone(manager)))),
            allowed_hosts: config
                .allowed_hosts
                .iter()
                .filter_map(|h| allowed_authority(h))
                .collect(),
            json_response: config.json_response,
            max_body: config.max_request_body_bytes,
        })
    }

    /// Where the request of `parts` (already through the layers) goes, decided before its body
    /// is read.
    pub(crate) async fn route(&self, shared: &GatewayState, parts: &Parts) -> Route {
        let Some(head) = parts.extensions.get::<McpRequest>() else {
            return Route::Rmcp;
        };
        if parts.method != http::Method::POST {
            return Route::Rmcp;
        }
        let session = one_header(&parts.headers, "mcp-session-id");
        let session = match (&self.sessions, session) {
            (Some(sessions), Some(session)) => {
                match head.kind {
                    MessageKind::Response => {
                        let asked = head.id.as_ref().and_then(|id| match id {
                            RequestId::String(ours) => Some(ours),
                            RequestId::Number(_) => None,
                        });
                        return match asked {
                            Some(ours) if sessions.asked(&session, ours) => Route::Answer(session),
                            _ => Route::Rmcp,
                        };
                    }
                    MessageKind::Notification => {
                        let cancelled = head
                            .cancels
                            .as_ref()
                            .is_some_and(|id| sessions.cancel(&session, id.to_value().to_string()));
                        return if cancelled {
                            Route::Cancelled
                        } else {
                            Route::Rmcp
                        };
                    }
                    MessageKind::Request => {}
                }
                if !self.takes(parts, head) || !sessions.usable(&session).await {
                    return Route::Rmcp;
                }
                Some(session)
            }
            (None, None) if self.takes(parts, head) => None,
            // A stateful endpoint's request without a session, or a stateless one's with.
            _ => return Route::Rmcp,
        };
        let caller = Caller::from_parts(parts, false);
        match &head.method {
            Some(Method::ToolsCall) => {
                call_plan(shared, parts, head, caller, session).map_or(Route::Rmcp, Route::Call)
            }
            Some(list) => {
                // Every upstream the caller may use is a streamable HTTP one: its lists are
                // taken from the session's kept lists, else asked directly (through rmcp's
                // client of the session where it has no session to post on).
                let direct =
                    Upstreams::of(shared, caller.clone())
                        .servers()
                        .iter()
                        .all(|(_, name)| {
                            shared
                                .upstreams
                                .get(name)
                                .is_some_and(|s| matches!(s.transport, UpstreamTransport::Http(_)))
                        });
                if direct {
                    Route::List(list.clone(), caller, session)
                } else {
                    Route::Rmcp
                }
            }
            None => Route::Rmcp,
        }
    }

    fn takes(&self, parts: &Parts, head: &McpRequest) -> bool {
        let headers = &parts.headers;
        head.kind == MessageKind::Request
            && matches!(
                head.method,
                Some(
                    Method::ToolsCall
                        | Method::ToolsList
                        | Method::PromptsList
                        | Method::ResourcesList
                        | Method::ResourceTemplatesList
                )
            )
            && head.id.is_some()
            && handshake_protocol(headers)
            && !headers.contains_key("mcp-method")
            && !headers.contains_key("mcp-name")
            // rmcp keeps to itself whether it checks an empty origin allow-list: any request
            // with an `Origin` is its to judge.
            && !headers.contains_key(header::ORIGIN)
            && !head.per_request
            && self.host_allowed(headers, &parts.uri)
            && media_types_fit(headers)
    }

    fn host_allowed(&self, headers: &HeaderMap, uri: &http::Uri) -> bool {
        let authority = match headers.get(header::HOST) {
            Some(h) => match h
                .to_str()
                .ok()
                .and_then(|h| http::uri::Authority::try_from(h).ok())
            {
                Some(a) => a,
                None => return false, // rmcp answers 400
            },
            None => match uri.authority() {
                Some(a) => a.clone(),
                None => return false,
            },
        };
        if self.allowed_hosts.is_empty() {
            return true;
        }
        let host = normalise_host(authority.host());
        let port = authority.port_u16();
        self.allowed_hosts
            .iter()
            .any(|(h, p)| *h == host && p.is_none_or(|p| Some(p) == port))
    }
}

fn normalise_host(host: &str) -> String {
    host.trim_matches('[')
        .trim_matches(']')
        .to_ascii_lowercase()
}

/// An entry of `allowed_hosts` as rmcp reads it: an authority, or else a bare host.
fn allowed_authority(allowed: &str) -> Option<(String, Option<u16>)> {
    let allowed = allowed.trim();
    if allowed.is_empty() {
        return None;
    }
    Some(match http::uri::Authority::try_from(allowed) {
        Ok(a) => (normalise_host(a.host()), a.port_u16()),
        Err(_) => (normalise_host(allowed), None),
    })
}

/// A known protocol version from before 2026-07-28 in `MCP-Protocol-Version`.
fn handshake_protocol(headers: &HeaderMap) -> bool {
    Era::from_header(headers).is_some_and(|era| !era.is_stateless())
}

/// Accepts JSON and event streams, and sends JSON (rmcp answers anything else with 406/415).
fn media_types_fit(headers: &HeaderMap) -> bool {
    let essence = |v: &str| {
        v.split_once(';')
            .map_or(v, |(e, _)| e)
            .trim()
            .to_ascii_lowercase()
    };
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(header::ACCEPT) {
        for item in value.to_str().unwrap_or_default().split(',') {
            match essence(item).as_str() {
                "application/json" => json = true,
                "text/event-stream" => sse = true,
                _ => {}
            }
        }
    }
    json && sse
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| essence(v) == "application/json")
}

/// The whole body, or rmcp's refusal of it: 413 past `max` bytes, 400 when it cannot be read.
/// The layers have read it already, so this takes over their buffer without a copy.
pub(crate) async fn collect<B: http_body::Body>(body: B, max: usize) -> Result<Bytes, McpResponse> {
    crate::protocol::collect_limited(body, max)
        .await
        .map_err(|e| {
            refused_body(match e {
                CollectError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                CollectError::Body(_) => StatusCode::BAD_REQUEST,
            })
        })
}

impl Endpoint {
    /// A caller's answer, on `session`, to an upstream request passed on here (see
    /// [`Route::Answer`]): it goes to that upstream under its own id, once. An answer whose
    /// call has ended meanwhile is taken and dropped, as a server drops an answer to a request
    /// it no longer waits for.
    pub(crate) async fn on_answer(&self, session: &Arc<str>, bytes: &[u8]) -> McpResponse {
        if let (Some(sessions), Ok(mut message)) =
            (&self.sessions, serde_json::from_slice::<Value>(bytes))
            && let Some((to, theirs)) = message
                .get("id")
                .and_then(Value::as_str)
                .and_then(|ours| sessions.answer(session, ours))
        {
            message["id"] = theirs;
            to.reply(&message).await;
        }
        accepted()
    }
}

/// `202 Accepted`, empty: what a posted answer or notification gets.
pub(crate) fn accepted() -> McpResponse {
    let mut r = Response::new(BoxBody::new(Full::new(Bytes::new())));
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// Whether the endpoint answers the calls of `spec` (see `tool_call` for how they are sent): a
/// streamable HTTP upstream spoken to with the handshake; on a stateless endpoint, one spoken to
/// in 2026-07-28 as well. (A 2026-07-28 upstream may answer with input-required rounds, which a
/// caller with a session answers through its rmcp session, and which a caller without one can
/// answer neither way; until an upstream left to discovery has had a session, its calls go
/// through rmcp too.)
fn posts_directly(spec: &UpstreamSpec, stateless: bool) -> bool {
    matches!(spec.transport, UpstreamTransport::Http(_))
        && (spec.speaks_handshake() || (stateless && spec.speaks_latest()))
}

/// Where the `tools/call` of `head` goes, if the endpoint takes it: to the server the
/// permission layer attributed it to (attributed here only without that layer), if that
/// upstream [posts directly](posts_directly).
fn call_plan(
    shared: &GatewayState,
    parts: &Parts,
    head: &McpRequest,
    caller: Caller,
    session: Option<Arc<str>>,
) -> Option<CallPlan> {
    let name = head.tool_name()?;
    let target = parts.extensions.get::<ToolTarget>();
    let policy = parts.extensions.get::<Arc<PolicySnapshot>>();
    let (server, bare) = match (target, policy) {
        (Some(t), Some(policy)) => (
            policy.catalog().server(t.server).name().to_owned(),
            t.bare(name).to_owned(),
        ),
        _ => {
            let upstreams = Upstreams::of(shared, caller.clone());
            let (server, bare) = upstreams.route(NameKind::Tool, name).ok()?;
            (server, bare.into_owned())
        }
    };
    if !posts_directly(shared.upstreams.get(&server)?, session.is_none()) {
        return None;
    }
    Some(CallPlan {
        session,
        caller,
        server,
        bare,
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn endpoint(allowed: &[&str]) -> Endpoint {
        let mut config = StreamableHttpServerConfig::default();
        config.legacy_session_mode = false;
        config.allowed_hosts = allowed.iter().map(|h| (*h).to_owned()).collect();
        Endpoint::for_config(&config, &Arc::new(LocalSessionManager::default())).unwrap()
    }

    fn with_host(host: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        h
    }

    #[test]
    fn hosts_are_judged_as_rmcp_judges_them_and_anything_unclear_goes_to_rmcp() {
        let x = endpoint(&["localhost", "127.0.0.1", "::1", "api.example.com:8443"]);
        let uri = http::Uri::from_static("/mcp");
        for (host, allowed) in [
            (Some("127.0.0.1:4000"), true),
            (Some("LOCALHOST:80"), true),
            (Some("[::1]:4000"), true),
            (Some("api.example.com:8443"), true),
            (Some("api.example.com:443"), false),
            (Some("api.example.com"), false),
            (Some("127.0.0.1.evil.example"), false),
            (Some("evil.example"), false),
            (Some("localhost.:80"), false),
            (Some("a b"), false),
            (None, false),
        ] {
            assert_eq!(x.host_allowed(&with_host(host), &uri), allowed, "{host:?}");
        }
        // An empty list allows every host, as rmcp's does.
        assert!(endpoint(&[]).host_allowed(&with_host(Some("anything.example")), &uri));
    }

    #[test]
    fn only_known_handshake_versions_and_full_media_types_are_answered_by_the_endpoint() {
        for (version, ok) in [
            (Some("2025-06-18"), true),
            (Some("2025-03-26"), true),
            (Some("2026-07-28"), false),
            (Some("2099-01-01"), false),
            (Some("2025-06-18 "), false),
            (None, false),
        ] {
            let mut h = HeaderMap::new();
            if let Some(v) = version {
                h.insert("mcp-protocol-version", HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(handshake_protocol(&h), ok, "{version:?}");
        }
        let mut twice = HeaderMap::new();
        twice.append(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-06-18"),
        );
        twice.append(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-06-18"),
        );
        assert!(!handshake_protocol(&twice));
        for (accept, content_type, ok) in [
            (
                "application/json, text/event-stream",
                "application/json",
                true,
            ),
            (
                "text/event-stream;q=0.9, Application/JSON",
                "application/json; charset=utf-8",
                true,
            ),
            ("application/json", "application/json", false),
            ("*/*", "application/json", false),
            ("application/json, text/event-stream", "text/plain", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).unwrap(),
            );
            assert_eq!(media_types_fit(&h), ok, "{accept} / {content_type}");
        }
    }
}
