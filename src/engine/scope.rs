//! The servers a request names (`x-mcp-servers`, `/{names}/mcp`), resolved against the catalog,
//! and how they narrow a grant. Scope only narrows; an entry that is unknown and one that is
//! not allowed are refused alike, so names cannot be probed.

use super::{Catalog, Grant, ServerSet};

/// The servers a request named, resolved against the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    entries: Vec<Box<str>>,
    servers: ServerSet,
    unknown: Vec<usize>,
}

impl Scope {
    /// Resolves scope entries (server names, aliases, access groups) against a catalog.
    #[must_use]
    pub fn resolve<'a>(catalog: &Catalog, entries: impl IntoIterator<Item = &'a str>) -> Self {
        let mut scope = Scope {
            entries: Vec::new(),
            servers: ServerSet::new(),
            unknown: Vec::new(),
        };
        for entry in entries {
            if scope.entries.iter().any(|e| **e == *entry) {
                continue;
            }
            match catalog.scope_entry(entry) {
                Some(set) => scope.servers.union_with(&set),
                None => scope.unknown.push(scope.entries.len()),
            }
            scope.entries.push(entry.into());
        }
        scope
    }

    /// The entries as named, without repeats.
    #[must_use]
    pub fn entries(&self) -> &[Box<str>] {
        &self.entries
    }

    /// The servers the entries stand for.
    #[must_use]
    pub fn servers(&self) -> &ServerSet {
        &self.servers
    }

    /// Refuses unknown entries (without telling them from forbidden ones).
    ///
    /// # Errors
    ///
    /// The unknown entries.
    pub(crate) fn check_known(&self) -> Result<(), ScopeDenial> {
        if self.unknown.is_empty() {
            Ok(())
        } else {
            Err(ScopeDenial {
                refused: self
                    .unknown
                    .iter()
                    .map(|&i| self.entries[i].clone())
                    .collect(),
            })
        }
    }

    /// Narrows a grant to this scope. An entry is refused when it is unknown or when none of its
    /// servers is allowed; the remaining servers are `allowed ∩ named`.
    ///
    /// # Errors
    ///
    /// The refused entries, unknown and forbidden ones alike.
    pub fn apply(&self, grant: &mut Grant) -> Result<(), ScopeDenial> {
        let catalog = std::sync::Arc::clone(grant.catalog());
        let refused: Vec<Box<str>> = self
            .entries
            .iter()
            .filter(|e| match catalog.scope_entry(e) {
                None => true,
                Some(mut set) => {
                    set.intersect_with(grant.allowed());
                    set.is_empty()
                }
            })
            .cloned()
            .collect();
        if !refused.is_empty() {
            return Err(ScopeDenial { refused });
        }
        grant.narrow(self.servers.clone());
        Ok(())
    }
}

/// Scope entries refused: unknown, or naming no server the grant allows. Which of the two is
/// never said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeDenial {
    refused: Vec<Box<str>>,
}

impl ScopeDenial {
    /// The refused entries, as the request named them.
    pub(crate) fn refused(&self) -> impl Iterator<Item = &str> {
        self.refused.iter().map(|e| &**e)
    }
}
