//! The tasks extension (SEP-2663) through the gateway: a task an upstream creates is the
//! creating caller's alone, under an id of the gateway's; `tasks/get`, `tasks/update` and
//! `tasks/cancel` reach the upstream that created it; any other key, a request scoped away from
//! the task's server, or a caller that did not declare the extension learns nothing and moves
//! nothing; a caller that did not declare it gets its answer in full.
#![cfg(feature = "gateway")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mcp_gatekeeper::metrics::{ClientOperation, Metrics, Operation, Span, SpanContext};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    CreateTaskResult, GetTaskParams, GetTaskResult, InputRequest, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, UpdateTaskParams,
};
use rmcp::service::RequestContext;
use rmcp::task_manager::{TaskExit, TaskManager, TaskOptions};
use rmcp::{ErrorData, RoleServer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// An upstream of protocol 2026-07-28 whose `slow` and `confirm` run as tasks for clients that
/// declare the extension (`confirm` asks for the client's roots first); `slow` runs in place
/// for the others.
#[derive(Clone, Default)]
struct Jobs {
    manager: TaskManager,
    /// Per `tools/call`: whether the client declared the tasks extension.
    declared: Arc<Mutex<Vec<bool>>>,
    /// The task ids asked of it by `tasks/get`, `tasks/update` and `tasks/cancel`.
    asked: Arc<Mutex<Vec<String>>>,
    /// The `traceparent` each `tasks/get` carried in its `_meta`, if any.
    traceparents: Arc<Mutex<Vec<Option<String>>>>,
}

fn text(t: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(t)])
}

impl rmcp::ServerHandler for Jobs {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = ["slow", "confirm"].map(|n| serde_json::from_value(tool(n, &["ms"])).unwrap());
        Ok(ListToolsResult::with_all_items(tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let declared = ctx
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks());
        self.declared.lock().unwrap().push(declared);
        let ms = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("ms"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let options = TaskOptions::new().with_ttl_ms(60_000);
        let task = match (&*request.name, declared) {
            ("slow", true) => self.manager.spawn(options, move |task| {
                Box::pin(async move {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(ms)) => {
                            Ok(text("slow done".into()))
                        }
                        () = task.cancelled() => Err(TaskExit::Cancelled),
                    }
                })
            }),
            ("confirm", true) => self.manager.spawn(options, |task| {
                Box::pin(async move {
                    let roots: InputRequest =
                        serde_json::from_value(json!({"method": "roots/list"})).unwrap();
                    let answer = task.request_input("roots", roots).await?;
                    Ok(text(format!("confirmed: {answer}")))
                })
            }),
            ("slow", false) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                return Ok(text("slow done".into()).into());
            }
            _ => return Err(ErrorData::invalid_params("runs only as a task", None)),
        };
        Ok(CallToolResponse::Task(CreateTaskResult::new(task)))
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        self.asked.lock().unwrap().push(request.task_id.clone());
        let carried = request
            .meta
            .as_ref()
            .and_then(|m| m.0.0.get("traceparent"))
            .or_else(|| ctx.meta.0.get("traceparent"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.traceparents.lock().unwrap().push(carried);
        Ok(GetTaskResult::new(self.manager.get_task(&request.task_id)?))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.asked.lock().unwrap().push(request.task_id.clone());
        self.manager
            .update_task(&request.task_id, request.input_responses)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.asked.lock().unwrap().push(request.task_id.clone());
        self.manager.cancel_task(&request.task_id)
    }
}

struct Setup {
    jobs: Jobs,
    _upstreams: Vec<Running>,
    gateway: Running,
    http: reqwest::Client,
}

async fn setup() -> Setup {
    setup_with(None).await
}

/// The setup, its gatekeeper measured by `metrics` when given.
async fn setup_with(metrics: Option<Arc<dyn Metrics>>) -> Setup {
    let jobs = Jobs::default();
    let jobs_up = serve_handler(jobs.clone()).await;
    let other = RecordingServer::new(vec![tool("echo", &[])], &[], &[]);
    let ct = CancellationToken::new();
    let other_up = serve(
        axum::Router::new().nest_service("/mcp", mcp_service(other, Mode::StatefulSse, &ct)),
        ct,
    )
    .await;
    let doc = format!(
        r#"{{
      "general_settings": {{"master_key": "sk-admin"}},
      "mcp_servers": {{
        "jobs": {{"url": "{}", "protocol_version": "2026-07-28"}},
        "other": {{"url": "{}"}}
      }},
      "keys": [
        {{"key": "sk-alice", "object_permission": {{"mcp_servers": ["jobs", "other"]}}}},
        {{"key": "sk-bob", "object_permission": {{"mcp_servers": ["jobs", "other"]}}}},
        {{"key": "sk-carol", "object_permission": {{"mcp_servers": ["other"]}}}}
      ]
    }}"#,
        jobs_up.url("/mcp"),
        other_up.url("/mcp")
    );
    let gw = match metrics {
        None => gateway_from_json(&doc).await.0,
        Some(metrics) => {
            // Beside the gateway's own recorder.
            let config = mcp_gatekeeper::config::Config::from_json_str(&doc).unwrap();
            let gk =
                mcp_gatekeeper::Gatekeeper::new(config.policy().unwrap()).with_metrics(metrics);
            let gateway = mcp_gatekeeper::gateway::Gateway::from_config(&config, gk)
                .unwrap()
                .build()
                .unwrap();
            serve_gateway(&gateway).await
        }
    };
    Setup {
        jobs,
        _upstreams: vec![jobs_up, other_up],
        gateway: gw,
        http: http_client(),
    }
}

fn tasks_declared() -> Value {
    json!({"extensions": {"io.modelcontextprotocol/tasks": {}}, "roots": {}})
}

impl Setup {
    /// One 2026-07-28 request of `key` on `path`, declaring `capabilities`: its answer.
    async fn ask_on(
        &self,
        path: &str,
        key: &str,
        method: &str,
        params: Value,
        capabilities: Value,
    ) -> Value {
        let url = self.gateway.url(path);
        let reply = modern_with(&self.http, &url, key, 7, method, params, capabilities)
            .send()
            .await
            .unwrap();
        let kind = reply.headers()["content-type"].to_str().unwrap().to_owned();
        let body = reply.text().await.unwrap();
        messages(&kind, &body)
            .pop()
            .unwrap_or_else(|| panic!("no answer: {body}"))
    }

    /// [`ask_on`](Self::ask_on) on `/mcp`, declaring the tasks extension.
    async fn ask(&self, key: &str, method: &str, params: Value) -> Value {
        self.ask_on("/mcp", key, method, params, tasks_declared())
            .await
    }

    /// Polls the task until its status is one of `wanted`.
    async fn until(&self, key: &str, id: &str, wanted: &[&str]) -> Value {
        for _ in 0..100 {
            let got = self.ask(key, "tasks/get", json!({"taskId": id})).await;
            let status = got["result"]["status"].as_str().unwrap_or_default();
            if wanted.contains(&status) {
                return got;
            }
            assert!(got.get("error").is_none(), "{got}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("task {id} never reached {wanted:?}")
    }
}

fn error_of(answer: &Value) -> &Value {
    assert!(answer.get("result").is_none(), "a refusal, not {answer}");
    &answer["error"]
}

#[tokio::test]
async fn tasks_are_their_creators_alone_and_reach_the_upstream_that_made_them() {
    let s = setup().await;

    // The gateway advertises the extension (one of its upstreams speaks 2026-07-28).
    let discovered = s.ask("sk-alice", "server/discover", json!({})).await;
    assert!(
        discovered["result"]["capabilities"]["extensions"]
            .get("io.modelcontextprotocol/tasks")
            .is_some(),
        "{discovered}"
    );

    // A task created for alice is hers under an id of the gateway's.
    let created = s
        .ask(
            "sk-alice",
            "tools/call",
            json!({"name": "jobs-slow", "arguments": {"ms": 300}}),
        )
        .await;
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let id = created["result"]["taskId"].as_str().unwrap().to_owned();
    assert!(
        s.jobs.manager.get_task(&id).is_err(),
        "the upstream's id is not shown"
    );
    assert_eq!(*s.jobs.declared.lock().unwrap(), [true]);
    let done = s.until("sk-alice", &id, &["completed"]).await;
    assert_eq!(done["result"]["taskId"], id.as_str(), "{done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(
        done["result"]["result"]["content"][0]["text"], "slow done",
        "{done}"
    );

    // Anyone else presenting it, or alice on a path scoped to another server, is answered as
    // for an id that never existed, and the upstream is not asked.
    let asked = s.jobs.asked.lock().unwrap().len();
    let never = s
        .ask("sk-alice", "tasks/get", json!({"taskId": "no-such-task"}))
        .await;
    let unknown = error_of(&never).clone();
    assert_eq!(unknown["code"], -32602, "{never}");
    for (key, path) in [
        ("sk-bob", "/mcp"),
        ("sk-carol", "/mcp"),
        ("sk-alice", "/other/mcp"),
    ] {
        let foreign = s
            .ask_on(
                path,
                key,
                "tasks/get",
                json!({"taskId": id}),
                tasks_declared(),
            )
            .await;
        assert_eq!(error_of(&foreign), &unknown, "{key} on {path}");
    }
    for (method, params) in [
        ("tasks/update", json!({"taskId": id, "inputResponses": {}})),
        ("tasks/cancel", json!({"taskId": id})),
    ] {
        let mut never = params.clone();
        never["taskId"] = json!("no-such-task");
        let unknown = s.ask("sk-bob", method, never).await;
        let foreign = s.ask("sk-bob", method, params).await;
        assert_eq!(error_of(&foreign), error_of(&unknown), "{method}");
    }
    assert_eq!(s.jobs.asked.lock().unwrap().len(), asked);

    // A caller that did not declare the extension: -32021 for the task methods, and its call
    // answered in full (the upstream was not told its client takes tasks).
    let undeclared = s
        .ask_on(
            "/mcp",
            "sk-alice",
            "tasks/get",
            json!({"taskId": id}),
            json!({}),
        )
        .await;
    assert_eq!(error_of(&undeclared)["code"], -32021, "{undeclared}");
    let whole = s
        .ask_on(
            "/mcp",
            "sk-alice",
            "tools/call",
            json!({"name": "jobs-slow", "arguments": {"ms": 0}}),
            json!({}),
        )
        .await;
    assert_eq!(whole["result"]["resultType"], "complete", "{whole}");
    assert_eq!(whole["result"]["content"][0]["text"], "slow done");
    assert_eq!(*s.jobs.declared.lock().unwrap(), [true, false]);

    // The task's input requests are answered by its creator only.
    let created = s
        .ask("sk-alice", "tools/call", json!({"name": "jobs-confirm"}))
        .await;
    let confirm = created["result"]["taskId"].as_str().unwrap().to_owned();
    let waiting = s.until("sk-alice", &confirm, &["input_required"]).await;
    assert_eq!(
        waiting["result"]["inputRequests"]["roots"]["method"], "roots/list",
        "{waiting}"
    );
    let answers = json!({"taskId": confirm, "inputResponses": {"roots": {"roots": []}}});
    let foreign = s.ask("sk-bob", "tasks/update", answers.clone()).await;
    assert_eq!(error_of(&foreign)["code"], -32602, "{foreign}");
    let ack = s.ask("sk-alice", "tasks/update", answers).await;
    assert_eq!(ack["result"], json!({"resultType": "complete"}), "{ack}");
    let done = s.until("sk-alice", &confirm, &["completed"]).await;
    assert_eq!(
        done["result"]["result"]["content"][0]["text"], r#"confirmed: {"roots":[]}"#,
        "{done}"
    );

    // Cancelled by its creator only.
    let created = s
        .ask(
            "sk-alice",
            "tools/call",
            json!({"name": "jobs-slow", "arguments": {"ms": 60000}}),
        )
        .await;
    let long = created["result"]["taskId"].as_str().unwrap().to_owned();
    let foreign = s
        .ask("sk-bob", "tasks/cancel", json!({"taskId": long}))
        .await;
    assert_eq!(error_of(&foreign)["code"], -32602, "{foreign}");
    let ack = s
        .ask("sk-alice", "tasks/cancel", json!({"taskId": long}))
        .await;
    assert_eq!(ack["result"], json!({"resultType": "complete"}), "{ack}");
    s.until("sk-alice", &long, &["cancelled"]).await;

    // There is no list of tasks to read, filtered or not.
    let listed = s.ask("sk-alice", "tasks/list", json!({})).await;
    assert_eq!(error_of(&listed)["code"], -32601, "{listed}");
}

/// A recorder of the spans of requests and of upstream requests: (client or not, method, span).
#[derive(Default)]
struct Spans(Mutex<Vec<(bool, String, Span)>>);

impl Metrics for Spans {
    fn operation(&self, op: &Operation<'_>) {
        if let Some(span) = op.span {
            self.0
                .lock()
                .unwrap()
                .push((false, op.method.to_owned(), span));
        }
    }
    fn client_operation(&self, op: &ClientOperation<'_>) {
        if let Some(span) = op.span {
            self.0
                .lock()
                .unwrap()
                .push((true, op.method.to_owned(), span));
        }
    }
    fn records_spans(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn task_requests_are_traced_through_to_the_upstream() {
    let spans = Arc::new(Spans::default());
    let s = setup_with(Some(spans.clone())).await;
    let created = s
        .ask(
            "sk-alice",
            "tools/call",
            json!({"name": "jobs-slow", "arguments": {"ms": 0}}),
        )
        .await;
    let id = created["result"]["taskId"].as_str().unwrap().to_owned();
    spans.0.lock().unwrap().clear();
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let got = s
        .ask(
            "sk-alice",
            "tasks/get",
            json!({"taskId": id, "_meta": {"traceparent": caller}}),
        )
        .await;
    assert!(got.get("result").is_some(), "{got}");
    let recorded = spans.0.lock().unwrap().clone();
    let span_of = |client: bool| {
        recorded
            .iter()
            .find(|(c, m, _)| *c == client && m == "tasks/get")
            .map(|(_, _, span)| *span)
            .unwrap_or_else(|| panic!("no span of tasks/get (client: {client}) in {recorded:?}"))
    };
    let (server, client) = (span_of(false), span_of(true));
    let theirs = SpanContext::from_traceparent(caller).unwrap();
    assert_eq!(server.parent, Some(theirs.span_id));
    assert_eq!(client.parent, Some(server.context.span_id));
    assert_eq!(client.context.trace_id, theirs.trace_id);
    // The upstream was told the gateway's span of its request as the parent of its own.
    let told = s
        .jobs
        .traceparents
        .lock()
        .unwrap()
        .last()
        .cloned()
        .flatten();
    assert_eq!(told.as_deref(), Some(client.context.traceparent().as_str()));
}
