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
        let mut operations: Vec<_> = state.operations.iter().collect();
        operations.sort_by(|a, b| a.0.cmp(b.0));
        let name = "mcp_server_operation_duration_seconds";
        text.family(
            name,
            "histogram",
            "MCP request or notification duration as observed on the receiver, from the time it was received until the result or ack was sent.",
        );
        for (key, histogram) in operations {
            histogram.write(
                text,
                name,
                &[
                    ("mcp_method_name", Some(key.method)),
                    ("gen_ai_tool_name", key.tool.as_deref()),
                    ("gen_ai_prompt_name", key.prompt.as_deref()),
                    ("error_type", key.error.as_deref()),
                    ("mcp_protocol_version", key.version),
                    ("network_transport", Some("tcp")),
                ],
            );
        }
        let mut client: Vec<_> = state.client.iter().collect();
        client.sort_by(|a, b| a.0.cmp(b.0));
        let name = "mcp_client_operation_duration_seconds";
        text.family(
            name,
            "histogram",
            "MCP request duration as observed on the sender (the gateway), from the time it was sent until the response was received.",
        );
        for (key, histogram) in client {
            histogram.write(
                text,
                name,
                &[
                    ("mcp_method_name", Some(key.method)),
                    ("mcp_server_name", Some(&key.server)),
                    ("gen_ai_tool_name", key.tool.as_deref()),
                    ("error_type", key.error.as_deref()),
                ],
            );
        }
        write_sessions(
            text,
            &state.server_sessions,
            "mcp_server_session_duration_seconds",
            "The duration of the MCP session as observed on the MCP server (the gateway, for its callers' sessions).",
        );
        write_sessions(
            text,
            &state.client_sessions,
            "mcp_client_session_duration_seconds",
            "The duration of the MCP session as observed on the MCP client (the gateway, for its sessions with upstream servers).",
        );
        let mut decisions: Vec<_> = state.decisions.iter().collect();
        decisions.sort_by(|a, b| a.0.cmp(b.0));
        let name = "mcp_gatekeeper_decisions_total";
        text.family(
            name,
            "counter",
            "Decisions of the access-control layers, by what was decided on, outcome, rule and level.",
        );
        for (key, n) in decisions {
            #[allow(clippy::cast_precision_loss)]
            text.sample(
                name,
                &[
                    ("event", Some(&key.event)),
                    ("outcome", Some(&key.outcome)),
                    ("rule", key.rule.as_deref()),
                    ("level", key.level.as_deref()),
                ],
                *n as f64,
            );
        }
        let mut spend: Vec<_> = state.spend.iter().collect();
        spend.sort_by(|a, b| a.0.cmp(b.0));
        let name = "mcp_gatekeeper_spend_total";
        text.family(
            name,
            "counter",
            "What tool calls cost (the cost layer's price or hook), by server and tool.",
        );
        for ((server, tool), cost) in spend {
            text.sample(
                name,
                &[
                    ("mcp_server_name", Some(server)),
                    ("gen_ai_tool_name", Some(tool)),
                ],
                *cost,
            );
        }
    }
}

#[cfg(feature = "otel")]
impl PrometheusMetrics {
    /// Everything recorded so far, named as OpenTelemetry names it (for the OTLP exporter).
    pub(crate) fn snapshot(&self) -> Snapshot {
        let state = self.state();
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
                ("gen_ai.tool.name", k.tool.as_deref()),
                ("gen_ai.prompt.name", k.prompt.as_deref()),
                ("error.type", k.error.as_deref()),
                ("mcp.protocol.version", k.version),
                ("network.transport", Some("tcp")),
            ]);
            (attributes, h)
        });
        let client = state.client.iter().map(|(k, h)| {
            let attributes = some(&[
                ("mcp.method.name", Some(k.method)),
                ("mcp.server.name", Some(&k.server)),
                ("gen_ai.tool.name", k.tool.as_deref()),
                ("error.type", k.error.as_deref()),
            ]);
            (attributes, h)
        });
        let decisions = state.decisions.iter().map(|(k, n)| {
            let attributes = some(&[
                ("event", Some(&k.event)),
                ("outcome", Some(&k.outcome)),
                ("rule", k.rule.as_deref()),
                ("level", k.level.as_deref()),
            ]);
            #[allow(clippy::cast_precision_loss)] // counts far below 2^52
            (attributes, *n as f64)
        });
        let spend = state.spend.iter().map(|((server, tool), cost)| {
            let attributes = some(&[
                ("mcp.server.name", Some(server)),
                ("gen_ai.tool.name", Some(tool)),
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
                    histograms(session_points(&state.server_sessions)),
                ),
                metric(
                    "mcp.client.session.duration",
                    "The duration of the MCP session as observed on the MCP client.",
                    "s",
                    histograms(session_points(&state.client_sessions)),
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
fn session_points(map: &HashMap<SessionKey, Histogram, Quick>) -> Vec<(Attributes, &Histogram)> {
    map.iter()
        .map(|(k, h)| {
            let attributes = [
                ("mcp.server.name", k.server.as_deref()),
                ("mcp.protocol.version", k.version),
                ("network.transport", Some(k.transport)),
                ("error.type", k.error.as_deref()),
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
    sessions: &HashMap<SessionKey, Histogram, Quick>,
    name: &str,
    help: &str,
) {
    let mut sessions: Vec<_> = sessions.iter().collect();
    sessions.sort_by(|a, b| a.0.cmp(b.0));
    text.family(name, "histogram", help);
    for (key, histogram) in sessions {
        histogram.write(
            text,
            name,
            &[
                ("mcp_server_name", key.server.as_deref()),
                ("mcp_protocol_version", key.version),
                ("network_transport", Some(key.transport)),
                ("error_type", key.error.as_deref()),
            ],
        );
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
