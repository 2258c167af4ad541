//! [`OtlpTraces`]: the spans of the layers and the gateway, exported over OTLP/HTTP
//! (`http/protobuf`) to any OpenTelemetry collector, configured by the standard environment
//! variables.
//!
//! A [`Metrics`] recorder: each MCP request the layers answer becomes a server span (named
//! `{method} {tool}`, with the conventions' attributes), each request the gateway sends upstream
//! for it a client span. Spans are queued without blocking (a full queue drops and counts) and
//! sent in batches by a thread of the exporter's own. Combine it with
//! [`PrometheusMetrics`](crate::metrics::PrometheusMetrics) as a pair:
//!
//! ```no_run
//! use std::sync::Arc;
//! use mcp_gatekeeper::metrics::PrometheusMetrics;
//! use mcp_gatekeeper::otel::OtlpTraces;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let gatekeeper: mcp_gatekeeper::Gatekeeper = unimplemented!();
//! let prometheus = Arc::new(PrometheusMetrics::new());
//! let gatekeeper = match OtlpTraces::from_env()? {
//!     Some(traces) => gatekeeper.with_metrics(Arc::new((prometheus.clone(), traces))),
//!     None => gatekeeper.with_metrics(prometheus.clone()),
//! };
//! # Ok(()) }
//! ```
//!
//! Spans carry methods, tool and prompt names, protocol versions, error types and server names:
//! never a key, a token, an end user or an argument value.

mod encode;
mod metrics_export;
mod names;
mod settings;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use encode::{Exported, NO_LABEL, Outcome, Target};
pub use metrics_export::OtlpMetrics;
use names::{Known, NONE, Names};
pub use settings::{BatchSettings, OtlpMetricsSettings, OtlpSettings};

use crate::config::ConfigError;
use crate::metrics::{ClientOperation, Metrics, Operation, Span, Step};

/// How often the exporter's thread looks at its queue.
const POLL: Duration = Duration::from_millis(10);

/// Which traces are kept (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// Every trace.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// This share of traces, by trace id.
    Ratio(f64),
    /// As the caller's context says when there is one (its `sampled` flag), else as the inner
    /// sampler says (the default: `parentbased_always_on`).
    ParentBased(ParentBasedRoot),
}

/// What a parent-based sampler does for a trace that starts here.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParentBasedRoot {
    /// Keeps it.
    AlwaysOn,
    /// Drops it.
    AlwaysOff,
    /// Keeps this share.
    Ratio(f64),
}

impl Sampler {
    /// Whether the trace of `span` is kept.
    fn keeps(self, span: &Span) -> bool {
        let by_ratio = |r: f64| {
            let mut low = [0u8; 8];
            low.copy_from_slice(&span.context.trace_id[8..]);
            // The low 8 bytes of the id, against the ratio of the whole range.
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let bound = (r * u64::MAX as f64) as u64;
            u64::from_be_bytes(low) <= bound && r > 0.0
        };
        match self {
            Self::AlwaysOn => true,
            Self::AlwaysOff => false,
            Self::Ratio(r) => by_ratio(r),
            Self::ParentBased(root) => match span.parent {
                Some(_) => span.context.sampled,
                None => match root {
                    ParentBasedRoot::AlwaysOn => true,
                    ParentBasedRoot::AlwaysOff => false,
                    ParentBasedRoot::Ratio(r) => by_ratio(r),
                },
            },
        }
    }
}

/// The OTLP trace exporter (see the [module docs](self)). Dropping the last handle sends what is
/// queued and ends its thread.
pub struct OtlpTraces {
    tx: SyncSender<Exported>,
    sampler: Sampler,
    counts: Arc<Counts>,
    /// The names spans carry, kept once and handed over by number.
    names: Arc<Names>,
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl std::fmt::Debug for OtlpTraces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpTraces")
            .field("sampler", &self.sampler)
            .finish_non_exhaustive()
    }
}

impl OtlpTraces {
    /// The exporter the process's environment configures (`OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`,
    /// `OTEL_TRACES_SAMPLER` and its argument, `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`),
    /// started; `None` when none is configured.
    ///
    /// # Errors
    ///
    /// See [`OtlpSettings::from_vars`]; and an HTTP client that cannot be built.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        OtlpSettings::from_vars(|name| std::env::var(name).ok())?
            .map(Self::start)
            .transpose()
    }

    /// Starts exporting as `settings` say.
    ///
    /// # Errors
    ///
    /// An HTTP client that cannot be built.
    pub fn start(settings: OtlpSettings) -> Result<Self, ConfigError> {
        let client = crate::tls::client(&crate::tls::UpstreamTls::default())
            .map_err(|e| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", e))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(settings.batch.max_queue_size);
        let counts = Arc::new(Counts::default());
        let names = Arc::new(Names::default());
        let sampler = settings.sampler;
        let (state, known) = (Arc::clone(&counts), Arc::clone(&names));
        std::thread::Builder::new()
            .name("gk-otlp-traces".into())
            .spawn(move || export_loop(&rx, &settings, &client, &state, &known))
            .map_err(|e| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", e.to_string()))?;
        Ok(Self {
            tx,
            sampler,
            counts,
            names,
        })
    }

    /// Spans sent, dropped (the queue was full) and failed (the collector did not take them).
    #[must_use]
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.counts.sent.load(Ordering::Relaxed),
            self.counts.dropped.load(Ordering::Relaxed),
            self.counts.failed.load(Ordering::Relaxed),
        )
    }

    /// Queues `span` (when the sampler keeps its trace) as `exported` fills it in.
    fn queue(&self, span: &Span, exported: impl FnOnce(Exported) -> Exported) {
        if !self.sampler.keeps(span) {
            return;
        }
        let blank = Exported {
            trace_id: span.context.trace_id,
            span_id: span.context.span_id,
            parent: span.parent.unwrap_or([0; 8]),
            start_unix_nanos: encode::unix_nanos(span.started),
            seconds: 0.0,
            target: NONE,
            error: NONE,
            method: NO_LABEL,
            version: NO_LABEL,
            kind: 1,
            target_kind: Target::None,
            outcome: Outcome::None,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.tx.try_send(exported(blank))
        {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `name`'s number, or none.
    fn id(&self, name: Option<&str>) -> names::NameId {
        name.map_or(NONE, |n| self.names.id(n))
    }
}

impl Metrics for OtlpTraces {
    fn records_spans(&self) -> bool {
        true
    }

    fn operation(&self, op: &Operation<'_>) {
        let Some(span) = &op.span else { return };
        self.queue(span, |e| {
            let (target_kind, target) = match (op.tool, op.prompt) {
                (Some(tool), _) => (Target::Tool, Some(tool)),
                (None, Some(prompt)) => (Target::Prompt, Some(prompt)),
                (None, None) => (Target::None, None),
            };
            #[allow(clippy::cast_possible_truncation)]
            Exported {
                kind: 2,
                seconds: op.seconds as f32,
                method: encode::label(op.method),
                target_kind,
                target: self.id(target),
                version: op.protocol_version.map_or(NO_LABEL, encode::version),
                error: self.id(op.error_type),
                ..e
            }
        });
    }

    fn client_operation(&self, op: &ClientOperation<'_>) {
        let Some(span) = &op.span else { return };
        self.queue(span, |e| {
            #[allow(clippy::cast_possible_truncation)]
            Exported {
                kind: 3,
                seconds: op.seconds as f32,
                method: encode::label(op.method),
                target_kind: Target::Server,
                target: self.id(Some(op.server)),
                error: self.id(op.error_type),
                ..e
            }
        });
    }

    fn step(&self, step: &Step<'_>) {
        self.queue(&step.span, |e| {
            #[allow(clippy::cast_possible_truncation)]
            Exported {
                kind: 1,
                seconds: step.seconds as f32,
                method: encode::label(step.name),
                target_kind: if step.rule.is_some() {
                    Target::Rule
                } else {
                    Target::None
                },
                target: self.id(step.rule),
                outcome: Outcome::of(step.outcome),
                ..e
            }
        });
    }
}

/// Posts one OTLP/HTTP protobuf export `body` to `endpoint` with `headers`: whether the
/// collector took it.
fn export(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    endpoint: &str,
    headers: &[(String, String)],
    timeout: Duration,
    body: Vec<u8>,
) -> bool {
    let mut request = client
        .post(endpoint)
        .header("content-type", "application/x-protobuf")
        .timeout(timeout)
        .body(body);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let sent = runtime.block_on(async { request.send().await.map(|r| r.status().is_success()) });
    matches!(sent, Ok(true))
}

/// The exporter's thread: batches of up to `max_export_batch_size` spans, each sent at most
/// `schedule_delay` after its first span arrived; what is queued is sent when the last handle goes.
fn export_loop(
    rx: &Receiver<Exported>,
    settings: &OtlpSettings,
    client: &reqwest::Client,
    counts: &Counts,
    names: &Names,
) {
    let mut known = Known::new(names);
    let mut tails = encode::Tails::default();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    // The queue is polled, never waited on: handing a span over wakes no thread.
    let BatchSettings {
        max_export_batch_size: size,
        schedule_delay: delay,
        ..
    } = settings.batch;
    let mut batch = Vec::with_capacity(size);
    let mut first: Option<Instant> = None;
    let mut open = true;
    let mut empty = true;
    while open {
        // A full batch may have left spans behind: those go at once.
        if empty {
            std::thread::sleep(POLL);
        }
        empty = false;
        while batch.len() < size {
            match rx.try_recv() {
                Ok(span) => {
                    first.get_or_insert_with(Instant::now);
                    known.learn(span.target);
                    known.learn(span.error);
                    batch.push(span);
                }
                Err(TryRecvError::Empty) => {
                    empty = true;
                    break;
                }
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let due = first.is_some_and(|at| at.elapsed() >= delay);
        if batch.is_empty() || (open && batch.len() < size && !due) {
            continue;
        }
        first = None;
        let body = encode::request(&settings.service_name, &batch, &known, &mut tails);
        let n = batch.len() as u64;
        batch.clear();
        if export(
            &runtime,
            client,
            &settings.endpoint,
            &settings.headers,
            settings.timeout,
            body,
        ) {
            counts.sent.fetch_add(n, Ordering::Relaxed);
        } else {
            counts.failed.fetch_add(n, Ordering::Relaxed);
            crate::decision_events::warn("the OTLP collector did not take a batch of spans");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_based_sampling_follows_the_callers_flag() {
        let root = crate::metrics::SpanContext::root();
        let span = |sampled: bool, parent: bool| Span {
            context: crate::metrics::SpanContext { sampled, ..root },
            parent: parent.then_some([1; 8]),
            started: std::time::SystemTime::now(),
        };
        let s = Sampler::ParentBased(ParentBasedRoot::AlwaysOn);
        assert!(s.keeps(&span(true, true)));
        assert!(!s.keeps(&span(false, true)));
        assert!(s.keeps(&span(false, false)));
        assert!(!Sampler::Ratio(0.0).keeps(&span(true, false)));
        assert!(Sampler::Ratio(1.0).keeps(&span(true, false)));
    }
}
