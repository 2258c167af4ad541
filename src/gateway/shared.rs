//! What the gateway holds for all its callers: the upstreams and their clients, the session
//! pool, each upstream's health, and the state of exchanges that span several requests
//! (parked calls, handed-out states, listen streams, tasks). `Gateway` is a handle to it.
//!
//! Every wing above reads it; it never answers a caller or decides what a caller may do.

use std::collections::HashMap;
use std::sync::Arc;

use std::time::Instant;

use http::{HeaderName, HeaderValue};
use rmcp::service::{Peer, ServiceError};
use rmcp::{RoleClient, RoleServer};
use sha2::{Digest as _, Sha256};

use crate::gatekeeper::Gatekeeper;
use crate::gateway::caller::Caller;
use crate::gateway::caller::input_state::InputStates;
use crate::gateway::caller::list_cache::{ListCache, MergedLists};
use crate::gateway::caller::listeners::Listeners;
use crate::gateway::caller::task_ids::TaskIds;
use crate::gateway::upstream::client::{Announce, Relay};
use crate::gateway::upstream::http_clients::UpstreamHttp;
use crate::gateway::upstream::parked::Parked;
use crate::gateway::upstream::pool::{Failure, Pool, PoolKey};
use crate::gateway::upstream::spec::{Connection, TokenCache, UpstreamSpec, connect};

/// The state every clone of a `Gateway` shares.
pub(crate) struct GatewayState {
    pub(crate) gatekeeper: Gatekeeper,
    pub(crate) upstreams: HashMap<String, UpstreamSpec>,
    pub(crate) tokens: HashMap<String, TokenCache>,
    /// Each upstream's HTTP client: its own TLS settings and connection pool.
    pub(crate) clients: HashMap<String, UpstreamHttp>,
    pub(crate) pool: Pool,
    pub(crate) client_auth_header: HeaderName,
    pub(crate) registry: bool,
    pub(crate) allowed_hosts: Option<Vec<String>>,
    pub(crate) health: std::sync::Mutex<HashMap<String, Health>>,
    /// Calls of 2026-07-28 callers waiting for their answers (see the handler's `tool_rounds`).
    pub(crate) parked: Parked,
    /// The stand-ins for upstreams' `requestState` handed to 2026-07-28 callers (see
    /// `input_state`).
    pub(crate) input_states: InputStates,
    /// How long an upstream session's lists are kept (see `list_cache`); zero keeps none.
    pub(crate) list_ttl: std::time::Duration,
    /// List answers merged from kept lists (see `list_cache`).
    pub(crate) merged_lists: MergedLists,
    /// How often upstream sessions' lists were found kept or asked again.
    pub(crate) list_counts: Arc<crate::gateway::caller::list_cache::ListCounts>,
    /// The open `subscriptions/listen` streams (see `listeners`).
    pub(crate) listeners: Arc<Listeners>,
    /// The tasks upstreams created for callers (see `tasks`).
    pub(crate) tasks: TaskIds,
    /// The caller behind each session of a stateful endpoint, from its `initialized`: the
    /// endpoint, for the calls rmcp's handler does not see, attaches it to the upstream sessions
    /// it uses, so that what upstreams announce outside a call still reaches the caller.
    pub(crate) downstream:
        std::sync::Mutex<HashMap<Arc<str>, rmcp::service::Peer<rmcp::RoleServer>>>,
    #[cfg(feature = "oauth")]
    pub(crate) oauth: Option<crate::oauth::OAuth>,
    /// Parts `/health` reports on besides the upstreams, by name.
    pub(crate) reports: Vec<(String, Arc<dyn crate::source::HealthReport>)>,
    /// What `GET /metrics` serves, when metrics are on.
    pub(crate) metrics: Option<MetricsEndpoint>,
    /// The origins browsers may call the gateway from (`*`: any); none by default.
    pub(crate) cors_origins: Vec<HeaderValue>,
}

/// What `GET /metrics` serves, and to whom.
#[derive(Clone, Debug)]
pub(crate) struct MetricsEndpoint {
    pub(crate) recorder: Arc<crate::metrics::PrometheusMetrics>,
    /// Anyone may read it (else the master key only).
    pub(crate) public: bool,
    /// Sends what `recorder` holds to an OpenTelemetry collector, while the gateway lives.
    #[cfg(feature = "otel")]
    pub(crate) exporter: Option<Arc<crate::otel::OtlpMetrics>>,
}

/// The last thing an upstream did, for `/health`.
#[derive(Clone, Debug)]
pub(crate) struct Health {
    ok: bool,
    last_error: Option<String>,
    at: std::time::SystemTime,
}

impl GatewayState {
    /// The HTTP client of upstream `server` (every upstream has one).
    pub(crate) fn client(&self, server: &str) -> Result<&UpstreamHttp, String> {
        self.clients
            .get(server)
            .ok_or_else(|| "no such upstream".to_owned())
    }

    /// The caller of `session` opened it and is still connected.
    pub(crate) fn note_downstream(
        &self,
        session: &str,
        peer: rmcp::service::Peer<rmcp::RoleServer>,
    ) {
        let mut peers = self
            .downstream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if peers.len() >= 4_096 {
            peers.retain(|_, p| !p.is_transport_closed());
        }
        peers.insert(Arc::from(session), peer);
    }

    /// The caller behind `session`, if it is still connected.
    pub(crate) fn downstream(
        &self,
        session: &str,
    ) -> Option<rmcp::service::Peer<rmcp::RoleServer>> {
        let mut peers = self
            .downstream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match peers.get(session) {
            Some(p) if p.is_transport_closed() => {
                peers.remove(session);
                None
            }
            other => other.cloned(),
        }
    }

    /// What goes before the names of `server`'s tools, prompts and resources as callers see
    /// them: `{server}{separator}` when names are prefixed, nothing otherwise.
    /// What the caller calls `server`'s resource `uri`: a UI resource (MCP Apps) keeps its
    /// scheme, with the server named inside it; any other carries the name prefix.
    pub(crate) fn resource_name(&self, server: &str, uri: &str) -> String {
        let policy = self.gatekeeper.policy();
        policy
            .catalog()
            .ui_uri(server, uri)
            .unwrap_or_else(|| format!("{}{uri}", self.name_prefix(server)))
    }

    pub(crate) fn name_prefix(&self, server: &str) -> String {
        let policy = self.gatekeeper.policy();
        let settings = policy.catalog().settings();
        if settings.tool_prefix == crate::engine::ToolPrefix::Always {
            format!("{server}{}", settings.separator)
        } else {
            String::new()
        }
    }

    pub(crate) fn report_failure(&self, server: &str, failure: &Failure) {
        crate::decision_events::warn(&format!("upstream {server} failed: {failure}"));
        self.set_health(server, Some(failure.to_string()));
    }

    pub(crate) fn report_success(&self, server: &str) {
        self.set_health(server, None);
    }

    fn set_health(&self, server: &str, error: Option<String>) {
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = health.entry(server.to_owned()).or_insert(Health {
            ok: true,
            last_error: None,
            at: std::time::SystemTime::now(),
        });
        entry.ok = error.is_none();
        entry.at = std::time::SystemTime::now();
        if error.is_some() {
            entry.last_error = error;
        }
    }

    /// Per upstream that was asked anything: whether its last request succeeded.
    pub(crate) fn health_by_server(&self) -> Vec<(String, bool)> {
        let health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<(String, bool)> = health.iter().map(|(n, h)| (n.clone(), h.ok)).collect();
        out.sort();
        out
    }

    /// Per upstream: whether its last request succeeded, its last error, and when.
    pub(crate) fn health_report(&self) -> serde_json::Value {
        let health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut names: Vec<&String> = self.upstreams.keys().collect();
        names.sort();
        let report: serde_json::Map<String, serde_json::Value> = names
            .into_iter()
            .map(|n| {
                let v = match health.get(n) {
                    None => serde_json::json!({"status": "unused"}),
                    Some(h) => serde_json::json!({
                        "status": if h.ok { "ok" } else { "failing" },
                        "last_error": h.last_error,
                        "at_unix_ms": h.at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
                    }),
                };
                (n.clone(), v)
            })
            .collect();
        serde_json::Value::Object(report)
    }
}

/// Headers never sent upstream whatever the configuration says: the caller's gateway key and
/// what the MCP transport sets itself.
const NEVER_FORWARD: &[&str] = &[
    "x-litellm-api-key",
    "authorization",
    "host",
    "content-length",
    "content-type",
    "accept",
    "connection",
    "transfer-encoding",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "x-mcp-servers",
];

impl GatewayState {
    /// The headers this caller's session with `server` carries (see DESIGN §4.9).
    async fn headers_for(
        &self,
        caller: &Caller,
        server: &str,
    ) -> Result<(HashMap<HeaderName, HeaderValue>, Option<Instant>), String> {
        let spec = &self.upstreams[server];
        let mut out: HashMap<HeaderName, HeaderValue> = HashMap::new();
        let forwardable = |name: &HeaderName| {
            !NEVER_FORWARD.contains(&name.as_str()) && *name != self.client_auth_header
        };
        for name in &spec.extra_headers {
            if let Some(v) = caller.headers.get(name)
                && forwardable(name)
            {
                out.insert(name.clone(), v.clone());
            }
        }
        let has_own_auth = spec.auth.is_some() || spec.oauth2.is_some();
        if !has_own_auth && let Some(v) = caller.headers.get(&self.client_auth_header) {
            out.insert(http::header::AUTHORIZATION, v.clone());
        }
        // x-mcp-{server or alias}-{header}: to that server only, by the longest matching name.
        let policy = self.gatekeeper.policy();
        let catalog = policy.catalog();
        for (name, value) in &caller.headers {
            let Some(rest) = name.as_str().strip_prefix("x-mcp-") else {
                continue;
            };
            let mut best: Option<(usize, &str)> = None;
            for s in catalog.servers() {
                for n in std::iter::once(s.name()).chain(s.alias()) {
                    let n_lower = n.to_ascii_lowercase();
                    if rest.len() > n_lower.len() + 1
                        && rest.starts_with(&n_lower)
                        && rest.as_bytes()[n_lower.len()] == b'-'
                        && best.is_none_or(|(len, _)| n_lower.len() > len)
                    {
                        best = Some((n_lower.len(), s.name()));
                    }
                }
            }
            if let Some((len, owner)) = best
                && owner == server
                && let Ok(header) = HeaderName::from_bytes(&rest.as_bytes()[len + 1..])
                && (header == http::header::AUTHORIZATION || forwardable(&header))
            {
                out.insert(header, value.clone());
            }
        }
        if let Some((name, value)) = &spec.auth {
            out.insert(
                name.clone(),
                HeaderValue::from_str(value).map_err(|_| "invalid credential".to_owned())?,
            );
        }
        let mut expires = None;
        if let Some(o) = &spec.oauth2 {
            let (token, until) = self.tokens[server]
                .get(&self.client(server)?.reqwest, o)
                .await?;
            out.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| "invalid token".to_owned())?,
            );
            expires = Some(until);
        }
        for (name, value) in &spec.static_headers {
            out.insert(name.clone(), value.clone());
        }
        Ok((out, expires))
    }

    /// Runs `f` on this caller's session with `server`, opening it if needed.
    pub(crate) async fn with_session<T, F, Fut>(
        &self,
        caller: &Caller,
        server: &str,
        downstream: Option<&Peer<RoleServer>>,
        f: F,
    ) -> Result<T, Failure>
    where
        F: FnOnce(Peer<RoleClient>, Relay) -> Fut,
        Fut: std::future::Future<Output = Result<T, ServiceError>>,
    {
        let spec = self
            .upstreams
            .get(server)
            .ok_or_else(|| Failure::Unavailable("no such upstream".into()))?;
        let (headers, expires) = self
            .headers_for(caller, server)
            .await
            .map_err(Failure::Unavailable)?;
        let mut fingerprint = Sha256::new();
        let mut sorted: Vec<_> = headers.iter().collect();
        sorted.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        for (k, v) in sorted {
            fingerprint.update(k.as_str().as_bytes());
            fingerprint.update([0]);
            fingerprint.update(v.as_bytes());
            fingerprint.update([0]);
        }
        let key = PoolKey {
            caller: caller.digest.map(|d| d.0),
            server: server.to_owned(),
            credentials: fingerprint.finalize().into(),
            modern: caller.modern,
        };
        let entry = self.pool.entry(key);
        let peer = {
            let mut slot = entry.conn.lock().await;
            let reuse = slot.as_ref().is_some_and(Connection::is_usable);
            if !reuse {
                if let Some(old) = slot.take() {
                    if old.service.is_closed() {
                        old.lost();
                    }
                    tokio::spawn(async move {
                        let _ = old.service.cancel().await;
                    });
                }
                let announce = caller.modern.then(|| Announce {
                    listeners: Arc::clone(&self.listeners),
                    caller: caller.digest.map(|d| d.0),
                    server: Arc::from(server),
                });
                // A legacy SSE session shows it is lost only when something is sent on it (its
                // event stream may outlive the server's restart): its lists are asked each time.
                let ttl = match spec.transport {
                    crate::gateway::upstream::spec::UpstreamTransport::Sse(_) => {
                        std::time::Duration::ZERO
                    }
                    _ => self.list_ttl,
                };
                let relay = Relay::new(
                    self.name_prefix(server),
                    self.resource_name(server, crate::engine::UI_SCHEME),
                    announce,
                    ListCache::new(ttl).counted(Arc::clone(&self.list_counts)),
                );
                let service = tokio::time::timeout(
                    spec.timeout,
                    connect(
                        spec,
                        headers,
                        self.client(server).map_err(Failure::Unavailable)?.clone(),
                        relay.clone(),
                    ),
                )
                .await
                .map_err(|_| Failure::Timeout)?
                .map_err(Failure::Unavailable)?;
                let clock = self.gatekeeper.metrics().map(|metrics| {
                    let transport = match spec.transport {
                        crate::gateway::upstream::spec::UpstreamTransport::Stdio { .. } => "pipe",
                        _ => "tcp",
                    };
                    let clock = crate::metrics::SessionClock::new(
                        Arc::clone(metrics),
                        crate::metrics::SessionSide::Client,
                        Some(Arc::from(server)),
                        transport,
                    );
                    if let Some(info) = service.peer().peer_info() {
                        clock.opened(info.protocol_version.as_str());
                    }
                    clock
                });
                *slot = Some(Connection {
                    service,
                    relay,
                    expires,
                    clock,
                });
            }
            let conn = slot.as_ref().expect("just set");
            if let Some(peer) = downstream {
                conn.relay.attach(peer.clone());
            }
            (conn.service.peer().clone(), conn.relay.clone())
        };
        let (peer, relay) = peer;
        *entry
            .last_used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        match tokio::time::timeout(spec.timeout, f(peer, relay)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if matches!(
                    e,
                    ServiceError::TransportClosed | ServiceError::TransportSend(_)
                ) {
                    // The session is dead (a crashed child, a dropped connection) even if rmcp
                    // has not noticed yet: the next use opens a new one.
                    if let Some(old) = entry.conn.lock().await.take() {
                        old.lost();
                        tokio::spawn(async move {
                            let _ = old.service.cancel().await;
                        });
                    }
                }
                Err(Failure::Service(e))
            }
            Err(_) => Err(Failure::Timeout),
        }
    }
}
