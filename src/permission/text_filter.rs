//! The byte-level path of list filtering.
//!
//! A list reply is mostly tool schemas the filter never needs to look at. The fast path reads
//! it once, validating it as it goes: the envelope, and each item as its members (each value's
//! text captured, not parsed). Kept items are written back from their members (values as they
//! were, keys re-encoded); a schema pruned to `allowed_params` is rewritten as text, and through
//! a tree only when the text has duplicate keys the tree would resolve. Both paths give the same
//! lists (tested, and fuzzed).

use std::borrow::Cow;

use serde_json::Value;
use serde_json::value::RawValue;

use super::filter::{ListFilter, prune_schema};
use super::raw::{Member, prune_members, text_of, write_members};
use super::scan::Scan;
use crate::engine::{NameIndex, NameKind};
use crate::protocol::{Key, Method};

/// A list reply that is not one JSON object without duplicate keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreadable;

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the list reply could not be read")
    }
}

impl std::error::Error for Unreadable {}

/// Opens a member `key` of the object being written to `out`.
fn push_key(out: &mut String, first: &mut bool, key: &str) {
    if !std::mem::take(first) {
        out.push(',');
    }
    super::raw::push_key(out, key);
    out.push(':');
}

fn push_field(out: &mut String, first: &mut bool, key: &str, raw: &str) {
    push_key(out, first, key);
    out.push_str(raw);
}

impl ListFilter {
    /// Filters a serialised reply without building a tree of it, in one pass: kept items are
    /// copied through (their values as they are), pruned schemas rewritten as text. This is what
    /// the layer runs.
    ///
    /// # Errors
    ///
    /// [`Unreadable`] when the reply is not one JSON object without duplicate keys.
    ///
    /// `Ok(None)` when it is not the reply to our request (pass it on as it is).
    pub fn apply_text(&self, text: &str) -> Result<Option<String>, Unreadable> {
        let index = self.gatekeeper.name_index();
        if text.len() < crate::list_memo::MIN_LEN {
            let (top, scan) = self.filter_text(text, &index)?;
            self.finish(&scan, top.id_matches);
            return Ok(top.into_reply());
        }
        // Large lists come back unchanged again and again, under a new id each time: see `memo`.
        let key = crate::list_memo::Key {
            grant: &self.grant,
            index: &index,
            mount: self.gatekeeper.mount(),
            method: &self.method,
            pins: self.grant.pins().map_or(0, |p| p.generation()),
            apps: self.gatekeeper.apps().generation(),
        };
        let memo = self.gatekeeper.list_memo();
        if let Some((out, tally)) = memo.get(&key, text, &self.id) {
            if self.caller.is_some() {
                crate::decision_events::listed(
                    self.gatekeeper.audit(),
                    self.caller.as_deref(),
                    &self.method,
                    &tally,
                );
            }
            return Ok(Some(out));
        }
        let (top, scan) = self.filter_text(text, &index)?;
        self.finish(&scan, top.id_matches);
        // What a replay showed is never remembered as what a server lists: a later listing of
        // the same text by the server itself must be learned from.
        if let (true, false, Some((in_id, out_id))) =
            (top.id_matches, scan.judged_only(), top.id_spans)
        {
            memo.put(&key, text, in_id, &top.out, out_id, scan.tally);
        }
        Ok(top.into_reply())
    }

    /// [`apply_text`](Self::apply_text) without the memory of earlier replies: what the first
    /// listing costs (benchmarks, fuzzing).
    #[doc(hidden)]
    pub fn apply_text_uncached(&self, text: &str) -> Result<Option<String>, Unreadable> {
        let (top, scan) = self.filter_text(text, &self.gatekeeper.name_index())?;
        self.finish(&scan, top.id_matches);
        Ok(top.into_reply())
    }

    fn filter_text(&self, text: &str, index: &NameIndex) -> Result<(Top, Scan), Unreadable> {
        let (top, scan) = self.filter_text_with(text, index, Scan::new(self.replay()))?;
        if scan.twice {
            // A name showed twice: its first entry was judged before that was known.
            return self.filter_text_with(text, index, scan.again());
        }
        Ok((top, scan))
    }

    fn filter_text_with(
        &self,
        text: &str,
        index: &NameIndex,
        mut scan: Scan,
    ) -> Result<(Top, Scan), Unreadable> {
        let mut de = serde_json::Deserializer::from_str(text);
        let top = serde::de::DeserializeSeed::deserialize(
            TopSeed {
                filter: self,
                text,
                index,
                scan: &mut scan,
            },
            &mut de,
        )
        .map_err(|_| Unreadable)?;
        de.end().map_err(|_| Unreadable)?;
        Ok((top, scan))
    }

    fn items_key(&self) -> Option<(&'static str, &'static str, NameKind)> {
        Some(match self.method {
            Method::ToolsList => ("tools", "name", NameKind::Tool),
            Method::PromptsList => ("prompts", "name", NameKind::Prompt),
            Method::ResourcesList => ("resources", "uri", NameKind::Resource),
            Method::ResourceTemplatesList => {
                ("resourceTemplates", "uriTemplate", NameKind::Resource)
            }
            _ => return None,
        })
    }

    /// Writes the item made of `members` to `out` if it stays (pruned if it must be).
    fn keep_members(
        &self,
        members: &[Member<'_>],
        (field, kind): (&str, NameKind),
        index: &NameIndex,
        out: &mut String,
        first: &mut bool,
        scan: &mut Scan,
    ) -> Result<(), Unreadable> {
        // Exactly one name, and a string: anything else is ambiguous or unnamed, and dropped.
        let mut names = members.iter().filter(|(k, _)| k == field);
        let (Some((_, name)), None) = (names.next(), names.next()) else {
            scan.tally.offered += 1;
            scan.tally.withhold("unnamed");
            return Ok(());
        };
        let Ok(name) = text_of(name) else {
            scan.tally.offered += 1;
            scan.tally.withhold("unnamed");
            return Ok(());
        };
        let catalog = self.grant.catalog();
        let texts = members.iter().map(|(k, v)| (&**k, *v));
        let Some((server, bare)) = self.judge(catalog, index, kind, &name, texts, scan) else {
            return Ok(());
        };
        if !std::mem::take(first) {
            out.push(',');
        }
        match (kind, catalog.server(server).allowed_params(bare)) {
            (NameKind::Tool, Some(params)) => {
                // The schema's text is pruned in place; a tool the text pruner is unsure of
                // (duplicate keys) goes through the tree, which is the reference.
                if prune_members(members, params, out).is_err() {
                    let mut text = String::new();
                    write_members(members, &mut text);
                    let mut v: Value = serde_json::from_str(&text).map_err(|_| Unreadable)?;
                    prune_schema(&mut v, params);
                    out.push_str(&serde_json::to_string(&v).expect("a Value serialises"));
                }
            }
            _ => write_members(members, out),
        }
        Ok(())
    }
}

struct TopSeed<'f> {
    filter: &'f ListFilter,
    text: &'f str,
    index: &'f NameIndex,
    scan: &'f mut Scan,
}

struct Top {
    out: String,
    id_matches: bool,
    /// Where the top-level id's value sits in the input and in `out` (for the memo).
    id_spans: Option<((usize, usize), (usize, usize))>,
}

impl Top {
    fn into_reply(self) -> Option<String> {
        self.id_matches.then_some(self.out)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Top;
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Top, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TopSeed<'_> {
    type Value = Top;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON-RPC object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        // One buffer for the whole reply: the result and its list are written straight into it.
        let mut out = String::with_capacity(self.text.len() + 16);
        out.push('{');
        let mut first = true;
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        let mut id_matches = false;
        let mut id_spans = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if seen.contains(&key) {
                return Err(serde::de::Error::custom("duplicate key"));
            }
            if key == "result" {
                // Filtered speculatively; thrown away if the id turns out not to be ours.
                push_key(&mut out, &mut first, &key);
                map.next_value_seed(ResultSeed {
                    filter: self.filter,
                    index: self.index,
                    out: &mut out,
                    scan: &mut *self.scan,
                })?;
            } else {
                let raw: &'de RawValue = map.next_value()?;
                if key == "id" {
                    id_matches = serde_json::from_str::<Value>(raw.get())
                        .is_ok_and(|id| self.filter.id.matches(&id));
                    let r = raw.get();
                    let in_start = (r.as_ptr() as usize).wrapping_sub(self.text.as_ptr() as usize);
                    push_field(&mut out, &mut first, &key, r);
                    // The value was borrowed from the input (no escapes in an id): note both spans.
                    if in_start <= self.text.len()
                        && self.text.get(in_start..in_start + r.len()) == Some(r)
                    {
                        id_spans = Some((
                            (in_start, in_start + r.len()),
                            (out.len() - r.len(), out.len()),
                        ));
                    }
                    seen.push(key);
                    continue;
                }
                push_field(&mut out, &mut first, &key, raw.get());
            }
            seen.push(key);
        }
        out.push('}');
        Ok(Top {
            out,
            id_matches,
            id_spans,
        })
    }
}

/// Writes the filtered `result` of a list reply to `out`.
struct ResultSeed<'f, 'o> {
    filter: &'f ListFilter,
    index: &'f NameIndex,
    out: &'o mut String,
    scan: &'o mut Scan,
}

impl<'de> serde::de::DeserializeSeed<'de> for ResultSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ResultSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a result")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((key, field, kind)) = self.filter.items_key() else {
            return Err(serde::de::Error::custom("not a list method"));
        };
        let (index, out, scan) = (self.index, self.out, self.scan);
        out.push('{');
        let mut first = true;
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if seen.contains(&k) {
                return Err(serde::de::Error::custom("duplicate key"));
            }
            if k == key {
                push_key(out, &mut first, &k);
                map.next_value_seed(ItemsSeed {
                    filter: self.filter,
                    field,
                    kind,
                    index,
                    out: &mut *out,
                    scan: &mut *scan,
                })?;
            } else {
                let raw: &'de RawValue = map.next_value()?;
                if k == "nextCursor" {
                    scan.complete = false;
                }
                if k == "cacheScope" && raw.get() == "\"public\"" {
                    // A list cut for one caller must never be cached as shared.
                    push_field(out, &mut first, &k, "\"private\"");
                } else {
                    push_field(out, &mut first, &k, raw.get());
                }
            }
            seen.push(k);
        }
        if !seen.iter().any(|k| k == key) {
            push_field(out, &mut first, key, "[]");
        }
        out.push('}');
        Ok(())
    }
    // A result that is not an object is passed on as it is (nothing in it is listed).
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.out.push_str(&v.to_string());
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.out.push_str(&v.to_string());
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.out
            .push_str(&serde_json::to_string(&v).map_err(E::custom)?);
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.out
            .push_str(&serde_json::to_string(v).map_err(E::custom)?);
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.out.push_str("null");
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut first = true;
        self.out.push('[');
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if !std::mem::take(&mut first) {
                self.out.push(',');
            }
            self.out.push_str(item.get());
        }
        self.out.push(']');
        Ok(())
    }
}

/// Reads one item of a list into its members; `false` when it is not an object (dropped).
struct ItemSeed<'m, 'de> {
    members: &'m mut Vec<Member<'de>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for ItemSeed<'_, 'de> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ItemSeed<'_, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list item")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        self.members.clear();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            self.members.push((key, value.get()));
        }
        Ok(true)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<&'de RawValue>()?.is_some() {}
        Ok(false)
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Writes the kept items of a list to `out`.
struct ItemsSeed<'f, 'i, 'o> {
    filter: &'f ListFilter,
    field: &'static str,
    kind: NameKind,
    index: &'i NameIndex,
    out: &'o mut String,
    scan: &'o mut Scan,
}

impl<'de> serde::de::DeserializeSeed<'de> for ItemsSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl ItemsSeed<'_, '_, '_> {
    // Anything but a list: nothing listed (fail closed), as on the `Value` path.
    fn nothing<E>(self) -> Result<(), E> {
        self.out.push_str("[]");
        Ok(())
    }
}

impl<'de> serde::de::Visitor<'de> for ItemsSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut first = true;
        self.out.push('[');
        // Each item is read member by member in the pass that validates it (no second scan
        // of its text); one list of members serves every item.
        let mut members = Vec::new();
        while let Some(object) = seq.next_element_seed(ItemSeed {
            members: &mut members,
        })? {
            if object {
                self.filter
                    .keep_members(
                        &members,
                        (self.field, self.kind),
                        self.index,
                        self.out,
                        &mut first,
                        self.scan,
                    )
                    .map_err(serde::de::Error::custom)?;
            } else {
                self.scan.tally.offered += 1;
                self.scan.tally.withhold("unnamed");
            }
        }
        self.out.push(']');
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        self.nothing()
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.nothing()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.nothing()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.nothing()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.nothing()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.nothing()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.nothing()
    }
}
