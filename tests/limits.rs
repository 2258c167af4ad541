//! Limits and budgets through the gateway, against a real rmcp upstream and real clients:
//! exactness under concurrency, parallel limits, budgets reserved and settled, reservations
//! given back, period rollover, refusals on MCP and REST, lists untouched.
#![cfg(feature = "gateway")]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use futures_util::future::join_all;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::cost::{HookDecision, ToolCallEvent};
use mcp_gatekeeper::counters::InProcessStore;
use mcp_gatekeeper::engine::Nanos;
use mcp_gatekeeper::gateway::Gateway;
use mcp_gatekeeper::limit::LimitLayer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// An HTTP/2 client (cleartext, prior knowledge): a thousand calls at once are a thousand
/// streams on one connection, not a thousand sockets (open files are often limited to 1,024).
fn h2() -> reqwest::Client {
    let _ = http_client(); // installs the crypto provider reqwest's rustls needs
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// rmcp's client transport to `url` over [`h2`], sending the gateway key `key`.
fn h2_transport(
    url: &str,
    key: &'static str,
) -> rmcp::transport::StreamableHttpClientTransport<reqwest::Client> {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let headers = std::collections::HashMap::from([(
        http::HeaderName::from_static("x-litellm-api-key"),
        http::HeaderValue::from_static(key),
    )]);
    StreamableHttpClientTransport::with_client(
        h2(),
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    )
}

fn upstream() -> RecordingServer {
    RecordingServer::new(
        vec![
            tool("echo", &[]),
            tool("pause", &[]),
            tool("fail", &[]),
            tool("other", &[]),
        ],
        &[],
        &[],
    )
}

/// A gateway over `doc` (with `URL` replaced by the upstream's) whose limits count in `store`.
async fn gateway(doc: &str, upstream_url: &str, store: Arc<InProcessStore>) -> (Running, Gateway) {
    let config = Config::from_json_str(&doc.replace("URL", upstream_url)).unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap());
    let gateway = Gateway::from_config(&config, gk.clone())
        .unwrap()
        .build()
        .unwrap();
    let layer = gateway
        .gatekeeper()
        .layer()
        .limit(LimitLayer::new(gk).store(store));
    let router = gateway.router(layer);
    (serve(router, CancellationToken::new()).await, gateway)
}

async fn rest_call(
    http: &reqwest::Client,
    gw: &Running,
    key: &str,
    tool: &str,
) -> (u16, Option<String>, Value) {
    let r = http
        .post(gw.url("/mcp-rest/tools/call"))
        .header("x-litellm-api-key", key)
        .json(&json!({"server_id": "tools", "name": tool, "arguments": {}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, r.json().await.unwrap())
}

const RPM: &str = r#"{
  "mcp_servers": {"tools": {"url": "URL"}},
  "keys": [{"key": "sk-a", "mcp_tool_limits": {"tools": {"echo": {"rpm": 100}}}}]
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_against_rpm_100_let_exactly_100_through_on_every_transport() {
    let server = upstream();
    let up = serve_recording(&server).await;
    let store = Arc::new(InProcessStore::new());
    let (gw, _g) = gateway(RPM, &up.url("/mcp"), Arc::clone(&store)).await;
    let client = Arc::new(
        rmcp::ServiceExt::serve((), h2_transport(&gw.url("/mcp"), "sk-a"))
            .await
            .unwrap(),
    );
    let http = h2();
    // 500 over MCP (one session) and 500 over REST, all at once.
    let mcp = (0..500).map(|_| {
        let client = Arc::clone(&client);
        async move { call(&client, "tools-echo", json!({})).await }
    });
    let rest = (0..500).map(|_| rest_call(&http, &gw, "sk-a", "echo"));
    let (mcp, rest) = tokio::join!(join_all(mcp), join_all(rest));
    let mcp_ok = mcp.iter().filter(|r| r.is_ok()).count();
    let rest_ok = rest.iter().filter(|(s, ..)| *s == 200).count();
    assert_eq!(mcp_ok + rest_ok, 100, "exactly the limit is admitted");
    assert_eq!(
        server.executions.names().len(),
        100,
        "and reaches the upstream"
    );
    // Every other call is a refusal, not a failure: an isError result naming the limit and
    // when it resets, or a 429 with Retry-After.
    for refused in mcp.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            refused.contains("100 tool calls per minute to tool `echo` of server `tools`")
                && refused.contains("resets in"),
            "{refused}"
        );
    }
    for (status, retry, body) in rest.iter().filter(|(s, ..)| *s != 200) {
        assert_eq!(*status, 429, "{body}");
        let retry: u64 = retry.as_deref().expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert!(
            body["error"].as_str().unwrap().contains("per minute"),
            "{body}"
        );
    }
    // Lists are not limited, and another tool of the server is not counted against `echo`.
    for _ in 0..5 {
        assert!(tool_names(&client).await.contains(&"tools-echo".to_owned()));
    }
    assert!(call(&client, "tools-other", json!({})).await.is_ok());
    assert_eq!(store.outstanding(), (0, Nanos(0)));
    let _ = Arc::try_unwrap(client).map(|c| c.cancel());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_sse_bridge_counts_against_the_same_limits_as_rest() {
    let server = upstream();
    let up = serve_recording(&server).await;
    let doc = r#"{
      "mcp_servers": {"tools": {"url": "URL"}},
      "keys": [{"key": "sk-a", "mcp_tool_limits": {"tools": {"echo": {"rpm": 2}}}}]
    }"#;
    let (gw, _g) = gateway(doc, &up.url("/mcp"), Arc::new(InProcessStore::new())).await;
    let http = h2();
    assert_eq!(rest_call(&http, &gw, "sk-a", "echo").await.0, 200);
    let mut stream = http
        .get(gw.url("/sse"))
        .header("x-litellm-api-key", "sk-a")
        .send()
        .await
        .unwrap();
    let endpoint = legacy_endpoint(&mut stream).await;
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"0"}}});
    // One message at a time, each answer read before the next is posted.
    let mut buf = String::new();
    let mut seen = Vec::new();
    for (id, body) in [
        (1, init),
        (
            2,
            json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"tools-echo","arguments":{}}}),
        ),
        (
            3,
            json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"tools-echo","arguments":{}}}),
        ),
    ] {
        let r = http
            .post(gw.url(&endpoint))
            .header("x-litellm-api-key", "sk-a")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let read = read_until(&mut stream, &mut buf, |m| m["id"] == id);
        let read = tokio::time::timeout(Duration::from_secs(10), read).await;
        seen.extend(read.expect("the answer arrives on the stream"));
    }
    let answer = |id: i64| seen.iter().find(|m| m["id"] == id).unwrap().clone();
    assert_eq!(
        answer(2)["result"]["content"][0]["text"],
        "ran echo with {}",
        "{seen:?}"
    );
    assert_ne!(answer(2)["result"]["isError"], true, "{seen:?}");
    let refused = answer(3);
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert!(
        refused
            .to_string()
            .contains("2 tool calls per minute to tool `echo`"),
        "{refused}"
    );
    assert_eq!(
        server.executions.names().len(),
        2,
        "REST and the bridge share one count"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_parallel_2_never_lets_a_third_call_in_and_frees_its_slots() {
    let server = upstream();
    let up = serve_recording(&server).await;
    let store = Arc::new(InProcessStore::new());
    let doc = r#"{
      "mcp_servers": {"tools": {"url": "URL"}},
      "teams": [{"team_id": "t", "max_parallel_requests": 2}],
      "keys": [{"key": "sk-a", "team_id": "t"}, {"key": "sk-b", "team_id": "t"}]
    }"#;
    let (gw, _g) = gateway(doc, &up.url("/mcp"), Arc::clone(&store)).await;
    let http = h2();
    // Two keys of one team, 20 calls at once: the team's limit holds across both.
    let calls = (0..20).map(|i| {
        rest_call(
            &http,
            &gw,
            if i % 2 == 0 { "sk-a" } else { "sk-b" },
            "pause",
        )
    });
    let answers = join_all(calls).await;
    let ok = answers.iter().filter(|(s, ..)| *s == 200).count();
    assert!(ok >= 2, "at least two calls ran");
    let most = server.most_pausing.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&most),
        "never more than two at once: {most}"
    );
    assert!(
        answers.iter().any(|(s, ..)| *s == 429),
        "twenty calls of 50 ms at once meet the limit"
    );
    for (status, retry, body) in answers.iter().filter(|(s, ..)| *s != 200) {
        assert_eq!(*status, 429, "{body}");
        assert!(retry.is_none(), "a parallel limit has no known reset");
        let text = body["error"].as_str().unwrap();
        assert!(
            text.contains("the team of this API key may have 2 tool calls in flight"),
            "{text}"
        );
    }
    // The slots are free again: two more calls at once both run.
    assert_eq!(store.outstanding(), (0, Nanos(0)));
    let again = join_all((0..2).map(|_| rest_call(&http, &gw, "sk-a", "pause"))).await;
    assert!(again.iter().all(|(s, ..)| *s == 200), "{again:?}");
}

const BUDGET: &str = r#"{
  "mcp_servers": {"tools": {"url": "URL",
     "mcp_info": {"mcp_server_cost_info": {"default_cost_per_query": 0.05}}},
     "down": {"url": "http://127.0.0.1:9/mcp",
     "mcp_info": {"mcp_server_cost_info": {"default_cost_per_query": 0.05}}}},
  "keys": [
    {"key": "sk-one", "key_alias": "one", "max_budget": 1.0},
    {"key": "sk-all", "key_alias": "all", "max_budget": 1.0},
    {"key": "sk-small", "key_alias": "small", "max_budget": 0.10, "budget_duration": "1h"},
    {"key": "sk-tick", "key_alias": "tick", "max_budget": 0.10, "budget_duration": "2s"}
  ]
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_of_one_dollar_at_five_cents_admits_exactly_20_calls_one_by_one_or_all_at_once() {
    let server = upstream();
    let up = serve_recording(&server).await;
    let store = Arc::new(InProcessStore::new());
    let (gw, _g) = gateway(BUDGET, &up.url("/mcp"), Arc::clone(&store)).await;
    let http = h2();
    let mut ok = 0;
    for _ in 0..25 {
        let (status, _, body) = rest_call(&http, &gw, "sk-one", "echo").await;
        match status {
            200 => ok += 1,
            429 => assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("may spend $1 on tool calls; it does not reset"),
                "{body}"
            ),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(ok, 20, "one by one");
    let at_once = join_all((0..100).map(|_| rest_call(&http, &gw, "sk-all", "echo"))).await;
    assert_eq!(
        at_once.iter().filter(|(s, ..)| *s == 200).count(),
        20,
        "all at once"
    );
    assert_eq!(server.executions.names().len(), 40);
    assert_eq!(
        store.outstanding(),
        (0, Nanos(0)),
        "no reservation is left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_gives_its_reservation_back_a_tool_error_is_spent_and_the_period_rolls_over()
{
    let server = upstream();
    let up = serve_recording(&server).await;
    let store = Arc::new(InProcessStore::new());
    let (gw, _g) = gateway(BUDGET, &up.url("/mcp"), Arc::clone(&store)).await;
    let http = h2();
    // Ten calls to an upstream that is not there: none reaches it, nothing is spent.
    for _ in 0..10 {
        let r = http
            .post(gw.url("/mcp-rest/tools/call"))
            .header("x-litellm-api-key", "sk-small")
            .json(&json!({"server_id": "down", "name": "anything", "arguments": {}}))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 429, "a failed call is not charged");
    }
    assert_eq!(store.outstanding(), (0, Nanos(0)));
    // A tool error reached the upstream: it is spent. 0.10 holds two calls.
    let (s1, ..) = rest_call(&http, &gw, "sk-small", "fail").await;
    let (s2, ..) = rest_call(&http, &gw, "sk-small", "echo").await;
    let (s3, retry, body) = rest_call(&http, &gw, "sk-small", "echo").await;
    assert_eq!((s1, s2, s3), (200, 200, 429), "{body}");
    assert!(
        retry.is_some(),
        "a budget with a period says when it resets"
    );
    assert!(
        body["error"].as_str().unwrap().contains("resets in"),
        "{body}"
    );
    // A two-second budget: spent within its period, available again in the next one.
    let mut calls = 0;
    while rest_call(&http, &gw, "sk-tick", "echo").await.0 == 200 {
        calls += 1;
        assert!(calls < 10, "a budget of two calls per period must run out");
    }
    let http2 = http.clone();
    let reset = within(Duration::from_secs(5), || {
        let (http, gw) = (http2.clone(), &gw);
        async move { rest_call(&http, gw, "sk-tick", "echo").await.0 == 200 }
    })
    .await;
    assert!(
        reset.is_some(),
        "the budget is available again in the next period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cost_hook_settles_the_reservation_at_the_final_cost() {
    let server = upstream();
    let up = serve_recording(&server).await;
    let store = Arc::new(InProcessStore::new());
    let doc = r#"{
      "mcp_servers": {"tools": {"url": "URL",
         "mcp_info": {"mcp_server_cost_info": {"default_cost_per_query": 0.05}}}},
      "keys": [{"key": "sk-a", "key_alias": "a", "max_budget": 0.10}]
    }"#;
    let config = Config::from_json_str(&doc.replace("URL", &up.url("/mcp"))).unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap());
    let gateway = Gateway::from_config(&config, gk.clone())
        .unwrap()
        .build()
        .unwrap();
    // Each call is reserved at its price (0.05) and costs 0.01 in the end.
    let hook = |_: &ToolCallEvent, _: Option<&Value>| async {
        Ok(HookDecision {
            cost: Some(0.01),
            ..HookDecision::default()
        })
    };
    let layer = gateway
        .gatekeeper()
        .layer()
        .limit(LimitLayer::new(gk).store(Arc::clone(&store)))
        .cost_hook(hook);
    let gw = serve(gateway.router(layer), CancellationToken::new()).await;
    let http = h2();
    let mut ok = 0;
    while rest_call(&http, &gw, "sk-a", "echo").await.0 == 200 {
        ok += 1;
        assert!(ok < 50, "the budget must run out");
    }
    // Spent 0.06 after six calls; a seventh would need 0.06 + 0.05 > 0.10.
    assert_eq!(ok, 6);
    assert_eq!(store.outstanding(), (0, Nanos(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrower_level_never_raises_a_wider_limit_and_jsonrpc_denials_carry_the_text() {
    let server = upstream();
    let up = serve_recording(&server).await;
    let store = Arc::new(InProcessStore::new());
    let doc = r#"{
      "general_settings": {"denial_style": "jsonrpc_error"},
      "mcp_servers": {"tools": {"url": "URL"}},
      "organizations": [{"organization_id": "o", "rpm_limit": 3}],
      "teams": [{"team_id": "t", "organization_id": "o", "mcp_rpm_limit": {"tools": 1000}}],
      "keys": [{"key": "sk-a", "team_id": "t", "rpm_limit": 1000}]
    }"#;
    let (gw, _g) = gateway(doc, &up.url("/mcp"), store).await;
    let http = h2();
    let session = raw_session(&http, &gw.url("/mcp"), "sk-a").await;
    let mut texts = Vec::new();
    for id in 0..5 {
        let r = mcp_post(&http, &gw.url("/mcp"), "sk-a", Some(&session))
            .json(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"tools-echo","arguments":{}}}))
            .send()
            .await
            .unwrap();
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        let body = r.text().await.unwrap();
        let reply = messages(&ct, &body)
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap();
        texts.push(reply);
    }
    assert!(
        texts[..3].iter().all(|r| r.get("result").is_some()),
        "{texts:?}"
    );
    for refused in &texts[3..] {
        assert_eq!(refused["error"]["code"], -32004, "{refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("the organisation of this API key may make 3 tool calls per minute"),
            "{message}"
        );
    }
    assert_eq!(server.executions.names().len(), 3);
}

/// Limits shared by replicas on one real Redis, and what happens while it is away.
#[cfg(feature = "redis")]
mod on_redis {
    use super::*;
    use common::redis::TestRedis;
    use mcp_gatekeeper::limit::OnStoreError;
    use mcp_gatekeeper::redis_limits::RedisLimits;

    /// A replica of `SHARED` over `up`, counting in `redis`; its health report lists the store.
    async fn replica(
        up: &Running,
        redis: &TestRedis,
        on_error: OnStoreError,
        timeout: Duration,
    ) -> Running {
        let (doc, upstream_url, url) = (SHARED, up.url("/mcp"), redis.url());
        let config = Config::from_json_str(&doc.replace("URL", &upstream_url)).unwrap();
        let gk = Gatekeeper::new(config.policy().unwrap());
        let store = RedisLimits::new(&url).unwrap().timeout(timeout);
        let limit = LimitLayer::new(gk.clone())
            .store(store)
            .on_store_error(on_error);
        let gateway = Gateway::from_config(&config, gk)
            .unwrap()
            .health_report("limits", Arc::new(limit.clone()))
            .build()
            .unwrap();
        let router = gateway.router(gateway.gatekeeper().layer().limit(limit));
        serve(router, CancellationToken::new()).await
    }

    const SHARED: &str = r#"{
      "general_settings": {"master_key": "sk-admin"},
      "mcp_servers": {"tools": {"url": "URL",
         "mcp_info": {"mcp_server_cost_info": {"default_cost_per_query": 0.05}}}},
      "teams": [{"team_id": "t", "mcp_rpm_limit": {"tools": 100}}],
      "keys": [
        {"key": "sk-a", "team_id": "t"},
        {"key": "sk-b", "team_id": "t"},
        {"key": "sk-money", "key_alias": "money", "max_budget": 1.0},
        {"key": "sk-par", "key_alias": "par", "max_parallel_requests": 3, "max_budget": 100}
      ]
    }"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_on_one_redis_share_every_limit_exactly() {
        let Some(redis) = TestRedis::start("two_replicas_on_one_redis_share_every_limit_exactly")
        else {
            return;
        };
        let server = upstream();
        let up = serve_recording(&server).await;
        // A generous timeout: a thousand scripts at once on a loaded machine must not time out.
        let patient = Duration::from_secs(10);
        let one = replica(&up, &redis, OnStoreError::Deny, patient).await;
        let two = replica(&up, &redis, OnStoreError::Deny, patient).await;
        let http = h2();
        // 1,000 calls at once from two keys of one team, alternating replicas: rpm 100.
        let calls = (0..1000).map(|i| {
            let gw = if i % 2 == 0 { &one } else { &two };
            rest_call(&http, gw, if i % 3 == 0 { "sk-a" } else { "sk-b" }, "echo")
        });
        let answers = join_all(calls).await;
        let ok = answers.iter().filter(|(s, ..)| *s == 200).count();
        assert_eq!(ok, 100, "exactly the team's limit, across both replicas");
        assert_eq!(server.executions.names().len(), 100);
        let other: Vec<_> = answers
            .iter()
            .filter(|(s, ..)| *s != 200 && *s != 429)
            .collect();
        assert!(other.is_empty(), "{other:?}");
        // A budget of 1.00 at 0.05 a call: exactly 20, all at once over both replicas.
        server.executions.clear();
        let money = (0..60).map(|i| {
            rest_call(
                &http,
                if i % 2 == 0 { &one } else { &two },
                "sk-money",
                "echo",
            )
        });
        let money = join_all(money).await;
        assert_eq!(money.iter().filter(|(s, ..)| *s == 200).count(), 20);
        assert_eq!(server.executions.names().len(), 20);
        // Three in flight at most, over both replicas.
        let par = (0..12).map(|i| {
            rest_call(
                &http,
                if i % 2 == 0 { &one } else { &two },
                "sk-par",
                "pause",
            )
        });
        let par = join_all(par).await;
        assert!(par.iter().filter(|(s, ..)| *s == 200).count() >= 3);
        assert!(server.most_pausing.load(Ordering::SeqCst) <= 3);
        nothing_held(&redis).await;
    }

    /// After a run: no parallel slot taken, nothing reserved, no counter below zero.
    async fn nothing_held(redis: &TestRedis) {
        let freed = within(Duration::from_secs(10), || async {
            redis.cli(&["--scan", "--pattern", "*parallel*"]).is_empty()
        })
        .await;
        assert!(freed.is_some(), "every parallel slot was freed");
        for key in redis.cli(&["--scan", "--pattern", "*"]).lines() {
            if key.contains("budget") {
                let reserved: i64 = redis.cli(&["HGET", key, "reserved"]).parse().unwrap();
                assert_eq!(reserved, 0, "{key}");
            } else {
                let n: i64 = redis.cli(&["GET", key]).parse().unwrap();
                assert!(n >= 0, "{key} = {n}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn while_redis_is_away_calls_are_denied_or_allowed_as_configured_and_limits_resume() {
        let Some(mut redis) = TestRedis::start(
            "while_redis_is_away_calls_are_denied_or_allowed_as_configured_and_limits_resume",
        ) else {
            return;
        };
        let server = upstream();
        let up = serve_recording(&server).await;
        let quick = Duration::from_millis(300);
        let deny = replica(&up, &redis, OnStoreError::Deny, quick).await;
        let allow = replica(&up, &redis, OnStoreError::Allow, quick).await;
        let http = h2();
        // Calls in flight when Redis pauses keep their slots and reservations until it answers
        // again; then they are handed back.
        let in_flight = join_all((0..3).map(|_| rest_call(&http, &deny, "sk-par", "pause")));
        let during = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(redis.cli(&["CLIENT", "PAUSE", "1500", "ALL"]), "OK");
            let (status, _, body) = rest_call(&http, &deny, "sk-a", "echo").await;
            assert_eq!(status, 503, "{body}");
            let text = body["error"].as_str().unwrap();
            assert!(
                text.contains("Limits cannot be checked right now"),
                "{text}"
            );
            let (status, _, body) = rest_call(&http, &allow, "sk-a", "echo").await;
            assert_eq!(
                status, 200,
                "allowed uncounted while the store is away: {body}"
            );
            let health = health_as(&deny, Some("sk-admin")).await;
            assert_eq!(health["status"], "degraded", "{health}");
            let limits = &health["limits"];
            assert_eq!(limits["on_limit_store_error"], "deny", "{health}");
            assert!(limits["problem"].is_string(), "{health}");
        };
        let (flights, ()) = tokio::join!(in_flight, during);
        for (status, _, body) in &flights {
            assert!(*status == 200 || *status == 503, "{status}: {body}");
        }
        // Redis answers again: limits resume.
        let back = within(Duration::from_secs(10), || async {
            rest_call(&h2(), &deny, "sk-a", "echo").await.0 == 200
        })
        .await;
        assert!(back.is_some(), "calls go through once Redis answers");
        let ok = within(Duration::from_secs(5), || async {
            health_as(&deny, Some("sk-admin")).await["status"] == "ok"
        })
        .await;
        assert!(ok.is_some(), "and /health says so");
        // Stopped and started empty (no persistence): still counted, from zero.
        redis.down();
        let (status, ..) = rest_call(&http, &deny, "sk-a", "echo").await;
        assert_eq!(status, 503);
        redis.up();
        let resumed = within(Duration::from_secs(10), || async {
            rest_call(&h2(), &deny, "sk-a", "echo").await.0 == 200
        })
        .await;
        assert!(resumed.is_some());
        // Counted on a patient replica (the quick one could time out under this load).
        let patient = Duration::from_secs(10);
        let third = replica(&up, &redis, OnStoreError::Deny, patient).await;
        // What the window holds already (the call above; an attempt whose answer was lost in
        // the restart keeps its slot too).
        let taken: usize = redis
            .cli(&["GET", "{mcp-gatekeeper}:team:t:rpm:tools"])
            .parse()
            .unwrap();
        assert!(taken >= 1, "{taken}");
        let answers = join_all((0..150).map(|_| rest_call(&http, &third, "sk-b", "echo"))).await;
        let ok = answers.iter().filter(|(s, ..)| *s == 200).count();
        assert_eq!(
            ok,
            100 - taken,
            "the team's 100 a minute, {taken} taken above"
        );
        nothing_held(&redis).await;
    }
}

/// Budgets that a restart does not reset: past spend read back from Postgres.
#[cfg(feature = "postgres")]
mod persisted {
    use super::*;
    use common::postgres::TestPg;
    use mcp_gatekeeper::postgres::{Database, PersistedBudgets, PgSpendSink, SpendOptions};

    const DOC: &str = r#"{
      "mcp_servers": {"tools": {"url": "URL",
         "mcp_info": {"mcp_server_cost_info": {"default_cost_per_query": 0.05}}}},
      "teams": [{"team_id": "t", "max_budget": 0.25}],
      "keys": [{"key": "sk-m", "key_alias": "m", "team_id": "t", "max_budget": 0.20}]
    }"#;

    /// One process of the gateway: a fresh in-process store over the database's past spend.
    async fn process(
        db: &Database,
        upstream_url: &str,
        spool: &std::path::Path,
    ) -> (Running, PgSpendSink) {
        let config = Config::from_json_str(&DOC.replace("URL", upstream_url)).unwrap();
        let gk = Gatekeeper::new(config.policy().unwrap());
        let sink = PgSpendSink::start(db.clone(), &SpendOptions::new(spool)).unwrap();
        let store = PersistedBudgets::new(InProcessStore::new(), db.clone());
        let gateway = Gateway::from_config(&config, gk.clone())
            .unwrap()
            .build()
            .unwrap();
        let layer = gateway
            .gatekeeper()
            .layer()
            .limit(LimitLayer::new(gk).store(store))
            .spend_sink(sink.clone());
        (
            serve(gateway.router(layer), CancellationToken::new()).await,
            sink,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_starts_every_budget_from_the_spend_already_recorded() {
        let Some(pg) =
            TestPg::start("a_restart_starts_every_budget_from_the_spend_already_recorded")
        else {
            return;
        };
        let db = Database::connect(&pg.url(), 4).unwrap();
        db.migrate().await.unwrap();
        let server = upstream();
        let up = serve_recording(&server).await;
        let spool = pg.scratch("spool");
        let http = h2();
        {
            let (gw, _sink) = process(&db, &up.url("/mcp"), &spool).await;
            for _ in 0..3 {
                assert_eq!(rest_call(&http, &gw, "sk-m", "echo").await.0, 200);
            }
            let written = within(Duration::from_secs(10), || async {
                let client = db.client().await.unwrap();
                let row = client
                    .query_one("SELECT count(*) FROM gk_spend WHERE key_id = 'm'", &[])
                    .await
                    .unwrap();
                row.get::<_, i64>(0) == 3
            })
            .await;
            assert!(written.is_some(), "the three calls reach gk_spend");
        }
        // A new process: 0.15 of the key's 0.20 is spent, so exactly one more call fits.
        let (gw, _sink) = process(&db, &up.url("/mcp"), &spool).await;
        let answers = join_all((0..5).map(|_| rest_call(&http, &gw, "sk-m", "echo"))).await;
        assert_eq!(
            answers.iter().filter(|(s, ..)| *s == 200).count(),
            1,
            "{answers:?}"
        );
        assert_eq!(server.executions.names().len(), 4);
    }
}
