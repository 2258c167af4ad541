//! [`CatalogError`]: what can be wrong with a catalog or the permissions compiled against it.

use std::fmt;

/// A configuration mistake found while building a [`Catalog`](super::Catalog) or compiling
/// permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatalogError {
    /// The separator is empty.
    EmptySeparator,
    /// A server has an empty name or alias.
    EmptyName,
    /// Two servers (or a name and an alias) share a name.
    DuplicateName(String),
    /// A server name or alias contains the separator.
    SeparatorInName {
        /// The name.
        name: String,
        /// The separator.
        separator: String,
    },
    /// An access group has the name of a server, so `x-mcp-servers` could not tell them apart.
    GroupNamesServer(String),
    /// A tool is both allowed and disallowed on one server.
    AllowedAndDisallowed {
        /// The server.
        server: String,
        /// The tool.
        tool: String,
    },
    /// A price is negative or not a number.
    BadPrice {
        /// The server.
        server: String,
        /// The tool, or `None` for the default price.
        tool: Option<String>,
    },
    /// Permissions name a server the catalog does not have.
    UnknownServer(String),
    /// Permissions name an access group no server belongs to.
    UnknownAccessGroup(String),
    /// One level's `mcp_tool_permissions` names a server twice (by name and alias, say).
    ServerListedTwice(String),
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptySeparator => f.write_str("the tool prefix separator must not be empty"),
            Self::EmptyName => f.write_str("a server name or alias is empty"),
            Self::DuplicateName(n) => {
                write!(
                    f,
                    "the server name or alias {n:?} is used twice; give each server a unique name and alias"
                )
            }
            Self::SeparatorInName { name, separator } => write!(
                f,
                "the server name or alias {name:?} contains the tool prefix separator {separator:?}; rename it or choose another tool_prefix_separator"
            ),
            Self::GroupNamesServer(n) => write!(
                f,
                "{n:?} is both a server name and an access group name; rename one of them"
            ),
            Self::AllowedAndDisallowed { server, tool } => write!(
                f,
                "tool {tool:?} of server {server:?} is in both allowed_tools and disallowed_tools; keep it in one list"
            ),
            Self::BadPrice {
                server,
                tool: Some(t),
            } => {
                write!(
                    f,
                    "the price of tool {t:?} of server {server:?} must be a non-negative number"
                )
            }
            Self::BadPrice { server, tool: None } => {
                write!(
                    f,
                    "the default price of server {server:?} must be a non-negative number"
                )
            }
            Self::UnknownServer(n) => write!(
                f,
                "no MCP server is named {n:?}; use a name or alias from mcp_servers"
            ),
            Self::ServerListedTwice(n) => write!(
                f,
                "mcp_tool_permissions names server {n:?} twice (by name and alias?); merge the two lists into one"
            ),
            Self::UnknownAccessGroup(n) => write!(
                f,
                "no MCP server is in access group {n:?}; add it to a server's access_groups or remove it here"
            ),
        }
    }
}

impl std::error::Error for CatalogError {}
