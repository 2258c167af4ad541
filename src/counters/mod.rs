//! The counters behind limits and budgets, and the [`LimitStore`] trait that keeps them.
//!
//! A call is admitted by one atomic step over every counter that applies to it: each rate
//! window takes one call, each parallel limit one slot, each budget a reservation of the
//! tool's price. Either all of them take their share or none does, so two limits never
//! half-admit a call and exactness holds under any concurrency. What was taken is handed back
//! by [`LimitStore::finish`]: slots are freed, and each reservation is either settled with the
//! call's final cost or released.
//!
//! [`InProcessStore`] keeps the counters in this process, in sharded maps (a call locks only
//! the shards of its own counters, in a fixed order). A store shared by several replicas (the
//! Redis one of the gateway) implements the same three operations as single atomic scripts.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::engine::{Level, Nanos};

mod in_process;

#[cfg(feature = "postgres")]
pub(crate) use in_process::period_start;
pub use in_process::{InProcessStore, Usage};

/// One counter a call is checked against.
#[derive(Clone, Debug, PartialEq)]
pub struct CounterOp {
    /// The counter's name (a level's subject and what it counts; never a key).
    pub name: Arc<str>,
    /// What the call takes from it.
    pub kind: CounterKind,
    /// For a budget: the level and id its spend is recorded under, where a store that
    /// persists budgets reads what was spent before it started.
    pub ledger: Option<(Level, Arc<str>)>,
}

/// What a call takes from one counter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CounterKind {
    /// One call from a window of `window` that starts with the first call counted in it.
    Rate {
        /// Calls per window.
        limit: u64,
        /// The window's length.
        window: Duration,
    },
    /// One of `limit` slots, held until the call finishes.
    Parallel {
        /// Slots.
        limit: u64,
    },
    /// A reservation of `amount` against `max` for the period (`None`: for ever). Periods are
    /// whole multiples of their length since the Unix epoch.
    Budget {
        /// The most that may be spent in a period.
        max: Nanos,
        /// The period's length.
        period: Option<Duration>,
        /// The price reserved for this call.
        amount: Nanos,
    },
}

/// The answer to [`LimitStore::admit`].
#[derive(Debug)]
pub enum Admission {
    /// Every counter took its share; give it back with [`LimitStore::finish`].
    Admitted(Taken),
    /// The counter at `index` of the request refused; no counter changed.
    Refused {
        /// Its index in the slice given to `admit`.
        index: usize,
        /// When it would admit a call again, if that is known.
        retry_after: Option<Duration>,
    },
}

/// What an admitted call holds: parallel slots and budget reservations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Taken {
    /// The parallel counters holding one slot each.
    pub slots: Vec<Arc<str>>,
    /// The budget counters holding a reservation: name, amount, the budget's period.
    pub reserved: Vec<(Arc<str>, Nanos, Option<Duration>)>,
    /// A number the store may use to name this admission (zero when it does not).
    pub token: u64,
}

impl Taken {
    /// What `counters` take when all admit.
    #[must_use]
    pub fn of(counters: &[CounterOp]) -> Self {
        let mut taken = Self::default();
        for c in counters {
            match c.kind {
                CounterKind::Rate { .. } => {}
                CounterKind::Parallel { .. } => taken.slots.push(Arc::clone(&c.name)),
                CounterKind::Budget { amount, period, .. } => {
                    taken.reserved.push((Arc::clone(&c.name), amount, period));
                }
            }
        }
        taken
    }

    /// Whether nothing needs to be handed back.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.reserved.is_empty()
    }
}

/// The store could not answer (unreachable, timed out, a broken reply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the limit store failed: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// The answer of [`LimitStore::admit`], at once or later.
pub enum Admitting {
    /// Answered at once.
    Ready(Option<Result<Admission, StoreError>>),
    /// Answered when the future is. It must hand back what it took if it is dropped after the
    /// store admitted the call.
    Later(Pin<Box<dyn Future<Output = Result<Admission, StoreError>> + Send>>),
}

impl fmt::Debug for Admitting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ready(_) => "Admitting::Ready",
            Self::Later(_) => "Admitting::Later",
        })
    }
}

impl Future for Admitting {
    type Output = Result<Admission, StoreError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Ready(r) => Poll::Ready(r.take().expect("polled after completion")),
            Self::Later(f) => f.as_mut().poll(cx),
        }
    }
}

/// What was spent in the current period of one budget before this store counted it.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetSeed {
    /// The budget's counter.
    pub name: Arc<str>,
    /// Its period (`None`: for ever).
    pub period: Option<Duration>,
    /// What was spent in the period `now` is in.
    pub spent: Nanos,
}

/// A store operation answered later.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// Where limit counters live.
pub trait LimitStore: Send + Sync + 'static {
    /// Takes a share of every counter, or of none.
    fn admit(&self, counters: &[CounterOp]) -> Admitting;

    /// Gives back what an admitted call took: frees its slots, and settles each reservation at
    /// `spent` (the call's final cost) or, when `spent` is `None`, releases it. Never blocks.
    fn finish(&self, taken: Taken, spent: Option<Nanos>);

    /// Whether the store answers, for `/health`: `None` when it does, else why not.
    fn problem(&self) -> Option<String> {
        None
    }

    /// Takes over what was spent before the store counted a budget: for each seed whose budget
    /// the store holds nothing for in the current period, that period starts with `spent`
    /// (what is already counted is never replaced). Stores that keep no budgets ignore it.
    fn seed(&self, seeds: Vec<BudgetSeed>) -> StoreFuture<()> {
        let _ = seeds;
        Box::pin(std::future::ready(Ok(())))
    }
}

impl<T: LimitStore + ?Sized> LimitStore for Arc<T> {
    fn admit(&self, counters: &[CounterOp]) -> Admitting {
        (**self).admit(counters)
    }
    fn finish(&self, taken: Taken, spent: Option<Nanos>) {
        (**self).finish(taken, spent);
    }
    fn problem(&self) -> Option<String> {
        (**self).problem()
    }
    fn seed(&self, seeds: Vec<BudgetSeed>) -> StoreFuture<()> {
        (**self).seed(seeds)
    }
}
