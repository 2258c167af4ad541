//! `prompts/get` and `resources/read` of an upstream that may answer with an input-required
//! result (protocol 2026-07-28): a handshake caller is asked the upstream's requests and the
//! upstream asked again with the answers; a 2026-07-28 caller gets each round under a state of
//! the gateway's (see `input_state`).

use futures_util::future::BoxFuture;
use rmcp::model::{
    ErrorData, GetPromptRequestParams, GetPromptResponse, InputRequiredResult, InputResponses,
    ReadResourceRequestParams, ReadResourceResponse, RequestMetaObject,
};
use rmcp::service::{Peer, RequestContext, ServiceError};
use rmcp::{RoleClient, RoleServer};

use super::GatewayHandler;
use crate::gateway::caller::Caller;
use crate::gateway::upstream::client::{MAX_ROUNDS, answer_round};

/// A request an upstream on protocol 2026-07-28 may answer with an input-required result.
pub(crate) trait AsksForInput: Clone + Send + 'static {
    type Response: Send + 'static;
    /// The request's method.
    const METHOD: &'static str;

    /// The caller's answers and state, for asking again.
    fn answers(&mut self) -> (&mut Option<InputResponses>, &mut Option<String>);
    /// The request's `_meta`.
    fn meta_mut(&mut self) -> &mut Option<RequestMetaObject>;
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

macro_rules! asks_for_input {
    ($params:ty, $response:ident, $once:ident, $method:literal) => {
        impl AsksForInput for $params {
            type Response = $response;
            const METHOD: &'static str = $method;

            fn answers(&mut self) -> (&mut Option<InputResponses>, &mut Option<String>) {
                (&mut self.input_responses, &mut self.request_state)
            }

            fn meta_mut(&mut self) -> &mut Option<RequestMetaObject> {
                &mut self.meta
            }

            fn send(
                self,
                peer: Peer<RoleClient>,
            ) -> BoxFuture<'static, Result<Self::Response, ServiceError>> {
                Box::pin(async move { peer.$once(self).await })
            }

            fn round(response: Self::Response) -> Result<InputRequiredResult, Self::Response> {
                match response {
                    $response::InputRequired(round) => Ok(round),
                    other => Err(other),
                }
            }

            fn needing(round: InputRequiredResult) -> Self::Response {
                $response::InputRequired(round)
            }
        }
    };
}

asks_for_input!(
    GetPromptRequestParams,
    GetPromptResponse,
    get_prompt_once,
    "prompts/get"
);
asks_for_input!(
    ReadResourceRequestParams,
    ReadResourceResponse,
    read_resource_once,
    "resources/read"
);

impl GatewayHandler {
    /// Sends `params` (already routed: `name` is the upstream's own name of the prompt or
    /// resource on `server`) and follows the upstream's input-required results: a handshake
    /// caller is asked their requests and the upstream asked again with the answers; a caller on
    /// 2026-07-28 gets each round under a stand-in state (see `input_state`).
    pub(crate) async fn ask_for_input<P: AsksForInput>(
        &self,
        ctx: &RequestContext<RoleServer>,
        server: &str,
        name: &str,
        mut params: P,
    ) -> Result<P::Response, ErrorData> {
        let handshake = !crate::gateway::caller::is_modern(ctx);
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
        let asked = Self::traced(ctx, P::METHOD, params.meta_mut());
        let response = self
            .one(ctx, server, asked, |peer, relay| async move {
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
