//! What one `tools/call` cost and how it ended ([`ToolCallEvent`]), the hook that may price it
//! or replace its result ([`CostHook`]), and where events go ([`SpendSink`], [`JsonlSink`]).

use std::fmt;
use std::future::{Future, Ready, ready};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

use std::borrow::Cow;

use crate::body::BoxError;
use crate::metrics::{Failed, Metrics, OTHER, Observed};
use crate::reservation::BudgetSettler;

/// How a tool call ended.
///
/// In a spend line (the `Serialize` form, flattened into [`ToolCallEvent`]) it is a plain
/// string in `outcome` ([`Outcome::as_str`]), with its detail in fields of their own:
/// `error_code` for a JSON-RPC error, `http_status` for an upstream error with a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A result without `isError`.
    Success,
    /// A result with `isError: true`.
    ToolError,
    /// A JSON-RPC error.
    JsonRpcError {
        /// Its code.
        code: i64,
    },
    /// The service answered with a non-success HTTP status, or failed.
    TransportError {
        /// The HTTP status, when there was a response.
        status: Option<u16>,
    },
    /// The reply could not be observed (too large, or not JSON-RPC).
    Unknown,
    /// The client went away before the reply.
    Disconnected,
}

impl Outcome {
    /// The outcome's name in a spend line: `success`, `tool_error`, `jsonrpc_error`,
    /// `upstream_error`, `unknown` or `disconnected`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ToolError => "tool_error",
            Self::JsonRpcError { .. } => "jsonrpc_error",
            Self::TransportError { .. } => "upstream_error",
            Self::Unknown => "unknown",
            Self::Disconnected => "disconnected",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Flat fields: `outcome` as a string, and the detail (if any) beside it.
impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("outcome", self.as_str())?;
        match self {
            Self::JsonRpcError { code } => map.serialize_entry("error_code", code)?,
            Self::TransportError {
                status: Some(status),
            } => {
                map.serialize_entry("http_status", status)?;
            }
            _ => {}
        }
        map.end()
    }
}

/// One tool call, as the cost hook and spend sink see it.
#[derive(Clone, Debug, Serialize)]
pub struct ToolCallEvent {
    /// The catalog server, when the name could be attributed.
    pub server: Option<Arc<str>>,
    /// The bare tool name (as the upstream knows it).
    pub tool: Arc<str>,
    /// The name as the caller sent it.
    pub qualified_tool: Arc<str>,
    /// Top-level argument names, in request order.
    pub argument_keys: Arc<[Box<str>]>,
    /// The key's printable id (alias or digest prefix).
    pub key_id: Option<Arc<str>>,
    /// The key's alias.
    pub key_alias: Option<Arc<str>>,
    /// The team.
    pub team_id: Option<Arc<str>>,
    /// The organisation.
    pub organization_id: Option<Arc<str>>,
    /// The end user.
    pub end_user_id: Option<Arc<str>>,
    /// The agent.
    pub agent_id: Option<Arc<str>>,
    /// The MCP session, if any.
    pub session_id: Option<String>,
    /// When the call started.
    #[serde(with = "unix_ms")]
    pub started_at: SystemTime,
    /// How long until the reply was seen.
    #[serde(rename = "duration_ms", with = "millis")]
    pub duration: Duration,
    /// How it ended (in a spend line: `outcome` as a string, and `error_code` or
    /// `http_status` beside it when there is one).
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The price: the catalog's, unless the hook set another.
    pub cost: f64,
}

mod unix_ms {
    use std::time::{SystemTime, UNIX_EPOCH};
    pub(super) fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

mod millis {
    use std::time::Duration;
    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
}

/// What a hook decided about one call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HookDecision {
    /// A cost to record instead of the catalog price.
    pub cost: Option<f64>,
    /// A `tools/call` result to send instead of the upstream's (the JSON-RPC id is kept).
    pub replace_result: Option<Value>,
}

/// Called once the reply to a tool call is seen, before the caller gets it.
///
/// `reply` is the JSON-RPC response object when it could be read. Implemented for `()` (does
/// nothing) and for closures `Fn(&ToolCallEvent, Option<&Value>) -> impl Future<Output =
/// Result<HookDecision, BoxError>>` whose future is `'static`.
pub trait CostHook: Send + Sync + 'static {
    /// The future.
    type Future: Future<Output = Result<HookDecision, BoxError>> + Send + 'static;
    /// Decides about one call.
    fn on_tool_call(&self, event: &ToolCallEvent, reply: Option<&Value>) -> Self::Future;

    /// Whether the hook reads the reply. When `false`, replies are not parsed for it (the
    /// outcome is still read with a lean parse), which saves a full JSON parse per call.
    fn wants_reply(&self) -> bool {
        true
    }
}

impl CostHook for () {
    type Future = Ready<Result<HookDecision, BoxError>>;
    fn on_tool_call(&self, _: &ToolCallEvent, _: Option<&Value>) -> Self::Future {
        ready(Ok(HookDecision::default()))
    }
    fn wants_reply(&self) -> bool {
        false
    }
}

impl<F, Fut> CostHook for F
where
    F: Fn(&ToolCallEvent, Option<&Value>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<HookDecision, BoxError>> + Send + 'static,
{
    type Future = Fut;
    fn on_tool_call(&self, event: &ToolCallEvent, reply: Option<&Value>) -> Fut {
        self(event, reply)
    }
}

/// Where finished events go. Called exactly once per call, synchronously: queue, don't block.
///
/// Implemented for `()` (drops events) and closures `Fn(ToolCallEvent)`.
pub trait SpendSink: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: ToolCallEvent);
}

impl SpendSink for () {
    fn record(&self, _: ToolCallEvent) {}
}

impl<F: Fn(ToolCallEvent) + Send + Sync + 'static> SpendSink for F {
    fn record(&self, event: ToolCallEvent) {
        self(event);
    }
}

/// A sink that writes one JSON object per line to a writer (a file, a pipe).
pub struct JsonlSink<W> {
    writer: Mutex<W>,
}

impl<W> fmt::Debug for JsonlSink<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlSink").finish_non_exhaustive()
    }
}

impl<W: std::io::Write + Send + 'static> JsonlSink<W> {
    /// Writes to `writer`.
    pub fn new(writer: W) -> Self {
        Self {
            writer: Mutex::new(writer),
        }
    }
}

impl<W: std::io::Write + Send + 'static> SpendSink for JsonlSink<W> {
    fn record(&self, event: ToolCallEvent) {
        let mut line = serde_json::to_vec(&event).expect("events serialise");
        line.push(b'\n');
        let mut w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.write_all(&line).and_then(|()| w.flush()).is_err() {
            crate::decision_events::warn("the spend log could not be written");
        }
    }
}

/// Holds an unfinished event; records it as disconnected if dropped before the reply.
pub(crate) struct Pending {
    event: Option<ToolCallEvent>,
    started: Instant,
    sink: Arc<dyn SpendSink>,
    /// The reservation of the limit layer outside, told the final cost.
    settler: Option<BudgetSettler>,
    /// Where the metered layer outside learns how the call ended.
    observed: Option<Observed>,
    /// What counts spend.
    metrics: Option<Arc<dyn Metrics>>,
}

impl Pending {
    /// The unfinished `event`, for `sink`, started now; `settler` is told its final cost.
    pub(crate) fn new(
        event: ToolCallEvent,
        sink: Arc<dyn SpendSink>,
        settler: Option<BudgetSettler>,
    ) -> Self {
        Self {
            event: Some(event),
            started: Instant::now(),
            sink,
            settler,
            observed: None,
            metrics: None,
        }
    }

    /// Tells `observed` (the metered layer's) how the call ended, once it is settled, and
    /// `metrics` what it cost.
    pub(crate) fn observed_by(
        mut self,
        observed: Option<Observed>,
        metrics: Option<Arc<dyn Metrics>>,
    ) -> Self {
        self.observed = observed;
        self.metrics = metrics;
        self
    }

    /// Fills in how the call ended, for the hook to see.
    pub(crate) fn settle(&mut self, outcome: Outcome) -> Option<&ToolCallEvent> {
        let event = self.event.as_mut()?;
        event.duration = self.started.elapsed();
        if let Some(observed) = &self.observed {
            let failed = match &outcome {
                Outcome::Success | Outcome::Unknown | Outcome::Disconnected => None,
                Outcome::ToolError => Some((Cow::Borrowed("tool_error"), true)),
                Outcome::JsonRpcError { code } => Some((Cow::Owned(code.to_string()), false)),
                Outcome::TransportError {
                    status: Some(status),
                } => Some((Cow::Owned(status.to_string()), true)),
                Outcome::TransportError { status: None } => Some((Cow::Borrowed(OTHER), true)),
            };
            if let Some((error, named)) = failed {
                observed.fail(Failed { error, named });
            }
        }
        event.outcome = outcome;
        Some(event)
    }

    /// Sends the settled event to the sink, once.
    pub(crate) fn commit(&mut self, cost: Option<f64>) {
        if let Some(mut event) = self.event.take() {
            if let Some(cost) = cost.filter(|c| c.is_finite()) {
                event.cost = cost;
            }
            if let Some(settler) = &self.settler {
                match event.outcome {
                    // It never reached the upstream.
                    Outcome::TransportError { .. } => settler.release(),
                    _ => settler.settle(event.cost),
                }
            }
            // Spend by server and tool, for calls the upstream answered itself (its tool).
            if let (Some(metrics), Some(server), Outcome::Success | Outcome::ToolError) =
                (&self.metrics, &event.server, &event.outcome)
                && event.cost > 0.0
            {
                metrics.spend(server, &event.tool, event.cost);
            }
            self.sink.record(event);
        }
    }

    pub(crate) fn record(&mut self, outcome: Outcome, cost: Option<f64>) {
        self.settle(outcome);
        self.commit(cost);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.record(Outcome::Disconnected, None);
    }
}
