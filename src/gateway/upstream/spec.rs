//! Upstream servers: how to reach each one, with which credentials, and the connection itself.

use std::collections::HashMap;
use std::fmt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use tokio::sync::Mutex;

use super::client::Relay;
use super::legacy_sse;
use crate::config::{AuthType, ConfigError, ServerConfig, Transport};
use crate::tls::{ClientIdentity, UpstreamTls, Verify};

/// Connects one in-process upstream: hands the server its end of an in-memory duplex pipe.
pub type InProcessFactory = Arc<dyn Fn(tokio::io::DuplexStream) + Send + Sync>;

/// How the gateway reaches one upstream.
#[derive(Clone)]
pub enum UpstreamTransport {
    /// Streamable HTTP at this URL.
    Http(String),
    /// Legacy HTTP+SSE: the event stream at this URL, messages to the endpoint it announces.
    Sse(String),
    /// A child process speaking over stdin/stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Environment variables set for it.
        env: Vec<(String, String)>,
    },
    /// An rmcp server in this process (demos and tests).
    InProcess(InProcessFactory),
}

impl fmt::Debug for UpstreamTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(_) => f.write_str("Http"),
            Self::Sse(_) => f.write_str("Sse"),
            Self::Stdio { command, .. } => write!(f, "Stdio({command})"),
            Self::InProcess(_) => f.write_str("InProcess"),
        }
    }
}

/// OAuth 2 settings of one upstream.
#[derive(Clone, Default)]
pub struct OAuth2 {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Token endpoint (client-credentials flow).
    pub token_url: Option<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Set when the config names an authorization endpoint: that flow is not supported yet.
    pub authorization_url: Option<String>,
}

/// One upstream server as the gateway uses it.
#[derive(Clone)]
pub struct UpstreamSpec {
    /// How to reach it.
    pub transport: UpstreamTransport,
    /// Its own credential (`auth_type` + `auth_value`), as a header.
    pub auth: Option<(HeaderName, String)>,
    /// OAuth 2 client credentials, when `auth_type: oauth2`.
    pub oauth2: Option<OAuth2>,
    /// Caller headers copied to it.
    pub extra_headers: Vec<HeaderName>,
    /// Headers always sent (they win).
    pub static_headers: Vec<(HeaderName, HeaderValue)>,
    /// How long one request to it may take.
    pub timeout: Duration,
    /// Which protocol its sessions are opened with.
    pub protocol: UpstreamProtocol,
    /// How its certificate is verified and which certificate it is shown (`https` URLs).
    pub tls: UpstreamTls,
    /// What its last session was opened with (see [`Spoken`]), shared by the spec's clones.
    pub(crate) spoken: Arc<std::sync::atomic::AtomicU8>,
}

/// The protocol the gateway speaks to an upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamProtocol {
    /// What a client does (the default): ask with `server/discover` and speak the newest era
    /// the server offers (2026-07-28), else the initialize handshake (2025-11-25, or what the
    /// server answers with).
    #[default]
    Discover,
    /// The initialize handshake only, at 2025-11-25 (`protocol_version: "2025-11-25"`).
    Handshake,
    /// 2026-07-28 only (`protocol_version: "2026-07-28"`): a server that does not speak it is
    /// not served. With 2026-07-28 (chosen or discovered), the server's input-required results
    /// reach callers as the requests they carry (see the gateway's rounds), and its requests of
    /// its client are gone.
    Latest,
}

/// What an upstream's last session was opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Spoken {
    /// No session yet.
    Unknown = 0,
    /// The initialize handshake.
    Handshake = 1,
    /// 2026-07-28.
    Latest = 2,
}

impl UpstreamSpec {
    /// What its last session was opened with.
    pub(crate) fn spoken(&self) -> Spoken {
        match self.spoken.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Spoken::Handshake,
            2 => Spoken::Latest,
            _ => Spoken::Unknown,
        }
    }

    /// Whether its sessions are opened with the handshake, as configured or as discovered.
    pub(crate) fn speaks_handshake(&self) -> bool {
        match self.protocol {
            UpstreamProtocol::Handshake => true,
            UpstreamProtocol::Latest => false,
            UpstreamProtocol::Discover => self.spoken() == Spoken::Handshake,
        }
    }

    /// Whether it speaks 2026-07-28 (configured, or discovered on a session).
    pub(crate) fn speaks_latest(&self) -> bool {
        match self.protocol {
            UpstreamProtocol::Handshake => false,
            UpstreamProtocol::Latest => true,
            UpstreamProtocol::Discover => self.spoken() == Spoken::Latest,
        }
    }

    /// Whether it may speak 2026-07-28 (configured, or open to discovery).
    pub(crate) fn may_speak_latest(&self) -> bool {
        self.protocol != UpstreamProtocol::Handshake
    }
}

impl fmt::Debug for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSpec")
            .field("transport", &self.transport)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2")
            .field("client_id", &self.client_id)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

/// The default per-request timeout of an upstream.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl UpstreamSpec {
    /// An upstream reached over `transport`, with no credentials.
    #[must_use]
    pub fn new(transport: UpstreamTransport) -> Self {
        Self {
            transport,
            auth: None,
            oauth2: None,
            extra_headers: Vec::new(),
            static_headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            protocol: UpstreamProtocol::Discover,
            tls: UpstreamTls::default(),
            spoken: Arc::default(),
        }
    }

    /// An rmcp server running in this process, one instance per upstream session.
    pub fn in_process<S, F>(factory: F) -> Self
    where
        S: rmcp::ServerHandler,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let factory: InProcessFactory = Arc::new(move |io: tokio::io::DuplexStream| {
            let server = factory();
            tokio::spawn(async move {
                if let Ok(running) = server.serve(io).await {
                    let _ = running.waiting().await;
                }
            });
        });
        Self::new(UpstreamTransport::InProcess(factory))
    }

    /// Sets the protocol its sessions are opened with.
    #[must_use]
    pub fn protocol(mut self, protocol: UpstreamProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets the per-request timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the spec of one configured server. Its `ssl_verify`, when given, is its own;
    /// [`Gateway::from_config`](crate::gateway::Gateway::from_config) applies
    /// `general_settings.ssl_verify` to the servers without one.
    ///
    /// # Errors
    ///
    /// At the setting's path: values that are not valid headers, missing fields, unset
    /// environment variables, and PEM files that cannot be read (naming the file).
    pub fn from_config(name: &str, c: &ServerConfig) -> Result<Self, ConfigError> {
        let at = |f: &str| format!("mcp_servers.{name}.{f}");
        let transport = match c.transport {
            Transport::Http => UpstreamTransport::Http(
                c.url
                    .clone()
                    .ok_or_else(|| ConfigError::new(at("url"), "missing"))?,
            ),
            Transport::Sse => UpstreamTransport::Sse(
                c.url
                    .clone()
                    .ok_or_else(|| ConfigError::new(at("url"), "missing"))?,
            ),
            Transport::Stdio => UpstreamTransport::Stdio {
                command: c
                    .command
                    .clone()
                    .ok_or_else(|| ConfigError::new(at("command"), "missing"))?,
                args: c.args.clone(),
                env: c
                    .env
                    .iter()
                    .map(|(k, v)| {
                        v.resolve(&at(&format!("env.{k}")))
                            .map(|v| (k.to_owned(), v))
                    })
                    .collect::<Result<_, _>>()?,
            },
        };
        let value =
            |f: &str, s: &Option<crate::config::Secret>| -> Result<Option<String>, ConfigError> {
                s.as_ref().map(|s| s.resolve(&at(f))).transpose()
            };
        let auth_value = value("auth_value", &c.auth_value)?;
        let need = |v: Option<String>| {
            v.ok_or_else(|| {
                ConfigError::new(
                    at("auth_value"),
                    format!("auth_type {:?} needs auth_value", c.auth_type),
                )
            })
        };
        let auth = match c.auth_type {
            AuthType::None | AuthType::Oauth2 => None,
            AuthType::ApiKey => Some((HeaderName::from_static("x-api-key"), need(auth_value)?)),
            AuthType::BearerToken => Some((
                http::header::AUTHORIZATION,
                format!("Bearer {}", need(auth_value)?),
            )),
            AuthType::Basic => Some((
                http::header::AUTHORIZATION,
                format!("Basic {}", need(auth_value)?),
            )),
            AuthType::Token => Some((
                http::header::AUTHORIZATION,
                format!("Token {}", need(auth_value)?),
            )),
        };
        if let Some((_, v)) = &auth {
            HeaderValue::from_str(v)
                .map_err(|_| ConfigError::new(at("auth_value"), "not a valid header value"))?;
        }
        let oauth2 = match c.auth_type {
            AuthType::Oauth2 => Some(OAuth2 {
                client_id: value("client_id", &c.client_id)?.unwrap_or_default(),
                client_secret: value("client_secret", &c.client_secret)?.unwrap_or_default(),
                token_url: c.token_url.clone(),
                scopes: c.scopes.clone(),
                authorization_url: c.authorization_url.clone(),
            }),
            _ => None,
        };
        let extra_headers = c
            .extra_headers
            .iter()
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    ConfigError::new(at("extra_headers"), format!("{h:?} is not a header name"))
                })
            })
            .collect::<Result<_, _>>()?;
        let mut static_headers = Vec::new();
        for (k, v) in c.static_headers.iter() {
            let path = at(&format!("static_headers.{k}"));
            let v = v.resolve(&path)?;
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                ConfigError::new(at("static_headers"), format!("{k:?} is not a header name"))
            })?;
            let value = HeaderValue::from_str(&v)
                .map_err(|_| ConfigError::new(path, "not a valid header value"))?;
            static_headers.push((name, value));
        }
        let verify = match &c.ssl_verify {
            Some(v) => crate::tls::verify_setting(v, &at("ssl_verify"))?,
            None => Verify::Platform,
        };
        let identity = match (
            value("ssl_client_certificate", &c.ssl_client_certificate)?,
            value("ssl_client_key", &c.ssl_client_key)?,
        ) {
            (Some(cert), Some(key)) => Some(
                ClientIdentity::from_pem_files(cert.as_ref(), key.as_ref())
                    .map_err(|e| ConfigError::new(at("ssl_client_certificate"), e))?,
            ),
            (None, None) => None,
            (cert, _) => {
                let absent = if cert.is_some() {
                    "ssl_client_key"
                } else {
                    "ssl_client_certificate"
                };
                return Err(ConfigError::new(
                    at(absent),
                    "missing; mutual TLS needs both ssl_client_certificate and ssl_client_key",
                ));
            }
        };
        Ok(Self {
            transport,
            auth,
            oauth2,
            extra_headers,
            static_headers,
            tls: UpstreamTls { verify, identity },
            timeout: c.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64),
            protocol: match c.protocol_version.as_deref() {
                Some("2026-07-28") => UpstreamProtocol::Latest,
                Some(_) => UpstreamProtocol::Handshake,
                None => UpstreamProtocol::Discover,
            },
            spoken: Arc::default(),
        })
    }
}

/// A client-credentials token, cached until shortly before it expires.
#[derive(Default)]
pub(crate) struct TokenCache {
    token: Mutex<Option<(String, Instant)>>,
}

impl TokenCache {
    /// A valid access token, fetched or refreshed as needed. Never logged.
    pub(crate) async fn get(
        &self,
        http: &reqwest::Client,
        o: &OAuth2,
    ) -> Result<(String, Instant), String> {
        let mut slot = self.token.lock().await;
        if let Some((token, expires)) = slot.as_ref()
            && *expires > Instant::now() + Duration::from_secs(30)
        {
            return Ok((token.clone(), *expires));
        }
        let Some(url) = &o.token_url else {
            return Err(if o.authorization_url.is_some() {
                "this server needs the OAuth 2 authorization-code flow, which mcp-gatekeeper does not support yet".to_owned()
            } else {
                "auth_type oauth2 needs token_url (client-credentials flow)".to_owned()
            });
        };
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if !o.scopes.is_empty() {
            form.push(("scope", o.scopes.join(" ")));
        }
        let response = http
            .post(url)
            .basic_auth(&o.client_id, Some(&o.client_secret))
            .form(&form)
            .send()
            .await
            .map_err(|e| match crate::tls::failure(&e) {
                Some(tls) => format!("token request failed: {tls}"),
                None => format!("token request failed: {}", e.without_url()),
            })?;
        if !response.status().is_success() {
            return Err(format!("token endpoint answered {}", response.status()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|_| "token response unreadable".to_owned())?;
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| "token response is not JSON".to_owned())?;
        let token = body["access_token"]
            .as_str()
            .ok_or("token response has no access_token")?
            .to_owned();
        let lifetime = body["expires_in"].as_u64().unwrap_or(3600);
        let expires = Instant::now() + Duration::from_secs(lifetime);
        *slot = Some((token.clone(), expires));
        Ok((token, expires))
    }
}

/// One live session with an upstream, owned by one caller.
pub(crate) struct Connection {
    pub(crate) service: RunningService<RoleClient, Relay>,
    pub(crate) relay: Relay,
    /// Reconnect after this (an OAuth token's expiry).
    pub(crate) expires: Option<Instant>,
    /// Times the session, when metrics are on (`mcp.client.session.duration`).
    pub(crate) clock: Option<crate::metrics::SessionClock>,
}

impl Connection {
    /// The session is ending because its transport is gone.
    pub(crate) fn lost(&self) {
        if let Some(clock) = &self.clock {
            clock.failed("transport_closed");
        }
    }

    pub(crate) fn is_usable(&self) -> bool {
        !self.service.is_closed()
            && self
                .expires
                .is_none_or(|e| e > Instant::now() + Duration::from_secs(30))
    }
}

/// Opens a session with an upstream, with the headers chosen for this caller.
pub(crate) fn connect(
    spec: &UpstreamSpec,
    headers: HashMap<HeaderName, HeaderValue>,
    clients: super::http_clients::UpstreamHttp,
    relay: Relay,
) -> BoxFuture<'static, Result<RunningService<RoleClient, Relay>, String>> {
    let spec = spec.clone();
    Box::pin(async move {
        let protocol = spec.protocol;
        let spoken = Arc::clone(&spec.spoken);
        match &spec.transport {
            UpstreamTransport::Http(url) => {
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(headers);
                let session = super::session::Session::default();
                let tls_failure = Arc::default();
                let http = clients.reqwest.clone();
                let client = super::session::Recorder {
                    http: http.clone(),
                    session: session.clone(),
                    tls_failure: Arc::clone(&tls_failure),
                };
                let service = open(
                    relay.clone(),
                    StreamableHttpClientTransport::with_client(client, config),
                    protocol,
                    &spoken,
                )
                .await
                .map_err(|e| {
                    tls_failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take()
                        .unwrap_or(e)
                })?;
                // A handshake session takes calls and lists posted directly on it (see
                // `session`); a 2026-07-28 one has no session, and takes the calls of the tools
                // whose requests state nothing but their method and name (see `per_request`).
                let handshake = opened_with_handshake(&service);
                // (A URL reqwest cannot parse is left to rmcp's client, which reports it.)
                if let Ok(url) = reqwest::Url::parse(url) {
                    relay.set_route(super::session::Route {
                        http: clients,
                        url: Arc::new(super::session::Target::new(url)),
                        session,
                        latest: (!handshake).then(super::per_request::PlainTools::default),
                    });
                }
                Ok(service)
            }
            UpstreamTransport::Sse(url) => {
                let transport = legacy_sse::connect(clients.reqwest, url.clone(), headers).await?;
                open(relay, transport, protocol, &spoken).await
            }
            UpstreamTransport::Stdio { command, args, env } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args)
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .stderr(Stdio::null())
                    .kill_on_drop(true);
                let child = TokioChildProcess::new(cmd)
                    .map_err(|e| format!("cannot start {command}: {e}"))?;
                open(relay, child, protocol, &spoken).await
            }
            UpstreamTransport::InProcess(factory) => {
                let (client_end, server_end) = tokio::io::duplex(1 << 16);
                factory(server_end);
                open(relay, client_end, protocol, &spoken).await
            }
        }
    })
}

/// Whether `service`'s session was opened with the initialize handshake (else 2026-07-28).
fn opened_with_handshake(service: &RunningService<RoleClient, Relay>) -> bool {
    service
        .peer()
        .peer_info()
        .is_none_or(|info| info.protocol_version.has_initialize())
}

/// Opens the MCP session over `transport` with the lifecycle `protocol` asks for.
async fn open<T, E, A>(
    relay: Relay,
    transport: T,
    protocol: UpstreamProtocol,
    spoken: &std::sync::atomic::AtomicU8,
) -> Result<RunningService<RoleClient, Relay>, String>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    use rmcp::model::ProtocolVersion;
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt as _};
    let lifecycle = match protocol {
        UpstreamProtocol::Handshake => ClientLifecycleMode::Initialize,
        UpstreamProtocol::Latest => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        UpstreamProtocol::Discover => ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: None,
        },
    };
    let service = relay
        .clone()
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .map_err(|e| crate::tls::failure(&e).unwrap_or_else(|| e.to_string()))?;
    let era = if opened_with_handshake(&service) {
        Spoken::Handshake
    } else {
        Spoken::Latest
    };
    spoken.store(era as u8, std::sync::atomic::Ordering::Relaxed);
    // A 2026-07-28 upstream announces changes only on a listen stream.
    relay.listen_upstream(service.peer());
    Ok(service)
}
