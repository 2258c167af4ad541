//! Holding the content of an MCP App's UI resource to its pin as a read returns it: the HTML a
//! host runs on a tool's behalf is pinned like the tool's definition, so a changed app is
//! withheld as a rug-pulled tool is.

use serde_json::Value;

use crate::engine::{DenialStyle, DeniedBy, Grant, PinKind, ServerId};
use crate::gatekeeper::Gatekeeper;
use crate::protocol::{Era, RequestId};
use crate::rejection::Rejection;

/// One `resources/read` of a UI resource on a server that pins.
#[derive(Debug)]
pub(crate) struct AppRead {
    pub(crate) grant: Grant,
    pub(crate) gatekeeper: Gatekeeper,
    pub(crate) server: ServerId,
    /// The URI the server knows the resource by.
    pub(crate) uri: Box<str>,
    /// The URI the caller asked for (for the refusal's text).
    pub(crate) asked: Box<str>,
    pub(crate) id: RequestId,
    pub(crate) era: Era,
    pub(crate) style: DenialStyle,
}

impl AppRead {
    /// Holds the reply in `text` to the pin of the resource: `None` when it is not the reply
    /// to this read (or not JSON at all); else the refusal that replaces it, if it does
    /// (content that does not match its pin, in `enforce`).
    pub(crate) fn check(&self, text: &str) -> Option<Option<String>> {
        let message = serde_json::from_str::<Value>(text).ok()?;
        if !message.get("id").is_some_and(|id| self.id.matches(id)) {
            return None;
        }
        let Some(contents) = message
            .pointer("/result/contents")
            .and_then(Value::as_array)
        else {
            // An error, or a result that asks for input first: nothing of the app in it.
            return Some(None);
        };
        // What runs in the host, without the URI the reply names it by (which the gateway
        // rewrites per caller).
        let run: Vec<Value> = contents
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if let Some(object) = c.as_object_mut() {
                    object.remove("uri");
                }
                c
            })
            .collect();
        let run = serde_json::to_string(&run).expect("a Value always serialises");
        let Some(book) = self.grant.pins() else {
            return Some(None);
        };
        let spec = self.grant.catalog().server(self.server);
        let sighting = book.observe(
            PinKind::App,
            spec.name(),
            &self.uri,
            spec.pin_rules(),
            std::iter::once(("contents", run.as_str())),
        );
        book.finish_list(PinKind::App, false, [spec.name()]);
        if let Some(change) = &sighting.change {
            crate::decision_events::pin_changed(self.gatekeeper.audit(), change);
        }
        Some((!sighting.admitted).then(|| self.refusal(DeniedBy::Quarantined)))
    }

    /// The error that replaces a reply that cannot be read (fail closed).
    pub(crate) fn unreadable(&self) -> String {
        let error = crate::protocol::jsonrpc::error(
            Some(&self.id),
            crate::protocol::jsonrpc::code::INTERNAL_ERROR,
            "The server's reply could not be read",
        );
        serde_json::to_string(&error).expect("a Value always serialises")
    }

    fn refusal(&self, by: DeniedBy) -> String {
        let body = Rejection::resource_denied(&self.asked, by)
            .with_id(Some(self.id.clone()))
            .with_era(self.era)
            .body(self.style);
        serde_json::to_string(&body).expect("a Value always serialises")
    }
}
