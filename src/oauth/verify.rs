//! The checks of one token: the signature and issuer once per token (then cached by digest),
//! time, audience and scopes on every request, and the caller it names.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::claims::{self, Checked, ClaimRules};
use super::introspect::Introspector;
use super::issuer::{Current, IssuerKeys};
use super::jwt::{self, Alg};
use super::keys::select;
use super::resource::Resource;
use crate::engine::{ClaimedIdentity, KeyDigest, Level, PermissionSpec, Permissions, Principal};
use crate::gatekeeper::PolicySnapshot;

/// One trusted issuer.
#[derive(Debug)]
pub(crate) struct IssuerRules {
    pub(crate) keys: Arc<IssuerKeys>,
    /// Accepted on every path besides the path's own URI.
    pub(crate) audiences: Vec<String>,
    pub(crate) algorithms: Vec<Alg>,
    pub(crate) claims: ClaimRules,
    /// Scope → what it grants; empty: the key level restricts nothing.
    pub(crate) scopes: Vec<(String, PermissionSpec)>,
    pub(crate) introspection: Option<Introspector>,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// What checking a token's signature came to.
pub(crate) enum Verdict {
    Checked(Box<Checked>),
    /// Refused; the description the caller sees.
    Refused(&'static str),
    /// The issuer's keys must be fetched first (`seen`: the fetches counted before).
    Fetch {
        issuer: usize,
        seen: u64,
    },
    /// The issuer's keys cannot be had.
    Unavailable,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks a JWT's issuer, algorithm and signature, and reads its claims. With `may_fetch`, a
/// missing key set or (at a bounded rate) an unknown `kid` asks for a fetch instead of an answer.
pub(crate) fn verify_jwt(issuers: &[IssuerRules], token: &str, may_fetch: bool) -> Verdict {
    let jws = match jwt::decode(token) {
        Ok(j) => j,
        Err(why) => return Verdict::Refused(why),
    };
    let iss = jws.claims.get("iss").and_then(|v| v.as_str());
    let Some((index, rules)) = issuers
        .iter()
        .enumerate()
        .find(|(_, r)| Some(r.keys.issuer.as_str()) == iss)
    else {
        return Verdict::Refused("the token's issuer is not trusted here");
    };
    if !rules.algorithms.contains(&jws.alg) {
        return Verdict::Refused("the token's signature algorithm is not accepted");
    }
    let now = Instant::now();
    let (keys, seen) = match rules.keys.current(now) {
        Current::Usable(keys, seen) => (keys, seen),
        Current::Missing(seen) if may_fetch => {
            return Verdict::Fetch {
                issuer: index,
                seen,
            };
        }
        Current::Missing(_) | Current::Down => return Verdict::Unavailable,
    };
    let Some(key) = select(&keys, jws.kid.as_deref(), jws.alg) else {
        if may_fetch && rules.keys.may_refetch(now) {
            return Verdict::Fetch {
                issuer: index,
                seen,
            };
        }
        return Verdict::Refused("the token is signed with a key this resource does not know");
    };
    if !jws.signed_by(&key.key) {
        return Verdict::Refused("the token's signature does not verify");
    }
    match claims::read(index, &rules.keys.issuer, &rules.claims, &jws.claims, false) {
        Ok(checked) => Verdict::Checked(Box::new(checked)),
        Err(why) => Verdict::Refused(why),
    }
}

/// What a request adds to a cached token: where it was sent and the names in its headers.
pub(crate) struct Asked<'a> {
    pub(crate) path: &'a str,
    pub(crate) end_user: Option<&'a str>,
    pub(crate) agent: Option<&'a str>,
    pub(crate) policy: &'a PolicySnapshot,
}

/// Why a checked token does not admit this request.
pub(crate) enum Unfit {
    Invalid(&'static str),
    Scope,
}

/// The principal of a checked token for one request.
pub(crate) fn admit(
    checked: &Checked,
    rules: &IssuerRules,
    resource: &Resource,
    required_scopes: &[String],
    skew: u64,
    asked: &Asked<'_>,
) -> Result<Principal, Unfit> {
    let now = unix_now();
    if checked.expires.saturating_add(skew) < now {
        return Err(Unfit::Invalid("the token has expired"));
    }
    if checked
        .not_before
        .is_some_and(|nbf| nbf > now.saturating_add(skew))
    {
        return Err(Unfit::Invalid("the token is not valid yet"));
    }
    let for_here = checked
        .audiences
        .iter()
        .any(|a| resource.is_uri_of(a, asked.path) || rules.audiences.contains(a));
    if !for_here {
        return Err(Unfit::Invalid("the token was issued for another resource"));
    }
    if !required_scopes.iter().all(|s| checked.scopes.contains(s)) {
        return Err(Unfit::Scope);
    }
    let permissions = key_level(checked, rules, asked.policy)
        .ok_or(Unfit::Invalid("the token's scopes cannot be applied here"))?;
    let ids = &checked.ids;
    let mut claimed = ClaimedIdentity::new();
    claimed.key_id = Some(&ids.key_id);
    claimed.key_alias = ids.key_alias.as_deref();
    claimed.team_id = ids.team_id.as_deref();
    claimed.organization_id = ids.organization_id.as_deref();
    claimed.end_user_id = ids.end_user_id.as_deref().or(asked.end_user);
    claimed.agent_id = ids.agent_id.as_deref().or(asked.agent);
    claimed.permissions = permissions;
    let mut principal = asked
        .policy
        .identities()
        .claimed_principal(&claimed)
        .map_err(|level| {
            Unfit::Invalid(match level {
                Level::Organization => "the token's organisation is not set up here",
                _ => "the token's team is not set up here",
            })
        })?;
    principal.caller_digest = Some(checked.caller);
    Ok(principal)
}

/// The key level of a token for the policy's catalog, compiled once per catalog generation.
/// `None`: its scopes name what the catalog lacks (fail closed).
fn key_level(
    checked: &Checked,
    rules: &IssuerRules,
    policy: &PolicySnapshot,
) -> Option<Option<Arc<Permissions>>> {
    if rules.scopes.is_empty() {
        return Some(None);
    }
    let catalog = policy.catalog();
    let mut memo = checked
        .key_level
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((generation, p)) = &*memo
        && *generation == catalog.generation()
    {
        return Some(p.clone());
    }
    let spec = claims::granted(&rules.scopes, &checked.scopes);
    let compiled = Some(Arc::new(catalog.compile_permissions(&spec).ok()?));
    *memo = Some((catalog.generation(), compiled.clone()));
    Some(compiled)
}

/// Tokens already checked, by digest, until they expire.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    map: RwLock<HashMap<KeyDigest, Arc<Checked>>>,
}

/// The most tokens kept; past it, expired ones go, then all.
const CACHED_TOKENS: usize = 16_384;

impl TokenCache {
    pub(crate) fn get(&self, digest: &KeyDigest) -> Option<Arc<Checked>> {
        let map = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = map.get(digest)?;
        (found.cache_until >= unix_now()).then(|| Arc::clone(found))
    }

    pub(crate) fn insert(&self, digest: KeyDigest, checked: Arc<Checked>) {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= CACHED_TOKENS {
            let now = unix_now();
            map.retain(|_, c| c.cache_until >= now);
            if map.len() >= CACHED_TOKENS {
                map.clear();
            }
        }
        map.insert(digest, checked);
    }
}
