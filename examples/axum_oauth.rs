//! An in-house rmcp server behind the six layers, accepting OAuth bearer tokens from an
//! authorization server besides API keys, with its protected resource metadata (RFC 9728).
//!
//! ```text
//! cargo run --features oauth --example axum_oauth -- --issuer https://login.example.com/realms/acme [--bind 127.0.0.1:3000]
//! ```
//! The issuer must issue access tokens as JWTs whose `aud` is this server's `/mcp` URL (RFC 8707
//! resource indicators) and publish its keys (`jwks_uri` in its metadata). A token's `docs:read`
//! scope grants `search_docs`; `docs:write` grants every tool; `mcp` is required.

#[path = "support/inhouse.rs"]
mod inhouse;

use std::sync::Arc;

use axum::serve::ListenerExt;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::identity::IdentityLayer;
use mcp_gatekeeper::oauth::{METADATA_PATH, OAuth};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde_json::json;
use tower::Layer;

const USAGE: &str = "usage: axum_oauth --issuer URL [--bind 127.0.0.1:3000]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut issuer, mut bind) = (None, "127.0.0.1:3000".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--issuer" => issuer = args.next(),
            "--bind" => bind = args.next().ok_or(USAGE)?,
            _ => return Err(USAGE.into()),
        }
    }
    let issuer = issuer.ok_or(USAGE)?;
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let addr = listener.local_addr()?;
    let resource = format!("http://{addr}/mcp");

    // The in-house policy (keys `sk-reader`, `sk-writer`) plus who may come with a token.
    let mut policy: serde_json::Value = serde_json::from_str(inhouse::POLICY)?;
    policy["general_settings"] = json!({"oauth": {
        "resource": resource,
        "issuers": [{"issuer": issuer, "scopes": {
            "docs:read": {"mcp_servers": ["inhouse"], "mcp_tool_permissions": {"inhouse": ["search_docs"]}},
            "docs:write": {"mcp_servers": ["inhouse"]}
        }}],
        "required_scopes": ["mcp"]
    }});
    let config = Config::from_json_str(&policy.to_string())?;
    let gatekeeper = Gatekeeper::for_server(config.policy()?, "inhouse");
    let oauth = OAuth::from_config(config.general_settings.oauth.as_ref().ok_or("no oauth")?)?;

    let mut server = StreamableHttpServerConfig::default();
    server.legacy_session_mode = false;
    server.json_response = true;
    let mcp = StreamableHttpService::new(
        || Ok(inhouse::InHouse::new()),
        Arc::new(LocalSessionManager::default()),
        server,
    );
    // Keys and tokens both resolve through the OAuth resolver.
    let layers = gatekeeper.layer().identity(IdentityLayer::with_resolver(
        gatekeeper.clone(),
        oauth.clone(),
    ));
    let app = axum::Router::new()
        .route_service(METADATA_PATH, oauth.metadata())
        .route_service(&format!("{METADATA_PATH}/{{*path}}"), oauth.metadata())
        .nest_service("/mcp", layers.layer(mcp));

    // rmcp's SSE replies stall ~40 ms without TCP_NODELAY.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    println!(
        "in-house MCP server on {resource}, accepting tokens of {issuer} and the keys sk-reader, sk-writer"
    );
    println!("  curl -s http://{addr}{METADATA_PATH}/mcp   # where clients start");
    println!("  curl -s -i -X POST {resource}   # a 401 that names it");
    println!("Keys work side by side. {}", inhouse::curl_lines(&resource));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
