//! Loading configuration: LiteLLM's block loads, and every mistake is a load-time error that
//! names the file, the path in it and the fix.

use mcp_gatekeeper::config::Config;

fn err(json: &str) -> String {
    match Config::from_json_str(json).and_then(|c| c.policy().map(|_| ())) {
        Ok(()) => panic!("accepted: {json}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn litellm_mcp_servers_block_loads_unchanged() {
    let c = Config::from_json_str(r#"{"mcp_servers": {
        "deepwiki": {"url": "https://mcp.deepwiki.com/mcp", "transport": "http", "description": "docs",
                     "mcp_info": {"server_name": "DeepWiki", "logo_url": "https://x/logo.png",
                                  "mcp_server_cost_info": {"default_cost_per_query": 0.1}}},
        "everything": {"transport": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"], "env": {"A": "b"}},
        "legacy": {"url": "http://127.0.0.1:1/sse", "transport": "sse", "auth_type": "bearer_token", "auth_value": "t",
                   "extra_headers": ["x-request-id"], "static_headers": {"x-team": "p"}, "access_groups": ["g"]},
        "oauth": {"url": "http://x/mcp", "auth_type": "oauth2", "client_id": "id", "client_secret": "s",
                  "token_url": "http://x/token", "scopes": ["a"], "authorization_url": "http://x/auth", "registration_url": "http://x/reg"}
    }}"#)
    .unwrap();
    let p = c.policy().unwrap();
    assert_eq!(p.catalog().servers().len(), 4);
    assert_eq!(
        p.catalog()
            .server(p.catalog().lookup("deepwiki").unwrap())
            .price("x"),
        0.1
    );
}

#[test]
fn mistakes_name_the_path_and_the_fix() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"mcp_servers": {"a": {"url": "u", "alowed_tools": []}}}"#,
            "at mcp_servers.a.alowed_tools: unknown field `alowed_tools`, expected one of `url`",
        ),
        (
            r#"{"mcp_servers": {"a": {"url": "u", "spec_path": "x.json"}}}"#,
            "at mcp_servers.a.spec_path: LiteLLM accepts this field, but mcp-gatekeeper does not implement it yet",
        ),
        (
            r#"{"mcp_servers": {"a": {"url": "u"}, "a": {"url": "v"}}}"#,
            "duplicate key \"a\"",
        ),
        (
            r#"{"mcp_servers": {"a-b": {"url": "u"}}}"#,
            "at mcp_servers.a-b: the server name or alias \"a-b\" contains the tool prefix separator",
        ),
        (
            r#"{"mcp_servers": {"a": {"url": "u", "allowed_tools": ["x"], "disallowed_tools": ["x"]}}}"#,
            "at mcp_servers.a.disallowed_tools: tool \"x\" of server \"a\" is in both allowed_tools and disallowed_tools",
        ),
        (
            r#"{"mcp_servers": {"a": {"transport": "stdio"}}}"#,
            "at mcp_servers.a.command: a stdio server needs a command",
        ),
        (
            r#"{"mcp_servers": {"a": {}}}"#,
            "at mcp_servers.a.url: an http or sse server needs a url",
        ),
        (
            r#"{"mcp_servers": {"a": {"url": "u", "protocol_version": "2025-06-18"}}}"#,
            "at mcp_servers.a.protocol_version: the protocol version must be \"2025-11-25\"",
        ),
        (
            r#"{"mcp_servers": {"a": {"url": "u"}}, "keys": [{"key": "k", "object_permission": {"mcp_servers": ["b"]}}]}"#,
            "at keys[0].object_permission: no MCP server is named \"b\"",
        ),
        (
            r#"{"mcp_servers": {"a": {"url": "u"}}, "teams": [{"team_id": "t", "object_permission": {"mcp_access_groups": ["g"]}}]}"#,
            "at teams[0].object_permission: no MCP server is in access group \"g\"",
        ),
        (
            r#"{"keys": [{"key": "k", "team_id": "t"}]}"#,
            "at keys[0].team_id: team \"t\" is not defined",
        ),
        (
            r#"{"keys": [{"key": "k", "organization_id": "o"}]}"#,
            "at keys[0].organization_id: organization \"o\" is not defined",
        ),
        (
            r#"{"keys": [{"key": "k", "agent_id": "x"}]}"#,
            "at keys[0].agent_id: agent \"x\" is not defined",
        ),
        (
            r#"{"keys": [{"key": "k"}, {"key": "k"}]}"#,
            "at keys: the key of keys[1] is used twice",
        ),
        (
            r#"{"keys": [{"key_alias": "a"}]}"#,
            "at keys[0]: a key entry needs key or key_hash",
        ),
        (
            r#"{"keys": [{"key_hash": "sha256:12"}]}"#,
            "at keys[0].key_hash: write the key hash as sha256:<64 hex digits>",
        ),
        (
            r#"{"keys": [{"key": "os.environ/MCP_GATEKEEPER_TEST_UNSET"}]}"#,
            "at keys[0].key: environment variable MCP_GATEKEEPER_TEST_UNSET is not set",
        ),
        (
            r#"{"general_settings": {"tool_prefix": "sometimes"}}"#,
            "at general_settings.tool_prefix: unknown variant `sometimes`",
        ),
        (
            r#"{"general_settings": {"tool_prefix_separator": ""}}"#,
            "at general_settings.tool_prefix_separator: the tool prefix separator must not be empty",
        ),
        (r#"{"model_list": []}"#, "unknown field `model_list`"),
        (
            r#"{"mcp_servers": {"a": {"url": "u", "mcp_info": {"mcp_server_cost_info": {"default_cost_per_query": -1}}}}}"#,
            "must be a non-negative number",
        ),
    ];
    for (json, expected) in cases {
        let got = err(json);
        assert!(
            got.contains(expected),
            "for {json}\n got: {got}\nwant: {expected}"
        );
    }
}

#[test]
fn errors_name_the_file_and_secrets_never_print() {
    let dir = std::env::temp_dir().join(format!("mcpgk-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.json");
    std::fs::write(
        &file,
        r#"{"mcp_servers": {"a": {"url": "u", "auth_value": "super-secret-token", "bogus": 1}}}"#,
    )
    .unwrap();
    let e = Config::from_path(&file).unwrap_err();
    assert_eq!(e.file(), Some(file.as_path()));
    assert!(
        e.to_string().starts_with(&format!(
            "{}: at mcp_servers.a.bogus: unknown field `bogus`",
            file.display()
        )),
        "{e}"
    );
    assert!(!e.to_string().contains("super-secret-token"));
    let good = dir.join("good.json");
    std::fs::write(
        &good,
        r#"{"mcp_servers": {"a": {"url": "u", "auth_value": "super-secret-token"}}}"#,
    )
    .unwrap();
    let c = Config::from_path(&good).unwrap();
    assert!(
        !format!("{c:?}").contains("super-secret-token"),
        "Debug never shows secrets"
    );
    let unknown = dir.join("config.toml");
    std::fs::write(&unknown, "").unwrap();
    assert!(
        Config::from_path(&unknown)
            .unwrap_err()
            .to_string()
            .contains("name the file .json, .yaml or .yml")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn environment_values_are_read_at_load() {
    // PATH is set wherever tests run; setting a variable here would need `unsafe`.
    let path = std::env::var("PATH").unwrap();
    let c = Config::from_json_str(r#"{"keys": [{"key": "os.environ/PATH", "key_alias": "env"}]}"#)
        .unwrap();
    let p = c.policy().unwrap();
    let digest = mcp_gatekeeper::engine::KeyDigest::of(&path);
    assert_eq!(
        p.identities()
            .principal(&digest, None, None)
            .unwrap()
            .key_alias
            .as_deref(),
        Some("env")
    );
}

#[cfg(feature = "config-yaml")]
#[test]
fn yaml_loads_with_the_same_checks() {
    let c = Config::from_yaml_str(
        "general_settings:\n  master_key: sk-admin\n  tool_prefix: never\nmcp_servers:\n  github_mcp:\n    url: http://127.0.0.1:9001/mcp\n    alias: gh\n    allowed_params: {create_issue: [title, body]}\nkeys:\n  - key: sk-alice\n    object_permission: {mcp_servers: [github_mcp], mcp_tool_permissions: {gh: [create_issue]}}\n",
    )
    .unwrap();
    assert!(c.policy().is_ok());
    let e = Config::from_yaml_str("mcp_servers:\n  a:\n    url: u\n    allowd_params: {}\n")
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("at mcp_servers.a.allowd_params: unknown field `allowd_params`"),
        "{e}"
    );
    let e = Config::from_yaml_str("mcp_servers:\n  a: {url: u}\n  a: {url: v}\n").unwrap_err();
    assert!(e.to_string().contains("duplicate"), "{e}");
}

#[cfg(feature = "config-yaml")]
#[test]
fn the_worked_example_config_loads() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/configs/worked.yaml"
    ))
    .unwrap();
    // Its secrets come from the environment; stand literal values in for them here.
    let text = text.replace("os.environ/", "literal-");
    let c = Config::from_yaml_str(&text).unwrap();
    let p = c.policy().unwrap();
    assert_eq!(p.catalog().servers().len(), 3);
    assert_eq!(p.identities().len(), 3);
}

#[cfg(feature = "config-yaml")]
#[test]
fn the_oauth_example_config_loads() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/configs/oauth.yaml"
    ))
    .unwrap();
    let text = text
        .replace(
            "os.environ/GATEWAY_MCP_URL",
            "https://gateway.example.com/mcp",
        )
        .replace("os.environ/", "literal-");
    let c = Config::from_yaml_str(&text).unwrap();
    let p = c.policy().unwrap();
    let oauth = c.general_settings.oauth.as_ref().unwrap();
    assert_eq!(oauth.issuers[0].scopes.iter().count(), 2);
    assert_eq!(oauth.required_scopes, ["mcp"]);
    assert_eq!(p.catalog().servers().len(), 2);
}

#[test]
fn deployment_settings_are_checked_at_load() {
    let check = |settings: &str| -> Result<(), String> {
        let doc = format!(r#"{{"general_settings": {settings}}}"#);
        Config::from_json_str(&doc)
            .and_then(|c| c.validate())
            .map_err(|e| e.to_string())
    };
    let ok = check(
        r#"{"database_url": "postgres://gk:pw@db.internal:5432/gatekeeper",
            "spend_sink": {"type": "postgres", "spool_dir": "/var/lib/gk/spool", "max_spool_mb": 64},
            "session_secret": "0123456789abcdef0123456789abcdef",
            "policy_resync_seconds": 10}"#,
    );
    assert_eq!(ok, Ok(()));
    assert_eq!(
        check(r#"{"database_url": "host=/run/postgresql dbname=gatekeeper"}"#),
        Ok(())
    );
    assert_eq!(
        check(r#"{"spend_sink": {"type": "jsonl", "path": "spend.jsonl"}}"#),
        Ok(())
    );
    let cases = [
        (
            r#"{"database_url": "mysql://db/x"}"#,
            "at general_settings.database_url: write a Postgres URL",
        ),
        (
            r#"{"database_url": "os.environ/GK_TEST_UNSET_DATABASE_URL"}"#,
            "environment variable GK_TEST_UNSET_DATABASE_URL is not set",
        ),
        (
            r#"{"spend_sink": {"type": "postgres", "spool_dir": "/tmp/s"}}"#,
            "a postgres spend sink writes to general_settings.database_url",
        ),
        (
            r#"{"database_url": "postgres://db/x", "spend_sink": {"type": "postgres", "spool_dir": ""}}"#,
            "at general_settings.spend_sink.spool_dir: name a directory",
        ),
        (
            r#"{"database_url": "postgres://db/x", "spend_sink": {"type": "postgres", "spool_dir": "s", "max_spool_mb": 0}}"#,
            "at general_settings.spend_sink.max_spool_mb",
        ),
        (
            r#"{"spend_sink": {"type": "kafka"}}"#,
            "unknown variant `kafka`",
        ),
        (
            r#"{"spend_sink": {"type": "jsonl", "path": "x", "spool_dir": "y"}}"#,
            "unknown field `spool_dir`",
        ),
        (
            r#"{"session_secret": "too-short"}"#,
            "at general_settings.session_secret: the session secret must be at least 32 bytes",
        ),
        (
            r#"{"policy_resync_seconds": 0}"#,
            "at general_settings.policy_resync_seconds",
        ),
    ];
    for (settings, want) in cases {
        let got = check(settings).expect_err(settings);
        assert!(got.contains(want), "{settings}: {got}");
        // The URL's password and the secret never appear in an error.
        assert!(!got.contains("too-short") && !got.contains("pw@"), "{got}");
    }
}

#[test]
fn a_blocked_key_is_refused_with_its_own_text() {
    let config = Config::from_json_str(
        r#"{"keys": [{"key": "sk-on"}, {"key": "sk-off", "blocked": true}]}"#,
    )
    .unwrap();
    let policy = config.policy().unwrap();
    let ids = policy.identities();
    use mcp_gatekeeper::engine::{KeyDigest, KeyRefusal};
    assert!(ids.resolve(&KeyDigest::of("sk-on"), None, None).is_ok());
    assert_eq!(
        ids.resolve(&KeyDigest::of("sk-off"), None, None)
            .unwrap_err(),
        KeyRefusal::Blocked
    );
    assert_eq!(
        ids.resolve(&KeyDigest::of("sk-nobody"), None, None)
            .unwrap_err(),
        KeyRefusal::Unknown
    );
}

#[test]
fn limit_mistakes_name_the_path_and_the_fix() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"mcp_servers": {"a": {"url": "u"}}, "keys": [{"key": "k", "rpm_limit": 0}]}"#,
            "at keys[0].rpm_limit: a limit must be at least 1",
        ),
        (
            r#"{"mcp_servers": {"a": {"url": "u"}}, "teams": [{"team_id": "t", "mcp_rpm_limit": {"b": 5}}]}"#,
            "at teams[0].mcp_rpm_limit.b: `b` is not a configured server",
        ),
        (
            r#"{"mcp_servers": {"a": {"url": "u"}}, "organizations": [{"organization_id": "o", "mcp_tool_limits": {"a": {"t": {"max_parallel": 0}}}}]}"#,
            "at organizations[0].mcp_tool_limits.a.t.max_parallel: a limit must be at least 1",
        ),
        (
            r#"{"mcp_servers": {"a": {"url": "u"}}, "end_users": [{"user_id": "u", "max_budget": -1}]}"#,
            "at end_users[0].max_budget: a budget is a number of dollars, zero or more",
        ),
        (
            r#"{"mcp_servers": {"a": {"url": "u"}}, "agents": [{"agent_id": "g", "budget_duration": "1d"}]}"#,
            "at agents[0].budget_duration: budget_duration needs max_budget",
        ),
        (
            r#"{"mcp_servers": {"a": {"url": "u"}}, "keys": [{"key": "k", "max_budget": 1, "budget_duration": "1y"}]}"#,
            "at keys[0].budget_duration: `1y` is not a duration like 30s, 1h, 1d, 4w or 1mo",
        ),
        (
            r#"{"mcp_servers": {"a": {"url": "u"}}, "keys": [{"key": "k", "mcp_tool_limits": {"a": {"t": {"rpm": 1, "burst": 2}}}}]}"#,
            "unknown field `burst`",
        ),
        (
            r#"{"general_settings": {"on_limit_store_error": "ignore"}}"#,
            "at general_settings.on_limit_store_error: unknown variant `ignore`, expected `deny` or `allow`",
        ),
    ];
    for (json, want) in cases {
        let got = err(json);
        assert!(got.contains(want), "{json}\n  got:  {got}\n  want: {want}");
    }
}

#[test]
fn limit_store_settings_are_checked_and_the_url_never_printed() {
    let deployment = |json: &str| {
        Config::from_json_str(json)
            .unwrap()
            .general_settings
            .deployment()
    };
    let bad = deployment(
        r#"{"general_settings": {"limit_store": {"type": "redis", "url": "http://:hunter2@cache:6379"}}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains("at general_settings.limit_store.url: write a Redis URL"),
        "{bad}"
    );
    assert!(!bad.contains("hunter2"), "{bad}");
    let braces = deployment(
        r#"{"general_settings": {"limit_store": {"type": "redis", "url": "redis://cache", "key_prefix": "{x}"}}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(braces.contains("key_prefix"), "{braces}");
    let good = deployment(
        r#"{"general_settings": {"limit_store": {"type": "redis", "url": "redis://cache:6379"}, "on_limit_store_error": "allow"}}"#,
    )
    .unwrap();
    assert_eq!(
        good.on_limit_store_error,
        mcp_gatekeeper::limit::OnStoreError::Allow
    );
    assert!(matches!(
        good.limit_store,
        mcp_gatekeeper::config::LimitStoreSettings::Redis { .. }
    ));
}

#[test]
fn pinning_and_audit_settings_are_checked_with_their_paths() {
    let server = |fields: &str| {
        format!(r#"{{"mcp_servers": {{"wiki": {{"url": "http://127.0.0.1:1/mcp" {fields}}}}}}}"#)
    };
    let pin = format!("sha256:{}", "ab".repeat(32));
    let ok = server(&format!(
        r#", "tool_pinning": "enforce", "pin_new_tools": "quarantine",
            "pinned_tools": {{"wiki-search": "{pin}"}}, "pinned_prompts": {{"summarise": "{pin}"}},
            "audit_redact": ["password"]"#
    ));
    let policy = Config::from_json_str(&ok).unwrap().policy().unwrap();
    let catalog = policy.catalog();
    let rules = catalog.server(catalog.lookup("wiki").unwrap()).pin_rules();
    // A prefixed name is the server's bare name.
    assert_eq!(
        rules.tools.get("search").map(ToString::to_string),
        Some(pin.clone())
    );
    for (fields, path, says) in [
        (
            r#", "tool_pinning": "enforce", "pinned_tools": {"search": "sha256:12"}"#,
            "mcp_servers.wiki.pinned_tools.search",
            "64 hexadecimal",
        ),
        (
            r#", "pinned_tools": {"search": "sha256:00"}"#,
            "mcp_servers.wiki.pinned_tools",
            "tool_pinning",
        ),
        (
            r#", "pin_new_tools": "quarantine""#,
            "mcp_servers.wiki.pin_new_tools",
            "tool_pinning",
        ),
        (
            r#", "tool_pinning": "always""#,
            "mcp_servers.wiki.tool_pinning",
            "observe",
        ),
    ] {
        let e = err(&server(fields));
        assert!(e.contains(path) && e.contains(says), "{fields}: {e}");
    }
    let check = |settings: &str| -> Result<(), String> {
        let doc = format!(r#"{{"general_settings": {settings}}}"#);
        Config::from_json_str(&doc)
            .and_then(|c| c.validate())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        check(
            r#"{"audit": {"sinks": [{"type": "jsonl", "path": "audit.jsonl"}], "queue_capacity": 100}, "pin_store": {"type": "file", "path": "pins.json"}}"#
        ),
        Ok(())
    );
    for (settings, path) in [
        (
            r#"{"audit": {"sinks": [{"type": "postgres"}]}}"#,
            "general_settings.audit.sinks[0]",
        ),
        (
            r#"{"audit": {"queue_capacity": 0}}"#,
            "general_settings.audit.queue_capacity",
        ),
        (
            r#"{"audit": {"sinks": [{"type": "jsonl", "path": " "}]}}"#,
            "general_settings.audit.sinks[0].path",
        ),
        (
            r#"{"pin_store": {"type": "postgres"}}"#,
            "general_settings.pin_store",
        ),
        (
            r#"{"pin_store": {"type": "file", "path": ""}}"#,
            "general_settings.pin_store.path",
        ),
    ] {
        let e = check(settings).unwrap_err();
        assert!(e.contains(path), "{settings}: {e}");
    }
}
