//! The one runner of a [`CostHook`]: its future built and run with any panic caught, and its
//! decision taken; a failing or panicking hook decides nothing and breaks nothing.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures_util::FutureExt;
use serde_json::Value;

use super::event::{CostHook, HookDecision, ToolCallEvent};

/// [`run`]'s future, boxed where it must be kept in a value (a reply body).
pub(crate) type HookFuture = Pin<Box<dyn Future<Output = HookDecision> + Send>>;

/// What `hook` decides about `event` (with the reply, when it was read): the hook is called at
/// once, and its future is `'static`, so nothing of `event` or `reply` is kept.
pub(crate) fn run<H: CostHook>(
    hook: &H,
    event: &ToolCallEvent,
    reply: Option<&Value>,
) -> impl Future<Output = HookDecision> + Send + 'static {
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| hook.on_tool_call(event, reply)));
    async move {
        let outcome = match started {
            Ok(f) => AssertUnwindSafe(f).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        match outcome {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                crate::decision_events::backend_error(&*e);
                HookDecision::default()
            }
            Err(_) => {
                crate::decision_events::warn("the cost hook panicked; the call goes on");
                HookDecision::default()
            }
        }
    }
}
