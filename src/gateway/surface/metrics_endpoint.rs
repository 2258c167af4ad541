//! `GET /metrics`: what the layers and the gateway measured, in the Prometheus text format,
//! with the gateway's own gauges read at the time of the scrape. The master key reads it;
//! anyone does only where `general_settings.metrics.public` says so.

use axum::extract::State;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::combinators::BoxBody;
use serde_json::json;

use super::internal::{McpResponse, Surface, json_response};
use crate::body::ReplyBody;
use crate::gatekeeper::Gatekeeper;
use crate::gateway::shared::GatewayState;
use crate::metrics::{CONTENT_TYPE, Exposition};

/// `GET /metrics`.
pub(crate) async fn scrape(State(state): State<Surface>, headers: HeaderMap) -> McpResponse {
    let shared = &state.shared;
    let Some(endpoint) = &shared.metrics else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "metrics are not enabled"}),
        );
    };
    if !endpoint.public {
        let identities = shared.gatekeeper.policy();
        match (state.digest)(&headers) {
            Ok(Some(d)) if identities.identities().is_master(&d) => {}
            Ok(None) => {
                return json_response(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "the master key is required"}),
                );
            }
            _ => {
                return json_response(
                    StatusCode::FORBIDDEN,
                    &json!({"error": "only the master key may read metrics"}),
                );
            }
        }
    }
    let mut text = Exposition::new();
    endpoint.recorder.write(&mut text);
    gateway_gauges(shared, &mut text);
    let mut response = McpResponse::new(BoxBody::from_bytes(Bytes::from(text.finish())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn gateway_gauges(shared: &GatewayState, text: &mut Exposition) {
    let audit = shared.gatekeeper.audit().stats();
    text.family(
        "mcp_gatekeeper_audit_events_total",
        "counter",
        "Audit events by what became of them: written to every sink, dropped (the queue was full), or failed in a sink.",
    );
    for (result, n) in [
        ("written", audit.written),
        ("dropped", audit.dropped),
        ("failed", audit.failed),
    ] {
        text.sample(
            "mcp_gatekeeper_audit_events_total",
            &[("result", Some(result))],
            n as f64,
        );
    }
    text.family(
        "mcp_gatekeeper_list_cache_lookups_total",
        "counter",
        "Lists of upstream sessions a caller's list needed: kept from before (hit), or asked of the upstream (miss).",
    );
    for (result, n) in [
        ("hit", &shared.list_counts.hits),
        ("miss", &shared.list_counts.misses),
    ] {
        text.sample(
            "mcp_gatekeeper_list_cache_lookups_total",
            &[("result", Some(result))],
            n.load(std::sync::atomic::Ordering::Relaxed) as f64,
        );
    }
    text.family(
        "mcp_gatekeeper_upstream_sessions",
        "gauge",
        "Sessions the gateway holds open with upstream servers, across callers.",
    );
    text.sample(
        "mcp_gatekeeper_upstream_sessions",
        &[],
        shared.pool.len() as f64,
    );
    text.family(
        "mcp_gatekeeper_upstream_up",
        "gauge",
        "Whether an upstream server's last request succeeded (1), failed (0), or none was made yet (no sample).",
    );
    for (server, ok) in shared.health_by_server() {
        text.sample(
            "mcp_gatekeeper_upstream_up",
            &[("mcp_server_name", Some(&server))],
            if ok { 1.0 } else { 0.0 },
        );
    }
    text.family(
        "mcp_gatekeeper_quarantined_definitions",
        "gauge",
        "Tool, prompt and app definitions quarantined by tool pinning now.",
    );
    text.sample(
        "mcp_gatekeeper_quarantined_definitions",
        &[],
        quarantined(&shared.gatekeeper) as f64,
    );
}

fn quarantined(gk: &Gatekeeper) -> usize {
    let policy = gk.policy();
    let catalog = policy.catalog();
    gk.pins()
        .quarantined(|name| {
            catalog
                .lookup(name)
                .map(|id| catalog.server(id).pin_rules())
        })
        .len()
}
