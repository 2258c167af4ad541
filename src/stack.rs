//! [`GatekeeperLayer`]: all six layers in their documented order, as one layer.

use std::fmt;

use tower_layer::Layer;

use crate::cost::{Cost, CostHook, CostLayer, SpendSink};
use crate::gatekeeper::Gatekeeper;
use crate::identity::{Identity, IdentityLayer, ResolveIdentity, StoreResolver};
use crate::limit::{Limit, LimitLayer};
use crate::metered::{Metered, MeteredLayer};
use crate::namespace::{Namespace, NamespaceLayer};
use crate::params::{AllowedParams, AllowedParamsLayer};
use crate::permission::{Permission, PermissionLayer};

/// The full stack around `S`: metrics, identity, namespace, permission, allowed_params,
/// limits, cost.
pub type Stack<S, R = StoreResolver, H = ()> =
    Metered<Identity<Namespace<Permission<AllowedParams<Limit<Cost<S, H>>>>>, R>>;

/// The six layers in order, outermost first, inside the [`MeteredLayer`] that times every
/// request when the gatekeeper has metrics:
/// [`IdentityLayer`] → [`NamespaceLayer`] → [`PermissionLayer`] → [`AllowedParamsLayer`] →
/// [`LimitLayer`] → [`CostLayer`] → the inner MCP service.
pub struct GatekeeperLayer<R = StoreResolver, H = ()> {
    metered: MeteredLayer,
    identity: IdentityLayer<R>,
    namespace: NamespaceLayer,
    permission: PermissionLayer,
    params: AllowedParamsLayer,
    limit: LimitLayer,
    cost: CostLayer<H>,
}

impl<R, H> Clone for GatekeeperLayer<R, H> {
    fn clone(&self) -> Self {
        Self {
            metered: self.metered.clone(),
            identity: self.identity.clone(),
            namespace: self.namespace.clone(),
            permission: self.permission.clone(),
            params: self.params.clone(),
            limit: self.limit.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<R, H> fmt::Debug for GatekeeperLayer<R, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatekeeperLayer")
            .field("identity", &self.identity)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl GatekeeperLayer {
    /// The six layers with the built-in identity store, limits counted in this process, no
    /// cost hook and no spend sink.
    #[must_use]
    pub fn new(gatekeeper: &Gatekeeper) -> Self {
        Self {
            metered: MeteredLayer::new(gatekeeper),
            identity: IdentityLayer::new(gatekeeper.clone()),
            namespace: NamespaceLayer::new(gatekeeper.clone()),
            permission: PermissionLayer::new(gatekeeper.clone()),
            params: AllowedParamsLayer::new(gatekeeper.clone()),
            limit: LimitLayer::new(gatekeeper.clone()),
            cost: CostLayer::new(gatekeeper.clone()),
        }
    }
}

impl<R: ResolveIdentity, H: CostHook> GatekeeperLayer<R, H> {
    /// Replaces the identity layer (a custom resolver, other header names, shared session
    /// bindings).
    #[must_use]
    pub fn identity<R2: ResolveIdentity>(
        self,
        identity: IdentityLayer<R2>,
    ) -> GatekeeperLayer<R2, H> {
        GatekeeperLayer {
            metered: self.metered,
            identity,
            namespace: self.namespace,
            permission: self.permission,
            params: self.params,
            limit: self.limit,
            cost: self.cost,
        }
    }

    /// Replaces the namespace layer (another scope header).
    #[must_use]
    pub fn namespace(mut self, namespace: NamespaceLayer) -> Self {
        self.namespace = namespace;
        self
    }

    /// Calls `hook` after every tool call.
    #[must_use]
    pub fn cost_hook<H2: CostHook>(self, hook: H2) -> GatekeeperLayer<R, H2> {
        GatekeeperLayer {
            metered: self.metered,
            identity: self.identity,
            namespace: self.namespace,
            permission: self.permission,
            params: self.params,
            limit: self.limit,
            cost: self.cost.hook(hook),
        }
    }

    /// Replaces the limit layer (a shared store, what to do when it fails).
    #[must_use]
    pub fn limit(mut self, limit: LimitLayer) -> Self {
        self.limit = limit;
        self
    }

    /// Sends every tool call event to `sink`.
    #[must_use]
    pub fn spend_sink(mut self, sink: impl SpendSink) -> Self {
        self.cost = self.cost.sink(sink);
        self
    }
}

impl<R, H> GatekeeperLayer<R, H> {
    /// The digest of the key a request presents, read as the identity layer reads it.
    #[cfg(feature = "gateway")]
    pub(crate) fn presented_digest(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Option<crate::engine::KeyDigest>, crate::rejection::Rejection> {
        self.identity.presented_digest(headers)
    }
}

impl<S, R, H> Layer<S> for GatekeeperLayer<R, H> {
    type Service = Stack<S, R, H>;
    fn layer(&self, inner: S) -> Self::Service {
        let s = self.cost.layer(inner);
        let s = self.limit.layer(s);
        let s = self.params.layer(s);
        let s = self.permission.layer(s);
        let s = self.namespace.layer(s);
        self.metered.layer(self.identity.layer(s))
    }
}

impl Gatekeeper {
    /// All six layers with the built-in identity store; see [`GatekeeperLayer`].
    #[must_use]
    pub fn layer(&self) -> GatekeeperLayer {
        GatekeeperLayer::new(self)
    }
}
