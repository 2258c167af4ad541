//! The two in-process MCP servers of the gateway's embedded demo.

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct Issue {
    /// Title.
    pub(crate) title: String,
    /// Body.
    pub(crate) body: Option<String>,
    /// Labels.
    pub(crate) labels: Option<Vec<String>>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct State {
    /// open, closed or all.
    pub(crate) state: Option<String>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct Repo {
    /// owner/name.
    pub(crate) repo: String,
}

#[derive(Debug, Clone)]
pub(crate) struct GitHub {
    tool_router: ToolRouter<Self>,
}

impl GitHub {
    pub(crate) fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl GitHub {
    #[tool(description = "Open an issue")]
    fn create_issue(&self, Parameters(i): Parameters<Issue>) -> String {
        format!(
            "created issue {:?} ({} labels, {} bytes of body)",
            i.title,
            i.labels.map_or(0, |l| l.len()),
            i.body.map_or(0, |b| b.len())
        )
    }

    #[tool(description = "List issues")]
    fn list_issues(&self, Parameters(s): Parameters<State>) -> String {
        format!(
            "#1 Crash on start ({})",
            s.state.unwrap_or_else(|| "open".into())
        )
    }

    #[tool(description = "Delete a repository")]
    fn delete_repo(&self, Parameters(r): Parameters<Repo>) -> String {
        format!("deleted {}", r.repo)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for GitHub {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct Page {
    /// The page.
    pub(crate) page: String,
    /// How many characters.
    pub(crate) limit: Option<u32>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct Query {
    /// Words to look for.
    pub(crate) query: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Wiki {
    tool_router: ToolRouter<Self>,
}

impl Wiki {
    pub(crate) fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl Wiki {
    #[tool(description = "Read a wiki page")]
    fn read_wiki_contents(&self, Parameters(p): Parameters<Page>) -> String {
        format!("# {}\nWelcome to the wiki. (limit {:?})", p.page, p.limit)
    }

    #[tool(description = "Search the wiki")]
    fn search_wiki(&self, Parameters(q): Parameters<Query>) -> String {
        format!("2 pages mention {:?}", q.query)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Wiki {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}
