//! The policy engine as plain functions: one table row per rule of the permission hierarchy,
//! tool rules, name splitting, allowed_params and prices, plus property tests for its laws.

use std::sync::Arc;

use mcp_gatekeeper::engine::{
    Attribution, Catalog, CatalogError, CostInfo, DeniedBy, Grant, Level, Mount, NameIndex,
    NameKind, Owner, PermissionSpec, Principal, ServerId, ServerSet, ServerSpec, Settings,
    ToolPrefix,
};
use proptest::prelude::*;

fn server(name: &str) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        ..ServerSpec::default()
    }
}

fn catalog() -> Arc<Catalog> {
    let specs = vec![
        ServerSpec {
            alias: Some("gh".into()),
            access_groups: vec!["dev".into()],
            disallowed_tools: vec!["delete_repo".into()],
            ..server("github")
        },
        ServerSpec {
            access_groups: vec!["dev".into()],
            allowed_tools: Some(vec!["wiki-read".into(), "search".into()]),
            ..server("wiki")
        },
        server("jira"),
        ServerSpec {
            allow_all_keys: true,
            ..server("public")
        },
        server("secret"),
    ];
    Arc::new(Catalog::new(Settings::default(), specs).unwrap())
}

fn spec(
    servers: Option<&[&str]>,
    groups: Option<&[&str]>,
    tools: &[(&str, &[&str])],
) -> PermissionSpec {
    let list = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    PermissionSpec {
        mcp_servers: servers.map(list),
        mcp_access_groups: groups.map(list),
        mcp_tool_permissions: (!tools.is_empty()).then(|| {
            tools
                .iter()
                .map(|(s, t)| ((*s).to_owned(), list(t)))
                .collect()
        }),
    }
}

fn principal(c: &Catalog, levels: &[(Level, PermissionSpec)]) -> Principal {
    let mut p = Principal::default();
    for (level, s) in levels {
        p.set_level(*level, Some(Arc::new(c.compile_permissions(s).unwrap())));
    }
    p
}

fn names(c: &Catalog, g: &Grant) -> Vec<String> {
    g.effective()
        .iter()
        .map(|id| c.server(id).name().to_owned())
        .collect()
}

#[test]
fn server_hierarchy_table() {
    let c = catalog();
    let s = |v: &[&str]| spec(Some(v), None, &[]);
    let g = |v: &[&str]| spec(None, Some(v), &[]);
    let none: &[&str] = &[];
    type Row<'a> = (&'a str, Vec<(Level, PermissionSpec)>, Vec<&'a str>);
    let rows: Vec<Row> = vec![
        (
            "no level restricts: every server",
            vec![],
            vec!["github", "wiki", "jira", "public", "secret"],
        ),
        (
            "key list, plus public",
            vec![(Level::Key, s(&["jira"]))],
            vec!["jira", "public"],
        ),
        (
            "servers ∪ groups of one level",
            vec![(Level::Key, spec(Some(&["jira"]), Some(&["dev"]), &[]))],
            vec!["github", "wiki", "jira", "public"],
        ),
        (
            "alias names the server",
            vec![(Level::Key, s(&["gh"]))],
            vec!["github", "public"],
        ),
        (
            "key ∩ team",
            vec![
                (Level::Key, s(&["github", "jira"])),
                (Level::Team, g(&["dev"])),
            ],
            vec!["github", "public"],
        ),
        (
            "unrestricted key inherits team",
            vec![(Level::Team, s(&["wiki"]))],
            vec!["wiki", "public"],
        ),
        (
            "empty key list: nothing, public too",
            vec![(Level::Key, s(none))],
            vec![],
        ),
        (
            "empty team list: nothing",
            vec![(Level::Key, s(&["jira"])), (Level::Team, s(none))],
            vec![],
        ),
        (
            "end user narrows",
            vec![
                (Level::Key, g(&["dev"])),
                (Level::EndUser, s(&["wiki", "secret"])),
            ],
            vec!["wiki", "public"],
        ),
        (
            "agent narrows",
            vec![(Level::Agent, s(&["github"]))],
            vec!["github", "public"],
        ),
        (
            "org is a ceiling",
            vec![(Level::Organization, s(&["github", "wiki"]))],
            vec!["github", "wiki"],
        ),
        (
            "public stays under the org ceiling",
            vec![
                (Level::Key, s(&["jira"])),
                (Level::Organization, s(&["jira"])),
            ],
            vec!["jira"],
        ),
        (
            "org ceiling over key",
            vec![
                (Level::Key, s(&["secret", "jira"])),
                (Level::Organization, s(&["jira", "public"])),
            ],
            vec!["jira", "public"],
        ),
        (
            "tool permissions never grant a server",
            vec![(
                Level::Key,
                spec(Some(&["jira"]), None, &[("secret", &["launch"])]),
            )],
            vec!["jira", "public"],
        ),
        (
            "tool permissions alone restrict no server",
            vec![(Level::Key, spec(None, None, &[("secret", &["launch"])]))],
            vec!["github", "wiki", "jira", "public", "secret"],
        ),
        (
            "groups only at the team",
            vec![
                (Level::Team, g(&["dev"])),
                (Level::Organization, s(&["wiki", "public"])),
            ],
            vec!["wiki", "public"],
        ),
    ];
    for (what, levels, expected) in rows {
        let p = principal(&c, &levels);
        let grant = Grant::resolve(&c, &p);
        assert_eq!(names(&c, &grant), expected, "{what}");
    }
}

#[test]
fn explain_names_the_refusing_level() {
    let c = catalog();
    let id = |n: &str| c.lookup(n).unwrap();
    let p = principal(
        &c,
        &[
            (
                Level::Key,
                spec(Some(&["github", "wiki", "jira"]), None, &[]),
            ),
            (Level::Team, spec(Some(&["github", "wiki"]), None, &[])),
            (Level::EndUser, spec(Some(&["github"]), None, &[])),
            (
                Level::Organization,
                spec(Some(&["wiki", "github"]), None, &[]),
            ),
        ],
    );
    let g = Grant::resolve(&c, &p);
    assert_eq!(g.check_server(id("github")), Ok(()));
    assert_eq!(
        g.check_server(id("secret")).unwrap_err().by,
        DeniedBy::Level(Level::Key)
    );
    assert_eq!(
        g.check_server(id("jira")).unwrap_err().by,
        DeniedBy::Level(Level::Team)
    );
    assert_eq!(
        g.check_server(id("wiki")).unwrap_err().by,
        DeniedBy::Level(Level::EndUser)
    );
    assert_eq!(
        g.check_server(id("public")).unwrap_err().by,
        DeniedBy::Level(Level::Organization)
    );
    let mut scoped = g.clone();
    scoped.narrow([id("wiki")].into_iter().collect());
    assert_eq!(
        scoped.check_server(id("github")).unwrap_err().by,
        DeniedBy::Scope
    );
}

#[test]
fn tool_level_table() {
    let c = catalog();
    let id = |n: &str| c.lookup(n).unwrap();
    let p = principal(
        &c,
        &[
            (
                Level::Key,
                spec(
                    None,
                    None,
                    &[("github", &["create_issue", "gh-list_issues", "delete_repo"])],
                ),
            ),
            (
                Level::Team,
                spec(
                    None,
                    None,
                    &[("gh", &["create_issue", "list_issues"]), ("jira", &[])],
                ),
            ),
        ],
    );
    let g = Grant::resolve(&c, &p);
    let rows: &[(&str, &str, Result<(), DeniedBy>)] = &[
        ("github", "create_issue", Ok(())),
        ("github", "list_issues", Ok(())), // the key wrote it prefixed with the alias
        ("github", "delete_repo", Err(DeniedBy::DisallowedTools)),
        ("github", "close_issue", Err(DeniedBy::Level(Level::Key))),
        ("github", "Create_Issue", Err(DeniedBy::Level(Level::Key))), // case-sensitive
        ("jira", "anything", Err(DeniedBy::Level(Level::Team))),      // [] means no tools
        ("wiki", "search", Ok(())),
        ("wiki", "read", Ok(())), // allowed_tools written prefixed
        ("wiki", "write", Err(DeniedBy::AllowedTools)),
        ("secret", "launch", Ok(())),
    ];
    for (srv, tool, expected) in rows {
        assert_eq!(
            g.check_tool(id(srv), tool).map_err(|d| d.by),
            *expected,
            "{srv}/{tool}"
        );
    }
}

#[test]
fn names_split_by_the_longest_known_server() {
    let specs = vec![
        server("a"),
        server("a_b"),
        ServerSpec {
            alias: Some("x".into()),
            ..server("xeno")
        },
    ];
    let c = Catalog::new(Settings::default(), specs).unwrap();
    let split = |n: &str| {
        c.split_prefixed(n)
            .map(|(id, bare)| (c.server(id).name().to_owned(), bare.to_owned()))
    };
    assert_eq!(split("a-tool"), Some(("a".into(), "tool".into())));
    assert_eq!(
        split("a_b-tool-with-dashes"),
        Some(("a_b".into(), "tool-with-dashes".into()))
    );
    assert_eq!(split("x-run"), Some(("xeno".into(), "run".into())));
    assert_eq!(split("b-tool"), None);
    assert_eq!(split("a-"), None, "an empty tool name is no name");
    assert_eq!(split("atool"), None);
    let settings = Settings {
        separator: "__".into(),
        ..Settings::default()
    };
    let c = Catalog::new(settings, vec![server("my-server")]).unwrap();
    assert_eq!(
        c.split_prefixed("my-server__do-it").map(|(_, b)| b),
        Some("do-it")
    );
}

/// A catalog of servers `a` and `b` with unprefixed names, and their ids.
fn unprefixed_pair() -> (Catalog, ServerId, ServerId) {
    let settings = Settings {
        tool_prefix: ToolPrefix::Never,
        ..Settings::default()
    };
    let c = Catalog::new(settings, vec![server("a"), server("b")]).unwrap();
    let (a, b) = (c.lookup("a").unwrap(), c.lookup("b").unwrap());
    (c, a, b)
}

#[test]
fn unprefixed_names_with_collisions_are_withheld() {
    let (c, a, b) = unprefixed_pair();
    let mut index = NameIndex::default();
    index.insert(NameKind::Tool, "search", a);
    index.insert(NameKind::Tool, "search", b);
    index.insert(NameKind::Tool, "only_a", a);
    index.insert(NameKind::Tool, "only_a", a);
    assert_eq!(
        c.attribute(&Mount::Aggregate, Some(&index), NameKind::Tool, "only_a"),
        Some(Attribution::Server(a, "only_a"))
    );
    assert_eq!(
        c.attribute(&Mount::Aggregate, Some(&index), NameKind::Tool, "search"),
        Some(Attribution::Ambiguous)
    );
    assert_eq!(
        c.attribute(&Mount::Aggregate, Some(&index), NameKind::Tool, "nope"),
        None
    );
    assert_eq!(
        c.attribute(&Mount::Aggregate, None, NameKind::Tool, "only_a"),
        None,
        "no index: fail closed"
    );
    assert_eq!(
        index.collisions(NameKind::Tool).collect::<Vec<_>>(),
        ["search"]
    );
    assert_eq!(
        c.attribute(&Mount::Single("b".into()), None, NameKind::Tool, "x-y"),
        Some(Attribution::Server(b, "x-y"))
    );
    assert_eq!(
        c.attribute(&Mount::Single("zz".into()), None, NameKind::Tool, "x"),
        None
    );
}

#[test]
fn resource_uris_match_templates_of_one_server() {
    let (c, a, b) = unprefixed_pair();
    let mut index = NameIndex::default();
    index.insert(NameKind::Resource, "test://template/{id}/data", a);
    index.insert(NameKind::Resource, "test://template/{id}/data", a); // listed twice: once
    index.insert(NameKind::Resource, "file:///{+path}", b);
    index.insert(NameKind::Resource, "shared://{x}", a);
    index.insert(NameKind::Resource, "under://{_id}/v", b);
    index.insert(NameKind::Resource, "shared://{y}", b);
    index.insert(NameKind::Resource, "test://template/listed/data", b);
    let owner = |uri: &str| index.owner(NameKind::Resource, uri);
    let table: &[(&str, Option<Owner>)] = &[
        ("test://template/123/data", Some(Owner::One(a))),
        ("test://template/listed/data", Some(Owner::One(b))), // a listed URI wins
        ("test://template//data", None),                      // {id} is never empty
        ("test://template/1/2/data", None),                   // nor more than one segment
        ("test://template/123/datax", None),
        ("test://template/123", None),
        ("file:///etc/hosts", Some(Owner::One(b))), // {+path} crosses segments
        ("file:///", Some(Owner::One(b))),
        ("shared://z", Some(Owner::Collision)), // two servers' templates match
        ("other://x", None),
        ("under://7/v", Some(Owner::One(b))),
        ("under://7/8/v", None), // `{_id}` is a simple variable: one segment
    ];
    for (uri, want) in table {
        assert_eq!(owner(uri), *want, "{uri}");
    }
    // Tools and prompts are never matched as templates.
    index.insert(NameKind::Tool, "t{x}", a);
    assert_eq!(index.owner(NameKind::Tool, "tz"), None);
    // Only a caller with exactly one usable server gets an unknown URI sent there.
    let only_a = || {
        let mut s = ServerSet::new();
        s.insert(a);
        s
    };
    let both = || {
        let mut s = only_a();
        s.insert(b);
        s
    };
    let at = |uri, usable: &dyn Fn() -> ServerSet| {
        c.attribute_within(
            &Mount::Aggregate,
            Some(&index),
            NameKind::Resource,
            uri,
            usable,
        )
    };
    assert_eq!(
        at("other://x", &only_a),
        Some(Attribution::Server(a, "other://x"))
    );
    assert_eq!(at("other://x", &both), None);
    assert_eq!(
        c.attribute_within(
            &Mount::Aggregate,
            Some(&index),
            NameKind::Tool,
            "zz",
            only_a
        ),
        None,
        "tool names are never guessed"
    );
}

#[test]
fn allowed_params_table() {
    let spec = ServerSpec {
        allowed_params: vec![
            ("wiki-read".into(), vec!["status".into()]),
            ("none".into(), vec![]),
            ("two".into(), vec!["a".into(), "b".into()]),
        ],
        ..server("wiki")
    };
    let c = Catalog::new(Settings::default(), vec![spec]).unwrap();
    let w = c.lookup("wiki").unwrap();
    assert!(c.check_params(w, "read", &["status"]).is_ok());
    assert!(c.check_params(w, "read", &[] as &[&str]).is_ok());
    assert_eq!(
        c.check_params(w, "read", &["limit", "status", "x"])
            .unwrap_err()
            .to_string(),
        "Parameters ['limit', 'x'] are not allowed for tool read. Allowed parameters: ['status']. Contact proxy admin to allow these parameters."
    );
    assert!(c.check_params(w, "none", &[] as &[&str]).is_ok());
    assert!(
        c.check_params(w, "none", &["a"]).is_err(),
        "[] allows no arguments"
    );
    assert!(c.check_params(w, "two", &["b", "a"]).is_ok());
    assert!(c.check_params(w, "unlisted", &["anything"]).is_ok());
}

#[test]
fn prices() {
    let spec = ServerSpec {
        cost: CostInfo {
            default_cost_per_query: Some(0.01),
            tool_name_to_cost_per_query: vec![("gh-create".into(), 0.05)],
        },
        alias: Some("gh".into()),
        ..server("github")
    };
    let c = Catalog::new(Settings::default(), vec![spec, server("free")]).unwrap();
    let g = c.server(c.lookup("github").unwrap());
    assert_eq!(g.price("create"), 0.05);
    assert_eq!(g.price("other"), 0.01);
    assert_eq!(c.server(c.lookup("free").unwrap()).price("x"), 0.0);
    let bad = ServerSpec {
        cost: CostInfo {
            default_cost_per_query: Some(-1.0),
            ..CostInfo::default()
        },
        ..server("b")
    };
    assert!(matches!(
        Catalog::new(Settings::default(), vec![bad]),
        Err(CatalogError::BadPrice { .. })
    ));
}

#[test]
fn catalog_errors() {
    let err = |specs: Vec<ServerSpec>| Catalog::new(Settings::default(), specs).unwrap_err();
    assert!(matches!(
        err(vec![server("a-b")]),
        CatalogError::SeparatorInName { .. }
    ));
    assert!(matches!(
        err(vec![ServerSpec {
            alias: Some("x-y".into()),
            ..server("a")
        }]),
        CatalogError::SeparatorInName { .. }
    ));
    assert!(matches!(
        err(vec![server("a"), server("a")]),
        CatalogError::DuplicateName(_)
    ));
    assert!(matches!(
        err(vec![
            server("a"),
            ServerSpec {
                alias: Some("a".into()),
                ..server("b")
            }
        ]),
        CatalogError::DuplicateName(_)
    ));
    assert!(matches!(
        err(vec![ServerSpec {
            allowed_tools: Some(vec!["x".into()]),
            disallowed_tools: vec!["a-x".into()],
            ..server("a")
        }]),
        CatalogError::AllowedAndDisallowed { .. }
    ));
    assert!(matches!(
        err(vec![
            ServerSpec {
                access_groups: vec!["b".into()],
                ..server("a")
            },
            server("b")
        ]),
        CatalogError::GroupNamesServer(_)
    ));
    let c = catalog();
    assert_eq!(
        c.compile_permissions(&spec(Some(&["nope"]), None, &[]))
            .unwrap_err(),
        CatalogError::UnknownServer("nope".into())
    );
    assert_eq!(
        c.compile_permissions(&spec(None, Some(&["nope"]), &[]))
            .unwrap_err(),
        CatalogError::UnknownAccessGroup("nope".into())
    );
    assert_eq!(
        c.compile_permissions(&spec(None, None, &[("nope", &["x"])]))
            .unwrap_err(),
        CatalogError::UnknownServer("nope".into())
    );
}

#[test]
fn permissions_from_another_catalog_grant_nothing() {
    let old = catalog();
    let new = catalog();
    let p = principal(&old, &[(Level::Key, spec(Some(&["github"]), None, &[]))]);
    let g = Grant::resolve(&new, &p);
    assert!(g.effective().is_empty());
    assert_eq!(
        g.check_server(new.lookup("github").unwrap())
            .unwrap_err()
            .by,
        DeniedBy::StalePolicy
    );
}

// ---- laws -------------------------------------------------------------------------------------

const SERVERS: [&str; 6] = ["s0", "s1", "s2", "s3", "s4", "s5"];

fn arb_catalog() -> impl Strategy<Value = Arc<Catalog>> {
    (prop::collection::vec((any::<bool>(), 0u8..4), 6)).prop_map(|flags| {
        let specs = SERVERS
            .iter()
            .zip(flags)
            .map(|(n, (public, group))| ServerSpec {
                allow_all_keys: public,
                access_groups: vec![format!("g{group}")],
                disallowed_tools: vec!["t3".into()],
                ..server(n)
            })
            .collect();
        Arc::new(Catalog::new(Settings::default(), specs).unwrap())
    })
}

fn arb_spec() -> impl Strategy<Value = Option<PermissionSpec>> {
    let names = || {
        prop::option::of(prop::collection::vec(
            prop::sample::select(SERVERS.to_vec()),
            0..4,
        ))
    };
    let tools = prop::option::of(prop::collection::vec(
        (
            prop::sample::select(SERVERS.to_vec()),
            prop::collection::vec(prop::sample::select(vec!["t0", "t1", "t2", "t3"]), 0..3),
        ),
        0..3,
    ));
    prop::option::of(
        (names(), tools).prop_map(|(servers, tools)| PermissionSpec {
            mcp_servers: servers.map(|v| v.into_iter().map(str::to_owned).collect()),
            mcp_access_groups: None,
            mcp_tool_permissions: tools.map(|v| {
                // One entry per server: a server listed twice in one level is a config error.
                let mut seen = Vec::new();
                v.into_iter()
                    .filter(|(s, _)| {
                        let first = !seen.contains(s);
                        seen.push(*s);
                        first
                    })
                    .map(|(s, t)| (s.to_owned(), t.into_iter().map(str::to_owned).collect()))
                    .collect()
            }),
        }),
    )
}

fn build(c: &Catalog, specs: &[Option<PermissionSpec>]) -> Principal {
    let mut p = Principal::default();
    for (level, s) in Level::ALL.iter().zip(specs) {
        p.set_level(
            *level,
            s.as_ref()
                .map(|s| Arc::new(c.compile_permissions(s).unwrap())),
        );
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Adding a restriction at any level never widens the servers or tools granted.
    #[test]
    fn a_narrower_level_never_widens(c in arb_catalog(), specs in prop::collection::vec(arb_spec(), 5), level in 0usize..5, extra in arb_spec()) {
        let base = Grant::resolve(&c, &build(&c, &specs));
        let mut narrowed = specs.clone();
        // Replace "absent" with a restriction, or intersect an existing list with the extra one.
        narrowed[level] = match (&specs[level], extra) {
            (None, e) => e,
            (Some(s), Some(e)) => Some(PermissionSpec {
                mcp_servers: match (&s.mcp_servers, &e.mcp_servers) {
                    (Some(a), Some(b)) => Some(a.iter().filter(|x| b.contains(x)).cloned().collect()),
                    (a, b) => a.clone().or_else(|| b.clone()),
                },
                mcp_access_groups: None,
                mcp_tool_permissions: match (&s.mcp_tool_permissions, &e.mcp_tool_permissions) {
                    // Per server: the intersection where both name it, else whichever names it.
                    (Some(a), Some(b)) => {
                        let mut merged: Vec<(String, Vec<String>)> = Vec::new();
                        for (srv, tools) in a.iter().chain(b) {
                            match merged.iter_mut().find(|(s, _)| s == srv) {
                                Some((_, existing)) => existing.retain(|t| tools.contains(t)),
                                None => merged.push((srv.clone(), tools.clone())),
                            }
                        }
                        Some(merged)
                    }
                    (a, b) => a.clone().or_else(|| b.clone()),
                },
            }),
            (Some(s), None) => Some(s.clone()),
        };
        let narrow = Grant::resolve(&c, &build(&c, &narrowed));
        prop_assert!(narrow.effective().is_subset(&base.effective()));
        for id in c.all().iter() {
            for t in ["t0", "t1", "t2", "t3"] {
                if narrow.check_tool(id, t).is_ok() {
                    prop_assert!(base.check_tool(id, t).is_ok());
                }
            }
        }
    }

    /// A scope is accepted only if every entry meets the grant, and then only narrows.
    #[test]
    fn scope_only_narrows(c in arb_catalog(), specs in prop::collection::vec(arb_spec(), 5), entries in prop::collection::vec(prop::sample::select(vec!["s0", "s1", "s2", "s3", "s4", "s5", "g0", "g1", "g2", "g3", "zz"]), 1..4)) {
        use mcp_gatekeeper::engine::Scope;
        let base = Grant::resolve(&c, &build(&c, &specs));
        let scope = Scope::resolve(&c, entries.iter().copied());
        let mut scoped = base.clone();
        match scope.apply(&mut scoped) {
            Ok(()) => {
                let eff = scoped.effective();
                prop_assert!(!eff.is_empty(), "never an empty success");
                prop_assert!(eff.is_subset(&base.effective()));
                prop_assert!(eff.is_subset(scope.servers()));
            }
            Err(r) => {
                let r = mcp_gatekeeper::rejection::Rejection::from(r);
                prop_assert_eq!(r.status(), http::StatusCode::FORBIDDEN);
                let refused_entry = entries.iter().any(|e| match c.scope_entry(e) {
                    None => true,
                    Some(mut s) => {
                        s.intersect_with(base.allowed());
                        s.is_empty()
                    }
                });
                prop_assert!(refused_entry, "refused without cause");
            }
        }
    }
}

/// LiteLLM's rule for its database rows ([`Hierarchy::LiteLlm`]).
#[test]
fn litellm_hierarchy_table() {
    use mcp_gatekeeper::engine::Hierarchy;
    let c = catalog();
    let s = |v: &[&str]| spec(Some(v), None, &[]);
    type Row<'a> = (&'a str, Vec<(Level, PermissionSpec)>, bool, Vec<&'a str>);
    let rows: Vec<Row> = vec![
        (
            "no level lists a server: only public",
            vec![],
            false,
            vec!["public"],
        ),
        (
            "the master key without a list: everything",
            vec![],
            true,
            vec!["github", "wiki", "jira", "public", "secret"],
        ),
        (
            "the master key with a list keeps it",
            vec![(Level::Key, s(&["jira"]))],
            true,
            vec!["jira", "public"],
        ),
        (
            "key list, plus public",
            vec![(Level::Key, s(&["jira"]))],
            false,
            vec!["jira", "public"],
        ),
        (
            "an unrestricted key inherits its team",
            vec![(Level::Team, s(&["wiki"]))],
            false,
            vec!["wiki", "public"],
        ),
        (
            "key ∩ team",
            vec![
                (Level::Key, s(&["github", "jira"])),
                (Level::Team, s(&["jira", "wiki"])),
            ],
            false,
            vec!["jira", "public"],
        ),
        (
            "an end user alone grants nothing",
            vec![(Level::EndUser, s(&["wiki"]))],
            false,
            vec!["public"],
        ),
        (
            "the agent narrows",
            vec![
                (Level::Team, s(&["github", "wiki"])),
                (Level::Agent, s(&["wiki"])),
            ],
            false,
            vec!["wiki", "public"],
        ),
        (
            "the organisation grants its list when nothing lower lists one; public stays under it",
            vec![(Level::Organization, s(&["github", "jira"]))],
            false,
            vec!["github", "jira"],
        ),
        (
            "the organisation caps a lower list",
            vec![
                (Level::Key, s(&["github", "wiki"])),
                (Level::Organization, s(&["wiki", "public"])),
            ],
            false,
            vec!["wiki", "public"],
        ),
        (
            "a lower level restricting to nothing is not replaced by the organisation",
            vec![
                (Level::EndUser, s(&["wiki"])),
                (Level::Organization, s(&["github"])),
            ],
            false,
            vec![],
        ),
        (
            "a key explicitly empty: not even public",
            vec![(Level::Key, s(&[]))],
            false,
            vec![],
        ),
        (
            "a team explicitly empty: not even public",
            vec![(Level::Team, s(&[]))],
            false,
            vec![],
        ),
        (
            "a team listing only public servers",
            vec![(Level::Team, s(&["public"]))],
            false,
            vec!["public"],
        ),
    ];
    for (why, levels, admin, expected) in rows {
        let mut p = principal(&c, &levels);
        p.hierarchy = Hierarchy::LiteLlm;
        p.is_admin = admin;
        let g = Grant::resolve(&c, &p);
        let mut got = names(&c, &g);
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(got, want, "{why}");
    }
    // A key with no list is refused as the key's doing, not the organisation's.
    let mut p = principal(&c, &[]);
    p.hierarchy = Hierarchy::LiteLlm;
    let g = Grant::resolve(&c, &p);
    assert_eq!(
        g.explain_server(c.lookup("jira").unwrap()),
        DeniedBy::Level(Level::Key)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Under LiteLLM's rule a caller reaches only servers that every level with a list lists,
    /// or public servers under the organisation: no level's restriction is ever escaped.
    #[test]
    fn litellm_rule_never_escapes_a_listed_level(c in arb_catalog(), specs in prop::collection::vec(arb_spec(), 5)) {
        use mcp_gatekeeper::engine::Hierarchy;
        let mut p = build(&c, &specs);
        p.hierarchy = Hierarchy::LiteLlm;
        let g = Grant::resolve(&c, &p);
        let org = p.level(Level::Organization).and_then(|l| l.servers().cloned());
        for id in g.allowed().iter() {
            let public = c.public().contains(id);
            prop_assert!(org.as_ref().is_none_or(|o| o.contains(id)), "escaped the organisation");
            for level in [Level::Key, Level::Team, Level::EndUser, Level::Agent] {
                if let Some(set) = p.level(level).and_then(|l| l.servers()) {
                    prop_assert!(set.contains(id) || public, "escaped the {} level", level);
                }
            }
            // Something listed it, or it is public.
            let listed = Level::ALL.iter().any(|l| p.level(*l).and_then(|x| x.servers()).is_some_and(|s| s.contains(id)));
            prop_assert!(listed || public);
        }
        // A level listing no server shuts out everything, public servers included.
        if [Level::Key, Level::Team, Level::EndUser, Level::Agent]
            .iter()
            .any(|l| p.level(*l).and_then(|l| l.servers()).is_some_and(ServerSet::is_empty))
        {
            prop_assert!(g.allowed().is_empty());
        }
    }
}
