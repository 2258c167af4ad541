//! The shared handle every layer is built from: the swappable policy, how the inner service
//! names its tools, and the size limits.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::audit::Auditor;
use crate::engine::{Catalog, IdentityStore, Mount, NameIndex, PinBook};
use crate::metrics::Metrics;

/// One consistent version of the policy: the catalog and the identity store built with it.
///
/// Layers load one snapshot per request (the first layer stores it in the request extensions),
/// so a reload never mixes two versions inside one decision.
#[derive(Debug)]
pub struct PolicySnapshot {
    catalog: Arc<Catalog>,
    identities: IdentityStore,
    loaded: bool,
}

impl PolicySnapshot {
    /// A policy from a catalog and an identity store compiled against it.
    #[must_use]
    pub fn new(catalog: Arc<Catalog>, identities: IdentityStore) -> Self {
        Self {
            catalog,
            identities,
            loaded: true,
        }
    }

    /// A stand-in for a policy that has not been loaded yet (its source, a database, has not
    /// answered): the identity layer refuses every request with 503 while it is in place,
    /// rather than decide with an empty or default policy. `catalog` names the servers so the
    /// parts built around the catalog can start.
    #[must_use]
    pub fn pending(catalog: Arc<Catalog>) -> Self {
        Self {
            catalog,
            identities: IdentityStore::empty(),
            loaded: false,
        }
    }

    /// Whether this is a loaded policy (not [`PolicySnapshot::pending`]).
    #[must_use]
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// The catalog.
    #[must_use]
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The built-in identity store.
    #[must_use]
    pub fn identities(&self) -> &IdentityStore {
        &self.identities
    }
}

/// Size limits that keep every buffer bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest POST body collected for inspection (default 4 MiB); beyond it: 413.
    pub max_request_body: usize,
    /// The largest JSON list reply collected for filtering (default 16 MiB).
    pub max_list_response: usize,
    /// The largest single server-sent event framed for filtering (default 16 MiB).
    pub max_sse_event: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_body: 4 << 20,
            max_list_response: 16 << 20,
            max_sse_event: 16 << 20,
        }
    }
}

/// What a handle carries: the state shared by every handle of one gatekeeper, and this
/// handle's own options. One allocation, so cloning a handle (which every layer of a stack does
/// per request, see `tower`'s clone-then-call idiom) is one reference count, not four.
#[derive(Clone)]
struct Handle {
    shared: Arc<GatekeeperState>,
    mount: Mount,
    limits: Limits,
    pins: Arc<PinBook>,
    audit: Auditor,
    metrics: Option<Arc<dyn Metrics>>,
}

/// GatekeeperState by every handle cloned from one [`Gatekeeper::new`], whatever their options.
struct GatekeeperState {
    policy: ArcSwap<PolicySnapshot>,
    index: ArcSwap<NameIndex>,
    list_memo: crate::list_memo::ListMemo,
    apps: crate::engine::AppIndex,
}

/// The handle the layers share: a swappable [`PolicySnapshot`], how the inner service names its
/// tools
/// ([`Mount`]), the bare-name index for unprefixed aggregation, and the [`Limits`].
///
/// Cloning bumps one reference count. [`Gatekeeper::reload`] swaps the policy atomically:
/// requests already past identity keep the snapshot they started with; new requests see the
/// new one.
#[derive(Clone)]
pub struct Gatekeeper {
    handle: Arc<Handle>,
}

impl fmt::Debug for Gatekeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gatekeeper")
            .field("mount", &self.handle.mount)
            .field("limits", &self.handle.limits)
            .field(
                "servers",
                &self.handle.shared.policy.load().catalog.servers().len(),
            )
            .finish_non_exhaustive()
    }
}

impl Gatekeeper {
    /// A handle for a service that aggregates the catalog's servers (tool names carry the
    /// server, see [`crate::engine::ToolPrefix`]).
    #[must_use]
    pub fn new(policy: PolicySnapshot) -> Self {
        Self {
            handle: Arc::new(Handle {
                shared: Arc::new(GatekeeperState {
                    policy: ArcSwap::from_pointee(policy),
                    index: ArcSwap::from_pointee(NameIndex::default()),
                    list_memo: crate::list_memo::ListMemo::default(),
                    apps: crate::engine::AppIndex::default(),
                }),
                mount: Mount::Aggregate,
                limits: Limits::default(),
                pins: Arc::default(),
                audit: Auditor::disabled(),
                metrics: None,
            }),
        }
    }

    /// A handle for a service that is the one catalog server `name`: bare names are its own.
    #[must_use]
    pub fn for_server(policy: PolicySnapshot, name: impl Into<Box<str>>) -> Self {
        Self::new(policy).with_mount(Mount::Single(name.into()))
    }

    /// Sets how the inner service names its tools.
    #[must_use]
    pub fn with_mount(mut self, mount: Mount) -> Self {
        Arc::make_mut(&mut self.handle).mount = mount;
        self
    }

    /// Sets the size limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        Arc::make_mut(&mut self.handle).limits = limits;
        self
    }

    /// Sets the book of tool and prompt pins (by default an empty one kept in memory; give one
    /// with a [`PinStore`](crate::engine::PinStore) so that pins survive a restart).
    #[must_use]
    pub fn with_pins(mut self, pins: Arc<PinBook>) -> Self {
        Arc::make_mut(&mut self.handle).pins = pins;
        self
    }

    /// Sets where decision events go (by default nowhere but `tracing`, with that feature).
    #[must_use]
    pub fn with_audit(mut self, audit: Auditor) -> Self {
        let handle = Arc::make_mut(&mut self.handle);
        handle.audit = match &handle.metrics {
            Some(metrics) => audit.with_metrics(Arc::clone(metrics)),
            None => audit,
        };
        self
    }

    /// Sets what measures the layers' work: every MCP request's duration (see
    /// [`MeteredLayer`](crate::metered::MeteredLayer)) and every decision (by default nothing
    /// is measured).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        let handle = Arc::make_mut(&mut self.handle);
        handle.audit = handle.audit.clone().with_metrics(Arc::clone(&metrics));
        handle.metrics = Some(metrics);
        self
    }

    /// What measures the layers' work, if anything does.
    #[must_use]
    pub fn metrics(&self) -> Option<&Arc<dyn Metrics>> {
        self.handle.metrics.as_ref()
    }

    /// The book of tool and prompt pins.
    #[must_use]
    pub fn pins(&self) -> &Arc<PinBook> {
        &self.handle.pins
    }

    /// Where decision events go.
    #[must_use]
    pub fn audit(&self) -> &Auditor {
        &self.handle.audit
    }

    /// Swaps in a new policy for every request that starts from now on.
    pub fn reload(&self, policy: PolicySnapshot) {
        self.handle.shared.policy.store(Arc::new(policy));
    }

    /// The current policy.
    #[must_use]
    pub fn policy(&self) -> Arc<PolicySnapshot> {
        self.handle.shared.policy.load_full()
    }

    /// Replaces the index of bare names used with `tool_prefix: never`.
    #[cfg_attr(not(feature = "gateway"), allow(dead_code))]
    pub(crate) fn set_name_index(&self, index: NameIndex) {
        self.handle.shared.index.store(Arc::new(index));
    }

    /// The index of bare names.
    #[must_use]
    pub(crate) fn name_index(&self) -> Arc<NameIndex> {
        self.handle.shared.index.load_full()
    }

    /// Which tools name which UI resource (MCP Apps), as the tool lists showed.
    pub(crate) fn apps(&self) -> &crate::engine::AppIndex {
        &self.handle.shared.apps
    }

    /// How the inner service names its tools.
    #[must_use]
    pub fn mount(&self) -> &Mount {
        &self.handle.mount
    }

    /// The size limits.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.handle.limits
    }

    pub(crate) fn list_memo(&self) -> &crate::list_memo::ListMemo {
        &self.handle.shared.list_memo
    }
}
