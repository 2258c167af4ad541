//! Per-request state shared by the layers through request extensions: the policy snapshot,
//! the grant, and the parsed request head. Whichever layer first needs one computes it; the
//! others reuse it, so nothing is loaded, resolved or parsed twice.

use std::fmt::Display;
use std::sync::Arc;

use bytes::Bytes;
use http::{Extensions, Request};

use crate::engine::{Grant, Principal};
use crate::gatekeeper::{Gatekeeper, Policy};
use crate::namespace::Scope;
use crate::protocol::{self, CollectError, McpRequest};
use crate::rejection::Rejection;

/// The policy snapshot of this request.
pub(crate) fn policy(ext: &mut Extensions, gk: &Gatekeeper) -> Arc<Policy> {
    if let Some(p) = ext.get::<Arc<Policy>>() {
        return Arc::clone(p);
    }
    let p = gk.policy();
    ext.insert(Arc::clone(&p));
    p
}

/// Resolves the grant once (hierarchy, then scope) and stores it.
pub(crate) fn ensure_grant(ext: &mut Extensions, gk: &Gatekeeper) -> Result<(), Rejection> {
    if ext.get::<Grant>().is_some() {
        return Ok(());
    }
    let policy = policy(ext, gk);
    let principal = ext
        .get::<Principal>()
        .ok_or_else(Rejection::missing_credential)?;
    let mut grant = Grant::resolve(policy.catalog(), principal);
    if let Some(scope) = ext.get::<Scope>() {
        scope.apply(&mut grant)?;
    }
    ext.insert(grant);
    Ok(())
}

/// Whether this request carries a JSON-RPC body to inspect that nobody parsed yet.
pub(crate) fn needs_inspection<B>(request: &Request<B>) -> bool {
    request.method() == http::Method::POST && request.extensions().get::<McpRequest>().is_none()
}

/// Collects and parses the body of a POST (bounded), checks the routing headers, stores the
/// parsed head, and hands the body back rebuilt from the same bytes.
pub(crate) async fn inspect<B>(
    request: Request<B>,
    gk: &Gatekeeper,
) -> Result<Request<B>, Rejection>
where
    B: http_body::Body + From<Bytes>,
    B::Error: Display,
{
    let (mut parts, body) = request.into_parts();
    let limit = gk.limits().max_request_body;
    let bytes = protocol::collect_limited(body, limit)
        .await
        .map_err(|e| match e {
            CollectError::TooLarge { limit } => Rejection::payload_too_large(limit),
            CollectError::Body(_) => Rejection::bad_request("the request body could not be read"),
        })?;
    let head =
        protocol::parse_request(&bytes).map_err(|e| Rejection::bad_request(e.to_string()))?;
    protocol::check_routing_headers(&parts.headers, &head)
        .map_err(|e| Rejection::bad_request(e.to_string()).with_id(head.id.clone()))?;
    parts.extensions.insert(head);
    Ok(Request::from_parts(parts, B::from(bytes)))
}
