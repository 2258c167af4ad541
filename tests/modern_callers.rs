//! Callers of protocol 2026-07-28 through the gateway. `subscriptions/listen`: each caller's
//! streams are told only about servers in its grant and scope, and about the resources it
//! named, which it must be allowed to read; upstream announcements reach handshake callers
//! under the names they know. Capabilities: an upstream's request the caller did not declare
//! it can answer fails the call with -32021. The upstreams are spoken to with the handshake
//! (pinned: the default discovers 2026-07-28, where upstreams announce on listen streams and
//! make no requests of their client).
#![cfg(feature = "gateway")]
#![allow(deprecated)] // sampling is deprecated in the newest protocol; upstreams still ask for it

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

struct Setup {
    github: RecordingServer,
    wiki: RecordingServer,
    _upstreams: Vec<Running>,
    gateway: Running,
}

async fn setup() -> Setup {
    let github = RecordingServer::new(
        vec![tool("announce", &[]), tool("list_issues", &[])],
        &[],
        &["gh://readme", "gh://secret"],
    );
    let wiki = RecordingServer::new(
        vec![tool("announce", &[]), tool("sample", &[])],
        &[],
        &["doc://home"],
    );
    let mut upstreams = Vec::new();
    let mut urls = Vec::new();
    for s in [&github, &wiki] {
        let ct = CancellationToken::new();
        let r = serve(
            axum::Router::new()
                .nest_service("/mcp", mcp_service(s.clone(), Mode::StatefulSse, &ct)),
            ct,
        )
        .await;
        urls.push(r.url("/mcp"));
        upstreams.push(r);
    }
    let doc = format!(
        r#"{{
      "general_settings": {{"master_key": "sk-admin"}},
      "mcp_servers": {{"github": {{"url": "{}", "protocol_version": "2025-11-25"}},
                      "wiki": {{"url": "{}", "protocol_version": "2025-11-25"}}}},
      "keys": [
        {{"key": "sk-alice", "object_permission": {{"mcp_servers": ["github", "wiki"]}}}},
        {{"key": "sk-bob", "object_permission": {{"mcp_servers": ["wiki"]}}}}
      ]
    }}"#,
        urls[0], urls[1]
    );
    let (gw, _gateway) = gateway_from_json(&doc).await;
    Setup {
        github,
        wiki,
        _upstreams: upstreams,
        gateway: gw,
    }
}

/// An open listen stream, read past its acknowledgment.
struct Stream {
    reply: reqwest::Response,
    buf: String,
    id: u64,
}

impl Stream {
    async fn open(http: &reqwest::Client, url: &str, key: &str, id: u64, filter: Value) -> Self {
        let reply = modern(
            http,
            url,
            key,
            id,
            "subscriptions/listen",
            json!({"notifications": filter}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(reply.status(), 200);
        let mut stream = Self {
            reply,
            buf: String::new(),
            id,
        };
        let first = stream.next().await;
        assert_eq!(
            first["method"], "notifications/subscriptions/acknowledged",
            "the acknowledgment comes first: {first}"
        );
        assert_eq!(first["params"]["notifications"], filter, "{first}");
        stream
    }

    /// What the stream hears (method and URI) up to and including `last`.
    async fn hear_until(
        &mut self,
        last: (String, Option<String>),
    ) -> Vec<(String, Option<String>)> {
        let mut heard = Vec::new();
        while heard.last() != Some(&last) {
            heard.push(what(&self.next().await));
        }
        heard
    }

    /// The next message; every notification on the stream names it by its request id.
    async fn next(&mut self) -> Value {
        let got = read_until(&mut self.reply, &mut self.buf, |_| true).await;
        let message = got.into_iter().next().expect("the stream ended");
        assert_eq!(
            message["params"]["_meta"][SUBSCRIPTION_ID],
            json!(self.id),
            "{message}"
        );
        message
    }
}

/// Calls `name` as a 2026-07-28 caller and waits for its answer.
async fn call(http: &reqwest::Client, url: &str, key: &str, name: &str) {
    let reply = modern(
        http,
        url,
        key,
        9,
        "tools/call",
        json!({"name": name, "arguments": {}}),
    )
    .send()
    .await
    .unwrap();
    let kind = reply.headers()["content-type"].to_str().unwrap().to_owned();
    let body = reply.text().await.unwrap();
    let answer = messages(&kind, &body).pop().unwrap();
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("ran ")),
        "{answer}"
    );
}

fn what(message: &Value) -> (String, Option<String>) {
    (
        message["method"].as_str().unwrap_or_default().to_owned(),
        message["params"]["uri"].as_str().map(str::to_owned),
    )
}

fn changed(method: &str) -> (String, Option<String>) {
    (format!("notifications/{method}"), None)
}

fn updated(uri: &str) -> (String, Option<String>) {
    (
        "notifications/resources/updated".to_owned(),
        Some(uri.to_owned()),
    )
}

#[tokio::test]
async fn listen_streams_hear_only_what_their_caller_may_see() {
    let s = setup().await;
    let http = http_client();
    let url = s.gateway.url("/mcp");
    let scoped = s.gateway.url("/github/mcp");

    // Bob may not read github's resources: asking to hear about one is refused like a read.
    let refused = modern(
        &http,
        &url,
        "sk-bob",
        1,
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": ["github-gh://readme"]}}),
    )
    .send()
    .await
    .unwrap();
    let kind = refused.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let refusal = messages(&kind, &refused.text().await.unwrap())
        .pop()
        .unwrap();
    assert!(
        refusal["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("github-gh://readme") && m.contains("not allowed")),
        "{refusal}"
    );
    assert!(s.github.executions.names().is_empty());

    let mut all = Stream::open(
        &http,
        &url,
        "sk-alice",
        11,
        json!({"toolsListChanged": true, "resourceSubscriptions": ["github-gh://readme"]}),
    )
    .await;
    let mut github_only = Stream::open(
        &http,
        &scoped,
        "sk-alice",
        12,
        json!({"toolsListChanged": true, "resourceSubscriptions": ["github-gh://readme"]}),
    )
    .await;
    let mut bob = Stream::open(
        &http,
        &url,
        "sk-bob",
        13,
        json!({"toolsListChanged": true, "resourceSubscriptions": ["wiki-doc://home"]}),
    )
    .await;
    // The gateway asked the upstreams to tell it about the named resources, once each.
    for _ in 0..50 {
        if s.wiki
            .executions
            .names()
            .contains(&"subscribe:doc://home".to_owned())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.github.executions.names(), ["subscribe:gh://readme"]);
    assert_eq!(s.wiki.executions.names(), ["subscribe:doc://home"]);

    // Wiki changes (it tells every session it has, alice's and bob's).
    call(&http, &url, "sk-alice", "wiki-announce").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Then github does.
    call(&http, &url, "sk-alice", "github-announce").await;

    // Alice, unscoped: both servers' tool changes, and only the resource she named (not
    // gh://secret, not wiki's, and no prompt changes: she did not ask for them).
    let heard = all.hear_until(updated("github-gh://readme")).await;
    assert_eq!(
        heard,
        [
            changed("tools/list_changed"),
            changed("tools/list_changed"),
            updated("github-gh://readme")
        ]
    );
    // Alice on /github/mcp: nothing of wiki's.
    let heard = github_only.hear_until(updated("github-gh://readme")).await;
    assert_eq!(
        heard,
        [changed("tools/list_changed"), updated("github-gh://readme")]
    );
    // Bob: wiki's changes only, under the name he knows.
    let heard = bob.hear_until(updated("wiki-doc://home")).await;
    assert_eq!(
        heard,
        [changed("tools/list_changed"), updated("wiki-doc://home")]
    );

    // When the last stream naming a resource closes, the upstream subscription ends.
    drop(all);
    drop(github_only);
    for _ in 0..100 {
        if s.github.executions.names().len() > 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        s.github.executions.names(),
        [
            "subscribe:gh://readme",
            "announce",
            "unsubscribe:gh://readme"
        ]
    );
}

#[tokio::test]
async fn handshake_callers_hear_of_resource_updates_by_the_uri_they_subscribed_to() {
    use rmcp::ServiceExt;
    #[derive(Clone)]
    struct Heard(tokio::sync::mpsc::UnboundedSender<String>);
    impl rmcp::ClientHandler for Heard {
        async fn on_resource_updated(
            &self,
            params: rmcp::model::ResourceUpdatedNotificationParam,
            _: rmcp::service::NotificationContext<rmcp::RoleClient>,
        ) {
            let _ = self.0.send(params.uri);
        }
    }
    let s = setup().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let transport = keyed_transport(&s.gateway.url("/mcp"), "sk-bob");
    let client = Heard(tx).serve(transport).await.unwrap();
    #[allow(deprecated)] // the handshake protocol's subscription
    client
        .peer()
        .subscribe(rmcp::model::SubscribeRequestParams::new("wiki-doc://home"))
        .await
        .unwrap();
    client
        .peer()
        .call_tool(rmcp::model::CallToolRequestParams::new("wiki-announce"))
        .await
        .unwrap();
    let uri = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(uri, "wiki-doc://home");
}

#[tokio::test]
async fn an_upstream_request_the_caller_did_not_declare_fails_the_call_with_32021() {
    let s = setup().await;
    let http = http_client();
    let url = s.gateway.url("/mcp");
    let call = json!({"name": "wiki-sample", "arguments": {}});
    let reply = modern(&http, &url, "sk-bob", 5, "tools/call", call.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    let kind = reply.headers()["content-type"].to_str().unwrap().to_owned();
    let answer = messages(&kind, &reply.text().await.unwrap()).pop().unwrap();
    assert_eq!(answer["id"], 5, "{answer}");
    assert_eq!(answer["error"]["code"], -32021, "{answer}");
    assert!(
        answer["error"]["data"]["requiredCapabilities"]["sampling"].is_object(),
        "{answer}"
    );
    // Declared, the same call gets the upstream's request to answer.
    let reply = modern_with(
        &http,
        &url,
        "sk-bob",
        6,
        "tools/call",
        call,
        json!({"sampling": {}}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(reply.status(), 200);
    let kind = reply.headers()["content-type"].to_str().unwrap().to_owned();
    let answer = messages(&kind, &reply.text().await.unwrap()).pop().unwrap();
    assert_eq!(answer["result"]["resultType"], "input_required", "{answer}");
    assert!(s.wiki.executions.names().is_empty());
}
