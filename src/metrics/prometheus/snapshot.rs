//! What a [`PrometheusMetrics`](super::PrometheusMetrics) holds at one moment, named as
//! OpenTelemetry names it (`mcp.server.operation.duration`, `mcp.method.name`): what the OTLP
//! metrics exporter sends.

use std::time::SystemTime;

/// Attributes of one point, by their OpenTelemetry names.
pub(crate) type Attributes = Vec<(&'static str, String)>;

/// Everything recorded, cumulative since `started`.
pub(crate) struct Snapshot {
    pub(crate) started: SystemTime,
    pub(crate) metrics: Vec<Metric>,
}

/// One metric and its points.
pub(crate) struct Metric {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) points: Points,
}

/// A metric's points.
pub(crate) enum Points {
    /// Histograms over [`BOUNDS`](super::state::BOUNDS).
    Histogram(Vec<HistogramPoint>),
    /// A monotonic sum.
    Counter(Vec<(Attributes, f64)>),
}

/// One histogram's counts: per bucket (one more than the bounds: the last is above them all),
/// in all, and the sum of what was observed.
pub(crate) struct HistogramPoint {
    pub(crate) attributes: Attributes,
    pub(crate) buckets: Vec<u64>,
    pub(crate) count: u64,
    pub(crate) sum: f64,
}
