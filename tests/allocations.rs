//! How many heap allocations one `tools/call` costs through the five layers, counted by a
//! global allocator, against the same instant service alone. DESIGN §7
//! asks for no per-request allocation beyond the body buffer and the parsed head; this test
//! prints the count and holds it to a budget, so a change that allocates per request (per tool,
//! per header, per layer) shows up here rather than in a profile months later.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::engine::Mount;
use serde_json::json;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, ServiceExt};

// The only test of this binary: nothing else allocates while a call is counted.
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#;
const REPLY: &[u8] = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hello"}],"isError":false}}"#;

type Reply = http::Response<BoxBody<Bytes, Infallible>>;

fn request() -> http::Request<Full<Bytes>> {
    http::Request::post("http://127.0.0.1/mcp")
        .header("x-litellm-api-key", "sk-bench")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(Full::new(Bytes::from_static(CALL)))
        .unwrap()
}

/// Allocations per call of `service` (the request built outside the count), after warming up.
fn per_call<S>(rt: &tokio::runtime::Runtime, service: &mut S) -> u64
where
    S: Service<http::Request<Full<Bytes>>, Response = Reply, Error = Infallible>,
{
    const CALLS: u64 = 200;
    let mut total = 0;
    for round in 0..2 * CALLS {
        let req = request();
        let region = Region::new(GLOBAL);
        let body = rt.block_on(async {
            let r = service.ready().await.unwrap().call(req).await.unwrap();
            assert!(r.status().is_success());
            r.into_body().collect().await.unwrap().to_bytes()
        });
        let change = region.change();
        let allocations = (change.allocations + change.reallocations) as u64;
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"],
            7
        );
        drop(body);
        if round >= CALLS {
            total += allocations;
        }
    }
    total / CALLS
}

#[test]
fn a_call_through_the_five_layers_allocates_within_budget() {
    let answer = || {
        tower::service_fn(|req: http::Request<Full<Bytes>>| async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], CALL);
            Ok::<Reply, Infallible>(
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(BoxBody::new(Full::new(Bytes::from_static(REPLY))))
                    .unwrap(),
            )
        })
    };
    let config = Config::from_json_str(
        &json!({
            "mcp_servers": {"bench": {"url": "http://127.0.0.1/mcp", "allowed_params": {"echo": ["message"]},
                                      "mcp_info": {"mcp_server_cost_info": {"default_cost_per_query": 0.001}}}},
            "keys": [{"key": "sk-bench", "key_alias": "bench", "team_id": "t",
                      "object_permission": {"mcp_servers": ["bench"], "mcp_tool_permissions": {"bench": ["echo"]}}}],
            "teams": [{"team_id": "t", "organization_id": "o", "object_permission": {"mcp_servers": ["bench"]}}],
            "organizations": [{"organization_id": "o", "object_permission": {"mcp_servers": ["bench"]}}]
        })
        .to_string(),
    )
    .unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap()).with_mount(Mount::Single("bench".into()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bare = per_call(&rt, &mut answer());
    let events = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = std::sync::Arc::clone(&events);
    let mut stack = gk
        .layer()
        .spend_sink(move |_e| {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .layer(answer());
    let layered = per_call(&rt, &mut stack);
    assert_eq!(
        events.load(std::sync::atomic::Ordering::Relaxed),
        400,
        "every call was costed"
    );
    let added = layered.saturating_sub(bare);
    println!(
        "allocations per tools/call: service alone {bare}, through the five layers {layered} (+{added})"
    );
    // The budget: what the layers allocate today (16: see BENCHMARKS.md) and a little room, not
    // enough for an allocation per header, per layer or per reply byte to slip in unnoticed.
    const BUDGET: u64 = 18;
    assert!(
        added <= BUDGET,
        "the five layers allocate {added} times per call (budget {BUDGET})"
    );
}
