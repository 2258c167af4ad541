//! Spans over OTLP/HTTP, against a collector in the test that decodes what arrives with the
//! OpenTelemetry project's own protobuf types: one call sent with `_meta.traceparent` is one
//! trace — the gateway's server span a child of the caller's span, its upstream request's span
//! a child of that, and the upstream (an rmcp server reporting the `_meta` it received) told
//! the upstream request's span. Metrics arrive the same way, with the counts `/metrics` shows.
//! No key or argument value is in any exported byte.
#![cfg(all(feature = "gateway", feature = "otel"))]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::gateway::Gateway;
use mcp_gatekeeper::metrics::{PrometheusMetrics, SpanContext};
use mcp_gatekeeper::otel::{
    BatchSettings, OtlpMetrics, OtlpMetricsSettings, OtlpSettings, OtlpTraces, ParentBasedRoot,
    Sampler,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const ALICE: &str = "sk-alice-otel-secret-0001";
const ARGUMENT: &str = "argument-value-otel-secret-0002";
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A collector: every body posted to `path` (`/v1/traces`, `/v1/metrics`), as it arrived.
async fn collector(path: &str) -> (Running, Arc<Mutex<Vec<Bytes>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&bodies);
    let router = axum::Router::new().route(
        path,
        axum::routing::post(move |body: Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                kept.lock().unwrap().push(body);
                // An empty ExportTraceServiceResponse (or ExportMetricsServiceResponse).
                ([("content-type", "application/x-protobuf")], Bytes::new())
            }
        }),
    );
    (serve(router, CancellationToken::new()).await, bodies)
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    value_of(&span.attributes, key)
}

fn value_of(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_sent_with_a_traceparent_is_one_exported_trace() {
    let (otlp, bodies) = collector("/v1/traces").await;
    let upstream = RecordingServer::new(vec![tool("meta", &["text"])], &[], &[]);
    let up = serve_recording(&upstream).await;
    let config = Config::from_json_str(
        &json!({
            "general_settings": {"metrics": {"enabled": false}},
            "mcp_servers": {"wiki": {"url": up.url("/mcp")}},
            "keys": [{"key": ALICE, "key_alias": "alice", "object_permission": {"mcp_servers": ["wiki"]}}]
        })
        .to_string(),
    )
    .unwrap();
    let traces = OtlpTraces::start(OtlpSettings {
        endpoint: otlp.url("/v1/traces"),
        headers: vec![("x-collector-token".into(), "t".into())],
        service_name: "gatekeeper-under-test".into(),
        sampler: Sampler::ParentBased(ParentBasedRoot::AlwaysOn),
        batch: BatchSettings::default(),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap());
    let gateway = Gateway::from_config(&config, gk)
        .unwrap()
        .extra_metrics(Arc::new(traces))
        .build()
        .unwrap();
    let gw = serve_gateway(&gateway).await;
    let http = http_client();
    let url = gw.url("/mcp");
    let session = raw_session(&http, &url, ALICE).await;
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "wiki-meta", "arguments": {"text": ARGUMENT}, "_meta": {"traceparent": CALLER}}});
    let r = mcp_post(&http, &url, ALICE, Some(&session))
        .json(&body)
        .send()
        .await
        .unwrap();
    let seen = meta_seen(r).await;
    let told =
        SpanContext::from_traceparent(seen["meta"]["traceparent"].as_str().unwrap()).unwrap();
    assert_eq!(seen["headers"]["traceparent"], seen["meta"]["traceparent"]);
    let caller = SpanContext::from_traceparent(CALLER).unwrap();

    // The spans arrive within the exporter's batch delay.
    let mut spans: Vec<(String, Span)> = Vec::new();
    for _ in 0..100 {
        spans = bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                ExportTraceServiceRequest::decode(b.clone())
                    .unwrap()
                    .resource_spans
            })
            .flat_map(|rs| {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        AnyValue::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                rs.scope_spans
                    .into_iter()
                    .flat_map(|ss| ss.spans)
                    .map(move |s| (service.clone(), s))
            })
            .collect();
        if spans.iter().any(|(_, s)| s.kind == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let find = |kind: i32, name: &str| {
        spans
            .iter()
            .find(|(_, s)| s.kind == kind && s.name == name)
            .unwrap_or_else(|| panic!("no span {name} of kind {kind} in {spans:#?}"))
    };
    let (service, server) = find(2, "tools/call wiki-meta");
    let (_, client) = find(3, "tools/call");
    // Every request's decision is a step of its span; the call's is a child of the call's.
    let (_, decision) = spans
        .iter()
        .find(|(_, s)| s.kind == 1 && s.parent_span_id == server.span_id)
        .unwrap_or_else(|| panic!("no decision span under the call's in {spans:#?}"));
    assert_eq!(decision.name, "mcp_gatekeeper.decide");
    assert_eq!(decision.trace_id, caller.trace_id);
    assert_eq!(
        attribute(decision, "mcp_gatekeeper.decision.outcome").as_deref(),
        Some("allowed")
    );
    assert_eq!(service, "gatekeeper-under-test");
    // One trace: caller → the gateway's server span → its upstream request → the upstream.
    assert_eq!(server.trace_id, caller.trace_id);
    assert_eq!(server.parent_span_id, caller.span_id);
    assert_eq!(client.trace_id, caller.trace_id);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(told.trace_id, caller.trace_id);
    assert_eq!(told.span_id.as_slice(), client.span_id.as_slice());
    // Named and attributed per the conventions.
    assert_eq!(
        attribute(server, "mcp.method.name").as_deref(),
        Some("tools/call")
    );
    assert_eq!(
        attribute(server, "gen_ai.tool.name").as_deref(),
        Some("wiki-meta")
    );
    assert_eq!(
        attribute(server, "mcp.protocol.version").as_deref(),
        Some("2025-06-18")
    );
    assert_eq!(
        attribute(client, "mcp.server.name").as_deref(),
        Some("wiki")
    );
    assert!(server.end_time_unix_nano >= server.start_time_unix_nano);
    assert!(client.start_time_unix_nano >= server.start_time_unix_nano);
    // The trace as the collector received it (`cargo test --test otel -- --nocapture`).
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let attributes = |s: &Span| {
        s.attributes
            .iter()
            .map(|kv| {
                format!(
                    "{}={}",
                    kv.key,
                    value_of(std::slice::from_ref(kv), &kv.key).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    eprintln!(
        "trace {}\n└─ caller's span {}\n   └─ SERVER {:?} {} [{}]\n      ├─ INTERNAL {:?} {} [{}]\n      └─ CLIENT {:?} {} [{}]\n         └─ the upstream, told parent {}",
        hex(&server.trace_id),
        hex(&caller.span_id),
        server.name,
        hex(&server.span_id),
        attributes(server),
        decision.name,
        hex(&decision.span_id),
        attributes(decision),
        client.name,
        hex(&client.span_id),
        attributes(client),
        hex(&told.span_id),
    );
    // Nothing secret in any exported byte.
    for body in bodies.lock().unwrap().iter() {
        for secret in [ALICE, ARGUMENT, "alice"] {
            assert!(
                !body.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} exported"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exported_with_the_counts_prometheus_shows() {
    let (otlp, bodies) = collector("/v1/metrics").await;
    let upstream = RecordingServer::new(vec![tool("echo", &["text"]), tool("drop", &[])], &[], &[]);
    let up = serve_recording(&upstream).await;
    let config = Config::from_json_str(
        &json!({
            "general_settings": {"metrics": {"enabled": false}},
            "mcp_servers": {"wiki": {"url": up.url("/mcp"), "disallowed_tools": ["drop"]}},
            "keys": [{"key": ALICE, "key_alias": "alice", "object_permission": {"mcp_servers": ["wiki"]}}]
        })
        .to_string(),
    )
    .unwrap();
    let prometheus = Arc::new(PrometheusMetrics::new());
    let exporter = OtlpMetrics::start(
        OtlpMetricsSettings {
            endpoint: otlp.url("/v1/metrics"),
            headers: vec![],
            service_name: "gatekeeper-under-test".into(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(10),
        },
        Arc::clone(&prometheus),
    )
    .unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap());
    let gateway = Gateway::from_config(&config, gk)
        .unwrap()
        .metrics(Arc::clone(&prometheus), false)
        .build()
        .unwrap();
    let gw = serve_gateway(&gateway).await;
    let http = http_client();
    let url = gw.url("/mcp");
    let session = raw_session(&http, &url, ALICE).await;
    for tool in ["wiki-echo", "wiki-echo", "wiki-drop"] {
        let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": tool, "arguments": {"text": ARGUMENT}}});
        let r = mcp_post(&http, &url, ALICE, Some(&session))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.text().await;
    }

    // The latest export holds what the recorder holds: two calls, one refusal.
    let echo = |attributes: &[KeyValue]| {
        value_of(attributes, "gen_ai.tool.name").as_deref() == Some("wiki-echo")
            && value_of(attributes, "error.type").is_none()
    };
    let mut latest = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(body) = bodies.lock().unwrap().last().cloned() else {
            continue;
        };
        let request = ExportMetricsServiceRequest::decode(body).unwrap();
        let metrics: Vec<_> = request
            .resource_metrics
            .into_iter()
            .flat_map(|rm| rm.scope_metrics)
            .flat_map(|sm| sm.metrics)
            .collect();
        let calls = metrics
            .iter()
            .filter(|m| m.name == "mcp.server.operation.duration")
            .filter_map(|m| match &m.data {
                Some(Data::Histogram(h)) => Some(h),
                _ => None,
            })
            .flat_map(|h| &h.data_points)
            .find(|p| echo(&p.attributes))
            .map(|p| p.count);
        if calls == Some(2) {
            latest = Some(metrics);
            break;
        }
    }
    let metrics = latest.expect("an export with both calls");
    let histogram = |name: &str| match metrics.iter().find(|m| m.name == name).map(|m| &m.data) {
        Some(Some(Data::Histogram(h))) => h.clone(),
        other => panic!("{name}: {other:?}"),
    };
    let operations = histogram("mcp.server.operation.duration");
    assert_eq!(operations.aggregation_temporality, 2, "cumulative");
    let point = operations
        .data_points
        .iter()
        .find(|p| echo(&p.attributes))
        .unwrap();
    assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
    assert_eq!(point.bucket_counts.iter().sum::<u64>(), point.count);
    assert_eq!(
        value_of(&point.attributes, "mcp.method.name").as_deref(),
        Some("tools/call")
    );
    assert!(point.time_unix_nano >= point.start_time_unix_nano);
    let client = histogram("mcp.client.operation.duration");
    assert!(
        client
            .data_points
            .iter()
            .any(|p| value_of(&p.attributes, "mcp.server.name").as_deref() == Some("wiki")),
        "{client:?}"
    );
    let decisions = match metrics
        .iter()
        .find(|m| m.name == "mcp_gatekeeper.decisions")
        .and_then(|m| m.data.clone())
    {
        Some(Data::Sum(sum)) => sum,
        other => panic!("decisions: {other:?}"),
    };
    assert!(decisions.is_monotonic);
    let refused: f64 = decisions
        .data_points
        .iter()
        .filter(|p| value_of(&p.attributes, "rule").as_deref() == Some("disallowed_tools"))
        .map(|p| match p.value {
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(
                v,
            )) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(refused, 1.0);
    // The same counts as the Prometheus text.
    assert!(prometheus.render().contains(
        r#"mcp_gatekeeper_decisions_total{event="call",outcome="refused",rule="disallowed_tools"} 1"#
    ));
    // Nothing secret in any exported byte.
    drop(exporter);
    for body in bodies.lock().unwrap().iter() {
        for secret in [ALICE, ARGUMENT, "alice"] {
            assert!(
                !body.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} exported"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_in_batches_no_larger_than_the_batch_size() {
    use mcp_gatekeeper::metrics::{Metrics, Operation, Span as Ended};
    let (otlp, bodies) = collector("/v1/traces").await;
    let traces = OtlpTraces::start(OtlpSettings {
        endpoint: otlp.url("/v1/traces"),
        headers: vec![],
        service_name: "batched".into(),
        sampler: Sampler::AlwaysOn,
        batch: BatchSettings {
            max_queue_size: 64,
            max_export_batch_size: 2,
            schedule_delay: Duration::from_millis(50),
        },
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    for _ in 0..7 {
        traces.operation(&Operation {
            method: "tools/call",
            tool: Some("echo"),
            prompt: None,
            protocol_version: Some("2025-06-18"),
            error_type: None,
            seconds: 0.001,
            span: Some(Ended {
                context: SpanContext::root(),
                parent: None,
                started: std::time::SystemTime::now(),
            }),
        });
    }
    let mut sizes = Vec::new();
    for _ in 0..100 {
        sizes = bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                ExportTraceServiceRequest::decode(b.clone())
                    .unwrap()
                    .resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .map(|ss| ss.spans.len())
                    .sum::<usize>()
            })
            .collect();
        if sizes.iter().sum::<usize>() == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sizes.iter().sum::<usize>(),
        7,
        "every span arrives: {sizes:?}"
    );
    assert!(
        sizes.iter().all(|n| *n <= 2),
        "batches of two at most: {sizes:?}"
    );
    assert_eq!(traces.counts(), (7, 0, 0));
}
