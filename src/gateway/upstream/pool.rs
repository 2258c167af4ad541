//! Upstream sessions kept per caller: one per (caller key, server, credentials), reused across
//! that caller's requests, never shared with another caller, reopened when closed (a crashed
//! stdio child restarts) and dropped when idle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::service::ServiceError;

use super::spec::Connection;

/// Sessions idle this long are closed.
const IDLE: Duration = Duration::from_secs(600);
/// At most this many pooled sessions; the least recently used go first.
const MAX_SESSIONS: usize = 10_000;

/// What a pooled session is kept under: one per caller, server, credentials and era.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) caller: Option<[u8; 32]>,
    pub(crate) server: String,
    pub(crate) credentials: [u8; 32],
    pub(crate) modern: bool,
}

pub(crate) struct PooledSession {
    pub(crate) conn: tokio::sync::Mutex<Option<Connection>>,
    pub(crate) last_used: Mutex<Option<Instant>>,
}

#[derive(Default)]
pub(crate) struct Pool {
    entries: Mutex<HashMap<PoolKey, Arc<PooledSession>>>,
}

impl Pool {
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub(crate) fn entry(&self, key: PoolKey) -> Arc<PooledSession> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_SESSIONS || entries.len().is_multiple_of(64) {
            let now = Instant::now();
            let idle = |e: &PooledSession| {
                e.last_used
                    .lock()
                    .map_or(true, |t| t.is_none_or(|t| now - t > IDLE))
            };
            entries.retain(|_, e| !idle(e));
            while entries.len() >= MAX_SESSIONS {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_used.lock().ok().and_then(|t| *t))
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => entries.remove(&k),
                    None => break,
                };
            }
        }
        // A new entry counts as used now, so a sweep cannot drop it while it connects.
        Arc::clone(entries.entry(key).or_insert_with(|| {
            Arc::new(PooledSession {
                conn: tokio::sync::Mutex::new(None),
                last_used: Mutex::new(Some(Instant::now())),
            })
        }))
    }
}

/// Why an upstream request failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No session could be opened.
    Unavailable(String),
    /// The request took longer than the upstream's timeout.
    Timeout,
    /// The upstream (or the session) answered with an error.
    Service(ServiceError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(e) => write!(f, "unavailable: {e}"),
            Self::Timeout => f.write_str("timed out"),
            Self::Service(e) => write!(f, "{e}"),
        }
    }
}
