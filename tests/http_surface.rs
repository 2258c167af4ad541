//! The HTTP layers around every endpoint of the gateway: a request id on every answer, CORS for
//! the configured browser origins only (preflights answered, session and challenge headers
//! readable), and a panic answered with a JSON 500 that says nothing of it.
#![cfg(feature = "gateway")]

mod common;

use common::*;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::gateway::Gateway;
use mcp_gatekeeper::identity::{IdentityError, IdentityLayer, IdentityRequest};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ALICE: &str = "sk-alice-http-0001";
const APP: &str = "http://app.example:3000";

fn config(upstream: &str, origins: Value) -> String {
    json!({
        "general_settings": {"cors_allowed_origins": origins},
        "mcp_servers": {"wiki": {"url": upstream}},
        "keys": [{"key": ALICE, "object_permission": {"mcp_servers": ["wiki"]}}]
    })
    .to_string()
}

fn initialize() -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}})
}

#[tokio::test]
async fn every_answer_has_a_request_id_and_a_given_one_is_kept() {
    let upstream = RecordingServer::new(vec![tool("echo", &[])], &[], &[]);
    let up = serve_recording(&upstream).await;
    let (gw, _gateway) = gateway_from_json(&config(&up.url("/mcp"), json!([]))).await;
    let http = http_client();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = mcp_post(&http, &gw.url("/mcp"), ALICE, None)
            .json(&initialize())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    assert_eq!(ids[0].len(), 36, "a UUID: {}", ids[0]);
    assert_ne!(ids[0], ids[1]);
    // Refusals and other endpoints too; a caller's own id is passed back.
    let r = http
        .get(gw.url("/mcp-rest/tools/list"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "req-42");
}

#[tokio::test]
async fn browsers_of_the_configured_origins_only_may_call_across_origins() {
    let upstream = RecordingServer::new(vec![tool("echo", &[])], &[], &[]);
    let up = serve_recording(&upstream).await;
    let http = http_client();
    let preflight = |url: String, origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,mcp-session-id,mcp-protocol-version,x-litellm-api-key",
            )
            .send()
    };

    let (gw, _gateway) = gateway_from_json(&config(&up.url("/mcp"), json!([APP]))).await;
    let r = preflight(gw.url("/mcp"), APP).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], APP);
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for name in [
        "content-type",
        "mcp-session-id",
        "mcp-protocol-version",
        "x-litellm-api-key",
    ] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    // The call itself: the session id and the challenge are readable by the page.
    let r = mcp_post(&http, &gw.url("/mcp"), ALICE, None)
        .header("origin", APP)
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], APP);
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(
        exposed.contains("mcp-session-id") && exposed.contains("www-authenticate"),
        "{exposed}"
    );
    assert!(r.headers().contains_key("mcp-session-id"));

    // Another origin gets no CORS header: the browser keeps the answer from the page.
    let r = preflight(gw.url("/mcp"), "http://evil.example")
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = mcp_post(&http, &gw.url("/mcp"), ALICE, None)
        .header("origin", "http://evil.example")
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    // Nothing configured: no origin at all.
    let (gw, _gateway) = gateway_from_json(&config(&up.url("/mcp"), json!([]))).await;
    let r = preflight(gw.url("/mcp"), APP).await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn an_origin_that_is_not_one_is_a_configuration_error() {
    let doc = config(
        "http://127.0.0.1:1/mcp",
        json!(["http://ok.example", "bad\norigin"]),
    );
    let config = Config::from_json_str(&doc).unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap());
    let err = Gateway::from_config(&config, gk).unwrap_err().to_string();
    assert!(
        err.contains("general_settings.cors_allowed_origins"),
        "{err}"
    );
}

#[tokio::test]
async fn a_panic_is_a_json_500_that_says_nothing_of_it() {
    let upstream = RecordingServer::new(vec![tool("echo", &[])], &[], &[]);
    let up = serve_recording(&upstream).await;
    let config = Config::from_json_str(&config(&up.url("/mcp"), json!([]))).unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap());
    let gateway = Gateway::from_config(&config, gk).unwrap().build().unwrap();
    let panicking = |_: &IdentityRequest<'_>| -> std::future::Ready<Result<_, IdentityError>> {
        panic!("secret-panic-detail-0002")
    };
    let layer = gateway
        .gatekeeper()
        .layer()
        .identity(IdentityLayer::with_resolver(
            gateway.gatekeeper().clone(),
            panicking,
        ));
    let gw = serve(gateway.router(layer), CancellationToken::new()).await;
    let r = mcp_post(&http_client(), &gw.url("/mcp"), ALICE, None)
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.headers().contains_key("x-request-id"));
    let body = r.text().await.unwrap();
    assert_eq!(body, r#"{"error":"internal error"}"#);
    // The gateway still answers.
    let r = http_client().get(gw.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
