//! The client side of an upstream session: what the upstream asks of its client (sampling,
//! elicitation, roots) and what it announces (progress, logging, list changes) is relayed to
//! the downstream caller that owns the session.
#![allow(deprecated)] // sampling, roots and logging are deprecated in the newest protocol, still used

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, InputRequiredResult, InputResponses,
    ServerResult,
};
use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequest, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequest, ElicitRequestParams, ElicitResult, ErrorData,
    Implementation, InputRequest, ListRootsRequest, ListRootsResult,
    LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
    ResourceUpdatedNotificationParam,
};
use rmcp::model::{LoggingLevel, RequestMetaObject, TASKS_EXTENSION_ID};
use rmcp::service::ServiceError;
use rmcp::service::{NotificationContext, Peer, PeerRequestOptions, RequestContext};
use rmcp::{ClientHandler, RoleClient, RoleServer};

use crate::gateway::caller::list_cache::{ListCache, Listed};
use crate::gateway::caller::listeners::{CallerKey, Change, Listeners, Session};

/// Where progress of one in-flight call goes.
pub(crate) type ProgressSender = tokio::sync::mpsc::Sender<ProgressNotificationParam>;

/// Where the caller's answer to one request goes.
pub(crate) type Reply = tokio::sync::oneshot::Sender<Result<serde_json::Value, ErrorData>>;

/// Requests the upstream made of its client at once (one, or the several of one input-required
/// result), held for a caller on protocol 2026-07-28 (which gets them inside one
/// `InputRequiredResult` and answers them by calling again).
pub(crate) struct Pending {
    /// Each request, under the key the upstream gave it if it gave one.
    pub(crate) asked: Vec<(Option<String>, InputRequest, Reply)>,
}

/// Where requests for callers of the newest protocol are held.
pub(crate) type PendingSender = tokio::sync::mpsc::UnboundedSender<Pending>;

/// Where what a caller's upstream session announces goes when that caller speaks 2026-07-28:
/// to its `subscriptions/listen` streams, never onto the response stream of some request.
#[derive(Clone)]
pub(crate) struct Announce {
    pub(crate) listeners: Arc<Listeners>,
    pub(crate) caller: CallerKey,
    pub(crate) server: Arc<str>,
}

/// Relays one upstream session to its downstream caller.
#[derive(Clone, Default)]
pub(crate) struct Relay {
    /// What the caller calls this upstream's resources: the upstream URI behind this prefix.
    resource_prefix: Arc<str>,
    /// What the caller calls this upstream's UI resources (MCP Apps): the upstream's `ui://`
    /// URI with this in place of `ui://`.
    ui_prefix: Arc<str>,
    /// Set for the sessions of callers of protocol 2026-07-28.
    announce: Option<Announce>,
    /// Names this upstream session (every clone of the relay shares it).
    session: Session,
    downstream: Arc<Mutex<Option<Peer<RoleServer>>>>,
    /// Calls of 2026-07-28 callers in flight on this session, newest last: the upstream's
    /// requests go to the newest instead of to the caller's session (which cannot take them).
    held: Arc<Mutex<Vec<PendingSender>>>,
    /// For a streamable HTTP upstream: its URL and what rmcp's client sends with, so that
    /// `tools/call` can be posted directly (see `session`).
    route: Arc<std::sync::OnceLock<super::session::Route>>,
    /// rmcp gives every upstream request a progress token of its own: upstream token → the
    /// token the caller chose and the in-flight call that relays it (from the caller's request,
    /// so it lands on that request's stream).
    progress: Arc<Mutex<std::collections::HashMap<ProgressToken, (ProgressToken, ProgressSender)>>>,
    /// The log level a handshake caller set (`logging/setLevel`), for an upstream that takes it
    /// per request instead (protocol 2026-07-28).
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
    /// The listen stream held on a 2026-07-28 upstream session (see `listen`).
    upstream_listen: super::listen::Slot,
    /// The session's lists, until the upstream announces a change (see `list_cache`).
    lists: ListCache,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").finish_non_exhaustive()
    }
}

impl Relay {
    /// The relay of a new upstream session, whose resources the caller names with
    /// `resource_prefix` (UI resources with `ui_prefix`), and whose lists `lists` keeps.
    pub(crate) fn new(
        resource_prefix: String,
        ui_prefix: String,
        announce: Option<Announce>,
        lists: ListCache,
    ) -> Self {
        Self {
            resource_prefix: resource_prefix.into(),
            ui_prefix: ui_prefix.into(),
            announce,
            lists,
            ..Self::default()
        }
    }

    /// Keeps the level a handshake caller set, for an upstream that takes it per request.
    pub(crate) fn set_log_level(&self, level: LoggingLevel) {
        *self
            .log_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(level);
    }

    /// The level a handshake caller set, if it set one.
    pub(crate) fn log_level(&self) -> Option<LoggingLevel> {
        *self
            .log_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lists this session's upstream gave, kept until it announces a change.
    pub(crate) fn lists(&self) -> &ListCache {
        &self.lists
    }

    /// Opens the listen stream a 2026-07-28 upstream session announces on (see
    /// `listen`).
    pub(crate) fn listen_upstream(&self, peer: &Peer<RoleClient>) {
        self.upstream_listen.open(peer, self);
    }

    /// Subscribes this session to updates of the upstream resource `uri`.
    pub(crate) async fn subscribe_upstream(
        &self,
        peer: &Peer<RoleClient>,
        uri: String,
    ) -> Result<(), ServiceError> {
        self.upstream_listen.subscribe(peer, self, uri).await
    }

    /// Ends this session's subscription to the upstream resource `uri`.
    pub(crate) async fn unsubscribe_upstream(
        &self,
        peer: &Peer<RoleClient>,
        uri: String,
    ) -> Result<(), ServiceError> {
        self.upstream_listen.unsubscribe(peer, self, uri).await
    }

    /// The upstream session this relays, as listen streams name it.
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// Tells the caller that the upstream announced `change`: on its listen streams (protocol
    /// 2026-07-28) or its session.
    async fn announce(&self, change: Change<'_>) {
        match change {
            Change::Tools => {
                self.lists.changed(Listed::Tools);
                if let Some(plain) = self.route.get().and_then(|r| r.latest.as_ref()) {
                    plain.forget();
                }
            }
            Change::Prompts => self.lists.changed(Listed::Prompts),
            Change::Resources => {
                self.lists.changed(Listed::Resources);
                self.lists.changed(Listed::ResourceTemplates);
            }
            Change::Updated(_) => {}
        }
        if let Some(a) = &self.announce {
            a.listeners.announce(&a.caller, &a.server, change).await;
            return;
        }
        let Some(peer) = self.peer() else { return };
        let _ = match change {
            Change::Tools => peer.notify_tool_list_changed().await,
            Change::Prompts => peer.notify_prompt_list_changed().await,
            Change::Resources => peer.notify_resource_list_changed().await,
            Change::Updated(uri) => {
                let uri = match uri.strip_prefix(crate::engine::UI_SCHEME) {
                    Some(rest) => format!("{}{rest}", self.ui_prefix),
                    None => format!("{}{uri}", self.resource_prefix),
                };
                peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                    .await
            }
        };
    }

    /// The caller's session that requests and notifications go to from now on.
    pub(crate) fn attach(&self, peer: Peer<RoleServer>) {
        *self
            .downstream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(peer);
    }

    /// Progress the upstream reports under `upstream` goes, as `downstream`, to `to`.
    pub(crate) fn map_progress(
        &self,
        upstream: ProgressToken,
        downstream: ProgressToken,
        to: ProgressSender,
    ) {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(upstream, (downstream, to));
    }

    /// The call under `upstream` is over.
    pub(crate) fn unmap_progress(&self, upstream: &ProgressToken) {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(upstream);
    }

    /// The upstream is streamable HTTP at the route's URL, and rmcp's client records its
    /// session in the route's.
    pub(crate) fn set_route(&self, route: super::session::Route) {
        let _ = self.route.set(route);
    }

    /// Where the upstream's lists may be posted directly: a handshake session's route.
    pub(crate) fn route(&self) -> Option<&super::session::Route> {
        self.route.get().filter(|r| r.latest.is_none())
    }

    /// Where the upstream's calls may be posted directly (see `per_request` for a 2026-07-28
    /// session's).
    pub(crate) fn call_route(&self) -> Option<&super::session::Route> {
        self.route.get()
    }

    /// A whole tool list the upstream gave now, through rmcp's client.
    pub(crate) fn listed_tools(&self, tools: &[rmcp::model::Tool]) {
        if let Some(plain) = self.route.get().and_then(|r| r.latest.as_ref()) {
            plain.learn(tools);
        }
    }

    /// From now on the upstream's requests are held for `to` (a 2026-07-28 call in flight).
    pub(crate) fn hold(&self, to: PendingSender) {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(to);
    }

    /// The call behind `to` is over.
    pub(crate) fn release(&self, to: &PendingSender) {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|t| !t.same_channel(to));
    }

    /// Holds `requests` for the newest 2026-07-28 call, if there is one, and waits for the
    /// answers.
    async fn held_all(
        &self,
        requests: Vec<(Option<String>, InputRequest)>,
    ) -> Option<Vec<Result<serde_json::Value, ErrorData>>> {
        let to = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last()
            .cloned()?;
        hold(&to, requests).await
    }

    /// Holds `request` for the newest 2026-07-28 call, if there is one, and waits for the answer.
    async fn held<T: serde::de::DeserializeOwned>(
        &self,
        request: InputRequest,
    ) -> Option<Result<T, ErrorData>> {
        let answer = self.held_all(vec![(None, request)]).await?.pop()?;
        Some(answer.and_then(|v| {
            serde_json::from_value(v).map_err(|e| {
                ErrorData::invalid_params(format!("the client's answer is malformed: {e}"), None)
            })
        }))
    }

    /// The caller's answers to what an upstream's input-required result asks, in order: held
    /// together for the 2026-07-28 call behind `to` (one round for its caller), else asked of
    /// the caller's session.
    pub(crate) async fn answer_all(
        &self,
        requests: Vec<(Option<String>, InputRequest)>,
        to: Option<&PendingSender>,
    ) -> Vec<Result<serde_json::Value, ErrorData>> {
        if let Some(to) = to {
            return hold(to, requests)
                .await
                .unwrap_or_else(|| vec![Err(ErrorData::internal_error("the call is over", None))]);
        }
        let Some(peer) = self.peer() else {
            return requests.iter().map(|_| Err(Self::no_peer())).collect();
        };
        let asks = requests.into_iter().map(|(_, request)| {
            let peer = peer.clone();
            async move {
                let value = match request {
                    InputRequest::CreateMessage(r) => peer
                        .create_message(r.params)
                        .await
                        .map(serde_json::to_value),
                    InputRequest::Elicitation(r) => peer
                        .create_elicitation(r.params)
                        .await
                        .map(serde_json::to_value),
                    InputRequest::ListRoots(_) => peer.list_roots().await.map(serde_json::to_value),
                    _ => {
                        return Err(ErrorData::invalid_params(
                            "the upstream asked for input of a kind the gateway does not know",
                            None,
                        ));
                    }
                };
                value
                    .map_err(relay_error)?
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))
            }
        });
        futures_util::future::join_all(asks).await
    }

    fn peer(&self) -> Option<Peer<RoleServer>> {
        self.downstream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn no_peer() -> ErrorData {
        ErrorData::internal_error("no client session to relay this request to", None)
    }
}

/// Holds `requests` for the 2026-07-28 call behind `to` and waits for the answers (`None`
/// when that call is over).
pub(crate) async fn hold(
    to: &PendingSender,
    requests: Vec<(Option<String>, InputRequest)>,
) -> Option<Vec<Result<serde_json::Value, ErrorData>>> {
    let (asked, answers): (Vec<_>, Vec<_>) = requests
        .into_iter()
        .map(|(key, request)| {
            let (reply, answer) = tokio::sync::oneshot::channel();
            ((key, request, reply), answer)
        })
        .unzip();
    to.send(Pending { asked }).ok()?;
    let mut out = Vec::with_capacity(answers.len());
    for answer in answers {
        out.push(answer.await.unwrap_or_else(|_| {
            Err(ErrorData::internal_error(
                "the client did not answer in time",
                None,
            ))
        }));
    }
    Some(out)
}

/// The gateway as an upstream's client: what it is, and what it can answer for its callers.
pub(crate) fn client_config() -> ClientConfig {
    ClientConfig::new(
        capabilities(),
        Implementation::new("mcp-gatekeeper", env!("CARGO_PKG_VERSION")),
    )
}

/// What the gateway can answer for its callers as an upstream's client.
fn capabilities() -> ClientCapabilities {
    let mut caps = ClientCapabilities::default();
    caps.sampling = Some(Default::default());
    caps.elicitation = Some(Default::default());
    caps.roots = Some(Default::default());
    caps
}

/// Whether the upstream session speaks a protocol without the handshake (2026-07-28), whose
/// client states its capabilities and log level in each request's `_meta`.
pub(crate) fn per_request(peer: &Peer<RoleClient>) -> bool {
    peer.peer_info()
        .is_some_and(|info| !info.protocol_version.has_initialize())
}

/// What an upstream call asks for on its caller's behalf, where the upstream takes it per
/// request (protocol 2026-07-28).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Asking {
    /// The caller declared the tasks extension: the upstream is told its client takes tasks
    /// (only then, so that a caller which cannot follow a task is answered in full).
    pub(crate) tasks: bool,
    /// The log messages the caller wants, at this level and above.
    pub(crate) log_level: Option<LoggingLevel>,
}

/// How a request goes to an upstream for a caller that asks for `asking`.
pub(crate) fn options(peer: &Peer<RoleClient>, asking: Asking) -> PeerRequestOptions {
    let mut options = PeerRequestOptions::default();
    if !per_request(peer) {
        return options;
    }
    let mut meta = RequestMetaObject::default();
    if asking.tasks {
        let mut caps = capabilities();
        caps.extensions
            .get_or_insert_with(Default::default)
            .insert(TASKS_EXTENSION_ID.to_owned(), Default::default());
        meta.set_client_capabilities(caps);
    }
    if let Some(level) = asking.log_level {
        meta.set_log_level(level);
    }
    if !meta.0.0.is_empty() {
        options.meta = Some(meta);
    }
    options
}

/// At most this many input-required rounds of one upstream call.
pub(crate) const MAX_ROUNDS: usize = 16;

/// Follows an upstream's input-required results (protocol 2026-07-28) for the call `params`
/// whose first result is `result`: each round's requests are answered by the caller (see
/// [`Relay::answer_all`], held for the 2026-07-28 call behind `to` if given) and the call is
/// made again with those answers and the upstream's state, until the upstream gives another
/// kind of result. The upstream's state never leaves the gateway.
pub(crate) async fn settle(
    peer: &Peer<RoleClient>,
    relay: &Relay,
    mut params: CallToolRequestParams,
    mut result: ServerResult,
    to: Option<&PendingSender>,
    asking: Asking,
) -> Result<ServerResult, ServiceError> {
    for _ in 0..MAX_ROUNDS {
        let ServerResult::InputRequiredResult(round) = result else {
            return Ok(result);
        };
        (params.input_responses, params.request_state) = answer_round(relay, round, to).await?;
        let again = ClientRequest::CallToolRequest(CallToolRequest::new(params.clone()));
        result = peer
            .send_request_with_option(again, options(peer, asking))
            .await?
            .await_response()
            .await?;
    }
    Err(ServiceError::InputRequiredRoundsExceeded {
        max_rounds: MAX_ROUNDS,
    })
}

/// Answers one input-required round of an upstream through the caller (see
/// [`Relay::answer_all`]): the responses, and the upstream's state, to send with the next try.
pub(crate) async fn answer_round(
    relay: &Relay,
    round: InputRequiredResult,
    to: Option<&PendingSender>,
) -> Result<(Option<InputResponses>, Option<String>), ServiceError> {
    let (keys, requests): (Vec<String>, Vec<(Option<String>, InputRequest)>) = round
        .input_requests
        .unwrap_or_default()
        .into_iter()
        .map(|(key, request)| (key.clone(), (Some(key), request)))
        .unzip();
    let answers = relay.answer_all(requests, to).await;
    let mut responses = InputResponses::new();
    for (key, answer) in keys.into_iter().zip(answers) {
        responses.insert(key, answer.map_err(ServiceError::McpError)?);
    }
    Ok((
        (!responses.is_empty()).then_some(responses),
        round.request_state,
    ))
}

fn relay_error(e: rmcp::service::ServiceError) -> ErrorData {
    match e {
        rmcp::service::ServiceError::McpError(e) => e,
        other => ErrorData::internal_error(format!("the client did not answer: {other}"), None),
    }
}

impl super::listen::Hears for Relay {
    async fn heard(&self, change: Change<'_>) {
        self.announce(change).await;
    }
}

impl ClientHandler for Relay {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let held = InputRequest::CreateMessage(CreateMessageRequest::new(params.clone()));
        if let Some(answer) = self.held(held).await {
            return answer;
        }
        let peer = self.peer().ok_or_else(Self::no_peer)?;
        peer.create_message(params).await.map_err(relay_error)
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let held = InputRequest::Elicitation(ElicitRequest::new(params.clone()));
        if let Some(answer) = self.held(held).await {
            return answer;
        }
        let peer = self.peer().ok_or_else(Self::no_peer)?;
        peer.create_elicitation(params).await.map_err(relay_error)
    }

    async fn list_roots(
        &self,
        _: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let held = InputRequest::ListRoots(ListRootsRequest {
            method: Default::default(),
            extensions: Default::default(),
        });
        if let Some(answer) = self.held(held).await {
            return answer;
        }
        let peer = self.peer().ok_or_else(Self::no_peer)?;
        peer.list_roots().await.map_err(relay_error)
    }

    async fn on_progress(
        &self,
        mut params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        // Only progress of a call whose caller asked for it, under the caller's own token.
        let mapped = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&params.progress_token)
            .cloned();
        if let Some((token, to)) = mapped {
            params.progress_token = token;
            let _ = to.try_send(params);
        }
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        if let Some(peer) = self.peer() {
            let _ = peer.notify_logging_message(params).await;
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.announce(Change::Updated(&params.uri)).await;
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.announce(Change::Tools).await;
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.announce(Change::Prompts).await;
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.announce(Change::Resources).await;
    }

    fn get_info(&self) -> ClientConfig {
        client_config()
    }
}
