//! What the gateway keeps per caller: who is calling ([`Caller`]: headers, key digest, grant
//! and protocol era, read once from the HTTP request under the MCP one), the lists kept for its
//! upstream sessions, and the states, tasks and listen streams handed out to it.
//!
//! The ground of the gateway: this wing imports nothing of the others, speaks to no upstream
//! and answers no request.

pub(crate) mod input_state;
pub(crate) mod list_cache;
pub(crate) mod listeners;
pub(crate) mod task_ids;

use http::HeaderMap;
use rmcp::RoleServer;
use rmcp::model::ProtocolVersion;
use rmcp::service::RequestContext;

use crate::engine::{Grant, KeyDigest};

/// Whether the request came on protocol 2026-07-28 or later.
pub(crate) fn is_modern(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// Who is calling, as the aggregating handler sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Caller {
    pub(crate) headers: HeaderMap,
    pub(crate) digest: Option<KeyDigest>,
    pub(crate) grant: Option<Grant>,
    /// On protocol 2026-07-28 or later: the upstream's requests are held for the caller's next
    /// round instead of being sent to it, so such callers get upstream sessions of their own.
    pub(crate) modern: bool,
    /// The budget reservation of this call, when the limit layer made one.
    pub(crate) settler: Option<crate::reservation::BudgetSettler>,
}

impl Caller {
    pub(crate) fn from_context(ctx: &rmcp::service::RequestContext<RoleServer>) -> Self {
        match ctx.extensions.get::<http::request::Parts>() {
            Some(parts) => Self::from_parts(parts, is_modern(ctx)),
            None => Self::default(),
        }
    }

    /// The caller of the HTTP request `parts`.
    pub(crate) fn from_parts(parts: &http::request::Parts, modern: bool) -> Self {
        Self {
            headers: parts.headers.clone(),
            digest: parts.extensions.get::<KeyDigest>().copied(),
            grant: parts.extensions.get::<Grant>().cloned(),
            modern,
            settler: parts
                .extensions
                .get::<crate::reservation::BudgetSettler>()
                .cloned(),
        }
    }
}
