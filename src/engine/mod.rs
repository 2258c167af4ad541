//! The pure policy core: what exists ([`Catalog`]), what each level permits ([`Permissions`]),
//! and the resolved answer for one request ([`Grant`]).
//!
//! Nothing here knows HTTP, tower or I/O. Every decision the layers make is a call into this
//! module, so it can be tested (and reasoned about) as plain functions. It must never allocate
//! on the per-request path for catalogs of up to 128 servers, and it must never widen access:
//! every step after the first only intersects.

mod apps;
mod catalog;
mod catalog_error;
mod grant;
mod identities;
mod key_digest;
mod limits;
mod names;
mod params;
mod pin_book;
mod pin_digest;
mod pin_rules;
mod pin_store;
mod scope;
mod set;

use std::fmt;

pub use apps::UI_SCHEME;
pub(crate) use apps::{AppIndex, server_uri, ui_resource_of};
pub use catalog::{Attribution, Catalog, CatalogError, CostInfo, Server, ServerSpec, Settings};
pub use grant::{Denial, DeniedBy, Grant, Principal};
pub use identities::{
    ClaimedIdentity, IdentityConfigError, IdentitySpec, IdentityStore, KeyDigest, KeyMaterial,
    KeyRefusal, KeySpec, MemberSpec, TeamSpec,
};
pub use limits::{
    AppliesTo, BudgetPeriod, LevelLimits, Limit, LimitError, LimitKind, LimitSpec, Nanos,
    ToolLimitSpec,
};
pub use names::{NameIndex, NameKind, Owner};
pub use params::ParamsDenial;
pub use pin_book::{ApproveError, PinBook, PinChange, Quarantined};
pub use pin_digest::{
    BadDefinition, BadDigest, Fingerprint, PinDigest, PinKind, PinParts, canonical_definition,
    fingerprint, fingerprint_value,
};
pub use pin_rules::{NewTools, PinMode, PinRules};
pub use pin_store::{PinStore, StoredPin};
pub use scope::{Scope, ScopeDenial};
pub use set::ServerSet;

/// The index of a server inside one [`Catalog`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub(crate) u32);

impl ServerId {
    /// The position of the server in its catalog.
    #[must_use]
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerId({})", self.0)
    }
}

/// The five levels that may carry permissions, in the order they are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// The virtual key the caller presented.
    Key,
    /// The key's team.
    Team,
    /// The end user the request names (`x-litellm-end-user-id`).
    EndUser,
    /// The agent (the key's `agent_id`, else `x-litellm-agent-id`).
    Agent,
    /// The organisation (the key's, else its team's): a ceiling applied last.
    Organization,
}

impl Level {
    /// All levels in application order.
    pub const ALL: [Level; 5] = [
        Level::Key,
        Level::Team,
        Level::EndUser,
        Level::Agent,
        Level::Organization,
    ];

    /// A lower-case name for logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Key => "key",
            Level::Team => "team",
            Level::EndUser => "end_user",
            Level::Agent => "agent",
            Level::Organization => "organization",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the levels' server lists combine into the servers a caller may use; each key carries
/// the rule of the store it comes from.
///
/// The two rules agree whenever the key or its team restricts; they differ in what a level
/// that restricts nothing means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hierarchy {
    /// mcp-gatekeeper's rule (the configuration file and its Postgres store): a level without
    /// a list leaves the decision to the others, and when no level restricts, every server is
    /// allowed. `allow_all_keys` servers are added unless a key, team, end user or agent level
    /// is explicitly empty.
    #[default]
    Gatekeeper,
    /// LiteLLM's rule for the rows of its own database, where an empty list means "no
    /// restriction at this level": the servers a caller may use come from its key, else its
    /// team (both: their intersection); end user and agent narrow them; the organisation
    /// caps them, or is the grant itself when no lower level restricts. A caller none of
    /// whose levels lists a server gets none — only the `allow_all_keys` servers, which are
    /// added unless a key, team, end user or agent level is explicitly empty, and stay under
    /// the organisation's list.
    /// The master key without a list of its own sees every server.
    LiteLlm,
}

/// Whether tools of an aggregating service carry a `{server}{sep}` prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ToolPrefix {
    /// `{server}{sep}{tool}` (the default, as LiteLLM).
    #[default]
    Always,
    /// Bare names; a name offered by two servers is withheld and refused.
    Never,
}

/// How a refused `tools/call` is answered over MCP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DenialStyle {
    /// A JSON-RPC result with `isError: true` and the reason as text (LiteLLM's shape).
    #[default]
    ToolResult,
    /// A JSON-RPC error carrying the request id.
    JsonRpcError,
}

/// How the service behind the layers names its tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mount {
    /// The service is one catalog server, by name or alias: bare names are its own.
    Single(Box<str>),
    /// The service aggregates catalog servers; names carry the server (see [`ToolPrefix`]).
    Aggregate,
}

/// The permissions one level carries, compiled against one [`Catalog`].
///
/// Build it with [`Catalog::compile_permissions`]. Server sets are precomputed, so resolving a
/// grant is a handful of bitset intersections.
#[derive(Clone, Debug)]
pub struct Permissions {
    generation: u64,
    /// `None`: the level restricts no server.
    servers: Option<ServerSet>,
    tools: std::collections::HashMap<ServerId, catalog::ToolSet>,
}

impl Permissions {
    /// The servers this level allows, or `None` when it restricts none.
    #[must_use]
    pub fn servers(&self) -> Option<&ServerSet> {
        self.servers.as_ref()
    }

    /// Whether this level narrows the tools of `server`, and to which.
    fn tools_for(&self, server: ServerId) -> Option<&catalog::ToolSet> {
        self.tools.get(&server)
    }
}

/// The raw, uncompiled permissions of one level, as config or a resolver gives them.
///
/// `None` means the field is absent (no restriction); `Some(vec![])` means "none".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PermissionSpec {
    /// Servers by name or alias.
    pub mcp_servers: Option<Vec<String>>,
    /// Access groups by name.
    pub mcp_access_groups: Option<Vec<String>>,
    /// Per server (name or alias), the tools allowed (bare or prefixed names).
    pub mcp_tool_permissions: Option<Vec<(String, Vec<String>)>>,
}
