//! [`AppIndex`]: which tools name which UI resource (MCP Apps), so that a caller lists and
//! reads a UI resource exactly when it may call a tool that names it.
//!
//! An MCP App is a tool whose definition names, in `_meta.ui.resourceUri` (or the older
//! `_meta["ui/resourceUri"]`), a `ui://` resource holding the HTML a host renders for it. The
//! HTML runs inside the host on the tool's behalf, so it is governed by the tool: a UI resource
//! that no tool the caller may call names is neither listed nor readable. The index is learned
//! per server from the tool lists callers are shown (not from those an inner service marks as
//! replayed from a cache, which it can mark when a server pins); a UI resource no list has named
//! yet is refused (fail closed).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

/// The scheme of MCP Apps' UI resources.
pub const UI_SCHEME: &str = "ui://";

/// The URI its server knows a resource by, given the name the caller used and the bare name
/// [`Catalog::attribute`](super::Catalog::attribute) gave for it: a UI resource named through an
/// aggregating service is [`UI_SCHEME`] and its bare name; any other resource is its bare name.
#[must_use]
pub(crate) fn server_uri<'n>(mount: &super::Mount, name: &'n str, bare: &'n str) -> Cow<'n, str> {
    if *mount == super::Mount::Aggregate && name.starts_with(UI_SCHEME) {
        Cow::Owned(format!("{UI_SCHEME}{bare}"))
    } else {
        Cow::Borrowed(bare)
    }
}

/// The `ui://` resource a tool definition names, from its `_meta` member's JSON text: the
/// `ui.resourceUri` field, else the older `ui/resourceUri` one. `None` when it names none (or
/// the text is not a JSON object).
#[must_use]
pub(crate) fn ui_resource_of(meta: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Ui {
        #[serde(rename = "resourceUri")]
        resource_uri: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        ui: Option<Ui>,
        #[serde(rename = "ui/resourceUri")]
        older: Option<String>,
    }
    let meta: Meta = serde_json::from_str(meta).ok()?;
    meta.ui
        .and_then(|u| u.resource_uri)
        .or(meta.older)
        .filter(|u| u.starts_with(UI_SCHEME))
}

/// One server's tools that name a UI resource: tool → the URI the server knows it by.
type NamedUis = HashMap<Box<str>, Box<str>>;

/// Per server: each tool that names a UI resource, and that resource (by the URI the server
/// knows it by).
#[derive(Debug, Default)]
pub(crate) struct AppIndex {
    servers: RwLock<HashMap<Box<str>, NamedUis>>,
    generation: AtomicU64,
    /// How many tools name a UI: while none does, a tool that names none costs one load.
    named: AtomicU64,
}

impl AppIndex {
    /// Records what a list of `server` says of `tool` (its bare name): the UI resource it names,
    /// if any.
    pub(crate) fn learn(&self, server: &str, tool: &str, resource: Option<&str>) {
        if resource.is_none() && self.named.load(Ordering::Acquire) == 0 {
            return;
        }
        {
            let servers = self.servers.read().unwrap_or_else(PoisonError::into_inner);
            let known = servers.get(server).and_then(|tools| tools.get(tool));
            if known.map(|r| &**r) == resource {
                return;
            }
        }
        let mut servers = self.servers.write().unwrap_or_else(PoisonError::into_inner);
        match resource {
            Some(resource) => {
                let before = servers
                    .entry(server.into())
                    .or_default()
                    .insert(tool.into(), resource.into());
                if before.is_none() {
                    self.named.fetch_add(1, Ordering::AcqRel);
                }
            }
            None => {
                if servers
                    .get_mut(server)
                    .and_then(|tools| tools.remove(tool))
                    .is_some()
                {
                    self.named.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The tools of `server` that name `resource`.
    #[must_use]
    pub(crate) fn tools_naming(&self, server: &str, resource: &str) -> Vec<Box<str>> {
        let servers = self.servers.read().unwrap_or_else(PoisonError::into_inner);
        servers
            .get(server)
            .map(|tools| {
                tools
                    .iter()
                    .filter(|(_, r)| &***r == resource)
                    .map(|(t, _)| t.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Changes whenever what a tool names changes (list caches compare it).
    #[must_use]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ui_resource_a_tool_names() {
        assert_eq!(
            ui_resource_of(r#"{"ui": {"resourceUri": "ui://clock/app.html"}, "x": 1}"#).as_deref(),
            Some("ui://clock/app.html")
        );
        assert_eq!(
            ui_resource_of(r#"{"ui/resourceUri": "ui://clock/app.html"}"#).as_deref(),
            Some("ui://clock/app.html")
        );
        assert_eq!(
            ui_resource_of(r#"{"ui": {"resourceUri": "https://x"}}"#),
            None
        );
        assert_eq!(ui_resource_of(r#"{"ui": 3}"#), None);
        assert_eq!(ui_resource_of("[]"), None);
        let index = AppIndex::default();
        index.learn("a", "clock", Some("ui://clock/app.html"));
        index.learn("a", "other", None);
        assert_eq!(
            index.tools_naming("a", "ui://clock/app.html"),
            vec![Box::from("clock")]
        );
        let g = index.generation();
        index.learn("a", "clock", Some("ui://clock/app.html"));
        assert_eq!(index.generation(), g, "nothing new");
        index.learn("a", "clock", None);
        assert!(index.tools_naming("a", "ui://clock/app.html").is_empty());
        assert!(index.tools_naming("b", "ui://clock/app.html").is_empty());
    }
}
