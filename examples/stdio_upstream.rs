//! A small MCP server over stdin/stdout, used as a stdio upstream by the gateway tests.
//!
//! Tools: `echo(message)`, `pid()` (which process answers), `crash()` (exits at once).

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct Echo {
    /// What to say back.
    message: String,
}

#[derive(Debug, Clone)]
struct Local {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Local {
    #[tool(description = "Say it back")]
    fn echo(&self, Parameters(e): Parameters<Echo>) -> String {
        e.message
    }

    #[tool(description = "The answering process")]
    fn pid(&self) -> String {
        std::process::id().to_string()
    }

    #[tool(description = "Exit at once")]
    fn crash(&self) -> String {
        std::process::exit(3)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Local {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Local {
        tool_router: Local::tool_router(),
    }
    .serve(rmcp::transport::stdio())
    .await?;
    server.waiting().await?;
    Ok(())
}
