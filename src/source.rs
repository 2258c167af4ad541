//! Where a policy comes from and how a change to it is noticed: [`PolicySource`], and what a
//! watched source last did ([`SourceStatus`]).
//!
//! A source builds a whole [`PolicySnapshot`] and says when it may have changed (a file written,
//! a database notification). [`watch`] (with the `gateway` or `postgres` feature) loads it, swaps
//! each new snapshot into a [`Gatekeeper`] with [`Gatekeeper::reload`] — whole, never
//! half-applied — and keeps going through failures:
//!
//! - a load that fails leaves the last good snapshot in place, is logged and shown by
//!   [`SourceStatus`], and is retried with exponential back-off;
//! - until the first load succeeds, give the gatekeeper [`PolicySnapshot::pending`]: every request
//!   is refused with 503 rather than decided with an empty or default policy;
//! - besides the source's own change signal, the policy is loaded again every
//!   [`WatchOptions::resync`], so a missed signal costs at most that long.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::body::BoxError;
#[cfg(doc)]
use crate::gatekeeper::Gatekeeper;
use crate::gatekeeper::PolicySnapshot;

/// The future a [`PolicySource`] answers with.
pub type SourceFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SourceError>> + Send + 'a>>;

/// Where a policy snapshot comes from, and how a change is noticed.
pub trait PolicySource: Send + Sync + 'static {
    /// A short description for logs and `/health` (`"postgres"`, `"file gateway.yaml"`); never
    /// a secret such as a password inside a URL.
    fn describe(&self) -> String;

    /// Builds the whole policy as it is now.
    fn load(&self) -> SourceFuture<'_, PolicySnapshot>;

    /// Completes when the policy may have changed since the last [`PolicySource::load`] began,
    /// or with an error when the change signal itself broke (the watcher then loads again
    /// after a back-off, which also re-establishes the signal).
    fn changed(&self) -> SourceFuture<'_, ()>;

    /// What the last load could not use and left out, failing closed (a row of the wrong
    /// shape): reported, while the rest of the policy applies.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Why a source could not load or watch the policy.
#[derive(Debug)]
pub struct SourceError(BoxError);

impl SourceError {
    /// Wraps an error.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self(error.into())
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// What a watched source last did: for `/health` and for operators.
#[derive(Debug)]
pub struct SourceStatus {
    name: String,
    inner: Mutex<StatusInner>,
}

#[derive(Debug, Default)]
struct StatusInner {
    loads: u64,
    loaded_at: Option<SystemTime>,
    failing_since: Option<SystemTime>,
    failures: u64,
    last_error: Option<String>,
    problems: Vec<String>,
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl SourceStatus {
    /// The status of the source described as `name`, which has not loaded yet.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes a successful load and what it left out; returns whether the source was failing
    /// before.
    pub fn record_load(&self, problems: Vec<String>) -> bool {
        let mut s = self.lock();
        s.problems = problems;
        s.loads += 1;
        s.loaded_at = Some(SystemTime::now());
        s.last_error = None;
        s.failing_since.take().is_some()
    }

    /// Notes a failure; returns whether it is the first of a run of failures.
    pub fn record_failure(&self, error: &dyn fmt::Display) -> bool {
        let mut s = self.lock();
        s.failures += 1;
        s.last_error = Some(error.to_string());
        let first = s.failing_since.is_none();
        s.failing_since.get_or_insert_with(SystemTime::now);
        first
    }

    /// Whether a snapshot was ever loaded.
    #[must_use]
    pub fn is_loaded(&self) -> bool {
        self.lock().loads > 0
    }

    /// Loaded, and the last attempt succeeded.
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        let s = self.lock();
        s.loads > 0 && s.failing_since.is_none()
    }

    /// A JSON summary: `state` (`ok`, `stale`: serving the last good snapshot while the source
    /// fails, `unloaded`: nothing loaded yet, every request refused), the source, the number of
    /// loads and failures, when it last loaded (Unix seconds), since when it fails, the last
    /// error, and what the last load left out.
    #[must_use]
    pub fn report(&self) -> serde_json::Value {
        let s = self.lock();
        let state = match (s.loads, s.failing_since) {
            (0, _) => "unloaded",
            (_, Some(_)) => "stale",
            _ => "ok",
        };
        serde_json::json!({
            "state": state,
            "source": self.name,
            "loads": s.loads,
            "failures": s.failures,
            "loaded_at": s.loaded_at.map(unix_seconds),
            "failing_since": s.failing_since.map(unix_seconds),
            "last_error": s.last_error,
            "problems": s.problems,
        })
    }
}

/// A part whose state `/health` shows: a policy source, a spend sink.
pub trait HealthReport: fmt::Debug + Send + Sync + 'static {
    /// `ok`; `degraded` (working from a fallback: the last good policy, a spool); or
    /// `unavailable` (nothing can be served: no policy was ever loaded).
    fn state(&self) -> HealthState;
    /// Details for administrators (may name sources and errors, never secrets).
    fn report(&self) -> serde_json::Value;
}

/// The state of a [`HealthReport`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HealthState {
    /// Working.
    Ok,
    /// Working from a fallback.
    Degraded,
    /// Not serving.
    Unavailable,
}

impl HealthState {
    /// `ok`, `degraded` or `unavailable`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Unavailable => "unavailable",
        }
    }
}

impl HealthReport for SourceStatus {
    fn state(&self) -> HealthState {
        if !self.is_loaded() {
            HealthState::Unavailable
        } else if self.is_healthy() {
            HealthState::Ok
        } else {
            HealthState::Degraded
        }
    }
    fn report(&self) -> serde_json::Value {
        SourceStatus::report(self)
    }
}

/// The limit layer's store: `degraded` while it cannot be reached (calls are then refused or
/// let through uncounted, as `on_limit_store_error` says).
impl HealthReport for crate::limit::LimitLayer {
    fn state(&self) -> HealthState {
        if self.counters().problem().is_some() {
            HealthState::Degraded
        } else {
            HealthState::Ok
        }
    }
    fn report(&self) -> serde_json::Value {
        let problem = self.counters().problem();
        serde_json::json!({
            "status": if problem.is_some() { "failing" } else { "ok" },
            "on_limit_store_error": match self.on_error() {
                crate::limit::OnStoreError::Deny => "deny",
                crate::limit::OnStoreError::Allow => "allow",
            },
            "problem": problem,
        })
    }
}

/// How [`watch`] paces itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// Load again this often even without a change signal (default 30 s).
    pub resync: Duration,
    /// The first retry after a failure (default 250 ms); doubled up to `max_backoff`.
    pub min_backoff: Duration,
    /// The longest wait between retries (default 30 s).
    pub max_backoff: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(30),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
        }
    }
}

#[cfg(any(feature = "gateway", feature = "postgres"))]
mod file;
#[cfg(any(feature = "gateway", feature = "postgres"))]
mod watcher;

#[cfg(any(feature = "gateway", feature = "postgres"))]
pub use file::ConfigFile;
#[cfg(any(feature = "gateway", feature = "postgres"))]
pub use watcher::{PolicyWatch, watch};
