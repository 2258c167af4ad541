//! What a verified token says about its caller, read through the issuer's claim mapping, and
//! kept (by the token's digest) while the token is valid.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::config::{ClaimPath, ClaimsConfig};
use crate::engine::{KeyDigest, PermissionSpec, Permissions};

/// Which claim each field of the caller is read from.
#[derive(Debug)]
pub(crate) struct ClaimRules {
    key_id: ClaimPath,
    key_alias: Option<ClaimPath>,
    team_id: Option<ClaimPath>,
    organization_id: Option<ClaimPath>,
    end_user_id: Option<ClaimPath>,
    agent_id: Option<ClaimPath>,
    /// `None`: `scope`, else `scp`.
    scope: Option<ClaimPath>,
}

impl ClaimRules {
    /// Claim paths were checked when the configuration loaded.
    pub(crate) fn new(c: &ClaimsConfig) -> Result<Self, String> {
        let path = |p: &Option<String>| p.as_deref().map(ClaimPath::parse).transpose();
        Ok(Self {
            key_id: ClaimPath::parse(c.key_id.as_deref().unwrap_or("sub"))?,
            key_alias: path(&c.key_alias)?,
            team_id: path(&c.team_id)?,
            organization_id: path(&c.organization_id)?,
            end_user_id: path(&c.end_user_id)?,
            agent_id: path(&c.agent_id)?,
            scope: path(&c.scope)?,
        })
    }
}

/// The caller's fields a token names.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    pub(crate) key_id: String,
    pub(crate) key_alias: Option<String>,
    pub(crate) team_id: Option<String>,
    pub(crate) organization_id: Option<String>,
    pub(crate) end_user_id: Option<String>,
    pub(crate) agent_id: Option<String>,
}

/// A token whose signature (or introspection) and issuer are established: what is checked
/// per request (time, audience, scopes) and who it names.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) issuer: usize,
    /// `exp`, in seconds since the epoch (`u64::MAX`: an introspected token without one).
    pub(crate) expires: u64,
    pub(crate) not_before: Option<u64>,
    /// Until when this entry may serve from the cache.
    pub(crate) cache_until: u64,
    pub(crate) audiences: Vec<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) ids: Ids,
    /// Bound to sessions and upstream connections: issuer and subject, not the token.
    pub(crate) caller: KeyDigest,
    /// The key level compiled for one catalog generation.
    pub(crate) key_level: Mutex<Option<(u64, Option<Arc<Permissions>>)>>,
}

const MISSING: &str = "the token lacks a claim this resource requires";

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn seconds(claims: &Value, name: &str) -> Result<Option<u64>, &'static str> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or("the token's time claims are unreadable"),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        _ => Vec::new(),
    }
}

/// Reads a token's claims. `exp` is required unless `exp_optional` (introspection answers);
/// so are `aud` and every mapped claim. The error is a description the caller may see.
pub(crate) fn read(
    issuer: usize,
    issuer_id: &str,
    rules: &ClaimRules,
    claims: &Value,
    exp_optional: bool,
) -> Result<Checked, &'static str> {
    let expires = match seconds(claims, "exp")? {
        Some(exp) => exp,
        None if exp_optional => u64::MAX,
        None => return Err("the token has no expiry"),
    };
    let audiences = strings(claims.get("aud"));
    if audiences.is_empty() {
        return Err("the token names no audience");
    }
    let mapped = |path: &Option<ClaimPath>| -> Result<Option<String>, &'static str> {
        path.as_ref()
            .map(|p| p.get(claims).and_then(text).ok_or(MISSING))
            .transpose()
    };
    let key_id = rules.key_id.get(claims).and_then(text).ok_or(MISSING)?;
    let scopes = match &rules.scope {
        Some(path) => strings(path.get(claims)),
        None => strings(claims.get("scope").or_else(|| claims.get("scp"))),
    };
    let caller = KeyDigest::of(&format!("oauth\n{issuer_id}\n{key_id}"));
    Ok(Checked {
        issuer,
        expires,
        not_before: seconds(claims, "nbf")?,
        cache_until: expires,
        audiences,
        scopes,
        ids: Ids {
            key_alias: mapped(&rules.key_alias)?,
            team_id: mapped(&rules.team_id)?,
            organization_id: mapped(&rules.organization_id)?,
            end_user_id: mapped(&rules.end_user_id)?,
            agent_id: mapped(&rules.agent_id)?,
            key_id,
        },
        caller,
        key_level: Mutex::new(None),
    })
}

/// What a token's scopes grant together: the union of the servers and groups of every scope it
/// carries that the issuer maps (none mapped: no servers). Tool lists of several scopes add up.
pub(crate) fn granted(map: &[(String, PermissionSpec)], scopes: &[String]) -> PermissionSpec {
    let mut spec = PermissionSpec {
        mcp_servers: Some(Vec::new()),
        mcp_access_groups: Some(Vec::new()),
        mcp_tool_permissions: None,
    };
    for (_, grant) in map.iter().filter(|(s, _)| scopes.contains(s)) {
        let extend = |into: &mut Option<Vec<String>>, from: &Option<Vec<String>>| {
            if let (Some(into), Some(from)) = (into.as_mut(), from) {
                into.extend(from.iter().cloned());
            }
        };
        extend(&mut spec.mcp_servers, &grant.mcp_servers);
        extend(&mut spec.mcp_access_groups, &grant.mcp_access_groups);
        if let Some(tools) = &grant.mcp_tool_permissions {
            let all = spec.mcp_tool_permissions.get_or_insert_with(Vec::new);
            for (server, list) in tools {
                match all.iter_mut().find(|(s, _)| s == server) {
                    Some((_, have)) => have.extend(list.iter().cloned()),
                    None => all.push((server.clone(), list.clone())),
                }
            }
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> ClaimRules {
        ClaimRules::new(&serde_json::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn claims_are_read_through_the_mapping() {
        let claims = serde_json::json!({"sub": "u1", "exp": 2_000_000_000u64, "aud": "https://gw/mcp",
            "groups": ["eng"], "email": "a@example.com", "scp": ["mcp", "mcp:read"]});
        let r = rules(r#"{"team_id": "groups[0]", "end_user_id": "email"}"#);
        let c = read(0, "https://idp", &r, &claims, false).unwrap();
        assert_eq!(c.ids.key_id, "u1");
        assert_eq!(c.ids.team_id.as_deref(), Some("eng"));
        assert_eq!(c.ids.end_user_id.as_deref(), Some("a@example.com"));
        assert_eq!(c.scopes, ["mcp", "mcp:read"]);
        assert_eq!(c.audiences, ["https://gw/mcp"]);
        let missing = rules(r#"{"organization_id": "org"}"#);
        assert_eq!(read(0, "i", &missing, &claims, false).err(), Some(MISSING));
        let no_exp = serde_json::json!({"sub": "u1", "aud": "x"});
        assert!(read(0, "i", &r, &no_exp, false).is_err());
        assert!(read(0, "i", &rules("{}"), &no_exp, true).is_ok());
        let no_aud = serde_json::json!({"sub": "u1", "exp": 1});
        assert!(read(0, "i", &rules("{}"), &no_aud, false).is_err());
    }

    #[test]
    fn scopes_add_up_and_unmapped_scopes_grant_nothing() {
        let spec = |servers: &[&str]| PermissionSpec {
            mcp_servers: Some(servers.iter().map(|s| (*s).to_owned()).collect()),
            ..PermissionSpec::default()
        };
        let map = vec![
            ("mcp:github".to_owned(), spec(&["github"])),
            ("mcp:wiki".to_owned(), spec(&["wiki"])),
        ];
        let both = granted(&map, &["mcp:github".into(), "mcp:wiki".into()]);
        assert_eq!(both.mcp_servers, Some(vec!["github".into(), "wiki".into()]));
        let none = granted(&map, &["other".into()]);
        assert_eq!(none.mcp_servers, Some(vec![]));
    }
}
