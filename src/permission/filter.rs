//! Filtering list replies down to what one grant may use.

use serde_json::{Map, Value};

use crate::engine::{Attribution, Catalog, Grant, NameIndex, NameKind};
use crate::protocol::{Method, RequestId};

/// What to filter in one list reply, and for whom.
///
/// The permission layer builds one per list request; it is public so the same rewrite can be
/// used (and measured) outside a tower stack.
#[derive(Clone, Debug)]
pub struct ListFilter {
    pub(crate) grant: Grant,
    pub(crate) method: Method,
    pub(crate) id: RequestId,
    /// For the mount and, with unprefixed names, the name index as it is when the reply
    /// arrives (an aggregating service updates it while answering the list).
    pub(crate) gatekeeper: crate::Gatekeeper,
}

impl ListFilter {
    /// A filter for the reply to request `id` of a list `method`, for `grant`.
    #[must_use]
    pub fn new(
        grant: Grant,
        method: Method,
        id: RequestId,
        gatekeeper: &crate::Gatekeeper,
    ) -> Self {
        Self {
            grant,
            method,
            id,
            gatekeeper: gatekeeper.clone(),
        }
    }

    /// If `message` is the JSON-RPC reply to our request, filters it (items outside the grant
    /// removed, tool schemas pruned to `allowed_params`, `cacheScope` made private) and returns
    /// `true`.
    pub fn apply(&self, message: &mut Value) -> bool {
        let Some(obj) = message.as_object_mut() else {
            return false;
        };
        if !obj.get("id").is_some_and(|id| self.id.matches(id)) {
            return false;
        }
        if let Some(result) = obj.get_mut("result").and_then(Value::as_object_mut) {
            self.filter_result(result);
        }
        true
    }

    pub(crate) fn filter_result(&self, result: &mut Map<String, Value>) {
        let (key, field, kind) = match self.method {
            Method::ToolsList => ("tools", "name", NameKind::Tool),
            Method::PromptsList => ("prompts", "name", NameKind::Prompt),
            Method::ResourcesList => ("resources", "uri", NameKind::Resource),
            Method::ResourceTemplatesList => {
                ("resourceTemplates", "uriTemplate", NameKind::Resource)
            }
            _ => return,
        };
        let catalog = self.grant.catalog();
        let index = self.gatekeeper.name_index();
        match result.get_mut(key) {
            Some(Value::Array(items)) => {
                items.retain_mut(|item| self.keep(catalog, &index, kind, field, item));
            }
            // Fail closed on a shape we do not understand.
            _ => {
                result.insert(key.to_owned(), Value::Array(Vec::new()));
            }
        }
        // A list cut for one caller must never be cached as shared.
        if let Some(scope) = result.get_mut("cacheScope")
            && scope.as_str() == Some("public")
        {
            *scope = Value::String("private".to_owned());
        }
    }

    fn keep(
        &self,
        catalog: &Catalog,
        index: &NameIndex,
        kind: NameKind,
        field: &str,
        item: &mut Value,
    ) -> bool {
        let Some(name) = item.get(field).and_then(Value::as_str) else {
            return false;
        };
        let Some(Attribution::Server(server, bare)) =
            catalog.attribute(self.gatekeeper.mount(), Some(index), kind, name)
        else {
            return false;
        };
        let allowed = match kind {
            NameKind::Tool => self.grant.check_tool(server, bare).is_ok(),
            _ => self.grant.check_server(server).is_ok(),
        };
        if allowed && kind == NameKind::Tool {
            let params = catalog
                .server(server)
                .allowed_params(bare)
                .map(<[Box<str>]>::to_vec);
            if let Some(params) = params {
                prune_schema(item, &params);
            }
        }
        allowed
    }
}

/// Filters a list result in any message, whatever request it answers: for streams the layers
/// cannot tie to one request (a GET stream, where a server may replay earlier replies after a
/// reconnection with `Last-Event-ID`). Returns whether the message carried a list.
pub(crate) fn filter_any_list(grant: &Grant, gk: &crate::Gatekeeper, message: &mut Value) -> bool {
    let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) else {
        return false;
    };
    let method = if result.contains_key("tools") {
        Method::ToolsList
    } else if result.contains_key("prompts") {
        Method::PromptsList
    } else if result.contains_key("resourceTemplates") {
        Method::ResourceTemplatesList
    } else if result.contains_key("resources") {
        Method::ResourcesList
    } else {
        return false;
    };
    ListFilter::new(grant.clone(), method, RequestId::Number(0), gk).filter_result(result);
    true
}

/// Removes from a tool's `inputSchema` every top-level property it may not be called with.
pub(crate) fn prune_schema(tool: &mut Value, allowed: &[Box<str>]) {
    let Some(schema) = tool.get_mut("inputSchema").and_then(Value::as_object_mut) else {
        return;
    };
    let ok = |k: &str| allowed.iter().any(|a| **a == *k);
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.retain(|k, _| ok(k));
    }
    if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| r.as_str().is_some_and(ok));
    }
    // Nothing outside the allowed names may be offered, not even through open schemas.
    schema.insert("additionalProperties".to_owned(), Value::Bool(false));
}

// ---- the byte-level fast path ---------------------------------------------------------------
//
// A list reply is mostly tool schemas the filter never needs to look at. The fast path reads
// it once, validating it as it goes: the envelope, and each item as its members (each value's
// text captured, not parsed). Kept items are written back from their members (values as they
// were, keys re-encoded); a schema pruned to `allowed_params` is rewritten as text, and through
// a tree only when the text has duplicate keys the tree would resolve. Both paths give the same
// lists (tested, and fuzzed).

use super::raw::{Member, prune_members, text_of, write_members};
use crate::protocol::Key;
use serde_json::value::RawValue;
use std::borrow::Cow;

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
            return Ok(self.filter_text(text, &index)?.into_reply());
        }
        // Large lists come back unchanged again and again, under a new id each time: see `memo`.
        let key = crate::list_memo::Key {
            grant: &self.grant,
            index: &index,
            mount: self.gatekeeper.mount(),
            method: &self.method,
        };
        let memo = self.gatekeeper.list_memo();
        if let Some(out) = memo.get(&key, text, &self.id) {
            return Ok(Some(out));
        }
        let top = self.filter_text(text, &index)?;
        if let (true, Some((in_id, out_id))) = (top.id_matches, top.id_spans) {
            memo.put(&key, text, in_id, &top.out, out_id);
        }
        Ok(top.into_reply())
    }

    /// [`apply_text`](Self::apply_text) without the memory of earlier replies: what the first
    /// listing costs (benchmarks, fuzzing).
    #[doc(hidden)]
    pub fn apply_text_uncached(&self, text: &str) -> Result<Option<String>, Unreadable> {
        Ok(self
            .filter_text(text, &self.gatekeeper.name_index())?
            .into_reply())
    }

    fn filter_text(&self, text: &str, index: &NameIndex) -> Result<Top, Unreadable> {
        let mut de = serde_json::Deserializer::from_str(text);
        let top = serde::de::DeserializeSeed::deserialize(
            TopSeed {
                filter: self,
                text,
                index,
            },
            &mut de,
        )
        .map_err(|_| Unreadable)?;
        de.end().map_err(|_| Unreadable)?;
        Ok(top)
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
        field: &str,
        kind: NameKind,
        index: &NameIndex,
        out: &mut String,
        first: &mut bool,
    ) -> Result<(), Unreadable> {
        // Exactly one name, and a string: anything else is ambiguous or unnamed, and dropped.
        let mut names = members.iter().filter(|(k, _)| k == field);
        let (Some((_, name)), None) = (names.next(), names.next()) else {
            return Ok(());
        };
        let Ok(name) = text_of(name) else {
            return Ok(());
        };
        let catalog = self.grant.catalog();
        let Some(Attribution::Server(server, bare)) =
            catalog.attribute(self.gatekeeper.mount(), Some(index), kind, &name)
        else {
            return Ok(());
        };
        let allowed = match kind {
            NameKind::Tool => self.grant.check_tool(server, bare).is_ok(),
            _ => self.grant.check_server(server).is_ok(),
        };
        if !allowed {
            return Ok(());
        }
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
        let (index, out) = (self.index, self.out);
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
                })?;
            } else {
                let raw: &'de RawValue = map.next_value()?;
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
                        &members, self.field, self.kind, self.index, self.out, &mut first,
                    )
                    .map_err(serde::de::Error::custom)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::KeyDigest;
    use crate::engine::{Grant, Level};
    use crate::protocol::RequestId;
    use serde_json::json;

    fn filter(method: Method) -> ListFilter {
        let config = Config::from_json_str(
            r#"{"mcp_servers": {"a": {"url": "u", "allowed_params": {"t1": ["x"]}, "disallowed_tools": ["t3"]}, "b": {"url": "u"}},
                "keys": [{"key": "k", "object_permission": {"mcp_servers": ["a"]}}]}"#,
        )
        .unwrap();
        let gk = crate::Gatekeeper::new(config.policy().unwrap());
        let p = gk
            .policy()
            .identities()
            .principal(&KeyDigest::of("k"), None, None)
            .unwrap();
        assert!(p.level(Level::Key).is_some());
        let grant = Grant::resolve(gk.policy().catalog(), &p);
        ListFilter::new(grant, method, RequestId::Number(5), &gk)
    }

    /// The raw fast path and the `Value` path give the same reply, for every shape.
    #[test]
    fn both_paths_agree() {
        let tools = json!([
            {"name": "a-t1", "inputSchema": {"type": "object", "properties": {"x": {}, "y": {}}, "required": ["x", "y"]}},
            {"name": "a-t2", "description": "kept as is", "inputSchema": {"type": "object", "properties": {"z": {}}}},
            {"name": "a-t3"}, {"name": "b-t1"}, {"name": "zz-t"}, {"name": 7}, {"title": "no name"}, "not an object"
        ]);
        let replies = [
            json!({"jsonrpc": "2.0", "id": 5, "result": {"tools": tools, "cacheScope": "public", "nextCursor": "c"}}),
            json!({"jsonrpc": "2.0", "id": 5, "result": {"tools": "not a list"}}),
            json!({"jsonrpc": "2.0", "id": 5, "result": {}}),
            json!({"jsonrpc": "2.0", "id": 5, "result": 3}),
            json!({"jsonrpc": "2.0", "id": 5, "error": {"code": 1, "message": "m"}}),
            json!({"jsonrpc": "2.0", "id": 6, "result": {"tools": tools}}),
            json!({"jsonrpc": "2.0", "id": "5", "result": {"tools": tools}}),
        ];
        let f = filter(Method::ToolsList);
        for reply in replies {
            let text = reply.to_string();
            let mut v = reply.clone();
            let ours = f.apply(&mut v);
            match f.apply_text(&text).unwrap() {
                Some(fast) => {
                    assert!(ours);
                    assert_eq!(serde_json::from_str::<Value>(&fast).unwrap(), v, "{text}");
                }
                None => assert!(!ours, "{text}"),
            }
        }
        let mut kept = json!({"jsonrpc": "2.0", "id": 5, "result": {"tools": tools}});
        f.apply(&mut kept);
        let names: Vec<&str> = kept["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a-t1", "a-t2"]);
        assert_eq!(
            kept["result"]["tools"][0]["inputSchema"]["properties"],
            json!({"x": {}})
        );
        assert!(
            f.apply_text(r#"{"id":5,"id":6,"result":{}}"#).is_err(),
            "duplicate keys are unreadable"
        );
        let prompts = filter(Method::PromptsList);
        let fast = prompts
            .apply_text(
                r#"{"jsonrpc":"2.0","id":5,"result":{"prompts":[{"name":"a-p"},{"name":"b-p"}]}}"#,
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&fast).unwrap()["result"]["prompts"],
            json!([{"name": "a-p"}])
        );
    }

    /// A large reply filtered once is reused only under the same grant, id, index and policy.
    #[test]
    fn remembered_lists_are_reused_only_for_the_same_decisions() {
        let config = Config::from_json_str(
            r#"{"mcp_servers": {"a": {"url": "u", "allowed_params": {"t1": ["x"]}}, "b": {"url": "u"}},
                "keys": [{"key": "ka", "object_permission": {"mcp_servers": ["a"]}},
                         {"key": "kb", "object_permission": {"mcp_servers": ["b"]}}]}"#,
        )
        .unwrap();
        let gk = crate::Gatekeeper::new(config.policy().unwrap());
        let tools: Vec<Value> = (0..400)
            .map(|i| {
                json!({"name": format!("{}-t{}", ["a", "b"][i % 2], i % 7),
                            "inputSchema": {"type": "object", "properties": {"x": {}, "y": {}}}})
            })
            .collect();
        let text = json!({"jsonrpc": "2.0", "id": 5, "result": {"tools": tools}}).to_string();
        assert!(text.len() >= crate::list_memo::MIN_LEN);
        let for_key = |gk: &crate::Gatekeeper, key: &str, id: i64| {
            let p = gk
                .policy()
                .identities()
                .principal(&KeyDigest::of(key), None, None)
                .unwrap();
            let grant = Grant::resolve(gk.policy().catalog(), &p);
            ListFilter::new(grant, Method::ToolsList, RequestId::Number(id), gk)
        };
        let fresh = |f: &ListFilter| f.apply_text_uncached(&text).unwrap();
        let names = |out: &Option<String>| -> Vec<String> {
            let v: Value = serde_json::from_str(out.as_deref().unwrap()).unwrap();
            let mut n: Vec<String> = v["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect();
            n.dedup();
            n.sort();
            n.dedup();
            n
        };
        let a = for_key(&gk, "ka", 5);
        let first = a.apply_text(&text).unwrap();
        assert_eq!(first, fresh(&a));
        assert!(names(&first).iter().all(|n| n.starts_with("a-")));
        // The same key again: served from memory, identical.
        assert_eq!(for_key(&gk, "ka", 5).apply_text(&text).unwrap(), first);
        // Another key, another id, a changed byte: filtered anew, never mixed up.
        let b = for_key(&gk, "kb", 5).apply_text(&text).unwrap();
        assert!(names(&b).iter().all(|n| n.starts_with("b-")));
        assert_eq!(for_key(&gk, "ka", 6).apply_text(&text).unwrap(), None);
        // The same reply under other ids (each request has its own): the output follows the id.
        for id in ["6", "123456", "\"s-1\"", " 7 "] {
            let other = text.replacen("\"id\":5", &format!("\"id\":{id}"), 1);
            let want: i64 = id.trim().parse().unwrap_or(0);
            let f = if want == 0 {
                let p = gk
                    .policy()
                    .identities()
                    .principal(&KeyDigest::of("ka"), None, None)
                    .unwrap();
                let grant = Grant::resolve(gk.policy().catalog(), &p);
                ListFilter::new(
                    grant,
                    Method::ToolsList,
                    RequestId::String("s-1".into()),
                    &gk,
                )
            } else {
                for_key(&gk, "ka", want)
            };
            let got = f.apply_text(&other).unwrap();
            assert!(got == f.apply_text_uncached(&other).unwrap(), "{id}");
            assert!(got.is_some(), "{id}");
            // An id that is not the request's, or not a scalar, is never taken from memory.
            let wrong = other.replacen(&format!("\"id\":{id}"), "\"id\":[5]", 1);
            assert_eq!(f.apply_text(&wrong).unwrap(), None);
        }
        let changed = text.replacen("a-t1", "a-t2", 1);
        let f = for_key(&gk, "ka", 5);
        assert_eq!(
            f.apply_text(&changed).unwrap(),
            f.apply_text_uncached(&changed).unwrap()
        );
        // A reload that takes server a away from ka: the remembered reply is not reused.
        let reloaded = Config::from_json_str(
            r#"{"mcp_servers": {"a": {"url": "u"}, "b": {"url": "u"}},
                "keys": [{"key": "ka", "object_permission": {"mcp_servers": ["b"]}}]}"#,
        )
        .unwrap();
        gk.reload(reloaded.policy().unwrap());
        let after = for_key(&gk, "ka", 5).apply_text(&text).unwrap();
        assert!(
            names(&after).iter().all(|n| n.starts_with("b-")),
            "{:?}",
            names(&after)
        );
        // A clone with another mount shares the memory but not the decisions.
        let single = gk
            .clone()
            .with_mount(crate::engine::Mount::Single("a".into()));
        let s = for_key(&single, "ka", 5);
        assert_eq!(s.apply_text(&text).unwrap(), fresh(&s));
    }
}
