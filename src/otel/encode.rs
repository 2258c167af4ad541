//! The OTLP trace and metrics requests (`ExportTraceServiceRequest`,
//! `ExportMetricsServiceRequest`) in the protobuf wire format, written by hand for the few
//! messages and fields the exporters send.

use std::collections::HashMap;
use std::time::SystemTime;

use super::names::{Known, NameId};
use crate::metrics::prometheus::snapshot::{Points, Snapshot};
use crate::metrics::prometheus::state::{BOUNDS, Quick};
use crate::metrics::{METHODS, OTHER, VERSIONS};

/// A span ready to send: what the request's path hands over, as small as it can be (under
/// one cache line with the queue's own word): no string, only numbers; its name and
/// attributes are written by the exporter's thread.
pub(super) struct Exported {
    pub(super) trace_id: [u8; 16],
    pub(super) span_id: [u8; 8],
    /// The parent's id; all zero for none (an id never is).
    pub(super) parent: [u8; 8],
    pub(super) start_unix_nanos: u64,
    /// How long it took.
    pub(super) seconds: f32,
    /// A server span's tool or prompt, a client span's server, an internal span's rule.
    pub(super) target: NameId,
    /// Why it failed: the span's status is an error with this message.
    pub(super) error: NameId,
    /// The method (or an internal span's step), as a [`label`].
    pub(super) method: u8,
    /// The protocol version, as a [`version`] ([`NO_LABEL`] for none).
    pub(super) version: u8,
    /// `SPAN_KIND_INTERNAL` (1), `SPAN_KIND_SERVER` (2) or `SPAN_KIND_CLIENT` (3).
    pub(super) kind: u8,
    /// What [`Self::target`] names.
    pub(super) target_kind: Target,
    /// An internal span's outcome.
    pub(super) outcome: Outcome,
}

/// What [`Exported::target`] names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    None,
    Tool,
    Prompt,
    Server,
    /// The rule an internal span's step refused by.
    Rule,
}

/// An internal span's outcome.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    None,
    Allowed,
    Refused,
}

impl Outcome {
    pub(super) fn of(outcome: &str) -> Self {
        match outcome {
            "allowed" => Self::Allowed,
            "refused" => Self::Refused,
            _ => Self::None,
        }
    }

    fn as_str(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Allowed => Some("allowed"),
            Self::Refused => Some("refused"),
        }
    }
}

/// The steps a span may be of besides the methods.
const STEPS: &[&str] = &["mcp_gatekeeper.decide"];

/// No method, step or version: `_OTHER` for a method, none for a version.
pub(super) const NO_LABEL: u8 = u8::MAX;

/// `method` (a method of the specification or a step) as a number: [`NO_LABEL`] for any
/// other.
pub(super) fn label(method: &str) -> u8 {
    if STEPS[0].as_ptr() == method.as_ptr() && STEPS[0].len() == method.len() {
        return u8::try_from(METHODS.len()).unwrap_or(NO_LABEL);
    }
    let i = match crate::metrics::method_index(method) {
        i if i < METHODS.len() => Some(i),
        _ => STEPS
            .iter()
            .position(|s| *s == method)
            .map(|i| METHODS.len() + i),
    };
    i.and_then(|i| u8::try_from(i).ok()).unwrap_or(NO_LABEL)
}

/// A protocol version outside the specification's: written `_OTHER`.
const OTHER_VERSION: u8 = NO_LABEL - 1;

/// `version` (a protocol version of the specification) as a number: [`OTHER_VERSION`] for
/// any other ([`NO_LABEL`] is for a request without one).
pub(super) fn version(version: &str) -> u8 {
    VERSIONS
        .iter()
        .position(|v| *v == version)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(OTHER_VERSION)
}

impl Exported {
    fn method(&self) -> &'static str {
        METHODS
            .iter()
            .chain(STEPS)
            .nth(usize::from(self.method))
            .copied()
            .unwrap_or(OTHER)
    }

    fn version(&self) -> Option<&'static str> {
        (self.version != NO_LABEL).then(|| {
            VERSIONS
                .get(usize::from(self.version))
                .copied()
                .unwrap_or(OTHER)
        })
    }

    /// The span's name, in up to two parts: `tools/call wiki-search` for a server span with a
    /// target, else the method.
    fn name<'a>(&self, known: &'a Known<'_>) -> (&'static str, Option<&'a str>) {
        match self.target_kind {
            Target::Tool | Target::Prompt => (self.method(), known.name(self.target)),
            _ => (self.method(), None),
        }
    }

    /// The conventions' attributes: up to five, the rest of the array empty.
    fn attributes<'a>(&self, known: &'a Known<'_>) -> [(&'static str, &'a str); 5] {
        let mut out = [("", ""); 5];
        let mut n = 0;
        let mut push = |kv| {
            out[n] = kv;
            n += 1;
        };
        if self.kind != 1 {
            push(("mcp.method.name", self.method()));
        }
        if self.kind == 2 {
            push(("network.transport", "tcp"));
        }
        if let Some(outcome) = self.outcome.as_str() {
            push(("mcp_gatekeeper.decision.outcome", outcome));
        }
        let key = match self.target_kind {
            Target::None => None,
            Target::Tool => Some("gen_ai.tool.name"),
            Target::Prompt => Some("gen_ai.prompt.name"),
            Target::Server => Some("mcp.server.name"),
            Target::Rule => Some("mcp_gatekeeper.decision.rule"),
        };
        if let (Some(key), Some(name)) = (key, known.name(self.target)) {
            push((key, name));
        }
        if let Some(version) = self.version() {
            push(("mcp.protocol.version", version));
        }
        if let Some(error) = known.name(self.error) {
            push(("error.type", error));
        }
        out
    }

    /// What, besides its ids and times, tells this span's encoding apart: the key of its
    /// [`Tails`] entry.
    fn tail_key(&self) -> u64 {
        u64::from(self.target)
            | u64::from(self.error) << 16
            | u64::from(self.method) << 32
            | u64::from(self.version) << 40
            | u64::from(self.kind) << 48
            | (self.target_kind as u64) << 52
            | (self.outcome as u64) << 56
    }

    /// Writes the span's fields that many spans share: its name, kind, attributes and status
    /// (fields may come in any order in the wire format).
    fn write_tail(&self, out: &mut Vec<u8>, known: &Known<'_>) {
        let (method, target) = self.name(known);
        tag(out, 5, 2);
        varint(
            out,
            (method.len() + target.map_or(0, |t| t.len() + 1)) as u64,
        );
        out.extend_from_slice(method.as_bytes());
        if let Some(target) = target {
            out.push(b' ');
            out.extend_from_slice(target.as_bytes());
        }
        varint_field(out, 6, u64::from(self.kind));
        for (key, value) in self
            .attributes(known)
            .into_iter()
            .filter(|(k, _)| !k.is_empty())
        {
            key_value(out, 9, key, value);
        }
        // The status: STATUS_CODE_ERROR with the error type as its message; the conventions
        // leave a successful span's status unset.
        match known.name(self.error) {
            Some(message) => {
                tag(out, 15, 2);
                varint(out, (field_len(2, message.len()) + tag_len(3) + 1) as u64);
                string(out, 2, message);
                varint_field(out, 3, 2);
            }
            None => {
                tag(out, 15, 2);
                varint(out, 0);
            }
        }
    }

    /// The length of the span's own fields (ids and times).
    fn head_len(&self) -> usize {
        let mut len = field_len(1, 16) + field_len(2, 8) + 2 * (tag_len(7) + 8);
        if self.parent != [0; 8] {
            len += field_len(4, 8);
        }
        len
    }

    /// Writes the span, `len` bytes long with its `tail`, as field `field` of its parent
    /// message.
    fn write(&self, out: &mut Vec<u8>, field: u32, len: usize, tail: &[u8]) {
        tag(out, field, 2);
        varint(out, len as u64);
        bytes(out, 1, &self.trace_id);
        bytes(out, 2, &self.span_id);
        if self.parent != [0; 8] {
            bytes(out, 4, &self.parent);
        }
        fixed64(out, 7, self.start_unix_nanos);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let nanos = (f64::from(self.seconds).max(0.0) * 1e9) as u64;
        fixed64(out, 8, self.start_unix_nanos.saturating_add(nanos));
        out.extend_from_slice(tail);
    }
}

/// The shared parts of spans (see [`Exported::write_tail`]), each written once and kept by
/// the exporter's thread: spans of one tool, method and outcome differ only in their ids and
/// times. Bounded: past [`Tails::MAX`] kinds it starts over.
#[derive(Default)]
pub(super) struct Tails(HashMap<u64, Box<[u8]>, Quick>);

impl Tails {
    const MAX: usize = 4096;

    /// `span`'s tail, written now if it is new.
    fn of(&mut self, span: &Exported, known: &Known<'_>) -> &[u8] {
        let key = span.tail_key();
        if self.0.len() >= Self::MAX && !self.0.contains_key(&key) {
            self.0.clear();
        }
        self.0.entry(key).or_insert_with(|| {
            let mut tail = Vec::new();
            span.write_tail(&mut tail, known);
            tail.into_boxed_slice()
        })
    }
}

/// `ExportTraceServiceRequest { resource_spans: [ResourceSpans { resource, scope_spans:
/// [ScopeSpans { scope, spans }] }] }` for `spans` of the service `service`, their names
/// `known`, written into one buffer of the right size: every length is counted before it is
/// written.
pub(super) fn request(
    service: &str,
    spans: &[Exported],
    known: &Known<'_>,
    tails: &mut Tails,
) -> Vec<u8> {
    let (resource, scope) = (resource(service), scope());
    let lens: Vec<usize> = spans
        .iter()
        .map(|s| s.head_len() + tails.of(s, known).len())
        .collect();
    let scope_spans =
        field_len(1, scope.len()) + lens.iter().map(|n| field_len(2, *n)).sum::<usize>();
    let resource_spans = field_len(1, resource.len()) + field_len(2, scope_spans);
    let mut out = Vec::with_capacity(field_len(1, resource_spans));
    tag(&mut out, 1, 2);
    varint(&mut out, resource_spans as u64);
    message(&mut out, 1, &resource);
    tag(&mut out, 2, 2);
    varint(&mut out, scope_spans as u64);
    message(&mut out, 1, &scope);
    for (s, len) in spans.iter().zip(lens) {
        s.write(&mut out, 2, len, tails.of(s, known));
    }
    debug_assert_eq!(out.len(), field_len(1, resource_spans));
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

pub(super) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn double(out: &mut Vec<u8>, field: u32, x: f64) {
    fixed64(out, field, x.to_bits());
}

/// `KeyValue { key, value: AnyValue { string_value } }` as field `field`.
fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    tag(out, field, 2);
    varint(out, key_value_len(key, value) as u64);
    string(out, 1, key);
    tag(out, 2, 2);
    varint(out, field_len(1, value.len()) as u64);
    string(out, 1, value);
}

/// The length of a `KeyValue` message of `key` and the string `value`.
fn key_value_len(key: &str, value: &str) -> usize {
    field_len(1, key.len()) + field_len(2, field_len(1, value.len()))
}

/// How many bytes `n` takes as a varint.
fn varint_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// How many bytes the tag of `field` takes.
fn tag_len(field: u32) -> usize {
    varint_len(u64::from(field) << 3)
}

/// How many bytes a length-delimited field `field` of `len` bytes takes, tag and length
/// included.
fn field_len(field: u32, len: usize) -> usize {
    tag_len(field) + varint_len(len as u64) + len
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
        for n in [0, 1, 127, 128, 300, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            varint(&mut out, n);
            assert_eq!(varint_len(n), out.len(), "{n}");
        }
    }

    #[test]
    fn a_span_and_the_queues_word_fit_a_cache_line() {
        assert!(size_of::<Exported>() + size_of::<usize>() <= 64);
    }

    #[test]
    fn a_span_is_exactly_as_long_as_counted() {
        use super::super::names::NONE;
        let names = super::super::names::Names::default();
        let long = "t".repeat(300);
        let span = |parent, target_kind, target: &str, error: Option<&str>| Exported {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent,
            start_unix_nanos: 1,
            seconds: 0.5,
            target: if target.is_empty() {
                NONE
            } else {
                names.id(target)
            },
            error: error.map_or(NONE, |e| names.id(e)),
            method: label("tools/call"),
            version: version("2025-06-18"),
            kind: 2,
            target_kind,
            outcome: Outcome::None,
        };
        let spans = [
            span([0; 8], Target::None, "", None),
            span([7; 8], Target::Tool, "wiki-search", None),
            span([0; 8], Target::Prompt, &long, Some(&long)),
        ];
        let mut known = Known::new(&names);
        known.learn(names.id(&long));
        let mut tails = Tails::default();
        for s in &spans {
            let mut out = Vec::new();
            let tail = tails.of(s, &known).to_vec();
            let len = s.head_len() + tail.len();
            s.write(&mut out, 2, len, &tail);
            assert_eq!(out.len(), field_len(2, len));
        }
        // Three spans of 300-byte names: lengths past one byte's varint at every level.
        let body = request("svc", &spans, &known, &mut tails);
        assert_eq!(body[0], 0x0a);
        assert_eq!(label("no/such"), NO_LABEL);
        assert_eq!(spans[0].version(), Some("2025-06-18"));
        let other = Exported {
            version: version("1999-01-01"),
            ..span([0; 8], Target::None, "", None)
        };
        assert_eq!(other.version(), Some(OTHER));
    }

    #[test]
    fn spans_sharing_a_tail_decode_with_their_own_ids_times_and_status() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use prost::Message as _;
        let names = super::super::names::Names::default();
        let span = |id: u8, error: Option<&str>| Exported {
            trace_id: [id; 16],
            span_id: [id; 8],
            parent: [0; 8],
            start_unix_nanos: u64::from(id) * 1_000,
            seconds: 0.5,
            target: names.id("wiki-search"),
            error: error.map_or(super::super::names::NONE, |e| names.id(e)),
            method: label("tools/call"),
            version: version("2025-06-18"),
            kind: 2,
            target_kind: Target::Tool,
            outcome: Outcome::None,
        };
        let spans = [span(1, None), span(2, Some("permissions")), span(3, None)];
        let mut known = Known::new(&names);
        known.learn(names.id("permissions"));
        let mut tails = Tails::default();
        let body = request("svc", &spans, &known, &mut tails);
        assert_eq!(tails.0.len(), 2, "two kinds of span, one tail each");
        let decoded = ExportTraceServiceRequest::decode(body.as_slice()).expect("valid protobuf");
        let got = &decoded.resource_spans[0].scope_spans[0].spans;
        assert_eq!(got.len(), 3);
        for (s, id) in got.iter().zip([1u8, 2, 3]) {
            assert_eq!(s.span_id, vec![id; 8]);
            assert_eq!(s.name, "tools/call wiki-search");
            assert_eq!(s.kind, 2);
            assert_eq!(s.start_time_unix_nano, u64::from(id) * 1_000);
            assert_eq!(s.end_time_unix_nano, u64::from(id) * 1_000 + 500_000_000);
            let tool = s
                .attributes
                .iter()
                .find(|kv| kv.key == "gen_ai.tool.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref());
            assert_eq!(tool, Some(&Value::StringValue("wiki-search".into())));
        }
        let status = |i: usize| got[i].status.clone().unwrap_or_default();
        assert_eq!((status(0).code, status(0).message.as_str()), (0, ""));
        assert_eq!(
            (status(1).code, status(1).message.as_str()),
            (2, "permissions")
        );
        assert_eq!(status(2).code, 0);
    }
}
