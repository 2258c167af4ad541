//! What the endpoint keeps per rmcp session on a stateful endpoint.
//!
//! - **When rmcp last saw the session.** rmcp's session worker closes a session after its
//!   keep-alive (5 minutes) without a message through it; calls on the endpoint do not pass
//!   through it. A session whose last request through rmcp is older than [`FRESH`] has its next
//!   call sent through rmcp, which keeps it alive; the endpoint takes the calls in between.
//! - **The upstreams' requests passed to callers.** Each goes out on the caller's reply stream
//!   under an id of the gateway's (`gkx-…`), remembered with the session: only an answer posted
//!   on the same session (which the identity layer binds to its key) reaches the upstream, under
//!   the upstream's own id. Entries go when the call ends.
//! - **Calls in flight**, by session and the caller's request id, so that the caller's
//!   `notifications/cancelled` ends the upstream request (rmcp never saw the call).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::gateway::upstream::session::Poster;

/// How long after rmcp last handled a session's request the endpoint may take its calls:
/// well inside rmcp's keep-alive of 5 minutes.
pub(crate) const FRESH: Duration = Duration::from_secs(60);

/// Past this many remembered sessions, the stale ones are forgotten.
const PRUNE_AT: usize = 4_096;

static NEXT_ASK: AtomicU64 = AtomicU64::new(1);

type Key = (Arc<str>, String);

pub(crate) struct Sessions {
    manager: Arc<LocalSessionManager>,
    seen: Mutex<HashMap<Arc<str>, Instant>>,
    asked: Mutex<HashMap<Key, (Poster, Value)>>,
    running: Mutex<HashMap<Key, CancellationToken>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sessions {
    pub(crate) fn new(manager: Arc<LocalSessionManager>) -> Self {
        Self {
            manager,
            seen: Mutex::default(),
            asked: Mutex::default(),
            running: Mutex::default(),
        }
    }

    /// rmcp has just handled a request of `session`.
    pub(crate) fn saw(&self, session: &str) {
        let mut seen = lock(&self.seen);
        if let Some(at) = seen.get_mut(session) {
            *at = Instant::now();
            return;
        }
        if seen.len() >= PRUNE_AT {
            seen.retain(|_, at| at.elapsed() < FRESH);
        }
        seen.insert(Arc::from(session), Instant::now());
    }

    /// Whether the endpoint may take a call of `session`: rmcp has it open and has seen it
    /// lately.
    pub(crate) async fn usable(&self, session: &Arc<str>) -> bool {
        let fresh = lock(&self.seen)
            .get(session)
            .is_some_and(|at| at.elapsed() < FRESH);
        fresh && matches!(self.manager.has_session(session).await, Ok(true))
    }

    /// Remembers an upstream request passed to the caller of `session`; the id the caller sees.
    pub(crate) fn ask(&self, session: &Arc<str>, to: Poster, theirs: Value) -> String {
        let ours = format!("gkx-{}", NEXT_ASK.fetch_add(1, Ordering::Relaxed));
        lock(&self.asked).insert((Arc::clone(session), ours.clone()), (to, theirs));
        ours
    }

    /// Whether `ours` names an upstream request passed to the caller of `session`.
    pub(crate) fn asked(&self, session: &Arc<str>, ours: &str) -> bool {
        lock(&self.asked).contains_key(&(Arc::clone(session), ours.to_owned()))
    }

    /// Where the caller's answer `ours` on `session` goes, and under which id (once).
    pub(crate) fn answer(&self, session: &Arc<str>, ours: &str) -> Option<(Poster, Value)> {
        lock(&self.asked).remove(&(Arc::clone(session), ours.to_owned()))
    }

    /// Forgets requests passed on that were never answered.
    pub(crate) fn forget(&self, session: &Arc<str>, ours: &[String]) {
        let mut asked = lock(&self.asked);
        for id in ours {
            asked.remove(&(Arc::clone(session), id.clone()));
        }
    }

    /// A call of `session` under the caller's id `id` (as JSON text) is running; cancelled by
    /// [`cancel`](Self::cancel) until the guard is dropped.
    pub(crate) fn run(self: &Arc<Self>, session: &Arc<str>, id: String) -> Running {
        let token = CancellationToken::new();
        let key = (Arc::clone(session), id);
        lock(&self.running).insert(key.clone(), token.clone());
        Running {
            sessions: Arc::clone(self),
            key,
            token,
        }
    }

    /// The caller cancelled its request `id` (as JSON text) on `session`: whether that call
    /// runs here (and is now cancelled).
    pub(crate) fn cancel(&self, session: &Arc<str>, id: String) -> bool {
        let running = lock(&self.running);
        let call = running.get(&(Arc::clone(session), id));
        if let Some(token) = call {
            token.cancel();
        }
        call.is_some()
    }
}

/// A call in flight on the endpoint; forgotten when dropped.
pub(crate) struct Running {
    sessions: Arc<Sessions>,
    key: Key,
    pub(crate) token: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.sessions.running).remove(&self.key);
    }
}
