//! An MCP server (protocol 2026-07-28, streamable HTTP) whose tools run as tasks of the tasks
//! extension (SEP-2663), with the tools the conformance suite's `tasks-*` scenarios ask for.
//! The interop suite runs those scenarios against it directly and through the gateway.
//!
//! ```text
//! cargo run --example tasks_upstream -- 127.0.0.1:9300
//! ```
//!
//! Tools: `greet(name)` answers at once; `slow_compute(seconds, label)` sleeps, and settles as
//! cancelled if cancelled first; `failing_job` reports a tool error after a second;
//! `protocol_error_job` fails with a JSON-RPC error; `confirm_delete(filename)` asks for one
//! confirmation, `multi_input` for two at once; `test_tool_with_task` asks for a name in an
//! input-required result first and only then starts a task. A client that did not declare the
//! extension gets `slow_compute` in place and -32021 from the tools that need a task.

use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock,
    CreateTaskResult, ErrorData, GetTaskParams, GetTaskResult, InputRequest, InputRequests,
    InputRequiredResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    UpdateTaskParams,
};
use rmcp::service::RequestContext;
use rmcp::task_manager::{TaskExit, TaskFuture, TaskManager, TaskOptions};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Tasks {
    manager: TaskManager,
}

fn text(t: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(t)])
}

fn ask(message: &str, field: &str, kind: &str) -> InputRequest {
    serde_json::from_value(json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": message,
            "requestedSchema": {"type": "object", "properties": {field: {"type": kind}}}
        }
    }))
    .expect("an elicitation request")
}

fn tool(name: &str, description: &str, properties: Value) -> rmcp::model::Tool {
    serde_json::from_value(json!({
        "name": name,
        "description": description,
        "inputSchema": {"type": "object", "properties": properties},
    }))
    .expect("a tool")
}

fn needs_tasks() -> ErrorData {
    ErrorData::missing_required_client_capability(
        ClientCapabilities::builder().enable_tasks().build(),
    )
}

/// The operation behind each task-running tool.
fn operation(
    name: &str,
    args: &serde_json::Map<String, Value>,
) -> Option<Box<dyn FnOnce(rmcp::task_manager::TaskContext) -> TaskFuture + Send>> {
    let seconds = args.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
    let label = args
        .get("label")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let filename = args
        .get("filename")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let user = args
        .get("user_name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    Some(match name {
        "slow_compute" => Box::new(move |task| {
            Box::pin(async move {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs_f64(seconds.max(0.0))) => {
                        Ok(text(format!("computed {label} after {seconds}s")))
                    }
                    () = task.cancelled() => Err(TaskExit::Cancelled),
                }
            })
        }),
        "failing_job" => Box::new(|_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(CallToolResult::error(vec![ContentBlock::text(
                    "the job failed",
                )]))
            })
        }),
        "protocol_error_job" => Box::new(|_| {
            Box::pin(async {
                Err(TaskExit::Error(ErrorData::internal_error(
                    "the job crashed",
                    None,
                )))
            })
        }),
        "confirm_delete" => Box::new(move |task| {
            Box::pin(async move {
                let answer = task
                    .request_input(
                        "confirm",
                        ask(&format!("Delete {filename}?"), "confirm", "boolean"),
                    )
                    .await?;
                let yes = answer["content"]["confirm"].as_bool().unwrap_or(false);
                Ok(text(if yes {
                    format!("deleted {filename}")
                } else {
                    format!("kept {filename}")
                }))
            })
        }),
        "multi_input" => Box::new(|task| {
            Box::pin(async move {
                let (first, second) = tokio::join!(
                    task.request_input("first", ask("First name?", "name", "string")),
                    task.request_input("second", ask("Second name?", "name", "string")),
                );
                let (first, second) = (first?, second?);
                Ok(text(format!(
                    "got {} and {}",
                    first["content"]["name"], second["content"]["name"]
                )))
            })
        }),
        "test_tool_with_task" => Box::new(move |_| {
            Box::pin(async move { Ok(text(format!("Hello, {user}, from a task"))) })
        }),
        _ => return None,
    })
}

impl ServerHandler for Tasks {
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
        Ok(ListToolsResult::with_all_items(vec![
            tool(
                "greet",
                "Greets at once",
                json!({"name": {"type": "string"}}),
            ),
            tool(
                "slow_compute",
                "Sleeps, as a task",
                json!({"seconds": {"type": "number"}, "label": {"type": "string"}}),
            ),
            tool("failing_job", "Reports a tool error, as a task", json!({})),
            tool(
                "protocol_error_job",
                "Fails with a protocol error, as a task",
                json!({}),
            ),
            tool(
                "confirm_delete",
                "Asks for a confirmation, as a task",
                json!({"filename": {"type": "string"}}),
            ),
            tool(
                "multi_input",
                "Asks two things at once, as a task",
                json!({}),
            ),
            tool(
                "test_tool_with_task",
                "Asks a name, then runs as a task",
                json!({}),
            ),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let declared = ctx
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks());
        let mut args = request.arguments.clone().unwrap_or_default();
        match &*request.name {
            "greet" => {
                let name = args.get("name").and_then(Value::as_str).unwrap_or("you");
                return Ok(text(format!("Hello, {name}!")).into());
            }
            "slow_compute" if !declared => {
                let seconds = args.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
                tokio::time::sleep(Duration::from_secs_f64(seconds.clamp(0.0, 5.0))).await;
                return Ok(text("computed in place").into());
            }
            "test_tool_with_task" => {
                let answer = request
                    .input_responses
                    .as_ref()
                    .and_then(|r| r.get("user_name"))
                    .and_then(|a| a["content"]["name"].as_str());
                let Some(user) = answer else {
                    let mut requests = InputRequests::new();
                    requests.insert("user_name".to_owned(), ask("Your name?", "name", "string"));
                    return Ok(CallToolResponse::InputRequired(InputRequiredResult::new(
                        Some(requests),
                        Some("asked-for-name".to_owned()),
                    )));
                };
                args.insert("user_name".to_owned(), json!(user));
            }
            _ => {}
        }
        let Some(run) = operation(&request.name, &args) else {
            return Err(ErrorData::invalid_params(
                format!("no tool {}", request.name),
                None,
            ));
        };
        if !declared {
            return Err(needs_tasks());
        }
        let options = TaskOptions::new()
            .with_ttl_ms(300_000)
            .with_poll_interval_ms(100);
        let task = self.manager.spawn(options, run);
        Ok(CallToolResponse::Task(CreateTaskResult::new(task)))
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        Ok(GetTaskResult::new(self.manager.get_task(&request.task_id)?))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.manager
            .update_task(&request.task_id, request.input_responses)
    }

    async fn cancel_task(
        &self,
        request: rmcp::model::CancelTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.manager.cancel_task(&request.task_id)
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9300".to_owned());
    let server = Tasks::default();
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        std::sync::Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("tasks upstream on http://{}/mcp", listener.local_addr()?);
    axum::serve(listener, axum::Router::new().nest_service("/mcp", service)).await
}
