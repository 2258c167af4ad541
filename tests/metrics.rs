//! Metrics through the gateway, against a real rmcp upstream: `GET /metrics` counts a scripted
//! mix of allowed and refused requests exactly, by rule and outcome, in OpenTelemetry's
//! Prometheus names; it is the master key's to read; no key, argument or unresolved name shows
//! up in it; `promtool` accepts it; and Debian's Prometheus, started on a free port, scrapes it
//! and answers a PromQL query with the same counts.
//!
//! Without `prometheus` and `promtool` the Prometheus part says so and is skipped, unless
//! `MCP_GATEKEEPER_REQUIRE_PROMETHEUS` is set (CI), where it fails.
#![cfg(feature = "gateway")]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::sync::Arc;

use common::*;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::gateway::Gateway;
use mcp_gatekeeper::metrics::{
    ClientOperation, Metrics, Operation, Session, SessionSide, Span, SpanContext, Step,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const MASTER: &str = "sk-master-metrics-0001";
const ALICE: &str = "sk-alice-metrics-secret-0002";
const BOB: &str = "sk-bob-metrics-secret-0003";
const WRONG: &str = "sk-wrong-metrics-secret-0004";
const ARGUMENT: &str = "argument-value-secret-0005";
/// A name of wiki's that wiki does not have: allowed, then refused by wiki itself.
const JUNK: &str = "wiki-made-up-name-0006";
/// A name of no server's: refused by the layers.
const NOWHERE: &str = "nowhere-made-up-name-0007";

fn config(upstream: &str) -> String {
    json!({
        "general_settings": {"master_key": MASTER},
        "mcp_servers": {
            "wiki": {"url": upstream, "disallowed_tools": ["drop"]},
            "vault": {"url": upstream}
        },
        "keys": [
            {"key": ALICE, "key_alias": "alice", "object_permission": {"mcp_servers": ["wiki"]}},
            {"key": BOB, "key_alias": "bob", "object_permission": {"mcp_servers": ["vault"]}}
        ]
    })
    .to_string()
}

fn call_body(tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

/// Posts `body` as `key` on its session (or none): the status and the JSON-RPC reply.
async fn post(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    session: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let r = mcp_post(http, url, key, session)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    let reply = if ct.is_empty() {
        Value::Null
    } else {
        messages(&ct, &text).pop().unwrap_or(Value::Null)
    };
    (status, reply)
}

/// The value of the one sample of `text` whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_mix_of_requests_by_rule_and_outcome_and_prometheus_reads_them() {
    let upstream = RecordingServer::new(vec![tool("echo", &["text"]), tool("drop", &[])], &[], &[]);
    let up = serve_recording(&upstream).await;
    let (gw, _gateway) = gateway_from_json(&config(&up.url("/mcp"))).await;
    let http = http_client();
    let url = gw.url("/mcp");
    let alice = raw_session(&http, &url, ALICE).await;
    let bob = raw_session(&http, &url, BOB).await;

    // The mix: three allowed calls, two refused by the server's deny list, one refused by the
    // key's servers, one allowed for a name its server does not have, one for a name no server
    // has, one with a wrong key.
    for _ in 0..3 {
        let (status, reply) = post(
            &http,
            &url,
            ALICE,
            Some(&alice),
            &call_body("wiki-echo", json!({"text": ARGUMENT})),
        )
        .await;
        assert_eq!(status, 200);
        assert!(reply["result"]["isError"] != json!(true), "{reply}");
    }
    for _ in 0..2 {
        let (_, reply) = post(
            &http,
            &url,
            ALICE,
            Some(&alice),
            &call_body("wiki-drop", json!({})),
        )
        .await;
        assert_eq!(reply["result"]["isError"], json!(true), "{reply}");
    }
    let (_, reply) = post(
        &http,
        &url,
        BOB,
        Some(&bob),
        &call_body("wiki-echo", json!({})),
    )
    .await;
    assert_eq!(reply["result"]["isError"], json!(true), "{reply}");
    let (_, reply) = post(
        &http,
        &url,
        ALICE,
        Some(&alice),
        &call_body(JUNK, json!({})),
    )
    .await;
    assert_eq!(reply["error"]["code"], json!(-32602), "{reply}");
    let (_, reply) = post(
        &http,
        &url,
        ALICE,
        Some(&alice),
        &call_body(NOWHERE, json!({})),
    )
    .await;
    assert_eq!(reply["result"]["isError"], json!(true), "{reply}");
    let (status, _) = post(&http, &url, WRONG, None, &call_body("wiki-echo", json!({}))).await;
    assert_eq!(status, 401);
    assert_eq!(
        upstream.executions.names().len(),
        3,
        "only the allowed calls ran"
    );

    // Only the master key reads the metrics.
    let scrape = |key: Option<&'static str>| {
        let mut r = http.get(gw.url("/metrics"));
        if let Some(key) = key {
            r = r.header("authorization", format!("Bearer {key}"));
        }
        r.send()
    };
    assert_eq!(scrape(None).await.unwrap().status(), 401);
    assert_eq!(scrape(Some(ALICE)).await.unwrap().status(), 403);
    // Alice lists twice: her second list is answered from the list her upstream session kept.
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let lookups = |text: &str, result: &str| {
        sample(
            text,
            &format!(r#"mcp_gatekeeper_list_cache_lookups_total{{result="{result}"}}"#),
        )
        .unwrap()
    };
    let (status, _) = post(&http, &url, ALICE, Some(&alice), &list).await;
    assert_eq!(status, 200);
    let before = scrape(Some(MASTER)).await.unwrap().text().await.unwrap();
    let (status, _) = post(&http, &url, ALICE, Some(&alice), &list).await;
    assert_eq!(status, 200);
    let after = scrape(Some(MASTER)).await.unwrap().text().await.unwrap();
    assert!(lookups(&before, "miss") >= 1.0, "{before}");
    assert_eq!(lookups(&after, "hit"), lookups(&before, "hit") + 1.0);
    assert_eq!(lookups(&after, "miss"), lookups(&before, "miss"));

    // Bob ends his session: it is timed once it has closed.
    let r = http
        .delete(&url)
        .header("x-litellm-api-key", BOB)
        .header("mcp-session-id", &bob)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let ended = r#"mcp_server_session_duration_seconds_count{mcp_protocol_version="2025-06-18",network_transport="tcp"}"#;
    let mut text = String::new();
    for _ in 0..100 {
        let r = scrape(Some(MASTER)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        text = r.text().await.unwrap();
        if sample(&text, ended).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let op = "mcp_server_operation_duration_seconds_count";
    let v = r#"mcp_protocol_version="2025-06-18",network_transport="tcp""#;
    let expected = [
        (format!(r#"{op}{{mcp_method_name="tools/call",gen_ai_tool_name="wiki-echo",{v}}}"#), 3.0),
        (format!(r#"{op}{{mcp_method_name="tools/call",gen_ai_tool_name="wiki-drop",error_type="disallowed_tools",{v}}}"#), 2.0),
        (format!(r#"{op}{{mcp_method_name="tools/call",gen_ai_tool_name="wiki-echo",error_type="permissions",{v}}}"#), 1.0),
        // A name the upstream does not have, or that no server has, is counted without it.
        (format!(r#"{op}{{mcp_method_name="tools/call",error_type="-32602",{v}}}"#), 1.0),
        (format!(r#"{op}{{mcp_method_name="tools/call",error_type="unknown_name",{v}}}"#), 1.0),
        // Refused before the body was read: the method is not known.
        (format!(r#"{op}{{mcp_method_name="_OTHER",error_type="invalid_credential",network_transport="tcp"}}"#), 1.0),
        // What the gateway asked upstream: the four calls alice was allowed.
        (r#"mcp_client_operation_duration_seconds_count{mcp_method_name="tools/call",mcp_server_name="wiki"}"#.to_owned(), 3.0),
        (r#"mcp_client_operation_duration_seconds_count{mcp_method_name="tools/call",mcp_server_name="wiki",error_type="-32602"}"#.to_owned(), 1.0),
        (r#"mcp_gatekeeper_decisions_total{event="call",outcome="allowed"}"#.to_owned(), 4.0),
        (r#"mcp_gatekeeper_decisions_total{event="call",outcome="refused",rule="disallowed_tools"}"#.to_owned(), 2.0),
        (r#"mcp_gatekeeper_decisions_total{event="call",outcome="refused",rule="permissions",level="key"}"#.to_owned(), 1.0),
        (r#"mcp_gatekeeper_decisions_total{event="call",outcome="refused",rule="unknown_name"}"#.to_owned(), 1.0),
        (r#"mcp_gatekeeper_decisions_total{event="auth",outcome="refused",rule="invalid_credential"}"#.to_owned(), 1.0),
        // Bob's session, the one that ended.
        (ended.to_owned(), 1.0),
        // Only alice reached wiki.
        ("mcp_gatekeeper_upstream_sessions".to_owned(), 1.0),
        (r#"mcp_gatekeeper_upstream_up{mcp_server_name="wiki"}"#.to_owned(), 1.0),
    ];
    for (series, n) in &expected {
        assert_eq!(sample(&text, series), Some(*n), "{series} in\n{text}");
    }
    for secret in [
        MASTER, ALICE, BOB, WRONG, ARGUMENT, JUNK, NOWHERE, "made-up", "alice", "bob",
    ] {
        assert!(!text.contains(secret), "{secret} in the metrics:\n{text}");
    }

    let Some(tools) = prometheus_tools() else {
        return;
    };
    let dir = TempDir::new();
    let exposition = dir.path().join("metrics.txt");
    std::fs::write(&exposition, &text).unwrap();
    let checked = Command::new(&tools.promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&exposition).unwrap())
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Debian's Prometheus scrapes the gateway with the master key, and PromQL counts the same.
    let prometheus = Prometheus::start(&tools.prometheus, dir.path(), gw.addr, MASTER);
    let query = r#"sum by (rule, outcome) (mcp_gatekeeper_decisions_total{event="call"})"#;
    let mut got = Vec::new();
    for _ in 0..300 {
        got = prometheus.query(&http, query).await;
        if got.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(
        got,
        vec![
            ("allowed".to_owned(), String::new(), 4.0),
            ("refused".to_owned(), "disallowed_tools".to_owned(), 2.0),
            ("refused".to_owned(), "permissions".to_owned(), 1.0),
            ("refused".to_owned(), "unknown_name".to_owned(), 1.0),
        ]
    );
    let errors = prometheus
        .query(&http, r#"sum by (error_type) (mcp_server_operation_duration_seconds_count{mcp_method_name="tools/call"})"#)
        .await;
    assert!(
        errors
            .iter()
            .any(|(_, e, n)| e == "disallowed_tools" && *n == 2.0),
        "{errors:?}"
    );
}

#[tokio::test]
async fn metrics_can_be_public_or_off() {
    let upstream = RecordingServer::new(vec![tool("echo", &[])], &[], &[]);
    let up = serve_recording(&upstream).await;
    let http = http_client();
    for (metrics, status) in [
        (json!({"public": true}), 200),
        (json!({"enabled": false}), 404),
    ] {
        let mut doc: Value = serde_json::from_str(&config(&up.url("/mcp"))).unwrap();
        doc["general_settings"]["metrics"] = metrics;
        let (gw, _gateway) = gateway_from_json(&doc.to_string()).await;
        let r = http.get(gw.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), status);
    }
}

/// A directory of this test's own, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("gk-metrics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A recorder that keeps every span it is given: (server or client, method, span); and each
/// step's outcome and rule besides.
#[derive(Default)]
struct Spans(
    std::sync::Mutex<Vec<(&'static str, String, Span)>>,
    std::sync::Mutex<Vec<StepSeen>>,
);

/// A step's outcome, its rule, its span.
type StepSeen = (String, Option<String>, Span);

impl Metrics for Spans {
    fn operation(&self, op: &Operation<'_>) {
        if let Some(span) = op.span {
            self.0
                .lock()
                .unwrap()
                .push(("server", op.method.to_owned(), span));
        }
    }
    fn client_operation(&self, op: &ClientOperation<'_>) {
        if let Some(span) = op.span {
            self.0
                .lock()
                .unwrap()
                .push(("client", op.method.to_owned(), span));
        }
    }
    fn step(&self, step: &Step<'_>) {
        self.0
            .lock()
            .unwrap()
            .push(("internal", step.name.to_owned(), step.span));
        self.1.lock().unwrap().push((
            step.outcome.to_owned(),
            step.rule.map(str::to_owned),
            step.span,
        ));
    }
    fn records_spans(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_call_is_one_trace_from_its_caller_through_the_gateway_to_the_upstream() {
    let upstream = RecordingServer::new(vec![tool("meta", &[])], &["meta"], &[]);
    let up = serve_recording(&upstream).await;
    let mut doc: Value = serde_json::from_str(&config(&up.url("/mcp"))).unwrap();
    doc["general_settings"]["metrics"] = json!({"enabled": false});
    let parsed = Config::from_json_str(&doc.to_string()).unwrap();
    let spans = Arc::new(Spans::default());
    let gk = Gatekeeper::new(parsed.policy().unwrap()).with_metrics(spans.clone());
    let gateway = Gateway::from_config(&parsed, gk).unwrap().build().unwrap();
    let gw = serve_gateway(&gateway).await;
    let http = http_client();
    let url = gw.url("/mcp");
    let session = raw_session(&http, &url, ALICE).await;
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let header_caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    // The caller's context in `_meta`, in the `traceparent` header, and none at all; sent
    // through rmcp's client, then (the tool listed) posted by the gateway itself.
    let cases = [
        (Some(caller), None),
        (None, Some(header_caller)),
        (None, None),
    ];
    for (i, (in_meta, in_header)) in cases.into_iter().chain(cases).enumerate() {
        if i == cases.len() {
            let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
            let (status, _) = post(&http, &url, ALICE, Some(&session), &list).await;
            assert_eq!(status, 200);
        }
        spans.0.lock().unwrap().clear();
        let mut body = call_body("wiki-meta", json!({}));
        if let Some(tp) = in_meta {
            body["params"]["_meta"] = json!({"traceparent": tp, "tracestate": "vendor=1"});
        }
        let mut request = mcp_post(&http, &url, ALICE, Some(&session)).json(&body);
        if let Some(tp) = in_header {
            request = request.header("traceparent", tp);
        }
        let seen = meta_seen(request.send().await.unwrap()).await;
        let upstream_parent =
            SpanContext::from_traceparent(seen["meta"]["traceparent"].as_str().unwrap()).unwrap();
        // The HTTP request carries the same context in its headers.
        assert_eq!(
            seen["headers"]["traceparent"], seen["meta"]["traceparent"],
            "{seen}"
        );

        let recorded = spans.0.lock().unwrap().clone();
        let server = recorded
            .iter()
            .find(|(side, m, _)| *side == "server" && m == "tools/call")
            .map(|(_, _, s)| *s)
            .expect("the gateway's span of the call");
        let client = recorded
            .iter()
            .find(|(side, m, _)| *side == "client" && m == "tools/call")
            .map(|(_, _, s)| *s)
            .expect("the gateway's span of its upstream request");
        // The gateway's span is the caller's child (or a new trace's root) ...
        match in_meta.or(in_header) {
            Some(tp) => {
                let theirs = SpanContext::from_traceparent(tp).unwrap();
                assert_eq!(server.context.trace_id, theirs.trace_id);
                assert_eq!(server.parent, Some(theirs.span_id));
            }
            None => assert_eq!(server.parent, None),
        }
        // ... the layers' decision is a step of it ...
        let decision = recorded
            .iter()
            .find(|(side, name, _)| *side == "internal" && name == "mcp_gatekeeper.decide")
            .map(|(_, _, s)| *s)
            .expect("the decision's span");
        assert_eq!(decision.context.trace_id, server.context.trace_id);
        assert_eq!(decision.parent, Some(server.context.span_id));
        // ... its upstream request's span is its child, and the upstream was told that span.
        assert_eq!(client.context.trace_id, server.context.trace_id);
        assert_eq!(client.parent, Some(server.context.span_id));
        assert_eq!(upstream_parent, client.context);
        assert_ne!(Some(upstream_parent.span_id), server.parent);
        if in_meta.is_some() {
            // What else the caller put in `_meta` goes on as it was, in `_meta` and headers.
            assert_eq!(seen["meta"]["tracestate"], "vendor=1", "{seen}");
            assert_eq!(seen["headers"]["tracestate"], "vendor=1", "{seen}");
        }
    }

    // A prompt is traced the same way: the gateway's span of `prompts/get`, its upstream
    // request a child of it, the upstream told that child in `_meta` and in the header.
    spans.0.lock().unwrap().clear();
    let get = json!({"jsonrpc": "2.0", "id": 9, "method": "prompts/get",
        "params": {"name": "wiki-meta", "_meta": {"traceparent": caller}}});
    let seen = meta_seen(
        mcp_post(&http, &url, ALICE, Some(&session))
            .json(&get)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let recorded = spans.0.lock().unwrap().clone();
    let span_of = |side: &str| {
        recorded
            .iter()
            .find(|(s, m, _)| *s == side && m == "prompts/get")
            .map(|(_, _, span)| *span)
            .unwrap_or_else(|| panic!("no {side} span of prompts/get in {recorded:?}"))
    };
    let (server, client) = (span_of("server"), span_of("client"));
    let theirs = SpanContext::from_traceparent(caller).unwrap();
    assert_eq!(server.parent, Some(theirs.span_id));
    assert_eq!(client.parent, Some(server.context.span_id));
    assert_eq!(
        seen["meta"]["traceparent"].as_str(),
        Some(client.context.traceparent().as_str()),
        "{seen}"
    );
    assert_eq!(seen["headers"]["traceparent"], seen["meta"]["traceparent"]);

    // A refused call is traced too: its span names the refusing rule, the decision's span
    // under it says `refused` and why, and nothing was sent upstream for it.
    spans.0.lock().unwrap().clear();
    spans.1.lock().unwrap().clear();
    let mut body = call_body("vault-meta", json!({}));
    body["params"]["_meta"] = json!({"traceparent": caller});
    let (status, reply) = post(&http, &url, ALICE, Some(&session), &body).await;
    assert_eq!(status, 200);
    assert_eq!(reply["result"]["isError"], true, "a refusal: {reply}");
    assert!(
        reply["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("not allowed")),
        "a refusal: {reply}"
    );
    let recorded = spans.0.lock().unwrap().clone();
    assert!(
        !recorded.iter().any(|(side, _, _)| *side == "client"),
        "nothing went upstream: {recorded:?}"
    );
    let server = recorded
        .iter()
        .find(|(side, m, _)| *side == "server" && m == "tools/call")
        .map(|(_, _, s)| *s)
        .expect("the refused call's span");
    assert_eq!(server.parent, Some(theirs.span_id));
    let steps = spans.1.lock().unwrap().clone();
    let [(outcome, rule, decision)] = &steps[..] else {
        panic!("one decision: {steps:?}");
    };
    assert_eq!(outcome, "refused");
    assert_eq!(rule.as_deref(), Some("permissions"), "{steps:?}");
    assert_eq!(decision.parent, Some(server.context.span_id));
    assert_eq!(decision.context.trace_id, theirs.trace_id);

    // Measured, but by no recorder that takes spans (Prometheus alone, the gateway's
    // default): the caller's context reaches the upstream as the caller sent it.
    let (gw, _gateway) = gateway_from_json(&config(&up.url("/mcp"))).await;
    let url = gw.url("/mcp");
    let session = raw_session(&http, &url, ALICE).await;
    let mut body = call_body("wiki-meta", json!({}));
    body["params"]["_meta"] = json!({"traceparent": caller});
    let r = mcp_post(&http, &url, ALICE, Some(&session))
        .json(&body)
        .send()
        .await
        .unwrap();
    let seen = meta_seen(r).await;
    assert_eq!(seen["meta"]["traceparent"], caller, "{seen}");
    assert_eq!(seen["headers"]["traceparent"], caller, "{seen}");

    // A malformed context is passed on in `_meta` as the caller wrote it (it is the caller's),
    // but never made a header.
    let mut body = call_body("wiki-meta", json!({}));
    body["params"]["_meta"] =
        json!({"traceparent": "00-not-a-trace\r\nx-evil: 1", "tracestate": "a=b"});
    let r = mcp_post(&http, &url, ALICE, Some(&session))
        .json(&body)
        .send()
        .await
        .unwrap();
    let seen = meta_seen(r).await;
    assert_eq!(seen["headers"], json!({}), "{seen}");
}

/// A recorder that keeps every session it is told of: side, server, version, transport, error.
#[derive(Default)]
struct Sessions(std::sync::Mutex<Vec<SessionSeen>>);

type SessionSeen = (
    SessionSide,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
);

impl Metrics for Sessions {
    fn session(&self, s: &Session<'_>) {
        assert!(s.seconds >= 0.0);
        self.0.lock().unwrap().push((
            s.side,
            s.server.map(str::to_owned),
            s.protocol_version.map(str::to_owned),
            s.transport.to_owned(),
            s.error_type.map(str::to_owned),
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_timed_on_both_sides_until_they_end() {
    use axum::Router;
    let upstream = RecordingServer::new(vec![tool("echo", &["text"])], &[], &[]);
    let stateful = |ct: &CancellationToken| {
        Router::new().nest_service(
            "/mcp",
            mcp_service(upstream.clone(), Mode::StatefulJson, ct),
        )
    };
    let ct = CancellationToken::new();
    let first = serve(stateful(&ct), ct.clone()).await;
    let addr = first.addr;
    let mut doc: Value = serde_json::from_str(&config(&first.url("/mcp"))).unwrap();
    doc["mcp_servers"]["wiki"]["protocol_version"] = json!("2025-11-25");
    doc["general_settings"]["metrics"] = json!({"enabled": false});
    let parsed = Config::from_json_str(&doc.to_string()).unwrap();
    let sessions = Arc::new(Sessions::default());
    let gk = Gatekeeper::new(parsed.policy().unwrap()).with_metrics(sessions.clone());
    let gateway = Gateway::from_config(&parsed, gk).unwrap().build().unwrap();
    let gw = serve_gateway(&gateway).await;
    let http = http_client();
    let url = gw.url("/mcp");
    let echo = call_body("wiki-echo", json!({"text": "hi"}));
    let session = raw_session(&http, &url, ALICE).await;
    let (_, reply) = post(&http, &url, ALICE, Some(&session), &echo).await;
    assert!(reply["result"]["content"].is_array(), "{reply}");
    assert!(
        sessions.0.lock().unwrap().is_empty(),
        "no session has ended yet"
    );

    // The upstream restarts and forgets its sessions: the gateway's ends, lost; the next
    // call opens a new one.
    ct.cancel();
    drop(first);
    let mut second = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(probe) = std::net::TcpListener::bind(addr) {
            drop(probe);
            let ct = CancellationToken::new();
            second = Some(serve_on(addr, stateful(&ct), ct).await);
            break;
        }
    }
    assert!(second.is_some(), "the upstream's port is free again");
    for _ in 0..2 {
        let (_, reply) = post(&http, &url, ALICE, Some(&session), &echo).await;
        if reply["result"]["isError"] != json!(true) && reply["error"].is_null() {
            break;
        }
    }

    // The caller ends its session.
    let r = http
        .delete(&url)
        .header("x-litellm-api-key", ALICE)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let client_lost: SessionSeen = (
        SessionSide::Client,
        Some("wiki".into()),
        Some("2025-11-25".into()),
        "tcp".into(),
        Some("transport_closed".into()),
    );
    let server_ended: SessionSeen = (
        SessionSide::Server,
        None,
        Some("2025-06-18".into()),
        "tcp".into(),
        None,
    );
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = sessions.0.lock().unwrap().clone();
        if seen.contains(&client_lost) && seen.contains(&server_ended) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.contains(&client_lost), "{seen:?}");
    assert!(seen.contains(&server_ended), "{seen:?}");
    // One of each: the gateway's new upstream session is still open.
    assert_eq!(seen.len(), 2, "{seen:?}");
}

struct Tools {
    prometheus: String,
    promtool: String,
}

/// Debian's `prometheus` and `promtool`, if installed.
fn prometheus_tools() -> Option<Tools> {
    let found = |name: &str| {
        Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            .then(|| name.to_owned())
    };
    match (found("prometheus"), found("promtool")) {
        (Some(prometheus), Some(promtool)) => Some(Tools {
            prometheus,
            promtool,
        }),
        _ => {
            assert!(
                std::env::var_os("MCP_GATEKEEPER_REQUIRE_PROMETHEUS").is_none(),
                "MCP_GATEKEEPER_REQUIRE_PROMETHEUS is set but prometheus or promtool is missing"
            );
            eprintln!("SKIPPED: prometheus and promtool are not installed (Debian: prometheus)");
            None
        }
    }
}

/// A throwaway Prometheus on a free loopback port, scraping one target every 200 ms; killed
/// when dropped.
struct Prometheus {
    child: Child,
    url: String,
}

impl Prometheus {
    fn start(bin: &str, dir: &std::path::Path, target: std::net::SocketAddr, key: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let key_file = dir.join("key");
        std::fs::write(&key_file, key).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\nscrape_configs:\n  - job_name: gateway\n    metrics_path: /metrics\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
                key_file.display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `query`'s instant vector as (outcome, rule or error type, value), empty until
    /// Prometheus answers.
    async fn query(&self, http: &reqwest::Client, query: &str) -> Vec<(String, String, f64)> {
        let Ok(r) = http
            .get(format!("{}/api/v1/query?query={}", self.url, encode(query)))
            .send()
            .await
        else {
            return Vec::new();
        };
        let Ok(body) = r.json::<Value>().await else {
            return Vec::new();
        };
        body["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let label = |n: &str| s["metric"][n].as_str().unwrap_or_default().to_owned();
                let rule = if s["metric"].get("error_type").is_some() {
                    label("error_type")
                } else {
                    label("rule")
                };
                (
                    label("outcome"),
                    rule,
                    s["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }
}

/// `s` percent-encoded for a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
