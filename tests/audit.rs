//! The audit trail through the gateway, against a real rmcp upstream: exactly one event per
//! decision with the right fields, argument values only where a server opts in (redacted), no
//! key, token, credential or argument value in any sink, and a full queue that drops and counts
//! instead of holding requests up.
#![cfg(feature = "gateway")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::audit::{AuditEvent, AuditSink, Auditor, JsonlSink, SinkError};
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::counters::InProcessStore;
use mcp_gatekeeper::gateway::Gateway;
use mcp_gatekeeper::limit::LimitLayer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const MASTER: &str = "sk-master-audit-0001";
const ALICE: &str = "sk-alice-secret-key-0001";
const BOB: &str = "sk-bob-secret-key-0002";
const WRONG: &str = "sk-wrong-key-value-0003";
const CREDENTIAL: &str = "cred-secret-value-0004";
const UPSTREAM_TOKEN: &str = "upstream-token-secret-0005";
const ARGUMENT: &str = "argument-value-secret-0006";
const PASSWORD: &str = "hunter2-secret-0007";

/// Every string that must never reach an audit sink.
const SECRETS: &[&str] = &[
    MASTER,
    ALICE,
    BOB,
    WRONG,
    CREDENTIAL,
    UPSTREAM_TOKEN,
    ARGUMENT,
    PASSWORD,
];

fn doc(upstream: &str) -> String {
    format!(
        r#"{{"general_settings": {{"master_key": "{MASTER}"}},
            "mcp_servers": {{
              "wiki": {{"url": "{upstream}", "auth_type": "bearer_token", "auth_value": "{UPSTREAM_TOKEN}",
                        "disallowed_tools": ["drop"], "allowed_params": {{"echo": ["text"]}}}},
              "vault": {{"url": "{upstream}", "audit_redact": ["password"]}},
              "payroll": {{"url": "{upstream}"}}}},
            "keys": [
              {{"key": "{ALICE}", "key_alias": "alice", "team_id": "eng",
                "object_permission": {{"mcp_servers": ["wiki", "vault"]}},
                "mcp_tool_limits": {{"wiki": {{"limited": {{"rpm": 1}}}}}}}},
              {{"key": "{BOB}", "key_alias": "bob",
                "object_permission": {{"mcp_servers": ["wiki"], "mcp_tool_permissions": {{"wiki": ["echo"]}}}}}}],
            "teams": [{{"team_id": "eng"}}]}}"#
    )
}

struct Setup {
    gw: Running,
    log: std::path::PathBuf,
    auditor: Auditor,
    seen: usize,
    _dir: Dir,
}

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn setup(name: &str, upstream: &Running) -> Setup {
    let dir = std::env::temp_dir().join(format!("gk-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("audit.jsonl");
    let auditor = Auditor::new(vec![Arc::new(JsonlSink::open(&log).unwrap())], 10_000);
    let config = Config::from_json_str(&doc(&upstream.url("/mcp"))).unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap()).with_audit(auditor.clone());
    let gateway = Gateway::from_config(&config, gk.clone())
        .unwrap()
        .build()
        .unwrap();
    let layer = gateway
        .gatekeeper()
        .layer()
        .limit(LimitLayer::new(gk).store(Arc::new(InProcessStore::new())));
    Setup {
        gw: serve(gateway.router(layer), CancellationToken::new()).await,
        log,
        auditor,
        seen: 0,
        _dir: Dir(dir),
    }
}

impl Setup {
    /// The events written since the last call.
    fn new_events(&mut self) -> Vec<Value> {
        assert!(self.auditor.flush(Duration::from_secs(5)));
        let all: Vec<Value> = std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let new = all[self.seen..].to_vec();
        self.seen = all.len();
        new
    }

    /// The one event the last request made.
    fn one(&mut self) -> Value {
        let mut events = self.new_events();
        assert_eq!(events.len(), 1, "{events:#?}");
        events.remove(0)
    }

    /// One request, as [`Setup::post`]: its status, its reply and the one event it made.
    async fn decide(
        &mut self,
        key: &str,
        session: Option<&str>,
        headers: &[(&str, &str)],
        body: Value,
    ) -> (u16, Value, Value) {
        let (status, reply) = self.post(key, session, headers, body).await;
        (status, reply, self.one())
    }

    /// One JSON-RPC request in `session`, with `key` and extra headers; its reply message.
    async fn post(
        &self,
        key: &str,
        session: Option<&str>,
        headers: &[(&str, &str)],
        body: Value,
    ) -> (u16, Value) {
        let mut r = mcp_post(&http_client(), &self.gw.url("/mcp"), key, session);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let response = r.json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let message = messages(&content_type, &text)
            .into_iter()
            .find(|m| m.get("id").is_some())
            .unwrap_or(Value::Null);
        (status, message)
    }
}

fn call_body(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

fn is_refusal(message: &Value) -> bool {
    message["result"]["isError"] == true || message.get("error").is_some()
}

/// `(event, outcome)` of an event.
fn kind(e: &Value) -> (&str, &str) {
    (
        e["event"].as_str().unwrap_or_default(),
        e["outcome"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn every_decision_is_exactly_one_event_with_its_fields_and_no_secret() {
    let upstream = RecordingServer::new(
        vec![
            tool("echo", &["text"]),
            tool("drop", &[]),
            tool("limited", &[]),
        ],
        &[],
        &[],
    );
    let up = serve_recording(&upstream).await;
    let mut s = setup("decisions", &up).await;
    let http = http_client();
    let alice = raw_session(&http, &s.gw.url("/mcp"), ALICE).await;
    let alice = Some(alice.as_str());
    let bob = raw_session(&http, &s.gw.url("/mcp"), BOB).await;
    let bob = Some(bob.as_str());
    assert!(s.new_events().is_empty(), "a handshake is not a decision");

    // Authentication failures.
    let (status, _, e) = s
        .decide(WRONG, None, &[], call_body("wiki-echo", json!({})))
        .await;
    assert_eq!(status, 401);
    assert_eq!(kind(&e), ("auth", "refused"));
    assert_eq!(
        (e["rule"].as_str(), e["status"].as_u64()),
        (Some("invalid_credential"), Some(401))
    );
    assert!(e.get("key").is_none());

    // A body that is not one JSON-RPC object (a key given twice).
    let r = mcp_post(&http, &s.gw.url("/mcp"), ALICE, alice)
        .body(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e = s.one();
    assert_eq!(kind(&e), ("request", "refused"));
    assert_eq!(
        (e["rule"].as_str(), e["key"].as_str()),
        (Some("bad_request"), Some("alice"))
    );

    // A scope the key may not use.
    let scoped = [("x-mcp-servers", "payroll")];
    let (status, _, e) = s
        .decide(ALICE, alice, &scoped, call_body("payroll-echo", json!({})))
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        (kind(&e).0, e["rule"].as_str(), e["key"].as_str()),
        ("scope", Some("scope"), Some("alice"))
    );

    // A list: what was offered and what was withheld, by rule.
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let (_, reply, e) = s.decide(ALICE, alice, &[], list).await;
    assert_eq!(reply["result"]["tools"].as_array().unwrap().len(), 5);
    assert_eq!(kind(&e), ("list", "filtered"));
    assert_eq!(e["method"], "tools/list");
    assert_eq!(
        e["offered"], 6,
        "three tools on each of wiki and vault: {e}"
    );
    assert_eq!(e["withheld"], 1);
    assert_eq!(e["withheld_by"], json!([["disallowed_tools", 1]]));
    assert_eq!(
        (e["key"].as_str(), e["team"].as_str()),
        (Some("alice"), Some("eng"))
    );

    // A call allowed: argument names, never values.
    let carried = [("x-mcp-auth", CREDENTIAL)];
    let (_, reply, e) = s
        .decide(
            ALICE,
            alice,
            &carried,
            call_body("wiki-echo", json!({"text": ARGUMENT})),
        )
        .await;
    assert!(!is_refusal(&reply), "{reply}");
    assert_eq!(kind(&e), ("call", "allowed"));
    assert_eq!(
        (e["server"].as_str(), e["name"].as_str()),
        (Some("wiki"), Some("wiki-echo"))
    );
    assert_eq!(e["arguments"], json!(["text"]));
    assert!(e.get("argument_values").is_none());

    // Refused by the server's rule, and by a level's tool list.
    let (_, reply, e) = s
        .decide(ALICE, alice, &[], call_body("wiki-drop", json!({})))
        .await;
    assert!(is_refusal(&reply));
    assert_eq!(
        (kind(&e), e["rule"].as_str()),
        (("call", "refused"), Some("disallowed_tools"))
    );
    let (_, reply, e) = s
        .decide(BOB, bob, &[], call_body("wiki-limited", json!({})))
        .await;
    assert!(is_refusal(&reply));
    assert_eq!(
        (e["rule"].as_str(), e["level"].as_str(), e["key"].as_str()),
        (Some("permissions"), Some("key"), Some("bob"))
    );

    // Refused by allowed_params: one event (the refusal), not an allowed one as well.
    let extra = call_body("wiki-echo", json!({"text": "a", "path": ARGUMENT}));
    let (_, reply, e) = s.decide(ALICE, alice, &[], extra).await;
    assert!(is_refusal(&reply));
    assert_eq!(
        (kind(&e), e["rule"].as_str()),
        (("call", "refused"), Some("allowed_params"))
    );
    assert_eq!(
        (e["server"].as_str(), &e["arguments"]),
        (Some("wiki"), &json!(["text", "path"]))
    );

    // A limit: the first call is allowed, the second is one limit event naming the level.
    let (_, reply, e) = s
        .decide(ALICE, alice, &[], call_body("wiki-limited", json!({})))
        .await;
    assert!(!is_refusal(&reply), "{reply}");
    assert_eq!(kind(&e), ("call", "allowed"));
    let (_, reply, e) = s
        .decide(ALICE, alice, &[], call_body("wiki-limited", json!({})))
        .await;
    assert!(is_refusal(&reply));
    assert_eq!(kind(&e), ("limit", "refused"));
    assert_eq!(
        (
            e["rule"].as_str(),
            e["level"].as_str(),
            e["status"].as_u64()
        ),
        (Some("rate"), Some("key"), Some(429))
    );

    // A server that opts in: values, with the listed names redacted.
    let redacted = call_body(
        "vault-echo",
        json!({"text": "visible", "nested": {"password": PASSWORD}}),
    );
    let (_, reply, e) = s.decide(ALICE, alice, &[], redacted).await;
    assert!(!is_refusal(&reply), "{reply}");
    assert_eq!(
        e["argument_values"],
        json!({"text": "visible", "nested": {"password": "[redacted]"}})
    );

    // Nothing secret anywhere in the sink.
    let all = std::fs::read_to_string(&s.log).unwrap();
    for secret in SECRETS {
        assert!(!all.contains(secret), "{secret} leaked into the audit log");
    }
    assert_eq!(s.auditor.stats().dropped, 0);
}

/// A sink slower than the traffic.
struct Slow;

impl AuditSink for Slow {
    fn write(&self, _: &[AuditEvent]) -> Result<(), SinkError> {
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }
}

/// A sink that always fails.
struct Broken;

impl AuditSink for Broken {
    fn write(&self, _: &[AuditEvent]) -> Result<(), SinkError> {
        Err("disk full".into())
    }
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_and_a_failing_sink_fails_no_request() {
    let upstream = RecordingServer::new(vec![tool("echo", &["text"])], &[], &[]);
    let up = serve_recording(&upstream).await;
    let config = Config::from_json_str(&doc(&up.url("/mcp"))).unwrap();
    let auditor = Auditor::new(vec![Arc::new(Slow), Arc::new(Broken)], 2);
    let gk = Gatekeeper::new(config.policy().unwrap()).with_audit(auditor.clone());
    let gateway = Gateway::from_config(&config, gk).unwrap().build().unwrap();
    let gw = serve(
        gateway.router(gateway.gatekeeper().layer()),
        CancellationToken::new(),
    )
    .await;
    let http = http_client();
    let session = raw_session(&http, &gw.url("/mcp"), ALICE).await;
    for _ in 0..20 {
        let r = mcp_post(&http, &gw.url("/mcp"), ALICE, Some(&session))
            .json(&call_body("wiki-echo", json!({"text": "x"})))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(!r.text().await.unwrap().contains("isError\":true"));
    }
    assert_eq!(
        upstream.executions.names().len(),
        20,
        "every call went through"
    );
    assert!(auditor.flush(Duration::from_secs(10)));
    let stats = auditor.stats();
    assert!(stats.dropped > 0, "{stats:?}");
    assert!(
        stats.failed > 0 && stats.problem.as_deref() == Some("disk full"),
        "{stats:?}"
    );
    let health = health_as(&gw, Some(MASTER)).await;
    assert_eq!(health["audit"]["dropped"], stats.dropped, "{health}");
}
