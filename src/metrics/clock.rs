//! [`SessionClock`]: times one session from its opening to the moment it is dropped.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::{Metrics, Session, SessionSide, version_label};

/// Times one session: opened when its protocol version is known, recorded when the last
/// holder drops it. A clock never opened (a request of a session-less protocol) records
/// nothing.
pub(crate) struct SessionClock {
    metrics: Arc<dyn Metrics>,
    side: SessionSide,
    server: Option<Arc<str>>,
    transport: &'static str,
    started: Instant,
    version: OnceLock<&'static str>,
    error: OnceLock<&'static str>,
}

impl std::fmt::Debug for SessionClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionClock")
            .field("side", &self.side)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl SessionClock {
    /// A clock for one session on `side`, with upstream `server` for the gateway's own,
    /// carried over `transport` (`tcp` or `pipe`), started now.
    pub(crate) fn new(
        metrics: Arc<dyn Metrics>,
        side: SessionSide,
        server: Option<Arc<str>>,
        transport: &'static str,
    ) -> Self {
        Self {
            metrics,
            side,
            server,
            transport,
            started: Instant::now(),
            version: OnceLock::new(),
            error: OnceLock::new(),
        }
    }

    /// The session is open under `version`, unless that is 2026-07-28, which has no
    /// sessions.
    pub(crate) fn opened(&self, version: &str) {
        if version != "2026-07-28" {
            let _ = self.version.set(version_label(version));
        }
    }

    /// The session ends for `error` (the first reason given is kept).
    pub(crate) fn failed(&self, error: &'static str) {
        let _ = self.error.set(error);
    }
}

impl Drop for SessionClock {
    fn drop(&mut self) {
        let Some(version) = self.version.get() else {
            return;
        };
        self.metrics.session(&Session {
            side: self.side,
            server: self.server.as_deref(),
            protocol_version: Some(version),
            transport: self.transport,
            error_type: self.error.get().copied(),
            seconds: self.started.elapsed().as_secs_f64(),
        });
    }
}
