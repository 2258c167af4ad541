//! [`ReplayedLists`]: which servers' parts of a list reply the inner service answered from a
//! copy it kept, rather than from what the server lists now.

use std::sync::{Arc, Mutex, PoisonError};

/// Which servers' parts of one list reply were answered from a copy kept earlier (a list
/// cache), rather than asked of the server now.
///
/// The [`PermissionLayer`](super::PermissionLayer) puts one in the extensions of every list
/// request it forwards; an inner service that answers a list, or one server's part of it, from
/// a cache of its own marks that server (or the whole reply) before it replies. Tool pinning
/// learns only from what a server lists now: a replayed definition is shown only when its name
/// is not held back and it is the pinned definition, and it changes nothing in the pin book. So
/// a stale copy can never release a quarantined tool for anyone. An inner service with no cache
/// ignores it.
///
/// ```
/// use mcp_gatekeeper::permission::ReplayedLists;
///
/// let replayed = ReplayedLists::default();
/// replayed.mark("wiki");
/// assert!(replayed.contains("wiki") && !replayed.contains("github"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ReplayedLists(Arc<Mutex<Replay>>);

/// What was replayed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Nothing: every part was listed by its server now.
    #[default]
    None,
    /// These servers' parts.
    Servers(Vec<Box<str>>),
    /// The whole reply.
    All,
}

impl Replay {
    /// Whether `server`'s part was replayed.
    pub(crate) fn covers(&self, server: &str) -> bool {
        match self {
            Self::None => false,
            Self::Servers(servers) => servers.iter().any(|s| &**s == server),
            Self::All => true,
        }
    }
}

impl ReplayedLists {
    fn with<T>(&self, f: impl FnOnce(&mut Replay) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// `server`'s part of the reply comes from a kept copy.
    pub fn mark(&self, server: &str) {
        self.with(|r| match r {
            Replay::None => *r = Replay::Servers(vec![server.into()]),
            Replay::Servers(servers) if !servers.iter().any(|s| &**s == server) => {
                servers.push(server.into());
            }
            Replay::Servers(_) | Replay::All => {}
        });
    }

    /// The whole reply comes from a kept copy.
    pub fn mark_all(&self) {
        self.with(|r| *r = Replay::All);
    }

    /// Whether `server`'s part of the reply was marked as replayed.
    #[must_use]
    pub fn contains(&self, server: &str) -> bool {
        self.with(|r| r.covers(server))
    }

    /// What was marked, as the filter reads it once per reply.
    pub(crate) fn get(&self) -> Replay {
        self.with(|r| r.clone())
    }
}
