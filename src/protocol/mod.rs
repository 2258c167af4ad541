//! Sans-I/O MCP inspection: the lean request parse, bounded body collection, SSE framing and
//! JSON-RPC reply builders.
//!
//! This module does no I/O of its own and never decides policy; it only turns bytes into the
//! facts the layers decide on, and fails closed on anything it cannot read unambiguously.

mod body;
mod era;
mod fields;
mod headers;
pub mod jsonrpc;
mod parse;
mod request;
pub mod sse;
mod strict;

pub(crate) use body::{CollectError, Collected, collect_limited, collect_up_to};
pub use era::{Era, META_PROTOCOL_VERSION};
pub(crate) use headers::check_routing_headers;
pub use parse::parse_request;
pub use request::{McpRequest, MessageKind, Method, ParseError, RequestId};
pub(crate) use strict::Key;

/// The header an MCP session travels in (streamable HTTP).
pub(crate) const SESSION_HEADER: http::HeaderName = http::HeaderName::from_static("mcp-session-id");

/// Whether a `content-type` value names `media` (given in lower case), in any letter case and
/// whatever parameters follow: without allocating, as every reply is asked this.
pub(crate) fn media_is(content_type: Option<&http::HeaderValue>, media: &str) -> bool {
    content_type
        .and_then(|v| v.as_bytes().get(..media.len()))
        .is_some_and(|head| head.eq_ignore_ascii_case(media.as_bytes()))
}
