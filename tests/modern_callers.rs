//! Callers of protocol 2026-07-28 through the gateway. `subscriptions/listen`: each caller's
//! streams are told only about servers in its grant and scope, and about the resources it
//! named, which it must be allowed to read; upstream announcements reach handshake callers
//! under the names they know. Capabilities: an upstream's request the caller did not declare
//! it can answer fails the call with -32021.
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
      "mcp_servers": {{"github": {{"url": "{}"}}, "wiki": {{"url": "{}"}}}},
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

/// An upstream of protocol 2026-07-28 whose tool `ask` needs a sampling answer first: it
/// answers with an input-required result carrying its own state, and completes when called
/// again with the answer and that state.
#[derive(Clone, Default)]
struct Asker {
    /// The `requestState` of every call that reached it.
    states: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    /// The `MCP-Protocol-Version` of every call that reached it.
    versions: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl rmcp::ServerHandler for Asker {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(
            rmcp::model::ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _: Option<rmcp::model::PaginatedRequestParams>,
        _: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, rmcp::ErrorData> {
        Ok(rmcp::model::ListToolsResult::with_all_items(vec![
            serde_json::from_value(tool("ask", &[])).unwrap(),
        ]))
    }

    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        ctx: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};
        let version = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("mcp-protocol-version"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.versions.lock().unwrap().push(version);
        Ok(
            match self.decide(request.input_responses.as_ref(), request.request_state) {
                Ok(said) => {
                    let mut result = CallToolResult::success(vec![ContentBlock::text(said)]);
                    result.meta = Some(identity());
                    result.into()
                }
                Err(round) => CallToolResponse::InputRequired(*round),
            },
        )
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        _: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, rmcp::ErrorData> {
        use rmcp::model::{GetPromptResponse, GetPromptResult, PromptMessage, Role};
        Ok(
            match self.decide(request.input_responses.as_ref(), request.request_state) {
                Ok(said) => {
                    let mut result =
                        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, said)]);
                    result.meta = Some(identity());
                    GetPromptResponse::Complete(result)
                }
                Err(round) => GetPromptResponse::InputRequired(*round),
            },
        )
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, rmcp::ErrorData> {
        use rmcp::model::{ReadResourceResponse, ReadResourceResult, ResourceContents};
        Ok(
            match self.decide(request.input_responses.as_ref(), request.request_state) {
                Ok(said) => ReadResourceResponse::Complete(ReadResourceResult::new(vec![
                    ResourceContents::text(said, request.uri),
                ])),
                Err(round) => ReadResourceResponse::InputRequired(*round),
            },
        )
    }
}

/// The upstream's own name in a result's `_meta`, as 2026-07-28 servers may give it.
fn identity() -> rmcp::model::MetaObject {
    let mut meta = rmcp::model::MetaObject::default();
    meta.insert(
        "io.modelcontextprotocol/serverInfo".to_owned(),
        json!({"name": "asker-upstream-internal", "version": "9.9"}),
    );
    meta.insert("trace".to_owned(), json!("kept"));
    meta
}

impl Asker {
    /// `Ok(text)` once the sampling answer and the state came back, else the round to ask.
    fn decide(
        &self,
        responses: Option<&rmcp::model::InputResponses>,
        state: Option<String>,
    ) -> Result<String, Box<rmcp::model::InputRequiredResult>> {
        use rmcp::model::InputRequest;
        self.states.lock().unwrap().push(state.clone());
        match (responses.and_then(|r| r.get("colour")), state.as_deref()) {
            (Some(answer), Some("asker-state")) => Ok(format!(
                "answered: {}",
                answer["content"]["text"].as_str().unwrap_or_default()
            )),
            _ => {
                let asked = rmcp::model::CreateMessageRequestParams::new(
                    vec![rmcp::model::SamplingMessage::user_text("which colour?")],
                    16,
                );
                let mut requests = rmcp::model::InputRequests::new();
                requests.insert(
                    "colour".to_owned(),
                    InputRequest::CreateMessage(rmcp::model::CreateMessageRequest::new(asked)),
                );
                Err(Box::new(rmcp::model::InputRequiredResult::new(
                    Some(requests),
                    Some("asker-state".to_owned()),
                )))
            }
        }
    }
}

/// A client that answers sampling with "blue".
#[derive(Clone)]
struct Blue;

impl rmcp::ClientHandler for Blue {
    async fn create_message(
        &self,
        _: rmcp::model::CreateMessageRequestParams,
        _: rmcp::service::RequestContext<rmcp::RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::ErrorData> {
        Ok(rmcp::model::CreateMessageResult::new(
            rmcp::model::SamplingMessage::assistant_text("blue"),
            "m".into(),
        ))
    }

    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut caps = rmcp::model::ClientCapabilities::default();
        caps.sampling = Some(Default::default());
        rmcp::model::ClientConfig::new(caps, rmcp::model::Implementation::new("blue", "0"))
    }
}

#[tokio::test]
async fn input_required_results_of_a_2026_upstream_reach_callers_of_every_era() {
    use rmcp::ServiceExt;
    let asker = Asker::default();
    let ct = CancellationToken::new();
    let factory = asker.clone();
    let upstream = serve(
        axum::Router::new().nest_service(
            "/mcp",
            rmcp::transport::streamable_http_server::StreamableHttpService::new(
                move || Ok(factory.clone()),
                std::sync::Arc::new(
                    rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default(),
                ),
                Mode::StatefulSse.config(&ct),
            ),
        ),
        ct,
    )
    .await;
    let doc = format!(
        r#"{{
      "general_settings": {{"master_key": "sk-admin"}},
      "mcp_servers": {{"asker": {{"url": "{}", "protocol_version": "2026-07-28"}}}},
      "keys": [{{"key": "sk-alice", "object_permission": {{"mcp_servers": ["asker"]}}}},
               {{"key": "sk-bob", "object_permission": {{"mcp_servers": ["asker"]}}}}]
    }}"#,
        upstream.url("/mcp")
    );
    let (gw, _gateway) = gateway_from_json(&doc).await;
    let url = gw.url("/mcp");

    // A handshake caller is asked as a request of its own, and gets the final result.
    let transport = keyed_transport(&url, "sk-alice");
    let client = Blue.serve(transport).await.unwrap();
    let result = client
        .peer()
        .call_tool(rmcp::model::CallToolRequestParams::new("asker-ask"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&result.content).unwrap()[0]["text"],
        "answered: blue"
    );
    assert_eq!(
        *asker.states.lock().unwrap(),
        [None, Some("asker-state".to_owned())]
    );
    asker.states.lock().unwrap().clear();

    // A 2026-07-28 caller gets the upstream's requests in an input-required result of the
    // gateway's, under a state of the gateway's, bound to it.
    let http = http_client();
    let sampling = json!({"sampling": {}});
    let first = modern_with(
        &http,
        &url,
        "sk-alice",
        1,
        "tools/call",
        json!({"name": "asker-ask", "arguments": {}}),
        sampling.clone(),
    )
    .send()
    .await
    .unwrap();
    let kind = first.headers()["content-type"].to_str().unwrap().to_owned();
    let first = messages(&kind, &first.text().await.unwrap()).pop().unwrap();
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let (key, request) = result["inputRequests"]
        .as_object()
        .and_then(|r| r.iter().next())
        .expect("one request");
    assert_eq!(request["method"], "sampling/createMessage", "{first}");
    assert_eq!(key, "colour", "the upstream's key is kept: {first}");
    let state = result["requestState"].as_str().unwrap().to_owned();
    assert!(
        !state.contains("asker-state"),
        "the upstream's state stays in the gateway"
    );
    let answers = json!({key.clone(): {"role": "assistant", "content": {"type": "text", "text": "green"}, "model": "m"}});
    let again = |who: &'static str, id: u64| {
        modern_with(
            &http,
            &url,
            who,
            id,
            "tools/call",
            json!({"name": "asker-ask", "arguments": {}, "inputResponses": answers, "requestState": state}),
            sampling.clone(),
        )
        .send()
    };
    // Another key presenting the state learns nothing and moves nothing.
    let foreign = again("sk-bob", 2).await.unwrap();
    let kind = foreign.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let foreign = messages(&kind, &foreign.text().await.unwrap())
        .pop()
        .unwrap();
    assert!(
        foreign["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("requestState")),
        "{foreign}"
    );
    let done = again("sk-alice", 3).await.unwrap();
    let kind = done.headers()["content-type"].to_str().unwrap().to_owned();
    let done = messages(&kind, &done.text().await.unwrap()).pop().unwrap();
    assert_eq!(
        done["result"]["content"][0]["text"], "answered: green",
        "{done}"
    );
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(
        *asker.states.lock().unwrap(),
        [None, Some("asker-state".to_owned())]
    );
    // The gateway spoke 2026-07-28 to it, as configured.
    assert!(
        asker
            .versions
            .lock()
            .unwrap()
            .iter()
            .all(|v| v == "2026-07-28"),
        "{:?}",
        asker.versions.lock().unwrap()
    );
}

/// `prompts/get` and `resources/read` of a 2026-07-28 upstream that needs an answer first: a
/// handshake caller cannot read an input-required result, so it is asked a request of its own
/// and gets the final result; the upstream sees its own state come back.
#[tokio::test]
async fn input_required_prompts_and_resources_reach_handshake_callers_as_requests() {
    use rmcp::ServiceExt;
    use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams, ResourceContents};
    let asker = Asker::default();
    let upstream = serve_handler(asker.clone()).await;
    let (gw, _gateway) = gateway_from_json(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin"}},
             "mcp_servers": {{"asker": {{"url": "{}", "protocol_version": "2026-07-28"}}}}}}"#,
        upstream.url("/mcp")
    ))
    .await;
    let transport = keyed_transport(&gw.url("/mcp"), "sk-admin");
    let client = Blue.serve(transport).await.unwrap();
    let prompt = client
        .get_prompt(GetPromptRequestParams::new("asker-colour"))
        .await
        .unwrap();
    let said = serde_json::to_value(&prompt.messages).unwrap().to_string();
    assert!(said.contains("answered: blue"), "{said}");
    // The upstream's own identity stays behind the gateway; its other `_meta` passes.
    let meta = serde_json::to_value(&prompt.meta).unwrap();
    assert_eq!(meta, json!({"trace": "kept"}));
    let read = client
        .read_resource(ReadResourceRequestParams::new("asker-doc://colour"))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents { text, uri, .. } = &read.contents[0] else {
        panic!("{read:?}");
    };
    assert_eq!(text, "answered: blue");
    assert_eq!(uri, "asker-doc://colour", "the caller's name for it");
    // Each was asked twice: first without state, then with the upstream's own.
    assert_eq!(
        *asker.states.lock().unwrap(),
        [
            None,
            Some("asker-state".to_owned()),
            None,
            Some("asker-state".to_owned())
        ]
    );
    let called = client
        .call_tool(rmcp::model::CallToolRequestParams::new("asker-ask"))
        .await
        .unwrap();
    let called = serde_json::to_value(&called).unwrap();
    assert!(called.to_string().contains("answered: blue"), "{called}");
    assert_eq!(called["_meta"], json!({"trace": "kept"}), "{called}");
    client.cancel().await.unwrap();
}
