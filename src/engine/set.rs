//! A set of servers as a bitset indexed by [`ServerId`].

use std::fmt;

use super::ServerId;

/// A set of catalog servers.
///
/// The first 128 servers live inline, so catalogs of that size never allocate while resolving
/// a grant; larger catalogs spill into a vector.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ServerSet {
    inline: [u64; 2],
    spill: Vec<u64>,
}

impl ServerSet {
    /// The empty set.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            inline: [0; 2],
            spill: Vec::new(),
        }
    }

    /// The set of the first `n` servers.
    #[must_use]
    pub fn first(n: usize) -> Self {
        let mut set = Self::new();
        for i in 0..n {
            set.insert(ServerId(i as u32));
        }
        set
    }

    /// Adds a server.
    pub fn insert(&mut self, id: ServerId) {
        let i = id.0 as usize;
        let (word, bit) = (i / 64, i % 64);
        if word < 2 {
            self.inline[word] |= 1 << bit;
        } else {
            let w = word - 2;
            if self.spill.len() <= w {
                self.spill.resize(w + 1, 0);
            }
            self.spill[w] |= 1 << bit;
        }
    }

    /// Removes a server.
    pub fn remove(&mut self, id: ServerId) {
        let i = id.0 as usize;
        let (word, bit) = (i / 64, i % 64);
        if word < 2 {
            self.inline[word] &= !(1 << bit);
        } else if let Some(w) = self.spill.get_mut(word - 2) {
            *w &= !(1 << bit);
        }
    }

    /// Whether the set holds a server.
    #[must_use]
    pub fn contains(&self, id: ServerId) -> bool {
        let i = id.0 as usize;
        let (word, bit) = (i / 64, i % 64);
        let w = if word < 2 {
            self.inline[word]
        } else {
            self.spill.get(word - 2).copied().unwrap_or(0)
        };
        w & (1 << bit) != 0
    }

    /// Keeps only the servers that are also in `other`.
    pub fn intersect_with(&mut self, other: &Self) {
        self.inline[0] &= other.inline[0];
        self.inline[1] &= other.inline[1];
        self.spill.truncate(other.spill.len());
        for (a, b) in self.spill.iter_mut().zip(&other.spill) {
            *a &= b;
        }
    }

    /// Adds every server of `other`.
    pub(crate) fn union_with(&mut self, other: &Self) {
        self.inline[0] |= other.inline[0];
        self.inline[1] |= other.inline[1];
        if self.spill.len() < other.spill.len() {
            self.spill.resize(other.spill.len(), 0);
        }
        for (a, b) in self.spill.iter_mut().zip(&other.spill) {
            *a |= b;
        }
    }

    /// Whether every server of `self` is in `other`.
    #[must_use]
    pub fn is_subset(&self, other: &Self) -> bool {
        let inline = (self.inline[0] & !other.inline[0]) | (self.inline[1] & !other.inline[1]);
        inline == 0
            && self
                .spill
                .iter()
                .enumerate()
                .all(|(i, a)| a & !other.spill.get(i).copied().unwrap_or(0) == 0)
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inline == [0, 0] && self.spill.iter().all(|w| *w == 0)
    }

    /// The number of servers in the set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.words().map(|w| w.count_ones() as usize).sum()
    }

    fn words(&self) -> impl Iterator<Item = u64> + '_ {
        self.inline.iter().chain(&self.spill).copied()
    }

    /// The servers in id order.
    pub fn iter(&self) -> impl Iterator<Item = ServerId> + '_ {
        self.words().enumerate().flat_map(|(wi, mut w)| {
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros();
                w &= w - 1;
                Some(ServerId((wi * 64) as u32 + bit))
            })
        })
    }
}

impl FromIterator<ServerId> for ServerSet {
    fn from_iter<I: IntoIterator<Item = ServerId>>(iter: I) -> Self {
        let mut set = Self::new();
        for id in iter {
            set.insert(id);
        }
        set
    }
}

impl fmt::Debug for ServerSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|id| id.0)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_spilled_ids_behave_alike() {
        let ids = [0u32, 5, 63, 64, 127, 128, 200, 1000];
        let set: ServerSet = ids.iter().map(|&i| ServerId(i)).collect();
        assert_eq!(set.iter().map(|i| i.0).collect::<Vec<_>>(), ids);
        assert_eq!(set.len(), ids.len());
        let mut small: ServerSet = [ServerId(5), ServerId(200), ServerId(7)]
            .into_iter()
            .collect();
        assert!(!small.is_subset(&set));
        small.intersect_with(&set);
        assert_eq!(small.iter().map(|i| i.0).collect::<Vec<_>>(), [5, 200]);
        assert!(small.is_subset(&set));
        let mut u = ServerSet::new();
        u.union_with(&small);
        u.remove(ServerId(200));
        assert_eq!(u.iter().map(|i| i.0).collect::<Vec<_>>(), [5]);
        u.remove(ServerId(5));
        assert!(u.is_empty());
        assert_eq!(ServerSet::first(130).len(), 130);
    }
}
