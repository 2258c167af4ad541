//! An upstream of protocol 2026-07-28 that asks its caller something before it answers, and a
//! client that answers.
#![allow(deprecated)] // sampling is deprecated in the newest protocol; upstreams still ask for it

use serde_json::json;

use super::tool;

/// An upstream of protocol 2026-07-28 whose tool `ask` needs a sampling answer first: it
/// answers with an input-required result carrying its own state, and completes when called
/// again with the answer and that state.
#[derive(Clone, Default)]
pub struct Asker {
    /// The `requestState` of every call that reached it.
    pub states: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    /// The `MCP-Protocol-Version` of every call that reached it.
    pub versions: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
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
pub fn identity() -> rmcp::model::MetaObject {
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
pub struct Blue;

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
