//! The OTLP trace and metrics requests (`ExportTraceServiceRequest`,
//! `ExportMetricsServiceRequest`) in the protobuf wire format, written by hand for the few
//! messages and fields the exporters send.

use std::sync::Arc;
use std::time::SystemTime;

use crate::metrics::Span;
use crate::metrics::prometheus::snapshot::{Points, Snapshot};
use crate::metrics::prometheus::state::BOUNDS;

/// A span ready to send: what the request's path hands over, as little as it can be (its
/// names shared, not copied); its name and attributes are written by the exporter's thread.
pub(super) struct Exported {
    pub(super) span: Span,
    /// `SPAN_KIND_INTERNAL` (1), `SPAN_KIND_SERVER` (2) or `SPAN_KIND_CLIENT` (3).
    pub(super) kind: u64,
    pub(super) end_unix_nanos: u64,
    /// The method, as a label (`_OTHER` outside the specification).
    pub(super) method: &'static str,
    /// A server span's tool or prompt (and which), or a client span's server.
    pub(super) target: Option<(Target, Arc<str>)>,
    /// The protocol version, as a label.
    pub(super) protocol_version: Option<&'static str>,
    /// Why it failed: the span's status is an error with this message.
    pub(super) error: Option<Arc<str>>,
    /// An internal span's outcome (`allowed`, `refused`).
    pub(super) outcome: Option<&'static str>,
}

/// What [`Exported::target`] names.
#[derive(Clone, Copy)]
pub(super) enum Target {
    Tool,
    Prompt,
    Server,
    /// The rule an internal span's step refused by.
    Rule,
}

impl Exported {
    /// The span's name: `tools/call wiki-search` for a server span with a target, else the
    /// method.
    fn name(&self) -> String {
        match &self.target {
            Some((Target::Tool | Target::Prompt, name)) => format!("{} {name}", self.method),
            _ => self.method.to_owned(),
        }
    }

    /// The conventions' attributes.
    fn attributes(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::with_capacity(5);
        if self.kind != 1 {
            out.push(("mcp.method.name", self.method));
        }
        if self.kind == 2 {
            out.push(("network.transport", "tcp"));
        }
        if let Some(outcome) = self.outcome {
            out.push(("mcp_gatekeeper.decision.outcome", outcome));
        }
        match &self.target {
            Some((Target::Tool, name)) => out.push(("gen_ai.tool.name", name)),
            Some((Target::Prompt, name)) => out.push(("gen_ai.prompt.name", name)),
            Some((Target::Server, name)) => out.push(("server.name", name)),
            Some((Target::Rule, name)) => out.push(("mcp_gatekeeper.decision.rule", name)),
            None => {}
        }
        if let Some(version) = self.protocol_version {
            out.push(("mcp.protocol.version", version));
        }
        if let Some(error) = &self.error {
            out.push(("error.type", error));
        }
        out
    }
}

/// `ExportTraceServiceRequest { resource_spans: [ResourceSpans { resource, scope_spans:
/// [ScopeSpans { scope, spans }] }] }` for `spans` of the service `service`.
pub(super) fn request(service: &str, spans: &[Exported]) -> Vec<u8> {
    let mut scope_spans = Vec::new();
    message(&mut scope_spans, 1, &scope());
    for s in spans {
        message(&mut scope_spans, 2, &span(s));
    }
    let mut resource_spans = Vec::new();
    message(&mut resource_spans, 1, &resource(service));
    message(&mut resource_spans, 2, &scope_spans);
    let mut out = Vec::new();
    message(&mut out, 1, &resource_spans);
    out
}

fn span(s: &Exported) -> Vec<u8> {
    let mut out = Vec::new();
    bytes(&mut out, 1, &s.span.context.trace_id);
    bytes(&mut out, 2, &s.span.context.span_id);
    if let Some(parent) = &s.span.parent {
        bytes(&mut out, 4, parent);
    }
    string(&mut out, 5, &s.name());
    varint_field(&mut out, 6, s.kind);
    let start = unix_nanos(s.span.started);
    fixed64(&mut out, 7, start);
    fixed64(&mut out, 8, s.end_unix_nanos.max(start));
    for (key, value) in s.attributes() {
        key_value(&mut out, 9, key, value);
    }
    let mut status = Vec::new();
    // STATUS_CODE_ERROR with the error type as its message; the conventions leave a
    // successful span's status unset.
    if let Some(message) = &s.error {
        string(&mut status, 2, message);
        varint_field(&mut status, 3, 2);
    }
    message(&mut out, 15, &status);
    out
}

/// `AGGREGATION_TEMPORALITY_CUMULATIVE`: every point counts from the recorder's start.
const CUMULATIVE: u64 = 2;

/// `ExportMetricsServiceRequest { resource_metrics: [ResourceMetrics { resource,
/// scope_metrics: [ScopeMetrics { scope, metrics }] }] }` for `snapshot` of the service
/// `service`, taken at `now`. Metrics without points are left out.
pub(super) fn metrics_request(service: &str, snapshot: &Snapshot, now: SystemTime) -> Vec<u8> {
    let start = unix_nanos(snapshot.started);
    let now = unix_nanos(now).max(start);
    let mut scope_metrics = Vec::new();
    message(&mut scope_metrics, 1, &scope());
    for m in &snapshot.metrics {
        let mut data = Vec::new();
        let field = match &m.points {
            Points::Histogram(points) if !points.is_empty() => {
                for p in points {
                    let mut point = Vec::new();
                    fixed64(&mut point, 2, start);
                    fixed64(&mut point, 3, now);
                    fixed64(&mut point, 4, p.count);
                    double(&mut point, 5, p.sum);
                    for n in &p.buckets {
                        fixed64(&mut point, 6, *n);
                    }
                    for bound in BOUNDS {
                        double(&mut point, 7, bound);
                    }
                    for (key, value) in &p.attributes {
                        key_value(&mut point, 9, key, value);
                    }
                    message(&mut data, 1, &point);
                }
                varint_field(&mut data, 2, CUMULATIVE);
                9
            }
            Points::Counter(points) if !points.is_empty() => {
                for (attributes, value) in points {
                    let mut point = Vec::new();
                    fixed64(&mut point, 2, start);
                    fixed64(&mut point, 3, now);
                    double(&mut point, 4, *value);
                    for (key, value) in attributes {
                        key_value(&mut point, 7, key, value);
                    }
                    message(&mut data, 1, &point);
                }
                varint_field(&mut data, 2, CUMULATIVE);
                varint_field(&mut data, 3, 1);
                7
            }
            _ => continue,
        };
        let mut metric = Vec::new();
        string(&mut metric, 1, m.name);
        string(&mut metric, 2, m.description);
        string(&mut metric, 3, m.unit);
        message(&mut metric, field, &data);
        message(&mut scope_metrics, 2, &metric);
    }
    let mut resource_metrics = Vec::new();
    message(&mut resource_metrics, 1, &resource(service));
    message(&mut resource_metrics, 2, &scope_metrics);
    let mut out = Vec::new();
    message(&mut out, 1, &resource_metrics);
    out
}

/// `Resource { attributes: [service.name] }`.
fn resource(service: &str) -> Vec<u8> {
    let mut resource = Vec::new();
    key_value(&mut resource, 1, "service.name", service);
    resource
}

/// `InstrumentationScope { name, version }`: this crate.
fn scope() -> Vec<u8> {
    let mut scope = Vec::new();
    string(&mut scope, 1, env!("CARGO_PKG_NAME"));
    string(&mut scope, 2, env!("CARGO_PKG_VERSION"));
    scope
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn double(out: &mut Vec<u8>, field: u32, x: f64) {
    fixed64(out, field, x.to_bits());
}

/// `KeyValue { key, value: AnyValue { string_value } }` as field `field`.
fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    let mut any = Vec::new();
    string(&mut any, 1, value);
    let mut kv = Vec::new();
    string(&mut kv, 1, key);
    message(&mut kv, 2, &any);
    message(out, field, &kv);
}

fn tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint_field(out: &mut Vec<u8>, field: u32, n: u64) {
    tag(out, field, 0);
    varint(out, n);
}

fn fixed64(out: &mut Vec<u8>, field: u32, n: u64) {
    tag(out, field, 1);
    out.extend_from_slice(&n.to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes(out, field, s.as_bytes());
}

fn message(out: &mut Vec<u8>, field: u32, m: &[u8]) {
    bytes(out, field, m);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_groups_of_seven() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut out = Vec::new();
        varint_field(&mut out, 6, 2);
        assert_eq!(out, [0x30, 0x02]);
    }
}
