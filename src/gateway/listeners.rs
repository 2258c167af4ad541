//! `subscriptions/listen` (protocol 2026-07-28) through the gateway, per caller.
//!
//! A listen stream is told what the upstreams announce on that caller's own upstream sessions,
//! and only what the caller may see: list changes of servers in its grant (within the path or
//! header scope of the listen request), and `notifications/resources/updated` for the URIs it
//! named, which the permission layer has already checked as reads; each under the name the
//! caller knows it by. The upstreams speak the handshake protocol to the gateway, so the
//! gateway asks them with `resources/subscribe` for the resources a stream names, and
//! unsubscribes when no open stream of that caller names them any more.

#![allow(deprecated)] // the upstreams speak the handshake protocol, whose resources/subscribe this uses

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::{ErrorData, SubscribeRequestParams, UnsubscribeRequestParams};
use rmcp::service::SubscriptionContext;
use rmcp::service::SubscriptionSink;

use super::handler::GatewayHandler;
use super::pool::Caller;
use super::relay::Relay;
use crate::engine::NameKind;

/// How often an open stream makes sure its upstream sessions are still there (they would
/// otherwise be closed as idle), reopening and subscribing again where one was lost.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// Who a pooled upstream session belongs to: its announcements go to that caller's streams.
pub(crate) type CallerKey = Option<[u8; 32]>;

/// What an upstream announced.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Change<'a> {
    Tools,
    Prompts,
    Resources,
    /// The resource with this upstream URI changed.
    Updated(&'a str),
}

/// One open listen stream.
struct Listener {
    caller: CallerKey,
    servers: HashSet<String>,
    /// (server, upstream URI) → the URI the caller named.
    resources: HashMap<(String, String), String>,
    sink: SubscriptionSink,
}

/// A resource of one server, by its upstream URI, for one caller.
type Subscription = (CallerKey, String, String);

/// Every open listen stream of the gateway.
#[derive(Default)]
pub(crate) struct Listeners {
    open: Mutex<Vec<Arc<Listener>>>,
    /// The upstream subscriptions made for callers' streams, each with the upstream session it
    /// was made on.
    subscribed: Mutex<HashMap<Subscription, Relay>>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners").finish_non_exhaustive()
    }
}

impl Listeners {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Listener>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells `caller`'s open streams that `server` announced `change`.
    pub(crate) async fn announce(&self, caller: &CallerKey, server: &str, change: Change<'_>) {
        let to: Vec<Arc<Listener>> = self
            .lock()
            .iter()
            .filter(|l| l.caller == *caller && l.servers.contains(server))
            .cloned()
            .collect();
        for l in to {
            // The sink drops what the stream did not ask for.
            let _ = match change {
                Change::Tools => l.sink.notify_tool_list_changed().await,
                Change::Prompts => l.sink.notify_prompt_list_changed().await,
                Change::Resources => l.sink.notify_resource_list_changed().await,
                Change::Updated(uri) => {
                    let key = (server.to_owned(), uri.to_owned());
                    match l.resources.get(&key) {
                        Some(named) => l.sink.notify_resource_updated(named.clone()).await,
                        None => Ok(()),
                    }
                }
            };
        }
    }

    /// Whether `subscription` is yet to be made on the session of `relay` (and from now on
    /// counts as made there).
    fn claim(&self, subscription: Subscription, relay: &Relay) -> bool {
        let mut made = self
            .subscribed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match made.get(&subscription) {
            Some(on) if on.same_session(relay) => false,
            _ => {
                made.insert(subscription, relay.clone());
                true
            }
        }
    }

    fn unclaim(&self, subscription: &Subscription) {
        self.subscribed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(subscription);
    }

    /// Whether an open stream of `caller` other than `but` names `resource` of `server`.
    fn named_elsewhere(&self, but: &Arc<Listener>, resource: &(String, String)) -> bool {
        self.lock().iter().any(|l| {
            !Arc::ptr_eq(l, but) && l.caller == but.caller && l.resources.contains_key(resource)
        })
    }
}

/// Removes a stream from [`Listeners`] when it ends, however it ends.
struct Open<'a>(&'a Listeners, Arc<Listener>);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.lock().retain(|l| !Arc::ptr_eq(l, &self.1));
    }
}

/// Serves one listen stream until the caller cancels it or goes away.
pub(crate) async fn serve(
    gateway: &GatewayHandler,
    context: SubscriptionContext,
) -> Result<(), ErrorData> {
    let shared = &gateway.shared;
    let caller = Caller::from_context(context.request_context());
    let accepted = context.accepted().clone();
    let servers: HashSet<String> = gateway
        .servers(&caller)
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    let mut resources = HashMap::new();
    for uri in accepted.resource_subscriptions.iter().flatten() {
        if let Ok((server, bare)) = gateway.route_for(&caller, NameKind::Resource, uri) {
            resources.insert((server, bare.to_owned()), uri.clone());
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
                        if !listeners.claim(subscription.clone(), &relay) {
                            continue;
                        }
                        let asked = peer.subscribe(SubscribeRequestParams::new(uri)).await;
                        if let Err(e) = asked {
                            listeners.unclaim(&subscription);
                            crate::trace::warn(&format!(
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
            .with_session(&caller, server, None, |peer, _| async move {
                peer.unsubscribe(UnsubscribeRequestParams::new(uri)).await
            })
            .await;
    }
    Ok(())
}
