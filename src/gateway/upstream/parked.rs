//! Tool calls of 2026-07-28 callers parked between rounds: the upstream call keeps running
//! while its caller answers the upstream's requests (see the handler's `tool_rounds`), found again by the
//! `requestState` the caller was given, and dropped when the caller does not come back in time.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolResponse, ErrorData};
use tokio::sync::{mpsc, oneshot};

use super::client::{Pending, Relay};
use super::tool_call::Notice;

/// How long a call waits for its caller to come back with the answers.
const PARKED_FOR: Duration = Duration::from_secs(300);

/// An upstream call in flight, between rounds.
pub(crate) struct InFlight {
    pub(crate) owner: Option<[u8; 32]>,
    pub(crate) server: String,
    pub(crate) tool: String,
    pub(crate) done: oneshot::Receiver<Result<CallToolResponse, ErrorData>>,
    pub(crate) held: mpsc::UnboundedReceiver<Pending>,
    pub(crate) progress: mpsc::Receiver<Notice>,
    pub(crate) waiting: HashMap<String, oneshot::Sender<Result<serde_json::Value, ErrorData>>>,
    pub(crate) asked: u64,
    pub(crate) parked_at: Instant,
    /// The upstream session's relay, once the call has one: each round points its
    /// notifications (logging) at the caller's current request.
    pub(crate) relay: Option<Relay>,
    pub(crate) relay_rx: oneshot::Receiver<Relay>,
}

/// Calls waiting for their callers, by `requestState`.
#[derive(Default)]
pub(crate) struct Parked(Mutex<HashMap<String, InFlight>>);

impl Parked {
    pub(crate) fn park(&self, state: String, call: InFlight) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Calls whose callers never came back: dropping them fails the upstream's requests,
        // which ends the upstream call.
        map.retain(|_, c| c.parked_at.elapsed() < PARKED_FOR);
        map.insert(state, call);
    }

    pub(crate) fn take(&self, state: &str) -> Option<InFlight> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(state)
    }
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked").finish_non_exhaustive()
    }
}
