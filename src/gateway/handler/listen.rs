//! Serving one `subscriptions/listen` stream (protocol 2026-07-28) through the gateway.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::ErrorData;
use rmcp::service::SubscriptionContext;

use super::GatewayHandler;
use super::aggregate::Upstreams;
use crate::engine::NameKind;
use crate::gateway::caller::Caller;
use crate::gateway::caller::listeners::{Listener, Open};

/// How often an open stream makes sure its upstream sessions are still there (they would
/// otherwise be closed as idle), reopening and subscribing again where one was lost.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

impl GatewayHandler {
    /// Serves one listen stream until the caller cancels it or goes away.
    pub(crate) async fn serve_listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let gateway = self;
        let shared = &gateway.shared;
        let caller = Caller::from_context(context.request_context());
        let accepted = context.accepted().clone();
        let upstreams = Upstreams::of(shared, caller.clone());
        let servers: HashSet<String> = upstreams
            .servers()
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        let mut resources = HashMap::new();
        for uri in accepted.resource_subscriptions.iter().flatten() {
            if let Ok((server, bare)) = upstreams.route(NameKind::Resource, uri) {
                resources.insert((server, bare.into_owned()), uri.clone());
            }
        }
        let lists = [
            accepted.tools_list_changed,
            accepted.prompts_list_changed,
            accepted.resources_list_changed,
        ]
        .contains(&Some(true));
        // The upstream sessions whose announcements this stream wants.
        let mut wanted: Vec<String> = if lists {
            servers.iter().cloned().collect()
        } else {
            resources.keys().map(|(s, _)| s.clone()).collect()
        };
        wanted.sort();
        wanted.dedup();
        let listener = Arc::new(Listener {
            caller: caller.digest.map(|d| d.0),
            servers,
            resources,
            sink: context.sink().clone(),
        });
        shared.listeners.lock().push(Arc::clone(&listener));
        let open = Open(&shared.listeners, Arc::clone(&listener));
        let listeners = &*shared.listeners;
        loop {
            for server in &wanted {
                let names: Vec<String> = listener
                    .resources
                    .keys()
                    .filter(|(s, _)| s == server)
                    .map(|(_, uri)| uri.clone())
                    .collect();
                let key = listener.caller;
                let opened = shared
                    .with_session(&caller, server, None, |peer, relay| async move {
                        // Made once per upstream session (a new session has none of the old one's).
                        for uri in names {
                            let subscription = (key, server.clone(), uri.clone());
                            if !listeners.claim(subscription.clone(), relay.session()) {
                                continue;
                            }
                            let asked = relay.subscribe_upstream(&peer, uri).await;
                            if let Err(e) = asked {
                                listeners.unclaim(&subscription);
                                crate::decision_events::warn(&format!(
                                    "upstream {server} refused a resource subscription: {e}"
                                ));
                            }
                        }
                        Ok(())
                    })
                    .await;
                if let Err(e) = opened {
                    shared.report_failure(server, &e);
                }
            }
            tokio::select! {
                () = context.cancelled() => break,
                () = tokio::time::sleep(KEEP_ALIVE) => {
                    if context.request_context().peer.is_transport_closed() {
                        break;
                    }
                }
            }
        }
        // Upstream subscriptions no other open stream of this caller still needs are ended.
        drop(open);
        for resource @ (server, uri) in listener.resources.keys() {
            if listeners.named_elsewhere(&listener, resource) {
                continue;
            }
            listeners.unclaim(&(listener.caller, server.clone(), uri.clone()));
            let uri = uri.clone();
            let _ = shared
                .with_session(&caller, server, None, |peer, relay| async move {
                    relay.unsubscribe_upstream(&peer, uri).await
                })
                .await;
        }
        Ok(())
    }
}
