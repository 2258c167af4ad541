//! Filtering list replies down to what one grant may use.

use serde_json::{Map, Value};

use super::replayed::{Replay, ReplayedLists};
use super::scan::Scan;
use crate::engine::{Catalog, Grant, NameIndex, NameKind};
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
    pub(crate) gatekeeper: crate::gatekeeper::Gatekeeper,
    /// Who asked, when decisions are audited (the list's event names them).
    pub(crate) caller: Option<Box<crate::engine::Principal>>,
    /// Which servers' parts the inner service answered from a kept copy.
    pub(crate) replayed: Option<ReplayedLists>,
}

impl ListFilter {
    /// A filter for the reply to request `id` of a list `method`, for `grant`.
    #[must_use]
    pub fn new(
        grant: Grant,
        method: Method,
        id: RequestId,
        gatekeeper: &crate::gatekeeper::Gatekeeper,
    ) -> Self {
        Self {
            grant,
            method,
            id,
            gatekeeper: gatekeeper.clone(),
            caller: None,
            replayed: None,
        }
    }

    /// What of the reply was replayed from a kept copy, as marked by now.
    pub(crate) fn replay(&self) -> Replay {
        self.replayed
            .as_ref()
            .map_or(Replay::None, ReplayedLists::get)
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
            let mut scan = Scan::new(self.replay());
            self.filter_result(result, &mut scan);
            self.finish(&scan, true);
        }
        true
    }

    pub(crate) fn filter_result(&self, result: &mut Map<String, Value>, scan: &mut Scan) {
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
        scan.complete = !result.contains_key("nextCursor");
        match result.get_mut(key) {
            Some(Value::Array(items)) => {
                let judge = |scan: &mut Scan| -> Vec<Option<Option<Vec<Box<str>>>>> {
                    items
                        .iter()
                        .map(|item| self.keep(catalog, &index, kind, field, item, scan))
                        .collect()
                };
                let mut verdicts = judge(scan);
                if scan.twice {
                    // A name showed twice: its first entry was judged before that was known.
                    *scan = std::mem::replace(scan, Scan::new(Replay::All)).again();
                    verdicts = judge(scan);
                }
                let mut verdicts = verdicts.into_iter();
                items.retain_mut(|item| match verdicts.next().flatten() {
                    Some(Some(params)) => {
                        prune_schema(item, &params);
                        true
                    }
                    Some(None) => true,
                    None => false,
                });
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

    /// Whether `item` stays (`Some`), and the arguments its schema is pruned to, if any.
    fn keep(
        &self,
        catalog: &Catalog,
        index: &NameIndex,
        kind: NameKind,
        field: &str,
        item: &Value,
        scan: &mut Scan,
    ) -> Option<Option<Vec<Box<str>>>> {
        let Some(name) = item.get(field).and_then(Value::as_str) else {
            scan.tally.offered += 1;
            scan.tally.withhold("unnamed");
            return None;
        };
        // What pinning digests, and what names a tool's UI resource (MCP Apps).
        let pinned = self.grant.pins().is_some();
        let texts: Vec<(&str, String)> = match item.as_object() {
            Some(object) => object
                .iter()
                .filter(|(k, _)| pinned || k.as_str() == "_meta")
                .map(|(k, v)| (k.as_str(), v.to_string()))
                .collect(),
            _ => Vec::new(),
        };
        let members = texts.iter().map(|(k, v)| (*k, v.as_str()));
        let (server, bare) = self.judge(catalog, index, kind, name, members, scan)?;
        Some(match kind {
            NameKind::Tool => catalog
                .server(server)
                .allowed_params(bare)
                .map(<[Box<str>]>::to_vec),
            _ => None,
        })
    }
}

/// Filters a list result in any message, whatever request it answers: for streams the layers
/// cannot tie to one request (a GET stream, where a server may replay earlier replies after a
/// reconnection with `Last-Event-ID`). Returns whether the message carried a list.
pub(crate) fn filter_any_list(
    grant: &Grant,
    gk: &crate::gatekeeper::Gatekeeper,
    message: &mut Value,
) -> bool {
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
    let filter = ListFilter::new(grant.clone(), method, RequestId::Number(0), gk);
    // Not the reply to a request of this stream's: an earlier one, sent again.
    let mut scan = Scan::new(Replay::All);
    filter.filter_result(result, &mut scan);
    filter.finish(&scan, false);
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
        let gk = crate::gatekeeper::Gatekeeper::new(config.policy().unwrap());
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
        let gk = crate::gatekeeper::Gatekeeper::new(config.policy().unwrap());
        let tools: Vec<Value> = (0..400)
            .map(|i| {
                json!({"name": format!("{}-t{}", ["a", "b"][i % 2], i % 7),
                            "inputSchema": {"type": "object", "properties": {"x": {}, "y": {}}}})
            })
            .collect();
        let text = json!({"jsonrpc": "2.0", "id": 5, "result": {"tools": tools}}).to_string();
        assert!(text.len() >= crate::list_memo::MIN_LEN);
        let for_key = |gk: &crate::gatekeeper::Gatekeeper, key: &str, id: i64| {
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
