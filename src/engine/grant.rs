//! Who is asking ([`Principal`]) and what they may use ([`Grant`]).

use std::fmt;
use std::sync::Arc;

use super::{Catalog, Hierarchy, Level, Permissions, PinKind, ServerId, ServerSet};

/// The caller of one request, as an identity resolver establishes it.
///
/// Ids are for logs and cost events; `levels` carries the permissions of each of the five
/// levels that has any. Cloning is cheap (reference counts only).
#[derive(Clone, Debug, Default)]
pub struct Principal {
    /// A printable id for the key that never reveals it: its alias, else a digest prefix.
    pub key_id: Option<Arc<str>>,
    /// The key's alias.
    pub key_alias: Option<Arc<str>>,
    /// The key's team.
    pub team_id: Option<Arc<str>>,
    /// The organisation (the key's, else its team's).
    pub organization_id: Option<Arc<str>>,
    /// The end user the request names.
    pub end_user_id: Option<Arc<str>>,
    /// The agent.
    pub agent_id: Option<Arc<str>>,
    /// Whether this is the master key.
    pub is_admin: bool,
    /// Permissions per level, indexed in [`Level::ALL`] order.
    pub levels: [Option<Arc<Permissions>>; 5],
    /// What MCP sessions and per-caller upstream connections are bound to, when it is not the
    /// digest of the credential presented: for an OAuth token, a digest of its issuer and
    /// subject, which stays the same when the token is refreshed.
    pub caller_digest: Option<super::KeyDigest>,
    /// How the levels combine: the rule of the store the key came from.
    pub hierarchy: Hierarchy,
    /// Limits and budgets per level, indexed like `levels`.
    pub limits: [Option<Arc<super::LevelLimits>>; 5],
}

impl Principal {
    /// The permissions of one level, if that level carries any.
    #[must_use]
    pub fn level(&self, level: Level) -> Option<&Arc<Permissions>> {
        self.levels[level as usize].as_ref()
    }

    /// Sets the permissions of one level.
    pub fn set_level(&mut self, level: Level, permissions: Option<Arc<Permissions>>) {
        self.levels[level as usize] = permissions;
    }
}

/// The part of the policy that refused something, for logs and [`Grant::explain_server`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeniedBy {
    /// A permission level.
    Level(Level),
    /// The servers the request named (`x-mcp-servers` or the path).
    Scope,
    /// The server's `allowed_tools` does not list the tool.
    AllowedTools,
    /// The server's `disallowed_tools` lists the tool.
    DisallowedTools,
    /// The name belongs to no server the catalog knows.
    UnknownName,
    /// The bare name is offered by two or more servers.
    Ambiguous,
    /// The caller's permissions were compiled against another catalog (a reload raced).
    StalePolicy,
    /// The definition no longer matches its pin, or appeared after pinning (`tool_pinning:
    /// enforce`).
    Quarantined,
    /// A UI resource (MCP Apps) that no tool the caller may call names.
    AppTool,
}

impl fmt::Display for DeniedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Level(l) => write!(f, "{l} permissions"),
            Self::Scope => f.write_str("requested server scope"),
            Self::AllowedTools => f.write_str("server allowed_tools"),
            Self::DisallowedTools => f.write_str("server disallowed_tools"),
            Self::UnknownName => f.write_str("unknown name"),
            Self::Ambiguous => f.write_str("name offered by several servers"),
            Self::StalePolicy => f.write_str("policy changed while resolving"),
            Self::Quarantined => f.write_str("tool pinning (definition changed or unapproved)"),
            Self::AppTool => f.write_str("no tool the caller may call shows this UI resource"),
        }
    }
}

/// A refusal, with the server (when known) and what refused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denial {
    /// The server the name belongs to, when it belongs to one.
    pub server: Option<ServerId>,
    /// What refused it.
    pub by: DeniedBy,
}

/// What one caller may use, resolved once per request from a [`Catalog`] and a [`Principal`].
///
/// Every allow/deny question (listing or calling) goes through [`Grant::check_server`] and
/// [`Grant::check_tool`], so what a caller can list is exactly what it can call.
#[derive(Clone, Debug)]
pub struct Grant {
    catalog: Arc<Catalog>,
    servers: ServerSet,
    scope: Option<ServerSet>,
    levels: [Option<Arc<Permissions>>; 5],
    stale: bool,
    hierarchy: Hierarchy,
    pins: Option<Arc<super::PinBook>>,
}

impl Grant {
    /// Resolves the server-level hierarchy, by the principal's [`Hierarchy`].
    ///
    /// Key and team intersect (an unrestricted key inherits its team); end user and agent
    /// intersect when present; `allow_all_keys` servers are added unless a level is explicitly
    /// empty; the organisation is a ceiling applied last. Permissions compiled against another
    /// catalog make the grant empty (fail closed).
    #[must_use]
    pub fn resolve(catalog: &Arc<Catalog>, principal: &Principal) -> Self {
        let stale = principal
            .levels
            .iter()
            .flatten()
            .any(|p| p.generation != catalog.generation());
        let mut grant = Self {
            catalog: Arc::clone(catalog),
            servers: ServerSet::new(),
            scope: None,
            levels: principal.levels.clone(),
            stale,
            hierarchy: principal.hierarchy,
            pins: None,
        };
        if stale {
            return grant;
        }
        if principal.hierarchy == Hierarchy::LiteLlm {
            grant.servers = grant.litellm_servers(principal.is_admin);
            return grant;
        }
        let mut servers = catalog.all().clone();
        let mut explicitly_empty = false;
        for level in [Level::Key, Level::Team, Level::EndUser, Level::Agent] {
            if let Some(set) = grant.level_servers(level) {
                servers.intersect_with(set);
                explicitly_empty |= set.is_empty();
            }
        }
        if !explicitly_empty {
            servers.union_with(catalog.public());
        }
        if let Some(ceiling) = grant.level_servers(Level::Organization) {
            servers.intersect_with(ceiling);
        }
        grant.servers = servers;
        grant
    }

    /// [`Hierarchy::LiteLlm`]: the key's list, else the team's (both: their intersection),
    /// narrowed by end user and agent; the organisation caps it, or grants its own list when no
    /// lower level restricts; then the `allow_all_keys` servers, under the organisation, unless
    /// a level is explicitly empty.
    fn litellm_servers(&self, is_admin: bool) -> ServerSet {
        let key = self.level_servers(Level::Key);
        let team = self.level_servers(Level::Team);
        let mut restricted = key.is_some() || team.is_some();
        let mut servers = match (key, team) {
            (Some(k), Some(t)) => {
                let mut s = k.clone();
                s.intersect_with(t);
                s
            }
            (Some(s), None) | (None, Some(s)) => s.clone(),
            (None, None) => ServerSet::new(),
        };
        for level in [Level::EndUser, Level::Agent] {
            if let Some(set) = self.level_servers(level) {
                servers.intersect_with(set);
                restricted = true;
            }
        }
        let organization = self.level_servers(Level::Organization);
        match organization {
            Some(ceiling) if restricted => servers.intersect_with(ceiling),
            Some(ceiling) => {
                servers = ceiling.clone();
                restricted = true;
            }
            None => {}
        }
        if is_admin && !restricted {
            return self.catalog.all().clone();
        }
        let explicitly_empty = [Level::Key, Level::Team, Level::EndUser, Level::Agent]
            .into_iter()
            .any(|l| self.level_servers(l).is_some_and(ServerSet::is_empty));
        if !explicitly_empty {
            let mut public = self.catalog.public().clone();
            if let Some(ceiling) = organization {
                public.intersect_with(ceiling);
            }
            servers.union_with(&public);
        }
        servers
    }

    fn level_servers(&self, level: Level) -> Option<&ServerSet> {
        self.levels[level as usize]
            .as_deref()
            .and_then(Permissions::servers)
    }

    /// Whether `other` decides every name exactly as this grant does, judged by identity: the
    /// same catalog and the same permission sets (`Arc`s) at every level, the same servers and
    /// scope. Grants resolved for the same principal under the same policy compare equal.
    #[must_use]
    pub fn same_decisions(&self, other: &Grant) -> bool {
        let same_level = |a: &Option<Arc<Permissions>>, b: &Option<Arc<Permissions>>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        Arc::ptr_eq(&self.catalog, &other.catalog)
            && self.pins.as_ref().map(Arc::as_ptr) == other.pins.as_ref().map(Arc::as_ptr)
            && self.stale == other.stale
            && self.hierarchy == other.hierarchy
            && self.servers == other.servers
            && self.scope == other.scope
            && self
                .levels
                .iter()
                .zip(&other.levels)
                .all(|(a, b)| same_level(a, b))
    }

    /// The catalog this grant was resolved against.
    #[must_use]
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The servers the hierarchy allows, before any scope.
    #[must_use]
    pub fn allowed(&self) -> &ServerSet {
        &self.servers
    }

    /// Narrows the grant to the servers a request named. Scope only ever narrows.
    pub fn narrow(&mut self, scope: ServerSet) {
        match &mut self.scope {
            Some(existing) => existing.intersect_with(&scope),
            None => self.scope = Some(scope),
        }
    }

    /// The servers this request may use: the hierarchy's, within the scope.
    #[must_use]
    pub fn effective(&self) -> ServerSet {
        let mut set = self.servers.clone();
        if let Some(scope) = &self.scope {
            set.intersect_with(scope);
        }
        set
    }

    /// Whether the request may use a server.
    ///
    /// # Errors
    ///
    /// A [`Denial`] naming the level, scope or reload that refused it.
    pub fn check_server(&self, server: ServerId) -> Result<(), Denial> {
        let inside =
            self.servers.contains(server) && self.scope.as_ref().is_none_or(|s| s.contains(server));
        if inside {
            Ok(())
        } else {
            Err(Denial {
                server: Some(server),
                by: self.explain_server(server),
            })
        }
    }

    /// Whether the request may use a tool, by its bare name on `server`. The one predicate both
    /// list filtering and call enforcement use.
    ///
    /// # Errors
    ///
    /// A [`Denial`] naming the level or server rule that refused it.
    pub fn check_tool(&self, server: ServerId, bare_tool: &str) -> Result<(), Denial> {
        self.check_tool_unpinned(server, bare_tool)?;
        // Last, so that only a caller who may otherwise use the tool learns it is held back.
        if !self.pin_admits(PinKind::Tool, self.catalog.server(server), bare_tool) {
            return Err(Denial {
                server: Some(server),
                by: DeniedBy::Quarantined,
            });
        }
        Ok(())
    }

    /// [`Grant::check_tool`] but for pinning: list filtering asks the pin book itself while it
    /// records what the list shows (the same verdict, one look).
    pub(crate) fn check_tool_unpinned(
        &self,
        server: ServerId,
        bare_tool: &str,
    ) -> Result<(), Denial> {
        self.check_server(server)?;
        let deny = |by| {
            Err(Denial {
                server: Some(server),
                by,
            })
        };
        let spec = self.catalog.server(server);
        if let Err(by) = spec.rules_admit(bare_tool) {
            return deny(by);
        }
        for level in Level::ALL {
            if let Some(tools) = self.levels[level as usize]
                .as_deref()
                .and_then(|p| p.tools_for(server))
                && !tools.contains(bare_tool)
            {
                return deny(DeniedBy::Level(level));
            }
        }
        Ok(())
    }

    /// Checks a prompt (its server and bare name): the server must be in the grant and the
    /// prompt not quarantined by pinning.
    ///
    /// # Errors
    ///
    /// A [`Denial`] naming what refused it.
    pub(crate) fn check_prompt(&self, server: ServerId, bare_prompt: &str) -> Result<(), Denial> {
        self.check_server(server)?;
        if self.pin_admits(PinKind::Prompt, self.catalog.server(server), bare_prompt) {
            Ok(())
        } else {
            Err(Denial {
                server: Some(server),
                by: DeniedBy::Quarantined,
            })
        }
    }

    fn pin_admits(&self, kind: PinKind, server: &super::Server, bare: &str) -> bool {
        match &self.pins {
            Some(book) => book.admits(kind, server.name(), bare, server.pin_rules()),
            None => true,
        }
    }

    /// Holds quarantined definitions back, as `book` says (the permission layer attaches the
    /// gatekeeper's book when a server of the catalog pins).
    #[must_use]
    pub fn with_pins(mut self, book: Arc<super::PinBook>) -> Self {
        self.pins = Some(book);
        self
    }

    /// The pin book this grant consults, if any.
    #[must_use]
    pub fn pins(&self) -> Option<&Arc<super::PinBook>> {
        self.pins.as_ref()
    }

    /// Says why a server is outside the grant (meaningful only when it is).
    #[must_use]
    pub fn explain_server(&self, server: ServerId) -> DeniedBy {
        if self.stale {
            return DeniedBy::StalePolicy;
        }
        if self.servers.contains(server) {
            return DeniedBy::Scope;
        }
        let lists = |level| self.level_servers(level).is_some();
        if self.hierarchy == Hierarchy::LiteLlm
            && !lists(Level::Key)
            && !lists(Level::Team)
            && !lists(Level::Organization)
        {
            // Nothing lists a server: the key grants none.
            return DeniedBy::Level(Level::Key);
        }
        let public = self.catalog.public().contains(server);
        for level in [Level::Key, Level::Team, Level::EndUser, Level::Agent] {
            if let Some(set) = self.level_servers(level)
                && !set.contains(server)
                && (!public || set.is_empty())
            {
                return DeniedBy::Level(level);
            }
        }
        // Everything below the ceiling admitted it, so the organisation refused it.
        DeniedBy::Level(Level::Organization)
    }
}
