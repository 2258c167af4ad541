//! Which key opened which MCP session.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::engine::KeyDigest;

/// Session ids bound to the key digest that opened them, bounded in size.
///
/// When full, the oldest binding is dropped; that session's next request gets 404 and its client
/// starts a new session, which is the protocol's normal recovery.
#[derive(Debug)]
pub struct SessionBindings {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    owners: HashMap<Box<str>, Option<KeyDigest>>,
    order: VecDeque<Box<str>>,
}

impl Default for SessionBindings {
    fn default() -> Self {
        Self::with_capacity(100_000)
    }
}

impl SessionBindings {
    /// Bindings that keep at most `capacity` sessions.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // widens access (at worst a binding is missing: 404), so recover the guard.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `owner` opened `session`.
    pub fn bind(&self, session: &str, owner: Option<KeyDigest>) {
        let mut inner = self.lock();
        if inner.owners.insert(session.into(), owner).is_none() {
            inner.order.push_back(session.into());
        }
        while inner.owners.len() > self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.owners.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Forgets a session (it was deleted).
    pub fn unbind(&self, session: &str) {
        let mut inner = self.lock();
        if inner.owners.remove(session).is_some() {
            inner.order.retain(|s| &**s != session);
        }
    }

    /// Whether `session` was opened by `owner`.
    #[must_use]
    pub fn is_bound_to(&self, session: &str, owner: Option<&KeyDigest>) -> bool {
        self.lock()
            .owners
            .get(session)
            .is_some_and(|o| o.as_ref() == owner)
    }

    /// How many sessions are bound.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().owners.len()
    }

    /// Whether no session is bound.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_unbinds_and_evicts_oldest() {
        let a = KeyDigest::of("a");
        let b = KeyDigest::of("b");
        let s = SessionBindings::with_capacity(2);
        s.bind("s1", Some(a));
        assert!(s.is_bound_to("s1", Some(&a)));
        assert!(!s.is_bound_to("s1", Some(&b)));
        assert!(!s.is_bound_to("s1", None));
        assert!(!s.is_bound_to("nope", Some(&a)));
        s.bind("s2", Some(b));
        s.bind("s3", Some(b));
        assert_eq!(s.len(), 2);
        assert!(!s.is_bound_to("s1", Some(&a)), "oldest evicted");
        s.unbind("s2");
        assert!(!s.is_bound_to("s2", Some(&b)));
        assert_eq!(s.len(), 1);
    }
}
