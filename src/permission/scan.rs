//! What one list filtering learns on its way: each item's verdict (shared by the text and the
//! tree paths), the definitions that no longer match their pins, and the tally its audit event
//! reports.

use crate::decision_events::{ListTally, rule_of};
use crate::engine::{Attribution, Catalog, NameIndex, NameKind, PinChange, PinKind, PinMode};
use crate::engine::{DeniedBy, ServerId};
use crate::protocol::Method;

use super::ListFilter;
use super::replayed::Replay;

/// The state of one list being filtered.
pub(crate) struct Scan {
    pub(crate) tally: ListTally,
    changes: Vec<PinChange>,
    /// Servers whose definitions were held to their pins in this list.
    observed: Vec<ServerId>,
    /// Whether the list is complete (the reply names no further page).
    pub(crate) complete: bool,
    /// Which servers' parts of the list were not listed by them now (judged, never learned
    /// from).
    replay: Replay,
    /// This list's number in the pin book (taken at its first pinned item), to tell a name
    /// listed twice.
    list: Option<u64>,
    /// A name was listed twice with two definitions: its earlier entry was judged before that
    /// showed, so the list must be judged again (see [`Scan::again`]).
    pub(crate) twice: bool,
}

impl Scan {
    pub(crate) fn new(replay: Replay) -> Self {
        Self {
            tally: ListTally::default(),
            changes: Vec::new(),
            observed: Vec::new(),
            complete: true,
            replay,
            list: None,
            twice: false,
        }
    }

    /// Whether any part of the list was judged without being learned from (a replay, or a
    /// second judgement).
    pub(crate) fn judged_only(&self) -> bool {
        self.replay != Replay::None
    }

    /// The scan of a second judgement of the same list, after a name showed twice: every item
    /// judged by what the pin book holds now (the first judgement recorded it), learning
    /// nothing more; the changes and servers the first one saw are kept for
    /// [`ListFilter::finish`].
    pub(crate) fn again(self) -> Self {
        Self {
            changes: self.changes,
            observed: self.observed,
            ..Self::new(Replay::All)
        }
    }
}

fn pin_kind(kind: NameKind) -> Option<PinKind> {
    match kind {
        NameKind::Tool => Some(PinKind::Tool),
        NameKind::Prompt => Some(PinKind::Prompt),
        NameKind::Resource => None,
    }
}

impl ListFilter {
    /// Whether the item named `name` (with `members`, its keys and JSON texts) stays in the list,
    /// and as which server's and bare name. Its definition is held to its pin first, so a
    /// definition that changed is withheld from the very list that shows the change.
    pub(crate) fn judge<'n, 'm>(
        &self,
        catalog: &Catalog,
        index: &NameIndex,
        kind: NameKind,
        name: &'n str,
        members: impl Iterator<Item = (&'m str, &'m str)> + Clone,
        scan: &mut Scan,
    ) -> Option<(ServerId, &'n str)> {
        scan.tally.offered += 1;
        let Some(Attribution::Server(server, bare)) =
            catalog.attribute(self.gatekeeper.mount(), Some(index), kind, name)
        else {
            scan.tally.withhold(rule_of(DeniedBy::UnknownName).0);
            return None;
        };
        // The grant's rules first (as `Grant::check_tool` and `check_prompt`), then pinning,
        // which records what the list shows and gives the verdict a call would get.
        if kind == NameKind::Tool && !scan.replay.covers(catalog.server(server).name()) {
            self.learn_app(catalog, index, server, bare, members.clone());
        }
        let verdict = match kind {
            NameKind::Tool => self.grant.check_tool_unpinned(server, bare),
            NameKind::Prompt => self.grant.check_server(server),
            NameKind::Resource => {
                super::check_resource(&self.gatekeeper, &self.grant, server, name, bare)
            }
        };
        if let Err(denial) = verdict {
            scan.tally.withhold(rule_of(denial.by).0);
            return None;
        }
        if let (Some(book), Some(pin)) = (self.grant.pins(), pin_kind(kind)) {
            let spec = catalog.server(server);
            let rules = spec.pin_rules();
            if rules.mode != PinMode::Off {
                let admitted = if scan.replay.covers(spec.name()) {
                    book.admits_listed(pin, spec.name(), bare, rules, members)
                } else {
                    let list = *scan.list.get_or_insert_with(|| book.next_list());
                    let sighting = book.sight(pin, spec.name(), bare, rules, members, list);
                    scan.changes.extend(sighting.change);
                    scan.twice |= sighting.twice;
                    if !scan.observed.contains(&server) {
                        scan.observed.push(server);
                    }
                    sighting.admitted
                };
                if !admitted {
                    scan.tally.withhold(rule_of(DeniedBy::Quarantined).0);
                    return None;
                }
            }
        }
        Some((server, bare))
    }

    /// Records which UI resource (MCP Apps) tool `bare` of `server` names now, from its `_meta`
    /// member: only a resource of the same server counts.
    fn learn_app<'m>(
        &self,
        catalog: &Catalog,
        index: &NameIndex,
        server: ServerId,
        bare: &str,
        mut members: impl Iterator<Item = (&'m str, &'m str)>,
    ) {
        let named = members
            .find(|(k, _)| *k == "_meta")
            .and_then(|(_, meta)| crate::engine::ui_resource_of(meta));
        let mount = self.gatekeeper.mount();
        let resource = named.as_deref().and_then(|uri| {
            match catalog.attribute(mount, Some(index), NameKind::Resource, uri) {
                Some(Attribution::Server(s, rest)) if s == server => {
                    Some(crate::engine::server_uri(mount, uri, rest))
                }
                _ => None,
            }
        });
        self.gatekeeper
            .apps()
            .learn(catalog.server(server).name(), bare, resource.as_deref());
    }

    /// Ends one list: the pins learned are kept, changes reported, and — when `ours` (the reply
    /// to this filter's request) — the list's own event recorded.
    pub(crate) fn finish(&self, scan: &Scan, ours: bool) {
        let kind = match self.method {
            Method::ToolsList => Some(PinKind::Tool),
            Method::PromptsList => Some(PinKind::Prompt),
            _ => None,
        };
        if let (Some(book), Some(kind), false) = (self.grant.pins(), kind, scan.observed.is_empty())
        {
            let catalog = self.grant.catalog();
            book.finish_list(
                kind,
                scan.complete,
                scan.observed.iter().map(|s| catalog.server(*s).name()),
            );
        }
        for change in &scan.changes {
            crate::decision_events::pin_changed(self.gatekeeper.audit(), change);
        }
        if ours && self.caller.is_some() {
            crate::decision_events::listed(
                self.gatekeeper.audit(),
                self.caller.as_deref(),
                &self.method,
                &scan.tally,
            );
        }
    }
}
