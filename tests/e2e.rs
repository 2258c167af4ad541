//! The full stack in front of a real rmcp server, driven by rmcp's real client over loopback, in
//! all four server modes (stateful/stateless × SSE/JSON).

mod common;

use common::*;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::{Gatekeeper, Policy};
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
     "object_permission": {"mcp_servers": ["github", "wiki", "jira"], "mcp_tool_permissions": {"github": ["list_issues", "create_issue"]}}},
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

fn policy() -> Policy {
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
                "jira-create-issue",
                "jira-list-issues",
                "public-ping",
                "wiki-read_wiki_contents"
            ],
            "{mode:?}"
        );
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
