//! What an upstream session on protocol 2026-07-28 announces, which it sends only on a
//! `subscriptions/listen` stream: the gateway holds one such stream per upstream session and
//! hands what arrives on it to the session's relay, like the notifications of an older upstream.
//!
//! The stream asks for every list change the upstream advertises and for updates of the
//! resources the session's caller subscribed to (`resources/subscribe` of a handshake caller,
//! or the resources a 2026-07-28 caller's own listen streams name). A stream's filter is fixed
//! when it opens, so a change of resources opens a new stream before the old one is cancelled.
//! The stream ends with its session; it never outlives it.
#![allow(deprecated)] // resources/subscribe is how older upstreams take a subscription

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::RoleClient;
use rmcp::model::{
    ErrorData, ServerNotification, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams,
};
use rmcp::service::{Peer, ServiceError};

use crate::gateway::caller::listeners::Change;

/// The state of the listen stream held on one upstream session.
#[derive(Default)]
struct UpstreamListen {
    /// Upstream URIs of the resources whose updates the caller wants.
    resources: BTreeSet<String>,
    task: Option<tokio::task::AbortHandle>,
}

/// Whether `peer` is an upstream session on protocol 2026-07-28 (no handshake).
fn listens_only(peer: &Peer<RoleClient>) -> bool {
    peer.peer_info()
        .is_some_and(|info| !info.protocol_version.has_initialize())
}

/// What hears an upstream session's announcements (its relay).
pub(crate) trait Hears: Clone + Send + Sync + 'static {
    /// The upstream announced `change`.
    fn heard(&self, change: Change<'_>) -> impl Future<Output = ()> + Send;
}

/// The listen stream held on one upstream session, shared by every clone of its relay.
#[derive(Clone, Default)]
pub(crate) struct Slot(Arc<Mutex<UpstreamListen>>);

impl Slot {
    /// Opens (or opens again, with the current resources) the listen stream on `peer`, if it
    /// is a 2026-07-28 upstream session that advertises anything to listen for; what it hears
    /// goes to `to`.
    pub(crate) fn open(&self, peer: &Peer<RoleClient>, to: &impl Hears) {
        if !listens_only(peer) {
            return;
        }
        let Some(info) = peer.peer_info() else { return };
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut wanted = SubscriptionFilter::builder()
            .tools_list_changed()
            .prompts_list_changed()
            .resources_list_changed();
        if !state.resources.is_empty() {
            wanted = wanted.resource_subscriptions(state.resources.iter().cloned());
        }
        let filter = wanted.build().supported_by(&info.capabilities);
        let old = state.task.take();
        if filter != SubscriptionFilter::default() {
            let (to, peer) = (to.clone(), peer.clone());
            state.task = Some(tokio::spawn(relay_stream(to, peer, filter)).abort_handle());
        }
        // Dropping the old stream's subscription cancels it upstream.
        if let Some(old) = old {
            old.abort();
        }
    }

    /// Subscribes to updates of the upstream resource `uri` on this session: with
    /// `resources/subscribe` on an older upstream, in the listen stream's filter on a newer one.
    pub(crate) async fn subscribe(
        &self,
        peer: &Peer<RoleClient>,
        to: &impl Hears,
        uri: String,
    ) -> Result<(), ServiceError> {
        if !listens_only(peer) {
            return peer.subscribe(SubscribeRequestParams::new(uri)).await;
        }
        let subscribes = peer.peer_info().is_some_and(|info| {
            info.capabilities
                .resources
                .as_ref()
                .is_some_and(|r| r.subscribe == Some(true))
        });
        if !subscribes {
            return Err(ServiceError::McpError(ErrorData::invalid_params(
                "the server does not offer resource subscriptions",
                None,
            )));
        }
        if self.resources_mut(|r| r.insert(uri)) {
            self.open(peer, to);
        }
        Ok(())
    }

    /// Ends this session's subscription to the upstream resource `uri`.
    pub(crate) async fn unsubscribe(
        &self,
        peer: &Peer<RoleClient>,
        to: &impl Hears,
        uri: String,
    ) -> Result<(), ServiceError> {
        if !listens_only(peer) {
            return peer.unsubscribe(UnsubscribeRequestParams::new(uri)).await;
        }
        if self.resources_mut(|r| r.remove(&uri)) {
            self.open(peer, to);
        }
        Ok(())
    }

    fn resources_mut<T>(&self, f: impl FnOnce(&mut BTreeSet<String>) -> T) -> T {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .resources)
    }
}

/// Hands what the upstream sends on one listen stream to the session's relay until the
/// stream ends (the session closed, the upstream ended it, or a newer stream replaced it).
async fn relay_stream(to: impl Hears, peer: Peer<RoleClient>, filter: SubscriptionFilter) {
    let mut stream = match peer.listen(filter).await {
        Ok(stream) => stream,
        Err(e) => {
            crate::decision_events::warn(&format!("an upstream refused subscriptions/listen: {e}"));
            return;
        }
    };
    while let Ok(Some(notification)) = stream.next().await {
        let change = match &notification {
            ServerNotification::ToolListChangedNotification(_) => Change::Tools,
            ServerNotification::PromptListChangedNotification(_) => Change::Prompts,
            ServerNotification::ResourceListChangedNotification(_) => Change::Resources,
            ServerNotification::ResourceUpdatedNotification(n) => Change::Updated(&n.params.uri),
            _ => continue,
        };
        to.heard(change).await;
    }
}
