//! The in-memory recorder and its text.

use super::*;
use crate::metrics::{Operation, Session, SessionSide};

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
        let line =
            format!("mcp_server_operation_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}\n");
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
