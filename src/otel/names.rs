//! The names spans carry (tools, prompts, servers, rules, error types), kept once and handed
//! to the exporter's thread as small numbers: a span on the request's path carries no string
//! and touches no reference count the exporter's thread also writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics::OTHER;
use crate::metrics::prometheus::state::Quick;

/// A name's number in the [`Names`] it was kept in.
pub(super) type NameId = u16;

/// No name.
pub(super) const NONE: NameId = NameId::MAX;

/// How many distinct names are kept; past them, a name is `_OTHER` (as in the metrics).
const MAX_NAMES: usize = 4096;

/// The kept names: looked up by the request's path, read by number on the exporter's thread.
/// Names are only ever added, so a number once given names the same name for good.
#[derive(Default)]
pub(super) struct Names {
    ids: Mutex<HashMap<Arc<str>, NameId, Quick>>,
    list: Mutex<Vec<Arc<str>>>,
}

impl Names {
    /// `name`'s number, kept now if it is new (or `_OTHER`'s once the table is full).
    pub(super) fn id(&self, name: &str) -> NameId {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = ids.get(name) {
            return *id;
        }
        let name = if ids.len() >= MAX_NAMES { OTHER } else { name };
        if let Some(id) = ids.get(name) {
            return *id;
        }
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        let id = NameId::try_from(list.len()).unwrap_or(NONE - 1);
        let kept: Arc<str> = Arc::from(name);
        list.push(Arc::clone(&kept));
        ids.insert(kept, id);
        id
    }

    /// The names from `local.len()` on, appended to `local`: the exporter's own copy, brought
    /// up to date when it meets a number it does not know yet.
    pub(super) fn catch_up(&self, local: &mut Vec<Arc<str>>) {
        let list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        local.extend(list.iter().skip(local.len()).cloned());
    }
}

/// The exporter's copy of [`Names`]: read without a lock, and without writing anything the
/// request's path reads.
pub(super) struct Known<'a> {
    names: &'a Names,
    local: Vec<Arc<str>>,
}

impl<'a> Known<'a> {
    pub(super) fn new(names: &'a Names) -> Self {
        Self {
            names,
            local: Vec::new(),
        }
    }

    /// Brings the copy up to date if it does not know `id` yet.
    pub(super) fn learn(&mut self, id: NameId) {
        if id != NONE && usize::from(id) >= self.local.len() {
            self.names.catch_up(&mut self.local);
        }
    }

    /// The name numbered `id` (`None` for [`NONE`]); `_OTHER` for one not [learned](Self::learn).
    pub(super) fn name(&self, id: NameId) -> Option<&str> {
        (id != NONE).then(|| self.local.get(usize::from(id)).map_or(OTHER, |n| &**n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_numbers_and_overflow_to_other() {
        let names = Names::default();
        let a = names.id("wiki-search");
        assert_eq!(names.id("wiki-search"), a);
        let b = names.id("wiki-read");
        assert_ne!(a, b);
        let mut known = Known::new(&names);
        known.learn(b);
        assert_eq!(known.name(a), Some("wiki-search"));
        assert_eq!(known.name(NONE), None);
        for i in 0..MAX_NAMES {
            names.id(&format!("tool-{i}"));
        }
        let over = names.id("one-too-many");
        assert_eq!(known.name(over), Some(OTHER), "not learned yet");
        known.learn(over);
        assert_eq!(known.name(over), Some(OTHER));
        assert_eq!(names.id("another-one"), over);
        assert_eq!(known.name(b), Some("wiki-read"));
    }
}
