//! Criterion benchmarks of the per-request work: parsing, grant resolution, the tool
//! predicate, list filtering (JSON and SSE, with schema pruning), allowed_params, key lookup;
//! and one `tools/call` through the six layers against the service alone: an instant service,
//! the same with caches cold, and a real rmcp server in process; and the in-process limit
//! store's admission and hand-back of one call; tool pinning on a 1,000-tool list, first and
//! repeated; and the audit trail's cost per call.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::engine::{Grant, Level, Principal};
use mcp_gatekeeper::engine::{IdentitySpec, IdentityStore, KeyDigest, KeyMaterial, KeySpec};
use mcp_gatekeeper::permission::ListFilter;
use mcp_gatekeeper::protocol::{Method, RequestId, parse_request, sse};
use serde_json::{Value, json};

#[cfg(feature = "otel")]
#[path = "../examples/support/otlp_sink.rs"]
mod otlp_sink;

const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"github-create_issue","arguments":{"title":"Crash on start","body":"It crashes when the config is empty.","labels":["bug","p1"]},"_meta":{"progressToken":7}}}"#;

fn policy_doc(servers: usize) -> String {
    let mut mcp = serde_json::Map::new();
    for i in 0..servers {
        mcp.insert(
            format!("s{i}"),
            json!({"url": "http://x", "access_groups": [format!("g{}", i % 4)], "disallowed_tools": ["t3"],
                   "allowed_params": {"t1": ["a", "b"]}}),
        );
    }
    let perms =
        |v: &[&str]| json!({"mcp_servers": v, "mcp_tool_permissions": {"s1": ["t1", "t2"]}});
    json!({
        "mcp_servers": mcp,
        "keys": [
            {"key": "k1", "object_permission": perms(&["s0", "s1", "s2"])},
            {"key": "k3", "team_id": "t", "organization_id": "o", "object_permission": perms(&["s0", "s1", "s2"])},
            {"key": "k5", "team_id": "t", "organization_id": "o", "agent_id": "a", "object_permission": perms(&["s0", "s1", "s2"])}
        ],
        "teams": [{"team_id": "t", "object_permission": {"mcp_access_groups": ["g0", "g1", "g2"]}}],
        "organizations": [{"organization_id": "o", "object_permission": {"mcp_servers": ["s0", "s1", "s2", "s3"]}}],
        "end_users": [{"user_id": "u", "object_permission": {"mcp_servers": ["s1", "s2"]}}],
        "agents": [{"agent_id": "a", "object_permission": {"mcp_servers": ["s1", "s2", "s3"]}}]
    })
    .to_string()
}

fn bench_parse(c: &mut Criterion) {
    c.bench_function("parse tools/call", |b| {
        b.iter(|| parse_request(black_box(CALL)).unwrap())
    });
}

fn bench_grant(c: &mut Criterion) {
    let policy = Config::from_json_str(&policy_doc(16))
        .unwrap()
        .policy()
        .unwrap();
    let catalog = Arc::clone(policy.catalog());
    let mut group = c.benchmark_group("resolve grant");
    for (levels, key, user) in [(1, "k1", None), (3, "k3", None), (5, "k5", Some("u"))] {
        let p: Principal = policy
            .identities()
            .principal(&KeyDigest::of(key), user, None)
            .unwrap();
        assert_eq!(
            Level::ALL.iter().filter(|l| p.level(**l).is_some()).count(),
            levels
        );
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{levels} levels")),
            &p,
            |b, p| b.iter(|| Grant::resolve(black_box(&catalog), black_box(p))),
        );
    }
    group.finish();
    let p = policy
        .identities()
        .principal(&KeyDigest::of("k5"), Some("u"), None)
        .unwrap();
    let grant = Grant::resolve(&catalog, &p);
    let s1 = catalog.lookup("s1").unwrap();
    c.bench_function("tool predicate", |b| {
        b.iter(|| grant.check_tool(black_box(s1), black_box("t1")))
    });
    c.bench_function("allowed_params check", |b| {
        b.iter(|| catalog.check_params(black_box(s1), black_box("t1"), black_box(&["a", "b"])))
    });
}

fn tool_list(n: usize) -> Value {
    let tools: Vec<Value> = (0..n)
        .map(|i| {
            json!({"name": format!("s{}-t{}", i % 8, i % 5), "description": "A tool that does something useful with its inputs.",
                   "inputSchema": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "string"}}, "required": ["a"]}})
        })
        .collect();
    json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}})
}

fn bench_filter(c: &mut Criterion) {
    let policy = Config::from_json_str(&policy_doc(8))
        .unwrap()
        .policy()
        .unwrap();
    let catalog = Arc::clone(policy.catalog());
    let gk = Gatekeeper::new(policy);
    let p = gk
        .policy()
        .identities()
        .principal(&KeyDigest::of("k3"), None, None)
        .unwrap();
    let grant = Grant::resolve(&catalog, &p);
    let filter = ListFilter::new(grant, Method::ToolsList, RequestId::Number(1), &gk);
    let mut group = c.benchmark_group("filter tools/list");
    for n in [10, 100, 1_000, 10_000] {
        let json = serde_json::to_vec(&tool_list(n)).unwrap();
        group.throughput(Throughput::Elements(n as u64));
        let text = String::from_utf8(json.clone()).unwrap();
        // "json": what the layer does; from the second listing on, an unchanged reply for the
        // same grant is compared, not filtered again. "json-first": the first listing.
        group.bench_with_input(BenchmarkId::new("json", n), &text, |b, text| {
            b.iter(|| filter.apply_text(text).unwrap().unwrap())
        });
        group.bench_with_input(BenchmarkId::new("json-first", n), &text, |b, text| {
            b.iter(|| filter.apply_text_uncached(text).unwrap().unwrap())
        });
        group.bench_with_input(BenchmarkId::new("json-value-tree", n), &json, |b, json| {
            b.iter(|| {
                let mut v: Value = serde_json::from_slice(json).unwrap();
                filter.apply(&mut v);
                serde_json::to_vec(&v).unwrap()
            })
        });
        let event = format!(
            "id: 1\nevent: message\ndata: {}\n\n",
            String::from_utf8(json.clone()).unwrap()
        );
        group.bench_with_input(BenchmarkId::new("sse", n), &event, |b, event| {
            b.iter(|| {
                let mut framer = sse::SseFramer::new(64 << 20);
                framer.push(event.as_bytes());
                let raw = framer.next_event().unwrap().unwrap();
                let data = sse::event_data(&raw).unwrap();
                sse::replace_data(&raw, &filter.apply_text(&data).unwrap().unwrap())
            })
        });
        group.bench_with_input(BenchmarkId::new("sse-first", n), &event, |b, event| {
            b.iter(|| {
                let mut framer = sse::SseFramer::new(64 << 20);
                framer.push(event.as_bytes());
                let raw = framer.next_event().unwrap().unwrap();
                let data = sse::event_data(&raw).unwrap();
                sse::replace_data(&raw, &filter.apply_text_uncached(&data).unwrap().unwrap())
            })
        });
    }
    group.finish();
}

fn bench_keys(c: &mut Criterion) {
    let catalog = Config::from_json_str(&policy_doc(4))
        .unwrap()
        .catalog()
        .unwrap();
    let mut group = c.benchmark_group("key lookup");
    for n in [10usize, 1_000_000] {
        let spec = IdentitySpec {
            keys: (0..n)
                .map(|i| KeySpec {
                    key: Some(KeyMaterial::Plain(format!("sk-{i}"))),
                    ..KeySpec::default()
                })
                .collect(),
            ..IdentitySpec::default()
        };
        let store = IdentityStore::build(&catalog, &spec).unwrap();
        let probe = format!("sk-{}", n / 2);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            // What the identity layer does per request: hash the presented key, look it up.
            b.iter(|| {
                store
                    .principal(&KeyDigest::of(black_box(&probe)), None, None)
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// One `tools/call` through all six layers around a service that answers at once, against
/// the same service alone: the layers' whole cost per request, framework included (the
/// request and response bodies, extensions, futures, the cost event), on one thread.
fn bench_stack(c: &mut Criterion) {
    use bytes::Bytes;
    use http_body_util::Full;
    use mcp_gatekeeper::engine::Mount;

    const REPLY: &[u8] = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hello"}],"isError":false}}"#;
    let answer = || replying(Bytes::from_static(REPLY), || ());
    let allowed: Vec<String> = std::iter::once("echo".to_owned())
        .chain((1..40).map(|i| format!("tool_{i}")))
        .collect();
    let config = Config::from_json_str(
        &json!({
            "mcp_servers": {"bench": {"url": "http://127.0.0.1/mcp", "allowed_params": {"echo": ["message"]},
                                      "mcp_info": {"mcp_server_cost_info": {"default_cost_per_query": 0.001}}}},
            "keys": [{"key": "sk-bench", "team_id": "t",
                      "object_permission": {"mcp_servers": ["bench"], "mcp_tool_permissions": {"bench": allowed}}}],
            "teams": [{"team_id": "t", "organization_id": "o", "object_permission": {"mcp_servers": ["bench"]}}],
            "organizations": [{"organization_id": "o", "object_permission": {"mcp_servers": ["bench"]}}]
        })
        .to_string(),
    )
    .unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap()).with_mount(Mount::Single("bench".into()));
    let request = || {
        http::Request::post("http://127.0.0.1/mcp")
            .header("x-litellm-api-key", "sk-bench")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#,
            )))
            .unwrap()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("tools/call round trip");
    let ids = ["bare service", "six layers"].map(BenchmarkId::from_parameter);
    alone_and_layered(&mut group, &rt, &gk, ids, answer, request);
    group.finish();

    // The same call answered by a real rmcp server (stateless, JSON replies), in process: what
    // the layers cost next to the service they usually wrap, without sockets or a load
    // generator sharing the cores.
    let rmcp_service = || {
        use rmcp::transport::streamable_http_server::{
            StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
        };
        let mut config = StreamableHttpServerConfig::default();
        config.legacy_session_mode = false;
        config.json_response = true;
        config.sse_keep_alive = None;
        StreamableHttpService::new(
            || Ok(Echo),
            Arc::new(LocalSessionManager::default()),
            config,
        )
    };
    let host_request = || {
        let mut r = request();
        r.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_static("127.0.0.1"),
        );
        r
    };
    // rmcp's server times its handling out: it needs the runtime's timer.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("tools/call round trip, rmcp server");
    let ids = ["rmcp alone", "six layers"].map(BenchmarkId::from_parameter);
    alone_and_layered(&mut group, &rt, &gk, ids, rmcp_service, host_request);
    group.finish();

    // The first group again, with a service whose own work sweeps `kib` KiB of its memory per
    // call, as a real server's work does: the layers' code and data are then evicted from the
    // caches between calls, as in a server under load, and cost what they cost cold.
    let mut group = c.benchmark_group("tools/call round trip, service sweeping its memory");
    for kib in [1024usize, 4096] {
        let sweeping = move || {
            let memory = Arc::new(std::sync::Mutex::new(vec![0u8; kib * 1024]));
            replying(Bytes::from_static(REPLY), move || {
                for line in memory.lock().unwrap().iter_mut().step_by(64) {
                    *line = line.wrapping_add(1);
                }
            })
        };
        let ids = ["bare service", "six layers"].map(|name| BenchmarkId::new(name, kib));
        alone_and_layered(&mut group, &rt, &gk, ids, sweeping, request);
    }
    group.finish();

    // The same call with tool results of growing size: the cost layer reads a JSON reply whole
    // (to note how the call ended and keep an exact length), so this is how the layers' cost
    // moves with what a tool returns.
    let mut group = c.benchmark_group("tools/call round trip, tool result size");
    for size in [1usize << 10, 64 << 10, 1 << 20] {
        let reply = Bytes::from(
            serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 7, "result": {
                "content": [{"type": "text", "text": "x".repeat(size)}], "isError": false}}))
            .unwrap(),
        );
        group.throughput(Throughput::Bytes(size as u64));
        let answering = move || replying(reply.clone(), || ());
        let ids = ["bare service", "six layers"].map(|name| BenchmarkId::new(name, size));
        alone_and_layered(&mut group, &rt, &gk, ids, answering, request);
    }
    group.finish();
}

/// One call of the service `make` builds, alone and behind the six layers, under the two ids.
fn alone_and_layered<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    gk: &Gatekeeper,
    [alone, layered]: [BenchmarkId; 2],
    make: impl Fn() -> S,
    request: impl Fn() -> TestRequest,
) where
    S: tower::Service<TestRequest, Response = TestReply, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    use tower::Layer;
    let mut bare = make();
    group.bench_function(alone, |b| b.iter(|| round_trip(rt, &mut bare, request())));
    let mut stack = gk.layer().spend_sink(|e| drop(black_box(e))).layer(make());
    group.bench_function(layered, |b| {
        b.iter(|| round_trip(rt, &mut stack, request()))
    });
}

type TestRequest = http::Request<http_body_util::Full<bytes::Bytes>>;
type TestReply =
    http::Response<http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>>;

/// A service that reads the request body whole (as any server must), does `work`, and answers
/// with `reply` as JSON.
fn replying<W>(
    reply: bytes::Bytes,
    work: W,
) -> impl tower::Service<
    TestRequest,
    Response = TestReply,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<TestReply, std::convert::Infallible>> + Send,
> + Clone
+ Send
+ 'static
where
    W: Fn() + Clone + Send + Sync + 'static,
{
    use http_body_util::{BodyExt, Full, combinators::BoxBody};
    tower::service_fn(move |req: http::Request<Full<bytes::Bytes>>| {
        let reply = reply.clone();
        let work = work.clone();
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            black_box(body);
            work();
            Ok(http::Response::builder()
                .header("content-type", "application/json")
                .body(BoxBody::new(Full::new(reply)))
                .unwrap())
        }
    })
}

/// One call of `service` on `rt`, its reply read whole.
fn round_trip<S, B>(
    rt: &tokio::runtime::Runtime,
    service: &mut S,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> bytes::Bytes
where
    S: tower::Service<
            http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = http::Response<B>,
        >,
    S::Error: std::fmt::Debug,
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    rt.block_on(async {
        let r = service.ready().await.unwrap().call(request).await.unwrap();
        assert!(r.status().is_success());
        r.into_body().collect().await.unwrap().to_bytes()
    })
}

/// An rmcp server with one tool, `echo`, that returns its `message`.
#[derive(Clone)]
struct Echo;

impl rmcp::ServerHandler for Echo {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(
            rmcp::model::ServerCapabilities::builder()
                .enable_tools()
                .build(),
        )
    }
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        _: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        let message = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or("");
        Ok(
            rmcp::model::CallToolResult::success(vec![rmcp::model::ContentBlock::text(
                message.to_owned(),
            )])
            .into(),
        )
    }
}

/// One admission and hand-back of five counters (two rate windows, two parallel limits, a
/// budget) in the in-process store: what the limit layer adds to a limited call.
fn bench_limits(c: &mut Criterion) {
    use mcp_gatekeeper::counters::{
        Admission, Admitting, CounterKind, CounterOp, InProcessStore, LimitStore,
    };
    use mcp_gatekeeper::engine::Nanos;
    use std::time::Duration;
    let store = InProcessStore::new();
    let op = |name: &str, kind| CounterOp {
        name: name.into(),
        kind,
        ledger: None,
    };
    let rate = CounterKind::Rate {
        limit: u64::MAX,
        window: Duration::from_secs(60),
    };
    let parallel = CounterKind::Parallel { limit: u64::MAX };
    let ops = [
        op("key:k:rpm", rate),
        op("key:k:parallel", parallel),
        op("key:k:rpm:bench/echo", rate),
        op("key:k:parallel:bench/echo", parallel),
        op(
            "team:t:budget",
            CounterKind::Budget {
                max: Nanos(u64::MAX / 2),
                period: Some(Duration::from_secs(86_400)),
                amount: Nanos::from_dollars(0.001),
            },
        ),
    ];
    c.bench_function("limits: admit and settle 5 counters", |b| {
        b.iter(|| match store.admit(black_box(&ops)) {
            Admitting::Ready(Some(Ok(Admission::Admitted(taken)))) => {
                store.finish(taken, Some(Nanos::from_dollars(0.001)));
            }
            _ => unreachable!("admitted at once"),
        });
    });
}

/// A list of `n` distinct tools over eight servers.
fn distinct_tool_list(n: usize) -> String {
    let tools: Vec<Value> = (0..n)
        .map(|i| {
            json!({"name": format!("s{}-tool_{i}", i % 8), "description": format!("Tool {i}: does something useful with its inputs."),
                   "inputSchema": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "string"}}, "required": ["a"]},
                   "annotations": {"readOnlyHint": true}})
        })
        .collect();
    json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}).to_string()
}

fn bench_pinning(c: &mut Criterion) {
    use mcp_gatekeeper::engine::PinBook;
    let mut doc: Value = serde_json::from_str(&policy_doc(8)).unwrap();
    for server in doc["mcp_servers"].as_object_mut().unwrap().values_mut() {
        server["tool_pinning"] = json!("enforce");
        server["disallowed_tools"] = json!([]);
        server["allowed_params"] = json!({});
    }
    doc["keys"][0]["object_permission"] =
        json!({"mcp_servers": ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"]});
    let policy = Config::from_json_str(&doc.to_string())
        .unwrap()
        .policy()
        .unwrap();
    let catalog = Arc::clone(policy.catalog());
    let gk = Gatekeeper::new(policy);
    let p = gk
        .policy()
        .identities()
        .principal(&KeyDigest::of("k1"), None, None)
        .unwrap();
    let text = distinct_tool_list(1_000);
    let filter_with = |book: Arc<PinBook>| {
        let grant = Grant::resolve(&catalog, &p).with_pins(book);
        ListFilter::new(grant, Method::ToolsList, RequestId::Number(1), &gk)
    };
    let mut group = c.benchmark_group("pinning tools/list");
    group.throughput(Throughput::Elements(1_000));
    let unpinned = ListFilter::new(
        Grant::resolve(&catalog, &p),
        Method::ToolsList,
        RequestId::Number(1),
        &gk,
    );
    group.bench_function(BenchmarkId::new("no pins", 1_000), |b| {
        b.iter(|| unpinned.apply_text_uncached(&text).unwrap().unwrap())
    });
    // Every definition seen for the first time: canonical form and SHA-256 of each, pins learned.
    group.bench_function(BenchmarkId::new("first sight", 1_000), |b| {
        b.iter_batched(
            || filter_with(Arc::new(PinBook::default())),
            |filter| filter.apply_text_uncached(&text).unwrap().unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    // The same definitions again (another caller, so not the memorised reply): each is
    // recognised by a keyed hash of its text, without digesting it again.
    let seen = filter_with(Arc::new(PinBook::default()));
    seen.apply_text_uncached(&text).unwrap();
    group.bench_function(BenchmarkId::new("repeated", 1_000), |b| {
        b.iter(|| seen.apply_text_uncached(&text).unwrap().unwrap())
    });
    group.bench_function(BenchmarkId::new("repeated, same caller", 1_000), |b| {
        b.iter(|| seen.apply_text(&text).unwrap().unwrap())
    });
    group.finish();
}

/// One `tools/call` through the six layers with and without an audit trail (a JSONL sink).
fn bench_audit(c: &mut Criterion) {
    use bytes::Bytes;
    use http_body_util::Full;
    use mcp_gatekeeper::audit::{Auditor, JsonlSink};
    use mcp_gatekeeper::engine::Mount;
    use tower::Layer;
    const REPLY: &[u8] = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hello"}],"isError":false}}"#;
    let config = Config::from_json_str(
        r#"{"mcp_servers": {"bench": {"url": "http://127.0.0.1/mcp"}},
            "keys": [{"key": "sk-bench", "key_alias": "bench", "team_id": "t", "object_permission": {"mcp_servers": ["bench"]}}],
            "teams": [{"team_id": "t"}]}"#,
    )
    .unwrap();
    let request = || {
        http::Request::post("http://127.0.0.1/mcp")
            .header("x-litellm-api-key", "sk-bench")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello","count":3}}}"#,
            )))
            .unwrap()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let plain = Gatekeeper::new(config.policy().unwrap()).with_mount(Mount::Single("bench".into()));
    let sink = JsonlSink::open("/dev/null").unwrap();
    let auditor = Auditor::new(vec![Arc::new(sink)], 1 << 16);
    let audited = Gatekeeper::new(config.policy().unwrap())
        .with_mount(Mount::Single("bench".into()))
        .with_audit(auditor.clone());
    let measured = Gatekeeper::new(config.policy().unwrap())
        .with_mount(Mount::Single("bench".into()))
        .with_metrics(Arc::new(mcp_gatekeeper::metrics::PrometheusMetrics::new()));
    let mut variants = vec![
        ("six layers", plain),
        // Before the audited run, whose audit thread goes on writing for a while after it.
        ("six layers, measured (PrometheusMetrics)", measured),
    ];
    // Measured and traced: every call's server span handed to the OTLP exporter (sampler
    // always on), which sends it to a receiver on loopback from its own thread.
    // The collector stand-in runs in a process of its own, so that none of its CPU counts as
    // this process's.
    #[cfg(feature = "otel")]
    let sink = SinkProcess::start();
    #[cfg(feature = "otel")]
    let traces = {
        let traces = mcp_gatekeeper::otel::OtlpTraces::start(mcp_gatekeeper::otel::OtlpSettings {
            endpoint: format!("http://{}/v1/traces", sink.addr),
            headers: vec![],
            service_name: "bench".into(),
            sampler: mcp_gatekeeper::otel::Sampler::AlwaysOn,
            // The defaults, or what `OTEL_BSP_*` in the bench's environment say.
            batch: mcp_gatekeeper::otel::BatchSettings::from_vars(|n| std::env::var(n).ok())
                .expect("OTEL_BSP_* settings"),
            timeout: std::time::Duration::from_secs(10),
        })
        .unwrap();
        let traces = Arc::new(traces);
        let both = (
            Arc::new(mcp_gatekeeper::metrics::PrometheusMetrics::new()),
            Arc::clone(&traces),
        );
        variants.push((
            "six layers, measured and traced (PrometheusMetrics, OtlpTraces)",
            Gatekeeper::new(config.policy().unwrap())
                .with_mount(Mount::Single("bench".into()))
                .with_metrics(Arc::new(both)),
        ));
        traces
    };
    variants.push(("six layers, audited to JSONL", audited));
    let mut stacks: Vec<_> = variants
        .into_iter()
        .map(|(name, gk)| {
            let stack = gk
                .layer()
                .spend_sink(|e| drop(black_box(e)))
                .layer(replying(Bytes::from_static(REPLY), || ()));
            (name, stack)
        })
        .collect();
    // The calls, timed by the CPU the whole process spent on them, every thread's: the
    // exporter's encoding and sending included, which wall time would miss on another core.
    // First, before the audit trail's thread is busy.
    let mut group = c.benchmark_group("tools/call round trip, process CPU");
    for (name, stack) in stacks.iter_mut().filter(|(n, _)| !n.contains("audited")) {
        group.bench_function(BenchmarkId::from_parameter(*name), |b| {
            b.iter_custom(|iters| {
                let start = cpu_time::ProcessTime::now();
                for _ in 0..iters {
                    black_box(round_trip(&rt, stack, request()));
                }
                start.elapsed()
            })
        });
    }
    group.finish();
    // For counting instructions (`perf stat -e instructions:u`): `ENGINE_CALLS=N` makes N
    // calls through the stack whose name contains `ENGINE_STACK` (`measured (`, `traced`),
    // waits until the exporter has sent every span, and ends the process; the difference of
    // two counts (N and 2N) over N is one call's, every thread's work included.
    #[cfg(feature = "otel")]
    if let (Ok(calls), Ok(which)) = (std::env::var("ENGINE_CALLS"), std::env::var("ENGINE_STACK")) {
        let calls: u64 = calls.parse().expect("ENGINE_CALLS=N");
        let (name, stack) = stacks
            .iter_mut()
            .find(|(n, _)| n.contains(which.as_str()))
            .expect("ENGINE_STACK names a stack");
        for _ in 0..calls {
            black_box(round_trip(&rt, stack, request()));
        }
        if name.contains("traced") {
            while {
                let (sent, dropped, failed) = traces.counts();
                sent + dropped + failed < 2 * calls
            } {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        eprintln!("{calls} calls through {name}; spans {:?}", traces.counts());
        std::process::exit(0);
    }
    #[cfg(feature = "otel")]
    if wanted("tools/call round trip, CPU, paired") {
        let [(_, plain), (_, measured), (_, traced)] = &mut stacks[0..3] else {
            unreachable!("the unmeasured, the measured and the traced stack")
        };
        paired(&rt, [plain, measured, traced], &traces, request);
    }
    let mut group = c.benchmark_group("tools/call round trip, audit");
    for (name, stack) in &mut stacks {
        group.bench_function(BenchmarkId::from_parameter(*name), |b| {
            b.iter(|| round_trip(&rt, stack, request()))
        });
    }
    group.finish();
    #[cfg(feature = "otel")]
    {
        let (sent, dropped, failed) = traces.counts();
        eprintln!("spans: {sent} sent, {dropped} dropped (queue full), {failed} failed");
    }
    let stats = auditor.stats();
    eprintln!(
        "audit: {} events written, {} dropped",
        stats.written, stats.dropped
    );
}

/// Whether the command line asks for `name`: no filter, or one with an alternative (`a|b`)
/// that is part of it.
#[cfg(feature = "otel")]
fn wanted(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .flat_map(|f| f.split('|'))
            .any(|f| name.contains(f))
}

/// What measuring and tracing cost a call, in CPU: on the request's thread, rounds of the same
/// calls through the unmeasured, the measured and the measured-and-traced stack, taken in turn
/// (the order rotating) so that a machine that speeds up or slows down during the run moves
/// all alike, timed by the thread's own CPU clock; and on the exporter's thread, its CPU over
/// the whole run (once it has sent every span) over the traced calls. The collector's CPU (the
/// receiver's threads) is not the caller's and is left out. Prints the medians and the medians
/// of the rounds' differences.
#[cfg(feature = "otel")]
fn paired<S>(
    rt: &tokio::runtime::Runtime,
    [plain, measured, traced]: [&mut S; 3],
    traces: &mcp_gatekeeper::otel::OtlpTraces,
    request: impl Fn() -> http::Request<http_body_util::Full<bytes::Bytes>>,
) where
    S: tower::Service<
            http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = TestReply,
            Error = std::convert::Infallible,
        >,
{
    const ROUNDS: usize = 300;
    const CALLS: u32 = 2_000;
    let mut stacks = [plain, measured, traced];
    let cpu = |stack: &mut S| {
        let start = cpu_time::ThreadTime::now();
        for _ in 0..CALLS {
            black_box(round_trip(rt, stack, request()));
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS)
    };
    // Warm all three.
    for stack in &mut stacks {
        cpu(stack);
    }
    let exporter = exporter_cpu();
    let sent = traces.counts().0;
    let mut per: [Vec<f64>; 3] = Default::default();
    for round in 0..ROUNDS {
        for i in (0..3).map(|i| (i + round) % 3) {
            per[i].push(cpu(&mut *stacks[i]));
        }
    }
    let spans = 2 * ROUNDS as u64 * u64::from(CALLS);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while traces.counts().0 < sent + spans && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let exporter = (exporter_cpu() - exporter) * 1e6 / (ROUNDS as f64 * f64::from(CALLS));
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let over =
        |a: usize, b: usize| median(per[a].iter().zip(&per[b]).map(|(x, y)| x - y).collect());
    let (sent, dropped, failed) = traces.counts();
    println!(
        "tools/call round trip, CPU, paired ({ROUNDS} rounds of {CALLS} calls each, in turn), on \
         the request's thread: six layers {:.2} µs, measured {:.2} µs, measured and traced \
         {:.2} µs; measured over six layers {:+.2} µs, traced over measured {:+.2} µs, measured \
         and traced over six layers {:+.2} µs (medians of the rounds' differences); on the \
         exporter's thread {exporter:.2} µs per traced call; spans {sent} sent, {dropped} \
         dropped, {failed} failed",
        median(per[0].clone()),
        median(per[1].clone()),
        median(per[2].clone()),
        over(1, 0),
        over(2, 1),
        over(2, 0),
    );
}

/// The CPU seconds the OTLP exporter's thread has used (from `/proc`).
#[cfg(feature = "otel")]
fn exporter_cpu() -> f64 {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "gk-otlp-traces" {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let ns: f64 = stat
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
            return ns / 1e9;
        }
    }
    panic!("no exporter thread")
}

/// The OTLP collector stand-in in a child process: this bench binary again, told so by
/// `ENGINE_OTLP_SINK`. It ends when its standard input closes (this process ended) or when
/// dropped.
#[cfg(feature = "otel")]
struct SinkProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

#[cfg(feature = "otel")]
impl SinkProcess {
    fn start() -> Self {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe().expect("this bench's path"))
            .env("ENGINE_OTLP_SINK", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the collector stand-in starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("its output"))
            .read_line(&mut line)
            .expect("its address");
        let addr = line.trim().parse().expect("an address");
        Self { child, addr }
    }

    /// In the child: serves until standard input closes.
    fn serve_if_asked() {
        if std::env::var_os("ENGINE_OTLP_SINK").is_none() {
            return;
        }
        println!("{}", otlp_sink::otlp_sink());
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        std::process::exit(0);
    }
}

#[cfg(feature = "otel")]
impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

criterion_group!(
    benches,
    bench_pinning,
    bench_audit,
    bench_parse,
    bench_grant,
    bench_filter,
    bench_keys,
    bench_stack,
    bench_limits
);
fn main() {
    #[cfg(feature = "otel")]
    SinkProcess::serve_if_asked();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
