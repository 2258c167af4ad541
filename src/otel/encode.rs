//! The OTLP trace request (`ExportTraceServiceRequest`) in the protobuf wire format, written
//! by hand for the few messages and fields the exporter sends.

use crate::metrics::Span;

/// A span ready to send.
pub(super) struct Exported {
    pub(super) span: Span,
    pub(super) name: String,
    /// `SPAN_KIND_SERVER` (2) or `SPAN_KIND_CLIENT` (3).
    pub(super) kind: u64,
    pub(super) end_unix_nanos: u64,
    pub(super) attributes: Vec<(&'static str, String)>,
    /// Why it failed: the span's status is an error with this message.
    pub(super) error: Option<String>,
}

/// `ExportTraceServiceRequest { resource_spans: [ResourceSpans { resource, scope_spans:
/// [ScopeSpans { scope, spans }] }] }` for `spans` of the service `service`.
pub(super) fn request(service: &str, spans: &[Exported]) -> Vec<u8> {
    let mut resource = Vec::new();
    key_value(&mut resource, 1, "service.name", service);
    let mut scope = Vec::new();
    string(&mut scope, 1, env!("CARGO_PKG_NAME"));
    string(&mut scope, 2, env!("CARGO_PKG_VERSION"));
    let mut scope_spans = Vec::new();
    message(&mut scope_spans, 1, &scope);
    for s in spans {
        message(&mut scope_spans, 2, &span(s));
    }
    let mut resource_spans = Vec::new();
    message(&mut resource_spans, 1, &resource);
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
    string(&mut out, 5, &s.name);
    varint_field(&mut out, 6, s.kind);
    let start = s
        .span
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    fixed64(&mut out, 7, start);
    fixed64(&mut out, 8, s.end_unix_nanos.max(start));
    for (key, value) in &s.attributes {
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
