//! The audit trail: one [`AuditEvent`] for every decision the layers make, delivered to
//! [`AuditSink`]s without ever holding a request up.
//!
//! An [`Auditor`] hands events to a bounded queue drained by one background thread, which
//! writes them to each sink in batches. When the queue is full the event is dropped and
//! counted; the count is written to the sinks as an `audit` event (`outcome: dropped`) as soon
//! as there is room, and shown by [`Auditor::stats`] (`/health`). A failing sink is counted
//! too, and never fails a request. With the `tracing` feature every event is also a `tracing`
//! event (target `mcp_gatekeeper::audit`) with the same field names, for OpenTelemetry.
//!
//! ```
//! use std::sync::Arc;
//! use mcp_gatekeeper::audit::{Auditor, JsonlSink};
//!
//! # let dir = std::env::temp_dir().join(format!("audit-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let sink = JsonlSink::open(dir.join("audit.jsonl"))?;
//! let auditor = Auditor::new(vec![Arc::new(sink)], 10_000);
//! // gatekeeper.with_audit(auditor) — every layer built from that gatekeeper reports to it.
//! # assert!(auditor.is_enabled());
//! # Ok::<(), std::io::Error>(())
//! ```

mod event;
mod jsonl;

use crate::metrics::{Decision, Metrics};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use self::event::{AuditEvent, EventKind, Outcome};
pub(crate) use self::event::{level_name, redacted_arguments};
pub use self::jsonl::JsonlSink;

/// The error a sink reports.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where audit events are written. Called on the audit thread only, one batch at a time, so an
/// implementation may block (a file write, a database insert).
pub trait AuditSink: Send + Sync + 'static {
    /// Writes a batch of events, in order.
    ///
    /// # Errors
    ///
    /// The batch could not be written; it is counted as failed (not retried).
    fn write(&self, events: &[AuditEvent]) -> Result<(), SinkError>;
}

/// What the audit trail has done since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuditStats {
    /// Events written to every sink.
    pub written: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Events a sink failed to write.
    pub failed: u64,
    /// The last sink failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    done: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    problem: Mutex<Option<String>>,
}

struct Queue {
    tx: SyncSender<AuditEvent>,
    counters: Arc<Counters>,
}

/// The handle the layers report decisions to (see the [module docs](self)). Cloning is one
/// reference count; the audit thread ends when the last handle is dropped, after writing what
/// is queued.
#[derive(Clone, Default)]
pub struct Auditor {
    queue: Option<Arc<Queue>>,
    metrics: Option<Arc<dyn Metrics>>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("sinks", &self.queue.is_some())
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl Auditor {
    /// No sinks: events go to `tracing` only (with that feature).
    #[must_use]
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Also counts every decision in `metrics` (see [`Metrics::decision`]).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Events go to every sink of `sinks`, through a queue of `capacity` events.
    ///
    /// # Panics
    ///
    /// If the audit thread cannot be started.
    #[must_use]
    pub fn new(sinks: Vec<Arc<dyn AuditSink>>, capacity: usize) -> Self {
        if sinks.is_empty() {
            return Self::disabled();
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let state = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("gk-audit".into())
            .spawn(move || drain(&rx, &sinks, &state))
            .expect("the audit thread starts");
        Self {
            queue: Some(Arc::new(Queue { tx, counters })),
            metrics: None,
        }
    }

    /// Whether decisions are recorded at all: a sink or metrics are set, or `tracing`
    /// listens.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        #[cfg(feature = "tracing")]
        if tracing::enabled!(target: "mcp_gatekeeper::audit", tracing::Level::INFO) {
            return true;
        }
        self.queue.is_some() || self.metrics.is_some()
    }

    /// Whether events are built for more than their count: a sink is set, or `tracing`
    /// listens. When only metrics listen, a decision is counted without its event (see
    /// [`count`](Self::count)).
    pub(crate) fn builds_events(&self) -> bool {
        #[cfg(feature = "tracing")]
        if tracing::enabled!(target: "mcp_gatekeeper::audit", tracing::Level::INFO) {
            return true;
        }
        self.queue.is_some()
    }

    /// Counts a decision in the metrics, without an event.
    pub(crate) fn count(&self, decision: &Decision<'_>) {
        if let Some(metrics) = &self.metrics {
            metrics.decision(decision);
        }
    }

    /// Records one event: to `tracing`, and to the queue unless it is full (then counted as
    /// dropped). Never blocks.
    pub fn record(&self, event: AuditEvent) {
        #[cfg(feature = "tracing")]
        emit(&event);
        if let Some(metrics) = &self.metrics {
            metrics.decision(&Decision {
                event: event.event.as_str(),
                outcome: event.outcome.as_str(),
                rule: event.rule,
                level: event.level,
            });
        }
        if let Some(q) = &self.queue {
            match q.tx.try_send(event) {
                Ok(()) => {
                    q.counters.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    q.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Counts so far.
    #[must_use]
    pub fn stats(&self) -> AuditStats {
        let Some(q) = &self.queue else {
            return AuditStats::default();
        };
        let c = &q.counters;
        AuditStats {
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            problem: c
                .problem
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// Waits until every event queued so far has been handed to the sinks, for at most
    /// `timeout`; `true` when it has (tests, and an orderly shutdown). It blocks the calling
    /// thread: a sink that writes through an async runtime (Postgres) needs that runtime to
    /// have another thread free meanwhile.
    #[must_use]
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(q) = &self.queue else {
            return true;
        };
        let target = q.counters.queued.load(Ordering::Acquire);
        let deadline = Instant::now() + timeout;
        while q.counters.done.load(Ordering::Acquire) < target {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

const BATCH: usize = 512;

/// How long the audit thread sleeps between two looks at the queue: short while events come,
/// longer when idle. It polls rather than waits on the queue, so that a request handing over
/// an event never has to wake a thread (a system call on every decision).
const BUSY_PAUSE: Duration = Duration::from_millis(2);
const IDLE_PAUSE: Duration = Duration::from_millis(50);

fn drain(rx: &Receiver<AuditEvent>, sinks: &[Arc<dyn AuditSink>], c: &Counters) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut reported_drops = 0;
    let mut pause = BUSY_PAUSE;
    loop {
        match rx.try_recv() {
            Ok(first) => batch.push(first),
            Err(TryRecvError::Empty) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(IDLE_PAUSE);
                continue;
            }
            Err(TryRecvError::Disconnected) => return,
        }
        pause = BUSY_PAUSE;
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let taken = batch.len() as u64;
        let dropped = c.dropped.load(Ordering::Relaxed);
        if dropped > reported_drops {
            let mut e = AuditEvent::new(EventKind::Audit, Outcome::Dropped);
            e.dropped = Some(dropped - reported_drops);
            reported_drops = dropped;
            batch.push(e);
        }
        let mut ok = true;
        for sink in sinks {
            if let Err(error) = sink.write(&batch) {
                ok = false;
                *c.problem.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
            }
        }
        if ok {
            c.written.fetch_add(taken, Ordering::Relaxed);
        } else {
            c.failed.fetch_add(taken, Ordering::Relaxed);
        }
        c.done.fetch_add(taken, Ordering::AcqRel);
        batch.clear();
    }
}

#[cfg(feature = "tracing")]
fn emit(e: &AuditEvent) {
    let arguments = e.arguments.as_ref().map(|a| a.join(","));
    let values = e.argument_values.as_ref().map(ToString::to_string);
    let withheld_by = (!e.withheld_by.is_empty()).then(|| {
        e.withheld_by
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let changed = e.changed.as_ref().map(|c| c.join(","));
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: "mcp_gatekeeper::audit",
                $level,
                event = e.event.as_str(),
                outcome = e.outcome.as_str(),
                key = e.key.as_deref(),
                team = e.team.as_deref(),
                organization = e.organization.as_deref(),
                end_user = e.end_user.as_deref(),
                agent = e.agent.as_deref(),
                method = e.method.as_ref().map(crate::protocol::Method::as_str),
                server = e.server.as_deref(),
                name = e.name.as_deref(),
                rule = e.rule,
                level = e.level,
                reason = e.reason.as_deref(),
                status = e.status,
                arguments = arguments.as_deref(),
                argument_values = values.as_deref(),
                offered = e.offered,
                withheld = e.withheld,
                withheld_by = withheld_by.as_deref(),
                pin_kind = e.pin_kind,
                pinned = e.pinned.as_deref(),
                seen = e.seen.as_deref(),
                changed = changed.as_deref(),
                dropped = e.dropped,
            )
        };
    }
    if e.outcome == Outcome::Allowed {
        event!(tracing::Level::DEBUG);
    } else {
        event!(tracing::Level::INFO);
    }
}

/// The event of a call that the permission layer allowed, kept in the request's extensions
/// until the call's fate is known: a later layer that refuses the call takes it out
/// ([`Pending::take`]) and records its own refusal instead; otherwise it is recorded when the
/// request is dropped (handed on and finished). So every call gives exactly one event.
///
/// A clone holds nothing (extensions can be cloned; the event must be recorded once).
///
/// When only metrics listen (see [`Auditor::builds_events`]), it holds no event: it counts the
/// allowed call when dropped, as the event would have.
pub(crate) struct Pending {
    auditor: Auditor,
    event: Option<Box<AuditEvent>>,
    /// Whether to count an allowed call when dropped without an event.
    counted: bool,
}

impl Clone for Pending {
    fn clone(&self) -> Self {
        Self {
            auditor: Auditor::disabled(),
            event: None,
            counted: false,
        }
    }
}

impl Pending {
    pub(crate) fn new(auditor: Auditor, event: AuditEvent) -> Self {
        Self {
            auditor,
            event: Some(Box::new(event)),
            counted: false,
        }
    }

    /// An allowed call, only to be counted.
    pub(crate) fn counted(auditor: Auditor) -> Self {
        Self {
            auditor,
            event: None,
            counted: true,
        }
    }

    /// Takes the pending event out of `ext` (it will not be recorded, nor counted, as
    /// allowed).
    pub(crate) fn take(ext: &mut http::Extensions) -> Option<Box<AuditEvent>> {
        ext.remove::<Self>().and_then(|mut p| {
            p.counted = false;
            p.event.take()
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            self.auditor.record(*event);
        } else if self.counted {
            self.auditor.count(&Decision {
                event: EventKind::Call.as_str(),
                outcome: Outcome::Allowed.as_str(),
                rule: None,
                level: None,
            });
        }
    }
}

/// The body of a request whose arguments may be audited with their values (servers with
/// `audit_redact`), kept in the request extensions.
#[derive(Clone, Debug)]
pub(crate) struct AuditedBody(pub(crate) bytes::Bytes);
