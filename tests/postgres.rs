//! Policy and spend in a real Postgres (a throwaway cluster per test), with gateway replicas
//! sharing it: changes everywhere within a second, the database going away and coming back,
//! spend counted exactly once.
#![cfg(all(feature = "postgres", feature = "gateway"))]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::postgres::TestPg;
use common::*;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::cost::SpendSink;
use mcp_gatekeeper::gateway::Gateway;
use mcp_gatekeeper::postgres::{
    Database, KeyRef, NewKey, PgPolicySource, PgSpendSink, SpendOptions,
};
use mcp_gatekeeper::source::{self, PolicyWatch, WatchOptions};
use mcp_gatekeeper::{Gatekeeper, PolicySnapshot};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Two upstreams: `github` and `wiki`.
struct Upstreams {
    _running: Vec<Running>,
    github: RecordingServer,
    config: Config,
}

async fn upstreams() -> Upstreams {
    let github = RecordingServer::new(
        vec![tool("create_issue", &["title"]), tool("list_issues", &[])],
        &[],
        &[],
    );
    let wiki = RecordingServer::new(vec![tool("read_page", &["page"])], &[], &[]);
    let mut running = Vec::new();
    let mut urls = Vec::new();
    for s in [&github, &wiki] {
        let r = serve_recording(s).await;
        urls.push(r.url("/mcp"));
        running.push(r);
    }
    let config = Config::from_json_str(
        &json!({
            "general_settings": {"master_key": "sk-master"},
            "mcp_servers": {
                "github": {"url": urls[0]},
                "wiki": {"url": urls[1]},
            },
        })
        .to_string(),
    )
    .unwrap();
    Upstreams {
        _running: running,
        github,
        config,
    }
}

/// One gateway replica on the database, serving on loopback.
struct Replica {
    running: Running,
    sink: Option<PgSpendSink>,
    watch: PolicyWatch,
    _gateway: Gateway,
}

fn fast() -> WatchOptions {
    WatchOptions {
        resync: Duration::from_secs(30),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
    }
}

async fn replica(url: &str, config: &Config, spool: Option<PathBuf>) -> Replica {
    let db = Database::connect(url, 8).unwrap();
    let catalog = Arc::new(config.catalog().unwrap());
    let gatekeeper = Gatekeeper::new(PolicySnapshot::pending(catalog));
    let source = PgPolicySource::new(db.clone(), Arc::new(config.clone())).migrating();
    let watch = source::watch(gatekeeper.clone(), Arc::new(source), fast());
    let sink = spool.map(|dir| PgSpendSink::start(db, &SpendOptions::new(dir)).unwrap());
    let mut builder = Gateway::from_config(config, gatekeeper)
        .unwrap()
        .health_report("policy", watch.status().clone());
    if let Some(sink) = &sink {
        builder = builder.health_report("spend", Arc::new(sink.clone()));
    }
    let gateway = builder.build().unwrap();
    let mut stack = gateway.gatekeeper().layer();
    if let Some(sink) = &sink {
        stack = stack.spend_sink(sink.clone());
    }
    let running = serve(gateway.router(stack), CancellationToken::new()).await;
    Replica {
        running,
        sink,
        watch,
        _gateway: gateway,
    }
}

/// The tools `key` sees through `replica`'s REST list, or the status and body of a refusal.
async fn tools(replica: &Replica, key: &str) -> Result<Vec<String>, (u16, String)> {
    let r = http_client()
        .get(replica.running.url("/mcp-rest/tools/list"))
        .header("x-litellm-api-key", key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    if status != 200 {
        return Err((status, body.to_string()));
    }
    let mut names: Vec<String> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Calls `name` through the REST endpoint as `key` naming `end_user`: the status and body.
async fn rest_call(replica: &Replica, key: &str, end_user: &str, name: &str) -> (u16, Value) {
    let r = http_client()
        .post(replica.running.url("/mcp-rest/tools/call"))
        .header("x-litellm-api-key", key)
        .header("x-litellm-end-user-id", end_user)
        .header("content-type", "application/json")
        .json(&json!({"name": name, "arguments": {}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn count(db: &Database, query: &str) -> i64 {
    db.client()
        .await
        .unwrap()
        .query_one(query, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn migrations_apply_once_even_when_replicas_start_together() {
    let Some(pg) = TestPg::start("migrations") else {
        return;
    };
    let db = Database::connect(&pg.url(), 4).unwrap();
    let other = Database::connect(&pg.url(), 4).unwrap();
    let (a, b) = tokio::join!(db.migrate(), other.migrate());
    a.unwrap();
    b.unwrap();
    db.migrate().await.unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM gk_schema_migrations").await,
        5,
        "0001_policy, 0002_spend, 0003_limits, 0004_pins_audit, 0005_app_pins"
    );
    // A database with a migration this build does not know is refused, not used.
    sql(
        &db,
        "INSERT INTO gk_schema_migrations (version, name) VALUES (99, 'future')",
    )
    .await;
    let err = db.migrate().await.unwrap_err().to_string();
    assert!(err.contains("migration 99"), "{err}");
}

#[tokio::test]
async fn two_replicas_share_keys_revocations_and_team_changes_within_a_second() {
    let Some(pg) = TestPg::start("replicas") else {
        return;
    };
    let up = upstreams().await;
    let a = replica(&pg.url(), &up.config, None).await;
    let b = replica(&pg.url(), &up.config, None).await;
    assert!(a.watch.loaded(Duration::from_secs(10)).await);
    assert!(b.watch.loaded(Duration::from_secs(10)).await);
    let db = Database::connect(&pg.url(), 4).unwrap();
    sql(
        &db,
        "INSERT INTO gk_object_permissions (mcp_servers) VALUES ('{github}');
         INSERT INTO gk_teams (team_id, object_permission_id)
             SELECT 'eng', max(id) FROM gk_object_permissions;",
    )
    .await;

    // Created through one: usable through the other within a second.
    let mut new = NewKey::alias("alice");
    new.team_id = Some("eng".into());
    let created = db.create_key(&new).await.unwrap();
    let key = created.key.clone();
    let took = within(Duration::from_secs(1), || async {
        tools(&b, &key).await.is_ok() && tools(&a, &key).await.is_ok()
    })
    .await;
    assert!(
        took.is_some(),
        "a new key works on both replicas within 1 s"
    );
    eprintln!("new key usable on both replicas after {took:?}");
    let both = vec![
        "github-create_issue".to_owned(),
        "github-list_issues".into(),
    ];
    assert_eq!(tools(&a, &key).await.unwrap(), both);
    assert_eq!(tools(&b, &key).await.unwrap(), both);

    // A team's permission change applies on both.
    sql(
        &db,
        "UPDATE gk_object_permissions SET mcp_servers = '{wiki}'
             WHERE id = (SELECT object_permission_id FROM gk_teams WHERE team_id = 'eng')",
    )
    .await;
    let wiki = vec!["wiki-read_page".to_owned()];
    let took = within(Duration::from_secs(1), || async {
        tools(&a, &key).await.ok() == Some(wiki.clone())
            && tools(&b, &key).await.ok() == Some(wiki.clone())
    })
    .await;
    assert!(took.is_some(), "the team change applies on both within 1 s");

    // 2026-07-28 calls, which carry no session, succeed on either replica.
    let http = http_client();
    for (i, r) in [&a, &b, &a, &b].into_iter().enumerate() {
        let reply = modern(
            &http,
            &r.running.url("/mcp"),
            &key,
            i as u64 + 1,
            "tools/call",
            json!({"name": "wiki-read_page", "arguments": {"page": "Home"}}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(reply.status(), 200);
        let ct = reply.headers()["content-type"].to_str().unwrap().to_owned();
        let body = reply.text().await.unwrap();
        let message = &messages(&ct, &body)[0];
        assert!(message["result"].is_object(), "{message}");
        assert_ne!(message["result"]["isError"], true, "{message}");
    }

    // A session opened on one replica is unknown on the other: 404, and the client starts a
    // new one there.
    let sid = raw_session(&http, &a.running.url("/mcp"), &key).await;
    let elsewhere = mcp_post(&http, &b.running.url("/mcp"), &key, Some(&sid))
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    let at_home = mcp_post(&http, &a.running.url("/mcp"), &key, Some(&sid))
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(at_home.status(), 200);

    // Revoked: refused on both within a second, with the same answer.
    db.revoke_key(&KeyRef::Key(key.clone())).await.unwrap();
    let took = within(Duration::from_secs(1), || async {
        matches!(tools(&a, &key).await, Err((401, _)))
            && matches!(tools(&b, &key).await, Err((401, _)))
    })
    .await;
    assert!(
        took.is_some(),
        "a revoked key is refused on both within 1 s"
    );
    eprintln!("revoked key refused on both replicas after {took:?}");
    let (_, body) = tools(&b, &key).await.unwrap_err();
    assert!(body.contains("blocked"), "{body}");
    assert!(up.github.executions.names().is_empty());
}

#[tokio::test]
async fn keys_are_created_once_rotated_listed_and_expire_on_time() {
    let Some(pg) = TestPg::start("keys") else {
        return;
    };
    let up = upstreams().await;
    let a = replica(&pg.url(), &up.config, None).await;
    assert!(a.watch.loaded(Duration::from_secs(10)).await);
    let db = Database::connect(&pg.url(), 4).unwrap();
    let created = db.create_key(&NewKey::alias("ci")).await.unwrap();
    // Only the digest is stored.
    let stored: Vec<u8> = db
        .client()
        .await
        .unwrap()
        .query_one("SELECT key_digest FROM gk_keys WHERE key_alias = 'ci'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, created.digest.0.to_vec());
    let plain = count(
        &db,
        &format!(
            "SELECT count(*) FROM gk_keys WHERE encode(key_digest, 'escape') LIKE '%{}%'",
            &created.key[3..20]
        ),
    )
    .await;
    assert_eq!(plain, 0);
    within(Duration::from_secs(1), || async {
        tools(&a, &created.key).await.is_ok()
    })
    .await
    .expect("the key works");

    // Rotation: the new key works, the old one is refused.
    let rotated = db.rotate_key(&KeyRef::Alias("ci".into())).await.unwrap();
    within(Duration::from_secs(1), || async {
        tools(&a, &rotated.key).await.is_ok() && tools(&a, &created.key).await.is_err()
    })
    .await
    .expect("rotation applies");
    let listed = db.list_keys().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|k| k.digest == rotated.digest && k.alias.as_deref() == Some("ci") && !k.blocked)
    );
    assert!(
        listed
            .iter()
            .any(|k| k.digest == created.digest && k.blocked)
    );

    // Expiry is checked on every request, without a reload.
    let mut short = NewKey::alias("short");
    short.expires_at = Some(SystemTime::now() + Duration::from_millis(1500));
    let short = db.create_key(&short).await.unwrap();
    within(Duration::from_secs(1), || async {
        tools(&a, &short.key).await.is_ok()
    })
    .await
    .expect("the short-lived key works at first");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (status, body) = tools(&a, &short.key).await.unwrap_err();
    assert_eq!(status, 401);
    assert!(body.contains("expired"), "{body}");
    assert!(!body.contains(&short.key));
}

#[tokio::test]
async fn a_row_that_cannot_be_used_fails_closed_for_its_principal_only() {
    let Some(pg) = TestPg::start("bad-row") else {
        return;
    };
    let up = upstreams().await;
    let a = replica(&pg.url(), &up.config, None).await;
    assert!(a.watch.loaded(Duration::from_secs(10)).await);
    let db = Database::connect(&pg.url(), 4).unwrap();
    let good = db.create_key(&NewKey::alias("good")).await.unwrap();
    let bad = db.create_key(&NewKey::alias("bad")).await.unwrap();
    within(Duration::from_secs(1), || async {
        tools(&a, &good.key).await.is_ok() && tools(&a, &bad.key).await.is_ok()
    })
    .await
    .expect("both keys work");
    // A permission naming a server the configuration lacks, given to one key.
    sql(
        &db,
        "INSERT INTO gk_object_permissions (mcp_servers) VALUES ('{payroll}');
         UPDATE gk_keys SET object_permission_id = (SELECT max(id) FROM gk_object_permissions)
             WHERE key_alias = 'bad';",
    )
    .await;
    within(Duration::from_secs(1), || async {
        tools(&a, &bad.key).await.is_err()
    })
    .await
    .expect("the key with the bad row is refused");
    assert_eq!(tools(&a, &good.key).await.unwrap().len(), 3);
    let health = health_as(&a.running, Some("sk-master")).await;
    let problems = health["policy"]["problems"].to_string();
    assert!(problems.contains("key \\\"bad\\\""), "{health}");
    assert_eq!(health["policy"]["state"], "ok");
    // Others see no details.
    let public = health_as(&a.running, None).await;
    assert_eq!(public, json!({"status": "ok"}));
}

#[tokio::test]
async fn a_dangling_reference_fails_closed_for_its_principal_alone_on_every_replica() {
    let Some(pg) = TestPg::start("dangling") else {
        return;
    };
    let up = upstreams().await;
    let a = replica(&pg.url(), &up.config, None).await;
    let b = replica(&pg.url(), &up.config, None).await;
    assert!(a.watch.loaded(Duration::from_secs(10)).await);
    assert!(b.watch.loaded(Duration::from_secs(10)).await);
    let db = Database::connect(&pg.url(), 4).unwrap();
    sql(
        &db,
        "INSERT INTO gk_object_permissions (mcp_servers) VALUES ('{github}');
         INSERT INTO gk_organizations (organization_id) VALUES ('acme');
         INSERT INTO gk_teams (team_id, object_permission_id)
             SELECT 'eng', max(id) FROM gk_object_permissions;
         INSERT INTO gk_teams (team_id, organization_id) VALUES ('ops', 'acme');",
    )
    .await;
    let in_team = |alias: &str, team: &str| {
        let mut new = NewKey::alias(alias);
        new.team_id = Some(team.into());
        new
    };
    let good = db.create_key(&in_team("good", "eng")).await.unwrap().key;
    let doomed = db.create_key(&in_team("doomed", "eng")).await.unwrap().key;
    let orphan = db.create_key(&in_team("orphan", "eng")).await.unwrap().key;
    let ops = db.create_key(&in_team("ops-key", "ops")).await.unwrap().key;
    let github = vec![
        "github-create_issue".to_owned(),
        "github-list_issues".into(),
    ];
    within(Duration::from_secs(2), || async {
        for r in [&a, &b] {
            for k in [&good, &doomed, &orphan] {
                if tools(r, k).await.ok().as_ref() != Some(&github) {
                    return false;
                }
            }
        }
        true
    })
    .await
    .expect("every key works on both replicas");
    // References to rows that do not exist, written past the foreign keys (as a restore with
    // triggers off or a logical replica writes them). No notification fires either.
    sql(
        &db,
        "BEGIN;
         SET LOCAL session_replication_role = replica;
         UPDATE gk_keys SET team_id = 'gone' WHERE key_alias = 'orphan';
         UPDATE gk_teams SET organization_id = 'vanished' WHERE team_id = 'ops';
         INSERT INTO gk_keys (key_digest, key_alias, agent_id)
             VALUES (sha256('sk-ghost-agent'::bytea), 'ghost', 'no-such-agent');
         COMMIT;
         INSERT INTO gk_keys (key_digest, key_alias) VALUES (sha256('sk-master'::bytea), 'impostor');",
    )
    .await;
    // Then ordinary changes: a key revoked, a key created. Each replica applies them, while
    // each bad reference fails closed for its own principal alone.
    db.revoke_key(&KeyRef::Alias("doomed".into()))
        .await
        .unwrap();
    let fresh = db.create_key(&in_team("fresh", "eng")).await.unwrap().key;
    let took =
        within(Duration::from_secs(2), || async {
            for r in [&a, &b] {
                let refused = |k: &str| {
                    let k = k.to_owned();
                    async move {
                        matches!(tools(r, &k).await, Err((401, body)) if body.contains("blocked"))
                    }
                };
                // (Each refused as a key that is known and blocked, not as an unknown one.)
                if !(refused(&doomed).await
                    && refused(&orphan).await
                    && refused("sk-ghost-agent").await
                    && tools(r, &good).await.ok().as_ref() == Some(&github)
                    && tools(r, &fresh).await.ok().as_ref() == Some(&github)
                    && tools(r, &ops).await.ok() == Some(Vec::new())
                    && tools(r, "sk-master").await.is_ok_and(|t| t.len() == 3))
                {
                    return false;
                }
            }
            true
        })
        .await;
    assert!(
        took.is_some(),
        "a: {:?} / b: {:?}",
        a.watch.status().report(),
        b.watch.status().report()
    );
    for r in [&a, &b] {
        let health = health_as(&r.running, Some("sk-master")).await;
        assert_eq!(health["policy"]["state"], "ok", "{health}");
        let problems = health["policy"]["problems"].to_string();
        for what in [
            "key \\\"orphan\\\": its team \\\"gone\\\"",
            "team \\\"ops\\\": its organization \\\"vanished\\\"",
            "key \\\"ghost\\\": its agent \\\"no-such-agent\\\"",
            "key \\\"impostor\\\": the same key is in the configuration",
        ] {
            assert!(problems.contains(what), "{what} not in {problems}");
        }
    }
    // The bad reference fixed: applied on both replicas as fast as any change.
    let fixed = std::time::Instant::now();
    sql(
        &db,
        "UPDATE gk_keys SET team_id = 'eng' WHERE key_alias = 'orphan'",
    )
    .await;
    let took = within(Duration::from_secs(2), || async {
        tools(&a, &orphan).await.ok().as_ref() == Some(&github)
            && tools(&b, &orphan).await.ok().as_ref() == Some(&github)
    })
    .await;
    assert!(took.is_some(), "the fixed key works on both replicas");
    eprintln!(
        "a fixed row applied on both replicas after {:?}",
        fixed.elapsed()
    );
}

#[tokio::test]
async fn a_replica_that_never_loaded_refuses_everything_then_serves_when_the_database_answers() {
    let Some(pg) = TestPg::start("never-loaded") else {
        return;
    };
    pg.down();
    let up = upstreams().await;
    let a = replica(&pg.url(), &up.config, None).await;
    let http = http_client();
    // Even the master key: nothing is decided without a policy.
    let r = http
        .get(a.running.url("/mcp-rest/tools/list"))
        .header("x-litellm-api-key", "sk-master")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("not loaded"), "{body}");
    assert!(!body.contains("127.0.0.1"), "{body}");
    let health = http.get(a.running.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "unavailable"})
    );
    pg.up();
    assert!(a.watch.loaded(Duration::from_secs(10)).await);
    assert_eq!(tools(&a, "sk-master").await.unwrap().len(), 3);
}

#[tokio::test]
async fn with_the_database_down_decisions_continue_and_spend_is_spooled_then_written_once() {
    let Some(pg) = TestPg::start("db-down") else {
        return;
    };
    let up = upstreams().await;
    let a = replica(&pg.url(), &up.config, Some(pg.scratch("spool-a"))).await;
    let b = replica(&pg.url(), &up.config, Some(pg.scratch("spool-b"))).await;
    assert!(a.watch.loaded(Duration::from_secs(10)).await);
    assert!(b.watch.loaded(Duration::from_secs(10)).await);
    let db = Database::connect(&pg.url(), 4).unwrap();
    let key = db.create_key(&NewKey::alias("loader")).await.unwrap().key;
    within(Duration::from_secs(1), || async {
        tools(&a, &key).await.is_ok() && tools(&b, &key).await.is_ok()
    })
    .await
    .expect("the key works on both");

    // Calls alternate between the replicas; the database stops in the middle and comes back.
    let mut answered = Vec::new();
    for i in 0..120 {
        if i == 40 {
            pg.down();
        }
        if i == 80 {
            // Still down: both serve from their snapshot and say so.
            let health = health_as(&a.running, Some("sk-master")).await;
            assert_eq!(health["status"], "degraded", "{health}");
            assert_eq!(health["spend"]["state"], "spooling", "{health}");
            assert_eq!(health["policy"]["state"], "stale", "{health}");
            pg.up();
        }
        let replica = if i % 2 == 0 { &a } else { &b };
        let user = format!("call-{i}");
        let (status, body) = rest_call(replica, &key, &user, "github-list_issues").await;
        assert_eq!(status, 200, "call {i}: {body}");
        answered.push(user);
    }
    for r in [&a, &b] {
        assert!(
            r.sink
                .as_ref()
                .unwrap()
                .flush(Duration::from_secs(20))
                .await,
            "the spool drains once the database is back"
        );
    }
    // Exactly one row per answered call.
    let rows = count(&db, "SELECT count(*) FROM gk_spend").await;
    assert_eq!(rows, answered.len() as i64);
    let distinct = count(&db, "SELECT count(DISTINCT end_user_id) FROM gk_spend").await;
    assert_eq!(distinct, answered.len() as i64);
    for r in [&a, &b] {
        let sink = r.sink.as_ref().unwrap();
        assert_eq!(sink.status().dropped(), 0);
        assert_eq!(sink.status().spooled(), sink.status().written());
    }
    let health = health_as(&a.running, Some("sk-master")).await;
    assert_eq!(health["status"], "ok", "{health}");
}

#[tokio::test]
async fn a_full_spool_drops_and_counts_never_silently() {
    let Some(pg) = TestPg::start("full-spool") else {
        return;
    };
    pg.down();
    let db = Database::connect(&pg.url(), 4).unwrap();
    let mut options = SpendOptions::new(pg.scratch("spool"));
    options.max_spool_bytes = 2_000;
    let sink = PgSpendSink::start(db, &options).unwrap();
    let event = spend_event();
    for _ in 0..50 {
        sink.record(event.clone());
    }
    let status = sink.status();
    assert!(status.spooled() > 0);
    assert!(status.dropped() > 0);
    assert_eq!(status.spooled() + status.dropped(), 50);
    let report = sink.report();
    assert_eq!(report["dropped_spool_full"], status.dropped());
    pg.up();
    let rows = Database::connect(&pg.url(), 2).unwrap();
    rows.migrate().await.unwrap();
    assert!(sink.flush(Duration::from_secs(20)).await);
    assert_eq!(
        count(&rows, "SELECT count(*) FROM gk_spend").await,
        status.spooled() as i64
    );
}

fn spend_event() -> mcp_gatekeeper::cost::ToolCallEvent {
    mcp_gatekeeper::cost::ToolCallEvent {
        server: Some("github".into()),
        tool: "list_issues".into(),
        qualified_tool: "github-list_issues".into(),
        argument_keys: Arc::from(Vec::new()),
        key_id: Some("k".into()),
        key_alias: None,
        team_id: None,
        organization_id: None,
        end_user_id: None,
        agent_id: None,
        session_id: None,
        started_at: SystemTime::now(),
        duration: Duration::from_millis(1),
        outcome: mcp_gatekeeper::cost::Outcome::Success,
        cost: 0.0,
    }
}

#[tokio::test]
async fn a_value_postgres_cannot_store_never_holds_spend_back() {
    let Some(pg) = TestPg::start("nul-spend") else {
        return;
    };
    let db = Database::connect(&pg.url(), 4).unwrap();
    db.migrate().await.unwrap();
    let sink = PgSpendSink::start(db.clone(), &SpendOptions::new(pg.scratch("spool"))).unwrap();
    // A caller may name an argument with a NUL, which `text` and `jsonb` cannot hold.
    let mut odd = spend_event();
    odd.argument_keys = Arc::from(vec!["a\0b".into()].into_boxed_slice());
    odd.end_user_id = Some("odd".into());
    let mut plain = spend_event();
    plain.end_user_id = Some("plain".into());
    sink.record(odd);
    sink.record(plain);
    assert!(sink.flush(Duration::from_secs(20)).await);
    assert_eq!(count(&db, "SELECT count(*) FROM gk_spend").await, 2);
    let stored: Value = db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT argument_keys FROM gk_spend WHERE end_user_id = 'odd'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, json!(["a\u{fffd}b"]));
    assert_eq!(sink.status().dropped(), 0);
}

#[tokio::test]
async fn tls_to_the_database_follows_libpq_sslmode() {
    use common::tls::{Ca, Files};
    let ca = Ca::new("db-ca");
    let (cert, key) = ca.leaf(&["db.internal"], false);
    let Some(pg) = TestPg::start_tls("tls", &cert, &key) else {
        return;
    };
    let files = Files::new("pg-tls");
    let ca_file = files.write("ca.pem", &ca.pem);
    let other = files.write("other.pem", &Ca::new("someone-else").pem);
    let base = pg.url();
    let works = |url: String| async move {
        let db = Database::connect(&url, 2).map_err(|e| e.to_string())?;
        let client = db.client().await.map_err(|e| e.to_string())?;
        let ssl: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        Ok::<bool, String>(ssl)
    };
    let ca_path = ca_file.display();
    // The certificate is for db.internal, the connection to 127.0.0.1.
    assert_eq!(
        works(format!("{base}?sslmode=verify-ca&sslrootcert={ca_path}")).await,
        Ok(true),
        "verify-ca checks the chain, not the name"
    );
    let err = works(format!("{base}?sslmode=verify-full&sslrootcert={ca_path}"))
        .await
        .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    let err = works(format!(
        "{base}?sslmode=verify-ca&sslrootcert={}",
        other.display()
    ))
    .await
    .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    // libpq's `require`: encrypted, not checked — unless a root certificate is named.
    assert_eq!(works(format!("{base}?sslmode=require")).await, Ok(true));
    assert!(
        works(format!(
            "{base}?sslmode=require&sslrootcert={}",
            other.display()
        ))
        .await
        .is_err()
    );
    assert_eq!(works(format!("{base}?sslmode=prefer")).await, Ok(true));
    assert_eq!(works(format!("{base}?sslmode=disable")).await, Ok(false));
    let err = Database::connect(&format!("{base}?sslmode=maybe"), 2).unwrap_err();
    assert!(err.to_string().contains("sslmode must be"), "{err}");
}

#[tokio::test]
async fn limits_in_the_database_apply_and_a_row_whose_limits_cannot_be_used_fails_closed() {
    let Some(pg) = TestPg::start("limits") else {
        return;
    };
    let up = upstreams().await;
    let a = replica(&pg.url(), &up.config, None).await;
    assert!(a.watch.loaded(Duration::from_secs(10)).await);
    let db = Database::connect(&pg.url(), 4).unwrap();
    sql(
        &db,
        r#"INSERT INTO gk_object_permissions (mcp_servers) VALUES ('{github}');
           INSERT INTO gk_teams (team_id, object_permission_id, limits)
               SELECT 'eng', max(id), '{"mcp_rpm_limit": {"github": 2}}' FROM gk_object_permissions;"#,
    )
    .await;
    let mut alice = NewKey::alias("alice");
    alice.team_id = Some("eng".into());
    let alice = db.create_key(&alice).await.unwrap().key;
    let bob = db.create_key(&NewKey::alias("bob")).await.unwrap().key;
    sql(
        &db,
        r#"UPDATE gk_keys SET limits = '{"rpm_limit": 0}' WHERE key_alias = 'bob'"#,
    )
    .await;
    // Both changes loaded: alice is served and bob, whose limit of zero calls cannot be used,
    // is refused.
    let ready = within(Duration::from_secs(2), || async {
        tools(&a, &alice).await.is_ok() && tools(&a, &bob).await.is_err()
    })
    .await;
    assert!(ready.is_some());
    // The team's two calls a minute to github, then a refusal naming the limit.
    let statuses: Vec<u16> = futures_util::future::join_all(
        (0..3).map(|_| rest_call(&a, &alice, "u", "github-list_issues")),
    )
    .await
    .into_iter()
    .map(|(s, _)| s)
    .collect();
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 200, 429], "{statuses:?}");
    // Refused as a blocked key is (401), and the problem is reported.
    assert_eq!(tools(&a, &bob).await.unwrap_err().0, 401);
    let health = health_as(&a.running, Some("sk-master")).await;
    let problems = health["policy"]["problems"].to_string();
    assert!(
        problems.contains("key \\\"bob\\\"") && problems.contains("rpm_limit"),
        "{health}"
    );
}
