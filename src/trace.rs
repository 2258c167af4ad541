//! Decision events (feature `tracing`). Without the feature every function here is empty and
//! compiles away.
//!
//! Events name the principal by ids only (key alias or digest prefix, team, organisation, end
//! user, agent): never a key, a credential or a header value.

#![cfg_attr(not(feature = "tracing"), allow(unused_variables))]

use crate::engine::Principal;
use crate::protocol::McpRequest;
use crate::rejection::Rejection;

/// A request was refused.
pub(crate) fn refused(
    principal: Option<&Principal>,
    request: Option<&McpRequest>,
    rejection: &Rejection,
) {
    #[cfg(feature = "tracing")]
    {
        let p = principal.cloned().unwrap_or_default();
        tracing::info!(
            target: "mcp_gatekeeper",
            decision = "refused",
            key = p.key_id.as_deref(),
            team = p.team_id.as_deref(),
            organization = p.organization_id.as_deref(),
            end_user = p.end_user_id.as_deref(),
            agent = p.agent_id.as_deref(),
            method = request.and_then(|r| r.method.as_ref()).map(|m| m.as_str()),
            target_name = request.and_then(|r| r.target.as_deref()),
            kind = ?rejection.kind(),
            reason = rejection.message(),
        );
    }
}

/// A request was let through.
pub(crate) fn allowed(principal: Option<&Principal>, request: &McpRequest, server: Option<&str>) {
    #[cfg(feature = "tracing")]
    {
        let p = principal.cloned().unwrap_or_default();
        tracing::debug!(
            target: "mcp_gatekeeper",
            decision = "allowed",
            key = p.key_id.as_deref(),
            team = p.team_id.as_deref(),
            organization = p.organization_id.as_deref(),
            end_user = p.end_user_id.as_deref(),
            agent = p.agent_id.as_deref(),
            method = request.method.as_ref().map(|m| m.as_str()),
            server,
            target_name = request.target.as_deref(),
        );
    }
}

/// A pluggable backend (identity resolver, cost hook) failed.
pub(crate) fn backend_error(error: &(dyn std::error::Error + Send + Sync)) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: "mcp_gatekeeper", error = %error, "backend failed; failing closed");
}

/// Something worth a warning that is not a decision (a hook panicked, a reply was too large).
pub(crate) fn warn(message: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: "mcp_gatekeeper", "{message}");
}
