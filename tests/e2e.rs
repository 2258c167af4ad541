//! The full stack in front of a real rmcp server, driven by rmcp's real client over loopback, in
//! all four server modes (stateful/stateless × SSE/JSON).

mod common;

use common::*;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::{Gatekeeper, PolicySnapshot};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower::Layer;

const POLICY: &str = r#"{
  "general_settings": {"master_key": "sk-admin"},
  "mcp_servers": {
    "github": {"url": "http://up/github", "alias": "gh", "access_groups": ["dev_group"],
               "disallowed_tools": ["delete_repo"],
               "allowed_params": {"create_issue": ["title", "body"]},
               "mcp_info": {"mcp_server_cost_info": {"default_cost_per_query": 0.01, "tool_name_to_cost_per_query": {"create_issue": 0.05}}}},
    "wiki":   {"url": "http://up/wiki", "access_groups": ["dev_group"],
               "allowed_params": {"read_wiki_contents": ["status"]}},
    "jira":   {"url": "http://up/jira", "allowed_tools": ["list-issues", "create-issue"]},
    "public": {"url": "http://up/public", "allow_all_keys": true},
    "secret": {"url": "http://up/secret"}
  },
  "keys": [
    {"key": "sk-alice", "key_alias": "alice", "team_id": "eng",
     "object_permission": {"mcp_servers": ["github", "wiki", "jira"], "mcp_tool_permissions": {"github": ["list_issues", "create_issue"], "jira": ["jira-list-issues"]}}},
    {"key": "sk-bob", "key_alias": "bob", "team_id": "eng"},
    {"key": "sk-carol", "key_alias": "carol"},
    {"key": "sk-dave", "key_alias": "dave", "object_permission": {"mcp_servers": []}},
    {"key": "sk-frank", "key_alias": "frank", "team_id": "ops",
     "object_permission": {"mcp_tool_permissions": {"secret": ["launch"]}}}
  ],
  "teams": [
    {"team_id": "eng", "organization_id": "acme", "object_permission": {"mcp_access_groups": ["dev_group"], "mcp_servers": ["jira"]}},
    {"team_id": "ops", "object_permission": {"mcp_servers": ["github"]}}
  ],
  "organizations": [
    {"organization_id": "acme", "object_permission": {"mcp_servers": ["github", "wiki", "jira", "public"]}}
  ]
}"#;

fn policy() -> PolicySnapshot {
    Config::from_json_str(POLICY).unwrap().policy().unwrap()
}

/// One rmcp server standing in for an aggregating service: tool names carry the server prefix.
fn aggregated_server() -> RecordingServer {
    RecordingServer::new(
        vec![
            tool("github-create_issue", &["title", "body", "labels"]),
            tool("github-list_issues", &["state"]),
            tool("github-delete_repo", &["repo"]),
            tool("wiki-read_wiki_contents", &["status", "limit"]),
            tool("jira-list-issues", &[]),
            tool("jira-create-issue", &["summary"]),
            tool("jira-drop-table", &[]),
            tool("public-ping", &[]),
            tool("secret-launch", &["target"]),
        ],
        &["github-triage", "secret-plan"],
        &["wiki-doc://home", "secret-doc://keys"],
    )
}

async fn start(mode: Mode) -> (Running, RecordingServer, Gatekeeper) {
    let server = aggregated_server();
    let ct = CancellationToken::new();
    let gk = Gatekeeper::new(policy());
    let stack = gk.layer().layer(mcp_service(server.clone(), mode, &ct));
    let router = axum::Router::new().fallback_service(stack);
    (serve(router, ct).await, server, gk)
}

#[tokio::test]
async fn each_key_lists_exactly_what_it_may_call_in_every_mode() {
    for mode in Mode::ALL {
        let (running, server, _gk) = start(mode).await;
        let url = running.url("/mcp");
        let alice = connect(&url, &[("x-litellm-api-key", "sk-alice")])
            .await
            .unwrap();
        assert_eq!(
            tool_names(&alice).await,
            [
                "github-create_issue",
                "github-list_issues",
                "jira-list-issues",
                "public-ping",
                "wiki-read_wiki_contents"
            ],
            "{mode:?}"
        );
        // The key's tool permissions on jira (written prefixed) narrow jira's tools.
        let narrowed = call(&alice, "jira-create-issue", json!({"summary": "s"})).await;
        assert!(narrowed.is_err(), "{mode:?}");
        let ok = call(&alice, "github-create_issue", json!({"title": "t"})).await;
        assert!(
            ok.unwrap().starts_with("ran github-create_issue"),
            "{mode:?}"
        );
        let refused = call(&alice, "secret-launch", json!({"target": "x"}))
            .await
            .unwrap_err();
        assert_eq!(
            refused, "Error: Tool secret-launch is not allowed for this key",
            "{mode:?}"
        );
        let refused = call(&alice, "github-delete_repo", json!({}))
            .await
            .unwrap_err();
        assert!(refused.contains("not allowed"), "{mode:?}");
        let params = call(
            &alice,
            "wiki-read_wiki_contents",
            json!({"status": "x", "limit": 3}),
        )
        .await
        .unwrap_err();
        assert_eq!(
            params,
            "Error: Parameters ['limit'] are not allowed for tool read_wiki_contents. Allowed parameters: ['status']. Contact proxy admin to allow these parameters.",
            "{mode:?}"
        );
        assert_eq!(
            server.executions.names(),
            ["github-create_issue"],
            "{mode:?}: nothing refused ran"
        );
        alice.cancel().await.unwrap();
    }
}

async fn names_for(url: &str, headers: &[(&str, &str)]) -> Vec<String> {
    let client = connect(url, headers).await.unwrap();
    let names = tool_names(&client).await;
    client.cancel().await.unwrap();
    names
}

#[tokio::test]
async fn the_hierarchy_holds_for_every_principal() {
    let (running, server, _gk) = start(Mode::StatefulSse).await;
    let url = running.url("/mcp");
    // bob has no permissions of his own: he inherits team eng (dev_group + jira), under the acme
    // ceiling, plus the public server; server rules still apply.
    assert_eq!(
        names_for(&url, &[("x-litellm-api-key", "sk-bob")]).await,
        [
            "github-create_issue",
            "github-list_issues",
            "jira-create-issue",
            "jira-list-issues",
            "public-ping",
            "wiki-read_wiki_contents"
        ]
    );
    // carol is restricted nowhere: everything but the server rules' refusals.
    assert_eq!(
        names_for(&url, &[("authorization", "Bearer sk-carol")]).await,
        [
            "github-create_issue",
            "github-list_issues",
            "jira-create-issue",
            "jira-list-issues",
            "public-ping",
            "secret-launch",
            "wiki-read_wiki_contents"
        ]
    );
    // dave's explicit empty list removes everything, public servers too.
    let dave = connect(&url, &[("x-litellm-api-key", "Bearer sk-dave")])
        .await
        .unwrap();
    assert!(tool_names(&dave).await.is_empty());
    assert!(call(&dave, "public-ping", json!({})).await.is_err());
    // frank's tool permissions on `secret` never grant that server (LiteLLM #33397).
    let frank = connect(&url, &[("x-litellm-api-key", "sk-frank")])
        .await
        .unwrap();
    assert_eq!(
        tool_names(&frank).await,
        ["github-create_issue", "github-list_issues", "public-ping"]
    );
    assert!(
        call(&frank, "secret-launch", json!({"target": "x"}))
            .await
            .is_err()
    );
    // the master key sees everything the server rules allow.
    let admin = names_for(&url, &[("x-litellm-api-key", "sk-admin")]).await;
    assert!(
        admin.contains(&"secret-launch".to_owned())
            && !admin.contains(&"github-delete_repo".to_owned())
    );
    assert!(
        server.executions.all().is_empty(),
        "no refused call ran: {:?}",
        server.executions.all()
    );
}

#[tokio::test]
async fn scope_only_narrows_and_never_enumerates() {
    let (running, _server, _gk) = start(Mode::StatelessJson).await;
    let url = running.url("/mcp");
    let alice = [("x-litellm-api-key", "sk-alice")];
    assert_eq!(
        names_for(&url, &[alice[0], ("x-mcp-servers", " wiki , ")]).await,
        ["wiki-read_wiki_contents"]
    );
    assert_eq!(
        names_for(&running.url("/wiki/mcp"), &alice).await,
        ["wiki-read_wiki_contents"]
    );
    assert_eq!(
        names_for(&running.url("/mcp/dev_group"), &alice).await,
        [
            "github-create_issue",
            "github-list_issues",
            "wiki-read_wiki_contents"
        ]
    );
    // The path replaces the header entirely.
    assert_eq!(
        names_for(
            &running.url("/gh/mcp"),
            &[alice[0], ("x-mcp-servers", "wiki")]
        )
        .await,
        ["github-create_issue", "github-list_issues"]
    );

    let http = http_client();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
    let attempt = |servers: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(&url)
                .header("x-litellm-api-key", "sk-alice")
                .header("x-mcp-servers", servers)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(init)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let forbidden = attempt("secret").await;
    let unknown = attempt("no_such_server").await;
    assert_eq!(forbidden.0, 403);
    assert_eq!(
        forbidden.1,
        r#"{"error":"The key is not allowed to access the requested MCP servers: secret"}"#
    );
    assert_eq!(unknown, (403, r#"{"error":"The key is not allowed to access the requested MCP servers: no_such_server"}"#.to_owned()));
    assert_eq!(
        attempt("wiki,secret,nope").await,
        (403, r#"{"error":"The key is not allowed to access the requested MCP servers: secret, nope"}"#.to_owned())
    );
    assert_eq!(attempt("Wiki").await.0, 403, "names are case-sensitive");
}

#[tokio::test]
async fn prompts_and_resources_follow_the_server_grant() {
    for mode in [Mode::StatefulSse, Mode::StatelessJson] {
        let (running, server, _gk) = start(mode).await;
        let alice = connect(&running.url("/mcp"), &[("x-litellm-api-key", "sk-alice")])
            .await
            .unwrap();
        let prompts: Vec<String> = alice
            .list_all_prompts()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(prompts, ["github-triage"], "{mode:?}");
        let resources: Vec<String> = alice
            .list_all_resources()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.uri.clone())
            .collect();
        assert_eq!(resources, ["wiki-doc://home"], "{mode:?}");
        let get = |name: &str| rmcp::model::GetPromptRequestParams::new(name.to_owned());
        assert!(alice.get_prompt(get("github-triage")).await.is_ok());
        assert!(alice.get_prompt(get("secret-plan")).await.is_err());
        let read = |uri: &str| rmcp::model::ReadResourceRequestParams::new(uri.to_owned());
        assert!(alice.read_resource(read("wiki-doc://home")).await.is_ok());
        assert!(
            alice
                .read_resource(read("secret-doc://keys"))
                .await
                .is_err()
        );
        assert_eq!(
            server.executions.names(),
            ["prompt:github-triage", "read:wiki-doc://home"],
            "{mode:?}"
        );
        alice.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn tool_schemas_offer_only_allowed_params() {
    let (running, _server, _gk) = start(Mode::StatefulJson).await;
    let alice = connect(&running.url("/mcp"), &[("x-litellm-api-key", "sk-alice")])
        .await
        .unwrap();
    let tools = alice.list_all_tools().await.unwrap();
    let schema = |name: &str| {
        let t = tools.iter().find(|t| t.name == name).unwrap();
        serde_json::Value::Object((*t.input_schema).clone())
    };
    let create = schema("github-create_issue");
    assert_eq!(
        create["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["title", "body"]
    );
    assert_eq!(create["additionalProperties"], json!(false));
    let wiki = schema("wiki-read_wiki_contents");
    assert_eq!(
        wiki["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["status"]
    );
    assert_eq!(
        schema("public-ping")["properties"],
        json!({}),
        "no rule, no pruning"
    );
    assert!(schema("public-ping").get("additionalProperties").is_none());
    alice.cancel().await.unwrap();
}

#[tokio::test]
async fn a_session_belongs_to_the_key_that_opened_it() {
    let (running, _server, _gk) = start(Mode::StatefulJson).await;
    let url = running.url("/mcp");
    let http = http_client();
    let post = |key: &'static str, session: Option<String>, body: &'static str| {
        mcp_post(&http, &url, key, session.as_deref())
            .body(body)
            .send()
    };
    let init = post("sk-alice", None, r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#).await.unwrap();
    assert_eq!(init.status(), 200);
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let initialized = post(
        "sk-alice",
        Some(sid.clone()),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await
    .unwrap();
    assert_eq!(initialized.status(), 202);
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let foreign = post("sk-carol", Some(sid.clone()), list).await.unwrap();
    assert_eq!(
        foreign.status(),
        404,
        "another key may not use alice's session"
    );
    let forged = post("sk-alice", Some("not-a-session".into()), list)
        .await
        .unwrap();
    assert_eq!(forged.status(), 404);
    let own = post("sk-alice", Some(sid.clone()), list).await.unwrap();
    assert_eq!(own.status(), 200);
    let body = own.text().await.unwrap();
    assert!(
        body.contains("github-list_issues") && !body.contains("secret-launch"),
        "{body}"
    );
    // Deleting ends the binding too.
    let del = http
        .delete(&url)
        .header("x-litellm-api-key", "sk-carol")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 404, "another key may not delete it either");
    let del = http
        .delete(&url)
        .header("x-litellm-api-key", "sk-alice")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert!(del.status().is_success());
    assert_eq!(
        post("sk-alice", Some(sid), list).await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn unauthenticated_requests_never_reach_the_server() {
    let (running, server, _gk) = start(Mode::StatelessJson).await;
    let url = running.url("/mcp");
    assert!(connect(&url, &[]).await.is_err());
    assert!(
        connect(&url, &[("x-litellm-api-key", "sk-nobody")])
            .await
            .is_err()
    );
    let http = http_client();
    let r = http
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = http
        .post(&url)
        .header("authorization", "Bearer sk-alice")
        .header("authorization", "Bearer sk-carol")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "two Authorization headers are ambiguous");
    assert!(server.executions.all().is_empty());
}

#[tokio::test]
async fn a_reload_changes_decisions_for_new_requests() {
    let (running, _server, gk) = start(Mode::StatelessJson).await;
    let url = running.url("/mcp");
    let alice = connect(&url, &[("x-litellm-api-key", "sk-alice")])
        .await
        .unwrap();
    assert!(
        tool_names(&alice)
            .await
            .contains(&"wiki-read_wiki_contents".to_owned())
    );
    let tightened = POLICY.replace(
        r#""mcp_servers": ["github", "wiki", "jira"], "mcp_tool"#,
        r#""mcp_servers": ["jira"], "mcp_tool"#,
    );
    gk.reload(Config::from_json_str(&tightened).unwrap().policy().unwrap());
    assert_eq!(
        tool_names(&alice).await,
        ["jira-list-issues", "public-ping"]
    );
    assert!(
        call(&alice, "wiki-read_wiki_contents", json!({"status": "x"}))
            .await
            .is_err()
    );
    alice.cancel().await.unwrap();
}

#[tokio::test]
async fn one_server_wrapped_with_bare_names() {
    let server = RecordingServer::new(
        vec![
            tool("create_issue", &["title", "body", "labels"]),
            tool("list_issues", &[]),
            tool("delete_repo", &[]),
        ],
        &[],
        &[],
    );
    let ct = CancellationToken::new();
    let gk = Gatekeeper::for_server(policy(), "github");
    let stack = gk
        .layer()
        .layer(mcp_service(server.clone(), Mode::StatefulSse, &ct));
    let running = serve(axum::Router::new().nest_service("/mcp", stack), ct).await;
    let url = running.url("/mcp");
    let alice = connect(&url, &[("x-litellm-api-key", "sk-alice")])
        .await
        .unwrap();
    assert_eq!(tool_names(&alice).await, ["create_issue", "list_issues"]);
    assert!(call(&alice, "delete_repo", json!({})).await.is_err());
    assert!(
        call(&alice, "create_issue", json!({"title": "a", "labels": "x"}))
            .await
            .unwrap_err()
            .starts_with("Error: Parameters ['labels']")
    );
    assert!(
        call(&alice, "create_issue", json!({"title": "a"}))
            .await
            .is_ok()
    );
    // dave may use no server: he lists nothing and calls nothing.
    let dave = connect(&url, &[("x-litellm-api-key", "sk-dave")])
        .await
        .unwrap();
    assert!(tool_names(&dave).await.is_empty());
    assert!(call(&dave, "list_issues", json!({})).await.is_err());
    assert_eq!(server.executions.names(), ["create_issue"]);
}

#[tokio::test]
async fn every_call_that_reaches_the_server_is_costed_once() {
    use mcp_gatekeeper::cost::{HookDecision, Outcome, ToolCallEvent};
    use std::sync::{Arc, Mutex};
    for mode in Mode::ALL {
        let mut server = aggregated_server();
        let mut tools = (*server.tools).clone();
        tools.push(tool("github-fail", &[]));
        tools.push(tool("github-priced", &[]));
        server.tools = Arc::new(tools);
        let events: Arc<Mutex<Vec<ToolCallEvent>>> = Arc::default();
        let sink = {
            let events = Arc::clone(&events);
            move |e: ToolCallEvent| events.lock().unwrap().push(e)
        };
        let hook = |event: &ToolCallEvent, _reply: Option<&serde_json::Value>| {
            let tool = event.tool.clone();
            async move {
                match &*tool {
                    "priced" => Ok(HookDecision {
                        cost: Some(1.5),
                        replace_result: Some(
                            json!({"content": [{"type": "text", "text": "replaced by hook"}]}),
                        ),
                    }),
                    "list_issues" => panic!("a broken hook"),
                    "create_issue" => Err("hook backend down".into()),
                    _ => Ok(HookDecision::default()),
                }
            }
        };
        let ct = CancellationToken::new();
        let gk = Gatekeeper::new(policy());
        let stack = gk
            .layer()
            .cost_hook(hook)
            .spend_sink(sink)
            .layer(mcp_service(server.clone(), mode, &ct));
        let running = serve(axum::Router::new().fallback_service(stack), ct).await;
        let carol = connect(
            &running.url("/mcp"),
            &[
                ("x-litellm-api-key", "sk-carol"),
                ("x-litellm-end-user-id", "u-1"),
            ],
        )
        .await
        .unwrap();
        assert!(
            call(
                &carol,
                "github-create_issue",
                json!({"title": "t", "body": "b"})
            )
            .await
            .is_ok(),
            "{mode:?}"
        );
        assert!(
            call(&carol, "github-list_issues", json!({})).await.is_ok(),
            "{mode:?}: a panicking hook never breaks the call"
        );
        assert!(call(&carol, "github-fail", json!({})).await.is_err());
        assert_eq!(
            call(&carol, "github-priced", json!({})).await.unwrap(),
            "replaced by hook",
            "{mode:?}"
        );
        assert!(
            call(&carol, "github-nope", json!({})).await.is_err(),
            "unknown upstream tool: a JSON-RPC error"
        );
        assert!(
            call(&carol, "secret-launch", json!({"target": "x"}))
                .await
                .is_ok()
        );
        // Refused before reaching the service: no event (the refusal is traced instead).
        assert!(call(&carol, "github-delete_repo", json!({})).await.is_err());
        carol.cancel().await.unwrap();
        let events = events.lock().unwrap().clone();
        let summary: Vec<(String, Option<String>, Outcome, f64)> = events
            .iter()
            .map(|e| {
                (
                    e.tool.to_string(),
                    e.server.as_deref().map(str::to_owned),
                    e.outcome,
                    e.cost,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "create_issue".to_owned(),
                    Some("github".to_owned()),
                    Outcome::Success,
                    0.05
                ),
                (
                    "list_issues".to_owned(),
                    Some("github".to_owned()),
                    Outcome::Success,
                    0.01
                ),
                (
                    "fail".to_owned(),
                    Some("github".to_owned()),
                    Outcome::ToolError,
                    0.01
                ),
                (
                    "priced".to_owned(),
                    Some("github".to_owned()),
                    Outcome::Success,
                    1.5
                ),
                (
                    "nope".to_owned(),
                    Some("github".to_owned()),
                    Outcome::JsonRpcError { code: -32602 },
                    0.01
                ),
                (
                    "launch".to_owned(),
                    Some("secret".to_owned()),
                    Outcome::Success,
                    0.0
                ),
            ],
            "{mode:?}"
        );
        let first = &events[0];
        assert_eq!(&*first.qualified_tool, "github-create_issue");
        assert_eq!(
            *first.argument_keys,
            ["title", "body"].map(Box::<str>::from)
        );
        assert_eq!(first.key_alias.as_deref(), Some("carol"));
        assert_eq!(first.end_user_id.as_deref(), Some("u-1"));
        assert_eq!(
            first.session_id.is_some(),
            matches!(mode, Mode::StatefulSse | Mode::StatefulJson),
            "{mode:?}"
        );
        // The spend line: `outcome` a plain string, the detail in its own field.
        let lines: Vec<serde_json::Value> = events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        let outcomes: Vec<(&str, Option<i64>)> = lines
            .iter()
            .map(|l| (l["outcome"].as_str().unwrap(), l["error_code"].as_i64()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("success", None),
                ("success", None),
                ("tool_error", None),
                ("success", None),
                ("jsonrpc_error", Some(-32602)),
                ("success", None),
            ],
            "{mode:?}"
        );
        assert!(lines.iter().all(|l| l.get("http_status").is_none()));
        assert_eq!(lines[0]["key_alias"], "carol");
        assert_eq!(lines[0]["server"], "github");
        assert_eq!(lines[0]["cost"], 0.05);
    }
}

#[test]
fn spend_lines_name_upstream_errors_and_disconnects_flatly() {
    use mcp_gatekeeper::cost::Outcome;
    for (outcome, want) in [
        (
            Outcome::TransportError { status: Some(502) },
            json!({"outcome": "upstream_error", "http_status": 502}),
        ),
        (
            Outcome::TransportError { status: None },
            json!({"outcome": "upstream_error"}),
        ),
        (Outcome::Disconnected, json!({"outcome": "disconnected"})),
        (Outcome::Unknown, json!({"outcome": "unknown"})),
        (
            Outcome::JsonRpcError { code: -32001 },
            json!({"outcome": "jsonrpc_error", "error_code": -32001}),
        ),
    ] {
        assert_eq!(serde_json::to_value(outcome).unwrap(), want);
    }
}

#[test]
fn the_stack_is_clone_send_sync_and_infallible_over_rmcp() {
    fn assert_service<S>(_: &S)
    where
        S: tower::Service<http::Request<axum::body::Body>, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send,
    {
    }
    let ct = CancellationToken::new();
    let gk = Gatekeeper::new(policy());
    let stack = gk
        .layer()
        .layer(mcp_service(aggregated_server(), Mode::StatefulSse, &ct));
    assert_service(&stack);
    // It mounts where rmcp's own service mounts.
    let _ = axum::Router::<()>::new()
        .nest_service("/mcp", stack.clone())
        .route_service("/{servers}/mcp", stack.clone())
        .fallback_service(stack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_drop_nothing_and_never_mix_policies() {
    let (running, server, gk) = start(Mode::StatelessJson).await;
    let url = running.url("/mcp");
    // Both policies allow alice github-list_issues and forbid secret-launch; they differ on wiki.
    let a = Config::from_json_str(POLICY).unwrap();
    let b = Config::from_json_str(&POLICY.replace(
        r#""mcp_servers": ["github", "wiki", "jira"], "mcp_tool"#,
        r#""mcp_servers": ["github", "jira"], "mcp_tool"#,
    ))
    .unwrap();
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let alice = connect(&url, &[("x-litellm-api-key", "sk-alice")])
                    .await
                    .unwrap();
                for _ in 0..20 {
                    assert!(call(&alice, "github-list_issues", json!({})).await.is_ok());
                    assert!(
                        call(&alice, "secret-launch", json!({"target": "x"}))
                            .await
                            .is_err()
                    );
                }
                alice.cancel().await.unwrap();
            })
        })
        .collect();
    let reloader = tokio::spawn(async move {
        for i in 0..200 {
            gk.reload(if i % 2 == 0 {
                b.policy().unwrap()
            } else {
                a.policy().unwrap()
            });
            tokio::task::yield_now().await;
        }
    });
    for w in workers {
        w.await.unwrap();
    }
    reloader.await.unwrap();
    assert!(
        server
            .executions
            .names()
            .iter()
            .all(|n| n == "github-list_issues")
    );
    assert_eq!(server.executions.names().len(), 120);
}

#[tokio::test]
async fn raw_http_fail_closed_rules_hold_over_the_wire() {
    let (running, server, _gk) = start(Mode::StatelessJson).await;
    let http = http_client();
    let send = |body: &'static str, extra: Option<(&'static str, &'static str)>| {
        let mut r = http
            .post(running.url("/mcp"))
            .header("x-litellm-api-key", "sk-carol")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some((k, v)) = extra {
            r = r.header(k, v);
        }
        r.body(body).send()
    };
    for (body, header) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"public-ping","name":"secret-launch"}}"#,
            None,
        ),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret-launch"}}]"#,
            None,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github-delete_repo","arguments":["x"]}}"#,
            None,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"public-ping"}}"#,
            Some(("mcp-name", "github-delete_repo")),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"public-ping"}}"#,
            Some(("mcp-method", "tools/list")),
        ),
    ] {
        let r = send(body, header).await.unwrap();
        assert_eq!(r.status(), 400, "{body} {header:?}");
    }
    assert!(server.executions.all().is_empty());
    // Dot segments and encoded slashes in a scoped path are refused, never normalised.
    // Sent byte for byte over a raw socket: URL parsers normalise dot segments (even encoded
    // ones) before sending, which would hide what an attacker can put on the wire. The body is
    // a valid list request, so only the path can be what is refused.
    let list_over_raw_socket = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-litellm-api-key: sk-alice\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2025-06-18\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        tcp.read_to_string(&mut reply).await.unwrap();
        reply
    };
    for path in [
        "/secret/../mcp",
        "/mcp/%2e%2e",
        "/%2E%2e/mcp",
        "/mcp/secret%2F..",
        "/mcp/wiki%2F%2E%2E%2Fsecret",
    ] {
        let reply = list_over_raw_socket(path).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{path}: {reply}");
        assert!(
            reply.contains("path segments may not be"),
            "{path}: {reply}"
        );
    }
    // Doubled slashes: nginx (merge_slashes, on by default) would send `//github/mcp` on as
    // `/github/mcp`; served here without the scope, the two would disagree about what was
    // asked. Refused before any MCP work instead.
    for path in ["//github/mcp", "/mcp//github", "/github//mcp"] {
        let reply = list_over_raw_socket(path).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{path}: {reply}");
        assert!(reply.contains("not in canonical form"), "{path}: {reply}");
        assert!(!reply.contains("wiki-"), "{path} listed: {reply}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_sessions_see_only_their_own_tools_and_results() {
    let (running, server, _gk) = start(Mode::StatefulJson).await;
    let url = running.url("/mcp");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    // Each key's expected view; carol may call secret-launch, alice and bob may not.
    let keys = [
        ("sk-alice", false),
        ("sk-bob", false),
        ("sk-carol", true),
        ("sk-frank", false),
    ];
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let (key, may_launch) = keys[i % keys.len()];
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let post = |session: Option<&str>, body: serde_json::Value| {
                    mcp_post(&http, &url, key, session).json(&body).send()
                };
                let init = post(None, json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"0"}}})).await.unwrap();
                assert_eq!(init.status(), 200);
                let sid = init.headers()["mcp-session-id"].to_str().unwrap().to_owned();
                let _ = init.text().await;
                post(Some(&sid), json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await.unwrap();
                let list = rpc(post(Some(&sid), json!({"jsonrpc":"2.0","id":2,"method":"tools/list"})).await.unwrap()).await;
                let names: Vec<String> = list["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
                assert_eq!(names.contains(&"secret-launch".to_owned()), may_launch, "{key}: {names:?}");
                let marker = format!("m-{i}");
                let call = rpc(post(Some(&sid), json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"public-ping","arguments":{"marker": marker}}})).await.unwrap()).await;
                let text = call["result"]["content"][0]["text"].as_str().unwrap().to_owned();
                assert!(text.contains(&format!("\"{marker}\"")), "no cross-talk: {text}");
                let launch = rpc(post(Some(&sid), json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"secret-launch","arguments":{"target": marker}}})).await.unwrap()).await;
                assert_eq!(launch["result"]["isError"].as_bool() == Some(true), !may_launch, "{key}: {launch}");
                // Another key's session id is useless to this key.
                sid
            })
        })
        .collect();
    let mut sessions = Vec::new();
    for t in tasks {
        sessions.push(t.await.unwrap());
    }
    let launched = server
        .executions
        .names()
        .iter()
        .filter(|n| *n == "secret-launch")
        .count();
    assert_eq!(launched, 250, "only carol's 250 sessions launched");
    let foreign = http
        .post(&url)
        .header("x-litellm-api-key", "sk-alice")
        .header("mcp-session-id", &sessions[2]) // a carol session
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 404);
}

/// The JSON-RPC message of a reply, whether sent as JSON or as server-sent events.
async fn rpc(r: reqwest::Response) -> serde_json::Value {
    let text = r.text().await.unwrap();
    if let Ok(v) = serde_json::from_str(&text) {
        return v;
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .find(|v| v.get("id").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC reply in {text}"))
}
