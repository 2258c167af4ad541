//! What an admitted tool call holds until it ends: its parallel slots and budget
//! reservations, handed back exactly once, and how its reservation is settled.
//!
//! The limit layer holds a [`CallHold`]; the cost layer, further in, tells it the call's final
//! cost through the [`BudgetSettler`] found in the request's extensions. When the hold is
//! dropped (the reply has gone out, or the call was abandoned) the store gets back what was
//! taken: slots are freed, and each reservation is settled at the final cost (the price when
//! no cost layer said otherwise) or released when the call never reached the inner service,
//! was refused further in, or failed on the way to the upstream.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Response;
use pin_project_lite::pin_project;

use crate::body::ReplyBody;
use crate::counters::{LimitStore, Taken};
use crate::engine::{AppliesTo, Level, Limit, LimitKind, Nanos};
use crate::rejection::Rejection;

#[derive(Debug, Default)]
struct Settle {
    /// The inner service was polled: the call may have reached the upstream.
    sent: AtomicBool,
    /// `Some(Some(cost))`: settle at `cost`; `Some(None)`: release.
    decided: Mutex<Option<Option<Nanos>>>,
}

/// The cost layer's handle on the reservation of the call it observes.
#[derive(Clone, Debug)]
pub(crate) struct BudgetSettler(Arc<Settle>);

impl BudgetSettler {
    /// The call ended and cost `cost` (dollars; a negative or non-finite cost is zero).
    pub(crate) fn settle(&self, cost: f64) {
        self.decide(Some(Nanos::from_dollars(cost)));
    }

    /// The call failed before it reached the upstream: its reservation goes back.
    pub(crate) fn release(&self) {
        self.decide(None);
    }

    fn decide(&self, what: Option<Nanos>) {
        let mut decided = self
            .0
            .decided
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        decided.get_or_insert(what);
    }
}

/// Slots and reservations of one admitted call, handed back once, when dropped.
pub(crate) struct CallHold {
    store: Arc<dyn LimitStore>,
    taken: Option<Taken>,
    price: Nanos,
    settle: Arc<Settle>,
    refused: bool,
}

impl fmt::Debug for CallHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallHold")
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

impl CallHold {
    pub(crate) fn new(store: Arc<dyn LimitStore>, taken: Taken, price: Nanos) -> Self {
        Self {
            store,
            taken: Some(taken),
            price,
            settle: Arc::default(),
            refused: false,
        }
    }

    pub(crate) fn settler(&self) -> BudgetSettler {
        BudgetSettler(Arc::clone(&self.settle))
    }

    /// The inner service is running the call.
    pub(crate) fn sent(&self) {
        self.settle.sent.store(true, Ordering::Relaxed);
    }

    /// Hands everything back now, the reservation released.
    pub(crate) fn release(mut self) {
        self.refused = true;
    }
}

impl Drop for CallHold {
    fn drop(&mut self) {
        let Some(taken) = self.taken.take() else {
            return;
        };
        let spent = if self.refused || !self.settle.sent.load(Ordering::Relaxed) {
            None
        } else {
            let decided = *self
                .settle
                .decided
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            decided.unwrap_or(Some(self.price))
        };
        self.store.finish(taken, spent);
    }
}

/// The inner service's response, with the hold handed back when its body ends: at once for a
/// refusal further in or a failed call.
pub(crate) fn finish_response<B>(response: Response<B>, hold: Option<CallHold>) -> Response<B>
where
    B: ReplyBody + Sync,
    B::Error: Send + Sync,
{
    let Some(hold) = hold else {
        return response;
    };
    if response.extensions().get::<Rejection>().is_some() || !response.status().is_success() {
        hold.release();
        return response;
    }
    response.map(|body| B::wrap(Holding { body, _hold: hold }))
}

pin_project! {
    /// A reply body that keeps its call's hold until it is dropped.
    struct Holding<B> {
        #[pin]
        body: B,
        _hold: CallHold,
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for Holding<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

pin_project! {
    /// Response future of [`Limit`](crate::limit::Limit).
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        Inner { #[pin] fut: F, hold: Option<CallHold> },
        Boxed { fut: BoxFuture<'static, Result<Response<B>, E>> },
        Ready { response: Option<Response<B>> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn inner(fut: F, hold: Option<CallHold>) -> Self {
        Self {
            state: State::Inner { fut, hold },
        }
    }
    pub(crate) fn boxed(fut: BoxFuture<'static, Result<Response<B>, E>>) -> Self {
        Self {
            state: State::Boxed { fut },
        }
    }
    pub(crate) fn ready(response: Response<B>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: ReplyBody + Sync,
    B::Error: Send + Sync,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut, hold } => {
                if let Some(h) = hold {
                    h.sent();
                }
                match std::task::ready!(fut.poll(cx)) {
                    Ok(response) => Poll::Ready(Ok(finish_response(response, hold.take()))),
                    Err(e) => {
                        if let Some(h) = hold.take() {
                            h.release();
                        }
                        Poll::Ready(Err(e))
                    }
                }
            }
            StateProj::Boxed { fut } => fut.as_mut().poll(cx),
            StateProj::Ready { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

/// The text of a refusal by one limit: which limit, whose, and when it resets; never anyone's
/// usage.
pub(crate) struct LimitRefusal<'a> {
    pub(crate) limit: &'a Limit,
    pub(crate) server: &'a str,
    pub(crate) tool: &'a str,
    pub(crate) retry_after: Option<Duration>,
}

impl fmt::Display for LimitRefusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whose = match self.limit.level {
            Level::Key => "this API key",
            Level::Team => "the team of this API key",
            Level::Organization => "the organisation of this API key",
            Level::EndUser => "this end user",
            Level::Agent => "this agent",
        };
        let on = match &self.limit.applies_to {
            AppliesTo::All => String::new(),
            AppliesTo::Server(_) => format!(" to server `{}`", self.server),
            AppliesTo::Tool(..) => format!(" to tool `{}` of server `{}`", self.tool, self.server),
        };
        match self.limit.kind {
            LimitKind::Rate(n) => write!(
                f,
                "Rate limit reached: {whose} may make {n} tool calls per minute{on}; it resets in {}",
                Wait(self.retry_after.unwrap_or(Duration::from_secs(60)))
            ),
            LimitKind::Parallel(n) => write!(
                f,
                "Too many calls at once: {whose} may have {n} tool calls in flight{on}; try again when one of them has finished"
            ),
            LimitKind::Budget { max, .. } => {
                write!(
                    f,
                    "Budget exceeded: {whose} may spend ${} on tool calls",
                    max.dollars()
                )?;
                match self.retry_after {
                    Some(wait) => write!(f, "; it resets in {}", Wait(wait)),
                    None => f.write_str("; it does not reset: ask an administrator to raise it"),
                }
            }
        }
    }
}

/// A wait, rounded up to a unit a person reads.
struct Wait(Duration);

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        let (n, unit) = match s {
            0..=120 => (s.max(1), "second"),
            121..=7_200 => (s.div_ceil(60), "minute"),
            7_201..=172_800 => (s.div_ceil(3_600), "hour"),
            _ => (s.div_ceil(86_400), "day"),
        };
        write!(f, "{n} {unit}{}", if n == 1 { "" } else { "s" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::counters::{Admission, Admitting, CounterKind, CounterOp, InProcessStore};

    /// A hold of one reservation of 0.05 from a budget of 1.00 in `store`.
    fn hold(store: &Arc<InProcessStore>) -> CallHold {
        let op = CounterOp {
            name: "k:budget".into(),
            kind: CounterKind::Budget {
                max: Nanos::from_dollars(1.0),
                period: None,
                amount: Nanos::from_dollars(0.05),
            },
            ledger: None,
        };
        let Admitting::Ready(Some(Ok(Admission::Admitted(taken)))) = store.admit(&[op]) else {
            panic!("admitted")
        };
        CallHold::new(Arc::clone(store) as _, taken, Nanos::from_dollars(0.05))
    }

    #[test]
    fn a_hold_settles_at_the_decided_cost_or_the_price_and_releases_what_never_ran() {
        let store = Arc::new(InProcessStore::new());
        let spent = |store: &InProcessStore| store.usage("k:budget").spent;
        // Dropped before the inner service ran (the client went away first): released.
        drop(hold(&store));
        assert_eq!(spent(&store), Nanos(0));
        // Ran, and nobody said what it cost: the price.
        let h = hold(&store);
        h.sent();
        drop(h);
        assert_eq!(spent(&store), Nanos::from_dollars(0.05));
        // Ran, and the cost layer settled it at 0.01 (a second word does not change it).
        let h = hold(&store);
        h.sent();
        h.settler().settle(0.01);
        h.settler().release();
        drop(h);
        assert_eq!(spent(&store), Nanos::from_dollars(0.06));
        // Ran, but failed on the way to the upstream: released.
        let h = hold(&store);
        h.sent();
        h.settler().release();
        drop(h);
        // Refused further in: released whatever was decided.
        let h = hold(&store);
        h.sent();
        h.settler().settle(0.5);
        h.release();
        assert_eq!(spent(&store), Nanos::from_dollars(0.06));
        assert_eq!(store.outstanding(), (0, Nanos(0)));
    }

    #[test]
    fn waits_read_in_whole_units_rounded_up() {
        let w = |ms: u64| Wait(Duration::from_millis(ms)).to_string();
        assert_eq!(w(0), "1 second");
        assert_eq!(w(1_500), "2 seconds");
        assert_eq!(w(120_000), "120 seconds");
        assert_eq!(w(121_000), "3 minutes");
        assert_eq!(w(3_600_000 * 5), "5 hours");
        assert_eq!(w(86_400_000 * 30), "30 days");
    }
}
