//! An upstream of protocol 2026-07-28 announces list changes and resource updates only on
//! `subscriptions/listen` streams: the gateway holds one on each of its sessions, so that its
//! callers of every era hear what the upstream announces, under the names they know, and
//! `resources/subscribe` of a handshake caller becomes part of that stream's filter.
#![cfg(feature = "gateway")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rmcp::model::{ResourceUpdatedNotificationParam, SubscriptionFilter};
use rmcp::service::{NotificationContext, SubscriptionContext, SubscriptionSink};
use rmcp::{ErrorData, RoleClient};
use serde_json::{Value, json};

/// One listen stream: its filter, its sink, and whether it is still open.
type Stream = (SubscriptionFilter, SubscriptionSink, Arc<AtomicBool>);

/// A 2026-07-28 server that keeps every listen stream opened on it, and announces on them
/// when told to.
#[derive(Clone, Default)]
struct Bulletin {
    /// Each stream's filter and sink, and whether it is still open.
    streams: Arc<Mutex<Vec<Stream>>>,
}

impl Bulletin {
    /// The filters of the streams still open.
    fn open(&self) -> Vec<SubscriptionFilter> {
        let mut streams = self.streams.lock().unwrap();
        streams.retain(|(_, _, open)| open.load(Ordering::SeqCst));
        streams.iter().map(|(f, _, _)| f.clone()).collect()
    }

    /// Waits until a stream is open whose filter satisfies `wanted`.
    async fn until_open(&self, wanted: impl Fn(&SubscriptionFilter) -> bool) {
        for _ in 0..200 {
            if self.open().iter().any(&wanted) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no such stream opened: {:?}", self.open());
    }

    fn sinks(&self) -> Vec<SubscriptionSink> {
        self.streams
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s, _)| s.clone())
            .collect()
    }

    async fn tools_changed(&self) {
        for sink in self.sinks() {
            let _ = sink.notify_tool_list_changed().await;
        }
    }

    async fn updated(&self, uri: &str) {
        for sink in self.sinks() {
            let _ = sink.notify_resource_updated(uri).await;
        }
    }
}

fn news(filter: &SubscriptionFilter) -> bool {
    filter
        .resource_subscriptions
        .as_ref()
        .is_some_and(|r| r.iter().any(|u| u == "board://news"))
}

impl rmcp::ServerHandler for Bulletin {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(
            rmcp::model::ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _: Option<rmcp::model::PaginatedRequestParams>,
        _: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        Ok(rmcp::model::ListToolsResult::with_all_items(vec![
            serde_json::from_value(tool("read", &[])).unwrap(),
        ]))
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let open = Arc::new(AtomicBool::new(true));
        self.streams.lock().unwrap().push((
            context.accepted().clone(),
            context.sink().clone(),
            Arc::clone(&open),
        ));
        context.cancelled().await;
        open.store(false, Ordering::SeqCst);
        Ok(())
    }
}

/// What a handshake caller hears: `tools` for a list change, else the updated URI.
#[derive(Clone)]
struct Heard(tokio::sync::mpsc::UnboundedSender<String>);

impl rmcp::ClientHandler for Heard {
    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.0.send("tools".to_owned());
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(params.uri);
    }
}

async fn heard(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("nothing heard in time")
        .expect("the client went away")
}

async fn gateway_before(bulletin: &Bulletin) -> (Running, Running) {
    let upstream = serve_handler(bulletin.clone()).await;
    let (gw, _) = gateway_from_json(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin"}},
             "mcp_servers": {{"bulletin": {{"url": "{}", "protocol_version": "2026-07-28"}}}}}}"#,
        upstream.url("/mcp")
    ))
    .await;
    (upstream, gw)
}

#[tokio::test]
async fn a_handshake_caller_hears_a_2026_upstream_and_subscribes_through_its_listen_stream() {
    use rmcp::ServiceExt;
    let bulletin = Bulletin::default();
    let (_upstream, gw) = gateway_before(&bulletin).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = Heard(tx)
        .serve(keyed_transport(&gw.url("/mcp"), "sk-admin"))
        .await
        .unwrap();
    let tools = client.peer().list_all_tools().await.unwrap();
    assert_eq!(tools[0].name, "bulletin-read");
    // The caller's upstream session listens for list changes from the start.
    bulletin
        .until_open(|f| f.tools_list_changed == Some(true))
        .await;
    bulletin.tools_changed().await;
    assert_eq!(heard(&mut rx).await, "tools");

    // resources/subscribe is not a method of the upstream's protocol: the gateway's stream
    // asks for the resource instead, and the update reaches the caller under its own name.
    #[allow(deprecated)] // the handshake protocol's subscription
    client
        .peer()
        .subscribe(rmcp::model::SubscribeRequestParams::new(
            "bulletin-board://news",
        ))
        .await
        .unwrap();
    bulletin.until_open(news).await;
    bulletin.updated("board://news").await;
    assert_eq!(heard(&mut rx).await, "bulletin-board://news");

    // Unsubscribed, the stream that named the resource is replaced by one that does not.
    #[allow(deprecated)]
    client
        .peer()
        .unsubscribe(rmcp::model::UnsubscribeRequestParams::new(
            "bulletin-board://news",
        ))
        .await
        .unwrap();
    let mut open = bulletin.open();
    for _ in 0..200 {
        let tools = open.iter().any(|f| f.tools_list_changed == Some(true));
        if tools && !open.iter().any(news) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        open = bulletin.open();
    }
    assert!(!open.iter().any(news), "{open:?}");
    assert!(
        open.iter().any(|f| f.tools_list_changed == Some(true)),
        "{open:?}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_2026_callers_listen_stream_hears_a_2026_upstream() {
    let bulletin = Bulletin::default();
    let (_upstream, gw) = gateway_before(&bulletin).await;
    let http = http_client();
    let filter =
        json!({"toolsListChanged": true, "resourceSubscriptions": ["bulletin-board://news"]});
    let mut reply = modern(
        &http,
        &gw.url("/mcp"),
        "sk-admin",
        7,
        "subscriptions/listen",
        json!({"notifications": filter}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(reply.status(), 200);
    let mut buf = String::new();
    let ack = next(&mut reply, &mut buf).await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    bulletin.until_open(news).await;
    bulletin.updated("board://news").await;
    let update = next(&mut reply, &mut buf).await;
    assert_eq!(
        update["method"], "notifications/resources/updated",
        "{update}"
    );
    assert_eq!(update["params"]["uri"], "bulletin-board://news", "{update}");
    bulletin.tools_changed().await;
    let change = next(&mut reply, &mut buf).await;
    assert_eq!(
        change["method"], "notifications/tools/list_changed",
        "{change}"
    );
}

/// The next message on an event stream.
async fn next(reply: &mut reqwest::Response, buf: &mut String) -> Value {
    read_until(reply, buf, |_: &Value| true)
        .await
        .into_iter()
        .next()
        .expect("nothing heard in time")
}
