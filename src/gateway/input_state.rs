//! The `requestState` of an upstream's input-required result, as a caller on protocol
//! 2026-07-28 sees it (`prompts/get`, `resources/read`).
//!
//! The upstream's own state never reaches the caller. The caller gets a random stand-in that
//! names its key, the server and the prompt or resource it asked for, and expires; when it
//! asks again with the stand-in, the upstream's state is put back. A stand-in is good for one
//! retry, by the caller it was given to, of the request it was given for: it cannot carry one
//! caller's state into another's request, and a state the gateway did not hand out is refused,
//! never forwarded.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use rmcp::model::{
    ErrorData, GetPromptRequestParams, GetPromptResponse, InputRequiredResult, InputResponses,
    ReadResourceRequestParams, ReadResourceResponse,
};
use rmcp::service::{Peer, RequestContext, ServiceError};
use rmcp::{RoleClient, RoleServer};

use super::caller::Caller;
use super::handler::GatewayHandler;
use super::relay::{MAX_ROUNDS, answer_round};

/// How long a caller has to come back with its answers.
const GOOD_FOR: Duration = Duration::from_secs(300);
/// At most this many stand-ins are held; the oldest go first.
const MAX_HELD: usize = 100_000;

/// What a stand-in stands for.
struct Held {
    owner: Option<[u8; 32]>,
    server: String,
    name: String,
    upstream: Option<String>,
    at: Instant,
}

/// The stand-ins handed out and not yet used.
#[derive(Default)]
pub(crate) struct InputStates(Mutex<HashMap<String, Held>>);

impl std::fmt::Debug for InputStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputStates").finish_non_exhaustive()
    }
}

/// The refusal of a state that is not (or no longer) the caller's to use.
pub(crate) fn stale() -> ErrorData {
    ErrorData::invalid_params("unknown or expired requestState", None)
}

impl InputStates {
    /// A stand-in for `upstream`, the state the upstream gave `owner` for `name` on `server`.
    pub(crate) fn hand_out(
        &self,
        owner: Option<[u8; 32]>,
        server: &str,
        name: &str,
        upstream: Option<String>,
    ) -> String {
        let state = uuid::Uuid::new_v4().simple().to_string();
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        held.retain(|_, h| h.at.elapsed() < GOOD_FOR);
        while held.len() >= MAX_HELD {
            let oldest = held
                .iter()
                .min_by_key(|(_, h)| h.at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => held.remove(&k),
                None => break,
            };
        }
        held.insert(
            state.clone(),
            Held {
                owner,
                server: server.to_owned(),
                name: name.to_owned(),
                upstream,
                at: Instant::now(),
            },
        );
        state
    }

    /// The upstream's state behind `state`, if `owner` was given it for `name` on `server` and
    /// it has not expired; the stand-in is used up. Anyone else's attempt leaves it in place.
    pub(crate) fn redeem(
        &self,
        state: &str,
        owner: Option<[u8; 32]>,
        server: &str,
        name: &str,
    ) -> Result<Option<String>, ErrorData> {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(h) = held.get(state) else {
            return Err(stale());
        };
        if h.owner != owner || h.server != server || h.name != name {
            return Err(stale());
        }
        let h = held.remove(state).ok_or_else(stale)?;
        if h.at.elapsed() >= GOOD_FOR {
            return Err(stale());
        }
        Ok(h.upstream)
    }
}

/// A request an upstream on protocol 2026-07-28 may answer with an input-required result.
pub(crate) trait AsksForInput: Clone + Send + 'static {
    type Response: Send + 'static;

    /// The caller's answers and state, for asking again.
    fn answers(&mut self) -> (&mut Option<InputResponses>, &mut Option<String>);
    /// Sends the request once.
    fn send(
        self,
        peer: Peer<RoleClient>,
    ) -> BoxFuture<'static, Result<Self::Response, ServiceError>>;
    /// The round of requests the upstream needs answered, or the final response.
    fn round(response: Self::Response) -> Result<InputRequiredResult, Self::Response>;
    /// The response that hands `round` to the caller.
    fn needing(round: InputRequiredResult) -> Self::Response;
}

impl AsksForInput for GetPromptRequestParams {
    type Response = GetPromptResponse;

    fn answers(&mut self) -> (&mut Option<InputResponses>, &mut Option<String>) {
        (&mut self.input_responses, &mut self.request_state)
    }

    fn send(
        self,
        peer: Peer<RoleClient>,
    ) -> BoxFuture<'static, Result<Self::Response, ServiceError>> {
        Box::pin(async move { peer.get_prompt_once(self).await })
    }

    fn round(response: Self::Response) -> Result<InputRequiredResult, Self::Response> {
        match response {
            GetPromptResponse::InputRequired(round) => Ok(round),
            other => Err(other),
        }
    }

    fn needing(round: InputRequiredResult) -> Self::Response {
        GetPromptResponse::InputRequired(round)
    }
}

impl AsksForInput for ReadResourceRequestParams {
    type Response = ReadResourceResponse;

    fn answers(&mut self) -> (&mut Option<InputResponses>, &mut Option<String>) {
        (&mut self.input_responses, &mut self.request_state)
    }

    fn send(
        self,
        peer: Peer<RoleClient>,
    ) -> BoxFuture<'static, Result<Self::Response, ServiceError>> {
        Box::pin(async move { peer.read_resource_once(self).await })
    }

    fn round(response: Self::Response) -> Result<InputRequiredResult, Self::Response> {
        match response {
            ReadResourceResponse::InputRequired(round) => Ok(round),
            other => Err(other),
        }
    }

    fn needing(round: InputRequiredResult) -> Self::Response {
        ReadResourceResponse::InputRequired(round)
    }
}

impl GatewayHandler {
    /// Sends `params` (already routed: `name` is the upstream's own name of the prompt or
    /// resource on `server`) and follows the upstream's input-required results: a handshake
    /// caller is asked their requests and the upstream asked again with the answers; a caller on
    /// 2026-07-28 gets each round under a stand-in state (see the module docs).
    pub(crate) async fn ask_for_input<P: AsksForInput>(
        &self,
        ctx: &RequestContext<RoleServer>,
        server: &str,
        name: &str,
        mut params: P,
    ) -> Result<P::Response, ErrorData> {
        let handshake = !super::caller::is_modern(ctx);
        let owner = Caller::from_context(ctx).digest.map(|d| d.0);
        let states = &self.shared.input_states;
        {
            let (responses, state) = params.answers();
            if handshake {
                // Neither exists before 2026-07-28: nothing of the caller's is passed on as one.
                (*responses, *state) = (None, None);
            } else if let Some(stand_in) = state.take() {
                *state = states.redeem(&stand_in, owner, server, name)?;
            }
        }
        let response = self
            .one(ctx, server, |peer, relay| async move {
                let mut response = params.clone().send(peer.clone()).await?;
                for _ in 0..MAX_ROUNDS {
                    let round = match P::round(response) {
                        Ok(round) => round,
                        Err(done) => return Ok(done),
                    };
                    if !handshake {
                        return Ok(P::needing(round));
                    }
                    let (responses, state) = params.answers();
                    (*responses, *state) = answer_round(&relay, round, None).await?;
                    response = params.clone().send(peer.clone()).await?;
                }
                Err(ServiceError::InputRequiredRoundsExceeded {
                    max_rounds: MAX_ROUNDS,
                })
            })
            .await?;
        Ok(match P::round(response) {
            Ok(mut round) => {
                let upstream = round.request_state.take();
                round.request_state = Some(states.hand_out(owner, server, name, upstream));
                P::needing(round)
            }
            Err(done) => done,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stand_in_serves_its_owner_once_for_its_request_only() {
        let states = InputStates::default();
        let mine = Some([1; 32]);
        let theirs = Some([2; 32]);
        let s = states.hand_out(mine, "a", "greet", Some("upstream-state".into()));
        assert_ne!(s, "upstream-state");
        assert!(states.redeem(&s, theirs, "a", "greet").is_err());
        assert!(states.redeem(&s, mine, "b", "greet").is_err());
        assert!(states.redeem(&s, mine, "a", "other").is_err());
        assert!(states.redeem(&s, None, "a", "greet").is_err());
        assert_eq!(
            states.redeem(&s, mine, "a", "greet").unwrap().as_deref(),
            Some("upstream-state")
        );
        assert!(states.redeem(&s, mine, "a", "greet").is_err());
        assert!(states.redeem("made-up", mine, "a", "greet").is_err());
    }
}
