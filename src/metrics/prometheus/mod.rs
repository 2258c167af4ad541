//! [`PrometheusMetrics`]: the built-in recorder, kept in memory and written in the Prometheus
//! text format.

#[cfg(feature = "otel")]
pub(crate) mod snapshot;
pub(crate) mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
#[cfg(feature = "otel")]
use std::time::SystemTime;

use super::exposition::Exposition;
use super::{
    ClientOperation, Decision, Metrics, OTHER, Operation, Session, SessionSide, method_label,
    version_label,
};
#[cfg(feature = "otel")]
use snapshot::{Attributes, HistogramPoint, Metric, Points, Snapshot};
use state::{ClientKey, DecisionKey, Histogram, OperationKey, Quick, SessionKey, State};

/// How many distinct names (tools, prompts, servers) become labels by default.
const DEFAULT_MAX_NAMES: usize = 200;

/// The built-in [`Metrics`] recorder: durations as histograms and decisions as counters, in
/// memory, written by [`render`](Self::render) in the Prometheus text format with the names and
/// labels of OpenTelemetry's Prometheus translation.
///
/// The series stay bounded: at most [`max_names`](Self::max_names) distinct tool, prompt and
/// server names become labels (200 by default); later ones are counted under `_OTHER`.
pub struct PrometheusMetrics {
    max_names: usize,
    #[cfg(feature = "otel")]
    started: SystemTime,
    state: Mutex<State>,
}

impl fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusMetrics")
            .field("max_names", &self.max_names)
            .finish_non_exhaustive()
    }
}

impl Default for PrometheusMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PrometheusMetrics {
    /// An empty recorder that keeps up to 200 names as labels.
    #[must_use]
    pub fn new() -> Self {
        Self {
            max_names: DEFAULT_MAX_NAMES,
            #[cfg(feature = "otel")]
            started: SystemTime::now(),
            state: Mutex::default(),
        }
    }

    /// Keeps up to `max` distinct tool, prompt and server names as labels; later ones are
    /// counted under `_OTHER`.
    #[must_use]
    pub fn max_names(mut self, max: usize) -> Self {
        self.max_names = max;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything recorded so far, in the Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = Exposition::new();
        self.write(&mut text);
        text.finish()
    }

    /// Writes everything recorded so far into `text` (to which a caller adds its own
    /// families).
    pub fn write(&self, text: &mut Exposition) {
        let state = self.state();
        let (names, words) = (&state.names, &state.words);
        let name = "mcp_server_operation_duration_seconds";
        text.family(
            name,
            "histogram",
            "MCP request or notification duration as observed on the receiver, from the time it was received until the result or ack was sent.",
        );
        let operations = sorted(state.operations.iter().map(|(k, h)| {
            let labels = [
                ("mcp_method_name", Some(k.method)),
                ("gen_ai_tool_name", names.some(k.tool)),
                ("gen_ai_prompt_name", names.some(k.prompt)),
                ("error_type", words.some(k.error)),
                ("mcp_protocol_version", k.version),
                ("network_transport", Some("tcp")),
            ];
            (labels, h)
        }));
        for (labels, histogram) in operations {
            histogram.write(text, name, &labels);
        }
        let name = "mcp_client_operation_duration_seconds";
        text.family(
            name,
            "histogram",
            "MCP request duration as observed on the sender (the gateway), from the time it was sent until the response was received.",
        );
        let client = sorted(state.client.iter().map(|(k, h)| {
            let labels = [
                ("mcp_method_name", Some(k.method)),
                ("mcp_server_name", Some(names.value(k.server))),
                ("gen_ai_tool_name", names.some(k.tool)),
                ("error_type", words.some(k.error)),
            ];
            (labels, h)
        }));
        for (labels, histogram) in client {
            histogram.write(text, name, &labels);
        }
        write_sessions(
            text,
            &state,
            &state.server_sessions,
            "mcp_server_session_duration_seconds",
            "The duration of the MCP session as observed on the MCP server (the gateway, for its callers' sessions).",
        );
        write_sessions(
            text,
            &state,
            &state.client_sessions,
            "mcp_client_session_duration_seconds",
            "The duration of the MCP session as observed on the MCP client (the gateway, for its sessions with upstream servers).",
        );
        let name = "mcp_gatekeeper_decisions_total";
        text.family(
            name,
            "counter",
            "Decisions of the access-control layers, by what was decided on, outcome, rule and level.",
        );
        let decisions = sorted(state.decisions.iter().map(|(k, n)| {
            let labels = [
                ("event", Some(words.value(k.event))),
                ("outcome", Some(words.value(k.outcome))),
                ("rule", words.some(k.rule)),
                ("level", words.some(k.level)),
            ];
            (labels, n)
        }));
        for (labels, n) in decisions {
            #[allow(clippy::cast_precision_loss)] // counts far below 2^52
            text.sample(name, &labels, *n as f64);
        }
        let name = "mcp_gatekeeper_spend_total";
        text.family(
            name,
            "counter",
            "What tool calls cost (the cost layer's price or hook), by server and tool.",
        );
        let spend = sorted(state.spend.iter().map(|((server, tool), cost)| {
            let labels = [
                ("mcp_server_name", Some(names.value(*server))),
                ("gen_ai_tool_name", Some(names.value(*tool))),
            ];
            (labels, cost)
        }));
        for (labels, cost) in spend {
            text.sample(name, &labels, *cost);
        }
    }
}

/// A series' labels: names and values (none for a label the series does not have).
type Labelled<'a, const N: usize> = [(&'static str, Option<&'a str>); N];

/// Series by their labels, in the order of their values (so that the text is the same for
/// the same counts).
fn sorted<'a, const N: usize, T>(
    series: impl Iterator<Item = (Labelled<'a, N>, T)>,
) -> Vec<(Labelled<'a, N>, T)> {
    let mut series: Vec<_> = series.collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    series
}

#[cfg(feature = "otel")]
impl PrometheusMetrics {
    /// Everything recorded so far, named as OpenTelemetry names it (for the OTLP exporter).
    pub(crate) fn snapshot(&self) -> Snapshot {
        let state = self.state();
        let (names, words) = (&state.names, &state.words);
        let some = |pairs: &[(&'static str, Option<&str>)]| -> Attributes {
            pairs
                .iter()
                .filter_map(|(k, v)| v.map(|v| (*k, v.to_owned())))
                .collect()
        };
        let histograms = |points: Vec<(Attributes, &Histogram)>| {
            Points::Histogram(
                points
                    .into_iter()
                    .map(|(attributes, h)| {
                        let mut buckets = h.buckets.to_vec();
                        buckets.push(h.count - h.buckets.iter().sum::<u64>());
                        HistogramPoint {
                            attributes,
                            buckets,
                            count: h.count,
                            sum: h.sum,
                        }
                    })
                    .collect(),
            )
        };
        let operations = state.operations.iter().map(|(k, h)| {
            let attributes = some(&[
                ("mcp.method.name", Some(k.method)),
                ("gen_ai.tool.name", names.some(k.tool)),
                ("gen_ai.prompt.name", names.some(k.prompt)),
                ("error.type", words.some(k.error)),
                ("mcp.protocol.version", k.version),
                ("network.transport", Some("tcp")),
            ]);
            (attributes, h)
        });
        let client = state.client.iter().map(|(k, h)| {
            let attributes = some(&[
                ("mcp.method.name", Some(k.method)),
                ("mcp.server.name", Some(names.value(k.server))),
                ("gen_ai.tool.name", names.some(k.tool)),
                ("error.type", words.some(k.error)),
            ]);
            (attributes, h)
        });
        let decisions = state.decisions.iter().map(|(k, n)| {
            let attributes = some(&[
                ("event", Some(words.value(k.event))),
                ("outcome", Some(words.value(k.outcome))),
                ("rule", words.some(k.rule)),
                ("level", words.some(k.level)),
            ]);
            #[allow(clippy::cast_precision_loss)] // counts far below 2^52
            (attributes, *n as f64)
        });
        let spend = state.spend.iter().map(|((server, tool), cost)| {
            let attributes = some(&[
                ("mcp.server.name", Some(names.value(*server))),
                ("gen_ai.tool.name", Some(names.value(*tool))),
            ]);
            (attributes, *cost)
        });
        let metric = |name, description, unit, points| Metric {
            name,
            description,
            unit,
            points,
        };
        Snapshot {
            started: self.started,
            metrics: vec![
                metric(
                    "mcp.server.operation.duration",
                    "MCP request or notification duration as observed on the receiver.",
                    "s",
                    histograms(operations.collect()),
                ),
                metric(
                    "mcp.client.operation.duration",
                    "MCP request duration as observed on the sender (the gateway).",
                    "s",
                    histograms(client.collect()),
                ),
                metric(
                    "mcp.server.session.duration",
                    "The duration of the MCP session as observed on the MCP server.",
                    "s",
                    histograms(session_points(&state, &state.server_sessions)),
                ),
                metric(
                    "mcp.client.session.duration",
                    "The duration of the MCP session as observed on the MCP client.",
                    "s",
                    histograms(session_points(&state, &state.client_sessions)),
                ),
                metric(
                    "mcp_gatekeeper.decisions",
                    "Decisions of the access-control layers.",
                    "{decision}",
                    Points::Counter(decisions.collect()),
                ),
                metric(
                    "mcp_gatekeeper.spend",
                    "What tool calls cost, by server and tool.",
                    "1",
                    Points::Counter(spend.collect()),
                ),
            ],
        }
    }
}

/// The points of a session histogram, with their attributes.
#[cfg(feature = "otel")]
fn session_points<'a>(
    state: &State,
    map: &'a HashMap<SessionKey, Histogram, Quick>,
) -> Vec<(Attributes, &'a Histogram)> {
    map.iter()
        .map(|(k, h)| {
            let attributes = [
                ("mcp.server.name", state.names.some(k.server)),
                ("mcp.protocol.version", k.version),
                ("network.transport", Some(k.transport)),
                ("error.type", state.words.some(k.error)),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.to_owned())))
            .collect();
            (attributes, h)
        })
        .collect()
}

fn write_sessions(
    text: &mut Exposition,
    state: &State,
    sessions: &HashMap<SessionKey, Histogram, Quick>,
    name: &str,
    help: &str,
) {
    text.family(name, "histogram", help);
    let sessions = sorted(sessions.iter().map(|(k, h)| {
        let labels = [
            ("mcp_server_name", state.names.some(k.server)),
            ("mcp_protocol_version", k.version),
            ("network_transport", Some(k.transport)),
            ("error_type", state.words.some(k.error)),
        ];
        (labels, h)
    }));
    for (labels, histogram) in sessions {
        histogram.write(text, name, &labels);
    }
}

impl Metrics for PrometheusMetrics {
    fn operation(&self, op: &Operation<'_>) {
        let max = self.max_names;
        let mut state = self.state();
        let key = OperationKey {
            method: method_label(op.method),
            tool: op.tool.map(|t| state.name(t, max)),
            prompt: op.prompt.map(|p| state.name(p, max)),
            error: op.error_type.map(|e| state.word(e)),
            version: op.protocol_version.map(version_label),
        };
        state.operations.entry(key).or_default().observe(op.seconds);
    }

    fn client_operation(&self, op: &ClientOperation<'_>) {
        let max = self.max_names;
        let mut state = self.state();
        let key = ClientKey {
            method: method_label(op.method),
            server: state.name(op.server, max),
            tool: op.tool.map(|t| state.name(t, max)),
            error: op.error_type.map(|e| state.word(e)),
        };
        state.client.entry(key).or_default().observe(op.seconds);
    }

    fn session(&self, session: &Session<'_>) {
        let max = self.max_names;
        let mut state = self.state();
        let key = SessionKey {
            server: session.server.map(|s| state.name(s, max)),
            version: session.protocol_version.map(version_label),
            transport: match session.transport {
                "tcp" => "tcp",
                "pipe" => "pipe",
                _ => OTHER,
            },
            error: session.error_type.map(|e| state.word(e)),
        };
        let sessions = match session.side {
            SessionSide::Server => &mut state.server_sessions,
            SessionSide::Client => &mut state.client_sessions,
        };
        sessions.entry(key).or_default().observe(session.seconds);
    }

    fn decision(&self, d: &Decision<'_>) {
        let mut state = self.state();
        let key = DecisionKey {
            event: state.word(d.event),
            outcome: state.word(d.outcome),
            rule: d.rule.map(|r| state.word(r)),
            level: d.level.map(|l| state.word(l)),
        };
        *state.decisions.entry(key).or_default() += 1;
    }

    fn spend(&self, server: &str, tool: &str, cost: f64) {
        if !cost.is_finite() || cost <= 0.0 {
            return;
        }
        let max = self.max_names;
        let mut state = self.state();
        let key = (state.name(server, max), state.name(tool, max));
        *state.spend.entry(key).or_default() += cost;
    }
}
