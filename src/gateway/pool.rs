//! Upstream sessions kept per caller: one per (caller key, server, credentials), reused across
//! that caller's requests, never shared with another caller, reopened when closed (a crashed
//! stdio child restarts) and dropped when idle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use rmcp::service::{Peer, ServiceError};
use rmcp::{RoleClient, RoleServer};
use sha2::{Digest as _, Sha256};

use super::Shared;
use super::caller::Caller;
use super::list_cache::ListCache;
use super::relay::{Announce, Relay};
use super::upstream::{Connection, connect};

/// Sessions idle this long are closed.
const IDLE: Duration = Duration::from_secs(600);
/// At most this many pooled sessions; the least recently used go first.
const MAX_SESSIONS: usize = 10_000;

#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    caller: Option<[u8; 32]>,
    server: String,
    credentials: [u8; 32],
    modern: bool,
}

pub(crate) struct Entry {
    conn: tokio::sync::Mutex<Option<Connection>>,
    last_used: Mutex<Option<Instant>>,
}

#[derive(Default)]
pub(crate) struct Pool {
    entries: Mutex<HashMap<PoolKey, Arc<Entry>>>,
}

impl Pool {
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    fn entry(&self, key: PoolKey) -> Arc<Entry> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_SESSIONS || entries.len().is_multiple_of(64) {
            let now = Instant::now();
            let idle = |e: &Entry| {
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
            Arc::new(Entry {
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

/// Headers never sent upstream whatever the configuration says: the caller's gateway key and
/// what the MCP transport sets itself.
const NEVER_FORWARD: &[&str] = &[
    "x-litellm-api-key",
    "authorization",
    "host",
    "content-length",
    "content-type",
    "accept",
    "connection",
    "transfer-encoding",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "x-mcp-servers",
];

impl Shared {
    /// The headers this caller's session with `server` carries (see DESIGN §4.9).
    async fn headers_for(
        &self,
        caller: &Caller,
        server: &str,
    ) -> Result<(HashMap<HeaderName, HeaderValue>, Option<Instant>), String> {
        let spec = &self.upstreams[server];
        let mut out: HashMap<HeaderName, HeaderValue> = HashMap::new();
        let forwardable = |name: &HeaderName| {
            !NEVER_FORWARD.contains(&name.as_str()) && *name != self.client_auth_header
        };
        for name in &spec.extra_headers {
            if let Some(v) = caller.headers.get(name)
                && forwardable(name)
            {
                out.insert(name.clone(), v.clone());
            }
        }
        let has_own_auth = spec.auth.is_some() || spec.oauth2.is_some();
        if !has_own_auth && let Some(v) = caller.headers.get(&self.client_auth_header) {
            out.insert(http::header::AUTHORIZATION, v.clone());
        }
        // x-mcp-{server or alias}-{header}: to that server only, by the longest matching name.
        let policy = self.gatekeeper.policy();
        let catalog = policy.catalog();
        for (name, value) in &caller.headers {
            let Some(rest) = name.as_str().strip_prefix("x-mcp-") else {
                continue;
            };
            let mut best: Option<(usize, &str)> = None;
            for s in catalog.servers() {
                for n in std::iter::once(s.name()).chain(s.alias()) {
                    let n_lower = n.to_ascii_lowercase();
                    if rest.len() > n_lower.len() + 1
                        && rest.starts_with(&n_lower)
                        && rest.as_bytes()[n_lower.len()] == b'-'
                        && best.is_none_or(|(len, _)| n_lower.len() > len)
                    {
                        best = Some((n_lower.len(), s.name()));
                    }
                }
            }
            if let Some((len, owner)) = best
                && owner == server
                && let Ok(header) = HeaderName::from_bytes(&rest.as_bytes()[len + 1..])
                && (header == http::header::AUTHORIZATION || forwardable(&header))
            {
                out.insert(header, value.clone());
            }
        }
        if let Some((name, value)) = &spec.auth {
            out.insert(
                name.clone(),
                HeaderValue::from_str(value).map_err(|_| "invalid credential".to_owned())?,
            );
        }
        let mut expires = None;
        if let Some(o) = &spec.oauth2 {
            let (token, until) = self.tokens[server].get(self.client(server)?, o).await?;
            out.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| "invalid token".to_owned())?,
            );
            expires = Some(until);
        }
        for (name, value) in &spec.static_headers {
            out.insert(name.clone(), value.clone());
        }
        Ok((out, expires))
    }

    /// Runs `f` on this caller's session with `server`, opening it if needed.
    pub(crate) async fn with_session<T, F, Fut>(
        &self,
        caller: &Caller,
        server: &str,
        downstream: Option<&Peer<RoleServer>>,
        f: F,
    ) -> Result<T, Failure>
    where
        F: FnOnce(Peer<RoleClient>, Relay) -> Fut,
        Fut: std::future::Future<Output = Result<T, ServiceError>>,
    {
        let spec = self
            .upstreams
            .get(server)
            .ok_or_else(|| Failure::Unavailable("no such upstream".into()))?;
        let (headers, expires) = self
            .headers_for(caller, server)
            .await
            .map_err(Failure::Unavailable)?;
        let mut fingerprint = Sha256::new();
        let mut sorted: Vec<_> = headers.iter().collect();
        sorted.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        for (k, v) in sorted {
            fingerprint.update(k.as_str().as_bytes());
            fingerprint.update([0]);
            fingerprint.update(v.as_bytes());
            fingerprint.update([0]);
        }
        let key = PoolKey {
            caller: caller.digest.map(|d| d.0),
            server: server.to_owned(),
            credentials: fingerprint.finalize().into(),
            modern: caller.modern,
        };
        let entry = self.pool.entry(key);
        let peer = {
            let mut slot = entry.conn.lock().await;
            let reuse = slot.as_ref().is_some_and(Connection::is_usable);
            if !reuse {
                if let Some(old) = slot.take() {
                    tokio::spawn(async move {
                        let _ = old.service.cancel().await;
                    });
                }
                let announce = caller.modern.then(|| Announce {
                    listeners: Arc::clone(&self.listeners),
                    caller: caller.digest.map(|d| d.0),
                    server: Arc::from(server),
                });
                // A legacy SSE session shows it is lost only when something is sent on it (its
                // event stream may outlive the server's restart): its lists are asked each time.
                let ttl = match spec.transport {
                    super::UpstreamTransport::Sse(_) => std::time::Duration::ZERO,
                    _ => self.list_ttl,
                };
                let relay = Relay::new(self.name_prefix(server), announce, ListCache::new(ttl));
                let service = tokio::time::timeout(
                    spec.timeout,
                    connect(
                        spec,
                        headers,
                        self.client(server).map_err(Failure::Unavailable)?.clone(),
                        relay.clone(),
                    ),
                )
                .await
                .map_err(|_| Failure::Timeout)?
                .map_err(Failure::Unavailable)?;
                *slot = Some(Connection {
                    service,
                    relay,
                    expires,
                });
            }
            let conn = slot.as_ref().expect("just set");
            if let Some(peer) = downstream {
                conn.relay.attach(peer.clone());
            }
            (conn.service.peer().clone(), conn.relay.clone())
        };
        let (peer, relay) = peer;
        *entry
            .last_used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        match tokio::time::timeout(spec.timeout, f(peer, relay)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if matches!(
                    e,
                    ServiceError::TransportClosed | ServiceError::TransportSend(_)
                ) {
                    // The session is dead (a crashed child, a dropped connection) even if rmcp
                    // has not noticed yet: the next use opens a new one.
                    if let Some(old) = entry.conn.lock().await.take() {
                        tokio::spawn(async move {
                            let _ = old.service.cancel().await;
                        });
                    }
                }
                Err(Failure::Service(e))
            }
            Err(_) => Err(Failure::Timeout),
        }
    }
}
