//! Decision events: each decision the layers make becomes one [`AuditEvent`] handed to the
//! gatekeeper's [`Auditor`](crate::audit::Auditor) (and, with the `tracing` feature, a
//! `tracing` event). Events name the principal by ids only (key alias or digest prefix, team,
//! organisation, end user, agent): never a key, a credential or a header value.

use std::borrow::Cow;
use std::sync::Arc;

use http::Extensions;

use crate::audit::{AuditEvent, AuditedBody, Auditor, EventKind, Outcome, Pending, level_name};
use crate::engine::{DeniedBy, PinChange, Principal, Server};
use crate::protocol::McpRequest;
use crate::rejection::{Rejection, RejectionKind};

/// The rule (and level) a denial names, as events write it.
pub(crate) fn rule_of(by: DeniedBy) -> (&'static str, Option<&'static str>) {
    match by {
        DeniedBy::Level(level) => ("permissions", Some(level_name(level))),
        DeniedBy::Scope => ("scope", None),
        DeniedBy::AllowedTools => ("allowed_tools", None),
        DeniedBy::DisallowedTools => ("disallowed_tools", None),
        DeniedBy::UnknownName => ("unknown_name", None),
        DeniedBy::Ambiguous => ("ambiguous_name", None),
        DeniedBy::StalePolicy => ("stale_policy", None),
        DeniedBy::Quarantined => ("tool_pinning", None),
        DeniedBy::AppTool => ("app_tool", None),
    }
}

fn kind_of(rejection: &Rejection) -> (EventKind, Option<&'static str>, Option<&'static str>) {
    use RejectionKind as K;
    match rejection.kind() {
        K::MissingCredential => (EventKind::Auth, Some("missing_credential"), None),
        K::InvalidCredential => (EventKind::Auth, Some("invalid_credential"), None),
        K::IdentityUnavailable => (EventKind::Auth, Some("identity_unavailable"), None),
        K::InsufficientScope => (EventKind::Scope, Some("insufficient_scope"), None),
        K::ScopeForbidden => (EventKind::Scope, Some("scope"), None),
        K::ToolDenied { by } | K::PromptDenied { by } | K::ResourceDenied { by } => {
            let (rule, level) = rule_of(*by);
            (EventKind::Call, Some(rule), level)
        }
        K::ParamsDenied => (EventKind::Call, Some("allowed_params"), None),
        K::BudgetExceeded => (EventKind::Limit, Some("budget"), Some("key")),
        K::LimitExceeded => (EventKind::Limit, Some("limit"), None),
        K::LimitsUnavailable => (EventKind::Limit, Some("limit_store"), None),
        K::BadRequest => (EventKind::Request, Some("bad_request"), None),
        K::HeaderMismatch => (EventKind::Request, Some("header_mismatch"), None),
        K::PayloadTooLarge => (EventKind::Request, Some("payload_too_large"), None),
        K::SessionNotFound => (EventKind::Request, Some("session_not_found"), None),
    }
}

/// The rule a refusal names, as events and metrics write it.
pub(crate) fn rule_of_rejection(rejection: &Rejection) -> &'static str {
    kind_of(rejection).1.unwrap_or("refused")
}

/// A refusal event of `principal` for `request` (its method, name and argument names).
fn refusal_by(principal: Option<&Principal>, request: Option<&McpRequest>) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Request, Outcome::Refused).by(principal);
    if let Some(r) = request {
        e.method.clone_from(&r.method);
        e.name.clone_from(&r.target);
        if r.has_arguments {
            e.arguments = Some(Arc::clone(&r.argument_keys));
        }
    }
    e
}

/// Makes `e` the event of `rejection`: its kind, and the rule and level that refused (those
/// given, else the rejection's own).
fn refusing(
    e: &mut AuditEvent,
    rejection: &Rejection,
    rule: Option<&'static str>,
    level: Option<&'static str>,
) {
    let (kind, default_rule, default_level) = kind_of(rejection);
    e.event = kind;
    e.outcome = Outcome::Refused;
    e.rule = rule.or(default_rule);
    e.level = level.or(default_level);
    e.reason = Some(Cow::Owned(rejection.message().to_owned()));
    e.status = Some(rejection.status().as_u16());
}

/// A request was refused.
pub(crate) fn refused(
    audit: &Auditor,
    principal: Option<&Principal>,
    request: Option<&McpRequest>,
    rejection: &Rejection,
) {
    refused_on(audit, principal, request, None, rejection);
}

/// A request about a name of `server` (when the name was attributed to one) was refused.
pub(crate) fn refused_on(
    audit: &Auditor,
    principal: Option<&Principal>,
    request: Option<&McpRequest>,
    server: Option<&Server>,
    rejection: &Rejection,
) {
    if !audit.is_enabled() {
        return;
    }
    let mut e = refusal_by(principal, request);
    e.server = server.map(|s| Arc::clone(s.shared_name()));
    refusing(&mut e, rejection, None, None);
    audit.record(e);
}

/// A call the permission layer allowed was refused further in (`allowed_params`, a limit): the
/// call's one event is this refusal, with what the permission layer knew of the call.
pub(crate) fn refused_later(
    audit: &Auditor,
    ext: &mut Extensions,
    rejection: &Rejection,
    rule: Option<&'static str>,
    level: Option<&'static str>,
) {
    let mut e = match Pending::take(ext) {
        Some(e) => *e,
        None if audit.is_enabled() => refusal_by(ext.get(), ext.get()),
        None => return,
    };
    refusing(&mut e, rejection, rule, level);
    audit.record(e);
}

/// A call (tool call, prompt get, resource read) passed the permission layer: its event, to
/// keep pending in the request's extensions until the call is handed on or refused further in.
pub(crate) fn allowed(audit: &Auditor, ext: &Extensions, server: &Server) -> Option<Pending> {
    if !audit.is_enabled() {
        return None;
    }
    if !audit.builds_events() {
        return Some(Pending::counted(audit.clone()));
    }
    let (principal, request) = (ext.get::<Principal>()?, ext.get::<McpRequest>()?);
    let mut e = AuditEvent::new(EventKind::Call, Outcome::Allowed).by(Some(principal));
    e.method.clone_from(&request.method);
    e.server = Some(Arc::clone(server.shared_name()));
    e.name = request.target.clone();
    if request.has_arguments {
        e.arguments = Some(Arc::clone(&request.argument_keys));
        if let (Some(redact), Some(body)) = (server.audit_redact(), ext.get::<AuditedBody>()) {
            e.argument_values = crate::audit::redacted_arguments(&body.0, redact);
        }
    }
    Some(Pending::new(audit.clone(), e))
}

pub(crate) use crate::list_memo::Tally as ListTally;

/// A list reply was filtered for a caller.
pub(crate) fn listed(
    audit: &Auditor,
    principal: Option<&Principal>,
    method: &crate::protocol::Method,
    tally: &ListTally,
) {
    if !audit.is_enabled() {
        return;
    }
    if !audit.builds_events() {
        audit.count(&crate::metrics::Decision {
            event: EventKind::List.as_str(),
            outcome: Outcome::Filtered.as_str(),
            rule: None,
            level: None,
        });
        return;
    }
    let mut e = AuditEvent::new(EventKind::List, Outcome::Filtered).by(principal);
    e.method = Some(method.clone());
    e.offered = Some(tally.offered);
    e.withheld = Some(tally.withheld_by.iter().map(|(_, n)| n).sum());
    e.withheld_by.clone_from(&tally.withheld_by);
    audit.record(e);
}

/// A definition does not match its pin (reported once per new definition).
pub(crate) fn pin_changed(audit: &Auditor, change: &PinChange) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        target: "mcp_gatekeeper",
        server = &*change.server,
        name = &*change.name,
        "a {} definition does not match its pin{}",
        change.kind.as_str(),
        if change.enforced { "; it is quarantined" } else { "" }
    );
    if audit.is_enabled() {
        audit.record(AuditEvent::pin(change));
    }
}

/// The master key approved a definition: it is pinned to `digest` from now on.
#[cfg(feature = "gateway")]
pub(crate) fn pin_approved(
    audit: &Auditor,
    principal: Option<&Principal>,
    kind: crate::engine::PinKind,
    server: &str,
    name: &str,
    digest: crate::engine::PinDigest,
) {
    if !audit.is_enabled() {
        return;
    }
    let mut e = AuditEvent::new(EventKind::Pin, Outcome::Approved).by(principal);
    e.server = Some(server.into());
    e.name = Some(name.into());
    e.rule = Some("tool_pinning");
    e.pin_kind = Some(kind.as_str());
    e.pinned = Some(digest.to_string());
    audit.record(e);
}

/// A pluggable backend (identity resolver, cost hook) failed.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn backend_error(error: &(dyn std::error::Error + Send + Sync)) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: "mcp_gatekeeper", error = %error, "backend failed; failing closed");
}

/// Something worth a warning that is not a decision (a hook panicked, a reply was too large).
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn warn(message: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: "mcp_gatekeeper", "{message}");
}
