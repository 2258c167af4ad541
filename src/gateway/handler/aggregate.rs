//! Many upstreams as one: which of them a caller may use, where a name it calls goes, how a
//! request reaches one upstream or all of them on the caller's pooled sessions (each upstream's
//! health reported as it answers), and how their lists become one list.
//!
//! It never decides what a caller is allowed: the layers did, and the grant they left on the
//! request is only read here. An upstream that fails is left out of a list, never fatal to it.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::join_all;
use rmcp::model::ErrorData;
use rmcp::service::{Peer, ServiceError};
use rmcp::{RoleClient, RoleServer};

use crate::engine::{
    Attribution, NameIndex, NameKind, ServerId, ServerSet, ToolPrefix, server_uri,
};
use crate::gateway::caller::Caller;
use crate::gateway::shared::GatewayState;
use crate::gateway::upstream::client::Relay;
use crate::gateway::upstream::pool::Failure;

/// The upstreams one caller may use.
pub(crate) struct Upstreams<'a> {
    shared: &'a GatewayState,
    caller: Caller,
}

impl<'a> Upstreams<'a> {
    pub(crate) fn of(shared: &'a GatewayState, caller: Caller) -> Self {
        Self { shared, caller }
    }

    /// The caller.
    pub(crate) fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The catalog the caller's request was decided against: its grant's, so that a policy
    /// reload landing between the decision and the call neither widens nor empties what the
    /// decision allowed; the current one when no grant came with the request.
    fn catalog(&self) -> Arc<crate::engine::Catalog> {
        match &self.caller.grant {
            Some(g) => Arc::clone(g.catalog()),
            None => Arc::clone(self.shared.gatekeeper.policy().catalog()),
        }
    }

    /// The catalog servers the caller's grant allows.
    fn allowed(&self, catalog: &crate::engine::Catalog) -> ServerSet {
        match &self.caller.grant {
            Some(g) => g.effective(),
            None => catalog.all().clone(),
        }
    }

    /// Whether the caller may use the upstream `server`.
    pub(crate) fn may_use(&self, server: &str) -> bool {
        let catalog = self.catalog();
        catalog
            .lookup(server)
            .is_some_and(|id| self.allowed(&catalog).contains(id))
            && self.shared.upstreams.contains_key(server)
    }

    /// The upstreams the caller may use, by name.
    pub(crate) fn servers(&self) -> Vec<(ServerId, String)> {
        let catalog = self.catalog();
        self.allowed(&catalog)
            .iter()
            .map(|id| (id, catalog.server(id).name().to_owned()))
            .filter(|(_, name)| self.shared.upstreams.contains_key(name))
            .collect()
    }

    /// Where a prefixed (or, unprefixed, indexed) name goes: the upstream, and the name it
    /// knows.
    /// A UI resource (MCP Apps) is asked of its server by the server's own `ui://` URI.
    pub(crate) fn route<'n>(
        &self,
        kind: NameKind,
        name: &'n str,
    ) -> Result<(String, Cow<'n, str>), ErrorData> {
        let catalog = self.catalog();
        let index = self.shared.gatekeeper.name_index();
        let usable = || {
            let mut set = ServerSet::new();
            for id in self.allowed(&catalog).iter() {
                if self
                    .shared
                    .upstreams
                    .contains_key(catalog.server(id).name())
                {
                    set.insert(id);
                }
            }
            set
        };
        let unknown = || ErrorData::invalid_params(format!("unknown name {name}"), None);
        match catalog.attribute_within(
            self.shared.gatekeeper.mount(),
            Some(&index),
            kind,
            name,
            usable,
        ) {
            Some(Attribution::Server(id, bare)) => {
                let server = catalog.server(id).name().to_owned();
                if self.shared.upstreams.contains_key(&server) {
                    let bare = match kind {
                        NameKind::Resource => {
                            server_uri(self.shared.gatekeeper.mount(), name, bare)
                        }
                        _ => Cow::Borrowed(bare),
                    };
                    return Ok((server, bare));
                }
                Err(unknown())
            }
            _ => Err(unknown()),
        }
    }

    /// Asks `server` with `f` (a request described by `asked`) on the caller's pooled session (relaying
    /// what the upstream announces outside a call to `downstream`, if given), its health
    /// reported and its duration measured.
    pub(crate) async fn one<T, F, Fut>(
        &self,
        downstream: Option<&Peer<RoleServer>>,
        server: &str,
        asked: impl Into<Asked>,
        f: F,
    ) -> Result<T, ErrorData>
    where
        F: FnOnce(Peer<RoleClient>, Relay) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        if !self.may_use(server) {
            return Err(ErrorData::invalid_params("unknown name", None));
        }
        let Asked { method, span } = asked.into();
        let at = std::time::SystemTime::now();
        let started = std::time::Instant::now();
        let result = self
            .shared
            .with_session(&self.caller, server, downstream, f)
            .await;
        if let Some(metrics) = self.shared.gatekeeper.metrics() {
            let code;
            let error_type = match &result {
                Ok(_) => None,
                Err(Failure::Service(ServiceError::McpError(e))) => {
                    code = e.code.0.to_string();
                    Some(code.as_str())
                }
                Err(Failure::Unavailable(_)) => Some("unavailable"),
                Err(_) => Some(crate::metrics::OTHER),
            };
            metrics.client_operation(&crate::metrics::ClientOperation {
                method,
                server,
                tool: None,
                error_type,
                seconds: started.elapsed().as_secs_f64(),
                span: span.map(|(context, parent)| crate::metrics::Span {
                    context,
                    parent: Some(parent),
                    started: at,
                }),
            });
        }
        match result {
            Ok(v) => {
                self.shared.report_success(server);
                Ok(v)
            }
            // The upstream's own JSON-RPC error is an answer, not a failure of the upstream.
            Err(Failure::Service(ServiceError::McpError(e))) => {
                self.shared.report_success(server);
                Err(e)
            }
            Err(e) => {
                self.shared.report_failure(server, &e);
                if let (Failure::Unavailable(_), Some(settler)) = (&e, &self.caller.settler) {
                    // The call never reached the upstream: its reservation goes back.
                    settler.release();
                }
                Err(upstream_error(server, e))
            }
        }
    }

    /// Asks every upstream the caller may use with `f`, concurrently (see [`one`](Self::one));
    /// what those that answered gave.
    pub(crate) async fn all<T, F, Fut>(
        &self,
        downstream: Option<&Peer<RoleServer>>,
        f: F,
    ) -> Vec<(ServerId, String, T)>
    where
        F: Fn(Peer<RoleClient>, Relay) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let f = &f;
        let (shared, caller) = (self.shared, &self.caller);
        let calls = self.servers().into_iter().map(|(id, name)| async move {
            let mut result = shared.with_session(caller, &name, downstream, f).await;
            // A pooled session the upstream has dropped (it restarted, say) fails once and is
            // discarded; lists are safe to ask again, on a fresh session. Calls are not
            // retried: a tool may have run before the connection broke.
            if matches!(
                result,
                Err(Failure::Service(
                    ServiceError::TransportClosed | ServiceError::TransportSend(_)
                ))
            ) {
                result = shared.with_session(caller, &name, downstream, f).await;
            }
            match result {
                Ok(v) => {
                    shared.report_success(&name);
                    Some((id, name, v))
                }
                Err(e) => {
                    shared.report_failure(&name, &e);
                    None
                }
            }
        });
        join_all(calls).await.into_iter().flatten().collect()
    }
}

/// The error a caller gets for an upstream that failed: the upstream's own JSON-RPC error
/// verbatim, else a timeout or unavailability naming only the upstream.
pub(crate) fn upstream_error(server: &str, e: Failure) -> ErrorData {
    match e {
        // The upstream's own JSON-RPC error passes through verbatim (code 0 included).
        Failure::Service(ServiceError::McpError(e)) => e,
        Failure::Timeout | Failure::Service(ServiceError::Timeout { .. }) => {
            ErrorData::internal_error(format!("upstream {server} timed out"), None)
        }
        _ => ErrorData::internal_error(format!("upstream {server} is unavailable"), None),
    }
}

/// Lists of several upstreams merged: names indexed (for unprefixed names) and prefixed with
/// their server.
pub(crate) fn merge<T>(
    shared: &GatewayState,
    kind: Option<NameKind>,
    lists: Vec<(ServerId, String, Vec<T>)>,
    name: impl Fn(&T) -> &str,
    set_name: impl Fn(&mut T, String),
    ui: impl Fn(&mut T, &dyn Fn(&str) -> Option<String>),
) -> Vec<T> {
    if let Some(kind) = kind {
        let names: Vec<(ServerId, Vec<String>)> = lists
            .iter()
            .map(|(id, _, items)| (*id, items.iter().map(|i| name(i).to_owned()).collect()))
            .collect();
        index_names(shared, kind, &names);
    }
    let policy = shared.gatekeeper.policy();
    let catalog = policy.catalog();
    let mut out = Vec::new();
    for (_, server, list) in lists {
        let prefix = shared.name_prefix(&server);
        // A UI resource (MCP Apps) keeps its scheme, its server named inside it.
        let ui_uri = |uri: &str| catalog.ui_uri(&server, uri);
        for mut item in list {
            let renamed = match kind {
                Some(NameKind::Resource) => ui_uri(name(&item)),
                _ => None,
            }
            .unwrap_or_else(|| format!("{prefix}{}", name(&item)));
            set_name(&mut item, renamed);
            ui(&mut item, &ui_uri);
            out.push(item);
        }
    }
    out
}

/// Notes which upstream offers each name, for calls by unprefixed names (only when names are
/// never prefixed); a name several upstreams offer is withheld and refused.
fn index_names(shared: &GatewayState, kind: NameKind, listed: &[(ServerId, Vec<String>)]) {
    let gatekeeper = &shared.gatekeeper;
    if gatekeeper.policy().catalog().settings().tool_prefix != ToolPrefix::Never {
        return;
    }
    let mut index: NameIndex = (*gatekeeper.name_index()).clone();
    for (id, names) in listed {
        // UI resources carry their server in their name (see `merge`).
        let names = names
            .iter()
            .filter(|n| kind != NameKind::Resource || !n.starts_with(crate::engine::UI_SCHEME));
        for n in names {
            index.insert(kind, n, *id);
        }
    }
    for c in index.collisions(kind) {
        crate::decision_events::warn(&format!(
            "{c} is offered by several servers; it is withheld and refused"
        ));
    }
    gatekeeper.set_name_index(index);
}

/// What a request to an upstream is, for its measurement: its method, and, when it is traced,
/// its span and the id of the gateway's span it serves (the upstream was told the span as the
/// parent of its own).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Asked {
    pub(crate) method: &'static str,
    pub(crate) span: Option<(crate::metrics::SpanContext, [u8; 8])>,
}

impl From<&'static str> for Asked {
    fn from(method: &'static str) -> Self {
        Self { method, span: None }
    }
}
