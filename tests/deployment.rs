//! The example gateway as deployed: its configuration file reloaded on change and on SIGHUP;
//! with Postgres, keys from the admin CLI and spend that survives a replica killed mid-load.
#![cfg(feature = "gateway")]

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::tls::{example_gateway, port_in, start_example_gateway};
use common::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn upstream() -> (Running, RecordingServer) {
    let github = RecordingServer::new(
        vec![tool("create_issue", &["title"]), tool("list_issues", &[])],
        &[],
        &[],
    );
    let ct = CancellationToken::new();
    let running = serve(
        axum::Router::new().nest_service(
            "/mcp",
            mcp_service(github.clone(), Mode::StatelessJson, &ct),
        ),
        ct,
    )
    .await;
    (running, github)
}

async fn status_of(port: u16, key: &str) -> u16 {
    http_client()
        .get(format!("http://127.0.0.1:{port}/mcp-rest/tools/list"))
        .header("x-litellm-api-key", key)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

async fn until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("deployment-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(unix)]
#[tokio::test]
async fn the_configuration_file_is_reloaded_on_change_and_on_sighup_and_a_broken_one_is_refused() {
    let (up, _github) = upstream().await;
    let dir = scratch("reload");
    let file = dir.join("gateway.json");
    let doc = |keys: &[&str]| {
        json!({
            "general_settings": {"master_key": "sk-master"},
            "mcp_servers": {"github": {"url": up.url("/mcp")}},
            "keys": keys.iter().map(|k| json!({"key": k})).collect::<Vec<_>>(),
        })
        .to_string()
    };
    std::fs::write(&file, doc(&["sk-aaaa", "sk-bbbb"])).unwrap();
    let (mut child, line) = example_gateway(
        &[
            OsStr::new("--config"),
            file.as_os_str(),
            OsStr::new("--bind"),
            OsStr::new("127.0.0.1:0"),
        ],
        &[],
    )
    .await;
    let port = port_in(&line);
    assert_eq!(status_of(port, "sk-aaaa").await, 200);

    // Written: reloaded without a restart.
    std::fs::write(&file, doc(&["sk-bbbb", "sk-cccc"])).unwrap();
    assert!(
        until(Duration::from_secs(5), || async {
            status_of(port, "sk-aaaa").await == 401 && status_of(port, "sk-cccc").await == 200
        })
        .await,
        "a changed file is loaded"
    );

    // A broken version is refused as a whole: the policy in place stays, /health says why.
    std::fs::write(&file, "{ not json").unwrap();
    let health = || async {
        http_client()
            .get(format!("http://127.0.0.1:{port}/health"))
            .header("x-litellm-api-key", "sk-master")
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert!(
        until(Duration::from_secs(5), || async {
            health().await["policy"]["state"] == "stale"
        })
        .await
    );
    assert_eq!(status_of(port, "sk-cccc").await, 200);
    assert_eq!(health().await["status"], "degraded");

    // SIGHUP loads the file even when nothing about it looks changed (same size and time).
    std::fs::write(&file, doc(&["sk-dddd", "sk-eeee"])).unwrap();
    assert!(
        until(Duration::from_secs(5), || async {
            status_of(port, "sk-dddd").await == 200
        })
        .await
    );
    let stamp = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, doc(&["sk-ffff", "sk-eeee"])).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(stamp)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        status_of(port, "sk-ffff").await,
        401,
        "not seen without a signal"
    );
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        until(Duration::from_secs(5), || async {
            status_of(port, "sk-ffff").await == 200 && status_of(port, "sk-dddd").await == 401
        })
        .await,
        "SIGHUP reloads"
    );

    // Where a server is reached is fixed at start: such a change is refused, and says so.
    let moved = doc(&["sk-ffff"]).replace(&up.url("/mcp"), "http://127.0.0.1:1/mcp");
    std::fs::write(&file, moved).unwrap();
    assert!(
        until(Duration::from_secs(5), || async {
            let h = health().await;
            h["policy"]["state"] == "stale"
                && h["policy"]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("how servers [\"github\"] are reached changed"))
        })
        .await
    );
    assert_eq!(
        status_of(port, "sk-eeee").await,
        200,
        "the policy in place stays"
    );
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(all(unix, feature = "postgres"))]
fn admin(url: &str, args: &[&str]) -> String {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples")
        .join("admin");
    let out = std::process::Command::new(bin)
        .arg("--database-url")
        .arg(url)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Starts the example gateway on `config`, and waits until its policy is loaded.
#[cfg(all(unix, feature = "postgres"))]
async fn replica(config: &Path, url: &str, key: &str) -> (tokio::process::Child, u16) {
    let (child, line) = example_gateway(
        &[
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--bind"),
            OsStr::new("127.0.0.1:0"),
        ],
        &[("GK_TEST_DATABASE_URL", OsStr::new(url))],
    )
    .await;
    let port = port_in(&line);
    assert!(
        until(Duration::from_secs(20), || async {
            status_of(port, key).await == 200
        })
        .await,
        "the replica loads its policy"
    );
    (child, port)
}

#[cfg(all(unix, feature = "postgres"))]
#[tokio::test]
async fn a_replica_started_while_its_database_is_down_answers_at_once_and_serves_when_it_is_back() {
    use common::postgres::TestPg;
    let Some(pg) = TestPg::start("down-at-start") else {
        return;
    };
    let (up, _github) = upstream().await;
    let config = pg.scratch("config").join("gateway.json");
    // The README's replica configuration: policy, pins and spend in the database.
    std::fs::write(
        &config,
        json!({
            "general_settings": {
                "master_key": "sk-master",
                "database_url": "os.environ/GK_TEST_DATABASE_URL",
                "spend_sink": {"type": "postgres", "spool_dir": pg.scratch("spool").to_str().unwrap()},
                "audit": {"sinks": [{"type": "postgres"}]},
            },
            "mcp_servers": {"github": {"url": up.url("/mcp")}},
        })
        .to_string(),
    )
    .unwrap();
    pg.down();
    let started = Instant::now();
    let (mut child, line) = start_example_gateway(
        &[
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--bind"),
            OsStr::new("127.0.0.1:0"),
        ],
        &[("GK_TEST_DATABASE_URL", OsStr::new(&pg.url()))],
        false,
    )
    .await;
    let port = port_in(&line);
    let http = http_client();
    // Listening at once: /health says unavailable (503), MCP and REST get the 503 of a policy
    // not loaded yet, for as long as the database is away.
    for _ in 0..3 {
        let health = http
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .expect("the replica answers while its database is down");
        assert_eq!(health.status(), 503);
        assert_eq!(
            health.json::<Value>().await.unwrap(),
            json!({"status": "unavailable"})
        );
        let mcp = http
            .post(format!("http://127.0.0.1:{port}/mcp"))
            .header("x-litellm-api-key", "sk-master")
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .send()
            .await
            .unwrap();
        assert_eq!(mcp.status(), 503);
        let body = mcp.text().await.unwrap();
        assert!(body.contains("not loaded"), "{body}");
        assert_eq!(status_of(port, "sk-master").await, 503);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!(
        "answered while the database was down, {:?} after start",
        started.elapsed()
    );
    // The database back: everything is served, without a restart.
    pg.up();
    let back = Instant::now();
    assert!(
        until(Duration::from_secs(30), || async {
            status_of(port, "sk-master").await == 200
        })
        .await,
        "the replica serves once its database answers"
    );
    eprintln!("serving {:?} after the database came back", back.elapsed());
    let health = http
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    child.kill().await.unwrap();
}

#[cfg(all(unix, feature = "postgres"))]
#[tokio::test]
async fn a_replica_killed_mid_load_loses_no_spend_for_an_answered_call() {
    use common::postgres::TestPg;
    use mcp_gatekeeper::postgres::Database;
    let Some(pg) = TestPg::start("killed-replica") else {
        return;
    };
    let (up, github) = upstream().await;
    let spool = pg.scratch("spool");
    let config = pg.scratch("config").join("gateway.json");
    std::fs::write(
        &config,
        json!({
            "general_settings": {
                "master_key": "sk-master",
                "database_url": "os.environ/GK_TEST_DATABASE_URL",
                "spend_sink": {"type": "postgres", "spool_dir": spool.to_str().unwrap()},
            },
            "mcp_servers": {"github": {"url": up.url("/mcp")}},
        })
        .to_string(),
    )
    .unwrap();
    admin(&pg.url(), &["migrate"]);
    let key = admin(
        &pg.url(),
        &["create", "--alias", "loader", "--servers", "github"],
    )
    .trim()
    .to_owned();
    assert!(key.starts_with("sk-") && key.len() == 67, "{key}");
    let listed = admin(&pg.url(), &["list"]);
    assert!(
        listed.contains("loader") && !listed.contains(&key),
        "{listed}"
    );

    let (mut child, port) = replica(&config, &pg.url(), &key).await;
    // Eight callers call as fast as they can; each call names itself as the end user.
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut loops = Vec::new();
    for worker in 0..8 {
        let answered = answered.clone();
        let key = key.clone();
        loops.push(tokio::spawn(async move {
            let http = http_client();
            for n in 0.. {
                let user = format!("w{worker}-{n}");
                let reply = http
                    .post(format!("http://127.0.0.1:{port}/mcp-rest/tools/call"))
                    .header("x-litellm-api-key", &key)
                    .header("x-litellm-end-user-id", &user)
                    .json(&json!({"name": "github-list_issues", "arguments": {}}))
                    .send()
                    .await;
                let Ok(reply) = reply else { break };
                let ok = reply.status() == 200;
                // Answered: the whole reply reached this client.
                if reply.bytes().await.is_ok() && ok {
                    answered.lock().unwrap().push(user);
                } else {
                    break;
                }
            }
        }));
    }
    assert!(
        until(Duration::from_secs(30), || async {
            answered.lock().unwrap().len() >= 150
        })
        .await
    );
    // The database goes away: calls go on from the policy in memory, their spend is spooled
    // (so the replica holds spend the database does not have when it is killed).
    pg.down();
    assert!(
        until(Duration::from_secs(30), || async {
            answered.lock().unwrap().len() >= 300
        })
        .await
    );
    child.start_kill().unwrap(); // SIGKILL
    let _ = child.wait().await;
    let spooled = std::fs::metadata(spool.join("spend.jsonl")).unwrap().len();
    let offset: u64 = std::fs::read_to_string(spool.join("spend.offset"))
        .map_or(0, |s| s.trim().parse().unwrap());
    assert!(spooled > offset, "the killed replica held unwritten spend");
    pg.up();
    for l in loops {
        let _ = l.await;
    }
    let answered = answered.lock().unwrap().clone();
    eprintln!(
        "{} calls answered before the kill ({} executions upstream)",
        answered.len(),
        github.executions.names().len()
    );

    // The replica comes back on the same spool and writes what it held.
    let (mut child, _port) = replica(&config, &pg.url(), &key).await;
    let db = Database::connect(&pg.url(), 2).unwrap();
    let rows = || async {
        let client = db.client().await.unwrap();
        client
            .query(
                "SELECT end_user_id, count(*) FROM gk_spend GROUP BY end_user_id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect::<std::collections::HashMap<_, _>>()
    };
    assert!(
        until(Duration::from_secs(20), || async {
            let rows = rows().await;
            answered.iter().all(|u| rows.contains_key(u))
        })
        .await,
        "every answered call has its row"
    );
    let rows = rows().await;
    assert!(
        rows.values().all(|n| *n == 1),
        "no call counted twice: {rows:?}"
    );
    child.kill().await.unwrap();
}
