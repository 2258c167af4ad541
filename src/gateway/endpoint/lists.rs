//! The list methods (tools, prompts, resources, resource templates) answered by the endpoint
//! itself: every upstream the caller may use is asked on its pooled session, each reply
//! decoded as the list it must be (see the upstream wing's `session`), or taken from the
//! session's kept lists (see the caller wing's `list_cache`), and the lists merged and named as
//! the handler merges them.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use http_body_util::combinators::BoxBody;
use rmcp::model::{
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
};
use serde_json::value::RawValue;

use super::reply::{McpResponse, json_reply, legacy, stream_response, unreadable};
use super::route::Endpoint;
use crate::engine::ToolPrefix;
use crate::gateway::caller::Caller;
use crate::gateway::caller::list_cache::MergedFrom;
use crate::gateway::handler::aggregate::{self, Upstreams};
use crate::gateway::shared::GatewayState;
use crate::gateway::upstream::lists::Listing;
use crate::permission::ReplayedLists;
use crate::protocol::{Method, sse};

/// A list request the endpoint takes (see `route`).
pub(crate) struct Request<'a> {
    pub(crate) method: &'a Method,
    pub(crate) caller: Caller,
    /// The caller's session on a stateful endpoint.
    pub(crate) session: Option<Arc<str>>,
    pub(crate) parts: &'a http::request::Parts,
    /// The body, as the layers read it.
    pub(crate) bytes: &'a [u8],
}

/// Answers the list request `request`, of whichever list its method asks for.
pub(crate) async fn answer(
    shared: &Arc<GatewayState>,
    endpoint: &Endpoint,
    request: Request<'_>,
) -> McpResponse {
    match request.method {
        Method::PromptsList => answer_list::<ListPromptsResult>(shared, endpoint, request).await,
        Method::ResourcesList => {
            answer_list::<ListResourcesResult>(shared, endpoint, request).await
        }
        Method::ResourceTemplatesList => {
            answer_list::<ListResourceTemplatesResult>(shared, endpoint, request).await
        }
        _ => answer_list::<ListToolsResult>(shared, endpoint, request).await,
    }
}

/// Answers a list request of `L`: every upstream the caller may use is asked on its pooled
/// session directly, each reply decoded as `L` straight from its text, and the lists merged as
/// the handler merges them.
async fn answer_list<L: Listing>(
    shared: &Arc<GatewayState>,
    endpoint: &Endpoint,
    request: Request<'_>,
) -> McpResponse {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Box<RawValue>,
    }
    let Ok(Id { id }) = serde_json::from_slice::<Id>(request.bytes) else {
        return unreadable(request.parts);
    };
    let session = request.session;
    let upstreams = Upstreams::of(shared, request.caller);
    let downstream = session.as_ref().and_then(|s| shared.downstream(s));
    let replayed = request.parts.extensions.get::<ReplayedLists>();
    let memo = memo_applies(shared);
    if memo {
        // Every list kept and merged before: the same bytes again, nothing merged or encoded.
        let kept = upstreams
            .all(downstream.as_ref(), |_, relay| async move {
                Ok(relay.lists().kept_id(L::LISTED))
            })
            .await;
        if let Some(from) = merged_from::<L>(shared, kept.iter().map(|(_, n, id)| (n, *id)))
            && let Some(result) = shared.merged_lists.get(&from)
        {
            shared.list_counts.hit(kept.len() as u64);
            if let Some(replayed) = replayed {
                for (_, name, _) in &kept {
                    replayed.mark(name);
                }
            }
            return respond(endpoint, &id, &result);
        }
    }
    let listed = upstreams
        .all(downstream.as_ref(), |peer, relay| async move {
            let seen = match relay.lists().kept(L::LISTED) {
                Ok((items, id)) => return Ok((items, Some(id))),
                Err(seen) => seen,
            };
            let Some(route) = relay.route() else {
                // A session of 2026-07-28, which has no session to post on: asked through
                // rmcp's client.
                let items = L::through_peer(&peer).await?;
                if let Some(tools) =
                    (&items as &dyn std::any::Any).downcast_ref::<Vec<rmcp::model::Tool>>()
                {
                    relay.listed_tools(tools);
                }
                relay.lists().keep(L::LISTED, seen, &items);
                return Ok((items, None));
            };
            let fetched = crate::gateway::upstream::lists::list_all::<L>(route).await;
            let items = match fetched {
                Some(fetched) => fetched?,
                // A session rmcp has not recorded yet: asked through rmcp's client.
                None => L::through_peer(&peer).await?,
            };
            relay.lists().keep(L::LISTED, seen, &items);
            Ok((items, None))
        })
        .await;
    let from = memo
        .then(|| merged_from::<L>(shared, listed.iter().map(|(_, n, (_, id))| (n, *id))))
        .flatten();
    let mut merged = Vec::with_capacity(listed.len());
    for (id, name, (items, kept)) in listed {
        if let (Some(_), Some(replayed)) = (kept, replayed) {
            replayed.mark(&name);
        }
        merged.push((id, name, items));
    }
    let items = aggregate::merge(
        shared,
        Some(L::KIND),
        merged,
        L::name,
        L::rename,
        L::present_ui,
    );
    let result = Bytes::from(serde_json::to_vec(&legacy(L::with_all(items))).unwrap_or_default());
    if let Some(from) = from {
        shared.merged_lists.put(from, result.clone());
    }
    respond(endpoint, &id, &result)
}

/// Answers are kept merged only where names carry their server's prefix: with unprefixed
/// names, each merge also indexes the names it lists.
fn memo_applies(shared: &GatewayState) -> bool {
    shared.gatekeeper.policy().catalog().settings().tool_prefix != ToolPrefix::Never
}

/// What a merge of `L` from the lists `kept` (each server's name, and its kept list's id)
/// is made of; `None` unless every list was a kept one.
fn merged_from<'a, L: Listing>(
    shared: &GatewayState,
    kept: impl Iterator<Item = (&'a String, Option<u64>)>,
) -> Option<MergedFrom> {
    let mut parts = Vec::new();
    for (name, id) in kept {
        parts.push((id?, Arc::from(shared.name_prefix(name))));
    }
    Some(MergedFrom {
        list: L::LISTED,
        parts,
    })
}

/// The reply to the caller's request `id` with `result`, in JSON or as an event.
fn respond(endpoint: &Endpoint, id: &RawValue, result: &[u8]) -> McpResponse {
    let mut reply = Vec::with_capacity(result.len() + id.get().len() + 36);
    reply.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    reply.extend_from_slice(id.get().as_bytes());
    reply.extend_from_slice(br#","result":"#);
    reply.extend_from_slice(result);
    reply.push(b'}');
    if endpoint.json_response {
        json_reply(reply)
    } else {
        stream_response(BoxBody::new(Full::new(sse::message_event(
            &String::from_utf8(reply).unwrap_or_default(),
        ))))
    }
}
