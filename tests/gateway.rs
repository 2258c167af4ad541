//! The gateway end to end: real rmcp upstream servers over loopback (streamable HTTP), a stdio
//! child process, a legacy HTTP+SSE upstream, the layers in front, rmcp's client driving it.
#![cfg(feature = "gateway")]
#![allow(deprecated)] // sampling is deprecated in the newest protocol; upstreams still use it

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::gateway::{Gateway, UpstreamSpec, UpstreamTransport};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Upstreams {
    github: RecordingServer,
    wiki: RecordingServer,
    _running: Vec<Running>,
    urls: Vec<String>,
}

async fn upstreams() -> Upstreams {
    let github = RecordingServer::new(
        vec![
            tool("create_issue", &["title", "body", "labels"]),
            tool("list_issues", &[]),
            tool("delete_repo", &["repo"]),
            tool("headers", &[]),
            tool("search", &["q"]),
        ],
        &["triage"],
        &[],
    );
    let wiki = RecordingServer::new(
        vec![
            tool("read_wiki_contents", &["status", "limit"]),
            tool("headers", &[]),
            tool("search", &["q"]),
            tool("slow", &[]),
            tool("progress", &[]),
            tool("sample", &[]),
        ],
        &[],
        &["doc://home"],
    );
    let (running, urls) = serve_each(&[&github, &wiki]).await;
    Upstreams {
        github,
        wiki,
        _running: running,
        urls,
    }
}

/// Serves each server on its own loopback port at `/mcp` (stateful, event-stream replies).
async fn serve_each(servers: &[&RecordingServer]) -> (Vec<Running>, Vec<String>) {
    let mut running = Vec::new();
    let mut urls = Vec::new();
    for s in servers {
        let ct = CancellationToken::new();
        let r = serve(
            axum::Router::new()
                .nest_service("/mcp", mcp_service((*s).clone(), Mode::StatefulSse, &ct)),
            ct,
        )
        .await;
        urls.push(r.url("/mcp"));
        running.push(r);
    }
    (running, urls)
}

/// Calls `name` (no arguments) until it succeeds, for up to two seconds; the last outcome.
async fn call_until_ok(client: &Client, name: &str) -> Result<String, String> {
    let mut last = Err(String::new());
    for _ in 0..20 {
        last = call(client, name, json!({})).await;
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

fn config(up: &Upstreams, extra: &str) -> Config {
    Config::from_json_str(&config_doc(up, extra)).unwrap()
}

/// [`config`] with the upstreams spoken to with the initialize handshake, for what exists only
/// there: upstream sessions, and an upstream's requests in the middle of a call (2026-07-28,
/// which the default discovers and rmcp speaks, returns input-required results instead).
fn handshake_config(up: &Upstreams, extra: &str) -> Config {
    let doc = config_doc(up, extra).replace(
        r#""url": ""#,
        r#""protocol_version": "2025-11-25", "url": ""#,
    );
    Config::from_json_str(&doc).unwrap()
}

fn config_doc(up: &Upstreams, extra: &str) -> String {
    format!(
        r#"{{
      "general_settings": {{"master_key": "sk-admin", "enable_mcp_registry": true{extra}}},
      "mcp_servers": {{
        "github": {{"url": "{gh}", "alias": "gh", "disallowed_tools": ["delete_repo"],
                    "allowed_params": {{"create_issue": ["title", "body"]}},
                    "auth_type": "bearer_token", "auth_value": "gh-secret-token",
                    "extra_headers": ["x-request-id", "authorization"], "static_headers": {{"x-team": "platform"}}}},
        "wiki":   {{"url": "{wiki}", "timeout": 1}},
        "down":   {{"url": "http://127.0.0.1:9/mcp", "timeout": 2}}
      }},
      "keys": [
        {{"key": "sk-alice", "key_alias": "alice", "object_permission": {{"mcp_servers": ["github", "wiki"], "mcp_tool_permissions": {{"github": ["create_issue", "list_issues", "headers"]}}}}}},
        {{"key": "sk-bob", "key_alias": "bob", "object_permission": {{"mcp_servers": ["wiki"]}}}},
        {{"key": "sk-carol", "key_alias": "carol"}}
      ]
    }}"#,
        gh = up.urls[0],
        wiki = up.urls[1]
    )
}

async fn gateway_with(
    config: &Config,
    f: impl FnOnce(mcp_gatekeeper::gateway::GatewayBuilder) -> mcp_gatekeeper::gateway::GatewayBuilder,
) -> (Running, Gateway) {
    let gk = Gatekeeper::new(config.policy().unwrap());
    let gateway = f(Gateway::from_config(config, gk).unwrap())
        .build()
        .unwrap();
    let router = gateway.router(gateway.gatekeeper().layer());
    (serve(router, CancellationToken::new()).await, gateway)
}

#[tokio::test]
async fn callers_see_and_call_exactly_their_tools_across_upstreams() {
    let up = upstreams().await;
    let (gw, _) = gateway_with(&config(&up, ""), |b| b).await;
    let url = gw.url("/mcp");
    let alice = connect(&url, &[("x-litellm-api-key", "sk-alice")])
        .await
        .unwrap();
    assert_eq!(
        tool_names(&alice).await,
        [
            "github-create_issue",
            "github-headers",
            "github-list_issues",
            "wiki-headers",
            "wiki-progress",
            "wiki-read_wiki_contents",
            "wiki-sample",
            "wiki-search",
            "wiki-slow"
        ]
    );
    assert!(
        call(&alice, "github-create_issue", json!({"title": "t"}))
            .await
            .unwrap()
            .starts_with("ran create_issue")
    );
    assert!(
        call(&alice, "github-search", json!({"q": "x"}))
            .await
            .is_err(),
        "outside alice's tool permissions"
    );
    assert!(
        call(
            &alice,
            "github-create_issue",
            json!({"title": "t", "labels": "x"})
        )
        .await
        .is_err()
    );
    assert!(call(&alice, "down-anything", json!({})).await.is_err());
    // Upstreams see bare names, and nothing refused reached them.
    assert_eq!(up.github.executions.names(), ["create_issue"]);
    let bob = connect(&url, &[("x-litellm-api-key", "sk-bob")])
        .await
        .unwrap();
    assert_eq!(
        tool_names(&bob).await,
        [
            "wiki-headers",
            "wiki-progress",
            "wiki-read_wiki_contents",
            "wiki-sample",
            "wiki-search",
            "wiki-slow"
        ]
    );
    assert!(call(&bob, "github-list_issues", json!({})).await.is_err());
    assert_eq!(up.github.executions.names(), ["create_issue"]);
    // Prompts and resources are merged and routed the same way.
    let prompts: Vec<String> = alice
        .list_all_prompts()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(prompts, ["github-triage"]);
    let resources: Vec<String> = bob
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(resources, ["wiki-doc://home"]);
    let read = bob
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "wiki-doc://home",
        ))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&read.contents[0]).unwrap()["uri"],
        "wiki-doc://home"
    );
    assert_eq!(up.wiki.executions.names(), ["read:doc://home"]);
}

#[tokio::test]
async fn one_upstream_session_per_caller_never_shared() {
    let up = upstreams().await;
    let (gw, gateway) = gateway_with(&handshake_config(&up, ""), |b| b).await;
    let url = gw.url("/mcp");
    for _ in 0..3 {
        let alice = connect(&url, &[("x-litellm-api-key", "sk-alice")])
            .await
            .unwrap();
        for _ in 0..3 {
            call(&alice, "github-list_issues", json!({})).await.unwrap();
        }
        alice.cancel().await.unwrap();
    }
    assert_eq!(
        up.github.sessions.load(Ordering::SeqCst),
        1,
        "nine calls by one caller: one upstream session"
    );
    let carol = connect(&url, &[("x-litellm-api-key", "sk-carol")])
        .await
        .unwrap();
    call(&carol, "github-list_issues", json!({})).await.unwrap();
    assert_eq!(
        up.github.sessions.load(Ordering::SeqCst),
        2,
        "another caller gets its own session"
    );
    // Different forwarded credentials for the same key are different upstream sessions too.
    let alice2 = connect(
        &url,
        &[
            ("x-litellm-api-key", "sk-alice"),
            ("x-mcp-github-x-tenant", "t2"),
        ],
    )
    .await
    .unwrap();
    call(&alice2, "github-list_issues", json!({}))
        .await
        .unwrap();
    assert_eq!(up.github.sessions.load(Ordering::SeqCst), 3);
    assert!(gateway.upstream_sessions() >= 3);
}

#[tokio::test]
async fn a_down_or_hanging_upstream_hides_nothing_else() {
    let up = upstreams().await;
    let (gw, _) = gateway_with(&config(&up, ""), |b| b).await;
    let carol = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-carol")])
        .await
        .unwrap();
    // A guard against hanging forever, not a timing assertion: the upstream timeouts end it.
    let names = tokio::time::timeout(Duration::from_secs(60), tool_names(&carol))
        .await
        .expect("a hanging upstream must not hang the list");
    assert!(
        names.contains(&"github-list_issues".to_owned())
            && names.contains(&"wiki-search".to_owned()),
        "{names:?}"
    );
    // A call that hangs upstream times out (1 s) without blocking calls to others.
    let slow = tokio::spawn({
        let url = gw.url("/mcp");
        async move {
            let c = connect(&url, &[("x-litellm-api-key", "sk-carol")])
                .await
                .unwrap();
            call(&c, "wiki-slow", json!({})).await
        }
    });
    assert!(call(&carol, "github-list_issues", json!({})).await.is_ok());
    let slow = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .unwrap()
        .unwrap();
    assert!(slow.unwrap_err().contains("timed out"));
    // The upstream is told the call was given up: its tool stops too.
    let told = async {
        while up.wiki.cancelled.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), told)
        .await
        .expect("a call that timed out is cancelled upstream");
    assert!(
        call(&carol, "wiki-search", json!({"q": "x"})).await.is_ok(),
        "the upstream still serves other calls"
    );
}

#[tokio::test]
async fn credentials_reach_only_their_server_and_the_gateway_key_never() {
    let up = upstreams().await;
    let (gw, _) = gateway_with(&config(&up, ""), |b| b).await;
    let carol = connect(
        &gw.url("/mcp"),
        &[
            ("x-litellm-api-key", "sk-carol"),
            ("x-mcp-github-x-tenant", "acme"),
            ("x-mcp-wiki-authorization", "Bearer wiki-user-token"),
            ("x-mcp-auth", "Bearer client-side"),
            ("x-request-id", "req-7"),
            ("x-team", "spoofed"),
        ],
    )
    .await
    .unwrap();
    let headers = |v: String| serde_json::from_str::<Value>(&v).unwrap();
    let gh = headers(call(&carol, "github-headers", json!({})).await.unwrap());
    let wiki = headers(call(&carol, "wiki-headers", json!({})).await.unwrap());
    // github: its own credential wins; static headers win; extra headers copied; its own x-mcp-github-*.
    assert_eq!(gh["authorization"], "Bearer gh-secret-token");
    assert_eq!(gh["x-team"], "platform");
    assert_eq!(gh["x-request-id"], "req-7");
    assert_eq!(gh["x-tenant"], "acme");
    // wiki has no credential of its own: its x-mcp-wiki-authorization, else x-mcp-auth.
    assert_eq!(wiki["authorization"], "Bearer wiki-user-token");
    assert!(
        wiki.get("x-tenant").is_none()
            && wiki.get("x-request-id").is_none()
            && wiki.get("x-team").is_none()
    );
    for h in [&gh, &wiki] {
        let all = h.to_string();
        assert!(
            !all.contains("sk-carol"),
            "the gateway key never reaches an upstream: {all}"
        );
        assert!(h.get("x-litellm-api-key").is_none());
    }
    // Without a per-server header, x-mcp-auth goes to servers without their own credential.
    let dave = connect(
        &gw.url("/mcp"),
        &[
            ("x-litellm-api-key", "sk-carol"),
            ("x-mcp-auth", "Bearer client-side"),
        ],
    )
    .await
    .unwrap();
    let wiki = headers(call(&dave, "wiki-headers", json!({})).await.unwrap());
    assert_eq!(wiki["authorization"], "Bearer client-side");
    let gh = headers(call(&dave, "github-headers", json!({})).await.unwrap());
    assert_eq!(gh["authorization"], "Bearer gh-secret-token");
    // A caller who puts the gateway key in Authorization does not leak it through extra_headers.
    let erin = connect(&gw.url("/mcp"), &[("authorization", "Bearer sk-carol")])
        .await
        .unwrap();
    let gh = headers(call(&erin, "github-headers", json!({})).await.unwrap());
    assert_eq!(gh["authorization"], "Bearer gh-secret-token");
    let wiki = headers(call(&erin, "wiki-headers", json!({})).await.unwrap());
    assert!(!wiki.to_string().contains("sk-carol"), "{wiki}");
}

fn stdio_binary() -> Option<std::path::PathBuf> {
    // Cargo builds examples for `cargo test`; they sit next to the test's deps directory.
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?.join("examples");
    let bin = dir.join(format!("stdio_upstream{}", std::env::consts::EXE_SUFFIX));
    bin.exists().then_some(bin)
}

#[tokio::test]
async fn a_stdio_upstream_runs_and_restarts_after_a_crash() {
    let bin = stdio_binary().expect("the stdio_upstream example is built with the tests");
    let up = upstreams().await;
    let (gw, _) = gateway_with(&config(&up, ""), |b| {
        b.upstream(
            "github",
            UpstreamSpec::new(UpstreamTransport::Stdio {
                command: bin.display().to_string(),
                args: vec![],
                env: vec![],
            }),
        )
    })
    .await;
    let carol = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-carol")])
        .await
        .unwrap();
    let names = tool_names(&carol).await;
    assert!(names.contains(&"github-echo".to_owned()), "{names:?}");
    assert_eq!(
        call(&carol, "github-echo", json!({"message": "hi"}))
            .await
            .unwrap(),
        "hi"
    );
    let pid = call(&carol, "github-pid", json!({})).await.unwrap();
    assert!(call(&carol, "github-crash", json!({})).await.is_err());
    // The crashed child is replaced on the next use.
    let new_pid = call_until_ok(&carol, "github-pid").await.unwrap();
    assert_ne!(pid, new_pid, "a new process answers");
}

/// A minimal legacy HTTP+SSE MCP server (protocol 2024-11-05): enough to test the client.
async fn legacy_sse_upstream() -> (Running, Arc<AtomicUsize>) {
    legacy_sse_upstream_on("127.0.0.1:0".parse().unwrap()).await
}

async fn legacy_sse_upstream_on(addr: std::net::SocketAddr) -> (Running, Arc<AtomicUsize>) {
    let (router, calls) = legacy_sse_router();
    (
        serve_on(addr, router, CancellationToken::new()).await,
        calls,
    )
}

#[tokio::test]
async fn a_legacy_sse_upstream_is_reached_with_our_own_client() {
    let up = upstreams().await;
    let (legacy, calls) = legacy_sse_upstream().await;
    let (gw, _) = gateway_with(&config(&up, ""), |b| {
        b.upstream(
            "wiki",
            UpstreamSpec::new(UpstreamTransport::Sse(legacy.url("/sse"))),
        )
    })
    .await;
    let bob = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-bob")])
        .await
        .unwrap();
    assert_eq!(tool_names(&bob).await, ["wiki-legacy_echo"]);
    assert_eq!(
        call(&bob, "wiki-legacy_echo", json!({"message": "hi"}))
            .await
            .unwrap(),
        "legacy says \"hi\""
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unprefixed_names_withhold_collisions() {
    let up = upstreams().await;
    let (gw, gateway) = gateway_with(&config(&up, r#", "tool_prefix": "never""#), |b| b).await;
    let carol = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-carol")])
        .await
        .unwrap();
    // Before anyone listed, a bare name cannot be placed: refused, never guessed.
    assert!(call(&carol, "list_issues", json!({})).await.is_err());
    // Once the gateway indexed its upstreams, a client with pinned names can call at once.
    gateway.refresh_names().await;
    assert!(call(&carol, "list_issues", json!({})).await.is_ok());
    assert!(
        call(&carol, "search", json!({"q": "x"})).await.is_err(),
        "a collision stays refused"
    );
    let names = tool_names(&carol).await;
    // `search` and `headers` are offered by both servers: withheld, never last-writer-wins.
    assert_eq!(
        names,
        [
            "create_issue",
            "list_issues",
            "progress",
            "read_wiki_contents",
            "sample",
            "slow"
        ]
    );
    assert!(call(&carol, "search", json!({"q": "x"})).await.is_err());
    assert!(
        call(&carol, "create_issue", json!({"title": "x"}))
            .await
            .is_ok()
    );
    assert!(
        up.wiki.executions.names().is_empty()
            && up.github.executions.names() == ["list_issues", "create_issue"]
    );
}

#[tokio::test]
async fn rest_registry_health_and_the_legacy_bridge_use_the_same_decisions() {
    let up = upstreams().await;
    let (gw, _) = gateway_with(&config(&up, ""), |b| b).await;
    let http = http_client();
    let get = |path: &str, key: Option<&str>| {
        let mut r = http.get(gw.url(path));
        if let Some(k) = key {
            r = r.header("x-litellm-api-key", k);
        }
        r.send()
    };
    let r = get("/mcp-rest/tools/list", Some("sk-bob")).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let mut names: Vec<&str> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "wiki-headers",
            "wiki-progress",
            "wiki-read_wiki_contents",
            "wiki-sample",
            "wiki-search",
            "wiki-slow"
        ]
    );
    assert_eq!(v["error"], Value::Null);
    assert_eq!(
        get("/mcp-rest/tools/list?server_id=github", Some("sk-bob"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        get("/mcp-rest/tools/list", None).await.unwrap().status(),
        401
    );
    let post = |key: &str, body: Value| {
        http.post(gw.url("/mcp-rest/tools/call"))
            .header("x-litellm-api-key", key)
            .json(&body)
            .send()
    };
    let ok = post(
        "sk-alice",
        json!({"server_id": "github", "name": "create_issue", "arguments": {"title": "t"}}),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        ok.json::<Value>().await.unwrap()["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("ran create_issue")
    );
    let params = post("sk-alice", json!({"server_id": "github", "name": "create_issue", "arguments": {"title": "t", "labels": "x"}})).await.unwrap();
    assert_eq!(params.status(), 403);
    assert_eq!(
        params.json::<Value>().await.unwrap()["error"],
        "Parameters ['labels'] are not allowed for tool create_issue. Allowed parameters: ['title', 'body']. Contact proxy admin to allow these parameters."
    );
    assert_eq!(
        post("sk-alice", json!({"server_id": "github", "name": "search"}))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(
            "sk-bob",
            json!({"server_id": "github", "name": "list_issues"})
        )
        .await
        .unwrap()
        .status(),
        403
    );
    let registry: Value = get("/v1/mcp/registry.json", Some("sk-bob"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(registry["servers"].as_array().unwrap().len(), 1);
    assert_eq!(registry["servers"][0]["server"]["name"], "wiki");
    assert!(
        registry["servers"][0]["server"]["remotes"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with("/wiki/mcp")
    );
    assert_eq!(get("/health", None).await.unwrap().status(), 200);
    assert_eq!(up.github.executions.names(), ["create_issue"]);

    // Legacy SSE: the stream announces an endpoint; posts are answered on the stream.
    let mut stream = get("/sse", Some("sk-bob")).await.unwrap();
    assert_eq!(stream.status(), 200);
    let endpoint = legacy_endpoint(&mut stream).await;
    let send = |key: &str, body: Value| {
        http.post(gw.url(&endpoint))
            .header("x-litellm-api-key", key)
            .json(&body)
            .send()
    };
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"0"}}});
    let r = send("sk-bob", init).await.unwrap();
    let status = r.status();
    assert_eq!(status, 202, "{}", r.text().await.unwrap());
    assert_eq!(
        send(
            "sk-carol",
            json!({"jsonrpc":"2.0","id":2,"method":"tools/list"})
        )
        .await
        .unwrap()
        .status(),
        404,
        "another key may not post to bob's stream"
    );
    assert_eq!(send("sk-bob", json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"github-list_issues"}})).await.unwrap().status(), 202);
    assert_eq!(
        send(
            "sk-bob",
            json!({"jsonrpc":"2.0","id":4,"method":"tools/list"})
        )
        .await
        .unwrap()
        .status(),
        202
    );
    let mut events = String::new();
    while !events.contains("\"id\":4") {
        events.push_str(&String::from_utf8_lossy(
            &tokio::time::timeout(Duration::from_secs(5), stream.chunk())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        ));
    }
    assert!(
        events.contains("\"id\":1") && events.contains("serverInfo"),
        "{events}"
    );
    assert!(
        events.contains("\"id\":3") && events.contains("not allowed"),
        "{events}"
    );
    assert!(
        events.contains("wiki-search") && !events.contains("github-list_issues\",\"description"),
        "{events}"
    );
    assert_eq!(up.github.executions.names(), ["create_issue"]);
}

#[tokio::test]
async fn oauth2_client_credentials_are_fetched_cached_and_sent() {
    use axum::extract::State;
    let fetches = Arc::new(AtomicUsize::new(0));
    async fn token(
        State(n): State<Arc<AtomicUsize>>,
        headers: axum::http::HeaderMap,
        body: String,
    ) -> axum::Json<Value> {
        assert!(body.contains("grant_type=client_credentials"), "{body}");
        assert!(
            headers["authorization"]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
        let i = n.fetch_add(1, Ordering::SeqCst);
        axum::Json(
            json!({"access_token": format!("tok-{i}"), "token_type": "Bearer", "expires_in": 3600}),
        )
    }
    let auth = serve(
        axum::Router::new()
            .route("/token", axum::routing::post(token))
            .with_state(Arc::clone(&fetches)),
        CancellationToken::new(),
    )
    .await;
    let up = upstreams().await;
    let doc = format!(
        r#"{{"mcp_servers": {{"wiki": {{"url": "{}", "auth_type": "oauth2", "client_id": "id", "client_secret": "secret", "token_url": "{}", "scopes": ["read"]}}}},
             "keys": [{{"key": "sk-a"}}, {{"key": "sk-b"}}]}}"#,
        up.urls[1],
        auth.url("/token")
    );
    let config = Config::from_json_str(&doc).unwrap();
    let (gw, _) = gateway_with(&config, |b| b).await;
    for key in ["sk-a", "sk-b"] {
        let c = connect(&gw.url("/mcp"), &[("x-litellm-api-key", key)])
            .await
            .unwrap();
        let h: Value =
            serde_json::from_str(&call(&c, "wiki-headers", json!({})).await.unwrap()).unwrap();
        assert_eq!(h["authorization"], "Bearer tok-0");
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "the token is cached across callers"
    );
}

#[tokio::test]
async fn progress_from_an_upstream_reaches_the_caller_under_its_own_token() {
    // Raw HTTP, so the caller's progress token is exactly the one it chose (rmcp's client would
    // pick its own); the gateway's upstream session uses yet another, which must be mapped back.
    let up = upstreams().await;
    let (gw, _) = gateway_with(&config(&up, ""), |b| b).await;
    let http = http_client();
    let post = |session: Option<String>, body: Value| {
        mcp_post(&http, &gw.url("/mcp"), "sk-bob", session.as_deref())
            .json(&body)
            .send()
    };
    let init = post(None, json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}})).await.unwrap();
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.text().await;
    post(
        Some(sid.clone()),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await
    .unwrap();
    // Make the gateway's upstream token counter run ahead of ours.
    for id in 2..5 {
        let _ = post(Some(sid.clone()), json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"wiki-search","arguments":{"q":"x"}}})).await.unwrap().text().await;
    }
    let reply = post(
        Some(sid),
        json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"wiki-progress","_meta":{"progressToken":"bob-token-1"}}}),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let progress: Vec<Value> = reply
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 2, "{reply}");
    for p in &progress {
        assert_eq!(p["params"]["progressToken"], "bob-token-1", "{reply}");
    }
    assert!(
        reply.contains("\"id\":9") && reply.contains("ran progress"),
        "{reply}"
    );
}

#[tokio::test]
async fn health_shows_upstream_failures_to_the_master_key_only() {
    let up = upstreams().await;
    let (gw, _) = gateway_with(&config(&up, ""), |b| b).await;
    let carol = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-carol")])
        .await
        .unwrap();
    let _ = tool_names(&carol).await; // asks every upstream, `down` included
    let public = health_as(&gw, None).await;
    assert_eq!(public, json!({"status": "ok"}));
    let carols = health_as(&gw, Some("sk-carol")).await;
    assert_eq!(
        carols,
        json!({"status": "ok"}),
        "only the master key sees upstream details"
    );
    let admin = health_as(&gw, Some("sk-admin")).await;
    assert_eq!(admin["upstreams"]["down"]["status"], "failing", "{admin}");
    assert!(
        admin["upstreams"]["down"]["last_error"]
            .as_str()
            .unwrap()
            .contains("unavailable")
    );
    assert_eq!(admin["upstreams"]["github"]["status"], "ok");
}

/// An upstream that answers everything with bytes that are not MCP.
async fn garbage_upstream() -> Running {
    let router = axum::Router::new().fallback(|| async {
        (
            [("content-type", "application/json")],
            "this is not JSON-RPC {{{",
        )
    });
    serve(router, CancellationToken::new()).await
}

/// A real upstream whose `reset` tool breaks the connection in the middle of its reply.
async fn resetting_upstream() -> (Running, RecordingServer) {
    use http_body_util::BodyExt;
    let server = RecordingServer::new(vec![tool("reset", &[]), tool("fine", &[])], &[], &[]);
    let ct = CancellationToken::new();
    let mcp = mcp_service(server.clone(), Mode::StatefulSse, &ct);
    let svc = tower::service_fn(move |req: http::Request<axum::body::Body>| {
        let mcp = mcp.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            if bytes.windows(7).any(|w| w == b"\"reset\"") {
                let chunks = futures_util::stream::iter(vec![
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                        b"event: message\ndata: {\"jsonrpc\":",
                    )),
                    Err(std::io::Error::other("connection reset mid-stream")),
                ]);
                let mut r = http::Response::new(axum::body::Body::from_stream(chunks));
                r.headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                return Ok::<_, std::convert::Infallible>(r);
            }
            let req = http::Request::from_parts(parts, axum::body::Body::from(bytes));
            let r = tower::ServiceExt::oneshot(mcp, req).await.unwrap();
            Ok(r.map(axum::body::Body::new))
        }
    });
    (
        serve(axum::Router::new().fallback_service(svc), ct).await,
        server,
    )
}

#[tokio::test]
async fn garbage_and_mid_stream_resets_fail_one_call_and_nothing_else() {
    let up = upstreams().await;
    let garbage = garbage_upstream().await;
    let (resetting, reset_server) = resetting_upstream().await;
    let (gw, _) = gateway_with(&config(&up, ""), |b| {
        b.upstream(
            "down",
            UpstreamSpec::new(UpstreamTransport::Http(garbage.url("/mcp"))),
        )
        .upstream(
            "wiki",
            UpstreamSpec::new(UpstreamTransport::Http(resetting.url("/mcp")))
                .timeout(Duration::from_secs(5)),
        )
    })
    .await;
    let carol = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-carol")])
        .await
        .unwrap();
    let names = tokio::time::timeout(Duration::from_secs(60), tool_names(&carol))
        .await
        .expect("no hang");
    assert!(
        names.contains(&"github-list_issues".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"wiki-reset".to_owned()) && !names.iter().any(|n| n.starts_with("down-")),
        "{names:?}"
    );
    let reset = tokio::time::timeout(
        Duration::from_secs(60),
        call(&carol, "wiki-reset", json!({})),
    )
    .await
    .expect("no hang");
    assert!(
        reset.is_err(),
        "a reset mid-reply is an error for that call: {reset:?}"
    );
    // Everything else goes on: the same upstream (a new session), and the others.
    assert!(call(&carol, "github-list_issues", json!({})).await.is_ok());
    let fine = call_until_ok(&carol, "wiki-fine").await;
    assert!(fine.is_ok(), "{fine:?}");
    assert_eq!(
        reset_server.executions.names(),
        ["fine"],
        "only the fine call ran"
    );
    let admin: Value = http_client()
        .get(gw.url("/health"))
        .header("x-litellm-api-key", "sk-admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin["upstreams"]["down"]["status"], "failing", "{admin}");
}

#[tokio::test]
async fn unlisted_resource_uris_go_by_template_or_to_the_only_server() {
    let docs = RecordingServer::new(
        vec![tool("a", &[])],
        &[],
        &["doc://home", "doc://items/{id}"],
    );
    let notes = RecordingServer::new(vec![tool("b", &[])], &[], &["note://{+path}"]);
    let (_running, urls) = serve_each(&[&docs, &notes]).await;
    let doc = format!(
        r#"{{"general_settings": {{"master_key": "sk-admin", "tool_prefix": "never"}},
            "mcp_servers": {{"docs": {{"url": "{}"}}, "notes": {{"url": "{}"}}}},
            "keys": [{{"key": "sk-d", "object_permission": {{"mcp_servers": ["docs"]}}}}]}}"#,
        urls[0], urls[1]
    );
    let (gw, gateway) = gateway_with(&Config::from_json_str(&doc).unwrap(), |b| b).await;
    gateway.refresh_names().await;
    let read = |client: &Client, uri: &str| {
        let params = rmcp::model::ReadResourceRequestParams::new(uri);
        let peer = client.peer().clone();
        async move { peer.read_resource(params).await.map_err(|e| e.to_string()) }
    };
    let admin = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-admin")])
        .await
        .unwrap();
    // Expansions of each server's templates reach that server; listed URIs as before.
    read(&admin, "doc://items/42").await.unwrap();
    read(&admin, "note://a/b/c").await.unwrap();
    read(&admin, "doc://home").await.unwrap();
    // Matching no template of two reachable servers: refused, never guessed.
    assert!(read(&admin, "other://x").await.is_err());
    assert!(
        read(&admin, "doc://items/4/2").await.is_err(),
        "{{id}} is one segment"
    );
    assert_eq!(
        docs.executions.names(),
        ["read:doc://items/42", "read:doc://home"]
    );
    assert_eq!(notes.executions.names(), ["read:note://a/b/c"]);
    // A caller with one server: an URI no list or template names goes to that server, which
    // answers for it; another server's template stays out of reach.
    let d = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-d")])
        .await
        .unwrap();
    read(&d, "doc://not-yet-created").await.unwrap();
    assert!(read(&d, "note://a").await.is_err());
    assert_eq!(notes.executions.names(), ["read:note://a/b/c"]);
    assert_eq!(
        docs.executions.names().last().map(String::as_str),
        Some("read:doc://not-yet-created")
    );
}

#[tokio::test]
async fn modern_protocol_clients_get_complete_results_from_handshake_upstreams() {
    use rmcp::model::{ProtocolVersion, ResultType};
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
    let up = upstreams().await;
    let (gw, _) = gateway_with(&config(&up, ""), |b| b).await;
    let transport = keyed_transport(&gw.url("/mcp"), "sk-alice");
    let client = ()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap();
    let names = tool_names(&client).await;
    assert!(names.contains(&"github-list_issues".to_owned()));
    assert!(!names.contains(&"github-delete_repo".to_owned()));
    let result = client
        .peer()
        .call_tool(rmcp::model::CallToolRequestParams::new(
            "github-list_issues",
        ))
        .await
        .unwrap();
    // The upstream spoke 2025-11-25 and sent no resultType; 2026-07-28 requires one.
    assert_eq!(result.result_type, Some(ResultType::COMPLETE));
    assert!(
        client
            .peer()
            .call_tool(rmcp::model::CallToolRequestParams::new(
                "github-delete_repo"
            ))
            .await
            .map_or(true, |r| r.is_error == Some(true))
    );
    assert_eq!(up.github.executions.names(), ["list_issues"]);
}

/// A client that answers sampling with a fixed text, on any protocol.
#[derive(Clone)]
struct Sampler(&'static str);

impl rmcp::ClientHandler for Sampler {
    async fn create_message(
        &self,
        _: rmcp::model::CreateMessageRequestParams,
        _: rmcp::service::RequestContext<rmcp::RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::model::ErrorData> {
        Ok(rmcp::model::CreateMessageResult::new(
            rmcp::model::SamplingMessage::assistant_text(self.0),
            "m".into(),
        ))
    }

    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut caps = rmcp::model::ClientCapabilities::default();
        caps.sampling = Some(Default::default());
        rmcp::model::ClientConfig::new(caps, rmcp::model::Implementation::new("sampler", "0"))
    }
}

/// rmcp's streamable HTTP transport to `url`, sending `key` as the gateway key.
async fn modern_client<H: rmcp::ClientHandler>(
    url: &str,
    key: &'static str,
    handler: H,
) -> rmcp::service::RunningService<rmcp::RoleClient, H> {
    use rmcp::model::ProtocolVersion;
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
    let transport = keyed_transport(url, key);
    handler
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn upstream_sampling_reaches_modern_callers_in_rounds_bound_to_the_caller() {
    use rmcp::model::{CallToolRequestParams, CallToolResponse, InputResponses};
    let up = upstreams().await;
    let (gw, _) = gateway_with(&handshake_config(&up, ""), |b| b).await;
    let url = gw.url("/mcp");
    // rmcp's client runs the rounds itself: the upstream's question, asked of a caller on
    // 2026-07-28, comes back in an InputRequiredResult and its answer reaches the upstream.
    let alice = modern_client(&url, "sk-alice", Sampler("from alice")).await;
    let bob = modern_client(&url, "sk-bob", Sampler("from bob")).await;
    let (a, b) = tokio::join!(
        alice.call_tool(CallToolRequestParams::new("wiki-sample")),
        bob.call_tool(CallToolRequestParams::new("wiki-sample")),
    );
    let text = |r: rmcp::model::CallToolResult| r.content[0].as_text().unwrap().text.clone();
    assert_eq!(text(a.unwrap()), "sampled: from alice");
    assert_eq!(text(b.unwrap()), "sampled: from bob");
    // By hand: the state is the caller's own. Another key, another tool, or a made-up state
    // is refused, and the call still completes for its owner.
    let first = alice
        .peer()
        .call_tool_once(CallToolRequestParams::new("wiki-sample"))
        .await
        .unwrap();
    let CallToolResponse::InputRequired(asked) = first else {
        panic!("expected input to be required, got {first:?}");
    };
    let state = asked.request_state.clone().unwrap();
    let key = asked
        .input_requests
        .as_ref()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let mut answers = InputResponses::new();
    answers.insert(
        key,
        serde_json::to_value(rmcp::model::CreateMessageResult::new(
            rmcp::model::SamplingMessage::assistant_text("by hand"),
            "m".into(),
        ))
        .unwrap(),
    );
    let retry = |name: &str, state: &str| {
        CallToolRequestParams::new(name.to_owned())
            .with_request_state(state)
            .with_input_responses(answers.clone())
    };
    let stolen = bob
        .peer()
        .call_tool_once(retry("wiki-sample", &state))
        .await;
    assert!(stolen.is_err(), "bob used alice's state: {stolen:?}");
    let made_up = alice
        .peer()
        .call_tool_once(retry("wiki-sample", "0123"))
        .await;
    assert!(made_up.is_err());
    let other_tool = alice
        .peer()
        .call_tool_once(retry("wiki-progress", &state))
        .await;
    assert!(other_tool.is_err(), "a state belongs to one tool");
    // None of that took the call from alice: her answer reaches the upstream; once used, the
    // state is gone.
    let done = alice
        .peer()
        .call_tool_once(retry("wiki-sample", &state))
        .await
        .unwrap();
    let CallToolResponse::Complete(done) = done else {
        panic!("expected the result, got {done:?}");
    };
    assert_eq!(text(done), "sampled: by hand");
    let replayed = alice
        .peer()
        .call_tool_once(retry("wiki-sample", &state))
        .await;
    assert!(replayed.is_err(), "a state is used once");
    // Forbidden tools are refused before any round starts.
    assert!(
        bob.call_tool(CallToolRequestParams::new("github-sample"))
            .await
            .map_or(true, |r| r.is_error == Some(true))
    );
    assert!(
        !up.github
            .executions
            .names()
            .contains(&"github-sample".to_owned())
    );
}

#[tokio::test]
async fn a_restarted_upstream_is_listed_again_at_once() {
    // A legacy SSE upstream restarts: the gateway's pooled session (its event stream still
    // open to the old process) is unknown to the new one.
    let (first, _) = legacy_sse_upstream().await;
    let addr = first.addr;
    let doc = format!(
        r#"{{"general_settings": {{"master_key": "sk-admin"}},
            "mcp_servers": {{"old": {{"url": "{}", "transport": "sse"}}}}}}"#,
        first.url("/sse")
    );
    let (gw, _) = gateway_with(&Config::from_json_str(&doc).unwrap(), |b| b).await;
    let admin = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-admin")])
        .await
        .unwrap();
    assert_eq!(tool_names(&admin).await, ["old-legacy_echo"]);
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_second, calls) = legacy_sse_upstream_on(addr).await;
    // The first list after the restart still shows the upstream (one retry on a new session),
    // and calls go through.
    assert_eq!(tool_names(&admin).await, ["old-legacy_echo"]);
    assert!(
        call(&admin, "old-legacy_echo", json!({"message": "hi"}))
            .await
            .is_ok()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn upstream_sampling_reaches_handshake_callers_on_the_direct_path() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    let up = upstreams().await;
    let (gw, _) = gateway_with(&handshake_config(&up, ""), |b| b).await;
    let url = gw.url("/mcp");
    let client =
        |key: &'static str, answer: &'static str| Sampler(answer).serve(keyed_transport(&url, key));
    // Two callers at once on the same upstream: each sampling request, arriving on the reply
    // stream of that caller's own call, is answered by that caller.
    let (alice, bob) = tokio::join!(
        client("sk-alice", "alice here"),
        client("sk-bob", "bob here")
    );
    let (alice, bob) = (alice.unwrap(), bob.unwrap());
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            alice.call_tool(CallToolRequestParams::new("wiki-sample")),
            bob.call_tool(CallToolRequestParams::new("wiki-sample")),
        );
        let text = |r: rmcp::model::CallToolResult| r.content[0].as_text().unwrap().text.clone();
        assert_eq!(text(a.unwrap()), "sampled: alice here");
        assert_eq!(text(b.unwrap()), "sampled: bob here");
    }
}

/// The gateway over `up` on a stateless endpoint (where the endpoint answers calls itself), behind the
/// layers, its upstreams spoken to with the handshake.
async fn stateless_gateway(up: &Upstreams, json_response: bool) -> Running {
    // The upstreams' requests in a call are what most of these tests are about: the handshake.
    stateless_gateway_with(handshake_config(up, ""), json_response).await
}

async fn stateless_gateway_with(config: Config, json_response: bool) -> Running {
    use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
    use tower::Layer;
    let gk = Gatekeeper::new(config.policy().unwrap());
    let gateway = Gateway::from_config(&config, gk).unwrap().build().unwrap();
    let mut c = StreamableHttpServerConfig::default();
    c.legacy_session_mode = false;
    c.json_response = json_response;
    c.sse_keep_alive = None;
    let service = gateway.gatekeeper().layer().layer(gateway.service(c));
    serve(
        axum::Router::new().fallback_service(service),
        CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn a_stateless_endpoint_answers_calls_answered_by_the_endpoint_as_rmcp_would() {
    let up = upstreams().await;
    let http = http_client();
    // (key, tool, params beyond the name)
    let cases = [
        (
            "sk-alice",
            "github-create_issue",
            json!({"arguments": {"title": "t"}}),
        ),
        ("sk-alice", "github-list_issues", json!({})),
        ("sk-bob", "wiki-search", json!({"arguments": {"q": "x"}})),
        (
            "sk-bob",
            "wiki-progress",
            json!({"_meta": {"progressToken": "bob-1"}}),
        ),
        ("sk-bob", "wiki-progress", json!({})),
        ("sk-alice", "github-headers", json!({"arguments": {}})),
    ];
    // Upstreams spoken to with the handshake, then discovered (rmcp's speak 2026-07-28: the
    // gateway posts the calls of the tools a session listed itself, the others through rmcp's
    // client), each with JSON replies and with event streams.
    let configs = [
        (handshake_config(&up, ""), true),
        (handshake_config(&up, ""), false),
        (config(&up, ""), true),
        (config(&up, ""), false),
    ];
    for (config, json_response) in configs {
        let gw = stateless_gateway_with(config, json_response).await;
        for key in ["sk-alice", "sk-bob"] {
            let listed = mcp_post(&http, &gw.url("/mcp"), key, None)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
                .send()
                .await
                .unwrap();
            assert_eq!(listed.status(), 200);
        }
        for (i, (key, name, extra)) in cases.iter().enumerate() {
            let mut params = extra.clone();
            params["name"] = json!(name);
            let body =
                json!({"jsonrpc": "2.0", "id": i + 7, "method": "tools/call", "params": params});
            let mut seen = Vec::new();
            // rmcp judges any request with an `Origin`: the same call on both paths.
            for origin in [None, Some("http://localhost")] {
                let mut request = mcp_post(&http, &gw.url("/mcp"), key, None).json(&body);
                if let Some(o) = origin {
                    request = request.header("origin", o);
                }
                let reply = request.send().await.unwrap();
                assert_eq!(reply.status(), 200, "{name}");
                let ct = reply.headers()["content-type"].to_str().unwrap().to_owned();
                let text = reply.text().await.unwrap();
                let mut got = messages(&ct, &text);
                // The upstream's headers differ per request in their ids only.
                for m in &mut got {
                    if let Some(t) = m.pointer_mut("/result/content/0/text")
                        && *name == "github-headers"
                    {
                        let mut h: Value = serde_json::from_str(t.as_str().unwrap()).unwrap();
                        h.as_object_mut().unwrap().retain(|k, _| {
                            !["content-length", "mcp-session-id"].contains(&k.as_str())
                        });
                        assert!(h.get("x-litellm-api-key").is_none(), "the key leaked: {h}");
                        assert_eq!(h["authorization"], "Bearer gh-secret-token");
                        *t = json!(h.to_string());
                    }
                }
                seen.push((json_response && !ct.starts_with("text/event-stream"), got));
            }
            assert_eq!(seen[0], seen[1], "{name} (json_response {json_response})");
            let (_, got) = &seen[0];
            let last = got.last().unwrap();
            assert_eq!(last["id"], json!(i + 7), "{name}: {got:?}");
            assert!(last["result"]["content"].is_array(), "{name}: {got:?}");
            assert!(last["result"].get("resultType").is_none(), "{got:?}");
            let progress = got
                .iter()
                .filter(|m| m["method"] == "notifications/progress")
                .count();
            let asked = extra.pointer("/_meta/progressToken").is_some();
            assert_eq!(progress, if asked { 2 } else { 0 }, "{name}: {got:?}");
        }
        // The upstream ran each call once per path, with its bare name and allowed arguments.
        let ran = up.github.executions.names();
        assert_eq!(
            ran.iter().filter(|n| *n == "create_issue").count(),
            2,
            "{ran:?}"
        );
        assert!(
            up.github
                .executions
                .all()
                .iter()
                .all(|(_, args)| args.get("labels").is_none())
        );
        // Refusals come from the layers, before either path: nothing runs.
        up.github.executions.clear();
        for (key, name) in [
            ("sk-alice", "github-delete_repo"),
            ("sk-bob", "github-list_issues"),
            ("sk-alice", "github-create_issue"),
        ] {
            let refused = mcp_post(&http, &gw.url("/mcp"), key, None)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": {"title": "t", "labels": "x"}}}))
                .send()
                .await
                .unwrap();
            let status = refused.status();
            let text = refused.text().await.unwrap();
            // A 403, a JSON-RPC error or LiteLLM's in-band tool error; never a run.
            assert!(
                status == 403
                    || (status == 200
                        && (text.contains("\"error\"") || text.contains("\"isError\":true"))
                        && !text.contains("ran ")),
                "{key} {name}: {status} {text}"
            );
        }
        assert!(up.github.executions.names().is_empty());
        up.github.executions.clear();
        up.wiki.executions.clear();
    }
}

#[tokio::test]
async fn a_stateless_endpoint_refuses_upstream_requests_at_once() {
    // A stateless caller has no session to answer on: the endpoint refuses the upstream's
    // sampling request at once, and the upstream's own answer reaches the caller (rmcp's
    // stateless server would leave the upstream waiting until the upstream's timeout).
    let up = upstreams().await;
    let gw = stateless_gateway(&up, true).await;
    let reply: Value = mcp_post(&http_client(), &gw.url("/mcp"), "sk-bob", None)
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "wiki-sample"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["id"], 3, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("sampling failed") && message.contains("stateless endpoint"),
        "{reply}"
    );
    assert!(!message.contains("timed out"), "{reply}");
    assert!(up.wiki.executions.names().is_empty());
}

/// Calls `name` on session `sid` until it answers: the key's upstream session is open and
/// recorded, so the next calls can be answered by the endpoint (the first may not).
async fn warm(http: &reqwest::Client, url: &str, key: &str, sid: &str, name: &str) {
    for _ in 0..20 {
        let r = mcp_post(http, url, key, Some(sid))
            .json(&json!({"jsonrpc":"2.0","id":0,"method":"tools/call","params":{"name":name,"arguments":{"q":"warm"}}}))
            .send()
            .await
            .unwrap();
        if r.text().await.unwrap().contains("ran ") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never answered");
}

#[tokio::test]
async fn upstream_requests_reach_session_callers_answered_by_the_endpoint_and_only_their_answers_return()
 {
    let up = upstreams().await;
    let (gw, _) = gateway_with(&handshake_config(&up, ""), |b| b).await;
    let http = http_client();
    let url = gw.url("/mcp");
    let bob = raw_session(&http, &url, "sk-bob").await;
    let bob2 = raw_session(&http, &url, "sk-bob").await;
    let carol = raw_session(&http, &url, "sk-carol").await;
    warm(&http, &url, "sk-bob", &bob, "wiki-search").await;
    let mut reply = mcp_post(&http, &url, "sk-bob", Some(&bob))
        .json(
            &json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"wiki-sample"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let mut buf = String::new();
    let seen = read_until(&mut reply, &mut buf, |v| {
        v["method"] == "sampling/createMessage"
    })
    .await;
    let asked = seen
        .last()
        .expect("the upstream's request on the call's stream");
    assert_eq!(asked["method"], "sampling/createMessage", "{seen:?}");
    let ours = asked["id"].as_str().expect("a string id").to_owned();
    assert!(ours.starts_with("gkx-"), "the gateway's own id: {asked}");
    let answer = |id: &str, from: &str| json!({"jsonrpc":"2.0","id":id,"result":{"role":"assistant","content":{"type":"text","text":from},"model":"m"}});
    // The same id from another session of the same key, or from another key, reaches no one:
    // had either reached the upstream, the call would complete with its text.
    for (key, sid, from) in [
        ("sk-bob", &bob2, "from bob's other session"),
        ("sk-carol", &carol, "from carol"),
    ] {
        let r = mcp_post(&http, &url, key, Some(sid))
            .json(&answer(&ours, from))
            .send()
            .await
            .unwrap();
        let _ = r.text().await;
    }
    // The session's own answer does, and the call completes with it.
    let r = mcp_post(&http, &url, "sk-bob", Some(&bob))
        .json(&answer(&ours, "from bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let rest = read_until(&mut reply, &mut buf, |v| v["id"] == 5).await;
    let done = rest.last().expect("the answer");
    assert_eq!(done["id"], 5, "{rest:?}");
    assert_eq!(
        done["result"]["content"][0]["text"], "sampled: from bob",
        "{done}"
    );
    // Answered once: a replay goes to rmcp, which knows no such request.
    let r = mcp_post(&http, &url, "sk-bob", Some(&bob))
        .json(&answer(&ours, "from bob, again"))
        .send()
        .await
        .unwrap();
    let _ = r.text().await;
    assert_eq!(
        up.wiki.executions.names(),
        vec!["search".to_owned(), "sample".to_owned()]
    );
}

#[tokio::test]
async fn a_cancelled_call_answered_by_the_endpoint_ends_and_a_closed_session_is_not_served() {
    let up = upstreams().await;
    let (gw, _) = gateway_with(&config(&up, ""), |b| b).await;
    let http = http_client();
    let url = gw.url("/mcp");
    let bob = raw_session(&http, &url, "sk-bob").await;
    warm(&http, &url, "sk-bob", &bob, "wiki-search").await;
    up.wiki.executions.clear();
    // `slow` never answers; the caller cancels. With the wiki's 1 s timeout, a call that was
    // not cancelled would end in "timed out". Answered by the endpoint, a cancelled call gets no
    // answer at all; through rmcp (an `Origin` sends it there) it ends too, and rmcp still
    // answers, with the cancellation.
    for (id, origin) in [("s-1", None), ("s-2", Some("http://localhost"))] {
        let mut call = mcp_post(&http, &url, "sk-bob", Some(&bob)).json(
            &json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"wiki-slow"}}),
        );
        if let Some(o) = origin {
            call = call.header("origin", o);
        }
        let mut reply = call.send().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = mcp_post(&http, &url, "sk-bob", Some(&bob))
            .json(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":id}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let mut buf = String::new();
        let seen = read_until(&mut reply, &mut buf, |v| v.get("id").is_some()).await;
        let answer = seen.iter().find(|v| v["id"] == id);
        match origin {
            None => assert!(answer.is_none(), "no answer from the endpoint: {seen:?}"),
            Some(_) => assert!(
                answer.is_none_or(|a| a["error"]["message"] == "the request was cancelled"),
                "cancelled, not timed out: {seen:?}"
            ),
        }
    }
    // Either way the upstream is told: its tool sees the cancellation.
    let told = async {
        while up.wiki.cancelled.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), told)
        .await
        .expect("both cancelled calls are cancelled upstream");
    // A closed session is rmcp's to refuse, on either path.
    let r = http
        .delete(&url)
        .header("x-litellm-api-key", "sk-bob")
        .header("mcp-session-id", &bob)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = mcp_post(&http, &url, "sk-bob", Some(&bob))
        .json(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"wiki-search","arguments":{"q":"x"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(up.wiki.executions.names().is_empty());
}

#[tokio::test]
async fn lists_answered_by_the_endpoint_match_rmcp_on_both_kinds_of_endpoint() {
    let up = upstreams().await;
    let (stateful, _) = gateway_with(&config(&up, ""), |b| b).await;
    let stateless = stateless_gateway(&up, true).await;
    let http = http_client();
    for (key, expect_some, expect_none) in [
        ("sk-alice", "github-create_issue", "github-delete_repo"),
        ("sk-bob", "wiki-search", "github-list_issues"),
        ("sk-carol", "wiki-search", "github-delete_repo"),
    ] {
        for (gw, sessions) in [(&stateful, true), (&stateless, false)] {
            let url = gw.url("/mcp");
            let sid = if sessions {
                let sid = raw_session(&http, &url, key).await;
                // The key's upstream sessions open (and are recorded) on a first list.
                let _ = mcp_post(&http, &url, key, Some(&sid))
                    .json(&json!({"jsonrpc":"2.0","id":0,"method":"tools/list"}))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await;
                Some(sid)
            } else {
                None
            };
            let list = |method: &'static str, origin: Option<&'static str>| {
                let mut request = mcp_post(&http, &url, key, sid.as_deref())
                    .json(&json!({"jsonrpc":"2.0","id":"l-1","method":method}));
                if let Some(o) = origin {
                    request = request.header("origin", o);
                }
                async move {
                    let reply = request.send().await.unwrap();
                    assert_eq!(reply.status(), 200, "{method}");
                    let ct = reply.headers()["content-type"].to_str().unwrap().to_owned();
                    messages(&ct, &reply.text().await.unwrap())
                }
            };
            // rmcp judges any request with an `Origin`: the same list on both paths.
            for (method, items) in [
                ("prompts/list", "prompts"),
                ("resources/list", "resources"),
                ("resources/templates/list", "resourceTemplates"),
            ] {
                let answered = list(method, None).await;
                assert_eq!(
                    answered,
                    list(method, Some("http://localhost")).await,
                    "{method}"
                );
                let reply = answered.last().unwrap();
                assert!(reply["result"][items].is_array(), "{method}: {reply}");
            }
            let seen = [
                list("tools/list", None).await,
                list("tools/list", Some("http://localhost")).await,
            ];
            assert_eq!(seen[0], seen[1], "{key} (sessions {sessions})");
            // Asked again, from the same kept lists: the merged answer is remembered, and the
            // same.
            for _ in 0..2 {
                assert_eq!(list("tools/list", None).await, seen[0], "{key}");
            }
            let reply = seen[0].last().unwrap();
            assert_eq!(reply["id"], "l-1", "{reply}");
            let names: Vec<&str> = reply["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap())
                .collect();
            assert!(names.contains(&expect_some), "{key}: {names:?}");
            assert!(!names.contains(&expect_none), "{key}: {names:?}");
            assert!(reply["result"].get("resultType").is_none(), "{reply}");
        }
    }
}

#[tokio::test]
async fn a_reload_between_the_decision_and_the_gateway_keeps_the_decision() {
    // The policy is reloaded (same servers, same keys: a new catalog) after the layers decided
    // and before the gateway routes: the gateway follows the decision it was handed, so what
    // was allowed is served and what was refused stays refused.
    use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
    use tower::Layer;
    let up = upstreams().await;
    let http = http_client();
    for config in [config(&up, ""), handshake_config(&up, "")] {
        let gk = Gatekeeper::new(config.policy().unwrap());
        let gateway = Gateway::from_config(&config, gk).unwrap().build().unwrap();
        let mut c = StreamableHttpServerConfig::default();
        c.legacy_session_mode = false;
        c.json_response = true;
        let reloads = Arc::new(AtomicUsize::new(0));
        let reload = {
            let gk = gateway.gatekeeper().clone();
            let reloads = Arc::clone(&reloads);
            move |r: http::Request<axum::body::Body>| {
                gk.reload(config.policy().unwrap());
                reloads.fetch_add(1, Ordering::SeqCst);
                r
            }
        };
        let service = gateway.gatekeeper().layer().layer(
            tower::ServiceBuilder::new()
                .map_request(reload)
                .service(gateway.service(c)),
        );
        let gw = serve(
            axum::Router::new().fallback_service(service),
            CancellationToken::new(),
        )
        .await;
        let ask = |key: &'static str, method: &'static str, params: Value| {
            let request = mcp_post(&http, &gw.url("/mcp"), key, None)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}));
            async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
        };
        let before = up.github.executions.names().len();
        let reply = ask(
            "sk-alice",
            "tools/call",
            json!({"name": "github-list_issues"}),
        )
        .await;
        assert_eq!(reply["result"]["isError"], false, "{reply}");
        assert_eq!(up.github.executions.names().len(), before + 1);
        let reply = ask("sk-alice", "tools/list", json!({})).await;
        let names: Vec<&str> = reply["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{reply}"))
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(names.contains(&"github-list_issues"), "{names:?}");
        assert!(names.contains(&"wiki-search"), "{names:?}");
        assert!(!names.contains(&"github-delete_repo"), "{names:?}");
        // Bob's refusal was decided by the layers: nothing reaches the upstream.
        let reply = ask(
            "sk-bob",
            "tools/call",
            json!({"name": "github-list_issues"}),
        )
        .await;
        assert!(
            reply["result"]["isError"] == true || reply["error"].is_object(),
            "{reply}"
        );
        assert_eq!(up.github.executions.names().len(), before + 1);
        assert!(
            reloads.load(Ordering::SeqCst) >= 2,
            "the reload ran after the decision"
        );
    }
}
