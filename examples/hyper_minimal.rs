//! The same in-house server and layers over plain hyper, no axum.
//!
//! `cargo run --example hyper_minimal` and try the printed curl lines.

#[path = "support/inhouse.rs"]
mod inhouse;

use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::body::Body;
use mcp_gatekeeper::config::Config;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = Config::from_json_str(inhouse::POLICY)?.policy()?;
    let gatekeeper = Gatekeeper::for_server(policy, "inhouse");
    let mut config = StreamableHttpServerConfig::default();
    config.legacy_session_mode = false;
    let mcp = StreamableHttpService::new(
        || Ok(inhouse::InHouse::new()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    // hyper hands us `Request<Incoming>`; the layers rebuild bodies from bytes, so box it first.
    let service = ServiceBuilder::new()
        .map_request(|r: http::Request<hyper::body::Incoming>| r.map(Body::new))
        .layer(gatekeeper.layer())
        .service(mcp);

    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let addr = listener.local_addr()?;
    println!("in-house MCP server behind mcp-gatekeeper (plain hyper) on http://{addr}/mcp");
    println!("{}", inhouse::curl_lines(&format!("http://{addr}/mcp")));
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        tcp.set_nodelay(true)?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
