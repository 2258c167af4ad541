//! The gateway (feature `gateway`): many upstream MCP servers behind one governed endpoint.
//!
//! [`Gateway`] is an aggregating MCP server and, like any other MCP service, just the inner
//! service of the six layers. It connects to upstreams through rmcp's clients (streamable
//! HTTP, stdio child processes, and a legacy HTTP+SSE client of its own), keeps one upstream
//! session per caller, merges tools, prompts and resources under `{server}{sep}` prefixes (or
//! bare names), and routes each call to the right upstream with its bare name. One upstream
//! that fails, hangs or crashes never hides the others: each is asked concurrently under its
//! own timeout, and a failure is logged and skipped.
//!
//! [`Gateway::router`] mounts it behind the layers with everything around it: `/mcp`,
//! `/{servers}/mcp`, `/mcp/{servers}`, the legacy `/sse` bridge, `/v1/mcp/registry.json`,
//! `/mcp-rest/tools/list`, `/mcp-rest/tools/call` and `/health`. Every path goes through the
//! same layered stack, so every decision is made in one place.

//!
//! # The house
//!
//! The gateway stands in five wings, each importing only from the ones listed before it:
//!
//! - `caller`: what the gateway keeps per caller — who is calling, the lists kept for its
//!   upstream sessions, the states, tasks and listen streams handed out to it.
//! - `upstream`: everything toward upstream servers — specs and connections, pooled sessions,
//!   the client side of a session, lists, listen streams, and the one path of a `tools/call`.
//! - `shared.rs`: the state all callers share, over those two.
//! - `handler`: the aggregating MCP server — routing names to upstreams, merging lists, the
//!   rounds of a call, tasks and listening — whichever way a request arrived.
//! - `endpoint`: the MCP endpoint as an HTTP service: which requests it answers through the
//!   handler's call path itself, the sessions it keeps, and rmcp's streamable HTTP server.
//! - `surface`: the HTTP surface around the endpoint — the router, REST, the registry, the
//!   legacy `/sse` bridge, `/health` and the pin admin — all through the same layered stack.
//!
//! This file is the public face: [`Gateway`], its builder and the types users name.

mod caller;
mod endpoint;
mod handler;
mod shared;
mod surface;
mod upstream;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;

pub use crate::tls::{CertificateDer, ClientIdentity, PrivateKeyDer, UpstreamTls, Verify};
pub use endpoint::GatewayService;
pub use handler::GatewayHandler;
use shared::GatewayState;
pub use upstream::{InProcessFactory, OAuth2, UpstreamProtocol, UpstreamSpec, UpstreamTransport};

use crate::config::{Config, ConfigError};
use crate::gatekeeper::Gatekeeper;

/// The aggregating gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) shared: Arc<GatewayState>,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.shared.upstreams.keys().collect();
        names.sort();
        f.debug_struct("Gateway")
            .field("upstreams", &names)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Gateway`].
#[derive(Debug)]
pub struct GatewayBuilder {
    gatekeeper: Gatekeeper,
    upstreams: HashMap<String, UpstreamSpec>,
    client_auth_header: HeaderName,
    registry: bool,
    allowed_hosts: Option<Vec<String>>,
    list_ttl: std::time::Duration,
    #[cfg(feature = "oauth")]
    oauth: Option<crate::oauth::OAuth>,
    reports: Vec<(String, Arc<dyn crate::source::HealthReport>)>,
    metrics: Option<shared::MetricsEndpoint>,
    extra_metrics: Option<ExtraMetrics>,
    cors_origins: Vec<http::HeaderValue>,
}

/// A recorder besides the served metrics (see [`GatewayBuilder::extra_metrics`]).
struct ExtraMetrics(Arc<dyn crate::metrics::Metrics>);

impl fmt::Debug for ExtraMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExtraMetrics")
    }
}

/// How long an upstream session's lists are kept unless configured otherwise.
pub const DEFAULT_LIST_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl GatewayBuilder {
    /// Adds (or replaces) the upstream of catalog server `name`.
    #[must_use]
    pub fn upstream(mut self, name: impl Into<String>, spec: UpstreamSpec) -> Self {
        self.upstreams.insert(name.into(), spec);
        self
    }

    /// The header whose value callers send for upstreams without credentials of their own
    /// (default `x-mcp-auth`).
    #[must_use]
    pub fn client_auth_header(mut self, name: HeaderName) -> Self {
        self.client_auth_header = name;
        self
    }

    /// Serves `/v1/mcp/registry.json`.
    #[must_use]
    pub fn registry(mut self, on: bool) -> Self {
        self.registry = on;
        self
    }

    /// Host names (or `host:port`) the MCP endpoint accepts; rmcp accepts only loopback hosts
    /// by default, which protects local deployments from DNS rebinding.
    #[must_use]
    pub fn allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = Some(hosts);
        self
    }

    /// How long the tools, prompts and resources an upstream listed for one caller's session
    /// are kept and served again without asking it (default [`DEFAULT_LIST_TTL`]). A list
    /// is dropped earlier when the upstream announces it changed; zero keeps none.
    #[must_use]
    pub fn list_cache_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.list_ttl = ttl;
        self
    }

    /// Accepts OAuth bearer tokens besides keys: [`Gateway::router`] serves this resource's
    /// protected resource metadata at `/.well-known/oauth-protected-resource[/{path}]`. The
    /// layer given to the router must resolve identities with the same [`OAuth`](crate::oauth::OAuth)
    /// (see [`Gateway::oauth`]).
    #[cfg(feature = "oauth")]
    #[must_use]
    pub fn oauth(mut self, oauth: crate::oauth::OAuth) -> Self {
        self.oauth = Some(oauth);
        self
    }

    /// Reports `part` (the policy source's [`SourceStatus`](crate::source::SourceStatus), a
    /// spend sink) in `/health` under `name`: its details to the master key, and its state in
    /// everyone's `status` (`degraded` while it works from a fallback; `unavailable`, with
    /// HTTP 503, while no policy was ever loaded, so a load balancer sends nothing to it).
    #[must_use]
    pub fn health_report(
        mut self,
        name: impl Into<String>,
        part: Arc<dyn crate::source::HealthReport>,
    ) -> Self {
        self.reports.push((name.into(), part));
        self
    }

    /// Measures with `metrics` and serves what it measured at `GET /metrics`, in the
    /// Prometheus text format, with the gateway's own gauges (audit events, upstream sessions
    /// and health, quarantined definitions): to the master key only, or to anyone when
    /// `public`. The gatekeeper gets `metrics` too (see [`Gatekeeper::with_metrics`]), beside
    /// any recorder it already had, so the layers of the stack given to [`Gateway::router`],
    /// built from [`Gateway::gatekeeper`], time every request and count every decision.
    #[must_use]
    pub fn metrics(
        mut self,
        metrics: Arc<crate::metrics::PrometheusMetrics>,
        public: bool,
    ) -> Self {
        self.metrics = Some(shared::MetricsEndpoint {
            recorder: metrics,
            public,
            #[cfg(feature = "otel")]
            exporter: None,
        });
        self
    }

    /// Also hands what the layers and the gateway measure to `recorder` (a trace exporter,
    /// say), besides the metrics [`GatewayBuilder::metrics`] serves.
    #[must_use]
    pub fn extra_metrics(mut self, recorder: Arc<dyn crate::metrics::Metrics>) -> Self {
        self.extra_metrics = Some(ExtraMetrics(recorder));
        self
    }

    /// Lets browser MCP clients of `origins` (`https://app.example`, or `*` for any) call the
    /// gateway across origins: preflights answered, every MCP method and header allowed,
    /// `Mcp-Session-Id` and `WWW-Authenticate` readable. None by default (no CORS header at
    /// all, so browsers keep other origins out); the RFC 9728 metadata is open to every origin
    /// either way.
    #[must_use]
    pub fn cors_origins(mut self, origins: Vec<http::HeaderValue>) -> Self {
        self.cors_origins = origins;
        self
    }

    /// The gateway.
    ///
    /// # Errors
    ///
    /// When an upstream is not a catalog server, or its TLS settings cannot be used (a client
    /// key that does not fit its certificate, a CA certificate rustls cannot use).
    pub fn build(self) -> Result<Gateway, ConfigError> {
        let policy = self.gatekeeper.policy();
        for name in self.upstreams.keys() {
            if policy
                .catalog()
                .lookup(name)
                .is_none_or(|id| policy.catalog().server(id).name() != name)
            {
                return Err(ConfigError::new(
                    format!("mcp_servers.{name}"),
                    "an upstream must be a server of the catalog, by its name",
                ));
            }
        }
        let mut clients = HashMap::new();
        for (name, spec) in &self.upstreams {
            if matches!(spec.tls.verify, Verify::Off) {
                crate::decision_events::warn(&format!(
                    "upstream {name}: ssl_verify is false, its certificate is not checked"
                ));
            }
            let client = upstream::http_clients::UpstreamHttp::new(&spec.tls)
                .map_err(|e| ConfigError::new(format!("mcp_servers.{name}"), e))?;
            clients.insert(name.clone(), client);
        }
        let tokens = self
            .upstreams
            .iter()
            .filter(|(_, s)| s.oauth2.is_some())
            .map(|(n, _)| (n.clone(), upstream::spec::TokenCache::default()))
            .collect();
        let recorder: Option<Arc<dyn crate::metrics::Metrics>> =
            match (&self.metrics, self.extra_metrics) {
                (Some(m), Some(extra)) => Some(Arc::new((Arc::clone(&m.recorder), extra.0))),
                (Some(m), None) => Some(Arc::clone(&m.recorder) as _),
                (None, extra) => extra.map(|e| e.0),
            };
        // A recorder the gatekeeper came with goes on measuring, beside the gateway's.
        let gatekeeper = match (recorder, self.gatekeeper.metrics().cloned()) {
            (Some(recorder), Some(own)) => self.gatekeeper.with_metrics(Arc::new((own, recorder))),
            (Some(recorder), None) => self.gatekeeper.with_metrics(recorder),
            (None, _) => self.gatekeeper,
        };
        Ok(Gateway {
            shared: Arc::new(GatewayState {
                gatekeeper,
                upstreams: self.upstreams,
                tokens,
                clients,
                pool: upstream::pool::Pool::default(),
                client_auth_header: self.client_auth_header,
                registry: self.registry,
                allowed_hosts: self.allowed_hosts,
                health: std::sync::Mutex::default(),
                parked: upstream::parked::Parked::default(),
                input_states: caller::input_state::InputStates::default(),
                list_ttl: self.list_ttl,
                merged_lists: caller::list_cache::MergedLists::default(),
                list_counts: Arc::default(),
                listeners: Arc::default(),
                tasks: caller::task_ids::TaskIds::default(),
                downstream: std::sync::Mutex::default(),
                #[cfg(feature = "oauth")]
                oauth: self.oauth,
                reports: self.reports,
                metrics: self.metrics,
                cors_origins: self.cors_origins,
            }),
        })
    }
}

impl Gateway {
    /// A gateway over no upstreams yet; add them with [`GatewayBuilder::upstream`].
    #[must_use]
    pub fn builder(gatekeeper: Gatekeeper) -> GatewayBuilder {
        GatewayBuilder {
            gatekeeper,
            upstreams: HashMap::new(),
            client_auth_header: HeaderName::from_static("x-mcp-auth"),
            registry: false,
            allowed_hosts: None,
            list_ttl: DEFAULT_LIST_TTL,
            #[cfg(feature = "oauth")]
            oauth: None,
            reports: Vec::new(),
            metrics: None,
            extra_metrics: None,
            cors_origins: Vec::new(),
        }
    }

    /// The OAuth resolver the gateway was built with (from `general_settings.oauth`, or
    /// [`GatewayBuilder::oauth`]): give it to the identity layer of the router's stack.
    #[cfg(feature = "oauth")]
    #[must_use]
    pub fn oauth(&self) -> Option<&crate::oauth::OAuth> {
        self.shared.oauth.as_ref()
    }

    /// A builder with every server of `config` as an upstream, and its `general_settings`;
    /// with the `otel` feature, spans and metrics go to the OpenTelemetry collector the
    /// standard environment variables name (see
    /// [`OtlpTraces::from_env`](crate::otel::OtlpTraces::from_env) and
    /// [`OtlpMetrics::from_env`](crate::otel::OtlpMetrics::from_env)).
    ///
    /// # Errors
    ///
    /// Upstream settings that cannot be used (bad header names or values, missing fields,
    /// unset environment variables), with their path; OpenTelemetry variables that cannot be
    /// used.
    pub fn from_config(
        config: &Config,
        gatekeeper: Gatekeeper,
    ) -> Result<GatewayBuilder, ConfigError> {
        let settings = &config.general_settings;
        let mut b = Self::builder(gatekeeper).registry(settings.enable_mcp_registry);
        let metrics = settings.metrics.clone().unwrap_or_default();
        if metrics.enabled {
            let mut recorder = crate::metrics::PrometheusMetrics::new();
            if let Some(max) = metrics.max_names {
                recorder = recorder.max_names(max);
            }
            let recorder = Arc::new(recorder);
            b = b.metrics(Arc::clone(&recorder), metrics.public);
            // Metrics to an OpenTelemetry collector too, when the standard variables name one.
            #[cfg(feature = "otel")]
            if let (Some(exporter), Some(endpoint)) = (
                crate::otel::OtlpMetrics::from_env(recorder)?,
                b.metrics.as_mut(),
            ) {
                endpoint.exporter = Some(Arc::new(exporter));
            }
        }
        // Spans to an OpenTelemetry collector, when the standard variables name one.
        #[cfg(feature = "otel")]
        if let Some(traces) = crate::otel::OtlpTraces::from_env()? {
            b = b.extra_metrics(Arc::new(traces));
        }
        if let Some(seconds) = settings.mcp_list_cache_ttl_seconds {
            b = b.list_cache_ttl(std::time::Duration::from_secs(seconds));
        }
        if let Some(oauth) = &settings.oauth {
            #[cfg(feature = "oauth")]
            {
                b = b.oauth(crate::oauth::OAuth::from_config(oauth)?);
            }
            #[cfg(not(feature = "oauth"))]
            {
                let _ = oauth;
                return Err(ConfigError::new(
                    "general_settings.oauth",
                    "accepting OAuth tokens needs the `oauth` feature of mcp-gatekeeper",
                ));
            }
        }
        if !settings.cors_allowed_origins.is_empty() {
            let origins = settings
                .cors_allowed_origins
                .iter()
                .map(|o| {
                    http::HeaderValue::from_str(o.trim_end_matches('/')).map_err(|_| {
                        ConfigError::new(
                            "general_settings.cors_allowed_origins",
                            format!("{o:?} is not an origin"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            b = b.cors_origins(origins);
        }
        if let Some(h) = &config.general_settings.mcp_client_side_auth_header_name {
            let name = HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).map_err(|_| {
                ConfigError::new(
                    "general_settings.mcp_client_side_auth_header_name",
                    "not a valid header name",
                )
            })?;
            b = b.client_auth_header(name);
        }
        let verify = config
            .general_settings
            .ssl_verify
            .as_ref()
            .map(|v| crate::tls::verify_setting(v, "general_settings.ssl_verify"))
            .transpose()?;
        for (name, server) in config.mcp_servers.iter() {
            let mut spec = UpstreamSpec::from_config(name, server)?;
            if let (None, Some(verify)) = (&server.ssl_verify, &verify) {
                spec.tls.verify = verify.clone();
            }
            b = b.upstream(name, spec);
        }
        Ok(b)
    }

    /// The handle the gateway shares with its layers.
    #[must_use]
    pub fn gatekeeper(&self) -> &Gatekeeper {
        &self.shared.gatekeeper
    }

    /// A handler for one downstream session.
    #[must_use]
    pub fn handler(&self) -> GatewayHandler {
        GatewayHandler::new(Arc::clone(&self.shared))
    }

    /// The gateway as a streamable HTTP service with `config`: rmcp's, with `tools/call` and the
    /// list methods answered by the gateway itself (see [`GatewayService`]).
    #[must_use]
    pub fn service(&self, config: StreamableHttpServerConfig) -> GatewayService {
        GatewayService::new(Arc::clone(&self.shared), config)
    }

    /// The gateway behind `layer`, with every endpoint of the example gateway.
    ///
    /// The MCP endpoint is stateful (sessions, server-to-client requests relayed); REST and the
    /// legacy bridge use a stateless instance behind the same layers.
    pub fn router<R: crate::identity::ResolveIdentity, H: crate::cost::CostHook>(
        &self,
        layer: crate::stack::GatekeeperLayer<R, H>,
    ) -> axum::Router {
        surface::router(&self.shared, layer)
    }

    /// Asks every upstream for its tools, prompts and resources with the gateway's own
    /// credentials only, and indexes their bare names, so that with `tool_prefix: never` calls
    /// work before any caller has listed. Upstreams that need a caller's credentials are skipped
    /// (their names are indexed when a caller lists them).
    pub async fn refresh_names(&self) {
        use crate::engine::{NameIndex, NameKind};
        let policy = self.shared.gatekeeper.policy();
        let catalog = policy.catalog();
        let anonymous = caller::Caller::default();
        let mut index: NameIndex = (*self.shared.gatekeeper.name_index()).clone();
        for name in self.shared.upstreams.keys() {
            let Some(id) = catalog.lookup(name) else {
                continue;
            };
            let listed = self
                .shared
                .with_session(&anonymous, name, None, |peer, _| async move {
                    let tools = peer.list_all_tools().await?;
                    let prompts = peer.list_all_prompts().await.unwrap_or_default();
                    let resources = peer.list_all_resources().await.unwrap_or_default();
                    let templates = peer.list_all_resource_templates().await.unwrap_or_default();
                    Ok((tools, prompts, resources, templates))
                })
                .await;
            match listed {
                Ok((tools, prompts, resources, templates)) => {
                    self.shared.report_success(name);
                    for t in &tools {
                        index.insert(NameKind::Tool, &t.name, id);
                    }
                    for p in &prompts {
                        index.insert(NameKind::Prompt, &p.name, id);
                    }
                    for r in &resources {
                        index.insert(NameKind::Resource, &r.uri, id);
                    }
                    for t in &templates {
                        index.insert(NameKind::Resource, &t.uri_template, id);
                    }
                }
                Err(e) => self.shared.report_failure(name, &e),
            }
        }
        self.shared.gatekeeper.set_name_index(index);
    }

    /// How many upstream sessions are open (across all callers).
    #[must_use]
    pub fn upstream_sessions(&self) -> usize {
        self.shared.pool.len()
    }
}
