//! The adversarial suite: an attacker with a real key tries, class by class, to get a forbidden
//! tool executed or listed through the full stack in front of a real rmcp server whose tools
//! record every execution. Every attempt must be refused, no forbidden name may appear in any
//! list, and the execution log must stay empty.
//!
//! Requests are written by hand (reqwest, or raw bytes on a socket where an HTTP client would
//! normalise them), because a well-behaved client cannot send what an attacker sends.
//! `cargo test --test adversarial -- --nocapture` prints how many inputs each class tried.

mod common;

use std::time::Duration;

use common::*;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tower::Layer;

/// mallory may use `public` and `github`, and on `github` only `list_issues`. eve (an end user)
/// and the agent `auditor` would see everything if they widened anything; they only narrow.
const POLICY: &str = r#"{
  "general_settings": {"master_key": "sk-admin"},
  "mcp_servers": {
    "github": {"url": "http://up/github", "alias": "gh", "disallowed_tools": ["delete_repo"]},
    "public": {"url": "http://up/public", "allow_all_keys": true},
    "secret": {"url": "http://up/secret", "access_groups": ["vault"]},
    "jira":   {"url": "http://up/jira", "allowed_tools": ["list-issues"]}
  },
  "keys": [
    {"key": "sk-mallory", "key_alias": "mallory",
     "object_permission": {"mcp_servers": ["github", "public"], "mcp_tool_permissions": {"github": ["list_issues"]}}},
    {"key": "sk-alice", "key_alias": "alice", "object_permission": {"mcp_servers": ["secret"]}}
  ],
  "end_users": [{"user_id": "eve", "object_permission": {"mcp_servers": ["github", "public", "secret", "jira"]}}],
  "agents": [{"agent_id": "auditor", "object_permission": {"mcp_servers": ["github", "public", "secret", "jira"]}}]
}"#;

/// Names mallory must never run or see.
const FORBIDDEN: &[&str] = &[
    "github-delete_repo",
    "github-create_issue",
    "secret-launch",
    "jira-drop-table",
    "jira-list-issues",
];

fn upstream() -> RecordingServer {
    RecordingServer::new(
        vec![
            tool("github-list_issues", &[]),
            tool("github-create_issue", &["title"]),
            tool("github-delete_repo", &["repo"]),
            tool("public-ping", &[]),
            tool("public-secret-launch", &[]),
            tool("secret-launch", &["target"]),
            tool("jira-list-issues", &[]),
            tool("jira-drop-table", &[]),
        ],
        &["secret-plan"],
        &["secret-doc://keys"],
    )
}

struct Target {
    running: Running,
    server: RecordingServer,
    http: reqwest::Client,
}

async fn target(mode: Mode) -> Target {
    let server = upstream();
    let ct = CancellationToken::new();
    let gk = Gatekeeper::new(Config::from_json_str(POLICY).unwrap().policy().unwrap());
    let stack = gk.layer().layer(mcp_service(server.clone(), mode, &ct));
    let running = serve(axum::Router::new().fallback_service(stack), ct).await;
    Target {
        running,
        server,
        http: http_client(),
    }
}

/// The verdict on one reply: refused (an HTTP error, a JSON-RPC error or an `isError` result).
async fn refused(r: reqwest::Response) -> Result<(), String> {
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    if status.is_client_error() || status.is_server_error() {
        // A refusal never echoes a key or the policy.
        assert!(
            !text.contains("sk-") && !text.contains("http://up/"),
            "refusal leaks: {text}"
        );
        return Ok(());
    }
    let v = reply_json(&text).ok_or_else(|| format!("{status}: unreadable reply {text}"))?;
    if v.get("error").is_some() || v["result"]["isError"] == json!(true) {
        Ok(())
    } else {
        Err(format!("{status}: accepted: {text}"))
    }
}

/// The JSON-RPC message of a JSON or single-event SSE reply.
fn reply_json(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok().or_else(|| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .find_map(|d| serde_json::from_str(d.trim()).ok())
    })
}

fn call(name: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": {}}})
        .to_string()
}

impl Target {
    fn post(&self, key: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        mcp_post(&self.http, &self.running.url("/mcp"), key, None).body(body)
    }

    /// Sends one attempt and asserts it was refused.
    async fn attempt(&self, label: &str, req: reqwest::RequestBuilder) {
        let r = req.send().await.unwrap();
        if let Err(e) = refused(r).await {
            panic!("{label}: {e}");
        }
    }

    /// Lists tools with these extra headers and asserts nothing forbidden shows.
    async fn list_is_clean(&self, label: &str, headers: &[(&str, &str)]) -> usize {
        let mut req = self.post(
            "sk-mallory",
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#,
        );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        if !r.status().is_success() {
            return 0; // a refused listing shows nothing
        }
        let v = reply_json(&r.text().await.unwrap()).unwrap();
        let names: Vec<&str> = v["result"]["tools"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        for f in FORBIDDEN {
            assert!(!names.contains(f), "{label}: {f} listed in {names:?}");
        }
        names.len()
    }

    /// Raw bytes on a socket; returns the whole reply.
    async fn raw(&self, request: &[u8]) -> String {
        let mut tcp = tokio::net::TcpStream::connect(self.running.addr)
            .await
            .unwrap();
        tcp.write_all(request).await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply)).await;
        String::from_utf8_lossy(&reply).into_owned()
    }

    fn assert_nothing_ran(&self, class: &str, inputs: usize) {
        assert_eq!(
            self.server.executions.all(),
            Vec::<(String, Value)>::new(),
            "{class}: a forbidden attempt reached the server"
        );
        eprintln!("{class:<44} {inputs:>4} inputs, all refused, nothing executed");
    }
}

fn raw_post(path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-litellm-api-key: sk-mallory\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2025-06-18\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn duplicate_keys_in_every_position() {
    let t = target(Mode::StatelessJson).await;
    let bodies = [
        // name, both orders, and spelled with escapes (the same key once unescaped)
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-list_issues","name":"secret-launch"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret-launch","name":"github-list_issues"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-list_issues","n\u0061me":"secret-launch"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"\u006eame":"secret-launch","name":"github-list_issues"}}"#,
        // method: a list that becomes a call, and back
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"secret-launch"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","m\u0065thod":"tools/list","params":{"name":"secret-launch"}}"#,
        // params twice, the second one forbidden
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-list_issues"},"params":{"name":"secret-launch"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret-launch"},"params":{"name":"github-list_issues"}}"#,
        // id, jsonrpc and arguments twice
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"secret-launch"}}"#,
        r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret-launch"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-list_issues","arguments":{},"arguments":{"x":1}}}"#,
        // inside arguments, and inside _meta
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-list_issues","arguments":{"a":1,"a":2}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-list_issues","_meta":{"progressToken":1,"progressToken":2}}}"#,
        // deep inside an argument value
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-list_issues","arguments":{"q":[{"k":1,"k":2}]}}}"#,
    ];
    for body in bodies {
        t.attempt(body, t.post("sk-mallory", body)).await;
    }
    t.assert_nothing_ran("duplicate keys", bodies.len());
}

#[tokio::test]
async fn escaped_case_variant_padded_and_control_character_names() {
    let t = target(Mode::StatelessJson).await;
    let mut names: Vec<String> = Vec::new();
    for f in FORBIDDEN {
        names.push(f.to_uppercase());
        names.push(f.replacen('-', "-\u{200b}", 1)); // zero-width space after the prefix
        names.push(format!("{f} "));
        names.push(format!(" {f}"));
        names.push(format!("{f}\t"));
        names.push(format!("{f}\n"));
        names.push(format!("{f}\u{0}"));
        names.push(format!("{f}\u{0}x"));
        names.push(format!("{f}\r\n"));
        names.push(f.replace('e', "\u{0435}")); // Cyrillic e
        names.push((*f).to_owned()); // and the name itself
    }
    let mut sent = 0;
    for n in &names {
        t.attempt(n, t.post("sk-mallory", call(n))).await;
        sent += 1;
    }
    // Escapes in the JSON text: what the server would read is a forbidden name.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret\u002dlaunch"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-delete\u005frepo"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\u0073\u0065\u0063\u0072\u0065\u0074-launch"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/c\u0061ll","params":{"name":"secret-launch"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-list_issues\u0000secret-launch"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"TOOLS/CALL","params":{"name":"secret-launch"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call ","params":{"name":"secret-launch"}}"#,
    ] {
        t.attempt(body, t.post("sk-mallory", body)).await;
        sent += 1;
    }
    t.assert_nothing_ran("escaped, case, padding, control chars", sent);
}

#[tokio::test]
async fn cross_server_prefix_confusion() {
    let t = target(Mode::StatelessJson).await;
    let names = [
        // public's own tool `secret-launch`: mallory may call it (public is unrestricted); it
        // must run as public's tool, never as secret's
        "public-secret-launch",
        "github-secret-launch",
        "gh-delete_repo",
        "gh-create_issue",
        "github--delete_repo",
        "-secret-launch",
        "secret-",
        "secret",
        "secretlaunch",
        "github",
        "github-",
        "gh-",
        "public-../secret-launch",
        "public-/secret-launch",
        "jira-list-issues",
        "jira-drop-table",
        "jira-jira-list-issues",
        "vault-launch",
    ];
    let mut sent = 0;
    for n in &names[1..] {
        t.attempt(n, t.post("sk-mallory", call(n))).await;
        sent += 1;
    }
    // The one legitimate call in the list runs public's own tool, never secret's.
    let r = t.post("sk-mallory", call(names[0])).send().await.unwrap();
    assert!(refused(r).await.is_err(), "public's own tool is allowed");
    assert_eq!(t.server.executions.names(), ["public-secret-launch"]);
    t.server.executions.clear();
    t.assert_nothing_ran("cross-server prefix confusion", sent);
}

#[tokio::test]
async fn mcp_method_and_mcp_name_header_tricks() {
    let t = target(Mode::StatelessJson).await;
    let b64 = |s: &str| format!("=?base64?{}?=", base64(s.as_bytes()));
    let allowed = call("github-list_issues");
    let forbidden = call("secret-launch");
    let cases: Vec<(String, Vec<(&str, String)>)> = vec![
        (allowed.clone(), vec![("mcp-name", "secret-launch".into())]),
        (allowed.clone(), vec![("mcp-name", b64("secret-launch"))]),
        (
            allowed.clone(),
            vec![("mcp-name", "GITHUB-LIST_ISSUES".into())],
        ),
        (
            allowed.clone(),
            vec![("mcp-name", "=?base64?not base64?=".into())],
        ),
        (allowed.clone(), vec![("mcp-method", "tools/list".into())]),
        (allowed.clone(), vec![("mcp-method", "TOOLS/CALL".into())]),
        (
            allowed.clone(),
            vec![
                ("mcp-name", "github-list_issues".into()),
                ("mcp-name", "secret-launch".into()),
            ],
        ),
        (
            allowed.clone(),
            vec![
                ("mcp-method", "tools/call".into()),
                ("mcp-method", "tools/list".into()),
            ],
        ),
        // the header names the allowed tool, the body the forbidden one
        (
            forbidden.clone(),
            vec![("mcp-name", "github-list_issues".into())],
        ),
        (
            forbidden.clone(),
            vec![("mcp-name", b64("github-list_issues"))],
        ),
        (forbidden.clone(), vec![("mcp-method", "tools/list".into())]),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_owned(),
            vec![
                ("mcp-method", "tools/call".into()),
                ("mcp-name", "secret-launch".into()),
            ],
        ),
    ];
    for (body, headers) in &cases {
        let mut req = t.post("sk-mallory", body.clone());
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        t.attempt(&format!("{body} {headers:?}"), req).await;
    }
    t.assert_nothing_ran("Mcp-Method / Mcp-Name header tricks", cases.len());
}

#[tokio::test]
async fn encoded_and_dot_segment_paths() {
    let t = target(Mode::StatelessJson).await;
    let paths = [
        "/secret/../mcp",
        "/mcp/secret/..",
        "/mcp/%2e%2e",
        "/%2E%2e/mcp",
        "/mcp/public%2F..%2Fsecret",
        "/mcp/public%2fsecret",
        "/public/..%2fsecret/mcp",
        "/mcp/./secret",
        "/mcp/%73ecret",
        "/mcp/secret",
        "/secret/mcp",
        "/public,secret/mcp",
        "/mcp/public,secret",
        "/mcp/vault",
        "/mcp/public,,secret",
        "/mcp/%00",
        "/mcp/public%00secret",
    ];
    let bodies = [call("secret-launch"), call("github-delete_repo")];
    let mut sent = 0;
    for path in paths {
        for body in &bodies {
            let reply = t.raw(&raw_post(path, "", body)).await;
            let status: u16 = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            assert!(
                (400..500).contains(&status) || reply.contains("\"isError\":true"),
                "{path}: {reply}"
            );
            sent += 1;
        }
    }
    // Listing under every path shows nothing forbidden either.
    for path in paths {
        let reply = t
            .raw(&raw_post(
                path,
                "",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            ))
            .await;
        for f in FORBIDDEN {
            assert!(!reply.contains(f), "{path} listed {f}: {reply}");
        }
        sent += 1;
    }
    t.assert_nothing_ran("encoded and dot-segment paths", sent);
}

/// A scoping path that a normalising proxy in front would read as another path (nginx merges
/// slashes, RFC 3986 decodes encoded unreserved characters) is refused with 400 before any MCP
/// work: one row per form, for a call and for a list.
#[tokio::test]
async fn non_canonical_scoping_paths_get_400() {
    let t = target(Mode::StatelessJson).await;
    let rows = [
        "//public/mcp",
        "/mcp//public",
        "/public//mcp",
        "//mcp",
        "/mcp//",
        "/mcp/public//x",
        "///mcp",
        "/public/%6Dcp",
        "/%70ublic/mcp",
        "/mcp/%70ublic",
    ];
    let bodies = [
        call("public-ping"),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_owned(),
    ];
    let mut sent = 0;
    for path in rows {
        for body in &bodies {
            let reply = t.raw(&raw_post(path, "", body)).await;
            assert!(reply.starts_with("HTTP/1.1 400"), "{path}: {reply}");
            assert!(reply.contains("not in canonical form"), "{path}: {reply}");
            assert!(!reply.contains("\"tools\""), "{path} listed: {reply}");
            sent += 1;
        }
    }
    t.assert_nothing_ran("non-canonical scoping paths", sent);
}

#[tokio::test]
async fn scope_end_user_and_agent_headers_never_widen() {
    let t = target(Mode::StatelessJson).await;
    let header_sets: Vec<Vec<(&str, &str)>> = vec![
        vec![("x-mcp-servers", "secret")],
        vec![("x-mcp-servers", "public, secret")],
        vec![("x-mcp-servers", "vault")],
        vec![("x-mcp-servers", "*")],
        vec![("x-mcp-servers", "jira")],
        vec![("x-mcp-servers", "github"), ("x-mcp-servers", "secret")],
        vec![("x-mcp-servers", "SECRET")],
        vec![("x-litellm-end-user-id", "eve")],
        vec![("x-litellm-agent-id", "auditor")],
        vec![
            ("x-litellm-end-user-id", "eve"),
            ("x-litellm-agent-id", "auditor"),
            ("x-mcp-servers", "secret"),
        ],
        vec![("x-litellm-end-user-id", "nobody-configured")],
        vec![("x-litellm-api-key", "sk-alice")], // a second key header
        vec![("authorization", "Bearer sk-alice")],
        vec![("authorization", "Bearer sk-admin")],
    ];
    let mut sent = 0;
    for headers in &header_sets {
        for f in FORBIDDEN {
            let mut req = t.post("sk-mallory", call(f));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            t.attempt(&format!("{f} {headers:?}"), req).await;
            sent += 1;
        }
        t.list_is_clean(&format!("{headers:?}"), headers).await;
        sent += 1;
    }
    // The end user and the agent narrow: with them mallory still sees her own tools only.
    assert!(
        t.list_is_clean("eve", &[("x-litellm-end-user-id", "eve")])
            .await
            > 0
    );
    t.assert_nothing_ran("scope, end-user and agent headers", sent);
}

#[tokio::test]
async fn oversized_deep_and_malformed_bodies() {
    let t = target(Mode::StatelessJson).await;
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"github-list_issues","arguments":{{"pad":"{}"}}}}}}"#,
        "x".repeat(5 << 20)
    );
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"github-list_issues","arguments":{{"a":{}1{}}}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let mut bodies: Vec<Vec<u8>> = vec![huge.into_bytes(), deep.into_bytes()];
    for s in [
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret-launch"}}]"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret-launch"}} {"x":1}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-list_issues"}}{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"secret-launch"}}"#,
        "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"secret-launch\"}}",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret-launch",}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret-launch"}/*c*/}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["secret-launch"]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["secret-launch"]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":null}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-list_issues","arguments":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-list_issues","arguments":{"n":1e999}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-list_issues","arguments":{"s":"\ud800"}}}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"secret-launch"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret-launch"}"#,
        "",
        "null",
    ] {
        bodies.push(s.as_bytes().to_vec());
    }
    bodies.push(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"secret-\xff\"}}".to_vec());
    for b in &bodies {
        let label = String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned();
        t.attempt(&label, t.post("sk-mallory", b.clone())).await;
    }
    // A gzip body the layers cannot read is refused, not forwarded unread.
    t.attempt(
        "gzip",
        t.post("sk-mallory", vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0])
            .header("content-encoding", "gzip"),
    )
    .await;
    t.assert_nothing_ran("oversized, deep and malformed bodies", bodies.len() + 1);
}

#[tokio::test]
async fn slow_loris_bodies_never_reach_the_server_early() {
    let t = target(Mode::StatelessJson).await;
    let body = call("secret-launch");
    let tail = &body[body.len() / 2..];
    let request = raw_post("/mcp", "", &body);
    let split = request.len() - tail.len();
    // Trickled: half, a pause, byte by byte; the decision waits for the whole body.
    let mut tcp = tokio::net::TcpStream::connect(t.running.addr)
        .await
        .unwrap();
    tcp.write_all(&request[..split]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(t.server.executions.all().is_empty());
    for b in tail.as_bytes() {
        tcp.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("\"isError\":true"), "{reply}");
    // Abandoned half-way, with the allowed tool's name already sent: nothing runs, ever.
    let allowed = call("github-list_issues");
    let request = raw_post("/mcp", "", &allowed);
    let mut tcp = tokio::net::TcpStream::connect(t.running.addr)
        .await
        .unwrap();
    tcp.write_all(&request[..request.len() - 3]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.assert_nothing_ran("slow-loris bodies", 2);
}

#[tokio::test]
async fn replayed_forged_and_foreign_session_ids() {
    let t = target(Mode::StatefulJson).await;
    let url = t.running.url("/mcp");
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"0"}}}"#;
    let open = |key: &'static str| {
        let http = t.http.clone();
        let url = url.clone();
        async move {
            let r = mcp_post(&http, &url, key, None)
                .body(init)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
            mcp_post(&http, &url, key, Some(&sid))
                .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
                .send()
                .await
                .unwrap();
            sid
        }
    };
    let alices = open("sk-alice").await;
    let mallorys = open("sk-mallory").await;
    let mut sent = 0;
    // alice's session, mallory's key: alice may run secret-launch, mallory may not borrow that.
    for body in [call("secret-launch"), call("github-list_issues")] {
        let r = mcp_post(&t.http, &url, "sk-mallory", Some(&alices))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{body}");
        sent += 1;
    }
    // Forged and mangled ids.
    for sid in [
        "00000000-0000-0000-0000-000000000000".to_owned(),
        format!("{alices} "),
        alices.to_uppercase(),
        format!("{alices}x"),
        String::new(),
    ] {
        let r = mcp_post(&t.http, &url, "sk-mallory", None)
            .header("mcp-session-id", sid.as_str())
            .body(call("secret-launch"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{sid:?}: {}", r.status());
        sent += 1;
    }
    // Replayed after the owner ended it.
    let r = t
        .http
        .delete(&url)
        .header("x-litellm-api-key", "sk-alice")
        .header("mcp-session-id", alices.as_str())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    for key in ["sk-alice", "sk-mallory"] {
        let r = mcp_post(&t.http, &url, key, Some(&alices))
            .body(call("secret-launch"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{key}");
        sent += 1;
    }
    // mallory's own session, asked to run what only alice may: refused as any call.
    t.attempt(
        "own session",
        mcp_post(&t.http, &url, "sk-mallory", Some(&mallorys)).body(call("secret-launch")),
    )
    .await;
    sent += 1;
    // GET streams and DELETE of someone else's session.
    let r = t
        .http
        .get(&url)
        .header("x-litellm-api-key", "sk-mallory")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", mallorys.as_str())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "her own stream");
    drop(r);
    let other = open("sk-alice").await;
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = t
            .http
            .request(method.clone(), &url)
            .header("x-litellm-api-key", "sk-mallory")
            .header("accept", "text/event-stream")
            .header("mcp-session-id", other.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method}");
        sent += 1;
    }
    // alice's session survived mallory's DELETE attempt.
    let r = mcp_post(&t.http, &url, "sk-alice", Some(&other))
        .body(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    t.assert_nothing_ran("replayed, forged and foreign session ids", sent);
}

/// Standard base64 with padding, for the `=?base64?…?=` header form.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
