//! Fuzz harnesses, shared by the cargo-fuzz targets in `fuzz/` (built with `--cfg fuzzing`) and
//! the corpus replay that every `cargo test` runs. Not part of the API: it exists only in those
//! two builds.
//!
//! Each harness never panics on any input unless an invariant is broken: a panic here is a bug.

use serde_json::Value;

use crate::protocol::{self, MessageKind, Method, sse};

/// The request parser: never panics, and what it accepts is exactly what a JSON parser (the
/// inner service's view) reads — method and tool name included.
pub fn request(data: &[u8]) {
    let Ok(head) = protocol::parse_request(data) else {
        return;
    };
    let v: Value = serde_json::from_slice(data).expect("an accepted body is JSON");
    assert_eq!(
        v.get("method").and_then(Value::as_str),
        head.method.as_ref().map(Method::as_str)
    );
    if head.kind == MessageKind::Request && head.method == Some(Method::ToolsCall) {
        assert_eq!(
            v.pointer("/params/name").and_then(Value::as_str),
            head.target.as_deref()
        );
        let args = v.pointer("/params/arguments").and_then(Value::as_object);
        let keys: Vec<&str> = args
            .map(|a| a.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut ours: Vec<&str> = head.argument_keys.iter().map(|k| &**k).collect();
        let mut theirs = keys.clone();
        ours.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(ours, theirs, "argument keys as the server will see them");
    }
}

/// The SSE framer: any chunking frames the same events as one chunk, and the events put back
/// together are the input (when no event passes the cap).
pub fn sse(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let cap = 256;
    let frame = |chunks: &mut dyn Iterator<Item = &[u8]>| {
        let mut f = sse::SseFramer::new(cap);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c);
            loop {
                match f.next_event() {
                    Ok(Some(e)) => out.push(e),
                    Ok(None) => break,
                    Err(_) => return Err(()),
                }
            }
        }
        out.extend(f.finish());
        Ok(out)
    };
    let whole = frame(&mut std::iter::once(stream));
    let size = usize::from(seed % 17) + 1;
    let chunked = frame(&mut stream.chunks(size));
    match (&whole, &chunked) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "chunking changed the events");
            assert_eq!(a.concat(), stream, "events lost or added bytes");
            for e in a {
                let _ = sse::event_data(e);
                let _ = sse::replace_data(e, "{}");
            }
        }
        // The cap may trip at a different point, but it must trip either way.
        (Err(()), Err(())) => {}
        _ => panic!("the cap depends on chunking: whole {whole:?}, chunked {chunked:?}"),
    }
}

/// The namespace parsers: never panic; a rewritten path is the inner service's `/mcp`; names
/// are trimmed and never empty.
pub fn namespace(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(p)) = crate::namespace::parse_path(text) {
        assert!(
            p.rewritten == "/mcp" || p.rewritten.starts_with("/mcp/"),
            "{p:?}"
        );
    }
    for name in crate::namespace::split_names(text) {
        assert!(!name.is_empty() && name.trim() == name);
    }
}

/// The config loader: never panics, whatever the document.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = crate::config::Config::from_json_str(text) {
        let _ = c.policy();
    }
    #[cfg(feature = "config-yaml")]
    if let Ok(c) = crate::config::Config::from_yaml_str(text) {
        let _ = c.policy();
    }
}

/// The list filter: on any reply, the one-pass raw filter and the `Value`-tree filter agree —
/// the fast path never keeps an item the tree path drops, and both read the same replies.
pub fn list_filter(data: &[u8]) {
    use std::sync::OnceLock;
    static FILTER: OnceLock<crate::permission::ListFilter> = OnceLock::new();
    let filter = FILTER.get_or_init(|| {
        let config = crate::config::Config::from_json_str(
            r#"{"mcp_servers": {"a": {"url": "u", "allowed_params": {"t1": ["x"]}, "disallowed_tools": ["t3"]}, "b": {"url": "u"}},
                "keys": [{"key": "k", "object_permission": {"mcp_servers": ["a"], "mcp_tool_permissions": {"a": ["t1", "t2", "t3"]}}}]}"#,
        )
        .expect("a valid config");
        let gk = crate::gatekeeper::Gatekeeper::new(config.policy().expect("a valid policy"));
        let p = gk.policy().identities().principal(&crate::engine::KeyDigest::of("k"), None, None).expect("known key");
        let grant = crate::engine::Grant::resolve(gk.policy().catalog(), &p);
        crate::permission::ListFilter::new(grant, Method::ToolsList, protocol::RequestId::Number(5), &gk)
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fast = filter.apply_text(text);
    let tree = serde_json::from_str::<Value>(text);
    match (fast, tree) {
        (Ok(Some(out)), Ok(mut v)) => {
            assert!(
                filter.apply(&mut v),
                "the fast path filtered a reply the tree path calls foreign"
            );
            let out: Value = serde_json::from_str(&out).expect("the fast path writes JSON");
            if out != v {
                // The fast path may drop more (an item with a duplicate `name` is ambiguous and
                // dropped; the tree keeps its last one) but never keeps what the tree drops.
                let items = |x: &Value| {
                    x.pointer("/result/tools")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                };
                let (fast_items, tree_items) = (items(&out), items(&v));
                let mut rest = tree_items.iter();
                for item in &fast_items {
                    assert!(
                        rest.any(|t| t == item),
                        "the fast path kept {item} which the tree path drops: {text}"
                    );
                }
                let strip = |mut x: Value| {
                    if let Some(r) = x.get_mut("result").and_then(Value::as_object_mut) {
                        r.remove("tools");
                    }
                    x
                };
                assert_eq!(
                    strip(out),
                    strip(v),
                    "the two paths disagree outside the list: {text}"
                );
            }
        }
        (Ok(None), Ok(mut v)) => assert!(
            !filter.apply(&mut v),
            "the fast path passed our reply unfiltered: {text}"
        ),
        // Raw items are copied, not re-validated: a reply a JSON parser rejects (a number out of
        // range deep inside an item) stays unreadable to the client too, so nothing leaks.
        (Ok(_), Err(_)) => {}
        // Stricter than the tree (duplicate keys): refused, which the layer turns into an error.
        (Err(_), _) => {}
    }
    // The memory of earlier replies (kept across runs, so earlier inputs are in it) answers
    // exactly as filtering afresh; padded past the size from which replies are remembered.
    if let Some(rest) = text.trim_start().strip_prefix('{') {
        let pad = "x".repeat(crate::list_memo::MIN_LEN);
        let sep = if rest.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        let padded = format!("{{\"zz\":\"{pad}\"{sep}{rest}");
        assert_eq!(
            filter.apply_text(&padded),
            filter.apply_text_uncached(&padded),
            "remembered and fresh filtering disagree: {text}"
        );
    }
}

#[cfg(test)]
mod replay;
