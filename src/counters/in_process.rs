//! [`InProcessStore`]: the counters of one process, in sharded maps.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{
    Admission, Admitting, BudgetSeed, CounterKind, CounterOp, LimitStore, StoreFuture, Taken,
};
use crate::engine::Nanos;

/// The state of one counter, as [`InProcessStore::usage`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Calls counted in the current rate window.
    pub calls: u64,
    /// Calls in flight.
    pub in_flight: u64,
    /// Settled spend in the current budget period.
    pub spent: Nanos,
    /// Reservations not yet settled or released.
    pub reserved: Nanos,
}

#[derive(Clone, Copy, Debug)]
enum Counter {
    Rate {
        start: Duration,
        calls: u64,
    },
    Parallel {
        in_flight: u64,
    },
    Budget {
        start: Duration,
        period: Option<Duration>,
        spent: u64,
        reserved: u64,
    },
}

struct Shard {
    map: HashMap<Arc<str>, Counter>,
    sweep_at: usize,
}

const SHARDS: usize = 64;
const FIRST_SWEEP: usize = 4_096;

/// Limit counters in this process: exact, with no lock shared by unrelated callers.
pub struct InProcessStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    clock: Box<dyn Fn() -> Duration + Send + Sync>,
}

impl fmt::Debug for InProcessStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessStore").finish_non_exhaustive()
    }
}

impl Default for InProcessStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessStore {
    /// An empty store on the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::with_clock(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
        })
    }

    /// An empty store whose time is `clock`: time since the Unix epoch (budget periods are
    /// aligned to it). Tests move time forward with it.
    #[must_use]
    pub fn with_clock(clock: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                        sweep_at: FIRST_SWEEP,
                    })
                })
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            clock: Box::new(clock),
        }
    }

    fn shard_of(&self, name: &str) -> usize {
        (self.hasher.hash_one(name) as usize) % SHARDS
    }

    /// Locks the shards of `names`, in index order (so two calls never wait on each other in
    /// a circle); returns the guards and, for each name, the position of its guard.
    fn lock<'a>(
        &'a self,
        names: impl Iterator<Item = &'a str>,
    ) -> (Vec<MutexGuard<'a, Shard>>, Vec<usize>) {
        let of: Vec<usize> = names.map(|n| self.shard_of(n)).collect();
        let mut order = of.clone();
        order.sort_unstable();
        order.dedup();
        let guards = order
            .iter()
            .map(|&i| {
                self.shards[i]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            })
            .collect();
        let at = of
            .iter()
            .map(|i| order.binary_search(i).expect("locked above"))
            .collect();
        (guards, at)
    }

    /// The state of one counter (zero when it has none).
    #[must_use]
    pub fn usage(&self, name: &str) -> Usage {
        let now = (self.clock)();
        let shard = self.shards[self.shard_of(name)]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match shard.map.get(name) {
            None => Usage::default(),
            Some(Counter::Rate { calls, .. }) => Usage {
                calls: *calls,
                ..Usage::default()
            },
            Some(Counter::Parallel { in_flight }) => Usage {
                in_flight: *in_flight,
                ..Usage::default()
            },
            Some(&Counter::Budget {
                start,
                period,
                spent,
                reserved,
            }) => Usage {
                spent: Nanos(roll(start, spent, period, now).1),
                reserved: Nanos(reserved),
                ..Usage::default()
            },
        }
    }

    /// Calls in flight and money reserved, over every counter: both are zero when nothing is
    /// running (what a leak check after a load reads).
    #[must_use]
    pub fn outstanding(&self) -> (u64, Nanos) {
        let (mut slots, mut reserved) = (0, 0u64);
        for shard in &*self.shards {
            let shard = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for entry in shard.map.values() {
                match entry {
                    Counter::Parallel { in_flight } => slots += in_flight,
                    Counter::Budget { reserved: r, .. } => reserved += r,
                    Counter::Rate { .. } => {}
                }
            }
        }
        (slots, Nanos(reserved))
    }
}

/// Whether `op` admits one more call against `entry` at `now`; `Err` holds when it would.
fn check(
    entry: Option<&Counter>,
    kind: CounterKind,
    now: Duration,
) -> Result<(), Option<Duration>> {
    match (kind, entry) {
        (CounterKind::Rate { limit, window }, Some(Counter::Rate { start, calls }))
            if now < *start + window && *calls >= limit =>
        {
            Err(Some(*start + window - now))
        }
        (CounterKind::Parallel { limit }, Some(Counter::Parallel { in_flight }))
            if *in_flight >= limit =>
        {
            Err(None)
        }
        (
            CounterKind::Budget {
                max,
                period,
                amount,
            },
            entry,
        ) => {
            let (spent, reserved) = match entry {
                Some(&Counter::Budget {
                    start,
                    spent,
                    reserved,
                    ..
                }) => (roll(start, spent, period, now).1, reserved),
                _ => (0, 0),
            };
            let used = spent.saturating_add(reserved);
            // Over the budget with this price, or spent in full (then even a free call waits
            // for the next period, as a spent LiteLLM budget refuses everything).
            if used.saturating_add(amount.0) > max.0 || (max.0 > 0 && used >= max.0) {
                let reset = period.map(|p| period_start(now, p) + p - now);
                Err(reset)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// Takes `kind`'s share from `entry` (already checked).
fn take(entry: Option<&mut Counter>, kind: CounterKind, now: Duration) -> Counter {
    match (kind, entry.map(|e| *e)) {
        (CounterKind::Rate { window, .. }, Some(Counter::Rate { start, calls }))
            if now < start + window =>
        {
            Counter::Rate {
                start,
                calls: calls + 1,
            }
        }
        (CounterKind::Rate { .. }, _) => Counter::Rate {
            start: now,
            calls: 1,
        },
        (CounterKind::Parallel { .. }, Some(Counter::Parallel { in_flight })) => {
            Counter::Parallel {
                in_flight: in_flight + 1,
            }
        }
        (CounterKind::Parallel { .. }, _) => Counter::Parallel { in_flight: 1 },
        (
            CounterKind::Budget { period, amount, .. },
            Some(Counter::Budget {
                start,
                spent,
                reserved,
                ..
            }),
        ) => {
            let (start, spent) = roll(start, spent, period, now);
            Counter::Budget {
                start,
                period,
                spent,
                reserved: reserved.saturating_add(amount.0),
            }
        }
        (CounterKind::Budget { period, amount, .. }, _) => Counter::Budget {
            start: period.map_or(Duration::ZERO, |p| period_start(now, p)),
            period,
            spent: 0,
            reserved: amount.0,
        },
    }
}

/// The budget period `now` is in, and what was spent in it: periods are whole multiples of
/// their length since the Unix epoch (a `1d` budget starts again at midnight UTC), so every
/// replica and a restarted process agree on them.
fn roll(start: Duration, spent: u64, period: Option<Duration>, now: Duration) -> (Duration, u64) {
    match period {
        Some(p) => {
            let current = period_start(now, p);
            if current == start {
                (start, spent)
            } else {
                (current, 0)
            }
        }
        None => (start, spent),
    }
}

/// The start of the period of length `p` that `now` is in.
pub(crate) fn period_start(now: Duration, p: Duration) -> Duration {
    let (now, p) = (now.as_millis(), p.as_millis().max(1));
    Duration::from_millis(u64::try_from(now - now % p).unwrap_or(u64::MAX))
}

impl LimitStore for InProcessStore {
    fn seed(&self, seeds: Vec<BudgetSeed>) -> StoreFuture<()> {
        let now = (self.clock)();
        for seed in seeds {
            let start = seed.period.map_or(Duration::ZERO, |p| period_start(now, p));
            let mut shard = self.shards[self.shard_of(&seed.name)]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = shard.map.entry(Arc::clone(&seed.name));
            let held = match entry {
                std::collections::hash_map::Entry::Occupied(ref e) => match *e.get() {
                    Counter::Budget {
                        start: s, reserved, ..
                    } => (s == start, reserved),
                    _ => (false, 0),
                },
                std::collections::hash_map::Entry::Vacant(_) => (false, 0),
            };
            if !held.0 {
                let fresh = Counter::Budget {
                    start,
                    period: seed.period,
                    spent: seed.spent.0,
                    reserved: held.1,
                };
                match entry {
                    std::collections::hash_map::Entry::Occupied(mut e) => {
                        e.insert(fresh);
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(fresh);
                    }
                }
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn admit(&self, counters: &[CounterOp]) -> Admitting {
        let now = (self.clock)();
        let (mut guards, at) = self.lock(counters.iter().map(|c| &*c.name));
        for (i, c) in counters.iter().enumerate() {
            if let Err(retry_after) = check(guards[at[i]].map.get(&c.name), c.kind, now) {
                return Admitting::Ready(Some(Ok(Admission::Refused {
                    index: i,
                    retry_after,
                })));
            }
        }
        for (i, c) in counters.iter().enumerate() {
            let shard = &mut guards[at[i]];
            let entry = take(shard.map.get_mut(&c.name), c.kind, now);
            shard.map.insert(Arc::clone(&c.name), entry);
        }
        for shard in &mut guards {
            if shard.map.len() >= shard.sweep_at {
                sweep(shard, now);
            }
        }
        Admitting::Ready(Some(Ok(Admission::Admitted(Taken::of(counters)))))
    }

    fn finish(&self, taken: Taken, spent: Option<Nanos>) {
        if taken.is_empty() {
            return;
        }
        let now = (self.clock)();
        let names = taken
            .slots
            .iter()
            .map(|n| &**n)
            .chain(taken.reserved.iter().map(|(n, ..)| &**n));
        let (mut guards, at) = self.lock(names);
        let (slot_at, budget_at) = at.split_at(taken.slots.len());
        for (name, &g) in taken.slots.iter().zip(slot_at) {
            let map = &mut guards[g].map;
            if let Some(Counter::Parallel { in_flight }) = map.get_mut(name) {
                *in_flight = in_flight.saturating_sub(1);
                if *in_flight == 0 {
                    map.remove(name);
                }
            }
        }
        for ((name, amount, _), &g) in taken.reserved.iter().zip(budget_at) {
            if let Some(Counter::Budget {
                start,
                period,
                spent: s,
                reserved,
            }) = guards[g].map.get_mut(name)
            {
                // A call that ends in a later period is spent in that one.
                (*start, *s) = roll(*start, *s, *period, now);
                *reserved = reserved.saturating_sub(amount.0);
                if let Some(cost) = spent {
                    *s = s.saturating_add(cost.0);
                }
            }
        }
    }
}

/// Drops counters that hold nothing: passed rate windows (a window's length is not stored, so
/// only those idle for a day), free parallel counters, budgets with nothing reserved or spent.
fn sweep(shard: &mut Shard, now: Duration) {
    const IDLE: Duration = Duration::from_secs(86_400);
    shard.map.retain(|_, e| match *e {
        Counter::Rate { start, .. } => now < start + IDLE,
        Counter::Parallel { in_flight } => in_flight > 0,
        Counter::Budget {
            start,
            period,
            spent,
            reserved,
        } => roll(start, spent, period, now).1 > 0 || reserved > 0,
    });
    shard.sweep_at = (shard.map.len() * 2).max(FIRST_SWEEP);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn op(name: &str, kind: CounterKind) -> CounterOp {
        CounterOp {
            name: name.into(),
            kind,
            ledger: None,
        }
    }

    fn clocked() -> (InProcessStore, Arc<AtomicU64>) {
        let ms = Arc::new(AtomicU64::new(1_000));
        let seen = Arc::clone(&ms);
        let store =
            InProcessStore::with_clock(move || Duration::from_millis(seen.load(Ordering::SeqCst)));
        (store, ms)
    }

    fn admit(store: &InProcessStore, ops: &[CounterOp]) -> Admission {
        match store.admit(ops) {
            Admitting::Ready(Some(r)) => r.unwrap(),
            _ => unreachable!("the in-process store answers at once"),
        }
    }

    #[test]
    fn a_refusal_by_one_counter_takes_nothing_from_the_others() {
        let (store, _) = clocked();
        let rate = CounterKind::Rate {
            limit: 5,
            window: Duration::from_secs(60),
        };
        let ops = [
            op("key:rpm", rate),
            op("team:parallel", CounterKind::Parallel { limit: 1 }),
        ];
        let Admission::Admitted(first) = admit(&store, &ops) else {
            panic!("the first call is admitted")
        };
        match admit(&store, &ops) {
            Admission::Refused { index: 1, .. } => {}
            other => panic!("the parallel limit refuses: {other:?}"),
        }
        assert_eq!(
            store.usage("key:rpm").calls,
            1,
            "the refused call took no rate slot"
        );
        store.finish(first, None);
        assert_eq!(store.outstanding(), (0, Nanos(0)));
    }

    #[test]
    fn a_rate_window_starts_with_its_first_call_and_rolls_over() {
        let (store, ms) = clocked();
        let ops = [op(
            "k:rpm",
            CounterKind::Rate {
                limit: 2,
                window: Duration::from_secs(60),
            },
        )];
        assert!(matches!(admit(&store, &ops), Admission::Admitted(_)));
        ms.fetch_add(30_000, Ordering::SeqCst);
        assert!(matches!(admit(&store, &ops), Admission::Admitted(_)));
        match admit(&store, &ops) {
            Admission::Refused {
                retry_after: Some(r),
                ..
            } => assert_eq!(r, Duration::from_secs(30)),
            other => panic!("the third call in the window is refused: {other:?}"),
        }
        ms.fetch_add(30_000, Ordering::SeqCst);
        assert!(matches!(admit(&store, &ops), Admission::Admitted(_)));
    }

    proptest::proptest! {
        /// Whatever the interleaving of reservations, settlements (at no more than was
        /// reserved) and releases, what is settled never exceeds the budget, nothing goes
        /// negative, and once every call has ended nothing stays reserved.
        #[test]
        fn settled_spend_never_exceeds_the_budget(
            steps in proptest::collection::vec((0u8..3, 0u64..400_000_000, 0usize..64, 0u64..=100), 1..200)
        ) {
            let (store, _) = clocked();
            let max = Nanos::from_dollars(1.0);
            let mut open: Vec<(Taken, u64)> = Vec::new();
            let mut settled = 0u64;
            for (what, amount, pick, percent) in steps {
                match what {
                    0 => {
                        let ops = [op("b", CounterKind::Budget { max, period: None, amount: Nanos(amount) })];
                        if let Admission::Admitted(t) = admit(&store, &ops) {
                            open.push((t, amount));
                        }
                    }
                    _ if open.is_empty() => {}
                    1 => {
                        let (t, amount) = open.swap_remove(pick % open.len());
                        let cost = amount * percent / 100;
                        settled += cost;
                        store.finish(t, Some(Nanos(cost)));
                    }
                    _ => {
                        let (t, _) = open.swap_remove(pick % open.len());
                        store.finish(t, None);
                    }
                }
                let usage = store.usage("b");
                proptest::prop_assert!(usage.spent.0 + usage.reserved.0 <= max.0);
                proptest::prop_assert_eq!(usage.spent.0, settled);
            }
            for (t, _) in open.drain(..) {
                store.finish(t, None);
            }
            proptest::prop_assert!(settled <= max.0);
            proptest::prop_assert_eq!(store.outstanding(), (0, Nanos(0)));
        }
    }

    #[test]
    fn a_budget_reserves_settles_releases_and_starts_again_each_period() {
        let (store, ms) = clocked();
        let budget = |amount: f64| {
            [op(
                "k:budget",
                CounterKind::Budget {
                    max: Nanos::from_dollars(1.0),
                    period: Some(Duration::from_secs(3_600)),
                    amount: Nanos::from_dollars(amount),
                },
            )]
        };
        let mut held = Vec::new();
        for _ in 0..20 {
            match admit(&store, &budget(0.05)) {
                Admission::Admitted(t) => held.push(t),
                other => panic!("20 reservations of 0.05 fit in 1.00: {other:?}"),
            }
        }
        assert!(matches!(
            admit(&store, &budget(0.05)),
            Admission::Refused { .. }
        ));
        // Released: room again; settled: spent.
        store.finish(held.pop().unwrap(), None);
        match admit(&store, &budget(0.05)) {
            Admission::Admitted(t) => held.push(t),
            other => panic!("a released reservation makes room: {other:?}"),
        }
        for t in held.drain(..) {
            store.finish(t, Some(Nanos::from_dollars(0.05)));
        }
        let usage = store.usage("k:budget");
        assert_eq!(
            (usage.spent, usage.reserved),
            (Nanos::from_dollars(1.0), Nanos(0))
        );
        // Spent in full: even a free call is refused until the period ends.
        match admit(&store, &budget(0.0)) {
            Admission::Refused {
                retry_after: Some(r),
                ..
            } => assert_eq!(
                r,
                Duration::from_secs(3_599),
                "the hour that began at 0 ends"
            ),
            other => panic!("a spent budget refuses: {other:?}"),
        }
        ms.fetch_add(3_600_000, Ordering::SeqCst);
        assert!(matches!(
            admit(&store, &budget(0.05)),
            Admission::Admitted(_)
        ));
    }
}
