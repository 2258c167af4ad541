//! [`PinBook`]: the pins every server's tools and prompts are held to, what was last seen of
//! each, and which ones are quarantined.
//!
//! A definition is quarantined when what the server lists no longer matches its pin (a rug
//! pull), or — with `pin_new_tools: quarantine` — when it has no pin and appeared after its
//! server's definitions were pinned. The pin of a definition is, in this order: the
//! configuration's (`pinned_tools`, `pinned_prompts`), the stored one (approved, or learned the
//! first time the server listed it). One book is shared by every request and survives policy
//! reloads; the permission layer reads it for lists and calls alike.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use sha2::{Digest as _, Sha256};

use super::pin_digest::{Fingerprint, PinDigest, PinKind, PinParts, fingerprint};
use super::pin_rules::{NewTools, PinMode, PinRules};
use super::pin_store::{PinStore, StoredPin};

/// A definition that is not what its pin says, reported once per new definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinChange {
    /// Tool or prompt.
    pub kind: PinKind,
    /// The server.
    pub server: Box<str>,
    /// The bare name.
    pub name: Box<str>,
    /// Its pin; `None` for a definition that appeared after pinning.
    pub pinned: Option<PinDigest>,
    /// What the server lists now.
    pub seen: PinDigest,
    /// The fields that changed, when the pin's parts are known.
    pub changed: Option<Vec<&'static str>>,
    /// Whether it is withheld (`enforce`) or only reported (`observe`).
    pub enforced: bool,
}

/// Why an approval could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApproveError {
    /// No digest was given and nothing has been seen of the definition.
    NothingSeen,
    /// The configuration pins it to another digest; the configuration wins.
    PinnedByConfig(PinDigest),
    /// What the server lists has no canonical form (a field given twice): nothing can pin it.
    Unreadable,
}

impl std::fmt::Display for ApproveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NothingSeen => {
                f.write_str("nothing has been seen of this definition; give the digest to approve")
            }
            Self::Unreadable => f.write_str(
                "the server lists this definition with a field given twice; it cannot be pinned",
            ),
            Self::PinnedByConfig(d) => write!(
                f,
                "the configuration pins it to {d}; change the configuration instead"
            ),
        }
    }
}

impl std::error::Error for ApproveError {}

struct Seen {
    /// The pinned fields' texts as listed (key, NUL, value, NUL): the same text is not
    /// digested again.
    text: Box<str>,
    /// Its fingerprint; for a definition that has none (a pinned field given twice), the
    /// SHA-256 of `text`, with `readable` false.
    fingerprint: Fingerprint,
    /// Whether the definition has a canonical form. One that has none matches no pin and is
    /// never pinned: what a client makes of a field given twice is not what was digested.
    readable: bool,
}

/// Whether `members` are exactly the text `seen` recorded.
fn same_text<'a>(seen: &str, members: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    let mut rest = seen.as_bytes();
    for (k, v) in members {
        for part in [k, v] {
            let n = part.len();
            if rest.len() <= n || &rest[..n] != part.as_bytes() || rest[n] != 0 {
                return false;
            }
            rest = &rest[n + 1..];
        }
    }
    rest.is_empty()
}

/// What [`PinBook::observe`] found.
#[derive(Debug)]
pub struct Sighting {
    /// Whether the definition may be listed.
    pub admitted: bool,
    /// The change to report, if this sighting is the first of a definition that does not
    /// match.
    pub change: Option<PinChange>,
    /// The list showed this name before with another definition: the name is withheld and
    /// refused until a list shows it once, and the list must be judged again (its earlier
    /// entry of the name was judged before the second one showed up).
    pub twice: bool,
}

#[derive(Default)]
struct PinState {
    pinned: Option<(PinDigest, Option<PinParts>)>,
    seen: Option<Seen>,
    /// The definitions reported so far (until an approval), so that each change is reported
    /// once however often a server alternates between definitions.
    reported: Vec<PinDigest>,
    /// The server's last list showed this name twice, with two definitions.
    twice: bool,
    /// The list (see [`PinBook::next_list`]) that last showed this name.
    listed_in: AtomicU64,
}

impl PinState {
    /// Reports `digest` unless it was reported already; says whether to.
    fn report(&mut self, digest: PinDigest) -> bool {
        if self.reported.contains(&digest) {
            return false;
        }
        self.reported.push(digest);
        true
    }
}

#[derive(Default)]
struct ServerPins {
    /// Per kind: whether a full list of the server has been pinned (definitions that appear
    /// later are new).
    sealed: [bool; 3],
    items: [HashMap<Box<str>, PinState>; 3],
}

/// The state of pinning for every server: the pins every server's tools and prompts are held
/// to, what was last seen of each, and which ones are quarantined.
///
/// A definition is quarantined when what the server lists no longer matches its pin (a rug
/// pull), or — with `pin_new_tools: quarantine` — when it has no pin and appeared after its
/// server's definitions were pinned. The pin of a definition is, in this order: the
/// configuration's (`pinned_tools`, `pinned_prompts`), the stored one (approved, or learned the
/// first time the server listed it). One book is shared by every request of a
/// [`Gatekeeper`](crate::Gatekeeper) and survives policy reloads; the permission layer reads it
/// for lists and calls alike, and a call is judged by the last definition listed.
pub struct PinBook {
    servers: RwLock<HashMap<Box<str>, ServerPins>>,
    generation: AtomicU64,
    /// Numbers the lists sighted (to tell a name one list shows twice).
    lists: AtomicU64,
    store: Option<Arc<dyn PinStore>>,
    unsaved: Mutex<Vec<StoredPin>>,
}

impl std::fmt::Debug for PinBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinBook")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Default for PinBook {
    fn default() -> Self {
        Self::new(Vec::new(), None)
    }
}

/// One definition in quarantine, as `/health` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// Tool or prompt.
    pub kind: PinKind,
    /// The server.
    pub server: String,
    /// The bare name.
    pub name: String,
    /// Its pin, if it has one.
    pub pinned: Option<PinDigest>,
    /// What the server lists now.
    pub seen: Option<PinDigest>,
}

type Verdict = Result<(), ()>;

fn verdict(
    entry: Option<&PinState>,
    configured: Option<PinDigest>,
    new_is_quarantined: bool,
) -> Verdict {
    if entry.is_some_and(|e| e.twice) {
        return Err(());
    }
    let pin = configured.or_else(|| entry.and_then(|e| e.pinned.map(|p| p.0)));
    match (pin, entry.and_then(|e| e.seen.as_ref())) {
        (_, Some(seen)) if !seen.readable => Err(()),
        (Some(pin), Some(seen)) if seen.fingerprint.digest != pin => Err(()),
        (Some(_), _) => Ok(()),
        (None, _) if new_is_quarantined => Err(()),
        (None, _) => Ok(()),
    }
}

fn slot(kind: PinKind) -> usize {
    kind as usize
}

impl PinBook {
    /// A book holding `pins` (from a store), saving what it learns to `store`.
    #[must_use]
    pub fn new(pins: Vec<StoredPin>, store: Option<Arc<dyn PinStore>>) -> Self {
        let mut servers: HashMap<Box<str>, ServerPins> = HashMap::new();
        for pin in pins {
            let s = servers.entry(pin.server).or_default();
            s.sealed[slot(pin.kind)] = true;
            s.items[slot(pin.kind)].entry(pin.name).or_default().pinned =
                Some((pin.digest, pin.parts));
        }
        Self {
            servers: RwLock::new(servers),
            generation: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            store,
            unsaved: Mutex::new(Vec::new()),
        }
    }

    /// Changes whenever a definition enters or leaves quarantine (list caches compare it).
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn new_is_quarantined(rules: &PinRules, kind: PinKind, server: Option<&ServerPins>) -> bool {
        rules.new_tools == NewTools::Quarantine
            && (!rules.configured(kind).is_empty() || server.is_some_and(|s| s.sealed[slot(kind)]))
    }

    /// Whether a definition may be listed and used under `rules` (always, unless `rules` enforce
    /// pinning and it is quarantined).
    #[must_use]
    pub fn admits(&self, kind: PinKind, server: &str, name: &str, rules: &PinRules) -> bool {
        if rules.mode != PinMode::Enforce {
            return true;
        }
        let servers = self.servers.read().unwrap_or_else(PoisonError::into_inner);
        let pins = servers.get(server);
        let entry = pins.and_then(|s| s.items[slot(kind)].get(name));
        let new_is_quarantined = Self::new_is_quarantined(rules, kind, pins);
        verdict(
            entry,
            rules.configured(kind).get(name).copied(),
            new_is_quarantined,
        )
        .is_ok()
    }

    /// Records what the server lists now of one definition (`members`: its keys and JSON
    /// texts, `name` its bare name), learning its pin if it has none and may have one. Says
    /// whether it may be listed (the verdict [`PinBook::admits`] gives a call), and the change
    /// to report, once per distinct definition that does not match.
    ///
    /// Only what the server itself lists now may be observed: a definition replayed from a
    /// cache is judged with [`PinBook::admits_listed`], which learns nothing from it.
    pub fn observe<'a>(
        &self,
        kind: PinKind,
        server: &str,
        name: &str,
        rules: &PinRules,
        members: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Sighting {
        self.sight(kind, server, name, rules, members, self.next_list())
    }

    /// A number for one list a server gave, for [`PinBook::sight`].
    pub(crate) fn next_list(&self) -> u64 {
        self.lists.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// [`PinBook::observe`] for one item of the list numbered `list`: a name that list showed
    /// before with another definition is quarantined.
    pub(crate) fn sight<'a>(
        &self,
        kind: PinKind,
        server: &str,
        name: &str,
        rules: &PinRules,
        members: impl Iterator<Item = (&'a str, &'a str)> + Clone,
        list: u64,
    ) -> Sighting {
        if rules.mode == PinMode::Off {
            return Sighting {
                admitted: true,
                change: None,
                twice: false,
            };
        }
        let pinned_members = members.clone().filter(|(k, _)| kind.fields().contains(k));
        let configured = rules.configured(kind).get(name).copied();
        let enforce = rules.mode == PinMode::Enforce;
        let again = {
            // The same text as last time: nothing to digest, the verdict stands.
            let servers = self.servers.read().unwrap_or_else(PoisonError::into_inner);
            let pins = servers.get(server);
            let entry = pins.and_then(|s| s.items[slot(kind)].get(name));
            let again = entry.is_some_and(|e| e.listed_in.swap(list, Ordering::Relaxed) == list);
            // (The first sighting in a list of a name held for being listed twice must clear
            // that, below.)
            if entry
                .filter(|e| again || !e.twice)
                .and_then(|e| e.seen.as_ref())
                .is_some_and(|s| same_text(&s.text, pinned_members.clone()))
            {
                let new_is_quarantined = Self::new_is_quarantined(rules, kind, pins);
                let ok = verdict(entry, configured, new_is_quarantined).is_ok();
                return Sighting {
                    admitted: ok || !enforce,
                    change: None,
                    twice: false,
                };
            }
            again
        };
        let mut text = String::new();
        for (k, v) in pinned_members {
            text.extend([k, "\0", v, "\0"]);
        }
        let readable = fingerprint(kind, name, members);
        let (fingerprint, readable) = match readable {
            Ok(f) => (f, true),
            Err(_) => (
                Fingerprint {
                    digest: PinDigest(Sha256::digest(text.as_bytes()).into()),
                    parts: PinParts::default(),
                },
                false,
            ),
        };
        let mut servers = self.servers.write().unwrap_or_else(PoisonError::into_inner);
        let pins = servers.entry(server.into()).or_default();
        let new_is_quarantined = Self::new_is_quarantined(rules, kind, Some(pins));
        let entry = pins.items[slot(kind)].entry(name.into()).or_default();
        entry.listed_in.store(list, Ordering::Relaxed);
        let before = verdict(Some(entry), configured, new_is_quarantined);
        if again {
            // The same list showed this name with another definition: neither is the one.
            entry.twice = true;
            let after = verdict(Some(entry), configured, new_is_quarantined);
            if before != after {
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            let change = entry.report(fingerprint.digest).then(|| PinChange {
                kind,
                server: server.into(),
                name: name.into(),
                pinned: configured.or(entry.pinned.map(|p| p.0)),
                seen: fingerprint.digest,
                changed: None,
                enforced: enforce,
            });
            return Sighting {
                admitted: !enforce,
                change,
                twice: true,
            };
        }
        entry.twice = false;
        entry.seen = Some(Seen {
            text: text.into(),
            fingerprint,
            readable,
        });
        if readable && configured.is_none() && entry.pinned.is_none() && !new_is_quarantined {
            entry.pinned = Some((fingerprint.digest, Some(fingerprint.parts)));
            self.unsaved
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(StoredPin {
                    kind,
                    server: server.into(),
                    name: name.into(),
                    digest: fingerprint.digest,
                    parts: Some(fingerprint.parts),
                });
        }
        let after = verdict(Some(entry), configured, new_is_quarantined);
        if before != after {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        let admitted = after.is_ok() || !enforce;
        if after.is_ok() || !entry.report(fingerprint.digest) {
            return Sighting {
                admitted,
                change: None,
                twice: false,
            };
        }
        let pinned = configured.or(entry.pinned.map(|p| p.0));
        let changed = match entry.pinned {
            Some((digest, Some(parts))) if readable && Some(digest) == pinned => {
                Some(parts.changed(&fingerprint.parts, kind))
            }
            _ => None,
        };
        Sighting {
            admitted,
            change: Some(PinChange {
                kind,
                server: server.into(),
                name: name.into(),
                pinned,
                seen: fingerprint.digest,
                changed,
                enforced: enforce,
            }),
            twice: false,
        }
    }

    /// Whether a definition that was *not* just listed by its server — replayed from a cache,
    /// or from a stream resumed after a reconnection — may be shown: only when the name is
    /// admitted (as [`PinBook::admits`] says) and the definition is the pinned one. It learns
    /// nothing, so a stale copy can neither release a quarantined definition nor pin one.
    pub fn admits_listed<'a>(
        &self,
        kind: PinKind,
        server: &str,
        name: &str,
        rules: &PinRules,
        members: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> bool {
        if rules.mode != PinMode::Enforce {
            return true;
        }
        let configured = rules.configured(kind).get(name).copied();
        let pin = {
            let servers = self.servers.read().unwrap_or_else(PoisonError::into_inner);
            let pins = servers.get(server);
            let entry = pins.and_then(|s| s.items[slot(kind)].get(name));
            let new_is_quarantined = Self::new_is_quarantined(rules, kind, pins);
            if verdict(entry, configured, new_is_quarantined).is_err() {
                return false;
            }
            let Some(pin) = configured.or_else(|| entry.and_then(|e| e.pinned.map(|p| p.0))) else {
                // Not pinned yet, and not held back: what the server lists next decides.
                return true;
            };
            // The text last listed, when it is the pinned definition, needs no digest.
            let pinned_members = members.clone().filter(|(k, _)| kind.fields().contains(k));
            if entry.and_then(|e| e.seen.as_ref()).is_some_and(|s| {
                s.readable && s.fingerprint.digest == pin && same_text(&s.text, pinned_members)
            }) {
                return true;
            }
            pin
        };
        fingerprint(kind, name, members).is_ok_and(|f| f.digest == pin)
    }

    /// Ends one list of `servers`' definitions of `kind`: a complete list (no further page)
    /// seals them (a definition that appears later is new), and the pins learned are saved.
    pub fn finish_list<'s>(
        &self,
        kind: PinKind,
        complete: bool,
        servers: impl IntoIterator<Item = &'s str>,
    ) {
        if complete {
            let mut book = self.servers.write().unwrap_or_else(PoisonError::into_inner);
            for server in servers {
                if let Some(s) = book.get_mut(server) {
                    s.sealed[slot(kind)] = true;
                }
            }
        }
        let unsaved =
            std::mem::take(&mut *self.unsaved.lock().unwrap_or_else(PoisonError::into_inner));
        if let (false, Some(store)) = (unsaved.is_empty(), &self.store) {
            store.save(unsaved);
        }
    }

    /// Pins a definition to `digest`, or to what was last seen of it: it leaves quarantine at
    /// once, and the pin is saved.
    ///
    /// # Errors
    ///
    /// Nothing seen and no digest given, or the configuration pins it otherwise.
    pub fn approve(
        &self,
        kind: PinKind,
        server: &str,
        name: &str,
        rules: &PinRules,
        digest: Option<PinDigest>,
    ) -> Result<PinDigest, ApproveError> {
        let mut servers = self.servers.write().unwrap_or_else(PoisonError::into_inner);
        let pins = servers.entry(server.into()).or_default();
        let entry = pins.items[slot(kind)].entry(name.into()).or_default();
        if entry.seen.as_ref().is_some_and(|s| !s.readable) {
            return Err(ApproveError::Unreadable);
        }
        let seen = entry.seen.as_ref().map(|s| s.fingerprint);
        let digest = digest
            .or(seen.map(|s| s.digest))
            .ok_or(ApproveError::NothingSeen)?;
        if let Some(configured) = rules.configured(kind).get(name)
            && *configured != digest
        {
            return Err(ApproveError::PinnedByConfig(*configured));
        }
        let parts = seen.filter(|s| s.digest == digest).map(|s| s.parts);
        entry.pinned = Some((digest, parts));
        entry.reported.clear();
        drop(servers);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(store) = &self.store {
            store.save(vec![StoredPin {
                kind,
                server: server.into(),
                name: name.into(),
                digest,
                parts,
            }]);
        }
        Ok(digest)
    }

    /// Every definition quarantined now, for the servers `rules` knows (by name).
    pub fn quarantined<'r>(
        &self,
        rules: impl Fn(&str) -> Option<&'r PinRules>,
    ) -> Vec<Quarantined> {
        let servers = self.servers.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (server, pins) in servers.iter() {
            let Some(rules) = rules(server).filter(|r| r.mode != PinMode::Off) else {
                continue;
            };
            for kind in [PinKind::Tool, PinKind::Prompt, PinKind::App] {
                let new_is_quarantined = Self::new_is_quarantined(rules, kind, Some(pins));
                for (name, entry) in &pins.items[slot(kind)] {
                    let configured = rules.configured(kind).get(name).copied();
                    if verdict(Some(entry), configured, new_is_quarantined).is_err()
                        && entry.seen.is_some()
                    {
                        out.push(Quarantined {
                            kind,
                            server: server.to_string(),
                            name: name.to_string(),
                            pinned: configured.or(entry.pinned.map(|p| p.0)),
                            seen: entry.seen.as_ref().map(|s| s.fingerprint.digest),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.server, a.kind, &a.name).cmp(&(&b.server, b.kind, &b.name)));
        out
    }

    /// Takes in pins the store holds now (approved elsewhere: another replica, an edit of the
    /// store): each that differs from the book's replaces it at once, so a definition it
    /// matches leaves quarantine without a restart. Returns how many changed.
    pub fn absorb(&self, pins: Vec<StoredPin>) -> usize {
        let mut changed = 0;
        let mut servers = self.servers.write().unwrap_or_else(PoisonError::into_inner);
        for pin in pins {
            let s = servers.entry(pin.server).or_default();
            s.sealed[slot(pin.kind)] = true;
            let entry = s.items[slot(pin.kind)].entry(pin.name).or_default();
            if entry.pinned.map(|p| p.0) != Some(pin.digest) {
                entry.pinned = Some((pin.digest, pin.parts));
                entry.reported.clear();
                changed += 1;
            }
        }
        drop(servers);
        if changed > 0 {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        changed
    }

    /// What is wrong with the store, if anything.
    #[cfg(feature = "gateway")]
    #[must_use]
    pub(crate) fn store_problem(&self) -> Option<String> {
        self.store.as_ref().and_then(|s| s.problem())
    }
}
