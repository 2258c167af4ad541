//! # mcp-gatekeeper
//!
//! Tower layers that put MCP (Model Context Protocol) access control in front of any MCP
//! service: who is calling, which servers the request names, what each key, team,
//! organisation, end user and agent may list and call, which arguments a tool call may carry,
//! how many calls and dollars each may spend, and what each call costs. The behaviour follows LiteLLM's MCP gateway permission model,
//! with its known leaks closed.
//!
//! ## Layer order
//!
//! ```text
//! request ─▶ IdentityLayer ─▶ NamespaceLayer ─▶ PermissionLayer ─▶ AllowedParamsLayer ─▶ LimitLayer ─▶ CostLayer ─▶ MCP service
//!            Principal        Scope              Grant, list        refuses bad args       rate, parallel  ToolCallEvent
//!            (401 first)      (403 if unknown    filtering on the                          and budget      → CostHook
//!                              or forbidden)      way back                                   limits          → SpendSink
//! ```
//!
//! Each layer is usable alone and reads and writes typed request extensions
//! ([`engine::Principal`], [`engine::Scope`], [`engine::Grant`], [`protocol::McpRequest`],
//! [`permission::ToolTarget`]), so the body is parsed once and the grant resolved once. A layer
//! never adds an error type: refusals are responses ([`rejection::Rejection`]), and the stack over
//! rmcp's `StreamableHttpService` keeps `Error = Infallible` and rmcp's response type.
//!
//! ## Example
//!
//! ```
//! use mcp_gatekeeper::{config::Config, Gatekeeper};
//! use tower::ServiceBuilder;
//!
//! let config = Config::from_json_str(r#"{
//!   "mcp_servers": {"wiki": {"url": "http://127.0.0.1:9001/mcp",
//!                            "allowed_params": {"read_wiki_contents": ["status"]}}},
//!   "keys": [{"key": "sk-alice", "key_alias": "alice",
//!             "object_permission": {"mcp_servers": ["wiki"]}}]
//! }"#)?;
//! // The inner service is the one server "wiki", so its tools keep their bare names.
//! let gatekeeper = Gatekeeper::for_server(config.policy()?, "wiki");
//! # let my_mcp_service = tower::service_fn(|_: http::Request<mcp_gatekeeper::body::Body>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(
//! #         http_body_util::combinators::BoxBody::<bytes::Bytes, std::convert::Infallible>::default()))
//! # });
//! let service = ServiceBuilder::new()
//!     .layer(gatekeeper.layer())
//!     .service(my_mcp_service);
//! # let _ = service;
//! # Ok::<_, mcp_gatekeeper::config::ConfigError>(())
//! ```
//!
//! With axum, mount it like rmcp's own service:
//! `Router::new().nest_service("/mcp", gatekeeper.layer().layer(mcp))`, or at the root
//! (`fallback_service`) to serve the `/{servers}/mcp` path forms as well.
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `tracing` | every [`audit`] event as a `tracing` event too (target `mcp_gatekeeper::audit`, the same field names): principal ids, method, server, tool, and for a refusal the level or rule that refused (never a key) |
//! | `config-yaml` | YAML configuration files ([`config::Config::from_yaml_str`]) |
//! | `openai` | MCP tools as OpenAI function tools and back |
//! | `gateway` | the aggregating gateway (rmcp, axum, reqwest, rustls) |
//! | `oauth` | an OAuth 2.1 resource server: bearer tokens besides keys |
//! | `postgres` | policy and spend in Postgres, shared by several replicas (`tokio-postgres`, `deadpool-postgres`) |
//! | `redis` | limit counters shared by several replicas in Redis ([`redis_limits`]) |
//! | `litellm-db` | the policy read from a LiteLLM proxy's own database, as LiteLLM means it (`postgres`, `crypto_secretbox`) |
//!
//! A policy can come from anywhere: [`source::PolicySource`] says where a snapshot comes from
//! and how a change is noticed; `source::watch` (with `gateway` or `postgres`) keeps a
//! [`Gatekeeper`] on the newest one.
//!
//! The core depends only on tower, http, http-body, bytes, serde, serde_json and futures,
//! plus `sha2` (key digests), `arc-swap` (the reloadable policy) and `serde_path_to_error`
//! (config error paths).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod body;
pub mod config;
mod context;
pub mod cost;
pub mod counters;
mod decision_events;
pub mod engine;
mod future;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod gatekeeper;
pub mod identity;
mod inner_service;
pub mod limit;
mod list_memo;
#[cfg(feature = "litellm-db")]
#[cfg_attr(docsrs, doc(cfg(feature = "litellm-db")))]
pub mod litellm_db;
pub mod metered;
pub mod metrics;
pub mod namespace;
#[cfg(feature = "openai")]
#[cfg_attr(docsrs, doc(cfg(feature = "openai")))]
pub mod openai;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
pub mod params;
pub mod permission;
pub mod pin_file;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
pub mod protocol;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis_limits;
pub mod rejection;
mod reservation;
pub mod source;
mod stack;
#[cfg(any(
    feature = "gateway",
    feature = "oauth",
    feature = "postgres",
    feature = "otel"
))]
mod tls;

pub use gatekeeper::{Gatekeeper, Limits, PolicySnapshot};
pub use stack::{GatekeeperLayer, Stack};
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod gateway;
#[cfg(feature = "oauth")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth")))]
pub mod oauth;
