//! Metrics: what the layers and the gateway measure, handed to a [`Metrics`] recorder.
//!
//! The layers time every MCP request they answer or pass on (see
//! [`MeteredLayer`](crate::metered::MeteredLayer)) and report every decision they make; the
//! gateway also times every request it sends upstream. A recorder is a small trait with a no-op
//! default (`()`); [`PrometheusMetrics`] is the built-in one, written in the Prometheus text
//! format under the names OpenTelemetry's semantic conventions for MCP give
//! (`mcp.server.operation.duration` is `mcp_server_operation_duration_seconds`).
//!
//! Everything a recorder is given is bounded: method names outside the specification are
//! `_OTHER`, protocol versions outside the known ones are `_OTHER`, and names (tools, prompts,
//! servers) are those the policy resolved — never a key, a token, an end user or an argument.
//! [`PrometheusMetrics`] caps the names it keeps as labels besides.
//!
//! ```
//! use std::sync::Arc;
//! use mcp_gatekeeper::metrics::{Metrics, Operation, PrometheusMetrics};
//!
//! let metrics = Arc::new(PrometheusMetrics::new());
//! metrics.operation(&Operation {
//!     method: "tools/call",
//!     tool: Some("wiki-search"),
//!     prompt: None,
//!     protocol_version: Some("2025-06-18"),
//!     error_type: None,
//!     seconds: 0.004,
//!     span: None,
//! });
//! let text = metrics.render();
//! assert!(text.contains(
//!     r#"mcp_server_operation_duration_seconds_count{mcp_method_name="tools/call",gen_ai_tool_name="wiki-search",mcp_protocol_version="2025-06-18",network_transport="tcp"} 1"#
//! ));
//! ```

#[cfg(feature = "gateway")]
mod clock;
mod exposition;
pub(crate) mod prometheus;
mod trace;

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

#[cfg(feature = "gateway")]
pub(crate) use clock::SessionClock;
pub use exposition::{CONTENT_TYPE, Exposition};
pub use prometheus::PrometheusMetrics;
pub use trace::{Span, SpanContext};

/// One MCP request or notification the layers answered or passed on, once its answer was
/// sent (for a streamed answer: once its stream ended).
#[derive(Clone, Copy, Debug)]
pub struct Operation<'a> {
    /// The method (`tools/call`), or `_OTHER` for one outside the specification.
    pub method: &'a str,
    /// The tool a `tools/call` named, when the policy resolved it to a server.
    pub tool: Option<&'a str>,
    /// The prompt a `prompts/get` named, when the policy resolved it to a server.
    pub prompt: Option<&'a str>,
    /// The protocol version the request was made under, when known.
    pub protocol_version: Option<&'a str>,
    /// Why it failed: the rule that refused it (`permissions`, `limit`, `invalid_credential`,
    /// …), or the HTTP status of a failed answer. `None` when it succeeded.
    pub error_type: Option<&'a str>,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// Its span, for a recorder that takes spans: a child of the caller's (from
    /// `params._meta.traceparent`, else the `traceparent` header), or the root of a new trace.
    pub span: Option<Span>,
}

/// One request the gateway sent to an upstream server, once answered.
#[derive(Clone, Copy, Debug)]
pub struct ClientOperation<'a> {
    /// The method.
    pub method: &'a str,
    /// The upstream server's name in the configuration.
    pub server: &'a str,
    /// The tool, for a `tools/call` (its name on the upstream server).
    pub tool: Option<&'a str>,
    /// Why it failed (a JSON-RPC error code, `tool_error`, or the transport's failure), or
    /// `None`.
    pub error_type: Option<&'a str>,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// Its span (a child of the gateway's span of the caller's request), when the request it
    /// serves was traced; the upstream was told it as the parent of its own.
    pub span: Option<Span>,
}

/// A step of the layers' handling of one request, traced as an internal span of its own, a
/// child of the request's span: the permission layer's decision (`mcp_gatekeeper.decide`).
/// Given only to a recorder that takes spans.
#[derive(Clone, Copy, Debug)]
pub struct Step<'a> {
    /// What the step is (`mcp_gatekeeper.decide`).
    pub name: &'static str,
    /// How it ended: `allowed` or `refused`.
    pub outcome: &'static str,
    /// The rule that refused, when one did (as in the audit trail).
    pub rule: Option<&'a str>,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// Its span.
    pub span: Span,
}

/// A session that has ended: a caller's with the gateway, or the gateway's with an upstream.
/// Protocol 2026-07-28 has no sessions; neither side records one for it.
#[derive(Clone, Copy, Debug)]
pub struct Session<'a> {
    /// Which side of the session the recorder is on.
    pub side: SessionSide,
    /// The upstream server's name in the configuration, for the gateway's own sessions.
    pub server: Option<&'a str>,
    /// The protocol version the session was opened under, when known.
    pub protocol_version: Option<&'a str>,
    /// How it is carried: `tcp` (HTTP) or `pipe` (stdio).
    pub transport: &'a str,
    /// Why it ended, when it did not end in the ordinary way (closed by its client, or idle
    /// past its keep-alive): `transport_closed` when the other side went away.
    pub error_type: Option<&'a str>,
    /// How long it lasted, in seconds.
    pub seconds: f64,
}

/// Which side of a [`Session`] the recorder is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionSide {
    /// The server's: a caller's session with the gateway (`mcp.server.session.duration`).
    Server,
    /// The client's: the gateway's session with an upstream (`mcp.client.session.duration`).
    Client,
}

/// One decision a layer made: the fields of its audit event that are bounded.
#[derive(Clone, Copy, Debug)]
pub struct Decision<'a> {
    /// What was decided on (`call`, `list`, `auth`, `limit`, …).
    pub event: &'a str,
    /// How (`allowed`, `refused`, `filtered`, `quarantined`, …).
    pub outcome: &'a str,
    /// The rule that decided, when one did.
    pub rule: Option<&'a str>,
    /// The level of the hierarchy that decided (`key`, `team`, …), when one did.
    pub level: Option<&'a str>,
}

/// What measures the layers and the gateway: every method has a no-op default, and `()`
/// records nothing. Methods are called on the request's path and must not block.
pub trait Metrics: Send + Sync + 'static {
    /// An MCP request the layers answered or passed on has ended.
    fn operation(&self, operation: &Operation<'_>) {
        let _ = operation;
    }

    /// The gateway's request to an upstream has been answered.
    fn client_operation(&self, operation: &ClientOperation<'_>) {
        let _ = operation;
    }

    /// A session has ended.
    fn session(&self, session: &Session<'_>) {
        let _ = session;
    }

    /// A traced step of a request has ended (only when [`records_spans`](Self::records_spans)).
    fn step(&self, step: &Step<'_>) {
        let _ = step;
    }

    /// A layer decided.
    fn decision(&self, decision: &Decision<'_>) {
        let _ = decision;
    }

    /// A tool call of `server` (by the name it has there) cost `cost` (see the cost layer).
    fn spend(&self, server: &str, tool: &str, cost: f64) {
        let _ = (server, tool, cost);
    }

    /// Whether this recorder takes spans (`false` by default). Only then are spans made, and
    /// only then does the gateway tell an upstream a span of its own as the parent: otherwise
    /// the caller's `traceparent` goes on as the caller sent it, so that no upstream span
    /// hangs from a span no collector ever received.
    fn records_spans(&self) -> bool {
        false
    }
}

impl Metrics for () {}

impl<M: Metrics + ?Sized> Metrics for Arc<M> {
    fn operation(&self, operation: &Operation<'_>) {
        (**self).operation(operation);
    }
    fn client_operation(&self, operation: &ClientOperation<'_>) {
        (**self).client_operation(operation);
    }
    fn session(&self, session: &Session<'_>) {
        (**self).session(session);
    }
    fn step(&self, step: &Step<'_>) {
        (**self).step(step);
    }
    fn decision(&self, decision: &Decision<'_>) {
        (**self).decision(decision);
    }
    fn spend(&self, server: &str, tool: &str, cost: f64) {
        (**self).spend(server, tool, cost);
    }
    fn records_spans(&self) -> bool {
        (**self).records_spans()
    }
}

/// Both recorders, in order: a Prometheus registry and a trace exporter, say.
impl<A: Metrics, B: Metrics> Metrics for (A, B) {
    fn operation(&self, operation: &Operation<'_>) {
        self.0.operation(operation);
        self.1.operation(operation);
    }
    fn client_operation(&self, operation: &ClientOperation<'_>) {
        self.0.client_operation(operation);
        self.1.client_operation(operation);
    }
    fn session(&self, session: &Session<'_>) {
        self.0.session(session);
        self.1.session(session);
    }
    fn step(&self, step: &Step<'_>) {
        self.0.step(step);
        self.1.step(step);
    }
    fn decision(&self, decision: &Decision<'_>) {
        self.0.decision(decision);
        self.1.decision(decision);
    }
    fn spend(&self, server: &str, tool: &str, cost: f64) {
        self.0.spend(server, tool, cost);
        self.1.spend(server, tool, cost);
    }
    fn records_spans(&self) -> bool {
        self.0.records_spans() || self.1.records_spans()
    }
}

/// The methods of the specification, as method labels: anything else is `_OTHER`.
pub(crate) const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/update",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/roots/list_changed",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "notifications/elicitation/complete",
    "notifications/tasks/status",
];

/// The protocol versions a label may name: anything else is `_OTHER`.
pub(crate) const VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// `_OTHER`: the label of a value outside the known ones.
pub const OTHER: &str = "_OTHER";

/// `method` as a label: itself when the specification defines it, else [`OTHER`].
#[must_use]
pub(crate) fn method_label(method: &str) -> &'static str {
    METHODS.get(method_index(method)).copied().unwrap_or(OTHER)
}

/// `method`'s place in [`METHODS`] (`METHODS.len()` for none). A method label handed on by
/// the layers is one of [`METHODS`] itself, found by its address before any text is compared:
/// a static string's address and length name its text for good.
pub(crate) fn method_index(method: &str) -> usize {
    let same = |m: &&str| std::ptr::eq(m.as_ptr(), method.as_ptr()) && m.len() == method.len();
    METHODS
        .iter()
        .position(same)
        .or_else(|| METHODS.iter().position(|m| *m == method))
        .unwrap_or(METHODS.len())
}

/// `version` as a label: itself when it is a protocol version of the specification, else
/// [`OTHER`].
#[must_use]
pub(crate) fn version_label(version: &str) -> &'static str {
    VERSIONS
        .iter()
        .find(|v| **v == version)
        .copied()
        .unwrap_or(OTHER)
}

/// What the parsed request and its answer tell the layer that times it: left in the request's
/// extensions by that layer, filled where the body is parsed (once, by whichever layer parses
/// it) and where a tool call's reply is read.
#[derive(Clone, Debug, Default)]
pub(crate) struct Observed(Arc<Slot>);

#[derive(Debug, Default)]
struct Slot {
    parsed: OnceLock<Parsed>,
    failed: OnceLock<Failed>,
    /// The caller's context from the `traceparent` header.
    header: Option<SpanContext>,
    /// When the request began, by the wall clock and the monotonic one, when the recorder
    /// takes spans: spans within it take their wall-clock start from these, reading one
    /// clock instead of two.
    began: Option<(SystemTime, Instant)>,
    /// The request's own span and its parent's id, once asked for.
    span: OnceLock<(SpanContext, Option<[u8; 8]>)>,
}

/// How an answered call failed, as its reply says.
#[derive(Debug)]
pub(crate) struct Failed {
    /// The error type: `tool_error`, a JSON-RPC error code, an HTTP status.
    pub(crate) error: Cow<'static, str>,
    /// Whether the name the request used was the upstream's (it answered the call itself);
    /// not after a JSON-RPC error, which may be for a name it does not have.
    pub(crate) named: bool,
}

/// The parts of a parsed request a measurement names.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The method, as a label.
    pub(crate) method: &'static str,
    /// The tool or prompt named, and which of the two.
    pub(crate) target: Option<(Arc<str>, TargetKind)>,
    /// The protocol version, as a label.
    pub(crate) protocol_version: Option<&'static str>,
    /// The caller's trace context from `params._meta.traceparent`.
    pub(crate) traceparent: Option<SpanContext>,
}

/// Which kind of name a request's target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TargetKind {
    Tool,
    Prompt,
}

impl Observed {
    /// A slot for a request whose `traceparent` header names `header`, measured by a
    /// recorder that takes spans or not.
    pub(crate) fn new(header: Option<SpanContext>, spans: bool) -> Self {
        Self(Arc::new(Slot {
            header,
            began: spans.then(|| (SystemTime::now(), Instant::now())),
            ..Slot::default()
        }))
    }

    /// Whether the request's span is recorded (see [`Metrics::records_spans`]).
    pub(crate) fn records_spans(&self) -> bool {
        self.0.began.is_some()
    }

    /// When the request began, when its span is recorded.
    pub(crate) fn began(&self) -> Option<(SystemTime, Instant)> {
        self.0.began
    }

    /// The wall-clock time of `instant`, a moment of this request (when its span is
    /// recorded): its start's, moved on by the monotonic clock.
    pub(crate) fn wall_time(&self, instant: Instant) -> Option<SystemTime> {
        self.0
            .began
            .map(|(wall, start)| wall + instant.saturating_duration_since(start))
    }

    /// The request's own span, and its parent's id: a child of the caller's context (its
    /// `_meta`'s, else its header's), or the root of a new trace. The same every time asked.
    pub(crate) fn span(&self) -> (SpanContext, Option<[u8; 8]>) {
        *self.0.span.get_or_init(|| {
            let parent = self.get().and_then(|p| p.traceparent).or(self.0.header);
            match parent {
                Some(parent) => (parent.child(), Some(parent.span_id)),
                None => (SpanContext::root(), None),
            }
        })
    }

    /// Fills in the parsed request (the first time only).
    pub(crate) fn set(&self, parsed: Parsed) {
        let _ = self.0.parsed.set(parsed);
    }

    /// What was filled in, if the body was parsed.
    pub(crate) fn get(&self) -> Option<&Parsed> {
        self.0.parsed.get()
    }

    /// Notes how the answered call failed (the first time only).
    pub(crate) fn fail(&self, failed: Failed) {
        let _ = self.0.failed.set(failed);
    }

    /// How the answered call failed, if its reply said so.
    pub(crate) fn failed(&self) -> Option<&Failed> {
        self.0.failed.get()
    }
}
