//! The one way a tool call reaches an upstream: posted on a streamable HTTP upstream's pooled
//! session, or through rmcp's client for any other upstream, behind the same interface. Whichever
//! way the caller came in (answered by the endpoint itself, or by rmcp's server when a request
//! carries an `Origin`), a call to either kind of upstream gives the same answer, passes the
//! upstream's progress on under the caller's token, and, cancelled by the caller, is cancelled
//! upstream too.
#![cfg(feature = "gateway")]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::gateway::{Gateway, UpstreamSpec};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// One recording server, offered as `posted` (over streamable HTTP) and `inproc` (an rmcp peer
/// in this process): the two kinds of upstream behind the one interface.
async fn gateway() -> (Running, Running, RecordingServer) {
    let server = RecordingServer::new(
        vec![
            tool("search", &["q"]),
            tool("progress", &[]),
            tool("slow", &[]),
        ],
        &[],
        &[],
    );
    let ct = CancellationToken::new();
    let upstream = serve(
        axum::Router::new()
            .nest_service("/mcp", mcp_service(server.clone(), Mode::StatefulSse, &ct)),
        ct,
    )
    .await;
    let doc = format!(
        r#"{{
      "mcp_servers": {{
        "posted": {{"url": "{url}", "timeout": 10}},
        "inproc": {{"url": "http://127.0.0.1:9/mcp", "timeout": 10}}
      }},
      "keys": [{{"key": "sk-bob", "key_alias": "bob"}}]
    }}"#,
        url = upstream.url("/mcp")
    );
    let config = Config::from_json_str(&doc).unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap());
    let inproc = server.clone();
    let gateway = Gateway::from_config(&config, gk)
        .unwrap()
        .upstream(
            "inproc",
            UpstreamSpec::in_process(move || inproc.clone()).timeout(Duration::from_secs(10)),
        )
        .build()
        .unwrap();
    let router = gateway.router(gateway.gatekeeper().layer());
    let gw = serve(router, CancellationToken::new()).await;
    (gw, upstream, server)
}

/// Posts `body` on `sid` (through rmcp's server when `origin` is set) and reads the reply to
/// its id: every message seen until then.
async fn post(
    http: &reqwest::Client,
    url: &str,
    sid: &str,
    origin: bool,
    body: &Value,
) -> Vec<Value> {
    let mut request = mcp_post(http, url, "sk-bob", Some(sid)).json(body);
    if origin {
        request = request.header("origin", "http://localhost");
    }
    let mut reply = request.send().await.unwrap();
    let mut buf = String::new();
    let id = body["id"].clone();
    tokio::time::timeout(
        Duration::from_secs(20),
        read_until(&mut reply, &mut buf, |v| v.get("id") == Some(&id)),
    )
    .await
    .expect("the call is answered")
}

#[tokio::test]
async fn both_kinds_of_upstream_answer_alike_whichever_way_the_call_came_in() {
    let (gw, _upstream, server) = gateway().await;
    let http = http_client();
    let url = gw.url("/mcp");
    let sid = raw_session(&http, &url, "sk-bob").await;
    let mut id = 10;
    for origin in [false, true] {
        for upstream in ["posted", "inproc"] {
            id += 1;
            let seen = post(
                &http,
                &url,
                &sid,
                origin,
                &json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
                    "name": format!("{upstream}-search"), "arguments": {"q": "x"}}}),
            )
            .await;
            let answer = seen.last().unwrap();
            let text = answer["result"]["content"][0]["text"].as_str();
            assert_eq!(
                text,
                Some(r#"ran search with {"q":"x"}"#),
                "{upstream}, origin {origin}: {seen:?}"
            );
            assert!(
                answer["result"].get("resultType").is_none(),
                "a 2025-06-18 caller gets no resultType: {answer}"
            );
            id += 1;
            let token = format!("tok-{id}");
            let seen = post(
                &http,
                &url,
                &sid,
                origin,
                &json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
                    "name": format!("{upstream}-progress"), "_meta": {"progressToken": token}}}),
            )
            .await;
            let progress: Vec<&Value> = seen
                .iter()
                .filter(|m| m["method"] == "notifications/progress")
                .collect();
            assert!(
                !progress.is_empty()
                    && progress
                        .iter()
                        .all(|p| p["params"]["progressToken"] == token),
                "{upstream}, origin {origin}: progress under the caller's token: {seen:?}"
            );
            assert!(
                seen.last().unwrap()["result"]["content"].is_array(),
                "{upstream}, origin {origin}: {seen:?}"
            );
        }
    }
    // Four calls of `search` and four of `progress`, each run once.
    let names = server.executions.names();
    assert_eq!(names.iter().filter(|n| n.ends_with("search")).count(), 4);
    assert_eq!(names.iter().filter(|n| n.ends_with("progress")).count(), 4);
}

#[tokio::test]
async fn a_call_its_caller_cancels_is_cancelled_on_either_kind_of_upstream() {
    let (gw, _upstream, server) = gateway().await;
    let http = http_client();
    let url = gw.url("/mcp");
    let sid = raw_session(&http, &url, "sk-bob").await;
    let mut expected = 0;
    for origin in [false, true] {
        for upstream in ["posted", "inproc"] {
            expected += 1;
            let id = format!("{upstream}-{origin}");
            let mut call = mcp_post(&http, &url, "sk-bob", Some(&sid)).json(&json!({
                "jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name": format!("{upstream}-slow")}
            }));
            if origin {
                call = call.header("origin", "http://localhost");
            }
            let reply = call.send().await.unwrap();
            // The call is running upstream before it is cancelled: the upstream session and
            // the slow tool are up once a second call on the same session is answered.
            let _ = post(
                &http,
                &url,
                &sid,
                false,
                &json!({"jsonrpc":"2.0","id":format!("{id}-probe"),"method":"tools/call","params":{
                    "name": format!("{upstream}-search"), "arguments": {"q": "probe"}}}),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let r = mcp_post(&http, &url, "sk-bob", Some(&sid))
                .json(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":id}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let told = async {
                while server.cancelled.load(Ordering::SeqCst) < expected {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(5), told)
                .await
                .unwrap_or_else(|_| panic!("{upstream}, origin {origin}: cancelled upstream"));
            drop(reply);
        }
    }
}
