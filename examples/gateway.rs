//! The example gateway: every configured MCP server behind one governed endpoint.
//!
//! ```text
//! cargo run --release --features gateway --example gateway -- [--config FILE] [--bind ADDR] [--spend-log FILE] [--tls-cert FILE --tls-key FILE]
//! ```
//! Without `--config` it serves an embedded demo: two in-process MCP servers (`github`, `wiki`)
//! and keys for two teams, and prints curl lines to try.

#[path = "support/demo_servers.rs"]
mod demo_servers;
#[path = "support/deployment.rs"]
mod deployment;
#[path = "support/tls_listener.rs"]
mod tls_listener;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use axum::response::IntoResponse;
use axum::serve::ListenerExt;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::cost::JsonlSink;
use mcp_gatekeeper::engine::ToolPrefix;
use mcp_gatekeeper::gateway::{Gateway, UpstreamSpec};
use mcp_gatekeeper::identity::{IdentityLayer, SessionBindings};
use mcp_gatekeeper::rejection::Rejection;
use tower::ServiceExt;

const DEMO: &str = include_str!("support/demo.json");

const USAGE: &str = "usage: gateway [--config FILE] [--bind 127.0.0.1:4000] [--spend-log FILE] [--tls-cert FILE --tls-key FILE]";

struct Args {
    config: Option<PathBuf>,
    bind: SocketAddr,
    spend_log: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: None,
        bind: ([127, 0, 0, 1], 4000).into(),
        spend_log: None,
        tls_cert: None,
        tls_key: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--config" => args.config = Some(value("--config")?.into()),
            "--bind" => {
                let v = value("--bind")?;
                args.bind = v
                    .parse()
                    .map_err(|_| format!("--bind: {v:?} is not an address like 127.0.0.1:4000"))?;
            }
            "--spend-log" => args.spend_log = Some(value("--spend-log")?.into()),
            "--tls-cert" => args.tls_cert = Some(value("--tls-cert")?.into()),
            "--tls-key" => args.tls_key = Some(value("--tls-key")?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".to_owned());
    }
    Ok(args)
}

/// The configuration to serve (the file's, or the embedded demo's, then `true`), checked as far
/// as it can be without a database.
fn configuration(args: &Args) -> Result<(Config, bool), String> {
    let (config, demo) = match &args.config {
        Some(path) => (Config::from_path(path).map_err(|e| e.to_string())?, false),
        None => (
            Config::from_json_str(DEMO).map_err(|e| format!("embedded demo: {e}"))?,
            true,
        ),
    };
    let named = |e: String| match &args.config {
        Some(path) => format!("{}: {e}", path.display()),
        None => e,
    };
    config
        .general_settings
        .deployment()
        .map_err(|e| named(e.to_string()))?;
    config.catalog().map_err(|e| named(e.to_string()))?;
    Ok((config, demo))
}

async fn build(
    args: &Args,
    config: Config,
    demo: bool,
) -> Result<(Gateway, deployment::Deployment), String> {
    let deployment = deployment::setup(&config, args.config.as_deref())
        .await
        .map_err(|e| match &args.config {
            Some(path) => format!("{}: {e}", path.display()),
            None => e,
        })?;
    // With a LiteLLM database, its registered servers are served too.
    let config = deployment.served.clone().unwrap_or(config);
    let gatekeeper = deployment.gatekeeper.clone();
    let mut builder =
        Gateway::from_config(&config, gatekeeper).map_err(|e| match &args.config {
            Some(path) => format!("{}: {e}", path.display()),
            None => e.to_string(),
        })?;
    for server in unverified_upstreams(&config) {
        eprintln!(
            "gateway: warning: ssl_verify is false for upstream {server}: its certificate is not checked, so anyone on the path can pose as it"
        );
    }
    if demo {
        builder = builder
            .upstream(
                "github",
                UpstreamSpec::in_process(demo_servers::GitHub::new),
            )
            .upstream("wiki", UpstreamSpec::in_process(demo_servers::Wiki::new));
    }
    if !args.bind.ip().is_loopback() {
        // rmcp only accepts loopback Host headers unless told otherwise (DNS-rebinding guard).
        builder = builder.allowed_hosts(vec![
            args.bind.ip().to_string(),
            args.bind.to_string(),
            "localhost".into(),
        ]);
    }
    for (name, part) in &deployment.reports {
        builder = builder.health_report(name.clone(), Arc::clone(part));
    }
    let gateway = builder.build().map_err(|e| match &args.config {
        Some(path) => format!("{}: {e}", path.display()),
        None => e.to_string(),
    })?;
    Ok((gateway, deployment))
}

fn curl_lines(base: &str) -> String {
    let j = "-H 'content-type: application/json'";
    let mcp =
        "-H 'content-type: application/json' -H 'accept: application/json, text/event-stream'";
    format!(
        r#"Try it (alice: team eng, github + wiki; bob: team support, wiki only):
  curl -s -H 'x-litellm-api-key: sk-alice' {base}/mcp-rest/tools/list
  curl -s -H 'x-litellm-api-key: sk-bob'   {base}/mcp-rest/tools/list
  curl -s {j} -H 'x-litellm-api-key: sk-alice' {base}/mcp-rest/tools/call -d '{{"server_id":"github","name":"create_issue","arguments":{{"title":"Crash on start"}}}}'
  curl -s {j} -H 'x-litellm-api-key: sk-alice' {base}/mcp-rest/tools/call -d '{{"server_id":"github","name":"create_issue","arguments":{{"title":"x","labels":["bug"]}}}}'
  curl -s {j} -H 'x-litellm-api-key: sk-bob'   {base}/mcp-rest/tools/call -d '{{"server_id":"github","name":"list_issues","arguments":{{}}}}'
  curl -s -H 'x-litellm-api-key: sk-alice' {base}/v1/mcp/registry.json
  curl -s -i {base}/mcp-rest/tools/list          # no key: 401
MCP over streamable HTTP (a session: initialize, then use its id):
  SID=$(curl -s -D - -o /dev/null {mcp} -H 'x-litellm-api-key: sk-alice' {base}/mcp -d '{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"curl","version":"0"}}}}}}' | tr -d '\r' | awk -F': ' 'tolower($1)=="mcp-session-id"{{print $2}}')
  curl -s {mcp} -H 'x-litellm-api-key: sk-alice' -H "mcp-session-id: $SID" {base}/mcp -d '{{"jsonrpc":"2.0","method":"notifications/initialized"}}'
  curl -s {mcp} -H 'x-litellm-api-key: sk-alice' -H "mcp-session-id: $SID" {base}/mcp -d '{{"jsonrpc":"2.0","id":2,"method":"tools/list"}}'
  curl -s {mcp} -H 'x-litellm-api-key: sk-alice' -H "mcp-session-id: $SID" -H 'x-mcp-servers: wiki' {base}/mcp -d '{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"wiki-read_wiki_contents","arguments":{{"page":"Home"}}}}}}'"#
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gateway: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // What can be checked without a database is checked before anything listens: a bad
    // configuration exits at once.
    let (config, demo) = match configuration(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let spend_log = match &args.spend_log {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(file) => Some(JsonlSink::new(file)),
            Err(e) => {
                eprintln!("gateway: cannot open the spend log {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match tls_listener::server_config(cert, key) {
            Ok(config) => Some(config),
            Err(e) => {
                eprintln!("gateway: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let listener = match tokio::net::TcpListener::bind(args.bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gateway: cannot listen on {}: {e}", args.bind);
            return ExitCode::from(1);
        }
    };
    let style = config.settings().denial_style;
    let addr = listener.local_addr().expect("bound");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let offers = if tls.is_some() {
        " (TLS, HTTP/2 and HTTP/1.1)"
    } else {
        " (plain HTTP)"
    };
    println!("mcp-gatekeeper gateway listening on {scheme}://{addr}/mcp{offers}");
    // The stores (policy, pins, spend, audit, limits) connect in the background: until they
    // are set up, `/health` answers 503 `unavailable` and every other request the 503 of a
    // policy not loaded yet; then everything is served.
    let ready: Arc<OnceLock<Ready>> = Arc::default();
    {
        let ready = Arc::clone(&ready);
        let base = format!("{scheme}://{addr}");
        tokio::spawn(async move {
            match assemble(&args, config, demo, spend_log).await {
                Ok(assembled) => {
                    let _ = ready.set(assembled);
                    // (Whoever reads the output may have stopped: that is no reason to fail.)
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "mcp-gatekeeper gateway ready");
                    if demo {
                        let _ = writeln!(out, "{}", curl_lines(&base));
                    }
                    let _ = out.flush();
                }
                Err(e) => {
                    eprintln!("gateway: bad configuration: {e}");
                    std::process::exit(2);
                }
            }
        });
    }
    let router = axum::Router::new().fallback_service(tower::service_fn(
        move |request: axum::extract::Request| {
            let ready = Arc::clone(&ready);
            async move {
                match ready.get() {
                    Some(ready) => ready.router.clone().oneshot(request).await,
                    None => Ok(starting(&request, style)),
                }
            }
        },
    ));
    // Ctrl-C or SIGTERM: stop accepting, give requests in flight a few seconds (event streams
    // never end by themselves), then exit; stdio upstreams are killed as the gateway drops.
    let stop = Arc::new(tokio::sync::Notify::new());
    let until_stopped = {
        let stop = stop.clone();
        async move { stop.notified().await }
    };
    let served = async move {
        match tls {
            Some(config) => {
                let listener = match tls_listener::TlsListener::new(listener, config) {
                    Ok(l) => l,
                    Err(e) => return Err(e),
                };
                axum::serve(listener, router)
                    .with_graceful_shutdown(until_stopped)
                    .await
            }
            None => {
                // rmcp's SSE replies stall ~40 ms without TCP_NODELAY.
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, router)
                    .with_graceful_shutdown(until_stopped)
                    .await
            }
        }
    };
    let served = tokio::select! {
        served = served => served,
        () = async {
            shutdown_signal().await;
            stop.notify_one();
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        } => Ok(()),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::from(1)
        }
    }
}

/// The gateway once its stores are set up, and what must live as long as it.
struct Ready {
    router: axum::Router,
    _gateway: Gateway,
    _deployment: deployment::Deployment,
}

/// The answer while the stores are being set up: `/health` is `unavailable`, anything else
/// refused as it is while the policy is not loaded (503).
fn starting(
    request: &axum::extract::Request,
    style: mcp_gatekeeper::engine::DenialStyle,
) -> axum::response::Response {
    if request.uri().path() == "/health" {
        return (
            http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "unavailable"})),
        )
            .into_response();
    }
    Rejection::policy_unavailable()
        .into_response::<mcp_gatekeeper::body::Body>(style)
        .map(axum::body::Body::new)
}

/// Builds the gateway and its stack; waits for whatever must be read before anything is
/// served (a LiteLLM database's servers, stored pins).
async fn assemble(
    args: &Args,
    config: Config,
    demo: bool,
    spend_log: Option<JsonlSink<std::fs::File>>,
) -> Result<Ready, String> {
    let (gateway, deployment) = build(args, config, demo).await?;
    let mut layer = gateway.gatekeeper().layer().limit(deployment.limit.clone());
    if let Some(spend) = &deployment.spend {
        layer = layer.spend_sink(deployment::SharedSink(Arc::clone(spend)));
    }
    if let Some(sink) = spend_log {
        layer = layer.spend_sink(sink);
    }
    if gateway
        .gatekeeper()
        .policy()
        .catalog()
        .settings()
        .tool_prefix
        == ToolPrefix::Never
    {
        // Bare names are placed by an index of what each upstream offers: fill it now, so
        // clients with pinned tool names can call before anyone lists.
        let gateway = gateway.clone();
        tokio::spawn(async move { gateway.refresh_names().await });
    }
    // With `general_settings.session_secret`, session ids are signed for their caller so every
    // replica verifies them alike.
    let bindings = Arc::new(match &deployment.session_secret {
        Some(secret) => SessionBindings::signed(secret),
        None => SessionBindings::default(),
    });
    // With `general_settings.oauth`, bearer tokens are accepted besides keys.
    #[cfg(feature = "oauth")]
    let router = match gateway.oauth() {
        Some(oauth) => {
            let identity =
                IdentityLayer::with_resolver(gateway.gatekeeper().clone(), oauth.clone())
                    .session_bindings(Some(bindings));
            gateway.router(layer.identity(identity))
        }
        None => {
            let identity =
                IdentityLayer::new(gateway.gatekeeper().clone()).session_bindings(Some(bindings));
            gateway.router(layer.identity(identity))
        }
    };
    #[cfg(not(feature = "oauth"))]
    let router = {
        let identity =
            IdentityLayer::new(gateway.gatekeeper().clone()).session_bindings(Some(bindings));
        gateway.router(layer.identity(identity))
    };
    Ok(Ready {
        router,
        _gateway: gateway,
        _deployment: deployment,
    })
}

/// The configured upstreams whose certificates are not verified (`ssl_verify: false`).
fn unverified_upstreams(config: &Config) -> Vec<String> {
    use mcp_gatekeeper::config::SslVerifySetting;
    let general = config.general_settings.ssl_verify.as_ref();
    config
        .mcp_servers
        .iter()
        .filter(|(name, server)| {
            let setting = server.ssl_verify.as_ref().or(general);
            setting.is_some_and(|v| {
                v.resolve(&format!("mcp_servers.{name}.ssl_verify"))
                    .is_ok_and(|s| s == SslVerifySetting::Off)
            })
        })
        .map(|(name, _)| name.to_owned())
        .collect()
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
