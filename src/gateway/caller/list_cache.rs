//! The lists of one upstream session (tools, prompts, resources, resource templates), kept so
//! that a caller's next `*/list` does not ask the upstream again.
//!
//! A cache belongs to one pooled upstream session, and a session to one caller and one set of
//! credentials: a list is never served to anyone the upstream did not give it to. An entry is
//! dropped when the upstream announces that list changed (`notifications/*/list_changed`, on
//! the session or on its listen stream) and is not used past its time to live. A list fetched
//! while a change was announced is not kept, so an announcement is never lost to a slow fetch.
//! What callers see of a list is still filtered for each request by the permission layer.

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rmcp::service::ServiceError;

/// Which list of an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Listed {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl Listed {
    const ALL: usize = 4;

    fn slot(self) -> usize {
        self as usize
    }
}

/// One list, as fetched.
struct FetchedList {
    at: Instant,
    /// Names this list among every list any cache ever kept (see [`MergedLists`]).
    id: u64,
    items: Arc<dyn Any + Send + Sync>,
}

/// The next [`FetchedList::id`].
static NEXT_LIST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[derive(Default)]
struct Slots {
    entries: [Option<FetchedList>; Listed::ALL],
    /// Counts each list's announced changes: a fetch keeps its result only if none came
    /// while it ran.
    changes: [u64; Listed::ALL],
}

/// How often lists were found kept (`hits`) or asked of the upstream (`misses`), across every
/// cache of a gateway.
#[derive(Debug, Default)]
pub(crate) struct ListCounts {
    pub(crate) hits: std::sync::atomic::AtomicU64,
    pub(crate) misses: std::sync::atomic::AtomicU64,
}

impl ListCounts {
    /// `n` lists were found kept.
    pub(crate) fn hit(&self, n: u64) {
        self.hits.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How many changes of a list had been announced when it was found missing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen(u64);

/// The lists of one upstream session (every clone of its relay shares them).
#[derive(Clone, Default)]
pub(crate) struct ListCache {
    slots: Arc<Mutex<Slots>>,
    /// How long a list is kept; zero keeps none.
    ttl: Duration,
    /// Where lookups are counted.
    counts: Arc<ListCounts>,
}

impl std::fmt::Debug for ListCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListCache").finish_non_exhaustive()
    }
}

impl ListCache {
    /// A cache that keeps each list for `ttl` (zero: keeps none).
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            slots: Arc::default(),
            ttl,
            counts: Arc::default(),
        }
    }

    /// Counts its lookups in `counts`.
    pub(crate) fn counted(mut self, counts: Arc<ListCounts>) -> Self {
        self.counts = counts;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The upstream announced that `list` changed.
    pub(crate) fn changed(&self, list: Listed) {
        let mut slots = self.lock();
        slots.entries[list.slot()] = None;
        slots.changes[list.slot()] += 1;
    }

    /// `list` as kept, else as `fetch` gets it (kept for next time); and whether it was kept
    /// (a replay, which tool pinning must not learn from).
    pub(crate) async fn get_or_fetch<T, Fut>(
        &self,
        list: Listed,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<(Vec<T>, bool), ServiceError>
    where
        T: Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<T>, ServiceError>>,
    {
        let seen = match self.kept(list) {
            Ok((items, _)) => return Ok((items, true)),
            Err(seen) => seen,
        };
        let items = fetch().await?;
        self.keep(list, seen, &items);
        Ok((items, false))
    }

    /// `list` as kept, with its id, if it is; else what to hand [`keep`](Self::keep) with the
    /// list fetched instead.
    pub(crate) fn kept<T>(&self, list: Listed) -> Result<(Vec<T>, u64), Seen>
    where
        T: Clone + Send + Sync + 'static,
    {
        let slots = self.lock();
        if let Some(entry) = &slots.entries[list.slot()]
            && entry.at.elapsed() < self.ttl
            && let Some(items) = entry.items.downcast_ref::<Vec<T>>()
        {
            self.counts.hit(1);
            return Ok((items.clone(), entry.id));
        }
        self.counts
            .misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(Seen(slots.changes[list.slot()]))
    }

    /// The id of `list` as kept, if it is (without a copy of it).
    pub(crate) fn kept_id(&self, list: Listed) -> Option<u64> {
        let slots = self.lock();
        slots.entries[list.slot()]
            .as_ref()
            .filter(|entry| entry.at.elapsed() < self.ttl)
            .map(|entry| entry.id)
    }

    /// Keeps `items`, fetched after [`kept`](Self::kept) answered `seen`, unless a change of
    /// `list` was announced since (or this cache keeps nothing).
    pub(crate) fn keep<T>(&self, list: Listed, seen: Seen, items: &[T])
    where
        T: Clone + Send + Sync + 'static,
    {
        let mut slots = self.lock();
        if !self.ttl.is_zero() && slots.changes[list.slot()] == seen.0 {
            slots.entries[list.slot()] = Some(FetchedList {
                at: Instant::now(),
                id: NEXT_LIST.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                items: Arc::new(items.to_vec()),
            });
        }
    }
}

/// What one merged list answer was made of: which list, and each server's kept list (by id)
/// under the prefix its names were given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MergedFrom {
    pub(crate) list: Listed,
    pub(crate) parts: Vec<(u64, Arc<str>)>,
}

/// The `result` of list answers merged from kept lists only, by what they were made of, so
/// that the next caller answered from the same kept lists gets the same bytes without a merge
/// or an encoding. A list's id is never reused, so an answer is never served for lists other
/// than its own; an entry outlives its lists at most until the memo is full and cleared.
#[derive(Debug, Default)]
pub(crate) struct MergedLists {
    answers: Mutex<std::collections::HashMap<MergedFrom, bytes::Bytes>>,
}

impl MergedLists {
    /// At most this many answers are kept; past it the memo starts again.
    const MAX: usize = 1_024;

    pub(crate) fn get(&self, from: &MergedFrom) -> Option<bytes::Bytes> {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(from)
            .cloned()
    }

    pub(crate) fn put(&self, from: MergedFrom, result: bytes::Bytes) {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        if answers.len() >= Self::MAX {
            answers.clear();
        }
        answers.insert(from, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(v: u32) -> impl FnOnce() -> std::future::Ready<Result<Vec<u32>, ServiceError>> {
        move || std::future::ready(Ok(vec![v]))
    }

    #[tokio::test]
    async fn a_list_is_kept_until_it_changes_or_expires() {
        let cache = ListCache::new(Duration::from_secs(3600));
        assert_eq!(
            cache.get_or_fetch(Listed::Tools, fetch(1)).await.unwrap().0,
            [1]
        );
        assert_eq!(
            cache.get_or_fetch(Listed::Tools, fetch(2)).await.unwrap(),
            (vec![1], true),
            "kept, and said to be"
        );
        // Each list is its own.
        assert_eq!(
            cache
                .get_or_fetch(Listed::Prompts, fetch(3))
                .await
                .unwrap()
                .0,
            [3]
        );
        cache.changed(Listed::Tools);
        assert_eq!(
            cache.get_or_fetch(Listed::Tools, fetch(4)).await.unwrap().0,
            [4]
        );
        assert_eq!(
            cache
                .get_or_fetch(Listed::Prompts, fetch(5))
                .await
                .unwrap()
                .0,
            [3]
        );
        // Expired: fetched again.
        let brief = ListCache::new(Duration::from_nanos(1));
        assert_eq!(
            brief.get_or_fetch(Listed::Tools, fetch(6)).await.unwrap().0,
            [6]
        );
        assert_eq!(
            brief.get_or_fetch(Listed::Tools, fetch(7)).await.unwrap().0,
            [7]
        );
        // A zero time to live keeps nothing.
        let off = ListCache::new(Duration::ZERO);
        assert_eq!(
            off.get_or_fetch(Listed::Tools, fetch(8)).await.unwrap().0,
            [8]
        );
        assert_eq!(
            off.get_or_fetch(Listed::Tools, fetch(9)).await.unwrap().0,
            [9]
        );
    }

    #[tokio::test]
    async fn a_change_announced_during_a_fetch_is_not_lost() {
        let cache = ListCache::new(Duration::from_secs(3600));
        let during = cache.clone();
        let got = cache
            .get_or_fetch(Listed::Tools, || async move {
                during.changed(Listed::Tools);
                Ok::<_, ServiceError>(vec![1])
            })
            .await
            .unwrap();
        assert_eq!(got, (vec![1], false));
        let again = cache.get_or_fetch(Listed::Tools, fetch(2)).await.unwrap().0;
        assert_eq!(again, [2], "the list fetched across a change was not kept");
    }
}
