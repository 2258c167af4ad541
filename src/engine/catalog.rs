//! What exists: servers, their rules, access groups and prices.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use super::catalog_error::CatalogError;
use super::{
    DenialStyle, Mount, NameIndex, NameKind, Owner, PermissionSpec, Permissions, ServerId,
    ServerSet, ToolPrefix,
};

pub(crate) type ToolSet = HashSet<Box<str>>;

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Catalog-wide settings (`general_settings` in config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Between server and tool in aggregated names; `-` by default.
    pub separator: String,
    /// Whether aggregated tool names carry the server prefix.
    pub tool_prefix: ToolPrefix,
    /// How refused tool calls are answered.
    pub denial_style: DenialStyle,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            separator: "-".to_owned(),
            tool_prefix: ToolPrefix::Always,
            denial_style: DenialStyle::ToolResult,
        }
    }
}

/// Prices of one server's tools (`mcp_info.mcp_server_cost_info`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CostInfo {
    /// The price of a call to a tool without its own price.
    pub default_cost_per_query: Option<f64>,
    /// Prices by tool name (bare or prefixed).
    pub tool_name_to_cost_per_query: Vec<(String, f64)>,
}

/// One server as configuration describes it; [`Catalog::new`] validates a list of these.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerSpec {
    /// The server's name: unique, and free of the separator.
    pub name: String,
    /// Another name for it (unique across names and aliases).
    pub alias: Option<String>,
    /// Free text, shown in registries.
    pub description: Option<String>,
    /// Access groups the server belongs to.
    pub access_groups: Vec<String>,
    /// An allow-list of tools; `None` allows all.
    pub allowed_tools: Option<Vec<String>>,
    /// A deny-list of tools.
    pub disallowed_tools: Vec<String>,
    /// Per tool, the top-level argument names a caller may send.
    pub allowed_params: Vec<(String, Vec<String>)>,
    /// Whether every caller gets this server (still under the organisation ceiling).
    pub allow_all_keys: bool,
    /// Prices.
    pub cost: CostInfo,
    /// Tool and prompt pinning (`tool_pinning`, `pinned_tools`, ...); names bare or prefixed.
    pub pinning: super::PinRules,
    /// `audit_redact`: when set, audit events carry this server's argument values, those of
    /// these argument names replaced; otherwise argument names only.
    pub audit_redact: Option<Vec<String>>,
}

/// A validated server of a [`Catalog`].
#[derive(Clone, Debug)]
pub struct Server {
    name: Arc<str>,
    alias: Option<Box<str>>,
    description: Option<Box<str>>,
    access_groups: Box<[Box<str>]>,
    allowed_tools: Option<ToolSet>,
    disallowed_tools: ToolSet,
    allowed_params: HashMap<Box<str>, Box<[Box<str>]>>,
    allow_all_keys: bool,
    default_cost: f64,
    tool_costs: HashMap<Box<str>, f64>,
    pinning: super::PinRules,
    audit_redact: Option<Box<[Box<str>]>>,
}

impl Server {
    /// The server's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The server's name, shared (a cost event names its server without a copy).
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }
    /// The server's alias, if it has one.
    #[must_use]
    pub fn alias(&self) -> Option<&str> {
        self.alias.as_deref()
    }
    /// The description, if any.
    #[must_use]
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// The access groups the server belongs to.
    #[must_use]
    pub fn access_groups(&self) -> &[Box<str>] {
        &self.access_groups
    }
    /// Whether the server is offered to every caller.
    #[must_use]
    pub fn allow_all_keys(&self) -> bool {
        self.allow_all_keys
    }
    /// The argument names allowed for a bare tool name, if the server restricts that tool.
    #[must_use]
    pub fn allowed_params(&self, bare_tool: &str) -> Option<&[Box<str>]> {
        self.allowed_params.get(bare_tool).map(|v| &**v)
    }
    /// The server's pinning rules.
    #[must_use]
    pub fn pin_rules(&self) -> &super::PinRules {
        &self.pinning
    }
    /// The argument names whose values audit events replace, when the server lets them carry
    /// values at all.
    #[must_use]
    pub fn audit_redact(&self) -> Option<&[Box<str>]> {
        self.audit_redact.as_deref()
    }
    /// Whether the server's own rules (`allowed_tools`, `disallowed_tools`) admit a bare tool.
    pub(crate) fn rules_admit(&self, bare_tool: &str) -> Result<(), super::DeniedBy> {
        if self.disallowed_tools.contains(bare_tool) {
            return Err(super::DeniedBy::DisallowedTools);
        }
        match &self.allowed_tools {
            Some(allowed) if !allowed.contains(bare_tool) => Err(super::DeniedBy::AllowedTools),
            _ => Ok(()),
        }
    }
    /// The price of one call: the tool's own price, else the default, else 0.
    #[must_use]
    pub fn price(&self, bare_tool: &str) -> f64 {
        self.tool_costs
            .get(bare_tool)
            .copied()
            .unwrap_or(self.default_cost)
    }
}

/// Every server the layers know, with their rules, groups and prices.
///
/// A catalog is immutable; to change policy, build a new one and swap it in (see
/// [`crate::gatekeeper::Gatekeeper::reload`]).
#[derive(Clone, Debug)]
pub struct Catalog {
    generation: u64,
    servers: Vec<Server>,
    names: HashMap<Box<str>, ServerId>,
    groups: HashMap<Box<str>, ServerSet>,
    public: ServerSet,
    all: ServerSet,
    settings: Settings,
    /// Whether a server has `tool_pinning` on.
    pins: bool,
    /// Whether a server has `audit_redact` (its audit events carry argument values).
    audits_values: bool,
}

impl Catalog {
    /// Validates servers into a catalog.
    ///
    /// # Errors
    ///
    /// The first [`CatalogError`] found: empty or duplicate names, a separator inside a name, a
    /// group named like a server, a tool both allowed and disallowed, a bad price.
    pub fn new(settings: Settings, specs: Vec<ServerSpec>) -> Result<Self, CatalogError> {
        if settings.separator.is_empty() {
            return Err(CatalogError::EmptySeparator);
        }
        let sep = settings.separator.clone();
        let mut names = HashMap::new();
        let mut groups: HashMap<Box<str>, ServerSet> = HashMap::new();
        let mut public = ServerSet::new();
        let mut servers = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let id = ServerId(u32::try_from(i).expect("fewer than 2^32 servers"));
            for n in std::iter::once(&spec.name).chain(spec.alias.as_ref()) {
                if n.is_empty() {
                    return Err(CatalogError::EmptyName);
                }
                if n.contains(&*sep) {
                    return Err(CatalogError::SeparatorInName {
                        name: n.clone(),
                        separator: sep.clone(),
                    });
                }
                if names.insert(n.as_str().into(), id).is_some() {
                    return Err(CatalogError::DuplicateName(n.clone()));
                }
            }
            let own = Own {
                name: &spec.name,
                alias: spec.alias.as_deref(),
                sep: &sep,
            };
            let allowed_tools = spec.allowed_tools.as_ref().map(|list| expand(list, &own));
            let disallowed_tools = expand(&spec.disallowed_tools, &own);
            if let Some(allowed) = &allowed_tools {
                for tool in &spec.disallowed_tools {
                    if allowed.contains(own.strip(tool).unwrap_or(tool))
                        || allowed.contains(&**tool)
                    {
                        return Err(CatalogError::AllowedAndDisallowed {
                            server: spec.name.clone(),
                            tool: tool.clone(),
                        });
                    }
                }
            }
            let mut allowed_params = HashMap::new();
            for (tool, params) in &spec.allowed_params {
                let list: Box<[Box<str>]> = params.iter().map(|p| p.as_str().into()).collect();
                for form in forms(tool, &own) {
                    allowed_params.insert(form.into(), list.clone());
                }
            }
            let bad_price = |p: f64| !(p.is_finite() && p >= 0.0);
            let default_cost = spec.cost.default_cost_per_query.unwrap_or(0.0);
            if bad_price(default_cost) {
                return Err(CatalogError::BadPrice {
                    server: spec.name.clone(),
                    tool: None,
                });
            }
            let mut tool_costs = HashMap::new();
            for (tool, price) in &spec.cost.tool_name_to_cost_per_query {
                if bad_price(*price) {
                    return Err(CatalogError::BadPrice {
                        server: spec.name.clone(),
                        tool: Some(tool.clone()),
                    });
                }
                for form in forms(tool, &own) {
                    tool_costs.insert(form.into(), *price);
                }
            }
            for group in &spec.access_groups {
                groups.entry(group.as_str().into()).or_default().insert(id);
            }
            if spec.allow_all_keys {
                public.insert(id);
            }
            let mut pinning = spec.pinning;
            for pins in [&mut pinning.tools, &mut pinning.prompts] {
                *pins = std::mem::take(pins)
                    .into_iter()
                    .map(|(name, pin)| (own.strip(&name).map_or(name.clone(), Into::into), pin))
                    .collect();
            }
            servers.push(Server {
                name: spec.name.into(),
                alias: spec.alias.map(Into::into),
                description: spec.description.map(Into::into),
                access_groups: spec.access_groups.into_iter().map(Into::into).collect(),
                allowed_tools,
                disallowed_tools,
                allowed_params,
                allow_all_keys: spec.allow_all_keys,
                default_cost,
                tool_costs,
                pinning,
                audit_redact: spec
                    .audit_redact
                    .map(|names| names.into_iter().map(Into::into).collect()),
            });
        }
        if let Some(name) = groups.keys().find(|g| names.contains_key(*g)) {
            return Err(CatalogError::GroupNamesServer(name.to_string()));
        }
        Ok(Self {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            all: ServerSet::first(servers.len()),
            pins: servers
                .iter()
                .any(|s| s.pinning.mode != super::PinMode::Off),
            audits_values: servers.iter().any(|s| s.audit_redact.is_some()),
            servers,
            names,
            groups,
            public,
            settings,
        })
    }

    /// A catalog with no servers: every caller gets nothing.
    #[must_use]
    pub fn empty() -> Self {
        Self::new(Settings::default(), Vec::new()).expect("an empty catalog is valid")
    }

    /// Whether any server holds its definitions to pins (`tool_pinning` other than `off`).
    #[must_use]
    pub(crate) fn pins_definitions(&self) -> bool {
        self.pins
    }

    /// Whether any server's audit events carry argument values (`audit_redact`).
    #[must_use]
    pub(crate) fn audits_argument_values(&self) -> bool {
        self.audits_values
    }

    /// A number unique to this catalog, so permissions compiled against another are caught.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// All servers, in id order.
    #[must_use]
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// A server by id.
    ///
    /// # Panics
    ///
    /// If the id belongs to another catalog and is out of range.
    #[must_use]
    pub fn server(&self, id: ServerId) -> &Server {
        &self.servers[id.index()]
    }

    /// Every server.
    #[must_use]
    pub fn all(&self) -> &ServerSet {
        &self.all
    }

    /// The servers offered to every caller (`allow_all_keys`).
    #[must_use]
    pub fn public(&self) -> &ServerSet {
        &self.public
    }

    /// A server by name or alias (exact, case-sensitive).
    #[must_use]
    pub fn lookup(&self, name: &str) -> Option<ServerId> {
        self.names.get(name).copied()
    }

    /// The servers of an access group.
    #[must_use]
    pub(crate) fn group(&self, name: &str) -> Option<&ServerSet> {
        self.groups.get(name)
    }

    /// The servers a scope entry (a server name, alias or access group) stands for.
    #[must_use]
    pub fn scope_entry(&self, entry: &str) -> Option<ServerSet> {
        if let Some(id) = self.lookup(entry) {
            let mut set = ServerSet::new();
            set.insert(id);
            return Some(set);
        }
        self.group(entry).cloned()
    }

    /// Splits `{server}{sep}{rest}` by the longest known server name or alias.
    #[must_use]
    pub fn split_prefixed<'n>(&self, name: &'n str) -> Option<(ServerId, &'n str)> {
        let sep = &*self.settings.separator;
        let mut best = None;
        for (pos, _) in name.match_indices(sep) {
            if let Some(id) = self.lookup(&name[..pos]) {
                best = Some((id, &name[pos + sep.len()..]));
            }
        }
        best.filter(|(_, rest)| !rest.is_empty())
    }

    /// How an aggregating service names `server`'s UI resource `uri` (`ui://{rest}`):
    /// `ui://{server}{separator}{rest}`, in every prefixing mode, so that the scheme hosts look
    /// for stays and two servers' UI resources never share a name. `None` for a URI of another
    /// scheme.
    #[must_use]
    #[cfg_attr(not(feature = "gateway"), allow(dead_code))]
    pub(crate) fn ui_uri(&self, server: &str, uri: &str) -> Option<String> {
        let rest = uri.strip_prefix(super::UI_SCHEME)?;
        Some(format!(
            "{}{server}{}{rest}",
            super::UI_SCHEME,
            self.settings.separator
        ))
    }

    /// Which server a tool, prompt or resource name of the inner service belongs to, and its
    /// name on that server.
    ///
    /// A UI resource of MCP Apps keeps its `ui://` scheme through an aggregating service, in
    /// every prefixing mode: a server's `ui://{rest}` is named `ui://{server}{separator}{rest}`
    /// (as the gateway names it), and its name on that server, as returned here, is `{rest}`:
    /// the server's own URI is [`UI_SCHEME`](super::UI_SCHEME) followed by it.
    #[must_use]
    pub fn attribute<'n>(
        &self,
        mount: &Mount,
        index: Option<&NameIndex>,
        kind: NameKind,
        name: &'n str,
    ) -> Option<Attribution<'n>> {
        match mount {
            Mount::Single(server) => self.lookup(server).map(|id| Attribution::Server(id, name)),
            Mount::Aggregate
                if kind == NameKind::Resource && name.starts_with(super::UI_SCHEME) =>
            {
                self.split_prefixed(&name[super::UI_SCHEME.len()..])
                    .map(|(id, rest)| Attribution::Server(id, rest))
            }
            Mount::Aggregate => match self.settings.tool_prefix {
                ToolPrefix::Always => self
                    .split_prefixed(name)
                    .map(|(id, bare)| Attribution::Server(id, bare)),
                ToolPrefix::Never => match index?.owner(kind, name)? {
                    Owner::One(id) => Some(Attribution::Server(id, name)),
                    Owner::Collision => Some(Attribution::Ambiguous),
                },
            },
        }
    }

    /// [`attribute`](Self::attribute) for one request. With unprefixed names, a resource URI
    /// that no upstream has listed (one a template expands to, or one to subscribe to before it
    /// exists) goes to the caller's only usable server when `usable` holds exactly one: the
    /// server grant covers all of that server's resources, and the server answers for the URI. `usable` is asked only then.
    #[must_use]
    pub fn attribute_within<'n>(
        &self,
        mount: &Mount,
        index: Option<&NameIndex>,
        kind: NameKind,
        name: &'n str,
        usable: impl FnOnce() -> ServerSet,
    ) -> Option<Attribution<'n>> {
        let found = self.attribute(mount, index, kind, name);
        if found.is_some()
            || kind != NameKind::Resource
            || name.starts_with(super::UI_SCHEME)
            || *mount != Mount::Aggregate
            || self.settings.tool_prefix != ToolPrefix::Never
        {
            return found;
        }
        let usable = usable();
        let mut servers = usable.iter();
        match (servers.next(), servers.next()) {
            (Some(only), None) => Some(Attribution::Server(only, name)),
            _ => None,
        }
    }

    /// Compiles one level's permissions against this catalog: names and aliases become ids,
    /// access groups become server sets, and prefixed tool names become bare ones.
    ///
    /// # Errors
    ///
    /// [`CatalogError::UnknownServer`] or [`CatalogError::UnknownAccessGroup`] for names the
    /// catalog does not have.
    pub fn compile_permissions(&self, spec: &PermissionSpec) -> Result<Permissions, CatalogError> {
        let mut servers: Option<ServerSet> = None;
        if let Some(list) = &spec.mcp_servers {
            let set = servers.get_or_insert_with(ServerSet::new);
            for name in list {
                set.insert(
                    self.lookup(name)
                        .ok_or_else(|| CatalogError::UnknownServer(name.clone()))?,
                );
            }
        }
        if let Some(list) = &spec.mcp_access_groups {
            let set = servers.get_or_insert_with(ServerSet::new);
            for name in list {
                let group = self
                    .group(name)
                    .ok_or_else(|| CatalogError::UnknownAccessGroup(name.clone()))?;
                set.union_with(group);
            }
        }
        let mut tools = HashMap::new();
        for (server, list) in spec.mcp_tool_permissions.iter().flatten() {
            let id = self
                .lookup(server)
                .ok_or_else(|| CatalogError::UnknownServer(server.clone()))?;
            let s = self.server(id);
            let own = Own {
                name: s.name(),
                alias: s.alias(),
                sep: &self.settings.separator,
            };
            if tools.insert(id, expand(list, &own)).is_some() {
                return Err(CatalogError::ServerListedTwice(server.clone()));
            }
        }
        Ok(Permissions {
            generation: self.generation,
            servers,
            tools,
        })
    }
}

/// Where a name of the inner service belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribution<'n> {
    /// To this server, under this name there.
    Server(ServerId, &'n str),
    /// To two or more servers (bare names only): withheld and refused.
    Ambiguous,
}

/// A server's own prefixes (`{name}{sep}`, `{alias}{sep}`), to accept prefixed names in config.
struct Own<'a> {
    name: &'a str,
    alias: Option<&'a str>,
    sep: &'a str,
}

impl Own<'_> {
    fn strip<'t>(&self, tool: &'t str) -> Option<&'t str> {
        std::iter::once(self.name)
            .chain(self.alias)
            .find_map(|p| tool.strip_prefix(p).and_then(|r| r.strip_prefix(self.sep)))
            .filter(|rest| !rest.is_empty())
    }
}

/// A configured tool name and, if it carries the server's own prefix, its bare form.
fn forms<'t>(tool: &'t str, own: &Own<'_>) -> impl Iterator<Item = &'t str> {
    std::iter::once(tool).chain(own.strip(tool))
}

fn expand(list: &[String], own: &Own<'_>) -> ToolSet {
    list.iter()
        .flat_map(|t| forms(t, own))
        .map(Into::into)
        .collect()
}
