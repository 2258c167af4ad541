//! Load benchmark: the overhead of the six layers and of the gateway hop, from ONE run.
//!
//! ```text
//! cargo run --release --features gateway --example loadbench             # full run
//! cargo run --release --features gateway --example loadbench -- --quick   # under a minute
//! cargo run --release --features gateway --example loadbench -- --pin     # client on CPU 0, servers on CPU 1
//! cargo run --release --features gateway --example loadbench -- --hop [--quick]   # beside nginx, with wrk
//! LOADBENCH_UPSTREAM_PROTOCOL=2025-11-25 cargo run ... -- --hop    # the gateway's upstream held to the handshake
//! cargo run --release --features gateway,otel --example loadbench -- --hop --traced   # and a gateway exporting OTLP
//! cargo run --release --features gateway,redis --example loadbench -- --limits [--quick]
//! cargo run --release --features gateway --example loadbench -- --soak 1000000
//! cargo run --release --features gateway --example loadbench -- --soak-gateway 1000000
//! cargo run --release --features gateway --example loadbench -- --serve bare   # prints READY <port>
//! cargo run --release --features gateway --example loadbench -- --drive URL [--prefixed] [--sessions]
//! ```
//! It starts four server processes on loopback (TCP_NODELAY on every socket): (a) a bare rmcp
//! `StreamableHttpService`, (b) the same service behind the six layers, (c) the gateway (with
//! the layers) in front of process (a) as its upstream, all three stateless, and (d) the same
//! gateway on a stateful endpoint, where each client worker opens a session first. It drives
//! `tools/call` and `tools/list` at concurrency 1, 8 and 32 with a fixed number of requests
//! (unique JSON-RPC ids) and prints requests/s, p50, p99, the ratios b/a, c/a and d/a, and the
//! CPU time per request of each server process (from /proc). A fifth target, (e), is the
//! stateless gateway again, in front of a second bare server that serves TLS (a CA made at
//! start, trusted through `ssl_verify`): the gateway hop over TLS beside (c). For (c), (d) and
//! (e) it also counts the connections their upstream accepted per 1,000 requests (each one a
//! TLS handshake for (e)). `--soak N` sends N requests through (b) and reports its resident
//! memory at the start, middle and end; `--soak-gateway N` does the same through (c).

#[path = "support/hop.rs"]
mod hop;
#[path = "support/limits_bench.rs"]
mod limits_bench;
#[path = "support/load.rs"]
mod load;
#[path = "support/otlp_sink.rs"]
mod otlp_sink;
#[path = "support/throwaway_redis.rs"]
mod throwaway_redis;
#[path = "support/tls_listener.rs"]
mod tls_listener;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::serve::ListenerExt;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::engine::Mount;
use mcp_gatekeeper::gateway::Gateway;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{RoleServer, ServerHandler};
use serde_json::json;
use tower::Layer;

const TOOLS: usize = 50;
use load::{KEY, Kind, Sample, clients, cpu, drive, rss_kib, us};

/// The benchmarked MCP server: 50 tools, `echo` answers at once.
#[derive(Clone)]
struct Bench {
    tools: Arc<Vec<Tool>>,
}

impl Bench {
    fn new() -> Self {
        let tools = (0..TOOLS)
            .map(|i| {
                let name = if i == 0 { "echo".to_owned() } else { format!("tool_{i}") };
                serde_json::from_value(json!({
                    "name": name,
                    "description": "A tool with a realistic description and schema for list sizes.",
                    "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}, "limit": {"type": "integer"}, "verbose": {"type": "boolean"}}, "required": ["message"]}
                }))
                .expect("a valid tool")
            })
            .collect();
        Self {
            tools: Arc::new(tools),
        }
    }
}

impl ServerHandler for Bench {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items((*self.tools).clone()))
    }
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let message = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or("");
        Ok(CallToolResult::success(vec![ContentBlock::text(message.to_owned())]).into())
    }
}

fn stateless() -> StreamableHttpServerConfig {
    let mut c = StreamableHttpServerConfig::default();
    c.legacy_session_mode = false;
    c.json_response = true;
    c.sse_keep_alive = None;
    c
}

fn bare_service() -> StreamableHttpService<Bench, LocalSessionManager> {
    let bench = Bench::new();
    StreamableHttpService::new(
        move || Ok(bench.clone()),
        Arc::new(LocalSessionManager::default()),
        stateless(),
    )
}

/// Connections the serving process accepted, read at `/_accepted`.
static ACCEPTED: OnceLock<Arc<AtomicU64>> = OnceLock::new();

fn accepted_route(router: axum::Router) -> axum::Router {
    router.route(
        "/_accepted",
        axum::routing::get(|| async {
            ACCEPTED
                .get()
                .map_or(0, |n| n.load(Ordering::Relaxed))
                .to_string()
        }),
    )
}

fn policy(server_url: &str, ca: Option<&str>) -> Config {
    // The key may use 40 of the 50 tools and only `message` on echo: filtering and the
    // allowed_params check do real work on every request.
    let allowed: Vec<String> = std::iter::once("echo".to_owned())
        .chain((1..40).map(|i| format!("tool_{i}")))
        .collect();
    Config::from_json_str(
        &json!({
            "mcp_servers": {"bench": {"url": server_url, "allowed_params": {"echo": ["message"]}, "ssl_verify": ca.unwrap_or("true"), "protocol_version": std::env::var("LOADBENCH_UPSTREAM_PROTOCOL").ok(),
                                      "mcp_info": {"mcp_server_cost_info": {"default_cost_per_query": 0.001}}}},
            "keys": [{"key": KEY, "key_alias": "bench", "team_id": "t",
                      "object_permission": {"mcp_servers": ["bench"], "mcp_tool_permissions": {"bench": allowed}}}],
            "teams": [{"team_id": "t", "organization_id": "o", "object_permission": {"mcp_servers": ["bench"]}}],
            "organizations": [{"organization_id": "o", "object_permission": {"mcp_servers": ["bench"]}}],
            // Measured unless `LOADBENCH_METRICS=off` (the gateway's default is measured).
            "general_settings": {"metrics": {"enabled": std::env::var("LOADBENCH_METRICS").map_or(true, |v| v != "off")}}
        })
        .to_string(),
    )
    .expect("a valid policy")
}

async fn serve(router: axum::Router) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::clone(ACCEPTED.get_or_init(Arc::default));
    let listener = listener.tap_io(move |tcp| {
        accepted.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
    });
    println!("READY {port}");
    axum::serve(listener, accepted_route(router))
        .await
        .expect("serve");
}

/// Serves `router` over TLS with a CA and certificate made now; prints `READY <port> <CA file>`.
async fn serve_tls(router: axum::Router) {
    let dir = std::env::temp_dir().join(format!("loadbench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("certificate");
    let (ca_file, cert_file, key_file) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_file, ca.pem()).expect("write");
    std::fs::write(&cert_file, leaf.pem()).expect("write");
    std::fs::write(&key_file, key.serialize_pem()).expect("write");
    let config = tls_listener::server_config(&cert_file, &key_file).expect("TLS config");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let listener = tls_listener::TlsListener::new(tcp, config).expect("listener");
    let _ = ACCEPTED.set(listener.accepted());
    println!("READY {port} {}", ca_file.display());
    axum::serve(listener, accepted_route(router))
        .await
        .expect("serve");
}

async fn serve_role(
    role: &str,
    upstream: Option<String>,
    ca: Option<String>,
    redis: Option<String>,
) {
    match role {
        "bare" => serve(axum::Router::new().fallback_service(bare_service())).await,
        "bare-tls" => serve_tls(axum::Router::new().fallback_service(bare_service())).await,
        "stack" => {
            let gk = Gatekeeper::new(
                policy("http://127.0.0.1/mcp", None)
                    .policy()
                    .expect("policy"),
            )
            .with_mount(Mount::Single("bench".into()));
            let stack = gk.layer().spend_sink(|_e| {}).layer(bare_service());
            serve(axum::Router::new().fallback_service(stack)).await;
        }
        "stack-limited" | "stack-redis" => {
            let gk = limits_bench::limited_gatekeeper();
            let store = limits_bench::store(redis.as_deref());
            let stack = gk
                .layer()
                .limit(limits_bench::layer(&gk, store))
                .spend_sink(|_e| {})
                .layer(bare_service());
            serve(axum::Router::new().fallback_service(stack)).await;
        }
        "gateway" | "gateway-sessions" | "gateway-tls" => {
            let sessions = role == "gateway-sessions";
            let config = policy(&upstream.expect("--upstream URL"), ca.as_deref());
            let gk = Gatekeeper::new(config.policy().expect("policy"));
            let gateway = Gateway::from_config(&config, gk)
                .expect("gateway")
                .build()
                .expect("gateway");
            let stack = gateway
                .gatekeeper()
                .layer()
                .spend_sink(|_e| {})
                .layer(gateway.service(if sessions {
                    StreamableHttpServerConfig::default()
                } else {
                    stateless()
                }));
            serve(axum::Router::new().fallback_service(stack)).await;
        }
        other => panic!("unknown role {other}"),
    }
}

struct Server {
    child: Child,
    url: String,
    /// The CA file of a server that serves TLS.
    ca: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `--pin`: the load generator on CPU 0, every server on CPU 1 (`taskset`), so the
/// client no longer competes with the servers and ratios compare server CPU alone.
static PIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn spawn(role: &str, upstream: Option<&Server>) -> Server {
    spawn_full(role, upstream, &[])
}

fn spawn_with(role: &str, extra: &[&str]) -> Server {
    spawn_full(role, None, extra)
}

fn spawn_full(role: &str, upstream: Option<&Server>, extra: &[&str]) -> Server {
    spawn_process(role, upstream, extra, &[])
}

/// A server process of `role` with `env` set besides this process's environment.
fn spawn_env(role: &str, upstream: Option<&Server>, env: &[(&str, &str)]) -> Server {
    spawn_process(role, upstream, &[], env)
}

fn spawn_process(
    role: &str,
    upstream: Option<&Server>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Server {
    let exe = std::env::current_exe().expect("exe");
    let mut cmd = if PIN.load(Ordering::Relaxed) {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(["--serve", role])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(u) = upstream {
        cmd.args(["--upstream", &u.url]);
        if let Some(ca) = &u.ca {
            cmd.args(["--ca", ca]);
        }
    }
    let mut child = cmd.spawn().expect("spawn a server process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("READY line");
    let mut ready = line
        .trim()
        .strip_prefix("READY ")
        .expect("READY <port>")
        .split(' ');
    let port = ready.next().expect("a port");
    let ca = ready.next().map(str::to_owned);
    let url = match ca {
        Some(_) => format!("https://localhost:{port}/mcp"),
        None => format!("http://127.0.0.1:{port}/mcp"),
    };
    Server { child, url, ca }
}

async fn run(quick: bool) {
    let bare = spawn("bare", None);
    let stack = spawn("stack", None);
    let gateway = spawn("gateway", Some(&bare));
    let sessions = spawn("gateway-sessions", Some(&bare));
    let bare_tls = spawn("bare-tls", None);
    let gateway_tls = spawn("gateway-tls", Some(&bare_tls));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    // Reads the upstreams' connection counters only (the TLS one's certificate is our own),
    // on a new connection each time: each read adds one to the count it reads next.
    let counter = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let requests = if quick { 2_000 } else { 20_000 };
    let rounds = if quick { 2 } else { 5 };
    // Warm every path (connections, the gateway's upstream session).
    for (url, prefixed, s) in [
        (&bare.url, false, false),
        (&stack.url, false, false),
        (&gateway.url, true, false),
        (&sessions.url, true, true),
        (&gateway_tls.url, true, false),
    ] {
        let workers = clients(&client, url, 4, s).await;
        let o = drive(&client, url, Kind::Call, &workers, 400, prefixed).await;
        assert_eq!(o.failures, 0, "warm-up against {url} failed");
        drive(&client, url, Kind::List, &workers, 100, prefixed).await;
    }
    println!(
        "{requests} requests per row, in {rounds} rounds taken in turn by the five targets; CPU is per request, in µs, of the server process(es) named; up conn: connections the upstream accepted per 1,000 requests"
    );
    println!(
        "{:<10} {:<10} {:>4} {:>10} {:>9} {:>9} {:>12} {:>14} {:>8}",
        "target",
        "method",
        "conc",
        "req/s",
        "p50 µs",
        "p99 µs",
        "cpu/req µs",
        "upstream cpu µs",
        "up conn"
    );
    for kind in [Kind::Call, Kind::List] {
        let method = if kind == Kind::Call {
            "tools/call"
        } else {
            "tools/list"
        };
        for conc in [1usize, 8, 32] {
            let targets = [
                ("a bare", &bare, false, false, None),
                ("b stack", &stack, false, false, None),
                ("c gateway", &gateway, true, false, Some(&bare)),
                ("d sessions", &sessions, true, true, Some(&bare)),
                ("e gw TLS", &gateway_tls, true, false, Some(&bare_tls)),
            ];
            let mut workers = Vec::new();
            for (_, server, _, s, _) in targets {
                workers.push(clients(&client, &server.url, conc, s).await);
            }
            // The targets take turns, a slice of the requests each, in an order that rotates
            // every round: a change in the machine's background load during the run falls on
            // all of them alike instead of on whichever row ran then.
            let mut samples: Vec<Sample> = targets.iter().map(|_| Sample::default()).collect();
            let (mut own, mut upstream) = ([Duration::ZERO; 5], [Duration::ZERO; 5]);
            let mut conns = [0u64; 5];
            for round in 0..rounds {
                for i in (0..targets.len()).map(|i| (i + round) % targets.len()) {
                    let (_, server, prefixed, _, up) = targets[i];
                    let up_cpu = || up.map_or(Duration::ZERO, |u| cpu(u.child.id()));
                    let (cpu0, up0) = (cpu(server.child.id()), up_cpu());
                    let conn0 = accepted(&counter, up).await;
                    let sample = drive(
                        &client,
                        &server.url,
                        kind,
                        &workers[i],
                        requests / rounds,
                        prefixed,
                    )
                    .await;
                    let (cpu1, up1) = (cpu(server.child.id()), up_cpu());
                    conns[i] += accepted(&counter, up).await - conn0;
                    own[i] += cpu1 - cpu0;
                    upstream[i] += up1 - up0;
                    samples[i].absorb(sample);
                }
            }
            let mut rows = Vec::new();
            for (i, sample) in samples.into_iter().enumerate() {
                let name = targets[i].0;
                let n = sample.latencies.len() as f64;
                let o = sample.outcome();
                let (upstream, conn) = if targets[i].4.is_some() {
                    (
                        format!("{:.1}", us(upstream[i]) / n),
                        // Less the counter's own connection, one per stretch.
                        format!(
                            "{:.1}",
                            conns[i].saturating_sub(rounds as u64) as f64 * 1000.0 / n
                        ),
                    )
                } else {
                    ("-".into(), "-".into())
                };
                println!(
                    "{:<10} {:<10} {:>4} {:>10.0} {:>9.1} {:>9.1} {:>12.1} {:>14} {:>8}{}",
                    name,
                    method,
                    conc,
                    o.rps,
                    us(o.p50),
                    us(o.p99),
                    us(own[i]) / n,
                    upstream,
                    conn,
                    if o.failures > 0 {
                        format!("  ({} failed)", o.failures)
                    } else {
                        String::new()
                    }
                );
                rows.push(o);
            }
            println!(
                "{:<10} {:<10} {:>4} b/a {:.2}  c/a {:.2}  d/a {:.2}  e/c {:.2}  p50 added: b {:+.1} µs, c {:+.1} µs, e over c {:+.1} µs",
                "ratios",
                method,
                conc,
                rows[1].rps / rows[0].rps,
                rows[2].rps / rows[0].rps,
                rows[3].rps / rows[0].rps,
                rows[4].rps / rows[2].rps,
                us(rows[1].p50) - us(rows[0].p50),
                us(rows[2].p50) - us(rows[0].p50),
                us(rows[4].p50) - us(rows[2].p50)
            );
        }
    }
}

/// `--limits`: the six layers without limits, with five limits in process, and in Redis.
async fn limits(quick: bool) {
    let redis = throwaway_redis::TestRedis::start("loadbench --limits").expect("redis-server");
    let redis_pid = redis.pid();
    let plain = spawn("stack", None);
    let local = spawn("stack-limited", None);
    let shared = spawn_with("stack-redis", &["--redis", &redis.url()]);
    let targets = [
        limits_bench::Target {
            name: "b no limits",
            url: &plain.url,
            pid: plain.child.id(),
            helper: None,
        },
        limits_bench::Target {
            name: "l in process",
            url: &local.url,
            pid: local.child.id(),
            helper: None,
        },
        limits_bench::Target {
            name: "r redis",
            url: &shared.url,
            pid: shared.child.id(),
            helper: Some(redis_pid),
        },
    ];
    limits_bench::run(&targets, quick).await;
}

/// The connections `upstream` has accepted so far (0 without one).
async fn accepted(counter: &reqwest::Client, upstream: Option<&Server>) -> u64 {
    let Some(up) = upstream else {
        return 0;
    };
    let url = up.url.replace("/mcp", "/_accepted");
    let read = async { counter.get(&url).send().await?.text().await };
    read.await
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .expect("the upstream's connection count")
}

/// `n` calls through the six layers (`gateway` false) or through the gateway in front of a
/// bare server, with the resident memory of that process at the start, middle and end.
async fn soak(n: usize, gateway: bool) {
    let upstream = gateway.then(|| spawn("bare", None));
    let stack = match &upstream {
        Some(bare) => spawn("gateway", Some(bare)),
        None => spawn("stack", None),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let pid = stack.child.id();
    let workers = clients(&client, &stack.url, 8, false).await;
    drive(&client, &stack.url, Kind::Call, &workers, 1_000, gateway).await;
    let start = rss_kib(pid);
    let half = n / 2;
    let o1 = drive(&client, &stack.url, Kind::Call, &workers, half, gateway)
        .await
        .outcome();
    let middle = rss_kib(pid);
    let o2 = drive(&client, &stack.url, Kind::Call, &workers, n - half, gateway)
        .await
        .outcome();
    let end = rss_kib(pid);
    let through = if gateway {
        "the gateway (with its layers)"
    } else {
        "the six layers"
    };
    println!("soak: {n} tools/call through {through} at concurrency 8");
    println!(
        "resident memory of that process: start {start} KiB, middle {middle} KiB, end {end} KiB"
    );
    println!(
        "failures: {}; req/s {:.0} then {:.0}",
        o1.failures + o2.failures,
        o1.rps,
        o2.rps
    );
    if o1.failures + o2.failures > 0 {
        eprintln!("soak: some calls failed; the memory figures above do not stand for a soak");
        std::process::exit(1);
    }
}

fn main() {
    // reqwest carries rustls without a crypto provider under the gateway feature; this
    // program's own load clients use ring, as the gateway does.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.iter().any(|a| a == "--pin") {
        // Before the runtime starts: its threads inherit the main thread's CPU.
        let pinned = Command::new("taskset")
            .args(["-p", "-c", "0", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            pinned,
            "--pin needs `taskset` (util-linux) and at least two CPUs"
        );
        PIN.store(true, Ordering::Relaxed);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(role) = value("--serve") {
        rt.block_on(serve_role(
            &role,
            value("--upstream"),
            value("--ca"),
            value("--redis"),
        ));
    } else if args.iter().any(|a| a == "--hop") {
        // What the run needs is checked before any server starts: leaving ends the process
        // without dropping (and so stopping) the servers.
        if let Err(why) = hop::tools() {
            eprintln!("SKIPPED: the hop benchmark needs nginx and wrk: {why}");
            std::process::exit(2);
        }
        let traced = args.iter().any(|a| a == "--traced");
        if traced && !cfg!(feature = "otel") {
            eprintln!("--traced needs the otel feature: --features gateway,otel");
            std::process::exit(2);
        }
        let bare = spawn("bare", None);
        let mut gateways = vec![("c gateway", spawn("gateway", Some(&bare)))];
        // `--traced`: beside it, the same gateway exporting its spans and metrics over OTLP
        // (sampler always on) to a collector stand-in on loopback.
        if traced {
            let sink = format!("http://{}", otlp_sink::otlp_sink());
            let env = [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.as_str()),
                ("OTEL_TRACES_SAMPLER", "always_on"),
                ("OTEL_SERVICE_NAME", "loadbench"),
            ];
            gateways.push(("d traced", spawn_env("gateway", Some(&bare), &env)));
        }
        let targets: Vec<_> = gateways
            .iter()
            .map(|(name, g)| hop::Target {
                name,
                url: g.url.clone(),
                pids: vec![g.child.id()],
                tool: "bench-echo",
            })
            .collect();
        hop::run(
            hop::Target {
                name: "a bare",
                url: bare.url.clone(),
                pids: vec![bare.child.id()],
                tool: "echo",
            },
            &targets,
            args.iter().any(|a| a == "--quick"),
        );
    } else if args.iter().any(|a| a == "--limits") {
        rt.block_on(limits(args.iter().any(|a| a == "--quick")));
    } else if let Some(url) = value("--drive") {
        // For profiling one server process: `--drive URL [--prefixed] [--sessions]` sends
        // `tools/call` at concurrency 32 until killed, printing requests/s every 20,000.
        let prefixed = args.iter().any(|a| a == "--prefixed");
        let sessions = args.iter().any(|a| a == "--sessions");
        rt.block_on(async {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .tcp_nodelay(true)
                .build()
                .expect("client");
            let workers = clients(&client, &url, 32, sessions).await;
            loop {
                let o = drive(&client, &url, Kind::Call, &workers, 20_000, prefixed)
                    .await
                    .outcome();
                println!(
                    "{:.0} req/s, p50 {:.1} µs, {} failed",
                    o.rps,
                    us(o.p50),
                    o.failures
                );
            }
        });
    } else if let Some(n) = value("--soak") {
        rt.block_on(soak(n.parse().expect("--soak N"), false));
    } else if let Some(n) = value("--soak-gateway") {
        rt.block_on(soak(n.parse().expect("--soak-gateway N"), true));
    } else {
        rt.block_on(run(args.iter().any(|a| a == "--quick")));
    }
}
