//! A small cache of filtered list replies.
//!
//! Clients list the same tools again and again, and a large list costs far more to filter than
//! to compare: a reply of 1,000 tools takes about 700 µs to filter and 15 µs to compare byte for
//! byte. An entry is used only when everything the filter's output depends on is the same: the
//! reply's exact bytes, the request's method and id, the mount, the name index (the same `Arc`)
//! and the grant's decisions (the same catalog and permission `Arc`s, the same server sets, see
//! [`Grant::same_decisions`]). Entries hold those `Arc`s, so a pointer can never be reused by
//! another policy while its entry lives; a reload or a new index simply stops matching.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use crate::engine::{Grant, Mount, NameIndex};
use crate::protocol::{Method, RequestId};

/// Replies shorter than this are filtered every time: comparing would save little.
pub(crate) const MIN_LEN: usize = 4 << 10;
const MAX_ENTRIES: usize = 32;
const MAX_BYTES: usize = 16 << 20;

#[derive(Default)]
pub(crate) struct ListMemo {
    entries: Mutex<VecDeque<Arc<Entry>>>,
}

impl std::fmt::Debug for ListMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListMemo").finish_non_exhaustive()
    }
}

pub(crate) struct Entry {
    grant: Grant,
    index: Arc<NameIndex>,
    mount: Mount,
    method: Method,
    id: RequestId,
    input: Box<str>,
    /// `None`: the reply answered another request.
    output: Option<Box<str>>,
}

/// What one lookup compares.
pub(crate) struct Key<'a> {
    pub(crate) grant: &'a Grant,
    pub(crate) index: &'a Arc<NameIndex>,
    pub(crate) mount: &'a Mount,
    pub(crate) method: &'a Method,
    pub(crate) id: &'a RequestId,
}

impl Entry {
    fn matches(&self, key: &Key<'_>, input: &str) -> bool {
        self.input.len() == input.len()
            && self.method == *key.method
            && self.id == *key.id
            && self.mount == *key.mount
            && Arc::ptr_eq(&self.index, key.index)
            && self.grant.same_decisions(key.grant)
    }

    fn bytes(&self) -> usize {
        self.input.len() + self.output.as_ref().map_or(0, |o| o.len())
    }
}

impl ListMemo {
    /// The filtered output for `input`, if it was filtered before under the same key.
    pub(crate) fn get(&self, key: &Key<'_>, input: &str) -> Option<Option<String>> {
        let candidate = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let at = entries.iter().position(|e| e.matches(key, input))?;
            let entry = entries.remove(at)?;
            entries.push_front(entry.clone()); // most recently used first
            entry
        };
        // Outside the lock: a long comparison never holds up other requests.
        (*candidate.input == *input).then(|| candidate.output.as_deref().map(str::to_owned))
    }

    /// Remembers what `input` filtered to.
    pub(crate) fn put(&self, key: &Key<'_>, input: &str, output: Option<&str>) {
        let entry = Arc::new(Entry {
            grant: key.grant.clone(),
            index: key.index.clone(),
            mount: key.mount.clone(),
            method: key.method.clone(),
            id: key.id.clone(),
            input: input.into(),
            output: output.map(Into::into),
        });
        if entry.bytes() > MAX_BYTES / 2 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|e| !(e.matches(key, input) && *e.input == *input));
        entries.push_front(entry);
        let mut total: usize = entries.iter().map(|e| e.bytes()).sum();
        while entries.len() > MAX_ENTRIES || total > MAX_BYTES {
            match entries.pop_back() {
                Some(old) => total -= old.bytes(),
                None => break,
            }
        }
    }
}
