//! The layers as plain tower services: `ServiceBuilder` around a `service_fn` that records
//! what reaches it, called with `oneshot`. Covers every fail-closed rule of request inspection,
//! list filtering at any chunking, each layer used alone, and cost events on disconnect.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::cost::{CostLayer, Outcome, ToolCallEvent};
use mcp_gatekeeper::namespace::NamespaceLayer;
use mcp_gatekeeper::params::AllowedParamsLayer;
use mcp_gatekeeper::permission::PermissionLayer;
use mcp_gatekeeper::{Gatekeeper, Limits};
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt};

type Body = axum::body::Body;
type Reply = Response<BoxBody<Bytes, Infallible>>;

const POLICY: &str = r#"{
  "mcp_servers": {
    "github": {"url": "http://up/gh", "disallowed_tools": ["delete_repo"], "allowed_params": {"create_issue": ["title"]}},
    "secret": {"url": "http://up/secret"}
  },
  "keys": [{"key": "sk-a", "key_alias": "a", "object_permission": {"mcp_servers": ["github"]}}]
}"#;

fn gatekeeper(policy: &str) -> Gatekeeper {
    Gatekeeper::new(Config::from_json_str(policy).unwrap().policy().unwrap())
}

fn full(bytes: impl Into<Bytes>) -> BoxBody<Bytes, Infallible> {
    http_body_util::Full::new(bytes.into()).boxed()
}

fn chunked(chunks: Vec<Bytes>) -> BoxBody<Bytes, Infallible> {
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, Infallible>(Frame::data(c))),
    )))
}

/// An inner service that records every body it receives and answers with `reply(body)`.
#[derive(Clone, Default)]
struct Inner {
    seen: Arc<Mutex<Vec<Bytes>>>,
}

impl Inner {
    fn service(
        &self,
        reply: impl Fn(&[u8]) -> Reply + Clone + Send + Sync + 'static,
    ) -> impl Service<Request<Body>, Response = Reply, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static {
        let seen = Arc::clone(&self.seen);
        tower::service_fn(move |req: Request<Body>| {
            let seen = Arc::clone(&seen);
            let reply = reply.clone();
            async move {
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                seen.lock().unwrap().push(bytes.clone());
                Ok::<_, Infallible>(reply(&bytes))
            }
        })
    }
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn json_reply(v: Value) -> Reply {
    let mut r = Response::new(full(serde_json::to_vec(&v).unwrap()));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn post(body: impl Into<Bytes>) -> http::request::Builder {
    let _ = body;
    Request::post("/mcp")
        .header("x-litellm-api-key", "sk-a")
        .header("content-type", "application/json")
}

fn req(body: &'static [u8]) -> Request<Body> {
    post(Bytes::new())
        .body(Body::from(Bytes::from_static(body)))
        .unwrap()
}

async fn body_json(r: Reply) -> Value {
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
}

#[tokio::test]
async fn unreadable_or_ambiguous_requests_never_reach_the_service() {
    let gk = gatekeeper(POLICY);
    let inner = Inner::default();
    let svc = ServiceBuilder::new()
        .layer(gk.layer())
        .service(inner.service(|_| json_reply(json!({}))));
    let bad: &[&[u8]] = &[
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-create_issue","name":"secret-launch"}}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"secret-launch"}}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-create_issue"},"params":{"name":"secret-launch"}}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-create_issue","arguments":{"title":"a","title":"b"}}}"#,
        br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret-launch"}}]"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["secret-launch"]}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["secret-launch"]}}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-create_issue","arguments":["x"]}}"#,
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"github-create_issue\xc0\"}}",
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-create_issue"}} trailing"#,
        b"not json",
    ];
    for body in bad {
        let r = svc.clone().oneshot(req(body)).await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
        let v = body_json(r).await;
        assert_eq!(v["error"]["code"], -32600, "{v}");
    }
    // Mcp-Method / Mcp-Name that disagree with the body.
    let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-create_issue"}}"#;
    for (name, value) in [
        ("mcp-method", "tools/list"),
        ("mcp-name", "secret-launch"),
        ("mcp-name", "=?base64?c2VjcmV0LWxhdW5jaA==?="),
        ("mcp-name", "=?base64?not base64?="),
    ] {
        let mut r = req(call);
        r.headers_mut().insert(name, value.parse().unwrap());
        let r = svc.clone().oneshot(r).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name}: {value}");
    }
    assert_eq!(inner.count(), 0);
    // Agreeing headers (plain and base64) pass.
    let mut r = req(call);
    r.headers_mut()
        .insert("mcp-method", "tools/call".parse().unwrap());
    r.headers_mut().insert(
        "mcp-name",
        "=?base64?Z2l0aHViLWNyZWF0ZV9pc3N1ZQ==?=".parse().unwrap(),
    );
    assert_eq!(
        svc.clone().oneshot(r).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(inner.count(), 1);
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_not() {
    let gk = gatekeeper(POLICY).with_limits(Limits {
        max_request_body: 64,
        ..Limits::default()
    });
    let inner = Inner::default();
    let svc = ServiceBuilder::new()
        .layer(gk.layer())
        .service(inner.service(|_| json_reply(json!({}))));
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"github-create_issue","arguments":{{"title":"{}"}}}}}}"#,
        "x".repeat(100)
    );
    let r = svc
        .clone()
        .oneshot(post(Bytes::new()).body(Body::from(big.clone())).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The same bytes streamed in chunks without a length.
    let chunks: Vec<Result<Bytes, Infallible>> = big
        .as_bytes()
        .chunks(10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let streamed = Body::from_stream(futures_util::stream::iter(chunks));
    let r = svc
        .clone()
        .oneshot(post(Bytes::new()).body(streamed).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body_json(r).await["error"]["code"], -32002);
    assert_eq!(inner.count(), 0);
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"github-create_issue","inputSchema":{"type":"object","properties":{"title":{},"body":{}},"required":["title","body"]}},{"name":"github-delete_repo","inputSchema":{"type":"object"}},{"name":"secret-launch","inputSchema":{"type":"object"}},{"name":"unknown-tool","inputSchema":{"type":"object"}},{"inputSchema":{}}],"cacheScope":"public"}}"#;

fn filtered_list() -> Value {
    json!({"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"github-create_issue","inputSchema":{"type":"object","properties":{"title":{}},"required":["title"],"additionalProperties":false}}],"cacheScope":"private"}})
}

#[tokio::test]
async fn json_list_replies_are_filtered_and_never_cached_as_public() {
    let gk = gatekeeper(POLICY);
    let inner = Inner::default();
    let svc = ServiceBuilder::new()
        .layer(gk.layer())
        .service(inner.service(|_| {
            let mut r = json_reply(serde_json::from_str(LIST).unwrap());
            r.headers_mut()
                .insert("content-length", "9999".parse().unwrap());
            r
        }));
    let r = svc
        .oneshot(req(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#))
        .await
        .unwrap();
    let length: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        length,
        bytes.len(),
        "the length of the filtered reply, not the stale one"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap(),
        filtered_list()
    );
}

#[tokio::test]
async fn json_tool_results_keep_an_exact_length() {
    // A chunked reply costs a round of writes per call; a JSON reply must stay sized.
    let gk = gatekeeper(POLICY);
    let inner = Inner::default();
    let reply = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}"#;
    let svc = ServiceBuilder::new()
        .layer(gk.layer())
        .service(inner.service(move |_| {
            let mut r = Response::new(full(&reply[..]));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r.headers_mut().insert("content-length", reply.len().into());
            r
        }));
    let r = svc
        .oneshot(req(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-create_issue","arguments":{"title":"t"}}}"#))
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-length"],
        reply.len().to_string().as_str()
    );
    assert_eq!(
        &r.into_body().collect().await.unwrap().to_bytes()[..],
        &reply[..]
    );
}

fn sse_stream() -> Vec<u8> {
    let (head, tail) = LIST.split_at(LIST.find("\"secret-launch").unwrap());
    format!(
        ": priming comment\r\nid: 0\r\nretry: 1000\r\ndata:\r\n\r\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":1,\"progress\":1}}}}\n\nid: 1\nevent: message\ndata: {head}\ndata: {tail}\n\n: bye\n\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn sse_list_replies_are_filtered_at_any_chunking() {
    let stream = sse_stream();
    let gk = gatekeeper(POLICY);
    let expected_list = serde_json::to_string(&filtered_list()).unwrap();
    let list_start = {
        let s = String::from_utf8(stream.clone()).unwrap();
        s.find("id: 1\n").unwrap()
    };
    // Every two-way split, and a few three-way ones.
    let mut splits: Vec<Vec<usize>> = (0..=stream.len()).map(|i| vec![i]).collect();
    splits.extend(
        (0..stream.len())
            .step_by(37)
            .map(|i| vec![i, (i + 3).min(stream.len())]),
    );
    splits.push((1..stream.len()).collect()); // byte by byte
    for cuts in splits {
        let mut chunks = Vec::new();
        let mut last = 0;
        for &c in &cuts {
            chunks.push(Bytes::copy_from_slice(&stream[last..c]));
            last = c;
        }
        chunks.push(Bytes::copy_from_slice(&stream[last..]));
        let inner = Inner::default();
        let svc = ServiceBuilder::new()
            .layer(gk.layer())
            .service(inner.service(move |_| {
                let mut r = Response::new(chunked(chunks.clone()));
                r.headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                r
            }));
        let r = svc
            .oneshot(req(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#))
            .await
            .unwrap();
        let out = r.into_body().collect().await.unwrap().to_bytes();
        let out = String::from_utf8(out.to_vec()).unwrap();
        // Everything before the list event is byte-identical; the list event is rewritten.
        assert_eq!(
            out[..list_start],
            String::from_utf8_lossy(&stream[..list_start]),
            "cuts {cuts:?}"
        );
        assert_eq!(
            &out[list_start..],
            format!("id: 1\nevent: message\ndata: {expected_list}\n\n: bye\n\n"),
            "cuts {cuts:?}"
        );
    }
}

#[tokio::test]
async fn a_never_ending_sse_event_is_cut_off() {
    let gk = gatekeeper(POLICY).with_limits(Limits {
        max_sse_event: 1024,
        ..Limits::default()
    });
    let inner = Inner::default();
    let svc = ServiceBuilder::new()
        .layer(gk.layer())
        .service(inner.service(|_| {
            // A list event that never ends: 100 chunks of data with no blank line.
            let mut chunks = vec![Bytes::from_static(
                b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[",
            )];
            chunks.extend(std::iter::repeat_n(
                Bytes::from_static(b"{\"name\":\"secret-launch\"},"),
                100,
            ));
            let mut r = Response::new(chunked(chunks));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }));
    let r = svc
        .oneshot(req(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#))
        .await
        .unwrap();
    let out =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(!out.contains("secret-launch"), "{out}");
    assert!(
        out.contains("too large to filter") && out.contains("\"id\":7"),
        "{out}"
    );
}

#[tokio::test]
async fn jsonrpc_error_denial_style() {
    let policy = POLICY.replacen(
        '{',
        r#"{"general_settings": {"denial_style": "jsonrpc_error"},"#,
        1,
    );
    let gk = gatekeeper(&policy);
    let inner = Inner::default();
    let svc = ServiceBuilder::new()
        .layer(gk.layer())
        .service(inner.service(|_| json_reply(json!({}))));
    let r = svc
        .oneshot(req(br#"{"jsonrpc":"2.0","id":"x-1","method":"tools/call","params":{"name":"secret-launch"}}"#))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rejection = r
        .extensions()
        .get::<mcp_gatekeeper::rejection::Rejection>()
        .cloned()
        .unwrap();
    assert!(matches!(
        rejection.kind(),
        mcp_gatekeeper::rejection::RejectionKind::ToolDenied { .. }
    ));
    assert_eq!(
        body_json(r).await,
        json!({"jsonrpc":"2.0","id":"x-1","error":{"code":-32602,"message":"Tool secret-launch is not allowed for this key"}})
    );
    assert_eq!(inner.count(), 0);
}

#[tokio::test]
async fn each_layer_works_alone() {
    let gk = gatekeeper(POLICY);
    let call = |name: &str, args: Value| {
        let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name,"arguments":args}});
        Request::post("/mcp")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    };
    // Permission without identity: nobody is known, so nothing is allowed.
    let inner = Inner::default();
    let svc = ServiceBuilder::new()
        .layer(PermissionLayer::new(gk.clone()))
        .service(inner.service(|_| json_reply(json!({}))));
    let r = svc
        .oneshot(call("github-create_issue", json!({})))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // allowed_params alone.
    let svc = ServiceBuilder::new()
        .layer(AllowedParamsLayer::new(gk.clone()))
        .service(inner.service(|_| json_reply(json!({}))));
    let r = svc
        .clone()
        .oneshot(call("github-create_issue", json!({"title": 1, "body": 2})))
        .await
        .unwrap();
    let v = body_json(r).await;
    assert_eq!(v["result"]["isError"], true);
    assert_eq!(
        v["result"]["content"][0]["text"],
        "Error: Parameters ['body'] are not allowed for tool create_issue. Allowed parameters: ['title']. Contact proxy admin to allow these parameters."
    );
    let ok = svc
        .oneshot(call("github-create_issue", json!({"title": 1})))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(inner.count(), 1);
    // Namespace alone: unknown names are refused; known ones pass (nothing to intersect with).
    let svc = ServiceBuilder::new()
        .layer(NamespaceLayer::new(gk.clone()))
        .service(inner.service(|_| json_reply(json!({}))));
    let mut r = call("x", json!({}));
    r.headers_mut()
        .insert("x-mcp-servers", "github,nope".parse().unwrap());
    let r = svc.clone().oneshot(r).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        body_json(r).await,
        json!({"error": "The key is not allowed to access the requested MCP servers: nope"})
    );
    let r = svc
        .oneshot(Request::post("/secret/mcp").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn client_messages_other_than_requests_pass() {
    let gk = gatekeeper(POLICY);
    let inner = Inner::default();
    let svc = ServiceBuilder::new()
        .layer(gk.layer())
        .service(inner.service(|_| Response::new(full(Bytes::new()))));
    for body in [
        &br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#[..],
        br#"{"jsonrpc":"2.0","id":"srv-1","result":{"action":"accept","content":{}}}"#,
        br#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#,
    ] {
        assert_eq!(
            svc.clone().oneshot(req(body)).await.unwrap().status(),
            StatusCode::OK
        );
    }
    // GET (the SSE stream) and DELETE are not inspected.
    let get = Request::get("/mcp")
        .header("x-litellm-api-key", "sk-a")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        svc.clone().oneshot(get).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(inner.count(), 4);
}

#[tokio::test]
async fn a_call_whose_client_goes_away_is_recorded_once() {
    let gk = gatekeeper(POLICY);
    let events: Arc<Mutex<Vec<ToolCallEvent>>> = Arc::default();
    let sink = {
        let events = Arc::clone(&events);
        move |e: ToolCallEvent| events.lock().unwrap().push(e)
    };
    let hang =
        tower::service_fn(|_: Request<Body>| std::future::pending::<Result<Reply, Infallible>>());
    let svc = ServiceBuilder::new()
        .layer(gk.layer().spend_sink(sink.clone()))
        .service(hang);
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-create_issue","arguments":{"title":"t"}}}"#;
    let fut = svc.oneshot(req(body));
    // The client gives up while the tool runs.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), fut)
            .await
            .is_err()
    );
    let got = events.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].outcome, Outcome::Disconnected);
    assert_eq!(&*got[0].tool, "create_issue");

    // And when it goes away while the reply streams.
    events.lock().unwrap().clear();
    let slow = tower::service_fn(|_: Request<Body>| async {
        let stream = futures_util::stream::once(async {
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b": start\n\n")))
        })
        .chain(futures_util::stream::pending());
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        Ok::<_, Infallible>(r)
    });
    let svc = ServiceBuilder::new()
        .layer(CostLayer::new(gk.clone()).sink(sink))
        .service(slow);
    let r = svc.oneshot(req(body)).await.unwrap();
    let mut body = r.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(
        first.into_data().unwrap(),
        Bytes::from_static(b": start\n\n")
    );
    assert!(events.lock().unwrap().is_empty(), "not finished yet");
    drop(body);
    let got = events.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].outcome, Outcome::Disconnected);
}

use futures_util::StreamExt as _;

mod laws {
    use super::*;
    use proptest::prelude::*;

    const TOOLS: [&str; 8] = ["a-x", "a-y", "b-x", "b-y-z", "c-x", "c-del", "d-x", "zz-x"];

    fn policy(
        key_servers: Option<Vec<&str>>,
        tool_perms: Vec<(&str, Vec<&str>)>,
        org: Option<Vec<&str>>,
        allowed: bool,
    ) -> String {
        let mut key = json!({"key": "sk-a"});
        let mut op = serde_json::Map::new();
        if let Some(s) = key_servers {
            op.insert("mcp_servers".into(), json!(s));
        }
        if !tool_perms.is_empty() {
            op.insert(
                "mcp_tool_permissions".into(),
                json!(
                    tool_perms
                        .into_iter()
                        .collect::<std::collections::BTreeMap<_, _>>()
                ),
            );
        }
        key["object_permission"] = Value::Object(op);
        let mut doc = json!({
            "mcp_servers": {
                "a": {"url": "http://x"},
                "b": {"url": "http://x", "allow_all_keys": true},
                "c": {"url": "http://x", "disallowed_tools": ["del"]},
                "d": {"url": "http://x"}
            },
            "keys": [key],
        });
        if allowed {
            doc["mcp_servers"]["d"]["allowed_tools"] = json!(["y"]);
        }
        if let Some(o) = org {
            doc["keys"][0]["organization_id"] = json!("o");
            doc["organizations"] =
                json!([{"organization_id": "o", "object_permission": {"mcp_servers": o}}]);
        }
        doc.to_string()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// What a caller can list is exactly what it can call.
        #[test]
        fn list_and_call_agree(
            key_servers in prop::option::of(prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d"]), 0..3)),
            tool_perms in prop::collection::vec((prop::sample::select(vec!["a", "b", "c"]), prop::collection::vec(prop::sample::select(vec!["x", "y-z", "b-y-z", "a-y"]), 0..3)), 0..2),
            org in prop::option::of(prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d"]), 0..4)),
            allowed in any::<bool>(),
            scope in prop::option::of(prop::sample::select(vec!["a", "b", "a,c", "zz"])),
        ) {
            let doc = policy(key_servers, tool_perms, org, allowed);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let gk = gatekeeper(&doc);
                let inner = Inner::default();
                let list = json!({"jsonrpc":"2.0","id":1,"result":{"tools": TOOLS.iter().map(|t| json!({"name": t, "inputSchema": {"type":"object"}})).collect::<Vec<_>>()}});
                let svc = ServiceBuilder::new().layer(gk.layer()).service(inner.service(move |_| json_reply(list.clone())));
                let with_scope = |mut r: Request<Body>| {
                    if let Some(s) = scope {
                        r.headers_mut().insert("x-mcp-servers", s.parse().unwrap());
                    }
                    r
                };
                let r = svc.clone().oneshot(with_scope(req(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#))).await.unwrap();
                let listed: Vec<String> = if r.status() == StatusCode::OK {
                    body_json(r).await["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
                } else {
                    Vec::new()
                };
                for tool in TOOLS {
                    let before = inner.count();
                    let body = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name": tool}});
                    let r = Request::post("/mcp").header("x-litellm-api-key", "sk-a").body(Body::from(body.to_string())).unwrap();
                    let _ = svc.clone().oneshot(with_scope(r)).await.unwrap();
                    let called = inner.count() > before;
                    prop_assert_eq!(called, listed.contains(&tool.to_owned()), "tool {} policy {}", tool, doc);
                }
                Ok(())
            })?;
        }
    }
}

#[tokio::test]
async fn deeply_nested_bodies_are_refused_without_exhausting_the_stack() {
    let gk = gatekeeper(POLICY);
    let inner = Inner::default();
    let svc = ServiceBuilder::new()
        .layer(gk.layer())
        .service(inner.service(|_| json_reply(json!({}))));
    for depth in [200usize, 100_000] {
        let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"github-create_issue","arguments":{{"title":{nested}}}}}}}"#
        );
        let r = svc
            .clone()
            .oneshot(post(Bytes::new()).body(Body::from(body)).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "depth {depth}");
    }
    assert_eq!(inner.count(), 0);
}

#[tokio::test]
async fn lists_replayed_on_a_get_stream_are_filtered_too() {
    // After a reconnection with Last-Event-ID a server may replay a list reply on the GET
    // stream, where no request id ties it to the caller's request: it is filtered all the same.
    let gk = gatekeeper(POLICY);
    let inner = Inner::default();
    let svc = ServiceBuilder::new().layer(gk.layer()).service(inner.service(|_| {
        let stream = format!(
            "id: 0/1\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}}\n\nid: 0/2\ndata: {LIST}\n\n"
        );
        let mut r = Response::new(full(stream));
        r.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
        r
    }));
    let get = Request::get("/mcp")
        .header("x-litellm-api-key", "sk-a")
        .header("last-event-id", "0/0")
        .body(Body::empty())
        .unwrap();
    let r = svc.oneshot(get).await.unwrap();
    let out =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(out.starts_with("id: 0/1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n"), "{out}");
    assert!(
        !out.contains("secret-launch") && !out.contains("delete_repo"),
        "{out}"
    );
    let data = out
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .nth(1)
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap(),
        filtered_list()
    );
}

#[tokio::test]
async fn a_list_under_another_id_is_filtered_all_the_same() {
    // Fail closed: a list reply is filtered even when its id is not the request's, in JSON and
    // anywhere on an event stream (before or after the awaited reply).
    let gk = gatekeeper(POLICY);
    let other = LIST.replace("\"id\":7", "\"id\":99");
    let json_other = other.clone();
    let inner = Inner::default();
    let svc = ServiceBuilder::new()
        .layer(gk.layer())
        .service(inner.service(move |_| json_reply(serde_json::from_str(&json_other).unwrap())));
    let r = svc
        .oneshot(req(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#))
        .await
        .unwrap();
    let mut expected = filtered_list();
    expected["id"] = json!(99);
    assert_eq!(body_json(r).await, expected);

    let stream = format!("data: {other}\n\ndata: {LIST}\n\ndata: {other}\n\n");
    let inner = Inner::default();
    let svc = ServiceBuilder::new()
        .layer(gk.layer())
        .service(inner.service(move |_| {
            let mut r = Response::new(full(stream.clone()));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }));
    let r = svc
        .oneshot(req(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#))
        .await
        .unwrap();
    let out =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let events: Vec<Value> = out
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{out}");
    assert_eq!(events[0], expected);
    assert_eq!(events[1], filtered_list());
    assert_eq!(events[2], expected);
}

/// The identity layer answers the built-in store's lookups in its own `call` and awaits any
/// other resolver in a future of its own: both paths must admit, refuse and bind sessions
/// alike. The same requests go through the stack with the store and with a resolver that
/// gives the store's answer only after yielding (and fails for one key).
#[tokio::test]
async fn immediate_and_awaited_identity_resolution_agree() {
    use mcp_gatekeeper::identity::{IdentityError, IdentityLayer, IdentityRequest};
    use tower::Layer;

    let gk = gatekeeper(
        r#"{
          "mcp_servers": {"github": {"url": "http://up/gh"}, "secret": {"url": "http://up/secret"}},
          "keys": [
            {"key": "sk-a", "object_permission": {"mcp_servers": ["github"]}},
            {"key": "sk-b", "object_permission": {"mcp_servers": ["github"]}}
          ]
        }"#,
    );
    let later = |request: &IdentityRequest<'_>| {
        let answer = match request.key {
            Some("sk-down") => Err(IdentityError::Unavailable("backend down".into())),
            _ => request
                .key_digest
                .and_then(|d| {
                    request
                        .policy
                        .identities()
                        .principal(&d, request.end_user_id, request.agent_id)
                })
                .ok_or(IdentityError::Unauthenticated),
        };
        async move {
            tokio::task::yield_now().await;
            answer
        }
    };
    // The inner service opens a session on `initialize` and names it in its reply.
    let opening = |body: &[u8]| {
        let mut r = json_reply(json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
        if body.windows(10).any(|w| w == b"initialize") {
            r.headers_mut()
                .insert("mcp-session-id", "s-1".parse().unwrap());
        }
        r
    };
    let call = |key: Option<&str>, session: Option<&str>, method: &str| {
        let body = match method {
            "initialize" => json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}),
            _ => {
                json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-x","arguments":{}}})
            }
        };
        let mut b = Request::post("/mcp").header("content-type", "application/json");
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        if let Some(s) = session {
            b = b.header("mcp-session-id", s);
        }
        b.body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    };
    let mut seen = Vec::new();
    for awaited in [false, true] {
        let inner = Inner::default();
        let layer = gk.layer();
        let mut svc = if awaited {
            layer
                .identity(IdentityLayer::with_resolver(gk.clone(), later))
                .layer(inner.service(opening))
                .boxed_clone()
        } else {
            layer.layer(inner.service(opening)).boxed_clone()
        };
        let mut statuses = Vec::new();
        for (key, session, method) in [
            (None, None, "tools/call"),
            (Some("sk-nobody"), None, "tools/call"),
            (Some("sk-down"), None, "tools/call"),
            (Some("sk-a"), None, "tools/call"),
            (Some("sk-a"), None, "initialize"),
            (Some("sk-b"), Some("s-1"), "tools/call"),
            (Some("sk-a"), Some("s-1"), "tools/call"),
        ] {
            let r = svc
                .ready()
                .await
                .unwrap()
                .call(call(key, session, method))
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        // Only the three admitted requests reached the service.
        assert_eq!(inner.count(), 3, "awaited: {awaited}");
        seen.push(statuses);
    }
    let store = &seen[0];
    assert_eq!(&seen[1][..2], &store[..2]);
    assert_eq!(store[..2], [401, 401]);
    // The store has no backend to fail: the awaited resolver's failure is a 503, fail closed.
    assert_eq!((store[2], seen[1][2]), (401, 503));
    assert_eq!(&seen[1][3..], &store[3..]);
    // Admitted, admitted (the session opened by sk-a), refused for sk-b, admitted for sk-a.
    assert_eq!(store[3..], [200, 200, 404, 200]);
}

#[tokio::test]
async fn with_only_metrics_listening_each_call_is_counted_once_by_its_last_decision() {
    use mcp_gatekeeper::metrics::PrometheusMetrics;
    // No audit sink: decisions are counted without building their events.
    let metrics = Arc::new(PrometheusMetrics::new());
    let gk = gatekeeper(POLICY).with_metrics(metrics.clone());
    let inner = Inner::default();
    let stack = tower::Layer::layer(
        &gk.layer(),
        inner.service(|_| {
            json_reply(
                json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": false}}),
            )
        }),
    );
    let call = |arguments: Value| {
        post(Bytes::new())
            .header("accept", "application/json, text/event-stream")
            .body(Body::from(
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "github-create_issue", "arguments": arguments}})
                .to_string(),
            ))
            .unwrap()
    };
    // Allowed twice; allowed by the permission layer, then refused by `allowed_params` once.
    for arguments in [
        json!({"title": "a"}),
        json!({"title": "b"}),
        json!({"title": "c", "body": "x"}),
    ] {
        let reply = stack.clone().oneshot(call(arguments)).await.unwrap();
        assert_eq!(reply.status(), StatusCode::OK);
    }
    assert_eq!(inner.count(), 2);
    let text = metrics.render();
    let count = |series: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
    };
    assert_eq!(
        count(r#"mcp_gatekeeper_decisions_total{event="call",outcome="allowed"} "#),
        Some(2.0),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with(
            r#"mcp_gatekeeper_decisions_total{event="call",outcome="refused",rule="allowed_params""#
        ) && l.ends_with(" 1")),
        "{text}"
    );
}
