//! One [`Rejection`] type for every refusal, and how it renders.
//!
//! Refusals before MCP work (no key, forbidden scope, unreadable body, oversize) are plain HTTP
//! errors. Refusals of one MCP request (a tool, prompt or resource outside the grant, arguments
//! outside `allowed_params`) are answered in-band: by default as a tool result with
//! `isError: true` so the model can read why, optionally as a JSON-RPC error. The upstream never
//! sees a refused request. Every rendered response carries the `Rejection` in its extensions so
//! outer layers and logs can tell why.
//!
//! A rejection's text never includes server configuration, credentials or other servers' names.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::body::ReplyBody;
use crate::engine::{DenialStyle, DeniedBy, ParamsDenial};
use crate::protocol::{Era, McpRequest, RequestId, jsonrpc};

/// What was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credential was presented (401).
    MissingCredential,
    /// The credential is unknown (401).
    InvalidCredential,
    /// The identity backend failed; nothing is allowed while it is down (503).
    IdentityUnavailable,
    /// A valid token without a scope this resource requires (403, `insufficient_scope`).
    InsufficientScope,
    /// The request is malformed or ambiguous (400).
    BadRequest,
    /// The `Mcp-Method`, `Mcp-Name` or `MCP-Protocol-Version` header disagrees with the body
    /// (400, JSON-RPC error -32020 as protocol 2026-07-28 defines it).
    HeaderMismatch,
    /// The body is larger than the limit (413).
    PayloadTooLarge,
    /// The request named servers that are unknown or not allowed (403).
    ScopeForbidden,
    /// The session id is unknown or belongs to another caller (404: start a new session).
    SessionNotFound,
    /// The key's budget is spent (429).
    BudgetExceeded,
    /// A `tools/call` outside the grant (in-band).
    ToolDenied {
        /// What refused it.
        by: DeniedBy,
    },
    /// A `tools/call` with arguments outside `allowed_params` (in-band; 403 on REST).
    ParamsDenied,
    /// A prompt outside the grant (in-band JSON-RPC error).
    PromptDenied {
        /// What refused it.
        by: DeniedBy,
    },
    /// A resource outside the grant (in-band JSON-RPC error).
    ResourceDenied {
        /// What refused it.
        by: DeniedBy,
    },
    /// A `tools/call` over a rate, parallel or budget limit (in-band; 429 on REST).
    LimitExceeded,
    /// A `tools/call` whose limits could not be checked because their store failed (in-band;
    /// 503 on REST).
    LimitsUnavailable,
}

/// A refusal: why, the text the caller sees, and the JSON-RPC id and protocol era of the
/// request it answers when in-band.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    message: Cow<'static, str>,
    id: Option<RequestId>,
    era: Era,
    challenge: Option<HeaderValue>,
    retry_after: Option<u64>,
}

/// The text of a refused tool or prompt: the same whether it exists or not, unless pinning
/// holds it back from a caller who may otherwise use it.
fn denied(what: &str, name: &str, by: DeniedBy) -> String {
    if by == DeniedBy::Quarantined {
        format!(
            "{what} {name} is held back by tool pinning: its definition changed or was never \
             approved; an administrator must approve it"
        )
    } else {
        format!("{what} {name} is not allowed for this key")
    }
}

impl Rejection {
    fn new(kind: RejectionKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            id: None,
            era: Era::default(),
            challenge: None,
            retry_after: None,
        }
    }

    /// No credential.
    #[must_use]
    pub(crate) fn missing_credential() -> Self {
        Self::new(
            RejectionKind::MissingCredential,
            "Authentication required: pass an API key in x-litellm-api-key or Authorization: Bearer",
        )
    }

    /// An unknown credential.
    #[must_use]
    pub(crate) fn invalid_credential() -> Self {
        Self::new(RejectionKind::InvalidCredential, "Invalid API key")
    }

    /// A key that is known but blocked (401).
    #[must_use]
    pub(crate) fn key_blocked() -> Self {
        Self::new(
            RejectionKind::InvalidCredential,
            "This API key is blocked; ask an administrator to unblock it or issue a new one",
        )
    }

    /// A key whose expiry has passed (401).
    #[must_use]
    pub(crate) fn key_expired() -> Self {
        Self::new(
            RejectionKind::InvalidCredential,
            "This API key has expired; ask an administrator for a new one",
        )
    }

    /// A key whose budget, or its team's or organisation's, is spent (429).
    #[must_use]
    pub(crate) fn key_over_budget() -> Self {
        Self::new(
            RejectionKind::BudgetExceeded,
            "The budget of this API key is spent; ask an administrator to raise it or wait for it to reset",
        )
    }

    /// The access policy has not been loaded yet (its source has never answered): nothing is
    /// allowed until it is (503).
    #[must_use]
    pub fn policy_unavailable() -> Self {
        Self::new(
            RejectionKind::IdentityUnavailable,
            "The access policy is not loaded yet; try again shortly",
        )
    }

    /// A bearer token that is not valid here (malformed, expired, for another audience, signed
    /// by an unknown key...). `why` is shown to the caller: never put configuration in it.
    #[must_use]
    #[cfg_attr(not(feature = "oauth"), allow(dead_code))]
    pub(crate) fn invalid_token(why: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::InvalidCredential, why)
    }

    /// A valid token that lacks a scope this resource requires.
    #[must_use]
    #[cfg_attr(not(feature = "oauth"), allow(dead_code))]
    pub(crate) fn insufficient_scope() -> Self {
        Self::new(
            RejectionKind::InsufficientScope,
            "The token lacks a scope this resource requires",
        )
    }

    /// Answers with this `WWW-Authenticate` challenge instead of a bare `Bearer` (an OAuth
    /// resource server's `resource_metadata`, `scope` and `error`).
    #[must_use]
    #[cfg_attr(not(feature = "oauth"), allow(dead_code))]
    pub(crate) fn with_challenge(mut self, challenge: HeaderValue) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// The `WWW-Authenticate` challenge this refusal carries, if any besides a bare `Bearer`.
    #[must_use]
    pub fn challenge(&self) -> Option<&HeaderValue> {
        self.challenge.as_ref()
    }

    /// The identity backend is unavailable.
    #[must_use]
    pub(crate) fn identity_unavailable() -> Self {
        Self::new(
            RejectionKind::IdentityUnavailable,
            "Authentication is temporarily unavailable",
        )
    }

    /// A malformed or ambiguous request.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::BadRequest, message)
    }

    /// A routing or version header that disagrees with the body.
    pub(crate) fn header_mismatch(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::HeaderMismatch, message)
    }

    /// A body above the limit.
    #[must_use]
    pub(crate) fn payload_too_large(limit: usize) -> Self {
        Self::new(
            RejectionKind::PayloadTooLarge,
            format!("Request body is larger than {limit} bytes"),
        )
    }

    /// Servers named in the scope that are unknown or not allowed (the same text for both).
    #[must_use]
    pub(crate) fn scope_forbidden<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let list: Vec<&str> = names.into_iter().collect();
        Self::new(
            RejectionKind::ScopeForbidden,
            format!(
                "The key is not allowed to access the requested MCP servers: {}",
                list.join(", ")
            ),
        )
    }

    /// An unknown or foreign session.
    #[must_use]
    pub(crate) fn session_not_found() -> Self {
        Self::new(RejectionKind::SessionNotFound, "Session not found")
    }

    /// A tool outside the grant. The same text whether the tool exists or not — but for a tool
    /// the caller may use that tool pinning holds back, which says so.
    #[must_use]
    pub(crate) fn tool_denied(tool: &str, by: DeniedBy) -> Self {
        Self::new(RejectionKind::ToolDenied { by }, denied("Tool", tool, by))
    }

    /// Arguments outside `allowed_params`, with LiteLLM's exact text.
    #[must_use]
    pub(crate) fn params_denied(denial: &ParamsDenial) -> Self {
        Self::new(RejectionKind::ParamsDenied, denial.to_string())
    }

    /// A tool call over a limit; `message` names the limit and when it resets.
    #[must_use]
    pub fn limit_exceeded(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::LimitExceeded, message)
    }

    /// A tool call whose limits could not be checked (the store failed and the policy denies).
    #[must_use]
    pub(crate) fn limits_unavailable() -> Self {
        Self::new(
            RejectionKind::LimitsUnavailable,
            "Limits cannot be checked right now, so the call is refused; try again shortly",
        )
    }

    /// Tells the caller when to try again (`Retry-After`, in whole seconds rounded up).
    #[must_use]
    pub fn with_retry_after(mut self, after: Option<std::time::Duration>) -> Self {
        self.retry_after = after.map(|d| (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1));
        self
    }

    /// Seconds after which the caller may try again, when known.
    #[must_use]
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// A prompt outside the grant (or held back by pinning, as [`Rejection::tool_denied`]).
    #[must_use]
    pub(crate) fn prompt_denied(name: &str, by: DeniedBy) -> Self {
        Self::new(
            RejectionKind::PromptDenied { by },
            denied("Prompt", name, by),
        )
    }

    /// A resource outside the grant.
    #[must_use]
    pub(crate) fn resource_denied(uri: &str, by: DeniedBy) -> Self {
        Self::new(
            RejectionKind::ResourceDenied { by },
            denied("Resource", uri, by),
        )
    }

    /// Sets the JSON-RPC id an in-band refusal answers.
    #[must_use]
    pub(crate) fn with_id(mut self, id: Option<RequestId>) -> Self {
        self.id = id;
        self
    }

    /// Sets the protocol era the refusal is shaped for (see [`Era::shape_result`]).
    #[must_use]
    pub(crate) fn with_era(mut self, era: Era) -> Self {
        self.era = era;
        self
    }

    /// Answers `request`: its JSON-RPC id and its protocol era.
    #[must_use]
    pub fn answering(self, request: &McpRequest) -> Self {
        self.with_id(request.id.clone()).with_era(request.era)
    }

    /// The protocol era the refusal is shaped for.
    #[must_use]
    pub fn era(&self) -> Era {
        self.era
    }

    /// What was refused.
    #[must_use]
    pub fn kind(&self) -> &RejectionKind {
        &self.kind
    }

    /// The text the caller sees.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status when rendered as an HTTP error (in-band refusals are 200 over MCP).
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self.kind {
            RejectionKind::MissingCredential | RejectionKind::InvalidCredential => {
                StatusCode::UNAUTHORIZED
            }
            RejectionKind::IdentityUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            RejectionKind::BadRequest | RejectionKind::HeaderMismatch => StatusCode::BAD_REQUEST,
            RejectionKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RejectionKind::SessionNotFound => StatusCode::NOT_FOUND,
            RejectionKind::BudgetExceeded | RejectionKind::LimitExceeded => {
                StatusCode::TOO_MANY_REQUESTS
            }
            RejectionKind::LimitsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            RejectionKind::ScopeForbidden
            | RejectionKind::InsufficientScope
            | RejectionKind::ToolDenied { .. }
            | RejectionKind::ParamsDenied
            | RejectionKind::PromptDenied { .. }
            | RejectionKind::ResourceDenied { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// Whether this refuses one MCP request in-band rather than the HTTP request.
    #[must_use]
    pub fn is_in_band(&self) -> bool {
        matches!(
            self.kind,
            RejectionKind::ToolDenied { .. }
                | RejectionKind::ParamsDenied
                | RejectionKind::LimitExceeded
                | RejectionKind::LimitsUnavailable
                | RejectionKind::PromptDenied { .. }
                | RejectionKind::ResourceDenied { .. }
        ) && self.id.is_some()
    }

    /// The JSON body of this refusal.
    #[must_use]
    pub fn body(&self, style: DenialStyle) -> serde_json::Value {
        let id = self.id.as_ref();
        match (&self.kind, id) {
            (
                RejectionKind::ToolDenied { .. }
                | RejectionKind::ParamsDenied
                | RejectionKind::LimitExceeded
                | RejectionKind::LimitsUnavailable,
                Some(id),
            ) if style == DenialStyle::ToolResult => {
                jsonrpc::tool_error_result(id, &format!("Error: {}", self.message), self.era)
            }
            (
                RejectionKind::ToolDenied { .. }
                | RejectionKind::ParamsDenied
                | RejectionKind::PromptDenied { .. }
                | RejectionKind::ResourceDenied { .. },
                Some(id),
            ) => jsonrpc::error(Some(id), jsonrpc::code::INVALID_PARAMS, &self.message),
            (RejectionKind::LimitExceeded | RejectionKind::LimitsUnavailable, Some(id)) => {
                jsonrpc::error(Some(id), jsonrpc::code::LIMITED, &self.message)
            }
            (RejectionKind::BadRequest, _) => {
                jsonrpc::error(id, jsonrpc::code::INVALID_REQUEST, &self.message)
            }
            (RejectionKind::HeaderMismatch, _) => {
                jsonrpc::error(id, jsonrpc::code::HEADER_MISMATCH, &self.message)
            }
            (RejectionKind::PayloadTooLarge, _) => {
                jsonrpc::error(id, jsonrpc::code::TOO_LARGE, &self.message)
            }
            (RejectionKind::SessionNotFound, _) => {
                jsonrpc::error(id, jsonrpc::code::INVALID_REQUEST, &self.message)
            }
            _ => json!({ "error": &*self.message }),
        }
    }

    /// Renders the refusal as a response; the `Rejection` rides along in its extensions.
    #[must_use]
    pub fn into_response<B: ReplyBody>(self, style: DenialStyle) -> Response<B> {
        let status = if self.is_in_band() {
            StatusCode::OK
        } else {
            self.status()
        };
        let body = jsonrpc::to_bytes(&self.body(style));
        self.render(status, body)
    }

    /// Renders for a REST caller: always the HTTP status, `{"error": ...}` body.
    #[must_use]
    pub fn into_rest_response<B: ReplyBody>(self) -> Response<B> {
        let status = self.status();
        let body = jsonrpc::to_bytes(&json!({ "error": &*self.message }));
        self.render(status, body)
    }

    fn render<B: ReplyBody>(self, status: StatusCode, body: Bytes) -> Response<B> {
        let mut response = Response::new(B::from_bytes(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(challenge) = &self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, challenge.clone());
        } else if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(after));
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rejection {}

impl From<crate::engine::ScopeDenial> for Rejection {
    fn from(denial: crate::engine::ScopeDenial) -> Self {
        Self::scope_forbidden(denial.refused())
    }
}
