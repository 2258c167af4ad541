//! An in-house rmcp server wrapped by the six layers and mounted in an axum app.
//!
//! `cargo run --example axum_inhouse` and try the printed curl lines.

#[path = "support/inhouse.rs"]
mod inhouse;

use std::sync::Arc;

use axum::serve::ListenerExt;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tower::Layer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = Config::from_json_str(inhouse::POLICY)?.policy()?;
    // The wrapped service is the catalog server "inhouse": its tools keep their bare names.
    let gatekeeper = Gatekeeper::for_server(policy, "inhouse");

    let mut config = StreamableHttpServerConfig::default();
    config.legacy_session_mode = false; // stateless: every POST stands alone
    config.json_response = true;
    let mcp = StreamableHttpService::new(
        || Ok(inhouse::InHouse::new()),
        Arc::new(LocalSessionManager::default()),
        config,
    );

    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .nest_service("/mcp", gatekeeper.layer().layer(mcp));

    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let addr = listener.local_addr()?;
    // rmcp's SSE replies stall ~40 ms without TCP_NODELAY.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    println!("in-house MCP server behind mcp-gatekeeper on http://{addr}/mcp");
    println!("{}", inhouse::curl_lines(&format!("http://{addr}/mcp")));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
