//! A small cache of filtered list replies.
//!
//! Clients list the same tools again and again, and a large list costs far more to filter than
//! to compare: a reply of 1,000 tools takes about 700 µs to filter and 15 µs to compare byte for
//! byte. An entry is used only when everything the filter's output depends on is the same: the
//! reply's exact bytes but for the value of its id (each request has its own id; the new value
//! must be one JSON number or string, the id of the request being answered), the request's
//! method, the mount, the name index (the same `Arc`) and the grant's decisions (the same catalog
//! and permission `Arc`s, the same server sets, see [`Grant::same_decisions`]). Entries hold those `Arc`s, so a pointer can never be reused by
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
    entries: Mutex<VecDeque<Arc<RememberedList>>>,
}

impl std::fmt::Debug for ListMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListMemo").finish_non_exhaustive()
    }
}

/// What the audit event of a list reports: how many items it offered and what was withheld,
/// by rule (kept with a memorised reply, whose event is recorded again on each use).
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) offered: u32,
    pub(crate) withheld_by: Vec<(&'static str, u32)>,
}

impl Tally {
    pub(crate) fn withhold(&mut self, rule: &'static str) {
        match self.withheld_by.iter_mut().find(|(r, _)| *r == rule) {
            Some((_, n)) => *n += 1,
            None => self.withheld_by.push((rule, 1)),
        }
    }
}

pub(crate) struct RememberedList {
    grant: Grant,
    pins: u64,
    apps: u64,
    tally: Arc<Tally>,
    index: Arc<NameIndex>,
    mount: Mount,
    method: Method,
    input: Box<str>,
    /// Where the top-level id's value is in `input` and in `output`.
    input_id: (usize, usize),
    output: Box<str>,
    output_id: (usize, usize),
}

/// What one lookup compares besides the text.
pub(crate) struct Key<'a> {
    pub(crate) grant: &'a Grant,
    pub(crate) index: &'a Arc<NameIndex>,
    pub(crate) mount: &'a Mount,
    pub(crate) method: &'a Method,
    /// The pin book's generation when filtering began (a quarantine or an approval changes
    /// what a list may show).
    pub(crate) pins: u64,
    /// The app index's generation (which tools name which UI resource decides which UI
    /// resources a list may show).
    pub(crate) apps: u64,
}

/// Ids are short; a reply whose length differs by more than this is another reply.
const MAX_ID_GROWTH: usize = 64;

impl RememberedList {
    fn same_key(&self, key: &Key<'_>) -> bool {
        self.method == *key.method
            && self.pins == key.pins
            && self.apps == key.apps
            && self.mount == *key.mount
            && Arc::ptr_eq(&self.index, key.index)
            && self.grant.same_decisions(key.grant)
    }

    fn bytes(&self) -> usize {
        self.input.len() + self.output.len()
    }

    /// If `input` is this entry's input with only the id's value changed (to one JSON number or
    /// string that `id` matches), the filtered output with that id.
    fn reuse(&self, input: &str, id: &RequestId) -> Option<String> {
        let (start, end) = self.input_id;
        let new_end = (end + input.len()).checked_sub(self.input.len())?;
        if new_end < start || input.len().abs_diff(self.input.len()) > MAX_ID_GROWTH {
            return None;
        }
        // Everything but the id's value is byte for byte the same...
        if input.as_bytes().get(..start)? != self.input.as_bytes().get(..start)?
            || input.as_bytes().get(new_end..)? != self.input.as_bytes().get(end..)?
        {
            return None;
        }
        // ...and the new value is exactly one scalar, the id of the request being answered, so
        // the reply has the same structure and filters to the same output.
        let raw = input.get(start..new_end)?;
        let value: serde_json::Value = serde_json::from_str(raw).ok()?;
        // As the filter itself writes it: the value without the whitespace around it.
        let raw = raw.trim_matches([' ', '\t', '\n', '\r']);
        if !(value.is_number() || value.is_string()) || !id.matches(&value) {
            return None;
        }
        let (out_start, out_end) = self.output_id;
        let mut out = String::with_capacity(self.output.len() + raw.len());
        out.push_str(self.output.get(..out_start)?);
        out.push_str(raw);
        out.push_str(self.output.get(out_end..)?);
        Some(out)
    }
}

impl ListMemo {
    /// The filtered reply for `input`, answering request `id`, if an equal reply (but for its
    /// id) was filtered before under the same key.
    pub(crate) fn get(
        &self,
        key: &Key<'_>,
        input: &str,
        id: &RequestId,
    ) -> Option<(String, Arc<Tally>)> {
        let candidates: Vec<Arc<RememberedList>> = {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries
                .iter()
                .filter(|e| e.input.len().abs_diff(input.len()) <= MAX_ID_GROWTH && e.same_key(key))
                .cloned()
                .collect()
        };
        // Outside the lock: a long comparison never holds up other requests.
        let (hit, out) = candidates
            .iter()
            .find_map(|e| e.reuse(input, id).map(|out| (e, out)))?;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = entries.iter().position(|e| Arc::ptr_eq(e, hit))
            && let Some(e) = entries.remove(at)
        {
            entries.push_front(e); // most recently used first
        }
        Some((out, Arc::clone(&hit.tally)))
    }

    /// Remembers that `input` (its id's value at `input_id`) filtered to `output` (the id's value
    /// at `output_id`).
    pub(crate) fn put(
        &self,
        key: &Key<'_>,
        input: &str,
        input_id: (usize, usize),
        output: &str,
        output_id: (usize, usize),
        tally: Tally,
    ) {
        let entry = Arc::new(RememberedList {
            grant: key.grant.clone(),
            pins: key.pins,
            apps: key.apps,
            tally: Arc::new(tally),
            index: key.index.clone(),
            mount: key.mount.clone(),
            method: key.method.clone(),
            input: input.into(),
            input_id,
            output: output.into(),
            output_id,
        });
        if entry.bytes() > MAX_BYTES / 2 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
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
