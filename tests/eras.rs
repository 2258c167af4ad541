//! Every answer the layers and the gateway build themselves is valid for the caller's protocol
//! era: a table over eras (2025-03-26, 2025-06-18, 2025-11-25, 2026-07-28) × every kind of
//! refusal × both denial styles × the endpoint kinds (stateful with event-stream replies,
//! stateless with JSON replies, stateless with event-stream replies) and the legacy `/sse`
//! bridge, through the real gateway over a real rmcp upstream.
//!
//! Each reply is held against what the MCP JSON schema of its era requires of a JSON-RPC
//! response, an error object and a `CallToolResult` (`resultType` is required from 2026-07-28
//! on and unknown before it). With `MCP_ERA_REPLIES=FILE` set, every reply is also appended to
//! FILE as a JSON line; the interop suite (`scripts/interop/run`) validates those against the
//! published schema of each era with `scripts/interop/era_schemas.mjs`.
#![cfg(feature = "gateway")]

mod common;

use std::time::Duration;

use common::*;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::gateway::Gateway;
use mcp_gatekeeper::protocol::Era;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ERAS: [Era; 4] = [
    Era::V2025_03_26,
    Era::V2025_06_18,
    Era::V2025_11_25,
    Era::V2026_07_28,
];

/// One kind of refusal: who asks, what, and what the caller must be told.
struct Refusal {
    what: &'static str,
    key: &'static str,
    method: &'static str,
    params: Value,
    /// Whether the refusal is a tool result in the `tool_result` style (else always an error).
    is_tool: bool,
    /// Extra header that makes the request itself wrong (header-mismatch refusals).
    header: Option<(&'static str, &'static str)>,
    /// The JSON-RPC error code, when answered as an error.
    code: i64,
}

fn refusals() -> Vec<Refusal> {
    let tool = |what, key, name: &str, args: Value| Refusal {
        what,
        key,
        method: "tools/call",
        params: json!({"name": name, "arguments": args}),
        is_tool: true,
        header: None,
        code: -32602,
    };
    vec![
        tool(
            "a tool of a server the key may not use",
            "sk-bob",
            "github-list_issues",
            json!({}),
        ),
        tool(
            "a deny-listed tool",
            "sk-alice",
            "github-delete_repo",
            json!({"repo": "x"}),
        ),
        tool(
            "a tool outside mcp_tool_permissions",
            "sk-alice",
            "github-search",
            json!({"q": "x"}),
        ),
        tool(
            "an unknown tool",
            "sk-alice",
            "github-no_such_tool",
            json!({}),
        ),
        tool(
            "arguments outside allowed_params",
            "sk-alice",
            "github-create_issue",
            json!({"title": "t", "labels": ["x"]}),
        ),
        Refusal {
            what: "a prompt of a server the key may not use",
            key: "sk-bob",
            method: "prompts/get",
            params: json!({"name": "github-triage"}),
            is_tool: false,
            header: None,
            code: -32602,
        },
        Refusal {
            what: "a resource of a server the key may not use",
            key: "sk-bob",
            method: "resources/read",
            params: json!({"uri": "github-doc://home"}),
            is_tool: false,
            header: None,
            code: -32602,
        },
        Refusal {
            what: "an Mcp-Name header that disagrees with the body",
            key: "sk-alice",
            method: "tools/call",
            params: json!({"name": "github-list_issues", "arguments": {}}),
            is_tool: false,
            header: Some(("mcp-name", "github-delete_repo")),
            code: -32020,
        },
    ]
}

async fn upstream() -> (Running, RecordingServer) {
    let github = RecordingServer::new(
        vec![
            tool("create_issue", &["title", "labels"]),
            tool("list_issues", &[]),
            tool("delete_repo", &["repo"]),
            tool("search", &["q"]),
        ],
        &["triage"],
        &["doc://home"],
    );
    let ct = CancellationToken::new();
    let running = serve(
        axum::Router::new()
            .nest_service("/mcp", mcp_service(github.clone(), Mode::StatefulSse, &ct)),
        ct,
    )
    .await;
    (running, github)
}

fn config(upstream: &str, style: &str) -> Config {
    Config::from_json_str(&format!(
        r#"{{
      "general_settings": {{"denial_style": "{style}"}},
      "mcp_servers": {{
        "github": {{"url": "{upstream}", "disallowed_tools": ["delete_repo"],
                    "allowed_params": {{"create_issue": ["title"]}}}},
        "wiki": {{"url": "{upstream}"}}
      }},
      "keys": [
        {{"key": "sk-alice", "object_permission": {{"mcp_servers": ["github"],
          "mcp_tool_permissions": {{"github": ["create_issue", "list_issues", "delete_repo"]}}}}}},
        {{"key": "sk-bob", "object_permission": {{"mcp_servers": ["wiki"]}}}}
      ]
    }}"#
    ))
    .unwrap()
}

/// The endpoints a caller can reach: the gateway's router (stateful, event-stream replies) and
/// the gateway service mounted stateless with JSON or event-stream replies.
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Router,
    StatelessJson,
    StatelessSse,
}

async fn gateway(config: &Config, endpoint: Endpoint) -> Running {
    use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
    use tower::Layer;
    let gk = Gatekeeper::new(config.policy().unwrap());
    let gateway = Gateway::from_config(config, gk).unwrap().build().unwrap();
    let router = match endpoint {
        Endpoint::Router => gateway.router(gateway.gatekeeper().layer()),
        Endpoint::StatelessJson | Endpoint::StatelessSse => {
            let mut c = StreamableHttpServerConfig::default();
            c.legacy_session_mode = false;
            c.json_response = matches!(endpoint, Endpoint::StatelessJson);
            c.sse_keep_alive = None;
            axum::Router::new()
                .fallback_service(gateway.gatekeeper().layer().layer(gateway.service(c)))
        }
    };
    serve(router, CancellationToken::new()).await
}

fn post(http: &reqwest::Client, url: &str, key: &str, era: Era) -> reqwest::RequestBuilder {
    let r = http
        .post(url)
        .header("x-litellm-api-key", key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    // 2025-03-26 predates the version header.
    if era > Era::V2025_03_26 {
        r.header("mcp-protocol-version", era.as_str())
    } else {
        r
    }
}

/// A session on a handshake era (None on 2026-07-28, which has none).
async fn open(http: &reqwest::Client, url: &str, key: &str, era: Era) -> Option<String> {
    if era.is_stateless() {
        return None;
    }
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": era.as_str(), "capabilities": {},
        "clientInfo": {"name": "eras", "version": "0"}}});
    let r = http
        .post(url)
        .header("x-litellm-api-key", key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "initialize on {era}");
    let sid = r
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    assert!(
        text.contains(&format!("\"protocolVersion\":\"{era}\"")),
        "{era}: {text}"
    );
    let mut note = post(http, url, key, era);
    if let Some(s) = &sid {
        note = note.header("mcp-session-id", s);
    }
    let r = note
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    sid
}

/// The request of `refusal` as a caller on `era` sends it.
fn request_body(refusal: &Refusal, era: Era, id: i64) -> Value {
    let mut params = refusal.params.clone();
    if era.is_stateless() {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": era.as_str(),
            "io.modelcontextprotocol/clientInfo": {"name": "eras", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {},
        });
    }
    json!({"jsonrpc": "2.0", "id": id, "method": refusal.method, "params": params})
}

/// Appends `reply` to the file `MCP_ERA_REPLIES` names, for validation against the published
/// schemas. 2024-11-05 is left out: the schemas the interop suite reads begin at 2025-03-26.
fn record(era: Era, method: &str, context: &str, reply: &Value) {
    use std::io::Write;
    let Some(path) = std::env::var_os("MCP_ERA_REPLIES") else {
        return;
    };
    if era < Era::V2025_03_26 {
        return;
    }
    let mut line = serde_json::to_vec(&json!({
        "era": era.as_str(), "method": method, "context": context, "reply": reply,
    }))
    .unwrap();
    line.push(b'\n');
    // One write per line on an append-mode file: lines from concurrent tests never interleave.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(&line))
        .expect("MCP_ERA_REPLIES is writable");
}

/// Holds the reply to request `id` against what the schema of `era` requires of it.
fn assert_valid(era: Era, id: i64, reply: &Value, context: &str) {
    let obj = reply
        .as_object()
        .unwrap_or_else(|| panic!("{context}: {reply}"));
    assert_eq!(
        obj.get("jsonrpc"),
        Some(&json!("2.0")),
        "{context}: {reply}"
    );
    assert_eq!(obj.get("id"), Some(&json!(id)), "{context}: {reply}");
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    match (obj.get("result"), obj.get("error")) {
        (Some(result), None) => {
            assert_eq!(keys.len(), 3, "{context}: {reply}");
            let result = result
                .as_object()
                .unwrap_or_else(|| panic!("{context}: {reply}"));
            let content = result["content"].as_array().expect("content is an array");
            assert!(
                content
                    .iter()
                    .all(|c| c["type"] == "text" && c["text"].is_string()),
                "{context}: {reply}"
            );
            assert!(result["isError"].is_boolean(), "{context}: {reply}");
            if era.is_stateless() {
                assert_eq!(
                    result.get("resultType"),
                    Some(&json!("complete")),
                    "{context}: {reply}"
                );
            } else {
                assert!(result.get("resultType").is_none(), "{context}: {reply}");
            }
            for k in result.keys() {
                assert!(
                    [
                        "content",
                        "isError",
                        "structuredContent",
                        "_meta",
                        "resultType"
                    ]
                    .contains(&k.as_str()),
                    "{context}: unknown result field {k}: {reply}"
                );
            }
        }
        (None, Some(error)) => {
            assert_eq!(keys.len(), 3, "{context}: {reply}");
            assert!(error["code"].is_i64(), "{context}: {reply}");
            assert!(error["message"].is_string(), "{context}: {reply}");
        }
        _ => panic!("{context}: neither a result nor an error: {reply}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_valid_for_every_era_style_and_endpoint() {
    let (up, github) = upstream().await;
    let http = http_client();
    let mut checked = 0;
    for style in ["tool_result", "jsonrpc_error"] {
        let config = config(&up.url("/mcp"), style);
        for endpoint in [
            Endpoint::Router,
            Endpoint::StatelessJson,
            Endpoint::StatelessSse,
        ] {
            let gw = gateway(&config, endpoint).await;
            let url = gw.url("/mcp");
            for era in ERAS {
                let mut sessions = std::collections::HashMap::new();
                for (n, refusal) in refusals().iter().enumerate() {
                    let context = format!("{style} {endpoint:?} {era}: {}", refusal.what);
                    let stateful = matches!(endpoint, Endpoint::Router) && !era.is_stateless();
                    let sid = if stateful {
                        if !sessions.contains_key(refusal.key) {
                            let sid = open(&http, &url, refusal.key, era).await;
                            sessions.insert(refusal.key, sid);
                        }
                        sessions[refusal.key].clone()
                    } else {
                        None
                    };
                    let id = n as i64 + 1;
                    let mut req = post(&http, &url, refusal.key, era);
                    if let Some(s) = &sid {
                        req = req.header("mcp-session-id", s);
                    }
                    if era.is_stateless() {
                        req = req.header("mcp-method", refusal.method);
                    }
                    if let Some((k, v)) = refusal.header {
                        req = req.header(k, v);
                    }
                    let r = req
                        .json(&request_body(refusal, era, id))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
                    let body = r.text().await.unwrap();
                    let replies = messages(&ct, &body);
                    assert_eq!(replies.len(), 1, "{context}: {body}");
                    let reply = &replies[0];
                    assert_valid(era, id, reply, &context);
                    record(era, refusal.method, &context, reply);
                    if refusal.header.is_some() {
                        assert_eq!(status, 400, "{context}");
                        assert_eq!(reply["error"]["code"], refusal.code, "{context}: {body}");
                    } else if refusal.is_tool && style == "tool_result" {
                        assert_eq!(status, 200, "{context}");
                        assert_eq!(reply["result"]["isError"], true, "{context}: {body}");
                        assert!(
                            reply["result"]["content"][0]["text"]
                                .as_str()
                                .unwrap()
                                .starts_with("Error: "),
                            "{context}: {body}"
                        );
                    } else {
                        assert_eq!(status, 200, "{context}");
                        assert_eq!(reply["error"]["code"], refusal.code, "{context}: {body}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(github.executions.all(), Vec::<(String, Value)>::new());
    assert_eq!(checked, 2 * 3 * ERAS.len() * refusals().len());
}

/// The legacy `/sse` bridge speaks the handshake protocol its clients negotiate: refusals on
/// its stream carry no `resultType`, on every handshake era a legacy client may ask for.
#[tokio::test]
async fn refusals_on_the_legacy_sse_bridge_are_valid_for_its_era() {
    let (up, github) = upstream().await;
    let http = http_client();
    for style in ["tool_result", "jsonrpc_error"] {
        let gw = gateway(&config(&up.url("/mcp"), style), Endpoint::Router).await;
        for era in [
            Era::V2024_11_05,
            Era::V2025_03_26,
            Era::V2025_06_18,
            Era::V2025_11_25,
        ] {
            bridge_refusals(&http, &gw, style, era).await;
        }
    }
    assert_eq!(github.executions.all(), Vec::<(String, Value)>::new());
}

async fn bridge_refusals(http: &reqwest::Client, gw: &Running, style: &str, era: Era) {
    let mut stream = http
        .get(gw.url("/sse"))
        .header("x-litellm-api-key", "sk-bob")
        .send()
        .await
        .unwrap();
    let endpoint = legacy_endpoint(&mut stream).await;
    let send = |body: Value| {
        http.post(gw.url(&endpoint))
            .header("x-litellm-api-key", "sk-bob")
            .json(&body)
            .send()
    };
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion": era.as_str(),"capabilities":{},"clientInfo":{"name":"t","version":"0"}}});
    assert_eq!(send(init).await.unwrap().status(), 202);
    let refusals: Vec<Refusal> = refusals()
        .into_iter()
        .filter(|r| r.header.is_none())
        .collect();
    for (n, refusal) in refusals.iter().enumerate() {
        let r = send(request_body(refusal, era, n as i64 + 1))
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{style} {era}: {}", refusal.what);
    }
    let last = format!("\"id\":{}", refusals.len());
    let mut events = String::new();
    while !events.contains(&last) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        events.push_str(&String::from_utf8_lossy(&chunk));
    }
    let replies = messages("text/event-stream", &events);
    let init = replies
        .iter()
        .find(|m| m["id"] == 0)
        .expect("initialize answered");
    assert_eq!(init["result"]["protocolVersion"], era.as_str(), "{events}");
    for (n, refusal) in refusals.iter().enumerate() {
        let id = n as i64 + 1;
        let reply = replies
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{style} {era}: no reply to {}: {events}", refusal.what));
        let context = format!("/sse {style} {era}: {}", refusal.what);
        assert_valid(era, id, reply, &context);
        record(era, refusal.method, &context, reply);
        if refusal.is_tool && style == "tool_result" {
            assert_eq!(reply["result"]["isError"], true, "{context}");
        } else {
            assert_eq!(reply["error"]["code"], refusal.code, "{context}");
        }
    }
}
