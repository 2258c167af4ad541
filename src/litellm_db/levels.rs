//! LiteLLM's object permissions as the levels of [`Hierarchy::LiteLlm`](crate::engine::Hierarchy):
//! what each stored value means there, translated to server names.
//!
//! A LiteLLM list that is empty restricts nothing at its level. A level restricts when its
//! row lists servers, access groups, tool permissions or toolsets; it then grants the servers
//! it lists and those of its access groups — never a server named only by a tool permission,
//! which only narrows tools. A level that restricts yet lists no server that is served grants
//! nothing, the `allow_all_keys` servers included (LiteLLM leaves those), as does
//! `no-mcp-servers`.

use std::collections::{BTreeSet, HashMap};

use super::read::{LimitRow, PermissionRow};
use crate::engine::{LimitSpec, PermissionSpec};
use crate::postgres::string_lists;

/// LiteLLM's request limits of one row as a [`LimitSpec`]: `rpm_limit` and
/// `max_parallel_requests` over every tool call, `mcp_rpm_limit` per server (by id, name or
/// alias). A limit of zero or less refuses every call, so the row is refused (`Err`); a server
/// that is not served is left out with a note. LiteLLM's `max_budget` is not here: its spend
/// is LiteLLM's to count (see the key's budget check).
pub(crate) fn limits(
    names: &Names,
    row: &LimitRow,
    who: &str,
    notes: &mut Vec<String>,
) -> Result<Option<LimitSpec>, String> {
    let positive = |n: Option<i64>, field: &str| match n {
        Some(n) if n <= 0 => Err(format!("{field} {n} refuses every call")),
        n => Ok(n.map(i64::unsigned_abs)),
    };
    let mut spec = LimitSpec {
        rpm_limit: positive(row.rpm_limit, "rpm_limit")?,
        max_parallel_requests: positive(
            row.max_parallel_requests.map(i64::from),
            "max_parallel_requests",
        )?,
        ..LimitSpec::default()
    };
    match &row.mcp_rpm_limit {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => {
            for (server, n) in map {
                let field = format!("mcp_rpm_limit of {server:?}");
                let Some(n) = n.as_i64() else {
                    return Err(format!("{field} is not a whole number"));
                };
                let n = positive(Some(n), &field)?.unwrap_or(1);
                match names.refs.get(server) {
                    Some(name) => spec.mcp_rpm_limit.push((name.clone(), n)),
                    None => notes.push(format!(
                        "{who}: {field} names a server that is not served; that limit is left out"
                    )),
                }
            }
        }
        Some(_) => return Err("metadata.mcp_rpm_limit is not {server: calls per minute}".into()),
    }
    Ok((!spec.is_empty()).then_some(spec))
}

/// LiteLLM's `mcp_servers` entry that opts a key out of every server.
const NO_SERVERS: &str = "no-mcp-servers";
/// LiteLLM's `mcp_servers` entry that grants every server.
const ALL_SERVERS: &str = "all-proxy-mcpservers";

/// How server references and access groups resolve to the catalog's server names.
pub(crate) struct Names {
    /// LiteLLM server ids, names and aliases → the catalog's name.
    pub(crate) refs: HashMap<String, String>,
    /// Access group → its servers' names.
    pub(crate) groups: HashMap<String, BTreeSet<String>>,
    /// Every server name.
    pub(crate) all: BTreeSet<String>,
    /// The `allow_all_keys` servers' names.
    pub(crate) public: BTreeSet<String>,
}

/// A level: `None` restricts nothing; `Err` cannot be used (its principal fails closed).
pub(crate) type LevelResult = Result<Option<PermissionSpec>, String>;

impl Names {
    /// The level one object permission row sets; `notes` gets what was left out of it.
    pub(crate) fn level(&self, row: &PermissionRow, notes: &mut Vec<String>) -> LevelResult {
        if !row.blocked_tools.is_empty() {
            return Err(
                "blocked_tools is not supported yet, so this permission is refused \
                        rather than applied without it"
                    .into(),
            );
        }
        let tools = match row.mcp_tool_permissions.as_ref().filter(|v| !v.is_null()) {
            None => Vec::new(),
            Some(v) => {
                string_lists(v).ok_or("mcp_tool_permissions is not {server_id: [tool names]}")?
            }
        };
        if row.mcp_servers.iter().any(|s| s == NO_SERVERS) {
            return Ok(Some(PermissionSpec {
                mcp_servers: Some(Vec::new()),
                ..PermissionSpec::default()
            }));
        }
        let restricts = !row.mcp_servers.is_empty()
            || !row.mcp_access_groups.is_empty()
            || !tools.is_empty()
            || !row.mcp_toolsets.is_empty();
        if !restricts {
            return Ok(None);
        }
        if !row.mcp_toolsets.is_empty() {
            notes.push("its toolsets are not read, so they grant nothing here".into());
        }
        let mut servers = BTreeSet::new();
        for entry in &row.mcp_servers {
            if entry == ALL_SERVERS {
                servers.extend(self.all.iter().cloned());
            } else if let Some(name) = self.refs.get(entry) {
                servers.insert(name.clone());
            } else {
                notes.push(format!("it names server {entry:?}, which is not served"));
            }
        }
        for group in &row.mcp_access_groups {
            if let Some(names) = self.groups.get(group) {
                servers.extend(names.iter().cloned());
            }
        }
        let mut per_server: Vec<(String, Vec<String>)> = Vec::new();
        for (entry, list) in tools {
            let Some(name) = self.refs.get(&entry) else {
                notes.push(format!(
                    "its tool permissions name server {entry:?}, which is not served"
                ));
                continue;
            };
            match per_server.iter_mut().find(|(n, _)| n == name) {
                // Two spellings of one server: a tool must be in both lists.
                Some((_, existing)) => existing.retain(|t| list.contains(t)),
                None => per_server.push((name.clone(), list)),
            }
        }
        Ok(Some(PermissionSpec {
            mcp_servers: Some(servers.into_iter().collect()),
            mcp_access_groups: None,
            mcp_tool_permissions: (!per_server.is_empty()).then_some(per_server),
        }))
    }
}

/// `a` and `b` as one level that allows only what both allow: their servers intersect, and a
/// server's tools are limited by each list that names it.
pub(crate) fn both(a: &PermissionSpec, b: &PermissionSpec) -> PermissionSpec {
    let servers = match (&a.mcp_servers, &b.mcp_servers) {
        (Some(x), Some(y)) => Some(x.iter().filter(|s| y.contains(s)).cloned().collect()),
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    };
    let mut tools: Vec<(String, Vec<String>)> = a.mcp_tool_permissions.clone().unwrap_or_default();
    for (server, list) in b.mcp_tool_permissions.iter().flatten() {
        match tools.iter_mut().find(|(s, _)| s == server) {
            Some((_, existing)) => existing.retain(|t| list.contains(t)),
            None => tools.push((server.clone(), list.clone())),
        }
    }
    PermissionSpec {
        mcp_servers: servers,
        mcp_access_groups: None,
        mcp_tool_permissions: (!tools.is_empty()).then_some(tools),
    }
}

/// A level that grants nothing, `allow_all_keys` servers included.
pub(crate) fn nothing() -> PermissionSpec {
    PermissionSpec {
        mcp_servers: Some(Vec::new()),
        ..PermissionSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let mut refs = HashMap::new();
        for (r, n) in [
            ("id-gh", "github"),
            ("github", "github"),
            ("id-wiki", "wiki"),
            ("wiki", "wiki"),
            ("id-db", "db"),
        ] {
            refs.insert(r.to_owned(), n.to_owned());
        }
        let mut groups = HashMap::new();
        groups.insert(
            "dev".to_owned(),
            BTreeSet::from(["wiki".to_owned(), "db".to_owned()]),
        );
        Names {
            refs,
            groups,
            all: BTreeSet::from(["github".into(), "wiki".into(), "db".into(), "status".into()]),
            public: BTreeSet::from(["status".into()]),
        }
    }

    fn row() -> PermissionRow {
        PermissionRow {
            id: "p".into(),
            ..PermissionRow::default()
        }
    }

    #[test]
    fn empty_lists_restrict_nothing_and_entries_resolve_to_names() {
        let n = names();
        let mut notes = Vec::new();
        assert_eq!(n.level(&row(), &mut notes), Ok(None));
        let r = PermissionRow {
            mcp_servers: vec!["id-gh".into(), "gone".into()],
            mcp_access_groups: vec!["dev".into(), "nobody".into()],
            ..row()
        };
        let spec = n.level(&r, &mut notes).unwrap().unwrap();
        assert_eq!(spec.mcp_servers.unwrap(), ["db", "github", "wiki"]);
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn a_tool_permission_restricts_but_never_grants_its_server() {
        let n = names();
        let r = PermissionRow {
            mcp_tool_permissions: Some(serde_json::json!({"id-wiki": ["read"]})),
            ..row()
        };
        let spec = n.level(&r, &mut Vec::new()).unwrap().unwrap();
        assert!(
            spec.mcp_servers.unwrap().is_empty(),
            "no server, allow_all_keys servers included"
        );
        assert_eq!(
            spec.mcp_tool_permissions.unwrap(),
            [("wiki".to_owned(), vec!["read".to_owned()])]
        );
    }

    #[test]
    fn opt_out_all_servers_and_what_cannot_be_used() {
        let n = names();
        let out = PermissionRow {
            mcp_servers: vec!["no-mcp-servers".into(), "id-gh".into()],
            ..row()
        };
        assert_eq!(
            n.level(&out, &mut Vec::new())
                .unwrap()
                .unwrap()
                .mcp_servers
                .unwrap(),
            Vec::<String>::new()
        );
        let all = PermissionRow {
            mcp_servers: vec!["all-proxy-mcpservers".into()],
            ..row()
        };
        assert_eq!(
            n.level(&all, &mut Vec::new())
                .unwrap()
                .unwrap()
                .mcp_servers
                .unwrap()
                .len(),
            4
        );
        let bad = PermissionRow {
            mcp_tool_permissions: Some(serde_json::json!(["read"])),
            ..row()
        };
        assert!(n.level(&bad, &mut Vec::new()).is_err());
        let blocked = PermissionRow {
            blocked_tools: vec!["delete".into()],
            ..row()
        };
        assert!(n.level(&blocked, &mut Vec::new()).is_err());
    }

    #[test]
    fn both_intersects_servers_and_tools() {
        let a = PermissionSpec {
            mcp_servers: Some(vec!["github".into(), "wiki".into()]),
            mcp_access_groups: None,
            mcp_tool_permissions: Some(vec![("wiki".into(), vec!["read".into(), "write".into()])]),
        };
        let b = PermissionSpec {
            mcp_servers: Some(vec!["wiki".into()]),
            mcp_access_groups: None,
            mcp_tool_permissions: Some(vec![("wiki".into(), vec!["read".into()])]),
        };
        let c = both(&a, &b);
        assert_eq!(c.mcp_servers.unwrap(), ["wiki"]);
        assert_eq!(
            c.mcp_tool_permissions.unwrap(),
            [("wiki".to_owned(), vec!["read".to_owned()])]
        );
    }
}
