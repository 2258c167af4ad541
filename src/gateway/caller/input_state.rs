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

use rmcp::model::ErrorData;

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
