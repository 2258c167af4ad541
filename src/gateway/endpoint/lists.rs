//! The list methods (tools, prompts, resources, resource templates) answered by the endpoint
//! itself: every upstream the caller may use is asked on its pooled session, each reply
//! decoded as the list it must be (see `upstream_session`), or taken from the session's kept lists (see
//! `list_cache`), and the lists merged and named as the handler merges them.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use http_body_util::combinators::BoxBody;
use serde_json::value::RawValue;

use super::reply::{json_reply, legacy, reply_bytes, stream_response};
use super::route::{Endpoint, Taken, collect};
use crate::gateway::caller::Caller;
use crate::gateway::handler::aggregate::{self, Upstreams};
use crate::gateway::shared::GatewayState;
use crate::gateway::upstream::spec::UpstreamTransport;
use crate::permission::ReplayedLists;
use crate::protocol::sse;

/// Answers the list request (of `L`) of `parts` and `body`, or gives them back untouched for
/// rmcp: every upstream the caller may use is asked on its pooled session directly, each reply
/// decoded as `L` straight from its text, and the lists merged as the handler merges them.
pub(crate) async fn answer<L, B>(
    shared: &Arc<GatewayState>,
    endpoint: &Endpoint,
    session: Option<Arc<str>>,
    parts: http::request::Parts,
    body: B,
) -> Taken
where
    L: crate::gateway::upstream::lists::Listing,
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    #[derive(serde::Deserialize)]
    struct Id {
        id: Box<RawValue>,
    }
    let bytes = match collect(body, endpoint.max_body).await {
        Ok(b) => b,
        Err(refused) => return Taken::Answered(refused),
    };
    let back = |parts, bytes| Taken::Back(Request::from_parts(parts, Full::new(bytes)));
    let Ok(Id { id }) = serde_json::from_slice::<Id>(&bytes) else {
        return back(parts, bytes);
    };
    let upstreams = Upstreams::of(shared, Caller::from_parts(&parts, false));
    let all_http = upstreams.servers().iter().all(|(_, name)| {
        shared
            .upstreams
            .get(name)
            .is_some_and(|s| matches!(s.transport, UpstreamTransport::Http(_)))
    });
    if !all_http {
        return back(parts, bytes);
    }
    if let (Some(sessions), Some(session)) = (&endpoint.sessions, &session)
        && !sessions.usable(session).await
    {
        return back(parts, bytes);
    }
    let downstream = session.as_ref().and_then(|s| shared.downstream(s));
    let replayed = parts.extensions.get::<ReplayedLists>();
    let listed = upstreams
        .all(downstream.as_ref(), |_, relay| async move {
            let seen = match relay.lists().kept(L::LISTED) {
                Ok(items) => return Ok(Some((items, true))),
                Err(seen) => seen,
            };
            let Some(route) = relay.route() else {
                return Ok(None);
            };
            let fetched = crate::gateway::upstream::lists::list_all::<L>(
                &route.http,
                &route.url,
                &route.session,
            )
            .await;
            match fetched {
                Some(Ok(items)) => {
                    relay.lists().keep(L::LISTED, seen, &items);
                    Ok(Some((items, false)))
                }
                Some(Err(e)) => Err(e),
                None => Ok(None),
            }
        })
        .await;
    let mut merged = Vec::with_capacity(listed.len());
    for (id, name, items) in listed {
        // A session not recorded yet: rmcp's, whole (a list is safe to ask again).
        let Some((items, kept)) = items else {
            return back(parts, bytes);
        };
        if let (true, Some(replayed)) = (kept, replayed) {
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
    let result = legacy(L::with_all(items));
    let reply = reply_bytes(&id, Ok(&result));
    Taken::Answered(if endpoint.json_response {
        json_reply(reply)
    } else {
        stream_response(BoxBody::new(Full::new(sse::message_event(
            &String::from_utf8(reply).unwrap_or_default(),
        ))))
    })
}
