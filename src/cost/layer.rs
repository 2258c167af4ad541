//! [`CostLayer`]: what the layer is built with (a hook, a sink) and the layer itself.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::event::{CostHook, SpendSink};
use super::service::{Cost, Settings};
use crate::gatekeeper::Gatekeeper;

/// Adds [`Cost`] to a service. See the [module docs](super).
pub struct CostLayer<H = ()> {
    settings: Settings<H>,
}

impl<H> Clone for CostLayer<H> {
    fn clone(&self) -> Self {
        Self {
            settings: self.settings.clone(),
        }
    }
}

impl<H> fmt::Debug for CostLayer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CostLayer").finish_non_exhaustive()
    }
}

impl CostLayer {
    /// Cost events with catalog prices and no hook, dropped (set a sink with [`Self::sink`]).
    #[must_use]
    pub fn new(gatekeeper: Gatekeeper) -> Self {
        Self {
            settings: Settings {
                gatekeeper,
                hook: Arc::new(()),
                sink: Arc::new(()),
            },
        }
    }
}

impl<H: CostHook> CostLayer<H> {
    /// Calls `hook` for every tool call.
    #[must_use]
    pub fn hook<H2: CostHook>(self, hook: H2) -> CostLayer<H2> {
        CostLayer {
            settings: Settings {
                gatekeeper: self.settings.gatekeeper,
                hook: Arc::new(hook),
                sink: self.settings.sink,
            },
        }
    }

    /// Sends finished events to `sink`.
    #[must_use]
    pub fn sink(mut self, sink: impl SpendSink) -> Self {
        self.settings.sink = Arc::new(sink);
        self
    }
}

impl<S, H> Layer<S> for CostLayer<H> {
    type Service = Cost<S, H>;
    fn layer(&self, inner: S) -> Self::Service {
        Cost::new(inner, self.settings.clone())
    }
}
