//! Session binding across replicas: two stacks of the layers (two "replicas") in front of one
//! stateful MCP server whose sessions they share. Signed bindings let either replica serve a
//! session the other opened, for its caller only; the in-process table cannot.
#![cfg(feature = "gateway")]

mod common;

use std::sync::Arc;

use common::*;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::identity::{IdentityLayer, SessionBindings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::Layer;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-shared-by-replicas";

/// One replica: the layers with `bindings` in front of `inner`, served on loopback.
async fn replica(
    gatekeeper: &Gatekeeper,
    inner: rmcp::transport::streamable_http_server::StreamableHttpService<
        RecordingServer,
        rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
    >,
    bindings: SessionBindings,
) -> Running {
    let identity =
        IdentityLayer::new(gatekeeper.clone()).session_bindings(Some(Arc::new(bindings)));
    let stack = gatekeeper.layer().identity(identity).layer(inner);
    serve(
        axum::Router::new().nest_service("/mcp", stack),
        CancellationToken::new(),
    )
    .await
}

async fn list(http: &reqwest::Client, url: &str, key: &str, session: &str) -> (u16, Value) {
    let r = mcp_post(http, url, key, Some(session))
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = r.text().await.unwrap();
    let message = messages(&ct, &body)
        .into_iter()
        .next()
        .unwrap_or(Value::Null);
    (status, message)
}

fn setup() -> (Gatekeeper, RecordingServer) {
    let config = Config::from_json_str(
        r#"{"mcp_servers": {"wiki": {"url": "http://127.0.0.1:1/mcp"}},
            "keys": [{"key": "sk-alice"}, {"key": "sk-bob"}]}"#,
    )
    .unwrap();
    let gatekeeper = Gatekeeper::for_server(config.policy().unwrap(), "wiki");
    let server = RecordingServer::new(vec![tool("read_page", &["page"])], &[], &[]);
    (gatekeeper, server)
}

#[tokio::test]
async fn a_signed_session_is_served_by_any_replica_for_its_caller_only() {
    let (gatekeeper, server) = setup();
    let ct = CancellationToken::new();
    let shared = mcp_service(server, Mode::StatefulJson, &ct);
    let a = replica(&gatekeeper, shared.clone(), SessionBindings::signed(SECRET)).await;
    let b = replica(&gatekeeper, shared, SessionBindings::signed(SECRET)).await;
    let http = http_client();
    let sid = raw_session(&http, &a.url("/mcp"), "sk-alice").await;
    assert!(sid.contains('.'), "the id the caller sees is signed: {sid}");

    // The caller that opened it: served by either replica.
    for url in [a.url("/mcp"), b.url("/mcp")] {
        let (status, message) = list(&http, &url, "sk-alice", &sid).await;
        assert_eq!(status, 200, "{message}");
        assert_eq!(message["result"]["tools"][0]["name"], "read_page");
    }

    // Another caller with the same id, a forged tag, the inner id alone: the same 404 on every
    // replica.
    let inner = sid.rsplit_once('.').unwrap().0.to_owned();
    let mut forged = sid.clone();
    let last = if sid.ends_with('0') { "1" } else { "0" };
    forged.replace_range(sid.len() - 1.., last);
    let mut answers = Vec::new();
    for url in [a.url("/mcp"), b.url("/mcp")] {
        for (key, id) in [
            ("sk-bob", &sid),
            ("sk-alice", &forged),
            ("sk-alice", &inner),
        ] {
            let (status, message) = list(&http, &url, key, id).await;
            assert_eq!(status, 404, "{key} {id}: {message}");
            answers.push(message);
        }
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");

    // A secret of its own: the id means nothing there.
    let ct2 = CancellationToken::new();
    let (gk2, server2) = setup();
    let c = replica(
        &gk2,
        mcp_service(server2, Mode::StatefulJson, &ct2),
        SessionBindings::signed(b"another-secret-another-secret-another".as_slice()),
    )
    .await;
    assert_eq!(list(&http, &c.url("/mcp"), "sk-alice", &sid).await.0, 404);
}

#[tokio::test]
async fn an_in_process_binding_is_unknown_to_another_replica() {
    let (gatekeeper, server) = setup();
    let ct = CancellationToken::new();
    let shared = mcp_service(server, Mode::StatefulJson, &ct);
    let a = replica(&gatekeeper, shared.clone(), SessionBindings::default()).await;
    let b = replica(&gatekeeper, shared, SessionBindings::default()).await;
    let http = http_client();
    let sid = raw_session(&http, &a.url("/mcp"), "sk-alice").await;
    assert_eq!(list(&http, &a.url("/mcp"), "sk-alice", &sid).await.0, 200);
    // Without a shared secret the other replica cannot tell the caller's session from a
    // stolen one: 404, and the client starts a new session there.
    assert_eq!(list(&http, &b.url("/mcp"), "sk-alice", &sid).await.0, 404);
}

#[tokio::test]
async fn an_rmcp_client_works_through_the_gateway_with_signed_session_ids() {
    use mcp_gatekeeper::gateway::Gateway;
    let upstream = RecordingServer::new(vec![tool("read_page", &["page"])], &[], &[]);
    let ct = CancellationToken::new();
    let up = serve(
        axum::Router::new().nest_service(
            "/mcp",
            mcp_service(upstream.clone(), Mode::StatefulSse, &ct),
        ),
        ct,
    )
    .await;
    let config = Config::from_json_str(
        &json!({
            "mcp_servers": {"wiki": {"url": up.url("/mcp")}},
            "keys": [{"key": "sk-alice"}],
        })
        .to_string(),
    )
    .unwrap();
    let gatekeeper = Gatekeeper::new(config.policy().unwrap());
    let gateway = Gateway::from_config(&config, gatekeeper.clone())
        .unwrap()
        .build()
        .unwrap();
    let identity = IdentityLayer::new(gatekeeper.clone())
        .session_bindings(Some(Arc::new(SessionBindings::signed(SECRET))));
    let gw = serve(
        gateway.router(gatekeeper.layer().identity(identity)),
        CancellationToken::new(),
    )
    .await;
    let sid = raw_session(&http_client(), &gw.url("/mcp"), "sk-alice").await;
    assert!(sid.contains('.'), "the gateway's ids go out signed: {sid}");
    // rmcp's own client: initialize, list, call, all on the signed id.
    let client = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-alice")])
        .await
        .unwrap();
    assert_eq!(tool_names(&client).await, vec!["wiki-read_page"]);
    let text = call(&client, "wiki-read_page", json!({"page": "Home"}))
        .await
        .unwrap();
    assert!(text.contains("read_page"), "{text}");
    assert_eq!(upstream.executions.names(), vec!["read_page"]);
    client.cancel().await.unwrap();
}
