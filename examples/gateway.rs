//! The example gateway: every configured MCP server behind one governed endpoint.
//!
//! ```text
//! cargo run --release --features gateway --example gateway -- [--config FILE] [--bind ADDR] [--spend-log FILE]
//! ```
//! Without `--config` it serves an embedded demo: two in-process MCP servers (`github`, `wiki`)
//! and keys for two teams, and prints curl lines to try.

#[path = "support/demo_servers.rs"]
mod demo_servers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use axum::serve::ListenerExt;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::cost::JsonlSink;
use mcp_gatekeeper::engine::ToolPrefix;
use mcp_gatekeeper::gateway::{Gateway, UpstreamSpec};

const DEMO: &str = include_str!("support/demo.json");

const USAGE: &str = "usage: gateway [--config FILE] [--bind 127.0.0.1:4000] [--spend-log FILE]";

struct Args {
    config: Option<PathBuf>,
    bind: SocketAddr,
    spend_log: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: None,
        bind: ([127, 0, 0, 1], 4000).into(),
        spend_log: None,
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
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn build(args: &Args) -> Result<Gateway, String> {
    let (config, demo) = match &args.config {
        Some(path) => (Config::from_path(path).map_err(|e| e.to_string())?, false),
        None => (
            Config::from_json_str(DEMO).map_err(|e| format!("embedded demo: {e}"))?,
            true,
        ),
    };
    let policy = config.policy().map_err(|e| e.to_string())?;
    let gatekeeper = Gatekeeper::new(policy);
    let mut builder = Gateway::from_config(&config, gatekeeper).map_err(|e| e.to_string())?;
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
    builder.build().map_err(|e| e.to_string())
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
    let gateway = match build(&args) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("gateway: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let mut layer = gateway.gatekeeper().layer();
    if let Some(path) = &args.spend_log {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(file) => layer = layer.spend_sink(JsonlSink::new(file)),
            Err(e) => {
                eprintln!("gateway: cannot open the spend log {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
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
    let router = gateway.router(layer);
    let listener = match tokio::net::TcpListener::bind(args.bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gateway: cannot listen on {}: {e}", args.bind);
            return ExitCode::from(1);
        }
    };
    let addr = listener.local_addr().expect("bound");
    // rmcp's SSE replies stall ~40 ms without TCP_NODELAY.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    println!("mcp-gatekeeper gateway listening on http://{addr}/mcp");
    if args.config.is_none() {
        println!("{}", curl_lines(&format!("http://{addr}")));
    }
    // Ctrl-C or SIGTERM: stop accepting, give requests in flight a few seconds (event streams
    // never end by themselves), then exit; stdio upstreams are killed as the gateway drops.
    let stop = Arc::new(tokio::sync::Notify::new());
    let served = axum::serve(listener, router).with_graceful_shutdown({
        let stop = stop.clone();
        async move { stop.notified().await }
    });
    let served = tokio::select! {
        served = served => served,
        () = async {
            shutdown_signal().await;
            stop.notify_one();
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        } => Ok(()),
    };
    drop(gateway);
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::from(1)
        }
    }
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
