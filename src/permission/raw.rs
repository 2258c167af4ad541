//! Reading list items as text, without a tree: the members of an object, the elements of an
//! array, a string's value, and pruning a tool's schema by copying what stays.
//!
//! Every function here reads text serde has already validated (an item captured as a
//! `RawValue`), so it only has to find where things end; it still refuses anything it does not
//! expect rather than guessing. An `Err(())` from the pruning functions means "not sure": the
//! caller then takes the `Value` path, whose answer is the reference.

use std::borrow::Cow;

use memchr::memchr2;

pub(super) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// Where the string starting at `i` ends (after its closing quote). Jumps from quote or
/// backslash to the next: string contents, most of a tool list, are not looked at byte by byte.
fn string_end(b: &[u8], i: usize) -> Result<usize, ()> {
    if b.get(i) != Some(&b'"') {
        return Err(());
    }
    let mut j = i + 1;
    // Most strings in a schema are a few bytes long: look at those directly, and search
    // (vectorised) only past them.
    let short = b.len().min(j + 24);
    while j < short {
        match b[j] {
            b'"' => return Ok(j + 1),
            b'\\' => break,
            _ => j += 1,
        }
    }
    loop {
        j += memchr2(b'"', b'\\', b.get(j..).ok_or(())?).ok_or(())?;
        if b[j] == b'"' {
            return Ok(j + 1);
        }
        j += 2; // the backslash and the character it escapes
    }
}

/// Where the value starting at `i` ends.
fn skip_value(b: &[u8], i: usize) -> Result<usize, ()> {
    match b.get(i) {
        Some(b'"') => string_end(b, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j) {
                    Some(b'"') => j = string_end(b, j)?,
                    Some(b'{' | b'[') => {
                        depth += 1;
                        j += 1;
                    }
                    Some(b'}' | b']') => {
                        depth = depth.checked_sub(1).ok_or(())?;
                        j += 1;
                        if depth == 0 {
                            return Ok(j);
                        }
                    }
                    Some(_) => j += 1,
                    None => return Err(()),
                }
            }
        }
        Some(_) => {
            let mut j = i;
            while !matches!(
                b.get(j),
                None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            ) {
                j += 1;
            }
            if j == i { Err(()) } else { Ok(j) }
        }
        None => Err(()),
    }
}

/// The value of a string given with its quotes.
pub(super) fn text_of(raw: &str) -> Result<Cow<'_, str>, ()> {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or(())?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw)
            .map(Cow::Owned)
            .map_err(drop)
    } else {
        Ok(Cow::Borrowed(inner))
    }
}

/// The members of an object, or the elements of an array, as raw text: `(key with its quotes,
/// value)` for objects (the key is empty for arrays).
pub(super) struct Entries<'a> {
    text: &'a str,
    i: usize,
    close: u8,
    done: bool,
}

impl<'a> Entries<'a> {
    /// The members of the object `text`.
    pub(super) fn object(text: &'a str) -> Result<Self, ()> {
        Self::open(text, b'{', b'}')
    }

    /// The elements of the array `text`.
    pub(super) fn array(text: &'a str) -> Result<Self, ()> {
        Self::open(text, b'[', b']')
    }

    fn open(text: &'a str, open: u8, close: u8) -> Result<Self, ()> {
        let b = text.as_bytes();
        let i = skip_ws(b, 0);
        if b.get(i) != Some(&open) {
            return Err(());
        }
        let i = skip_ws(b, i + 1);
        Ok(Self {
            text,
            i,
            close,
            done: b.get(i) == Some(&close),
        })
    }

    fn entry(&mut self) -> Result<(&'a str, &'a str), ()> {
        let (text, b) = (self.text, self.text.as_bytes());
        let mut i = self.i;
        let key = if self.close == b'}' {
            let end = string_end(b, i)?;
            let key = &text[i..end];
            i = skip_ws(b, end);
            if b.get(i) != Some(&b':') {
                return Err(());
            }
            i = skip_ws(b, i + 1);
            key
        } else {
            ""
        };
        let end = skip_value(b, i)?;
        let value = &text[i..end];
        let next = skip_ws(b, end);
        match b.get(next) {
            Some(b',') => self.i = skip_ws(b, next + 1),
            Some(&c) if c == self.close => self.done = true,
            _ => return Err(()),
        }
        Ok((key, value))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(&'a str, &'a str), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let entry = self.entry();
        if entry.is_err() {
            self.done = true;
        }
        Some(entry)
    }
}

fn separate(out: &mut String, first: &mut bool) {
    if !std::mem::take(first) {
        out.push(',');
    }
}

/// One member of an object as the filter reads it: its key (unescaped) and its value's text.
pub(super) type Member<'a> = (Cow<'a, str>, &'a str);

/// Writes the key `key` (unescaped) as JSON.
pub(super) fn push_key(out: &mut String, key: &str) {
    // A key read without escapes has none to restore; the common case is a plain copy.
    if key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(key);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(key).expect("a string serialises"));
    }
}

/// Writes an object of `members` to `out`.
pub(super) fn write_members(members: &[Member<'_>], out: &mut String) {
    out.push('{');
    let mut first = true;
    for (k, v) in members {
        separate(out, &mut first);
        push_key(out, k);
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
}

/// The members of the object `text`.
#[cfg(test)]
fn members_of(text: &str) -> Result<Vec<Member<'_>>, ()> {
    Entries::object(text)?
        .map(|entry| entry.and_then(|(k, v)| Ok((text_of(k)?, v))))
        .collect()
}

/// Writes the tool `text` to `out` with its `inputSchema` pruned to `allowed`: see
/// [`prune_members`].
#[cfg(test)]
fn prune_tool(text: &str, allowed: &[Box<str>], out: &mut String) -> Result<(), ()> {
    prune_members(&members_of(text)?, allowed, out)
}

/// Writes the tool made of `members` to `out` with its `inputSchema` pruned to `allowed`, as
/// `prune_schema` does on a tree: top-level properties and `required` names outside `allowed`
/// removed, `additionalProperties` set to `false` (in place, or appended). Everything else is
/// copied as it is. `Err` (with `out` as it was) on a duplicate key the tree would resolve
/// silently.
pub(super) fn prune_members(
    members: &[Member<'_>],
    allowed: &[Box<str>],
    out: &mut String,
) -> Result<(), ()> {
    let start = out.len();
    let written = write_pruned_members(members, allowed, out);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

fn write_pruned_members(
    members: &[Member<'_>],
    allowed: &[Box<str>],
    out: &mut String,
) -> Result<(), ()> {
    out.push('{');
    let (mut first, mut schema_seen) = (true, false);
    for (k, v) in members {
        separate(out, &mut first);
        push_key(out, k);
        out.push(':');
        if k == "inputSchema" {
            if std::mem::replace(&mut schema_seen, true) {
                return Err(());
            }
            if v.starts_with('{') {
                write_pruned_schema(v, allowed, out)?;
                continue;
            }
        }
        out.push_str(v);
    }
    out.push('}');
    Ok(())
}

fn write_pruned_schema(schema: &str, allowed: &[Box<str>], out: &mut String) -> Result<(), ()> {
    let ok = |name: &str| allowed.iter().any(|a| **a == *name);
    out.push('{');
    let mut first = true;
    let (mut properties, mut required, mut additional) = (false, false, false);
    for entry in Entries::object(schema)? {
        let (k, v) = entry?;
        separate(out, &mut first);
        out.push_str(k);
        out.push(':');
        let seen = match &*text_of(k)? {
            "properties" if v.starts_with('{') => {
                let mut first = true;
                let mut kept: Vec<Cow<'_, str>> = Vec::new();
                out.push('{');
                for entry in Entries::object(v)? {
                    let (name, value) = entry?;
                    let text = text_of(name)?;
                    if !ok(&text) {
                        continue;
                    }
                    if kept.contains(&text) {
                        return Err(()); // the tree keeps the last of the two: let it
                    }
                    kept.push(text);
                    separate(out, &mut first);
                    out.push_str(name);
                    out.push(':');
                    out.push_str(value);
                }
                out.push('}');
                &mut properties
            }
            "required" if v.starts_with('[') => {
                let mut first = true;
                out.push('[');
                for entry in Entries::array(v)? {
                    let (_, name) = entry?;
                    if name.starts_with('"') && ok(&text_of(name)?) {
                        separate(out, &mut first);
                        out.push_str(name);
                    }
                }
                out.push(']');
                &mut required
            }
            "additionalProperties" => {
                out.push_str("false");
                &mut additional
            }
            other => {
                out.push_str(v);
                match other {
                    "properties" => &mut properties,
                    "required" => &mut required,
                    _ => continue,
                }
            }
        };
        if std::mem::replace(seen, true) {
            return Err(());
        }
    }
    if !additional {
        separate(out, &mut first);
        out.push_str("\"additionalProperties\":false");
    }
    out.push('}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pruned(tool: &Value, allowed: &[&str]) -> Result<Value, ()> {
        let allowed: Vec<Box<str>> = allowed.iter().map(|a| (*a).into()).collect();
        let mut out = String::from("prefix");
        prune_tool(&tool.to_string(), &allowed, &mut out)?;
        Ok(serde_json::from_str(out.strip_prefix("prefix").unwrap()).unwrap())
    }

    /// The text pruner and the tree pruner agree on every shape either handles.
    #[test]
    fn pruning_text_agrees_with_pruning_the_tree() {
        let tools = [
            json!({"name": "t", "description": "d", "inputSchema": {"type": "object",
                   "properties": {"x": {"type": "string", "enum": ["a", "}"]}, "y": {"type": "array", "items": [1, {"z": null}]}, "w\"q": {}},
                   "required": ["x", "y", 3, "w\"q"]}}),
            json!({"name": "t", "inputSchema": {"properties": {"y": {}}, "additionalProperties": true, "type": "object"}}),
            json!({"name": "t", "inputSchema": {"type": "object"}}),
            json!({"name": "t", "inputSchema": {"properties": [], "required": "x"}}),
            json!({"name": "t", "inputSchema": "not an object"}),
            json!({"name": "t"}),
            json!({"name": "t", "inputSchema": {"properties": {}, "required": []}}),
            json!({"name": "t", "inputSchema": {"properties": {"x": 1.5e3, "\u{e9}": false}, "required": ["\u{e9}"]}}),
        ];
        for allowed in [&["x"][..], &["x", "w\"q", "\u{e9}"], &[]] {
            for tool in &tools {
                let mut tree = tool.clone();
                let boxed: Vec<Box<str>> = allowed.iter().map(|a| (*a).into()).collect();
                super::super::filter::prune_schema(&mut tree, &boxed);
                assert_eq!(pruned(tool, allowed).unwrap(), tree, "{tool} {allowed:?}");
            }
        }
    }

    /// Escaped keys are read as what they mean; duplicates the tree would resolve are left to
    /// it; what is not JSON is refused; `out` is left as it was on refusal.
    #[test]
    fn escapes_duplicates_and_garbage() {
        let allowed: Vec<Box<str>> = vec!["x".into()];
        let mut out = String::new();
        prune_tool(
            r#"{"name":"t","input\u0053chema":{"prop\u0065rties":{"\u0078":{},"y":{}}}}"#,
            &allowed,
            &mut out,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["inputSchema"],
            json!({"properties": {"x": {}}, "additionalProperties": false})
        );
        for unsure in [
            r#"{"inputSchema":{},"inputSchema":{}}"#,
            r#"{"inputSchema":{"properties":{},"properties":{}}}"#,
            r#"{"inputSchema":{"properties":{"x":1,"\u0078":2}}}"#,
            r#"{"inputSchema":{"required":[],"required":[]}}"#,
            r#"{"inputSchema":{"additionalProperties":1,"additionalProperties":2}}"#,
            r#"{"inputSchema":{"properties":{"x":1,}}}"#,
            r#"{"inputSchema":{"properties":{"x" 1}}}"#,
            r#"{"inputSchema":{"properties":{"x":"unterminated}}}"#,
            r#"["not", "an", "object"]"#,
        ] {
            let mut out = String::from("kept");
            assert_eq!(prune_tool(unsure, &allowed, &mut out), Err(()), "{unsure}");
            assert_eq!(out, "kept");
        }
    }
}
