//! [`AuditEvent`]: one decision, with stable field names.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::engine::{Level, PinChange, Principal};
use crate::protocol::Method;

/// What kind of decision an event records (`event`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A credential was missing, unknown, or could not be checked.
    Auth,
    /// The servers a request named (or a token's scope) did not allow it.
    Scope,
    /// A request that could not be read or does not fit (size, headers, session).
    Request,
    /// A tool call, prompt get or resource read, allowed or refused.
    Call,
    /// A list, and what was withheld from it.
    List,
    /// A rate, parallel or budget limit was reached, or could not be checked.
    Limit,
    /// A tool or prompt definition does not match its pin.
    Pin,
    /// The audit trail itself: events were dropped.
    Audit,
}

impl EventKind {
    /// The name written in `event`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Scope => "scope",
            Self::Request => "request",
            Self::Call => "call",
            Self::List => "list",
            Self::Limit => "limit",
            Self::Pin => "pin",
            Self::Audit => "audit",
        }
    }
}

/// What was decided (`outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Let through.
    Allowed,
    /// Refused.
    Refused,
    /// A list passed on, perhaps with items withheld.
    Filtered,
    /// A definition withheld until approved (`tool_pinning: enforce`).
    Quarantined,
    /// A definition change reported only (`tool_pinning: observe`).
    Reported,
    /// A definition approved by the master key (`pin` events).
    Approved,
    /// Events were lost.
    Dropped,
}

impl Outcome {
    /// The name written in `outcome`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Refused => "refused",
            Self::Filtered => "filtered",
            Self::Quarantined => "quarantined",
            Self::Reported => "reported",
            Self::Approved => "approved",
            Self::Dropped => "dropped",
        }
    }
}

/// One decision. Serialised as one JSON object (absent fields left out); the same names are
/// the fields of the `tracing` event (target `mcp_gatekeeper::audit`).
///
/// An event never holds a key, a token, a credential header or an argument value: callers are
/// named by ids (a key by its alias or a digest prefix), and arguments by their names — unless
/// the server sets `audit_redact`, and then `argument_values` holds the values with the listed
/// names' values replaced by `"[redacted]"`.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEvent {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The kind of decision.
    pub event: EventKind,
    /// What was decided.
    pub outcome: Outcome,
    /// The key's id: its alias, else a digest prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Arc<str>>,
    /// The team.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<Arc<str>>,
    /// The organisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<Arc<str>>,
    /// The end user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_user: Option<Arc<str>>,
    /// The agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<Arc<str>>,
    /// The JSON-RPC method.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "method_name"
    )]
    pub method: Option<Method>,
    /// The server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<Arc<str>>,
    /// The tool, prompt or resource, as the request named it (for a pin, the bare name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    /// The rule that decided (`permissions`, `disallowed_tools`, `allowed_params`,
    /// `tool_pinning`, `rate`, `budget`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'static str>,
    /// The level whose rule decided (`key`, `team`, `organization`, `end_user`, `agent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<&'static str>,
    /// The refusal as the caller was told it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'static, str>>,
    /// The HTTP status of a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The argument names of a tool call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Arc<[Box<str>]>>,
    /// The argument values, redacted (only for servers with `audit_redact`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argument_values: Option<Value>,
    /// How many items the upstream listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered: Option<u32>,
    /// How many of them were withheld.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<u32>,
    /// Withheld items by the rule that withheld them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub withheld_by: Vec<(&'static str, u32)>,
    /// `tool` or `prompt` (pin events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_kind: Option<&'static str>,
    /// The pin (`sha256:…`); absent for a definition that appeared after pinning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// What the server lists now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<String>,
    /// The fields that changed, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<&'static str>>,
    /// How many events were dropped because the queue was full (`audit` events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
}

fn method_name<S: serde::Serializer>(method: &Option<Method>, s: S) -> Result<S::Ok, S::Error> {
    match method {
        Some(m) => s.serialize_str(m.as_str()),
        None => s.serialize_none(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl AuditEvent {
    /// An event of `event` and `outcome`, now, with nothing else set.
    #[must_use]
    pub fn new(event: EventKind, outcome: Outcome) -> Self {
        Self {
            ts_ms: now_ms(),
            event,
            outcome,
            key: None,
            team: None,
            organization: None,
            end_user: None,
            agent: None,
            method: None,
            server: None,
            name: None,
            rule: None,
            level: None,
            reason: None,
            status: None,
            arguments: None,
            argument_values: None,
            offered: None,
            withheld: None,
            withheld_by: Vec::new(),
            pin_kind: None,
            pinned: None,
            seen: None,
            changed: None,
            dropped: None,
        }
    }

    /// Names the caller by its ids.
    #[must_use]
    pub fn by(mut self, principal: Option<&Principal>) -> Self {
        if let Some(p) = principal {
            self.key.clone_from(&p.key_id);
            self.team.clone_from(&p.team_id);
            self.organization.clone_from(&p.organization_id);
            self.end_user.clone_from(&p.end_user_id);
            self.agent.clone_from(&p.agent_id);
        }
        self
    }

    /// The event of a definition that does not match its pin.
    #[must_use]
    pub fn pin(change: &PinChange) -> Self {
        let outcome = if change.enforced {
            Outcome::Quarantined
        } else {
            Outcome::Reported
        };
        let mut e = Self::new(EventKind::Pin, outcome);
        e.server = Some(change.server.as_ref().into());
        e.name = Some(change.name.as_ref().into());
        e.rule = Some("tool_pinning");
        e.pin_kind = Some(change.kind.as_str());
        e.pinned = change.pinned.map(|d| d.to_string());
        e.seen = Some(change.seen.to_string());
        e.changed.clone_from(&change.changed);
        e
    }

    /// One JSON line (no newline).
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event serialises")
    }
}

/// The name of a level in events.
#[must_use]
pub(crate) fn level_name(level: Level) -> &'static str {
    match level {
        Level::Key => "key",
        Level::Team => "team",
        Level::Organization => "organization",
        Level::EndUser => "end_user",
        Level::Agent => "agent",
    }
}

/// `arguments` of a `tools/call` body with the values of `redact` (at any depth) replaced by
/// `"[redacted]"`; `None` when the body has no arguments object.
#[must_use]
pub(crate) fn redacted_arguments(body: &[u8], redact: &[Box<str>]) -> Option<Value> {
    let mut message: Value = serde_json::from_slice(body).ok()?;
    let mut arguments = message.get_mut("params")?.get_mut("arguments")?.take();
    if !arguments.is_object() {
        return None;
    }
    redact_in(&mut arguments, redact);
    Some(arguments)
}

fn redact_in(value: &mut Value, redact: &[Box<str>]) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if redact.iter().any(|r| **r == **k) {
                    *v = Value::String("[redacted]".to_owned());
                } else {
                    redact_in(v, redact);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_in(v, redact)),
        _ => {}
    }
}
