//! `general_settings.oauth`: the gateway as an OAuth 2.1 resource server.
//!
//! These types only describe the settings and check that they are consistent; the `oauth`
//! feature's [`OAuth`](crate::oauth::OAuth) resolver is built from them.

use serde::Deserialize;

use super::{ConfigError, ObjectPermission, Secret, SslVerify, UniqueMap, resolve_env};

/// The signature algorithms a token may be signed with. Symmetric (HMAC) algorithms and `none`
/// are never accepted.
pub const ALGORITHMS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

/// `general_settings.oauth`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// This resource's canonical URI, ending in `/mcp`: the audience tokens must carry (RFC 8707).
    /// A scoped path's own URI replaces the `/mcp` at its end (`…/github/mcp`).
    pub resource: String,
    /// The authorization servers whose tokens are accepted.
    pub issuers: Vec<IssuerConfig>,
    /// Scopes every token must carry (else 403 `insufficient_scope`).
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Leeway for `exp` and `nbf`, in seconds (default 60).
    pub clock_skew_seconds: Option<u64>,
    /// How old an issuer's key set may grow before it is fetched again in the background, in
    /// seconds (default 300).
    pub jwks_refresh_seconds: Option<u64>,
    /// How long a key set keeps serving while its issuer cannot be reached, in seconds since it
    /// was last fetched (default 86400). Past that, tokens of that issuer get 503.
    pub jwks_max_stale_seconds: Option<u64>,
    /// The least time between two fetches caused by tokens naming an unknown key (`kid`), in
    /// seconds (default 30).
    pub jwks_refetch_interval_seconds: Option<u64>,
}

/// One trusted authorization server.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Its issuer identifier, compared exactly with a token's `iss`.
    pub issuer: String,
    /// Audiences accepted from this issuer on every path besides each path's own URI (default:
    /// `resource`). For identity providers that cannot put the resource URI in `aud`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Where its keys are; default: the `jwks_uri` of its metadata
    /// (`/.well-known/oauth-authorization-server`, else `/.well-known/openid-configuration`).
    pub jwks_uri: Option<String>,
    /// The algorithms accepted from it (default: all of RS256, PS256, ES256 and EdDSA).
    pub algorithms: Option<Vec<String>>,
    /// Which claims name the caller.
    #[serde(default)]
    pub claims: ClaimsConfig,
    /// What each scope grants (the key level of a token's caller). With none, the key level
    /// restricts nothing and the team, organisation, end user and agent levels decide.
    #[serde(default)]
    pub scopes: UniqueMap<ObjectPermission>,
    /// RFC 7662 introspection of opaque (not JWT) tokens.
    pub introspection: Option<IntrospectionConfig>,
    /// How the issuer's certificate is verified: `true` (default), `false`, or a CA bundle path.
    pub ssl_verify: Option<SslVerify>,
}

/// `claims`: for each field of the caller, the claim it is read from. A dotted or indexed path
/// (`realm_access.roles[0]`) reaches into a claim.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClaimsConfig {
    /// Default `sub`.
    pub key_id: Option<String>,
    /// A display name.
    pub key_alias: Option<String>,
    /// A configured team.
    pub team_id: Option<String>,
    /// A configured organisation.
    pub organization_id: Option<String>,
    /// The end user.
    pub end_user_id: Option<String>,
    /// The agent.
    pub agent_id: Option<String>,
    /// The claim holding the token's scopes (a space-separated string or an array); default
    /// `scope`. A group claim can be named here to map groups through `scopes`.
    pub scope: Option<String>,
}

/// `introspection`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The endpoint; default: `introspection_endpoint` of the issuer's metadata.
    pub endpoint: Option<String>,
    /// This resource's client id at the authorization server.
    pub client_id: String,
    /// Its secret (`os.environ/NAME` reads the environment).
    pub client_secret: Secret,
    /// How long an answer is kept, in seconds (default 60; never past the token's `exp`).
    pub cache_seconds: Option<u64>,
}

/// Whether a URL is one the gateway may trust (see [`check_url`]).
#[cfg(feature = "oauth")]
pub(crate) fn check_url_text(value: &str) -> bool {
    check_url(value, "").is_ok()
}

/// A URL the gateway may trust: `https`, or `http` to a loopback host only.
pub(crate) fn check_url(value: &str, path: &str) -> Result<(), ConfigError> {
    let rest = if let Some(rest) = value.strip_prefix("https://") {
        rest
    } else if let Some(rest) = value.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let name = if host.starts_with('[') {
            host.split(']').next().map(|h| &h[1..]).unwrap_or_default()
        } else {
            host.split(':').next().unwrap_or_default()
        };
        if !matches!(name, "localhost" | "127.0.0.1" | "::1") {
            return Err(ConfigError::new(
                path,
                format!("{value:?} must use https (plain http only to a loopback host)"),
            ));
        }
        rest
    } else {
        return Err(ConfigError::new(
            path,
            format!("{value:?} is not an absolute https URL"),
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains('@') || rest.contains(['#', '?', ' ']) {
        return Err(ConfigError::new(
            path,
            format!("{value:?} must be a plain URL: a host, no user, query or fragment"),
        ));
    }
    Ok(())
}

impl OAuthConfig {
    /// Checks the settings: URLs, algorithms, claim paths, at most one introspecting issuer.
    /// Scope permissions are checked against the catalog by [`Config::policy`](super::Config).
    ///
    /// # Errors
    ///
    /// The first mistake, with its path.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.resolved()?.check_resolved()
    }

    /// The settings with every URL written as `os.environ/NAME` read from the environment
    /// (`resource`, and per issuer `issuer`, `audiences`, `jwks_uri` and the introspection
    /// `endpoint`).
    ///
    /// # Errors
    ///
    /// A variable that is not set.
    pub fn resolved(&self) -> Result<Self, ConfigError> {
        let at = |field: &str| format!("general_settings.oauth.{field}");
        let mut out = self.clone();
        out.resource = resolve_env(&self.resource, &at("resource"))?;
        for (i, issuer) in out.issuers.iter_mut().enumerate() {
            let at = |field: &str| at(&format!("issuers[{i}].{field}"));
            issuer.issuer = resolve_env(&issuer.issuer, &at("issuer"))?;
            for audience in &mut issuer.audiences {
                *audience = resolve_env(audience, &at("audiences"))?;
            }
            if let Some(uri) = &mut issuer.jwks_uri {
                *uri = resolve_env(uri, &at("jwks_uri"))?;
            }
            if let Some(endpoint) = issuer
                .introspection
                .as_mut()
                .and_then(|x| x.endpoint.as_mut())
            {
                *endpoint = resolve_env(endpoint, &at("introspection.endpoint"))?;
            }
        }
        Ok(out)
    }

    /// [`check`](Self::check) of settings already [`resolved`](Self::resolved).
    pub(crate) fn check_resolved(&self) -> Result<(), ConfigError> {
        let at = |field: &str| format!("general_settings.oauth.{field}");
        check_url(&self.resource, &at("resource"))?;
        if !self.resource.ends_with("/mcp") {
            return Err(ConfigError::new(
                at("resource"),
                "must be the URL of the gateway's /mcp endpoint, ending in /mcp",
            ));
        }
        if self.issuers.is_empty() {
            return Err(ConfigError::new(
                at("issuers"),
                "name at least one issuer whose tokens are accepted",
            ));
        }
        let mut introspecting = 0;
        for (i, issuer) in self.issuers.iter().enumerate() {
            let at = |field: &str| at(&format!("issuers[{i}].{field}"));
            if issuer.issuer.is_empty() {
                return Err(ConfigError::new(at("issuer"), "must not be empty"));
            }
            check_url(&issuer.issuer, &at("issuer"))?;
            if self.issuers[..i].iter().any(|o| o.issuer == issuer.issuer) {
                return Err(ConfigError::new(at("issuer"), "named twice"));
            }
            if let Some(uri) = &issuer.jwks_uri {
                check_url(uri, &at("jwks_uri"))?;
            }
            for alg in issuer.algorithms.iter().flatten() {
                if !ALGORITHMS.contains(&alg.as_str()) {
                    return Err(ConfigError::new(
                        at("algorithms"),
                        format!(
                            "{alg:?} is not accepted: use RS256, PS256, ES256 or EdDSA (never none or HMAC)"
                        ),
                    ));
                }
            }
            if issuer.algorithms.as_ref().is_some_and(Vec::is_empty) {
                return Err(ConfigError::new(at("algorithms"), "must not be empty"));
            }
            for audience in &issuer.audiences {
                if audience.is_empty() {
                    return Err(ConfigError::new(at("audiences"), "an audience is empty"));
                }
            }
            let c = &issuer.claims;
            for (field, path) in [
                ("key_id", &c.key_id),
                ("key_alias", &c.key_alias),
                ("team_id", &c.team_id),
                ("organization_id", &c.organization_id),
                ("end_user_id", &c.end_user_id),
                ("agent_id", &c.agent_id),
                ("scope", &c.scope),
            ] {
                if let Some(p) = path
                    && let Err(e) = ClaimPath::parse(p)
                {
                    return Err(ConfigError::new(at(&format!("claims.{field}")), e));
                }
            }
            if let Some(intro) = &issuer.introspection {
                introspecting += 1;
                if let Some(endpoint) = &intro.endpoint {
                    check_url(endpoint, &at("introspection.endpoint"))?;
                }
                if intro.client_id.is_empty() {
                    return Err(ConfigError::new(
                        at("introspection.client_id"),
                        "must not be empty",
                    ));
                }
            }
        }
        if introspecting > 1 {
            return Err(ConfigError::new(
                at("issuers"),
                "at most one issuer may introspect opaque tokens (an opaque token does not say whose it is)",
            ));
        }
        for (i, scope) in self.required_scopes.iter().enumerate() {
            if scope.is_empty() || scope.contains([' ', '"', '\\']) {
                return Err(ConfigError::new(
                    at(&format!("required_scopes[{i}]")),
                    "a scope is one word without quotes",
                ));
            }
        }
        Ok(())
    }
}

/// A path into a token's claims: names separated by dots, each optionally followed by array
/// indexes (`groups[0]`, `realm_access.roles[1]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPath(Vec<Step>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Name(String),
    Index(usize),
}

impl ClaimPath {
    /// Parses a path.
    ///
    /// # Errors
    ///
    /// An empty name, an unclosed or non-numeric index.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?} is not a claim path ({why}); write e.g. groups[0]");
        let mut steps = Vec::new();
        for part in text.split('.') {
            let (name, mut rest) = match part.split_once('[') {
                Some((_, "")) => return Err(bad("unclosed [")),
                Some((n, r)) => (n, r),
                None => (part, ""),
            };
            if name.is_empty() {
                return Err(bad("a name is empty"));
            }
            steps.push(Step::Name(name.to_owned()));
            while !rest.is_empty() {
                let (index, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
                let index = index.parse().map_err(|_| bad("an index is not a number"))?;
                steps.push(Step::Index(index));
                rest = match after.strip_prefix('[') {
                    Some(next) => next,
                    None if after.is_empty() => "",
                    None => return Err(bad("text after ]")),
                };
            }
        }
        Ok(Self(steps))
    }

    /// The value at this path, if every step exists.
    #[must_use]
    pub fn get<'v>(&self, claims: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.0.iter().try_fold(claims, |v, step| match step {
            Step::Name(n) => v.get(n.as_str()),
            Step::Index(i) => v.get(*i),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_paths_reach_into_objects_and_arrays() {
        let claims = serde_json::json!({"sub": "u1", "groups": ["eng", "ops"],
            "realm_access": {"roles": [["a", "b"]]}});
        let get = |p: &str| ClaimPath::parse(p).unwrap().get(&claims).cloned();
        assert_eq!(get("sub"), Some("u1".into()));
        assert_eq!(get("groups[1]"), Some("ops".into()));
        assert_eq!(get("realm_access.roles[0][1]"), Some("b".into()));
        assert_eq!(get("groups[2]"), None);
        assert_eq!(get("missing.deeper"), None);
        for bad in ["", "a..b", "a[", "a[x]", "a[0]b", "[0]"] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_https_or_loopback_http_urls_are_trusted() {
        for good in [
            "https://login.example.com/realms/acme",
            "http://127.0.0.1:8080",
            "http://localhost/x",
            "http://[::1]:9/",
        ] {
            assert!(check_url(good, "x").is_ok(), "{good}");
        }
        for bad in [
            "http://login.example.com",
            "ftp://x",
            "https://",
            "https://u@h/",
            "https://h/?q",
            "login.example.com",
        ] {
            assert!(check_url(bad, "x").is_err(), "{bad}");
        }
    }
}
