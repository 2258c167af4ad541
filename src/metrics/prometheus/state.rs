//! What [`PrometheusMetrics`](super::PrometheusMetrics) keeps: histograms and counters by
//! their labels, in maps with a fast hasher, and the labels it has seen.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::super::OTHER;
use super::super::exposition::Exposition;

/// The bucket boundaries (seconds) OpenTelemetry's conventions for MCP give its durations.
pub(crate) const BOUNDS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// [`BOUNDS`] as `le` labels.
pub(super) const LE: [&str; 14] = [
    "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10", "30", "60", "120", "300",
];

/// How many distinct other words (error types, rules, outcomes, levels) become labels: the
/// layers have a few dozen.
const MAX_WORDS: usize = 128;

/// The series, keyed by labels kept as numbers (see [`Labels`]): recording one touches no
/// reference count and allocates nothing once its series exists.
#[derive(Default)]
pub(super) struct State {
    pub(super) names: Labels,
    pub(super) words: Labels,
    pub(super) operations: HashMap<OperationKey, Histogram, Quick>,
    pub(super) client: HashMap<ClientKey, Histogram, Quick>,
    pub(super) server_sessions: HashMap<SessionKey, Histogram, Quick>,
    pub(super) client_sessions: HashMap<SessionKey, Histogram, Quick>,
    pub(super) decisions: HashMap<DecisionKey, u64, Quick>,
    pub(super) spend: HashMap<(Label, Label), f64, Quick>,
}

/// A label value kept by [`Labels`], by its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Label(u16);

impl Label {
    /// The value past the cap: `_OTHER`.
    const OTHER: Self = Self(u16::MAX);
}

/// Label values, each kept once and known by its number; past a cap, every new value is
/// [`Label::OTHER`].
#[derive(Default)]
pub(super) struct Labels {
    ids: HashMap<Arc<str>, Label, Quick>,
    values: Vec<Arc<str>>,
}

impl Labels {
    /// `value`'s number, kept while fewer than `max` values are.
    fn id(&mut self, value: &str, max: usize) -> Label {
        if let Some(id) = self.ids.get(value) {
            return *id;
        }
        let max = max.min(usize::from(u16::MAX));
        let Ok(n) = u16::try_from(self.values.len()) else {
            return Label::OTHER;
        };
        if self.values.len() >= max {
            return Label::OTHER;
        }
        let kept: Arc<str> = Arc::from(value);
        self.values.push(Arc::clone(&kept));
        self.ids.insert(kept, Label(n));
        Label(n)
    }

    /// The value numbered `label`.
    pub(super) fn value(&self, label: Label) -> &str {
        self.values
            .get(usize::from(label.0))
            .map_or(OTHER, |v| &**v)
    }

    /// The value numbered `label`, if there is one.
    pub(super) fn some(&self, label: Option<Label>) -> Option<&str> {
        label.map(|l| self.value(l))
    }
}

/// The maps' hasher: keys are a few short labels chosen by the policy (the cap keeps them few),
/// so a fast multiply-and-rotate hash is enough, and resistance to chosen collisions is not
/// needed.
pub(crate) type Quick = BuildHasherDefault<QuickHasher>;

#[derive(Default)]
pub(crate) struct QuickHasher(u64);

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

/// The labels of `mcp.server.operation.duration`; names and error types as kept numbers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct OperationKey {
    pub(super) method: &'static str,
    pub(super) tool: Option<Label>,
    pub(super) prompt: Option<Label>,
    pub(super) error: Option<Label>,
    pub(super) version: Option<&'static str>,
}

/// The labels of `mcp.client.operation.duration`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct ClientKey {
    pub(super) method: &'static str,
    pub(super) server: Label,
    pub(super) tool: Option<Label>,
    pub(super) error: Option<Label>,
}

/// The labels of the session durations.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct SessionKey {
    pub(super) server: Option<Label>,
    pub(super) version: Option<&'static str>,
    pub(super) transport: &'static str,
    pub(super) error: Option<Label>,
}

/// The labels of the decision counter.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct DecisionKey {
    pub(super) event: Label,
    pub(super) outcome: Label,
    pub(super) rule: Option<Label>,
    pub(super) level: Option<Label>,
}

#[derive(Clone, Copy, Default)]
pub(super) struct Histogram {
    pub(super) buckets: [u64; BOUNDS.len()],
    pub(super) count: u64,
    pub(super) sum: f64,
}

impl Histogram {
    pub(super) fn observe(&mut self, seconds: f64) {
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
    pub(super) fn write(&self, text: &mut Exposition, name: &str, labels: &[(&str, Option<&str>)]) {
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
    pub(super) fn name(&mut self, name: &str, max: usize) -> Label {
        self.names.id(name, max)
    }

    /// `word` (an error type, a rule, an outcome, a level) as a label.
    pub(super) fn word(&mut self, word: &str) -> Label {
        self.words.id(word, MAX_WORDS)
    }
}
