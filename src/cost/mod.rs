//! [`CostLayer`]: one [`ToolCallEvent`] for every `tools/call` that reaches the service.
//!
//! The event (server, bare and prefixed tool name, argument names, principal ids, session,
//! start, duration, outcome, price) is built when the reply to the call is seen: a success, an
//! `isError` result, a JSON-RPC error, or an HTTP failure. An async [`CostHook`] may then set
//! the cost and replace the result before it reaches the caller; a hook that fails or panics
//! never breaks the call. The event then goes to a [`SpendSink`]. A call whose client goes away
//! first is still recorded, once, with [`Outcome::Disconnected`].
//!
//! Every call the server answers is one event; a request refused before it (here by the
//! identity layer) is none (`server`, `call` and `text` are hidden):
//!
//! ```
//! # use mcp_gatekeeper::{body::Body, config::Config, Gatekeeper};
//! # use http_body_util::BodyExt;
//! # use tower::{ServiceBuilder, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_json_str(r#"{
//!   "mcp_servers": {"wiki": {"url": "http://127.0.0.1:9001/mcp",
//!                            "disallowed_tools": ["delete_page"],
//!                            "allowed_params": {"search": ["query"]}},
//!                   "payroll": {"url": "http://127.0.0.1:9002/mcp"}},
//!   "keys": [{"key": "sk-alice", "object_permission": {"mcp_servers": ["wiki"]}}]
//! }"#)?;
//! let gatekeeper = Gatekeeper::new(config.policy()?);
//! # let server = tower::service_fn(|_: http::Request<Body>| async {
//! #     let reply = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
//! #     Ok::<_, std::convert::Infallible>(
//! #         http::Response::builder()
//! #             .header("content-type", "application/json")
//! #             .body(Body::from(reply))
//! #             .unwrap(),
//! #     )
//! # });
//! # let call = |key: &str, tool: &str, arguments: &str| {
//! #     http::Request::post("/mcp")
//! #         .header("x-litellm-api-key", key)
//! #         .header("content-type", "application/json")
//! #         .body(Body::from(format!(
//! #             r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
//! #         )))
//! #         .unwrap()
//! # };
//! # let text = |r: http::Response<Body>| async move {
//! #     String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
//! # };
//! use std::sync::{Arc, Mutex};
//! use mcp_gatekeeper::cost::{CostLayer, Outcome, ToolCallEvent};
//! use mcp_gatekeeper::identity::IdentityLayer;
//!
//! let events = Arc::new(Mutex::new(Vec::<ToolCallEvent>::new()));
//! let seen = Arc::clone(&events);
//! let service = ServiceBuilder::new()
//!     .layer(IdentityLayer::new(gatekeeper.clone()))
//!     .layer(CostLayer::new(gatekeeper).sink(move |e: ToolCallEvent| seen.lock().unwrap().push(e)))
//!     .service(server);
//! let answered = service.clone().oneshot(call("sk-alice", "wiki-search", "{}")).await?;
//! let _ = text(answered).await;
//! // A request the identity layer refuses never reaches the cost layer: no event.
//! let refused = service.oneshot(call("sk-mallory", "wiki-search", "{}")).await?;
//! assert_eq!(refused.status(), 401);
//! let events = events.lock().unwrap();
//! assert_eq!(events.len(), 1);
//! assert_eq!((&*events[0].tool, events[0].outcome), ("search", Outcome::Success));
//! # Ok(()) }
//! ```

mod body;
mod event;
mod future;
mod hook;
mod layer;
mod reply;
mod service;

pub use event::{CostHook, HookDecision, JsonlSink, Outcome, SpendSink, ToolCallEvent};
pub use future::ResponseFuture;
pub use layer::CostLayer;
pub use service::Cost;
