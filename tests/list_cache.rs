//! The gateway keeps each upstream session's lists: a caller's next `tools/list` is answered
//! without asking the upstream, a changed list is seen once the upstream announces the change
//! or the list's time to live has passed, and a list is never served to a caller with other
//! credentials than the ones the upstream gave it to. The upstream is spoken to with the
//! handshake (pinned), whose sessions carry its change announcements.
#![cfg(feature = "gateway")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rmcp::model::{ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

/// An upstream whose tools are named after the credential the caller's session presents
/// (`Authorization: Bearer <who>` gives `<who>_<n>` for each name `n` of its catalogue).
#[derive(Clone, Default)]
struct Catalogue {
    names: Arc<Mutex<Vec<String>>>,
    /// How many `tools/list` reached it.
    listed: Arc<AtomicUsize>,
    /// Every session that listed, to announce changes to.
    peers: Arc<Mutex<Vec<Peer<RoleServer>>>>,
}

impl Catalogue {
    fn with(names: &[&str]) -> Self {
        let c = Self::default();
        c.set(names);
        c
    }

    fn set(&self, names: &[&str]) {
        *self.names.lock().unwrap() = names.iter().map(|n| (*n).to_owned()).collect();
    }

    fn listed(&self) -> usize {
        self.listed.load(Ordering::SeqCst)
    }

    async fn announce(&self) {
        let peers = self.peers.lock().unwrap().clone();
        for peer in peers {
            let _ = peer.notify_tool_list_changed().await;
        }
    }
}

impl ServerHandler for Catalogue {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.listed.fetch_add(1, Ordering::SeqCst);
        self.peers.lock().unwrap().push(ctx.peer.clone());
        let who = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("nobody")
            .to_owned();
        let tools = self
            .names
            .lock()
            .unwrap()
            .iter()
            .map(|n| serde_json::from_value(tool(&format!("{who}_{n}"), &[])).unwrap())
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }
}

/// A client of the gateway with the master key, presenting `credential` for the upstream.
async fn caller(gw: &Running, credential: &str) -> Client {
    let upstream = format!("Bearer {credential}");
    connect(
        &gw.url("/mcp"),
        &[
            ("x-litellm-api-key", "sk-admin"),
            ("x-mcp-catalogue-authorization", &upstream),
        ],
    )
    .await
    .unwrap()
}

async fn gateway(upstream: &Running, ttl_seconds: u64) -> Running {
    let (gw, _) = gateway_from_json(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin", "mcp_list_cache_ttl_seconds": {ttl_seconds}}},
             "mcp_servers": {{"catalogue": {{"url": "{}", "protocol_version": "2025-11-25"}}}}}}"#,
        upstream.url("/mcp")
    ))
    .await;
    gw
}

#[tokio::test]
async fn lists_are_kept_per_session_until_announced_changed() {
    let catalogue = Catalogue::with(&["a"]);
    let upstream = serve_handler(catalogue.clone()).await;
    let gw = gateway(&upstream, 3600).await;
    let (alice, bob) = (caller(&gw, "alice").await, caller(&gw, "bob").await);

    let first = tool_names(&alice).await;
    assert_eq!(first, ["catalogue-alice_a"]);
    let asked = catalogue.listed();
    // Asked again: answered from the session's list, the upstream not asked.
    assert_eq!(tool_names(&alice).await, first);
    assert_eq!(catalogue.listed(), asked);

    // Other credentials, same gateway key: a session of their own, a list of their own.
    assert_eq!(tool_names(&bob).await, ["catalogue-bob_a"]);
    assert_eq!(catalogue.listed(), asked + 1);
    assert_eq!(
        tool_names(&alice).await,
        ["catalogue-alice_a"],
        "alice never sees the list given to bob"
    );

    // The catalogue changes without a word: the kept list still answers.
    catalogue.set(&["a", "b"]);
    assert_eq!(tool_names(&alice).await, ["catalogue-alice_a"]);
    // Once the upstream announces the change, the next list asks it again.
    catalogue.announce().await;
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = tool_names(&alice).await;
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen, ["catalogue-alice_a", "catalogue-alice_b"]);
    assert_eq!(
        tool_names(&bob).await,
        ["catalogue-bob_a", "catalogue-bob_b"]
    );
}

#[tokio::test]
async fn lists_are_asked_again_after_their_time_to_live() {
    let catalogue = Catalogue::with(&["a"]);
    let upstream = serve_handler(catalogue.clone()).await;
    let gw = gateway(&upstream, 1).await;
    let carol = caller(&gw, "carol").await;
    assert_eq!(tool_names(&carol).await, ["catalogue-carol_a"]);
    catalogue.set(&["c"]);
    // Past the one-second time to live, without any announcement.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(tool_names(&carol).await, ["catalogue-carol_c"]);
}

#[tokio::test]
async fn a_zero_time_to_live_asks_every_time() {
    let catalogue = Catalogue::with(&["a"]);
    let upstream = serve_handler(catalogue.clone()).await;
    let gw = gateway(&upstream, 0).await;
    let dave = caller(&gw, "dave").await;
    tool_names(&dave).await;
    let asked = catalogue.listed();
    tool_names(&dave).await;
    assert_eq!(catalogue.listed(), asked + 1);
}

#[tokio::test]
async fn a_remembered_answer_is_never_another_sessions_nor_an_older_lists() {
    // The gateway remembers a list answer merged from kept lists; two callers with the same
    // gateway key and servers but their own upstream sessions each get their own, and a list
    // kept anew after a change is answered anew.
    let catalogue = Catalogue::with(&["a"]);
    let upstream = serve_handler(catalogue.clone()).await;
    let gw = gateway(&upstream, 3600).await;
    let (alice, bob) = (caller(&gw, "alice").await, caller(&gw, "bob").await);
    for _ in 0..3 {
        assert_eq!(tool_names(&alice).await, ["catalogue-alice_a"]);
    }
    for _ in 0..3 {
        assert_eq!(tool_names(&bob).await, ["catalogue-bob_a"]);
        assert_eq!(tool_names(&alice).await, ["catalogue-alice_a"]);
    }
    catalogue.set(&["b"]);
    catalogue.announce().await;
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = tool_names(&alice).await;
        if seen == ["catalogue-alice_b"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen, ["catalogue-alice_b"]);
    for _ in 0..3 {
        assert_eq!(tool_names(&alice).await, ["catalogue-alice_b"]);
        assert_eq!(tool_names(&bob).await, ["catalogue-bob_b"]);
    }
}
