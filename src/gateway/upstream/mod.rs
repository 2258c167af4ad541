//! The upstream side: how the gateway reaches each upstream server and speaks to it for one
//! caller — the spec and the connection, the client that relays what an upstream asks of its
//! client, the pooled sessions, the lists asked of them, the listen streams, and the one path
//! a `tools/call` takes to an upstream.
//!
//! This wing knows nothing of how a caller reached the gateway (endpoint, rmcp's server, REST)
//! and never decides what a caller may do: every request it is handed was allowed above it.

pub(crate) mod client;
pub(crate) mod http_clients;
pub(crate) mod legacy_sse;
pub(crate) mod listen;
pub(crate) mod lists;
pub(crate) mod parked;
pub(crate) mod per_request;
pub(crate) mod pool;
pub(crate) mod session;
pub(crate) mod spec;
pub(crate) mod tool_call;
pub(crate) mod wire;

pub use spec::{InProcessFactory, OAuth2, UpstreamProtocol, UpstreamSpec, UpstreamTransport};
