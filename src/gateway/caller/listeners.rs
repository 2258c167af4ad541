//! The open `subscriptions/listen` streams (protocol 2026-07-28) of the gateway, and where
//! upstream announcements go among them (`listen` serves each stream).
//!
//! A listen stream is told what the upstreams announce on that caller's own upstream sessions,
//! and only what the caller may see: list changes of servers in its grant (within the path or
//! header scope of the listen request), and `notifications/resources/updated` for the URIs it
//! named, which the permission layer has already checked as reads; each under the name the
//! caller knows it by. The upstreams speak the handshake protocol to the gateway, so the
//! gateway asks them with `resources/subscribe` for the resources a stream names, and
//! unsubscribes when no open stream of that caller names them any more.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::service::SubscriptionSink;

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

/// One upstream session, as its relay names it (see `Relay::session`).
pub(crate) type Session = Arc<()>;

/// One open listen stream.
pub(crate) struct Listener {
    pub(crate) caller: CallerKey,
    pub(crate) servers: HashSet<String>,
    /// (server, upstream URI) → the URI the caller named.
    pub(crate) resources: HashMap<(String, String), String>,
    pub(crate) sink: SubscriptionSink,
}

/// A resource of one server, by its upstream URI, for one caller.
pub(crate) type Subscription = (CallerKey, String, String);

/// Every open listen stream of the gateway.
#[derive(Default)]
pub(crate) struct Listeners {
    open: Mutex<Vec<Arc<Listener>>>,
    /// The upstream subscriptions made for callers' streams, each with the upstream session it
    /// was made on.
    subscribed: Mutex<HashMap<Subscription, Session>>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners").finish_non_exhaustive()
    }
}

impl Listeners {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Listener>>> {
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

    /// Whether `subscription` is yet to be made on upstream `session` (and from now on counts
    /// as made there).
    pub(crate) fn claim(&self, subscription: Subscription, session: &Session) -> bool {
        let mut made = self
            .subscribed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match made.get(&subscription) {
            Some(on) if Arc::ptr_eq(on, session) => false,
            _ => {
                made.insert(subscription, Arc::clone(session));
                true
            }
        }
    }

    pub(crate) fn unclaim(&self, subscription: &Subscription) {
        self.subscribed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(subscription);
    }

    /// Whether an open stream of `caller` other than `but` names `resource` of `server`.
    pub(crate) fn named_elsewhere(&self, but: &Arc<Listener>, resource: &(String, String)) -> bool {
        self.lock().iter().any(|l| {
            !Arc::ptr_eq(l, but) && l.caller == but.caller && l.resources.contains_key(resource)
        })
    }
}

/// Removes a stream from [`Listeners`] when it ends, however it ends.
pub(crate) struct Open<'a>(pub(crate) &'a Listeners, pub(crate) Arc<Listener>);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.lock().retain(|l| !Arc::ptr_eq(l, &self.1));
    }
}
