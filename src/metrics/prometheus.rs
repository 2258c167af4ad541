//! [`PrometheusMetrics`]: the built-in recorder, kept in memory and written in the Prometheus
//! text format.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use super::exposition::Exposition;
use super::{
    ClientOperation, Decision, Metrics, OTHER, Operation, Session, SessionSide, method_label,
    version_label,
};

/// The bucket boundaries (seconds) OpenTelemetry's conventions for MCP give its durations.
const BOUNDS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// [`BOUNDS`] as `le` labels.
const LE: [&str; 14] = [
    "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10", "30", "60", "120", "300",
];

/// How many distinct names (tools, prompts, servers) become labels by default.
const DEFAULT_MAX_NAMES: usize = 200;

/// How many distinct other words (error types, rules, outcomes, levels) become labels: the
/// layers have a few dozen.
const MAX_WORDS: usize = 128;

/// The built-in [`Metrics`] recorder: durations as histograms and decisions as counters, in
/// memory, written by [`render`](Self::render) in the Prometheus text format with the names and
/// labels of OpenTelemetry's Prometheus translation.
///
/// The series stay bounded: at most [`max_names`](Self::max_names) distinct tool, prompt and
/// server names become labels (200 by default); later ones are counted under `_OTHER`.
pub struct PrometheusMetrics {
    max_names: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    names: HashSet<Arc<str>, Quick>,
    words: HashSet<Arc<str>, Quick>,
    operations: HashMap<OperationKey, Histogram, Quick>,
    client: HashMap<ClientKey, Histogram, Quick>,
    server_sessions: HashMap<SessionKey, Histogram, Quick>,
    client_sessions: HashMap<SessionKey, Histogram, Quick>,
    decisions: HashMap<DecisionKey, u64, Quick>,
    spend: HashMap<(Arc<str>, Arc<str>), f64, Quick>,
}

/// The maps' hasher: keys are a few short labels chosen by the policy (the cap keeps them few),
/// so a fast multiply-and-rotate hash is enough, and resistance to chosen collisions is not
/// needed.
type Quick = BuildHasherDefault<QuickHasher>;

#[derive(Default)]
struct QuickHasher(u64);

impl Hasher for QuickHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ (rest.len() as u64) << 56);
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl QuickHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct OperationKey {
    method: &'static str,
    tool: Option<Arc<str>>,
    prompt: Option<Arc<str>>,
    error: Option<Arc<str>>,
    version: Option<&'static str>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ClientKey {
    method: &'static str,
    server: Arc<str>,
    tool: Option<Arc<str>>,
    error: Option<Arc<str>>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SessionKey {
    server: Option<Arc<str>>,
    version: Option<&'static str>,
    transport: &'static str,
    error: Option<Arc<str>>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct DecisionKey {
    event: Arc<str>,
    outcome: Arc<str>,
    rule: Option<Arc<str>>,
    level: Option<Arc<str>>,
}

#[derive(Clone, Copy, Default)]
struct Histogram {
    buckets: [u64; BOUNDS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let seconds = if seconds.is_finite() && seconds > 0.0 {
            seconds
        } else {
            0.0
        };
        if let Some(i) = BOUNDS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// Writes the histogram's samples under `name` with `labels` before `le`.
    fn write(&self, text: &mut Exposition, name: &str, labels: &[(&str, Option<&str>)]) {
        let bucket = format!("{name}_bucket");
        let mut with_le: Vec<(&str, Option<&str>)> = Vec::with_capacity(labels.len() + 1);
        with_le.extend_from_slice(labels);
        with_le.push(("le", None));
        let mut cumulative = 0;
        for ((bound, n), le) in BOUNDS.iter().zip(self.buckets).zip(LE) {
            debug_assert_eq!(bound.to_string(), le);
            cumulative += n;
            with_le[labels.len()].1 = Some(le);
            #[allow(clippy::cast_precision_loss)] // counts far below 2^52
            text.sample(&bucket, &with_le, cumulative as f64);
        }
        with_le[labels.len()].1 = Some("+Inf");
        #[allow(clippy::cast_precision_loss)]
        text.sample(&bucket, &with_le, self.count as f64);
        text.sample(&format!("{name}_sum"), labels, self.sum);
        #[allow(clippy::cast_precision_loss)]
        text.sample(&format!("{name}_count"), labels, self.count as f64);
    }
}

impl State {
    /// `name` as a label: itself while fewer than `max` names are kept, else `_OTHER`.
    fn name(&mut self, name: &str, max: usize) -> Arc<str> {
        intern(&mut self.names, name, max)
    }

    fn word(&mut self, word: &str) -> Arc<str> {
        intern(&mut self.words, word, MAX_WORDS)
    }
}

fn intern(set: &mut HashSet<Arc<str>, Quick>, value: &str, max: usize) -> Arc<str> {
    if let Some(kept) = set.get(value) {
        return Arc::clone(kept);
    }
    if set.len() >= max {
        return Arc::from(OTHER);
    }
    let kept: Arc<str> = Arc::from(value);
    set.insert(Arc::clone(&kept));
    kept
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(tool: &str, error: Option<&str>, seconds: f64) -> Operation<'static> {
        Operation {
            method: "tools/call",
            tool: Some(Box::leak(tool.to_owned().into_boxed_str())),
            prompt: None,
            protocol_version: Some("2025-06-18"),
            error_type: error.map(|e| &*Box::leak(e.to_owned().into_boxed_str())),
            seconds,
            span: None,
        }
    }

    #[test]
    fn buckets_are_cumulative_and_counts_add_up() {
        let m = PrometheusMetrics::new();
        m.operation(&call("a", None, 0.005));
        m.operation(&call("a", None, 0.3));
        m.operation(&call("a", None, 1000.0));
        let text = m.render();
        let labels = r#"mcp_method_name="tools/call",gen_ai_tool_name="a",mcp_protocol_version="2025-06-18",network_transport="tcp""#;
        for (le, n) in [("0.01", 1), ("0.2", 1), ("0.5", 2), ("300", 2), ("+Inf", 3)] {
            let line = format!(
                "mcp_server_operation_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}\n"
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(text.contains(&format!(
            "mcp_server_operation_duration_seconds_count{{{labels}}} 3\n"
        )));
    }

    #[test]
    fn names_beyond_the_cap_and_unknown_methods_and_versions_are_other() {
        let m = PrometheusMetrics::new().max_names(2);
        for tool in ["a", "b", "c", "d"] {
            m.operation(&call(tool, Some("permissions"), 0.001));
        }
        m.operation(&Operation {
            method: "evil/\"method\"",
            tool: None,
            prompt: None,
            protocol_version: Some("1999-01-01"),
            error_type: None,
            seconds: 0.0,
            span: None,
        });
        let text = m.render();
        assert!(text.contains(r#"gen_ai_tool_name="b""#));
        assert!(!text.contains(r#"gen_ai_tool_name="c""#));
        let other = r#"mcp_server_operation_duration_seconds_count{mcp_method_name="tools/call",gen_ai_tool_name="_OTHER",error_type="permissions",mcp_protocol_version="2025-06-18",network_transport="tcp"} 2"#;
        assert!(text.contains(other), "{text}");
        assert!(text.contains(r#"mcp_method_name="_OTHER",mcp_protocol_version="_OTHER""#));
        assert!(!text.contains("evil") && !text.contains("1999"));
    }

    #[test]
    fn a_thousand_tools_make_at_most_two_hundred_and_one_series() {
        let m = PrometheusMetrics::new();
        for i in 0..1_000 {
            m.operation(&call(&format!("server-tool_{i}"), None, 0.001));
        }
        let text = m.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("mcp_server_operation_duration_seconds_count{"))
            .count();
        assert_eq!(series, 201);
        assert!(text.contains(r#"gen_ai_tool_name="_OTHER""#));
    }

    #[test]
    fn sessions_are_timed_by_side() {
        let m = PrometheusMetrics::new();
        let session = |side, server, transport, error| Session {
            side,
            server,
            protocol_version: Some("2025-11-25"),
            transport,
            error_type: error,
            seconds: 42.0,
        };
        m.session(&session(SessionSide::Server, None, "tcp", None));
        m.session(&session(
            SessionSide::Client,
            Some("wiki"),
            "pipe",
            Some("transport_closed"),
        ));
        m.session(&session(SessionSide::Client, Some("wiki"), "quic?", None));
        let text = m.render();
        for line in [
            "mcp_server_session_duration_seconds_bucket{mcp_protocol_version=\"2025-11-25\",network_transport=\"tcp\",le=\"60\"} 1\n",
            "mcp_server_session_duration_seconds_bucket{mcp_protocol_version=\"2025-11-25\",network_transport=\"tcp\",le=\"30\"} 0\n",
            "mcp_client_session_duration_seconds_count{mcp_server_name=\"wiki\",mcp_protocol_version=\"2025-11-25\",network_transport=\"pipe\",error_type=\"transport_closed\"} 1\n",
            "mcp_client_session_duration_seconds_count{mcp_server_name=\"wiki\",mcp_protocol_version=\"2025-11-25\",network_transport=\"_OTHER\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn decisions_are_counted_by_their_bounded_fields() {
        let m = PrometheusMetrics::new();
        let refused = Decision {
            event: "call",
            outcome: "refused",
            rule: Some("permissions"),
            level: Some("team"),
        };
        m.decision(&refused);
        m.decision(&refused);
        m.decision(&Decision {
            event: "call",
            outcome: "allowed",
            rule: None,
            level: None,
        });
        let text = m.render();
        assert!(text.contains(
            "mcp_gatekeeper_decisions_total{event=\"call\",outcome=\"refused\",rule=\"permissions\",level=\"team\"} 2\n"
        ));
        assert!(
            text.contains("mcp_gatekeeper_decisions_total{event=\"call\",outcome=\"allowed\"} 1\n")
        );
    }
}
