//! The policy read from LiteLLM's own database: the schema created by the pinned
//! `litellm-proxy-extras` migrations (installed from PyPI into a venv under `target/`), rows
//! written the way LiteLLM writes them, a real gateway in front of real upstreams.
#![cfg(all(feature = "litellm-db", feature = "gateway"))]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::postgres::TestPg;
use common::*;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::engine::KeyDigest;
use mcp_gatekeeper::gateway::Gateway;
use mcp_gatekeeper::litellm_db::LiteLlmSource;
use mcp_gatekeeper::postgres::Database;
use mcp_gatekeeper::source::{self, PolicyWatch, WatchOptions};
use mcp_gatekeeper::{Gatekeeper, PolicySnapshot};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The LiteLLM schema version these tests (and the README) pin.
const EXTRAS: &str = "litellm-proxy-extras==0.4.110";
const SALT: &str = "sk-litellm-salt-for-tests";
const MASTER: &str = "sk-master";

static VENV: Mutex<Option<PathBuf>> = Mutex::new(None);

fn require() -> bool {
    std::env::var_os("MCP_GATEKEEPER_REQUIRE_POSTGRES").is_some()
}

/// A venv under `target/` holding the pinned `litellm-proxy-extras` and PyNaCl (which LiteLLM
/// encrypts credentials with); `None` (loudly) when PyPI cannot be reached outside CI.
fn venv() -> Option<PathBuf> {
    let mut slot = VENV.lock().unwrap();
    if let Some(dir) = slot.as_ref() {
        return Some(dir.clone());
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/litellm-venv-0.4.110");
    let python = dir.join("bin/python");
    let ready = dir.join(".ready");
    if !ready.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status();
        let installed = made.is_ok_and(|s| s.success())
            && Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--no-deps", EXTRAS])
                .status()
                .is_ok_and(|s| s.success())
            && Command::new(&python)
                .args(["-m", "pip", "install", "-q", "pynacl==1.5.0"])
                .status()
                .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                !require(),
                "could not install {EXTRAS} and pynacl from PyPI"
            );
            eprintln!("\n!!!!! SKIPPED: could not install {EXTRAS} from PyPI !!!!!\n");
            return None;
        }
        std::fs::write(&ready, b"").unwrap();
    }
    *slot = Some(dir.clone());
    Some(dir)
}

fn python(venv: &Path, code: &str, args: &[&str]) -> String {
    let out = Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The migrations directory of the installed package.
fn migrations(venv: &Path) -> PathBuf {
    PathBuf::from(python(
        venv,
        "import litellm_proxy_extras, os; print(os.path.join(os.path.dirname(litellm_proxy_extras.__file__), 'migrations'))",
        &[],
    ))
}

/// Encrypts as LiteLLM's `encrypt_value_helper` does: a PyNaCl SecretBox under SHA-256 of the
/// salt key, URL-safe base64.
fn encrypt(venv: &Path, value: &str) -> String {
    python(
        venv,
        "import sys, hashlib, base64, nacl.secret\n\
         box = nacl.secret.SecretBox(hashlib.sha256(sys.argv[2].encode()).digest())\n\
         print(base64.urlsafe_b64encode(box.encrypt(sys.argv[1].encode())).decode())",
        &[value, SALT],
    )
}

/// Applies every migration of the package, in order, as LiteLLM's deploy does.
async fn apply_schema(db: &Database, dir: &Path) {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("migration.sql").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() > 100, "{} migrations", dirs.len());
    let client = db.client().await.unwrap();
    for d in dirs {
        let sql = std::fs::read_to_string(d.join("migration.sql")).unwrap();
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", d.display()));
    }
}

fn digest(key: &str) -> String {
    KeyDigest::of(key)
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct World {
    pg: TestPg,
    db: Database,
    venv: PathBuf,
    _upstreams: Vec<Running>,
    github: RecordingServer,
    /// Every upstream (github, wiki, status, store), to count what ran.
    upstreams: Vec<RecordingServer>,
    urls: Vec<String>,
}

impl World {
    /// How many tool executions every upstream performed together.
    fn executions(&self) -> usize {
        self.upstreams
            .iter()
            .map(|u| u.executions.names().len())
            .sum()
    }
}

/// A database with LiteLLM's schema, and four upstreams registered in it.
async fn world(test: &str) -> Option<World> {
    let venv = venv()?;
    let pg = TestPg::start(test)?;
    let db = Database::connect(&pg.url(), 4).unwrap();
    apply_schema(&db, &migrations(&venv)).await;
    let github = RecordingServer::new(
        vec![
            tool("create_issue", &["title"]),
            tool("list_issues", &[]),
            tool("echo_headers", &[]),
        ],
        &[],
        &[],
    );
    let wiki = RecordingServer::new(
        vec![tool("read_page", &["page"]), tool("edit_page", &["page"])],
        &[],
        &[],
    );
    let status = RecordingServer::new(vec![tool("ping", &[])], &[], &[]);
    let store = RecordingServer::new(
        vec![tool("query", &["sql"]), tool("drop_table", &[])],
        &[],
        &[],
    );
    let mut running = Vec::new();
    let mut urls = Vec::new();
    for s in [&github, &wiki, &status, &store] {
        let r = serve_recording(s).await;
        urls.push(r.url("/mcp"));
        running.push(r);
    }
    let w = World {
        pg,
        db,
        venv,
        _upstreams: running,
        upstreams: vec![github.clone(), wiki, status, store],
        github,
        urls,
    };
    let sealed = encrypt(&w.venv, "ghp_upstream_token");
    sql(
        &w.db,
        &format!(
            r#"
            INSERT INTO "LiteLLM_MCPServerTable" (server_id, server_name, alias, url, transport, auth_type,
                credentials, mcp_access_groups, allowed_tools, static_headers, allow_all_keys, mcp_info, updated_at)
            VALUES
             ('id-github', 'GitHub MCP', 'github', '{gh}', 'http', 'bearer_token',
              '{{"auth_value": "{sealed}"}}', ARRAY['eng'], ARRAY[]::text[], '{{"x-team": "platform"}}', false,
              '{{"mcp_server_cost_info": {{"default_cost_per_query": 0.01}}}}', now()),
             ('id-wiki', 'wiki', NULL, '{wiki}', 'http', 'none', '{{}}', ARRAY['docs'], ARRAY[]::text[], '{{}}', false, '{{}}', now()),
             ('id-status', 'status', NULL, '{status}', 'http', NULL, '{{}}', ARRAY[]::text[], ARRAY[]::text[], '{{}}', true, '{{}}', now()),
             ('id-store', 'store', NULL, '{store}', 'http', NULL, '{{}}', ARRAY[]::text[], ARRAY['query'], '{{}}', false, '{{}}', now()),
             ('id-draft', 'draft', NULL, '{store}', 'http', NULL, '{{}}', ARRAY[]::text[], ARRAY[]::text[], '{{}}', true, '{{}}', now()),
             ('id-stdio', 'local', NULL, NULL, 'stdio', NULL, '{{}}', ARRAY[]::text[], ARRAY[]::text[], '{{}}', true, '{{}}', now());
            UPDATE "LiteLLM_MCPServerTable" SET approval_status = 'pending_review' WHERE server_id = 'id-draft';
            "#,
            gh = w.urls[0],
            wiki = w.urls[1],
            status = w.urls[2],
            store = w.urls[3],
        ),
    )
    .await;
    Some(w)
}

/// The rows of the principals: every level, access groups, tool permissions, `allow_all_keys`,
/// blocked, expired and spent keys, and one malformed permission.
fn principals() -> String {
    let mut s = String::from(
        r#"
        INSERT INTO "LiteLLM_ObjectPermissionTable" (object_permission_id, mcp_servers, mcp_access_groups, mcp_tool_permissions) VALUES
          ('op-key-github', ARRAY['id-github'], ARRAY[]::text[], NULL),
          ('op-team-eng',   ARRAY[]::text[], ARRAY['eng', 'docs'], NULL),
          ('op-team-read',  ARRAY['id-wiki'], ARRAY[]::text[], '{"id-wiki": ["read_page"]}'),
          ('op-org',        ARRAY['id-github', 'wiki'], ARRAY[]::text[], NULL),
          ('op-end-user',   ARRAY['id-wiki'], ARRAY[]::text[], NULL),
          ('op-agent',      ARRAY['id-github'], ARRAY[]::text[], NULL),
          ('op-tools-only', ARRAY[]::text[], ARRAY[]::text[], '{"id-store": ["query"]}'),
          ('op-bad',        ARRAY['id-github'], ARRAY[]::text[], '["not", "an", "object"]'),
          ('op-user',       ARRAY['id-wiki'], ARRAY[]::text[], NULL),
          ('op-opt-out',    ARRAY['no-mcp-servers'], ARRAY[]::text[], NULL),
          ('op-store',      ARRAY['store'], ARRAY[]::text[], NULL),
          ('op-empty',      ARRAY[]::text[], ARRAY[]::text[], NULL),
          ('op-gone',       ARRAY['id-deleted-long-ago'], ARRAY[]::text[], NULL);
        INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, created_by, updated_by) VALUES
          ('b-org', NULL, 'admin', 'admin'), ('b-spent', 1.0, 'admin', 'admin');
        INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, budget_id, object_permission_id, spend, created_by, updated_by) VALUES
          ('org-acme', 'Acme', 'b-org', 'op-org', 0, 'admin', 'admin'),
          ('org-spent', 'Spent', 'b-spent', NULL, 5.0, 'admin', 'admin');
        INSERT INTO "LiteLLM_TeamTable" (team_id, team_alias, organization_id, object_permission_id, blocked, spend, max_budget, admins, members) VALUES
          ('team-eng', 'eng', NULL, 'op-team-eng', false, 0, NULL, '{}', '{}'),
          ('team-read', 'read', NULL, 'op-team-read', false, 0, NULL, '{}', '{}'),
          ('team-frozen', 'frozen', NULL, 'op-team-eng', true, 0, NULL, '{}', '{}'),
          ('team-empty', 'empty', NULL, 'op-empty', false, 0, NULL, '{}', '{}');
        INSERT INTO "LiteLLM_EndUserTable" (user_id, object_permission_id, blocked) VALUES
          ('eu-wiki', 'op-end-user', false), ('eu-blocked', NULL, true);
        INSERT INTO "LiteLLM_AgentsTable" (agent_id, agent_name, agent_card_params, object_permission_id, created_by, updated_by) VALUES
          ('agent-gh', 'gh-agent', '{}', 'op-agent', 'admin', 'admin');
        INSERT INTO "LiteLLM_UserTable" (user_id, object_permission_id, models) VALUES
          ('u-wiki', 'op-user', '{}');
        "#,
    );
    let keys: [(&str, &str); 18] = [
        (
            "sk-none",
            "NULL, NULL, NULL, NULL, NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-key",
            "'op-key-github', NULL, NULL, NULL, NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-team",
            "NULL, 'team-eng', NULL, NULL, NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-both",
            "'op-key-github', 'team-eng', NULL, NULL, NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-org",
            "NULL, NULL, 'org-acme', NULL, NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-agent",
            "NULL, 'team-eng', NULL, 'agent-gh', NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-read",
            "NULL, 'team-read', NULL, NULL, NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-tools-only",
            "'op-tools-only', NULL, NULL, NULL, NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-bad",
            "'op-bad', NULL, NULL, NULL, NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-user",
            "NULL, 'team-eng', NULL, NULL, 'u-wiki', NULL, false, 0, NULL",
        ),
        (
            "sk-opt-out",
            "'op-opt-out', 'team-eng', NULL, NULL, NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-store",
            "'op-store', NULL, NULL, NULL, NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-gone",
            "'op-gone', NULL, NULL, NULL, NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-blocked",
            "'op-key-github', NULL, NULL, NULL, NULL, NULL, true, 0, NULL",
        ),
        (
            "sk-expired",
            "'op-key-github', NULL, NULL, NULL, NULL, now() - interval '1 hour', false, 0, NULL",
        ),
        (
            "sk-spent",
            "'op-key-github', NULL, NULL, NULL, NULL, NULL, false, 5.0, 5.0",
        ),
        (
            "sk-org-spent",
            "'op-key-github', NULL, 'org-spent', NULL, NULL, NULL, false, 0, NULL",
        ),
        (
            "sk-frozen",
            "NULL, 'team-frozen', NULL, NULL, NULL, NULL, false, 0, NULL",
        ),
    ];
    s.push_str(
        r#"INSERT INTO "LiteLLM_VerificationToken" (token, key_alias, object_permission_id, team_id,
            organization_id, agent_id, user_id, expires, blocked, spend, max_budget, models) VALUES "#,
    );
    let rows: Vec<String> = keys
        .iter()
        .map(|(key, rest)| format!("('{}', '{}', {rest}, '{{}}')", digest(key), key))
        .collect();
    s.push_str(&rows.join(",\n"));
    s.push(';');
    s
}

struct Gw {
    running: Running,
    watch: PolicyWatch,
    problems: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
    _gateway: Gateway,
}

/// Creates the read-only role exactly as the README's "Using an existing LiteLLM database"
/// grants it, and the URL that connects as it.
async fn readonly_role(w: &World) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("CREATE ROLE mcp_gatekeeper")
        .expect("the README gives the grants");
    let end = start + readme[start..].find("```").unwrap();
    let grants = readme[start..end]
        .replace("PASSWORD '…'", "PASSWORD 'ro-secret'")
        .replace("ON DATABASE litellm", "ON DATABASE postgres");
    sql(&w.db, &grants).await;
    w.pg.url()
        .replace("gatekeeper@", "mcp_gatekeeper:ro-secret@")
}

async fn gateway(w: &World) -> Gw {
    let url = readonly_role(w).await;
    let config = Config::from_json_str(
        &json!({
            "general_settings": {
                "master_key": MASTER,
                "database_url": url,
                "database_schema": "litellm",
                "litellm_salt_key": SALT,
                "policy_poll_seconds": 1,
            },
        })
        .to_string(),
    )
    .unwrap();
    config.validate().unwrap();
    let db = Database::connect(&url, 4).unwrap();
    let source = LiteLlmSource::connect(db, &config)
        .await
        .unwrap()
        .poll_interval(Duration::from_millis(100));
    let gw = serve_gateway(
        source,
        WatchOptions {
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            ..WatchOptions::default()
        },
    )
    .await;
    assert!(
        within(Duration::from_secs(10), || async {
            gw.watch.status().report()["state"] == "ok"
        })
        .await
        .is_some(),
        "the policy never loaded"
    );
    gw
}

/// Every tool any caller could reach.
const ALL_TOOLS: [&str; 9] = [
    "github-create_issue",
    "github-echo_headers",
    "github-list_issues",
    "status-ping",
    "store-drop_table",
    "store-query",
    "wiki-edit_page",
    "wiki-read_page",
    "draft-ping",
];

/// What `key` (naming `end_user`) lists through MCP, and which of every tool it can call:
/// a refusal must be an `isError` result that never reached the upstream.
async fn listed_and_callable(
    w: &World,
    gw: &Gw,
    key: &str,
    end_user: Option<&str>,
) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
    let mut headers = vec![("x-litellm-api-key", key)];
    if let Some(e) = end_user {
        headers.push(("x-litellm-end-user-id", e));
    }
    let client = connect(&gw.running.url("/mcp"), &headers).await?;
    let listed: BTreeSet<String> = tool_names(&client).await.into_iter().collect();
    let mut callable = BTreeSet::new();
    for name in ALL_TOOLS {
        let before = w.executions();
        match call(&client, name, json!({})).await {
            Ok(_) => {
                callable.insert(name.to_owned());
            }
            Err(text) => {
                assert!(
                    !text.starts_with("service error"),
                    "{key} {name}: a refusal must be an isError result, got {text}"
                );
                assert!(text.starts_with("Error: "), "{key} {name}: {text}");
                assert_eq!(
                    before,
                    w.executions(),
                    "{key} {name}: refused, yet the upstream ran"
                );
            }
        }
    }
    client.cancel().await.ok();
    Ok((listed, callable))
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The status and body of a REST list as `key`.
async fn rest_list(gw: &Gw, key: &str) -> (u16, Value) {
    let r = http_client()
        .get(gw.running.url("/mcp-rest/tools/list"))
        .header("x-litellm-api-key", key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_principal_lists_exactly_what_it_can_call_as_litellm_means_its_rows() {
    let Some(w) = world("litellm-principals").await else {
        return;
    };
    sql(&w.db, &principals()).await;
    let gw = gateway(&w).await;
    let status = ["status-ping"];
    let github = [
        "github-create_issue",
        "github-echo_headers",
        "github-list_issues",
    ];
    let wiki = ["wiki-edit_page", "wiki-read_page"];
    let cat = |parts: &[&[&str]]| -> BTreeSet<String> {
        parts
            .iter()
            .flat_map(|p| p.iter())
            .map(|s| (*s).to_owned())
            .collect()
    };
    let cases: Vec<(&str, Option<&str>, BTreeSet<String>)> = vec![
        // No level lists a server: only the allow_all_keys server (LiteLLM's default).
        ("sk-none", None, cat(&[&status])),
        ("sk-key", None, cat(&[&github, &status])),
        // An unrestricted key inherits its team (access groups eng + docs).
        ("sk-team", None, cat(&[&github, &wiki, &status])),
        ("sk-both", None, cat(&[&github, &status])),
        // Only the organisation lists servers: its list is the grant; allow_all_keys stays
        // under it (LiteLLM would add status-ping).
        ("sk-org", None, cat(&[&github, &wiki])),
        ("sk-team", Some("eu-wiki"), cat(&[&wiki, &status])),
        // A blocked end user reaches nothing (LiteLLM refuses the request).
        ("sk-team", Some("eu-blocked"), BTreeSet::new()),
        ("sk-agent", None, cat(&[&github, &status])),
        ("sk-read", None, set(&["wiki-read_page", "status-ping"])),
        // A tool permission does not grant its server (LiteLLM would grant store-query), and a
        // level that restricts yet lists no served server grants nothing, allow_all_keys
        // servers included (LiteLLM would leave status-ping).
        ("sk-tools-only", None, BTreeSet::new()),
        ("sk-gone", None, BTreeSet::new()),
        ("sk-user", None, cat(&[&wiki, &status])),
        ("sk-opt-out", None, BTreeSet::new()),
        ("sk-store", None, set(&["store-query", "status-ping"])),
        (
            MASTER,
            None,
            cat(&[&github, &wiki, &status, &["store-query"]]),
        ),
    ];
    for (key, end_user, expected) in cases {
        let (listed, callable) = listed_and_callable(&w, &gw, key, end_user).await.unwrap();
        assert_eq!(listed, expected, "{key} {end_user:?} lists");
        assert_eq!(
            callable, listed,
            "{key} {end_user:?}: list and call disagree"
        );
    }
    // Refused before MCP, as LiteLLM refuses them, with our own words.
    for (key, code, word) in [
        ("sk-blocked", 401, "blocked"),
        ("sk-frozen", 401, "blocked"),
        ("sk-expired", 401, "expired"),
        ("sk-spent", 429, "budget"),
        ("sk-org-spent", 429, "budget"),
        ("sk-bad", 401, "blocked"),
        ("sk-unknown", 401, "Invalid"),
    ] {
        let (status, body) = rest_list(&gw, key).await;
        assert_eq!(status, code, "{key}: {body}");
        assert!(body.to_string().contains(word), "{key}: {body}");
        assert!(
            connect(&gw.running.url("/mcp"), &[("x-litellm-api-key", key)])
                .await
                .is_err()
        );
    }
    // The malformed permission is reported; the servers that cannot be served are too.
    let problems = (gw.problems)().join("\n");
    assert!(
        problems.contains("op-bad") || problems.contains("sk-bad"),
        "{problems}"
    );
    assert!(problems.contains("mcp_tool_permissions"), "{problems}");
    assert!(
        problems.contains("\"local\"") && problems.contains("stdio"),
        "{problems}"
    );
    assert!(
        !problems.contains("draft"),
        "a server awaiting approval is not LiteLLM's either: {problems}"
    );
    // The credential LiteLLM encrypted reaches the upstream, opened; the caller's key does not.
    let client = connect(&gw.running.url("/mcp"), &[("x-litellm-api-key", "sk-key")])
        .await
        .unwrap();
    let headers: Value = serde_json::from_str(
        &call(&client, "github-echo_headers", json!({}))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        headers["authorization"], "Bearer ghp_upstream_token",
        "{headers}"
    );
    assert_eq!(headers["x-team"], "platform", "{headers}");
    assert!(!headers.to_string().contains("sk-key"), "{headers}");
    assert!(!w.github.executions.names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_through_litellm_reach_the_gateway_and_a_bad_row_fails_alone() {
    let Some(w) = world("litellm-changes").await else {
        return;
    };
    sql(&w.db, &principals()).await;
    let gw = gateway(&w).await;
    let names = |body: Value| -> BTreeSet<String> {
        body["tools"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(rest_list(&gw, "sk-key").await.1).len(), 4);

    // A key created in LiteLLM's UI works within a few seconds.
    sql(
        &w.db,
        &format!(
            r#"INSERT INTO "LiteLLM_VerificationToken" (token, key_alias, object_permission_id, models)
               VALUES ('{}', 'new', 'op-store', '{{}}')"#,
            digest("sk-new")
        ),
    )
    .await;
    let took = within(Duration::from_secs(5), || async {
        names(rest_list(&gw, "sk-new").await.1) == set(&["store-query", "status-ping"])
    })
    .await;
    assert!(took.is_some(), "a new key was not picked up");

    // A row holding the master key: left out and reported; everything else keeps loading.
    let master_sees = names(rest_list(&gw, MASTER).await.1);
    assert!(master_sees.len() > 4, "{master_sees:?}");
    sql(
        &w.db,
        &format!(
            r#"INSERT INTO "LiteLLM_VerificationToken" (token, key_alias, object_permission_id, models)
               VALUES ('{}', 'impostor', 'op-store', '{{}}')"#,
            digest(MASTER)
        ),
    )
    .await;
    assert!(
        within(Duration::from_secs(5), || async {
            (gw.problems)().join("\n").contains("impostor")
        })
        .await
        .is_some(),
        "{:?}",
        gw.watch.status().report()
    );
    assert_eq!(gw.watch.status().report()["state"], "ok");
    assert_eq!(names(rest_list(&gw, MASTER).await.1), master_sees);

    // A permission edited in place (the team gains a server) and a key blocked.
    sql(&w.db, r#"UPDATE "LiteLLM_ObjectPermissionTable" SET mcp_servers = ARRAY['id-wiki'] WHERE object_permission_id = 'op-key-github';
                 UPDATE "LiteLLM_VerificationToken" SET blocked = true, updated_at = now() WHERE key_alias = 'sk-both'"#).await;
    assert!(
        within(Duration::from_secs(5), || async {
            names(rest_list(&gw, "sk-key").await.1)
                == set(&["wiki-edit_page", "wiki-read_page", "status-ping"])
                && rest_list(&gw, "sk-both").await.0 == 401
        })
        .await
        .is_some(),
        "an edited permission or a blocked key was not picked up"
    );

    // A JSON column of the wrong shape: that principal fails closed and is reported; the rest
    // keep working.
    sql(&w.db, r#"UPDATE "LiteLLM_ObjectPermissionTable" SET mcp_tool_permissions = '{"id-wiki": "read_page"}' WHERE object_permission_id = 'op-team-eng'"#).await;
    assert!(
        within(Duration::from_secs(5), || async {
            let (status, body) = rest_list(&gw, "sk-team").await;
            status == 200 && names(body).is_empty()
        })
        .await
        .is_some(),
        "a malformed team permission did not fail closed"
    );
    assert!((gw.problems)().join("\n").contains("op-team-eng"));
    assert_eq!(
        names(rest_list(&gw, "sk-store").await.1),
        set(&["store-query", "status-ping"])
    );
    assert_eq!(gw.watch.status().report()["state"], "ok");

    // A server deleted in LiteLLM is withheld at once from everyone; a key that listed only
    // that server now lists nothing served, so it reaches nothing (not even the
    // allow_all_keys server, which LiteLLM would leave it).
    sql(
        &w.db,
        r#"DELETE FROM "LiteLLM_MCPServerTable" WHERE server_id = 'id-store'"#,
    )
    .await;
    assert!(
        within(Duration::from_secs(5), || async {
            names(rest_list(&gw, MASTER).await.1)
                .iter()
                .all(|n| !n.starts_with("store-"))
                && names(rest_list(&gw, "sk-store").await.1).is_empty()
        })
        .await
        .is_some(),
        "a deleted server was still offered"
    );

    // The database gone: the last policy serves, reported as stale; back: fresh again.
    w.pg.down();
    assert!(
        within(Duration::from_secs(10), || async {
            gw.watch.status().report()["state"] == "stale"
        })
        .await
        .is_some()
    );
    assert_eq!(
        names(rest_list(&gw, "sk-key").await.1),
        set(&["wiki-edit_page", "wiki-read_page", "status-ping"])
    );
    w.pg.up();
    assert!(
        within(Duration::from_secs(15), || async {
            gw.watch.status().report()["state"] == "ok"
        })
        .await
        .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_request_limits_hold_and_a_limit_of_zero_refuses_the_key() {
    let Some(w) = world("litellm-limits").await else {
        return;
    };
    sql(&w.db, &principals()).await;
    sql(
        &w.db,
        &format!(
            r#"INSERT INTO "LiteLLM_VerificationToken"
                   (token, key_alias, object_permission_id, models, rpm_limit, metadata)
               VALUES ('{}', 'limited', 'op-store', '{{}}', 3, '{{"mcp_rpm_limit": {{"status": 1}}}}'),
                      ('{}', 'zero', 'op-store', '{{}}', 0, '{{}}')"#,
            digest("sk-limited"),
            digest("sk-zero")
        ),
    )
    .await;
    let gw = gateway(&w).await;
    let call = |key: &'static str, name: &'static str| {
        let url = gw.running.url("/mcp-rest/tools/call");
        async move {
            http_client()
                .post(url)
                .header("x-litellm-api-key", key)
                .json(&json!({"name": name, "arguments": {}}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // One call a minute to `status` (its metadata), three to anything (its rpm_limit).
    assert_eq!(call("sk-limited", "status-ping").await, 200);
    assert_eq!(call("sk-limited", "status-ping").await, 429);
    assert_eq!(call("sk-limited", "store-query").await, 200);
    assert_eq!(call("sk-limited", "store-query").await, 200);
    assert_eq!(call("sk-limited", "store-query").await, 429);
    // A limit of zero refuses every call: the key is refused, and the problem reported.
    assert_eq!(rest_list(&gw, "sk-zero").await.0, 401);
    let problems = (gw.problems)().join("\n");
    assert!(
        problems.contains("rpm_limit 0 refuses every call"),
        "{problems}"
    );
}

/// A gateway serving the servers and the policy of `source`.
async fn serve_gateway(source: LiteLlmSource, options: WatchOptions) -> Gw {
    let served = source.config().clone();
    let gatekeeper = Gatekeeper::new(PolicySnapshot::pending(Arc::new(served.catalog().unwrap())));
    let source = Arc::new(source);
    let watch = source::watch(
        gatekeeper.clone(),
        Arc::clone(&source) as Arc<dyn source::PolicySource>,
        options,
    );
    let gateway = Gateway::from_config(&served, gatekeeper)
        .unwrap()
        .health_report("policy", watch.status().clone())
        .build()
        .unwrap();
    let running = serve(
        gateway.router(gateway.gatekeeper().layer()),
        CancellationToken::new(),
    )
    .await;
    Gw {
        running,
        watch,
        problems: Arc::new(move || source.problems()),
        _gateway: gateway,
    }
}

/// A source on `url` with the default poll period.
async fn source_at(url: &str) -> LiteLlmSource {
    let config = Config::from_json_str(
        &json!({"general_settings": {"master_key": MASTER, "database_url": url,
            "database_schema": "litellm", "litellm_salt_key": SALT}})
        .to_string(),
    )
    .unwrap();
    LiteLlmSource::connect(Database::connect(url, 4).unwrap(), &config)
        .await
        .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// What polling and reloading cost with 10,000 keys in 100 teams, and how long a key created
/// in LiteLLM takes to work through the gateway with the default poll period (2 s). Prints;
/// asserts no timing:
/// `cargo test --release --features gateway,litellm-db --test litellm_db -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn cost_of_polling_and_loading_ten_thousand_keys() {
    use mcp_gatekeeper::source::PolicySource;
    let Some(w) = world("litellm-cost").await else {
        return;
    };
    sql(
        &w.db,
        r#"
        INSERT INTO "LiteLLM_ObjectPermissionTable" (object_permission_id, mcp_servers, mcp_tool_permissions)
          SELECT 'op-' || i, ARRAY['id-github', 'id-wiki'], '{"id-wiki": ["read_page"]}' FROM generate_series(1, 10100) i;
        INSERT INTO "LiteLLM_TeamTable" (team_id, object_permission_id, admins, members)
          SELECT 'team-' || i, 'op-' || (10000 + i), '{}', '{}' FROM generate_series(1, 100) i;
        INSERT INTO "LiteLLM_VerificationToken" (token, key_alias, team_id, object_permission_id, models)
          SELECT encode(sha256(('sk-load-' || i)::bytea), 'hex'), 'load-' || i, 'team-' || (1 + i % 100), 'op-' || i, '{}'
          FROM generate_series(1, 10000) i;
        ANALYZE;
        "#,
    )
    .await;
    let url = w.pg.url();
    let source = source_at(&url).await;
    let mut loads = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        source.load().await.unwrap();
        loads.push(t.elapsed());
    }
    let mut polls = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        assert!(!source.has_changed().await.unwrap());
        polls.push(t.elapsed());
    }
    // LiteLLM's own bookkeeping (a column the gateway does not read) moves the row versions:
    // the check then also computes the column fingerprint, finds it unchanged, and reloads nothing.
    let mut churned = Vec::new();
    for i in 0..7 {
        sql(&w.db, &format!(r#"UPDATE "LiteLLM_VerificationToken" SET last_active = now() WHERE key_alias = 'load-{}'"#, i + 1)).await;
        let t = Instant::now();
        assert!(!source.has_changed().await.unwrap());
        churned.push(t.elapsed());
    }
    println!(
        "litellm source, 10000 keys / 100 teams / 10100 object permissions: whole load median {:.1} ms of 7; \
         change check median {:.2} ms of 21 (nothing written), {:.1} ms of 7 (a column the gateway does not read written)",
        median(loads).as_secs_f64() * 1e3,
        median(polls).as_secs_f64() * 1e3,
        median(churned).as_secs_f64() * 1e3,
    );
    // End to end with the default poll period.
    drop(source);
    let gw = gateway(&w).await;
    drop(gw);
    let source = source_at(&url).await;
    let gw = serve_gateway(source, WatchOptions::default()).await;
    assert!(
        within(Duration::from_secs(10), || async {
            rest_list(&gw, "sk-load-1").await.0 == 200
        })
        .await
        .is_some()
    );
    let mut seen = Vec::new();
    for i in 0..5 {
        let key = format!("sk-fresh-{i}");
        sql(
            &w.db,
            &format!(
                r#"INSERT INTO "LiteLLM_VerificationToken" (token, key_alias, object_permission_id, models)
                   VALUES ('{}', 'fresh-{i}', 'op-1', '{{}}')"#,
                digest(&key)
            ),
        )
        .await;
        let took = within(Duration::from_secs(10), || async {
            rest_list(&gw, &key).await.0 == 200
        })
        .await
        .expect("the new key never worked");
        seen.push(took);
    }
    seen.sort();
    println!(
        "a key inserted into LiteLLM's table works through the gateway after (poll 2 s): {}",
        seen.iter()
            .map(|d| format!("{:.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
