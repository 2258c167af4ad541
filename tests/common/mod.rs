//! Shared test fixtures: a real rmcp server whose tools record every execution, the policy the
//! suites share, and helpers to start servers on loopback and connect rmcp clients.
#![allow(dead_code, unreachable_pub)]
#![allow(deprecated)] // sampling is deprecated in the newest protocol; upstreams still use it

#[cfg(feature = "gateway")]
pub mod asker;
#[cfg(feature = "postgres")]
#[path = "../../examples/support/throwaway_pg.rs"]
pub mod postgres;
#[cfg(feature = "redis")]
#[path = "../../examples/support/throwaway_redis.rs"]
pub mod redis;
#[cfg(feature = "gateway")]
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, PromptMessage,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ResourceContents, Role,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Every tool execution the server performed: `name` and the JSON arguments.
#[derive(Clone, Default)]
pub struct Executions(Arc<Mutex<Vec<(String, Value)>>>);

impl Executions {
    pub fn names(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }
    pub fn all(&self) -> Vec<(String, Value)> {
        self.0.lock().unwrap().clone()
    }
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// An MCP server that offers the tools, prompts and resources it is given, echoes calls, and
/// records every execution.
#[derive(Clone)]
pub struct RecordingServer {
    pub tools: Arc<Vec<Value>>,
    pub prompts: Arc<Vec<Value>>,
    pub resources: Arc<Vec<Value>>,
    /// Resource URI templates: the resources given with a `{` in them.
    pub templates: Arc<Vec<Value>>,
    pub executions: Executions,
    /// How many handler instances (sessions, or requests when stateless) were created.
    pub sessions: Arc<std::sync::atomic::AtomicUsize>,
    /// Every initialized session: a tool named `…announce` tells them all that its lists and
    /// resources changed, as a server whose catalogue changes does.
    pub peers: Arc<Mutex<Vec<rmcp::service::Peer<RoleServer>>>>,
    /// How many calls of a `…slow` tool the client cancelled (`notifications/cancelled`).
    pub cancelled: Arc<std::sync::atomic::AtomicUsize>,
    /// Calls of a `…pause` tool (which takes 50 ms) running now, and the most ever at once.
    pub pausing: Arc<std::sync::atomic::AtomicUsize>,
    pub most_pausing: Arc<std::sync::atomic::AtomicUsize>,
}

pub fn tool(name: &str, props: &[&str]) -> Value {
    let properties: serde_json::Map<String, Value> = props
        .iter()
        .map(|p| ((*p).to_owned(), json!({"type": "string"})))
        .collect();
    json!({
        "name": name,
        "description": format!("the {name} tool"),
        "inputSchema": {"type": "object", "properties": properties, "required": props.first().map(|p| vec![*p]).unwrap_or_default()}
    })
}

impl RecordingServer {
    pub fn new(tools: Vec<Value>, prompts: &[&str], resources: &[&str]) -> Self {
        Self {
            tools: Arc::new(tools),
            prompts: Arc::new(
                prompts
                    .iter()
                    .map(|p| json!({"name": p, "description": "a prompt"}))
                    .collect(),
            ),
            resources: Arc::new(
                resources
                    .iter()
                    .filter(|r| !r.contains('{'))
                    .map(|r| json!({"uri": r, "name": r, "mimeType": "text/plain"}))
                    .collect(),
            ),
            templates: Arc::new(
                resources
                    .iter()
                    .filter(|r| r.contains('{'))
                    .map(|r| json!({"uriTemplate": r, "name": r}))
                    .collect(),
            ),
            executions: Executions::default(),
            sessions: Arc::default(),
            peers: Arc::default(),
            cancelled: Arc::default(),
            pausing: Arc::default(),
            most_pausing: Arc::default(),
        }
    }
}

impl ServerHandler for RecordingServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self
            .tools
            .iter()
            .map(|t| serde_json::from_value(t.clone()).unwrap())
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn on_initialized(&self, ctx: rmcp::service::NotificationContext<RoleServer>) {
        self.peers.lock().unwrap().push(ctx.peer);
    }

    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.executions
            .0
            .lock()
            .unwrap()
            .push((format!("subscribe:{}", request.uri), Value::Null));
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.executions
            .0
            .lock()
            .unwrap()
            .push((format!("unsubscribe:{}", request.uri), Value::Null));
        Ok(())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.clone().unwrap_or_default());
        if request.name.ends_with("announce") {
            let peers: Vec<_> = self.peers.lock().unwrap().clone();
            for peer in peers.iter().filter(|p| !p.is_transport_closed()) {
                let _ = peer.notify_tool_list_changed().await;
                let _ = peer.notify_prompt_list_changed().await;
                for r in self.resources.iter() {
                    let uri = r["uri"].as_str().unwrap_or_default().to_owned();
                    let _ = peer
                        .notify_resource_updated(
                            rmcp::model::ResourceUpdatedNotificationParam::new(uri),
                        )
                        .await;
                }
            }
        }
        if request.name.ends_with("headers") {
            // Reports the HTTP headers this server received: what a gateway forwarded.
            let parts = ctx.extensions.get::<http::request::Parts>();
            let headers: serde_json::Map<String, Value> = parts
                .map(|p| {
                    p.headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                        .collect()
                })
                .unwrap_or_default();
            self.executions
                .0
                .lock()
                .unwrap()
                .push((request.name.to_string(), args));
            return Ok(CallToolResult::success(vec![ContentBlock::text(
                Value::Object(headers).to_string(),
            )])
            .into());
        }
        if request.name.ends_with("meta") {
            let seen = meta_and_trace_headers(&ctx);
            return Ok(CallToolResult::success(vec![ContentBlock::text(seen.to_string())]).into());
        }
        if request.name.ends_with("progress") {
            // Reports progress against the caller's token, as long-running tools do.
            if let Some(token) = ctx.meta.get_progress_token() {
                for step in [1.0, 2.0] {
                    let _ = ctx
                        .peer
                        .notify_progress(
                            rmcp::model::ProgressNotificationParam::new(token.clone(), step)
                                .with_total(2.0),
                        )
                        .await;
                }
            }
        }
        if request.name.ends_with("sample") && self.tools.iter().any(|t| t["name"] == *request.name)
        {
            // Asks its client to sample, in the middle of the call, and returns the answer.
            let asked = rmcp::model::CreateMessageRequestParams::new(
                vec![rmcp::model::SamplingMessage::user_text("what now?")],
                16,
            );
            let answer =
                ctx.peer.create_message(asked).await.map_err(|e| {
                    ErrorData::internal_error(format!("sampling failed: {e}"), None)
                })?;
            let text = serde_json::to_value(&answer.message).unwrap()["content"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.executions
                .0
                .lock()
                .unwrap()
                .push((request.name.to_string(), args));
            return Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                "sampled: {text}"
            ))])
            .into());
        }
        if request.name.ends_with("slow") {
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
                () = ctx.ct.cancelled() => {
                    self.cancelled
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return Err(ErrorData::internal_error("cancelled", None));
                }
            }
        }
        if request.name.ends_with("pause") {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.pausing.fetch_add(1, SeqCst) + 1;
            self.most_pausing.fetch_max(now, SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            self.pausing.fetch_sub(1, SeqCst);
        }
        if !self.tools.iter().any(|t| t["name"] == *request.name) {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {}", request.name),
                None,
            ));
        }
        self.executions
            .0
            .lock()
            .unwrap()
            .push((request.name.to_string(), args.clone()));
        let text = format!("ran {} with {}", request.name, args);
        if request.name.ends_with("fail") {
            return Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into());
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let prompts = self
            .prompts
            .iter()
            .map(|p| serde_json::from_value(p.clone()).unwrap())
            .collect();
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if !self.prompts.iter().any(|p| p["name"] == *request.name) {
            return Err(ErrorData::invalid_params("unknown prompt", None));
        }
        self.executions
            .0
            .lock()
            .unwrap()
            .push((format!("prompt:{}", request.name), Value::Null));
        let text = if request.name.ends_with("meta") {
            meta_and_trace_headers(&ctx).to_string()
        } else {
            "hello".to_owned()
        };
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]).into())
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources = self
            .resources
            .iter()
            .map(|r| serde_json::from_value(r.clone()).unwrap())
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let templates = self
            .templates
            .iter()
            .map(|t| serde_json::from_value(t.clone()).unwrap())
            .collect();
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.executions
            .0
            .lock()
            .unwrap()
            .push((format!("read:{}", request.uri), Value::Null));
        Ok(ReadResourceResult::new(vec![ResourceContents::text("contents", request.uri)]).into())
    }
}

/// The four ways rmcp's streamable HTTP server can answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    StatefulSse,
    StatefulJson,
    StatelessSse,
    StatelessJson,
}

impl Mode {
    pub const ALL: [Mode; 4] = [
        Mode::StatefulSse,
        Mode::StatefulJson,
        Mode::StatelessSse,
        Mode::StatelessJson,
    ];
    pub fn config(self, ct: &CancellationToken) -> StreamableHttpServerConfig {
        let mut c = StreamableHttpServerConfig::default();
        c.legacy_session_mode = matches!(self, Mode::StatefulSse | Mode::StatefulJson);
        c.json_response = matches!(self, Mode::StatefulJson | Mode::StatelessJson);
        c.cancellation_token = ct.clone();
        c.sse_keep_alive = None;
        c
    }
}

pub fn mcp_service(
    server: RecordingServer,
    mode: Mode,
    ct: &CancellationToken,
) -> StreamableHttpService<RecordingServer, LocalSessionManager> {
    StreamableHttpService::new(
        move || {
            server
                .sessions
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(server.clone())
        },
        Default::default(),
        mode.config(ct),
    )
}

/// A running loopback server; stops when dropped.
pub struct Running {
    pub addr: SocketAddr,
    ct: CancellationToken,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.ct.cancel();
    }
}

/// Serves an axum router on 127.0.0.1 with TCP_NODELAY.
pub async fn serve(router: axum::Router, ct: CancellationToken) -> Running {
    serve_on("127.0.0.1:0".parse().unwrap(), router, ct).await
}

/// [`serve`] on a given address (to restart a server where it was).
pub async fn serve_on(addr: SocketAddr, router: axum::Router, ct: CancellationToken) -> Running {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    // rmcp's SSE replies stall ~40 ms without TCP_NODELAY.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let stop = ct.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled_owned().await })
            .await;
    });
    Running { addr, ct }
}

pub type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// A plain HTTP client. With the `gateway` feature reqwest carries rustls without a crypto
/// provider of its own (the gateway brings ring to every client it builds); a client built
/// with `reqwest::Client::new()` needs a process default, so ring is installed first.
pub fn http_client() -> reqwest::Client {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Connects rmcp's client with extra headers.
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Client, String> {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let mut map = HashMap::new();
    for (k, v) in headers {
        map.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(map);
    let transport = StreamableHttpClientTransport::with_client(http_client(), config);
    tokio::time::timeout(std::time::Duration::from_secs(10), ().serve(transport))
        .await
        .map_err(|_| "timed out connecting".to_owned())?
        .map_err(|e| e.to_string())
}

pub fn args(v: Value) -> rmcp::model::JsonObject {
    v.as_object().cloned().unwrap()
}

/// Tool names a client can list.
pub async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

/// Calls a tool; `Ok(text)` for a result (with `isError` marked as `Err`), `Err` for errors.
pub async fn call(client: &Client, name: &str, arguments: Value) -> Result<String, String> {
    let mut params = CallToolRequestParams::new(name.to_owned());
    if let Value::Object(map) = arguments {
        params = params.with_arguments(map);
    }
    match client.call_tool(params).await {
        Ok(result) => {
            let text = result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect::<Vec<_>>()
                .join("\n");
            if result.is_error == Some(true) {
                Err(text)
            } else {
                Ok(text)
            }
        }
        Err(e) => Err(format!("service error: {e}")),
    }
}

/// A raw streamable-HTTP POST as an MCP client sends it (protocol 2025-06-18), with a key and,
/// once initialised, a session.
pub fn mcp_post(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    session: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut r = http
        .post(url)
        .header("x-litellm-api-key", key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(s) = session {
        r = r.header("mcp-session-id", s);
    }
    r
}

/// The JSON-RPC messages of a reply, JSON or event stream.
pub fn messages(content_type: &str, body: &str) -> Vec<Value> {
    if content_type.starts_with("application/json") {
        return vec![serde_json::from_str(body).unwrap()];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .collect()
}

/// Reads a legacy `/sse` stream until it announces its message endpoint; the endpoint's path.
pub async fn legacy_endpoint(stream: &mut reqwest::Response) -> String {
    let mut buf = String::new();
    loop {
        buf.push_str(&String::from_utf8_lossy(
            &stream.chunk().await.unwrap().unwrap(),
        ));
        if let Some(line) = buf.lines().find(|l| l.starts_with("data: /message")) {
            return line.trim_start_matches("data: ").to_owned();
        }
    }
}

/// Reads JSON-RPC messages from an event stream until `until` holds for one; all read so far.
pub async fn read_until(
    reply: &mut reqwest::Response,
    buf: &mut String,
    until: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(v) = line
                    .strip_prefix("data:")
                    .and_then(|d| serde_json::from_str::<Value>(d.trim()).ok())
                {
                    let done = until(&v);
                    seen.push(v);
                    if done {
                        return seen;
                    }
                }
            }
        }
        match tokio::time::timeout(std::time::Duration::from_secs(10), reply.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            _ => return seen,
        }
    }
}

/// A 2026-07-28 request: the version in `_meta` and in its header, the method (and name) in
/// theirs.
pub fn modern(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    id: u64,
    method: &str,
    params: Value,
) -> reqwest::RequestBuilder {
    modern_with(http, url, key, id, method, params, json!({}))
}

/// [`modern`], declaring `capabilities`.
pub fn modern_with(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    id: u64,
    method: &str,
    mut params: Value,
    capabilities: Value,
) -> reqwest::RequestBuilder {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "modern-test", "version": "0"},
    });
    // Keys the caller put in `_meta` itself (a log level, say) go in beside these.
    if let Some(own) = params["_meta"].as_object() {
        for (k, v) in own {
            meta[k] = v.clone();
        }
    }
    params["_meta"] = meta;
    let mut r = http
        .post(url)
        .header("x-litellm-api-key", key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    let named = ["name", "uri", "taskId"]
        .iter()
        .find_map(|k| params[k].as_str());
    if let Some(name) = named {
        r = r.header("mcp-name", name);
    }
    r.json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
}

/// A legacy HTTP+SSE MCP server (`GET /sse`, `POST /messages`) with one tool, `legacy_echo`;
/// the counter counts its calls.
#[cfg(feature = "gateway")]
pub fn legacy_sse_router() -> (axum::Router, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::extract::{Query, State};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::{Mutex, mpsc};
    type Sessions = Arc<Mutex<HashMap<String, mpsc::Sender<String>>>>;
    let sessions: Sessions = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    async fn open(
        State((sessions, _)): State<(Sessions, Arc<AtomicUsize>)>,
    ) -> axum::response::Response {
        let (tx, rx) = mpsc::channel::<String>(16);
        let id = format!("s{}", sessions.lock().await.len());
        sessions.lock().await.insert(id.clone(), tx);
        let first = futures_util::stream::once(async move {
            format!("event: endpoint\ndata: /messages?sessionId={id}\n\n")
        });
        let rest = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|m| (format!("event: message\ndata: {m}\n\n"), rx))
        });
        use futures_util::StreamExt;
        let body =
            axum::body::Body::from_stream(first.chain(rest).map(Ok::<_, std::convert::Infallible>));
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .unwrap()
    }
    async fn message(
        State((sessions, calls)): State<(Sessions, Arc<AtomicUsize>)>,
        Query(q): Query<HashMap<String, String>>,
        body: axum::body::Bytes,
    ) -> axum::http::StatusCode {
        let msg: Value = serde_json::from_slice(&body).unwrap();
        let Some(tx) = sessions.lock().await.get(&q["sessionId"]).cloned() else {
            return axum::http::StatusCode::NOT_FOUND;
        };
        let id = msg.get("id").cloned();
        let result = match msg["method"].as_str() {
            Some("initialize") => {
                json!({"protocolVersion": "2024-11-05", "capabilities": {"tools": {}}, "serverInfo": {"name": "legacy", "version": "0"}})
            }
            Some("tools/list") => {
                json!({"tools": [{"name": "legacy_echo", "inputSchema": {"type": "object"}}]})
            }
            Some("tools/call") => {
                calls.fetch_add(1, Ordering::SeqCst);
                json!({"content": [{"type": "text", "text": format!("legacy says {}", msg["params"]["arguments"]["message"])}]})
            }
            _ => return axum::http::StatusCode::ACCEPTED,
        };
        if let Some(id) = id {
            tx.send(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
                .await
                .unwrap();
        }
        axum::http::StatusCode::ACCEPTED
    }
    let router = axum::Router::new()
        .route("/sse", axum::routing::get(open))
        .route("/messages", axum::routing::post(message))
        .with_state((sessions, Arc::clone(&calls)));
    (router, calls)
}

/// The gateway of a JSON config, serving its router (the layers in front) on loopback.
#[cfg(feature = "gateway")]
pub async fn gateway_from_json(doc: &str) -> (Running, mcp_gatekeeper::gateway::Gateway) {
    use mcp_gatekeeper::Gatekeeper;
    use mcp_gatekeeper::config::Config;
    use mcp_gatekeeper::gateway::Gateway;
    let config = Config::from_json_str(doc).unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap());
    let gateway = Gateway::from_config(&config, gk).unwrap().build().unwrap();
    (serve_gateway(&gateway).await, gateway)
}

/// Serves `gateway` behind the layers of its own gatekeeper, on loopback.
#[cfg(feature = "gateway")]
pub async fn serve_gateway(gateway: &mcp_gatekeeper::gateway::Gateway) -> Running {
    serve(
        gateway.router(gateway.gatekeeper().layer()),
        CancellationToken::new(),
    )
    .await
}

/// Serves an rmcp server handler over streamable HTTP at `/mcp` (stateful, event-stream
/// replies), one clone of `handler` per session.
pub async fn serve_handler<H>(handler: H) -> Running
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    let ct = CancellationToken::new();
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        Mode::StatefulSse.config(&ct),
    );
    serve(axum::Router::new().nest_service("/mcp", service), ct).await
}

/// `/health` of a gateway, as the holder of `key` (or no one) sees it.
pub async fn health_as(gw: &Running, key: Option<&str>) -> Value {
    let mut request = http_client().get(gw.url("/health"));
    if let Some(key) = key {
        request = request.header("x-litellm-api-key", key);
    }
    request.send().await.unwrap().json().await.unwrap()
}

/// rmcp's streamable-HTTP client transport to `url`, sending the gateway key `key`.
pub fn keyed_transport(
    url: &str,
    key: &'static str,
) -> rmcp::transport::StreamableHttpClientTransport<reqwest::Client> {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let mut headers = std::collections::HashMap::new();
    headers.insert(
        http::HeaderName::from_static("x-litellm-api-key"),
        http::HeaderValue::from_static(key),
    );
    StreamableHttpClientTransport::with_client(
        http_client(),
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    )
}

/// Opens an MCP session on `url` with `key` by hand (protocol 2025-06-18, declaring sampling):
/// its id.
/// The `_meta` a request of `ctx` carried and the trace context headers of its HTTP request:
/// what a gateway passed on (`{"meta": …, "headers": …}`).
fn meta_and_trace_headers(ctx: &RequestContext<RoleServer>) -> Value {
    let meta = serde_json::to_value(&ctx.meta).unwrap_or_default();
    let parts = ctx.extensions.get::<http::request::Parts>();
    let headers: serde_json::Map<String, Value> = ["traceparent", "tracestate", "baggage"]
        .into_iter()
        .filter_map(|name| {
            let value = parts?.headers.get(name)?.to_str().ok()?;
            Some((name.to_owned(), json!(value)))
        })
        .collect();
    json!({"meta": meta, "headers": headers})
}

/// What an upstream's `…meta` tool or prompt reported (`{"meta": …, "headers": …}`), read
/// from the gateway's answer `response`.
pub async fn meta_seen(response: reqwest::Response) -> Value {
    let ct = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let reply = messages(&ct, &response.text().await.unwrap())
        .pop()
        .unwrap();
    // A tool's text, or a prompt's first message's.
    let text = reply["result"]["content"][0]["text"]
        .as_str()
        .or_else(|| reply["result"]["messages"][0]["content"]["text"].as_str())
        .unwrap_or_else(|| panic!("a tool or prompt result: {reply}"));
    serde_json::from_str(text).unwrap()
}

pub async fn raw_session(http: &reqwest::Client, url: &str, key: &str) -> String {
    let init = mcp_post(http, url, key, None)
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"0"}}}))
        .send()
        .await
        .unwrap();
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.text().await;
    let r = mcp_post(http, url, key, Some(&sid))
        .json(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    sid
}

/// Polls `check` every 10 ms until it holds, for at most `limit`; how long it took.
pub async fn within<F, Fut>(limit: std::time::Duration, mut check: F) -> Option<std::time::Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() <= limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    None
}

/// Serves `server` at `/mcp` on loopback (stateless, JSON replies).
pub async fn serve_recording(server: &RecordingServer) -> Running {
    let ct = CancellationToken::new();
    serve(
        axum::Router::new().nest_service(
            "/mcp",
            mcp_service(server.clone(), Mode::StatelessJson, &ct),
        ),
        ct,
    )
    .await
}

/// Runs `statements` on `db`, failing the test with the database's error and the SQL.
#[cfg(feature = "postgres")]
pub async fn sql(db: &mcp_gatekeeper::postgres::Database, statements: &str) {
    db.client()
        .await
        .unwrap()
        .batch_execute(statements)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{statements}"));
}
