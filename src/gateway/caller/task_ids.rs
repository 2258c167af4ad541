//! The tasks of the tasks extension (SEP-2663) that upstreams created for callers: which
//! caller each belongs to, and which upstream runs it under which id.
//!
//! A caller never sees an upstream's task id. It gets one of the gateway's, random, bound to
//! its key: presented by another key, or on a request that may not use the task's server, it
//! is answered exactly as an id that never existed. A binding lasts as long as the upstream
//! keeps the task (its `ttlMs`, which the upstream may change on any `tasks/get`), with a
//! little grace, and at most a day.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The longest a binding is kept, whatever the upstream says.
const LONGEST: Duration = Duration::from_secs(24 * 60 * 60);

/// How long past its TTL a binding outlives the upstream's task, so that the caller gets the
/// upstream's own answer about an expired task rather than ours.
const GRACE: Duration = Duration::from_secs(60);

/// Where one task runs and whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bound {
    /// The server whose upstream created it.
    pub(crate) server: String,
    /// The upstream's id for it.
    pub(crate) upstream: String,
}

struct TaskBinding {
    owner: Option<[u8; 32]>,
    bound: Bound,
    created: Instant,
    until: Instant,
}

/// The tasks of every caller, by the gateway's id.
#[derive(Default)]
pub(crate) struct TaskIds(Mutex<HashMap<String, TaskBinding>>);

fn keep(created: Instant, ttl_ms: Option<u64>) -> Instant {
    let lasting = ttl_ms.map_or(LONGEST, |ms| {
        Duration::from_millis(ms).saturating_add(GRACE).min(LONGEST)
    });
    created + lasting
}

impl TaskIds {
    /// Binds the task `upstream` of `server` to `owner`; the id the caller is given for it.
    pub(crate) fn bind(
        &self,
        owner: Option<[u8; 32]>,
        server: &str,
        upstream: String,
        ttl_ms: Option<u64>,
    ) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = Instant::now();
        let entry = TaskBinding {
            owner,
            bound: Bound {
                server: server.to_owned(),
                upstream,
            },
            created: now,
            until: keep(now, ttl_ms),
        };
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, e| e.until > now);
        map.insert(id.clone(), entry);
        id
    }

    /// The task `id` if it is `owner`'s and still kept.
    pub(crate) fn find(&self, id: &str, owner: Option<[u8; 32]>) -> Option<Bound> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(id)
            .filter(|e| e.owner == owner && e.until > Instant::now())
            .map(|e| e.bound.clone())
    }

    /// The upstream gave the task `id` a new TTL.
    pub(crate) fn retime(&self, id: &str, ttl_ms: Option<u64>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = map.get_mut(id) {
            e.until = keep(e.created, ttl_ms);
        }
    }
}

impl std::fmt::Debug for TaskIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskIds").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_found_by_its_owner_only() {
        let ids = TaskIds::default();
        let alice = Some([1; 32]);
        let id = ids.bind(alice, "jobs", "up-1".into(), Some(60_000));
        assert_ne!(id, "up-1");
        let bound = Bound {
            server: "jobs".into(),
            upstream: "up-1".into(),
        };
        assert_eq!(ids.find(&id, alice), Some(bound));
        assert_eq!(ids.find(&id, Some([2; 32])), None);
        assert_eq!(ids.find(&id, None), None);
        assert_eq!(ids.find("up-1", alice), None);
    }

    #[test]
    fn a_binding_lasts_the_tasks_ttl_and_grace_at_most_a_day() {
        let now = Instant::now();
        assert_eq!(keep(now, Some(1_000)), now + Duration::from_secs(1) + GRACE);
        assert_eq!(keep(now, None), now + LONGEST);
        assert_eq!(keep(now, Some(u64::MAX)), now + LONGEST);
        let ids = TaskIds::default();
        let id = ids.bind(None, "jobs", "up".into(), Some(0));
        ids.retime(&id, Some(0));
        assert!(ids.find(&id, None).is_some(), "the grace is still running");
    }
}
