//! Where the pin book keeps what it learns and what is approved: [`PinStore`] and the
//! [`StoredPin`]s it holds.

use super::pin_digest::{PinDigest, PinKind, PinParts};

/// A pin as a [`PinStore`] keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPin {
    /// Tool or prompt.
    pub kind: PinKind,
    /// The server's name.
    pub server: Box<str>,
    /// The bare name.
    pub name: Box<str>,
    /// The pin.
    pub digest: PinDigest,
    /// Its parts, when known (to tell which parts of a later definition changed).
    pub parts: Option<PinParts>,
}

/// Where learned and approved pins are kept, so that a restart does not trust anew.
///
/// `save` is called with the pins learned from one list (or one approval); it must not wait on
/// a network (spawn, or write a small local file) and reports its own failures.
pub trait PinStore: Send + Sync + 'static {
    /// Keeps `pins` (each replacing any earlier pin of the same kind, server and name).
    fn save(&self, pins: Vec<StoredPin>);
    /// What is wrong with the store, if anything (shown in `/health`).
    fn problem(&self) -> Option<String> {
        None
    }
}
