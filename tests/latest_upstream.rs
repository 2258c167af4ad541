//! An upstream spoken to in protocol 2026-07-28 (`protocol_version: "2026-07-28"`) takes what
//! its client wants with each request: its progress and log messages reach the gateway's callers
//! of both eras, at the log level each asked for (a handshake caller's `logging/setLevel`, a
//! 2026-07-28 caller's `_meta`).
#![cfg(feature = "gateway")]
#![allow(deprecated)] // logging is deprecated in the newest protocol; callers still use it

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
    ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, RoleClient, RoleServer, ServiceExt};
use serde_json::json;

/// Reports progress when given a token and logs one message at `info` when given a level.
#[derive(Clone, Default)]
struct Worker {
    /// The log level each call asked for.
    levels: Arc<Mutex<Vec<Option<LoggingLevel>>>>,
}

impl rmcp::ServerHandler for Worker {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![
            serde_json::from_value(tool("work", &[])).unwrap(),
        ]))
    }

    async fn call_tool(
        &self,
        _: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let level = ctx.meta.log_level();
        self.levels.lock().unwrap().push(level);
        if let Some(token) = ctx.meta.get_progress_token() {
            for step in [1.0, 2.0] {
                let _ = ctx
                    .peer
                    .notify_progress(ProgressNotificationParam::new(token.clone(), step))
                    .await;
            }
        }
        if matches!(level, Some(LoggingLevel::Debug | LoggingLevel::Info)) {
            let _ = ctx
                .peer
                .notify_logging_message(LoggingMessageNotificationParam::new(
                    LoggingLevel::Info,
                    json!("working"),
                ))
                .await;
        }
        Ok(CallToolResult::success(vec![ContentBlock::text("done")]).into())
    }
}

/// A handshake client that keeps what it hears.
#[derive(Clone, Default)]
struct Ears {
    progress: Arc<Mutex<Vec<f64>>>,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl rmcp::ClientHandler for Ears {
    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.progress.lock().unwrap().push(p.progress);
    }

    async fn on_logging_message(
        &self,
        m: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.logs.lock().unwrap().push(m.data);
    }
}

#[tokio::test]
async fn progress_and_log_messages_of_a_2026_upstream_reach_callers_of_every_era() {
    let worker = Worker::default();
    let upstream = serve_handler(worker.clone()).await;
    let doc = format!(
        r#"{{
      "general_settings": {{"master_key": "sk-admin"}},
      "mcp_servers": {{"worker": {{"url": "{}", "protocol_version": "2026-07-28"}}}},
      "keys": [{{"key": "sk-alice", "object_permission": {{"mcp_servers": ["worker"]}}}}]
    }}"#,
        upstream.url("/mcp")
    );
    let (gw, _gateway) = gateway_from_json(&doc).await;
    let url = gw.url("/mcp");

    // A handshake caller that never set a level hears everything, as from a handshake server;
    // after `logging/setLevel` the upstream is asked at that level.
    let ears = Ears::default();
    let transport = keyed_transport(&url, "sk-alice");
    let client = ears.clone().serve(transport).await.unwrap();
    client.peer().list_all_tools().await.unwrap();
    let result = client
        .peer()
        .call_tool(CallToolRequestParams::new("worker-work"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&result.content).unwrap()[0]["text"],
        "done"
    );
    // rmcp hands notifications to tasks of their own: give them a moment.
    for _ in 0..50 {
        if ears.logs.lock().unwrap().len() == 1 && ears.progress.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(*ears.progress.lock().unwrap(), [1.0, 2.0]);
    assert_eq!(*ears.logs.lock().unwrap(), [json!("working")]);
    client
        .peer()
        .set_level(rmcp::model::SetLevelRequestParams::new(LoggingLevel::Error))
        .await
        .unwrap();
    client
        .peer()
        .call_tool(CallToolRequestParams::new("worker-work"))
        .await
        .unwrap();
    assert_eq!(
        *worker.levels.lock().unwrap(),
        [Some(LoggingLevel::Debug), Some(LoggingLevel::Error)]
    );
    client.cancel().await.unwrap();
    worker.levels.lock().unwrap().clear();

    // A 2026-07-28 caller gets log messages when its request names a level, and only then.
    let http = http_client();
    let mut heard = Vec::new();
    for level in [Some("info"), None] {
        let mut params = json!({"name": "worker-work", "arguments": {}});
        if let Some(level) = level {
            params["_meta"] = json!({"io.modelcontextprotocol/logLevel": level});
        }
        let request = modern(&http, &url, "sk-alice", 1, "tools/call", params);
        let reply = request.send().await.unwrap();
        let kind = reply.headers()["content-type"].to_str().unwrap().to_owned();
        let messages = messages(&kind, &reply.text().await.unwrap());
        heard.push(
            messages
                .iter()
                .filter(|m| m["method"] == "notifications/message")
                .count(),
        );
        assert_eq!(
            messages.last().unwrap()["result"]["content"][0]["text"],
            "done"
        );
    }
    assert_eq!(heard, [1, 0]);
    assert_eq!(
        *worker.levels.lock().unwrap(),
        [Some(LoggingLevel::Info), None]
    );
}

/// Keeps the JSON-RPC id each call came with; `routed` asks for its `region` in a header
/// (`x-mcp-header`), which rmcp's server checks against the body.
#[derive(Clone, Default)]
struct Ids {
    calls: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

impl rmcp::ServerHandler for Ids {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let routed = json!({"name": "routed", "inputSchema": {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"}}}});
        Ok(ListToolsResult::with_all_items(vec![
            serde_json::from_value(tool("plain", &["q"])).unwrap(),
            serde_json::from_value(routed).unwrap(),
            serde_json::from_value(tool("needy", &[])).unwrap(),
        ]))
    }

    async fn call_tool(
        &self,
        params: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let id = serde_json::to_value(&ctx.id).unwrap();
        self.calls
            .lock()
            .unwrap()
            .push((params.name.to_string(), id));
        if params.name == "needy" {
            // rmcp's server answers this error with HTTP 400.
            let wanted = serde_json::from_value(json!({"sampling": {}})).unwrap();
            return Err(ErrorData::missing_required_client_capability(wanted));
        }
        let said = serde_json::to_string(&params.arguments).unwrap();
        Ok(CallToolResult::success(vec![ContentBlock::text(said)]).into())
    }
}

/// A call of a tool the session has listed, with no argument in a header, is posted by the
/// gateway itself (its ids are the gateway's `gk-` strings; rmcp's client numbers its own), with
/// the method and name headers rmcp's server checks; a tool not listed yet, or one that asks for
/// an argument in a header, goes through rmcp's client. Every call is answered alike.
#[tokio::test]
async fn listed_plain_tools_of_a_2026_upstream_are_posted_by_the_gateway_itself() {
    let ids = Ids::default();
    let upstream = serve_handler(ids.clone()).await;
    let doc = format!(
        r#"{{
      "general_settings": {{"master_key": "sk-admin"}},
      "mcp_servers": {{"up": {{"url": "{}"}}}},
      "keys": [{{"key": "sk-alice", "object_permission": {{"mcp_servers": ["up"]}}}}]
    }}"#,
        upstream.url("/mcp")
    );
    let (gw, _gateway) = gateway_from_json(&doc).await;
    let url = gw.url("/mcp");
    let http = http_client();
    let ask = |id: u64, method: &str, params: serde_json::Value| {
        let request = modern(&http, &url, "sk-alice", id, method, params);
        async move {
            // (A JSON-RPC error of some codes comes with an HTTP status of its own.)
            let reply = request.send().await.unwrap();
            let kind = reply.headers()["content-type"].to_str().unwrap().to_owned();
            messages(&kind, &reply.text().await.unwrap()).pop().unwrap()
        }
    };
    let said = |reply: &serde_json::Value| reply["result"]["content"][0]["text"].clone();

    let first = ask(
        1,
        "tools/call",
        json!({"name": "up-plain", "arguments": {"q": "a"}}),
    )
    .await;
    assert_eq!(said(&first), r#"{"q":"a"}"#, "{first}");
    let listed = ask(2, "tools/list", json!({})).await;
    assert_eq!(listed["result"]["tools"].as_array().unwrap().len(), 3);
    for (id, q) in [(3, "b"), (4, "c é")] {
        let reply = ask(
            id,
            "tools/call",
            json!({"name": "up-plain", "arguments": {"q": q}}),
        )
        .await;
        assert_eq!(said(&reply), json!({"q": q}).to_string(), "{reply}");
    }
    let routed = ask(
        5,
        "tools/call",
        json!({"name": "up-routed", "arguments": {"region": "eu"}}),
    )
    .await;
    assert_eq!(said(&routed), r#"{"region":"eu"}"#, "{routed}");
    // An error the upstream gives an HTTP status of its own reaches the caller as it was.
    let needy = ask(
        6,
        "tools/call",
        json!({"name": "up-needy", "arguments": {}}),
    )
    .await;
    assert_eq!(needy["error"]["code"], -32021, "{needy}");
    assert_eq!(
        needy["error"]["data"]["requiredCapabilities"],
        json!({"sampling": {}})
    );

    let calls = ids.calls.lock().unwrap().clone();
    let posted: Vec<_> = calls
        .iter()
        .map(|(name, id)| {
            (
                name.as_str(),
                id.as_str().is_some_and(|s| s.starts_with("gk-")),
            )
        })
        .collect();
    assert_eq!(
        posted,
        [
            ("plain", false),
            ("plain", true),
            ("plain", true),
            ("routed", false),
            ("needy", true)
        ]
    );
}
