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
