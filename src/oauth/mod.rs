//! [`OAuth`]: this resource as an OAuth 2.1 resource server, as the MCP authorization
//! specification asks of an HTTP MCP server — side by side with API keys.
//!
//! [`OAuth`] is a [`ResolveIdentity`]: give it to [`IdentityLayer::with_resolver`] and a
//! request may present either a key or a bearer token, and both reach the same [`Principal`]
//! and the same five-level permission hierarchy.
//!
//! - **Which credential is which.** The key header (`x-litellm-api-key`) always carries a key
//!   and wins when both it and `Authorization` are present. In `Authorization: Bearer`, a value
//!   with the shape of a JWT (three base64url segments) is a token; any other value is a key,
//!   except that with introspection configured a value not starting with `sk-` is an opaque
//!   token. A token is never looked up as a key, a key never parsed or sent anywhere as a token.
//! - **What is checked.** The token's `iss` must be a configured issuer exactly; its signature
//!   must verify with one of that issuer's keys (fetched from its `jwks_uri`, found through its
//!   metadata) under an accepted algorithm (RS256, PS256, ES256, EdDSA; never `none`, never
//!   HMAC); `exp` must be present and not past, `nbf` not ahead (both with a skew); `aud` must
//!   contain the URI of the path the request was sent to (`…/mcp`, or a scoped path's own
//!   `…/github/mcp`), or one of the issuer's configured `audiences`; every required scope must
//!   be present. Mapped claims must be present. A token's signature is checked once; the
//!   result is kept (by the token's SHA-256 digest) until it expires, and the per-request checks
//!   run on every request.
//! - **What it grants.** The issuer's `scopes` map turns the token's scopes into the key level;
//!   the team, organisation, end user and agent its claims name get their configured
//!   permissions, exactly as for a key. A team or organisation that is not configured refuses
//!   the token.
//! - **Refusals.** No credential, or one that is not valid here: 401 with
//!   `WWW-Authenticate: Bearer resource_metadata="…"` (and `scope`, and `error="invalid_token"`
//!   when a credential was presented). A valid token without a required scope: 403 with
//!   `error="insufficient_scope"`. An issuer whose keys cannot be had: 503.
//! - **Never passed on.** The token stays here: the gateway forwards neither `Authorization`
//!   nor the key header to any upstream.
//!
//! [`OAuth::metadata`] is the RFC 9728 protected resource metadata, as a service to mount at
//! `/.well-known/oauth-protected-resource` and below. Clients start there: a 401 names it.
//!
//! ```no_run
//! # use mcp_gatekeeper::{config::Config, identity::IdentityLayer, oauth::OAuth, Gatekeeper};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_json_str(r#"{
//!   "general_settings": {"oauth": {
//!     "resource": "https://gateway.example.com/mcp",
//!     "issuers": [{"issuer": "https://login.example.com/realms/acme",
//!                  "scopes": {"mcp:wiki": {"mcp_servers": ["wiki"]}}}],
//!     "required_scopes": ["mcp"]}},
//!   "mcp_servers": {"wiki": {"url": "http://127.0.0.1:9001/mcp"}}
//! }"#)?;
//! let gatekeeper = Gatekeeper::new(config.policy()?);
//! let oauth = OAuth::from_config(config.general_settings.oauth.as_ref().unwrap())?;
//! let identity = IdentityLayer::with_resolver(gatekeeper, oauth.clone());
//! let metadata = oauth.metadata(); // serve at /.well-known/oauth-protected-resource[/{*path}]
//! # let _ = (identity, metadata); Ok(()) }
//! ```
//!
//! [`IdentityLayer::with_resolver`]: crate::identity::IdentityLayer::with_resolver
//! [`Principal`]: crate::engine::Principal

mod claims;
mod introspect;
mod issuer;
mod jwt;
mod keys;
mod resource;
mod verify;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use resource::{METADATA_PATH, ProtectedResourceMetadata};

use claims::ClaimRules;
use introspect::Introspector;
use issuer::{IssuerKeys, Timing};
use resource::{Problem, Resource, challenge};
use verify::{Asked, IssuerRules, TokenCache, Unfit, Verdict, admit, verify_jwt};

use crate::config::{ConfigError, OAuthConfig};
use crate::engine::Principal;
use crate::identity::{IdentityError, IdentityRequest, Resolution, ResolveIdentity, StoreResolver};
use crate::rejection::Rejection;
use crate::tls::{UpstreamTls, Verify};

/// Accepts OAuth bearer tokens besides keys. Cheap to clone; see the [module docs](self).
#[derive(Clone)]
pub struct OAuth {
    inner: Arc<Inner>,
}

struct Inner {
    resource: Arc<Resource>,
    issuers: Vec<IssuerRules>,
    required_scopes: Vec<String>,
    /// `required_scopes` as a challenge writes them.
    scope_text: String,
    skew: u64,
    timing: Timing,
    tokens: TokenCache,
    metadata: ProtectedResourceMetadata,
}

impl fmt::Debug for OAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth")
            .field("resource", &self.inner.resource.uri())
            .field("issuers", &self.inner.issuers.len())
            .finish_non_exhaustive()
    }
}

impl OAuth {
    /// Builds the resolver from `general_settings.oauth`. Nothing is fetched yet: an issuer's
    /// keys are fetched when its first token arrives.
    ///
    /// # Errors
    ///
    /// Inconsistent settings (see [`OAuthConfig::check`]), an unreadable CA bundle, an unset
    /// `os.environ/` secret.
    pub fn from_config(config: &OAuthConfig) -> Result<Self, ConfigError> {
        let config = &config.resolved()?;
        config.check_resolved()?;
        let secs = |v: Option<u64>, default: u64| Duration::from_secs(v.unwrap_or(default));
        let timing = Timing {
            refresh: secs(config.jwks_refresh_seconds, 300),
            max_stale: secs(config.jwks_max_stale_seconds, 86_400),
            refetch_interval: secs(config.jwks_refetch_interval_seconds, 30),
            http_timeout: Duration::from_secs(5),
        };
        let mut issuers = Vec::new();
        for (i, c) in config.issuers.iter().enumerate() {
            let at = |field: &str| format!("general_settings.oauth.issuers[{i}].{field}");
            let verify = match &c.ssl_verify {
                Some(v) => crate::tls::verify_setting(v, &at("ssl_verify"))?,
                None => Verify::Platform,
            };
            let tls = UpstreamTls {
                verify,
                identity: None,
            };
            let http = crate::tls::client(&tls).map_err(|e| ConfigError::new(at("issuer"), e))?;
            let keys = IssuerKeys::new(c.issuer.clone(), c.jwks_uri.clone(), http, timing);
            let introspection = match &c.introspection {
                Some(x) => Some(Introspector {
                    endpoint: x.endpoint.clone(),
                    client_id: x.client_id.clone(),
                    client_secret: x
                        .client_secret
                        .resolve(&at("introspection.client_secret"))?,
                    cache: secs(x.cache_seconds, 60),
                }),
                None => None,
            };
            issuers.push(IssuerRules {
                keys: Arc::new(keys),
                audiences: if c.audiences.is_empty() {
                    vec![config.resource.clone()]
                } else {
                    c.audiences.clone()
                },
                algorithms: c.algorithms.as_ref().map_or_else(
                    || jwt::ALL.to_vec(),
                    |names| names.iter().filter_map(|n| jwt::Alg::parse(n)).collect(),
                ),
                claims: ClaimRules::new(&c.claims)
                    .map_err(|e| ConfigError::new(at("claims"), e))?,
                scopes: c
                    .scopes
                    .iter()
                    .map(|(s, p)| (s.to_owned(), p.spec()))
                    .collect(),
                introspection,
            });
        }
        let resource = Arc::new(Resource::new(&config.resource));
        let mut scopes_supported = config.required_scopes.clone();
        for (scope, _) in config.issuers.iter().flat_map(|i| i.scopes.iter()) {
            if !scopes_supported.iter().any(|s| s == scope) {
                scopes_supported.push(scope.to_owned());
            }
        }
        let metadata = ProtectedResourceMetadata {
            resource: Arc::clone(&resource),
            authorization_servers: config.issuers.iter().map(|i| i.issuer.clone()).collect(),
            scopes_supported: scopes_supported.into(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                resource,
                issuers,
                scope_text: config.required_scopes.join(" "),
                required_scopes: config.required_scopes.clone(),
                skew: config.clock_skew_seconds.unwrap_or(60),
                timing,
                tokens: TokenCache::default(),
                metadata,
            }),
        })
    }

    /// The RFC 9728 metadata service for this resource and its scoped paths.
    #[must_use]
    pub fn metadata(&self) -> ProtectedResourceMetadata {
        self.inner.metadata.clone()
    }
}

impl Inner {
    fn refuse(&self, path: &str, problem: Problem) -> IdentityError {
        let header = challenge(&self.resource, path, &self.scope_text, problem);
        let rejection = match problem {
            Problem::None => Rejection::missing_credential(),
            Problem::InvalidToken(why) => Rejection::invalid_token(why),
            Problem::InsufficientScope => Rejection::insufficient_scope(),
        };
        IdentityError::Refused(rejection.with_challenge(header))
    }

    /// Whether a bearer credential is a token (else a key).
    fn is_token(&self, credential: &str) -> bool {
        jwt::is_jwt(credential)
            || (!credential.starts_with("sk-")
                && self.issuers.iter().any(|i| i.introspection.is_some()))
    }

    fn admit(
        &self,
        checked: &claims::Checked,
        asked: &Asked<'_>,
    ) -> Result<Principal, IdentityError> {
        let rules = &self.issuers[checked.issuer];
        admit(
            checked,
            rules,
            &self.resource,
            &self.required_scopes,
            self.skew,
            asked,
        )
        .map_err(|unfit| match unfit {
            Unfit::Invalid(why) => self.refuse(asked.path, Problem::InvalidToken(why)),
            Unfit::Scope => self.refuse(asked.path, Problem::InsufficientScope),
        })
    }
}

/// The future of an answer that needs the network: a key set fetched, or a token introspected.
pub type OAuthFuture = Pin<Box<dyn Future<Output = Result<Principal, IdentityError>> + Send>>;

/// What the future of one request owns of it.
struct Owned {
    token: String,
    digest: crate::engine::KeyDigest,
    path: String,
    end_user: Option<String>,
    agent: Option<String>,
    policy: Arc<crate::gatekeeper::PolicySnapshot>,
}

impl Owned {
    fn asked(&self) -> Asked<'_> {
        Asked {
            path: &self.path,
            end_user: self.end_user.as_deref(),
            agent: self.agent.as_deref(),
            policy: &self.policy,
        }
    }
}

impl ResolveIdentity for OAuth {
    type Future = OAuthFuture;

    fn resolve(&self, request: &IdentityRequest<'_>) -> Resolution<OAuthFuture> {
        let inner = &self.inner;
        let path = request.parts.uri.path();
        let Some(credential) = request.key else {
            return Resolution::Now(Err(inner.refuse(path, Problem::None)));
        };
        if !request.bearer || !inner.is_token(credential) {
            return Resolution::Now(StoreResolver::lookup(request).map_err(|_| {
                inner.refuse(
                    path,
                    Problem::InvalidToken("the credential is not valid here"),
                )
            }));
        }
        let Some(digest) = request.key_digest else {
            return Resolution::Now(Err(inner.refuse(path, Problem::None)));
        };
        let asked = Asked {
            path,
            end_user: request.end_user_id,
            agent: request.agent_id,
            policy: request.policy,
        };
        if let Some(checked) = inner.tokens.get(&digest) {
            return Resolution::Now(inner.admit(&checked, &asked));
        }
        // A JWT that needs keys fetched first: from which issuer, after how many fetches.
        let mut fetch = None;
        if jwt::is_jwt(credential) {
            match verify_jwt(&inner.issuers, credential, true) {
                Verdict::Checked(checked) => {
                    let checked = Arc::from(checked);
                    inner.tokens.insert(digest, Arc::clone(&checked));
                    return Resolution::Now(inner.admit(&checked, &asked));
                }
                Verdict::Refused(why) => {
                    return Resolution::Now(Err(inner.refuse(path, Problem::InvalidToken(why))));
                }
                Verdict::Unavailable => return Resolution::Now(Err(unavailable())),
                Verdict::Fetch { issuer, seen } => fetch = Some((issuer, seen)),
            }
        }
        let owned = Owned {
            token: credential.to_owned(),
            digest,
            path: path.to_owned(),
            end_user: request.end_user_id.map(str::to_owned),
            agent: request.agent_id.map(str::to_owned),
            policy: Arc::clone(request.policy),
        };
        let me = Arc::clone(inner);
        Resolution::Later(Box::pin(async move {
            let checked = match fetch {
                Some((issuer, seen)) => me.fetch_and_verify(&owned, issuer, seen).await?,
                None => me.introspect(&owned).await?,
            };
            let checked = Arc::new(checked);
            me.tokens.insert(owned.digest, Arc::clone(&checked));
            me.admit(&checked, &owned.asked())
        }))
    }
}

fn unavailable() -> IdentityError {
    IdentityError::Unavailable("the token issuer's keys cannot be fetched".into())
}

impl Inner {
    /// Fetches the keys a token needs (once, at a bounded rate), then checks it again without
    /// fetching.
    async fn fetch_and_verify(
        &self,
        owned: &Owned,
        issuer: usize,
        seen: u64,
    ) -> Result<claims::Checked, IdentityError> {
        if let Err(e) = self.issuers[issuer].keys.fetch(seen).await {
            let e: crate::body::BoxError = e.into();
            crate::decision_events::backend_error(&*e);
        }
        match verify_jwt(&self.issuers, &owned.token, false) {
            Verdict::Checked(c) => Ok(*c),
            Verdict::Refused(why) => Err(self.refuse(&owned.path, Problem::InvalidToken(why))),
            Verdict::Unavailable | Verdict::Fetch { .. } => Err(unavailable()),
        }
    }

    /// Asks the introspecting issuer about an opaque token.
    async fn introspect(&self, owned: &Owned) -> Result<claims::Checked, IdentityError> {
        let Some((index, rules, introspector)) = self
            .issuers
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.introspection.as_ref().map(|x| (i, r, x)))
        else {
            return Err(self.refuse(&owned.path, Problem::InvalidToken("the token is not a JWT")));
        };
        let answer = introspector
            .ask(&rules.keys, &owned.token, self.timing.http_timeout)
            .await
            .map_err(|e| IdentityError::Unavailable(e.into()))?;
        let invalid = |why| self.refuse(&owned.path, Problem::InvalidToken(why));
        let Some(mut claims) = answer else {
            return Err(invalid("the token is not active"));
        };
        match claims.get("iss").and_then(|v| v.as_str()) {
            None => claims["iss"] = rules.keys.issuer.clone().into(),
            Some(iss) if iss == rules.keys.issuer => {}
            Some(_) => return Err(invalid("the token's issuer is not trusted here")),
        }
        let mut checked = claims::read(index, &rules.keys.issuer, &rules.claims, &claims, true)
            .map_err(invalid)?;
        let cache_for = introspector.cache.as_secs();
        checked.cache_until = checked
            .expires
            .min(verify::unix_now().saturating_add(cache_for));
        Ok(checked)
    }
}
