//! What a deployment on Postgres costs, from one run on a throwaway cluster (or `--database-url`):
//!
//! ```text
//! cargo run --release --features gateway,postgres --example postgres_bench [-- --database-url URL]
//! ```
//! 1. loading the whole policy (10,000 keys, 100 teams) from the database;
//! 2. the per-call decision of the six layers with that snapshot beside one built from a
//!    configuration file with the same keys (both are the same in-memory structures);
//! 3. how long a created and a revoked key take to reach a watching replica (LISTEN/NOTIFY);
//! 4. the spend sink: the cost of `record` on the caller's path, and the rows per second the
//!    writer sustains into `gk_spend`;
//! 5. through the gateway on loopback: a call on an open session beside a new session (what a
//!    request sent to a replica without its session costs: a 404, then initialize).

#[path = "support/demo_servers.rs"]
mod demo_servers;
#[path = "support/throwaway_pg.rs"]
mod throwaway_pg;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use mcp_gatekeeper::body::Body;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::cost::{Outcome, SpendSink, ToolCallEvent};
use mcp_gatekeeper::gateway::{Gateway, UpstreamSpec};
use mcp_gatekeeper::postgres::{
    Database, KeyRef, NewKey, PgPolicySource, PgSpendSink, SpendOptions,
};
use mcp_gatekeeper::source::{self, WatchOptions};
use mcp_gatekeeper::{Gatekeeper, PolicySnapshot};
use serde_json::json;
use tower::{Layer, Service, ServiceExt};

const KEYS: usize = 10_000;
const TEAMS: usize = 100;

fn config_doc(with_keys: bool) -> String {
    let keys: Vec<_> = if with_keys {
        (0..KEYS)
            .map(|i| json!({"key": format!("sk-bench-{i}"), "team_id": format!("team-{}", i % TEAMS)}))
            .collect()
    } else {
        Vec::new()
    };
    let teams: Vec<_> = if with_keys {
        (0..TEAMS)
            .map(|t| json!({"team_id": format!("team-{t}"), "object_permission": {"mcp_servers": ["github"]}}))
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "general_settings": {"master_key": "sk-master"},
        "mcp_servers": {
            "github": {"url": "http://127.0.0.1:9/mcp", "disallowed_tools": ["delete_repo"]},
            "wiki": {"url": "http://127.0.0.1:9/mcp"},
        },
        "keys": keys,
        "teams": teams,
    })
    .to_string()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

async fn seed(db: &Database) {
    let client = db.client().await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO gk_object_permissions (mcp_servers) VALUES ('{{github}}');
             INSERT INTO gk_teams (team_id, object_permission_id)
                 SELECT 'team-' || t, (SELECT max(id) FROM gk_object_permissions)
                 FROM generate_series(0, {teams}) t;
             INSERT INTO gk_keys (key_digest, key_alias, team_id)
                 SELECT sha256(convert_to('sk-bench-' || i, 'UTF8')), 'bench-' || i,
                        'team-' || (i % {TEAMS})
                 FROM generate_series(0, {keys}) i;",
            teams = TEAMS - 1,
            keys = KEYS - 1,
        ))
        .await
        .unwrap();
}

/// Nanoseconds per `tools/call` decided by the six layers of `gatekeeper` in front of a
/// service that answers at once.
async fn decide(gatekeeper: &Gatekeeper, calls: usize) -> f64 {
    let inner = tower::service_fn(|_: http::Request<Body>| async {
        let reply = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
        Ok::<_, Infallible>(
            http::Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(reply))
                .unwrap(),
        )
    });
    let mut service = gatekeeper.layer().layer(inner);
    let bodies: Vec<Bytes> = (0..64)
        .map(|i| {
            Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"github-list_issues","arguments":{{"state":"open"}}}}}}"#
            ))
        })
        .collect();
    let start = Instant::now();
    for i in 0..calls {
        let request = http::Request::post("/mcp")
            .header(
                "x-litellm-api-key",
                format!("sk-bench-{}", (i * 7919) % KEYS),
            )
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Body::from(bodies[i % 64].clone()))
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let _ = response.into_body().collect().await.unwrap();
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn event(i: u64) -> ToolCallEvent {
    ToolCallEvent {
        server: Some("github".into()),
        tool: "list_issues".into(),
        qualified_tool: "github-list_issues".into(),
        argument_keys: Arc::from(vec!["state".into()].into_boxed_slice()),
        key_id: Some("bench".into()),
        key_alias: Some("bench".into()),
        team_id: Some("team-1".into()),
        organization_id: None,
        end_user_id: Some(format!("user-{}", i % 1000).into()),
        agent_id: None,
        session_id: None,
        started_at: SystemTime::now(),
        duration: Duration::from_micros(250),
        outcome: Outcome::Success,
        cost: 0.01,
    }
}

async fn sessions(rounds: usize) -> (f64, f64) {
    let config = Config::from_json_str(&config_doc(false)).unwrap();
    let gatekeeper = Gatekeeper::new(config.policy().unwrap());
    let gateway = Gateway::from_config(&config, gatekeeper)
        .unwrap()
        .upstream(
            "github",
            UpstreamSpec::in_process(demo_servers::GitHub::new),
        )
        .upstream("wiki", UpstreamSpec::in_process(demo_servers::Wiki::new))
        .build()
        .unwrap();
    let router = gateway.router(gateway.gatekeeper().layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    // rmcp's event-stream replies stall ~40 ms without TCP_NODELAY.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let post = |session: Option<&str>, body: serde_json::Value| {
        let mut r = http
            .post(&url)
            .header("x-litellm-api-key", "sk-master")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r.json(&body).send()
    };
    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"wiki-read_wiki_contents","arguments":{"page":"Home"}}});
    let open = || async {
        let init = post(None, json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}))
            .await
            .unwrap();
        let sid = init.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let _ = init.bytes().await;
        let _ = post(
            Some(&sid),
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        )
        .await
        .unwrap()
        .bytes()
        .await;
        sid
    };
    let warm = open().await;
    let (mut reuse, mut fresh) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        let r = post(Some(&warm), list.clone()).await.unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        reuse.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        // What a replica without the session costs the client: its 404, a new session, the call.
        let miss = post(Some("not-here"), list.clone()).await.unwrap();
        assert_eq!(miss.status(), 404);
        let _ = miss.bytes().await;
        let sid = open().await;
        let r = post(Some(&sid), list.clone()).await.unwrap();
        let _ = r.bytes().await;
        fresh.push(start.elapsed().as_secs_f64() * 1e3);
    }
    (median(reuse), median(fresh))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let mut url = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--database-url" => url = args.next(),
            other => panic!("unknown argument {other:?}"),
        }
    }
    let cluster = match url {
        Some(_) => None,
        None => Some(throwaway_pg::TestPg::start("bench").expect("Postgres is installed")),
    };
    let url = url.unwrap_or_else(|| cluster.as_ref().unwrap().url());
    let db = Database::connect(&url, 8).unwrap();
    db.migrate().await.unwrap();
    seed(&db).await;
    let config = Arc::new(Config::from_json_str(&config_doc(false)).unwrap());
    let source = PgPolicySource::new(db.clone(), Arc::clone(&config));

    // 1. A whole load.
    let mut loads = Vec::new();
    let mut snapshot = None;
    for _ in 0..7 {
        let start = Instant::now();
        let (s, problems) = source.load_once().await.unwrap();
        loads.push(start.elapsed().as_secs_f64() * 1e3);
        assert!(problems.is_empty());
        assert_eq!(s.identities().len(), KEYS);
        snapshot = Some(s);
    }
    println!(
        "policy load ({KEYS} keys, {TEAMS} teams): median {:.1} ms of 7",
        median(loads)
    );

    // 2. The decision, Postgres snapshot beside a configuration file's.
    let from_db = Gatekeeper::new(snapshot.unwrap());
    let from_file = Gatekeeper::new(
        Config::from_json_str(&config_doc(true))
            .unwrap()
            .policy()
            .unwrap(),
    );
    let (mut db_ns, mut file_ns) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        db_ns.push(decide(&from_db, 20_000).await);
        file_ns.push(decide(&from_file, 20_000).await);
    }
    let (db_ns, file_ns) = (median(db_ns), median(file_ns));
    println!(
        "decision per tools/call (six layers, in process): postgres snapshot {:.2} µs, \
         configuration file {:.2} µs, ratio {:.2}",
        db_ns / 1e3,
        file_ns / 1e3,
        db_ns / file_ns
    );

    // 3. Propagation to a watching replica.
    let watched = Gatekeeper::new(PolicySnapshot::pending(Arc::new(config.catalog().unwrap())));
    let watch = source::watch(
        watched.clone(),
        Arc::new(PgPolicySource::new(db.clone(), Arc::clone(&config))),
        WatchOptions::default(),
    );
    assert!(watch.loaded(Duration::from_secs(10)).await);
    let (mut created, mut revoked) = (Vec::new(), Vec::new());
    for i in 0..30 {
        let start = Instant::now();
        let key = db
            .create_key(&NewKey::alias(format!("p-{i}")))
            .await
            .unwrap();
        while watched
            .policy()
            .identities()
            .principal(&key.digest, None, None)
            .is_none()
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        created.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        db.revoke_key(&KeyRef::Digest(key.digest)).await.unwrap();
        while watched
            .policy()
            .identities()
            .principal(&key.digest, None, None)
            .is_some()
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        revoked.push(start.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "propagation to a watching replica ({} keys loaded each time), from the admin call's \
         start: created p50 {:.1} ms, max {:.1} ms; revoked p50 {:.1} ms, max {:.1} ms",
        KEYS + 30,
        median(created.clone()),
        quantile(created, 1.0),
        median(revoked.clone()),
        quantile(revoked, 1.0)
    );
    drop(watch);

    // 4. Spend.
    let dir = std::env::temp_dir().join(format!("gk-spend-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sink = PgSpendSink::start(db.clone(), &SpendOptions::new(&dir)).unwrap();
    const EVENTS: u64 = 200_000;
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let sink = sink.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                for i in 0..EVENTS / 2 {
                    sink.record(event(t * EVENTS + i));
                }
                start.elapsed()
            })
        })
        .collect();
    let record: Vec<Duration> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let recorded = start.elapsed();
    assert!(sink.flush(Duration::from_secs(300)).await);
    let total = start.elapsed();
    let rows: i64 = db
        .client()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM gk_spend", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as u64, EVENTS);
    let per_event = record.iter().map(Duration::as_nanos).sum::<u128>() as f64 / EVENTS as f64;
    println!(
        "spend: record {per_event:.0} ns per event on the caller's path (2 threads, {EVENTS} \
         events in {:.2} s); all in gk_spend after {:.2} s: {:.0} rows/s sustained",
        recorded.as_secs_f64(),
        total.as_secs_f64(),
        EVENTS as f64 / total.as_secs_f64()
    );
    drop(sink);
    let _ = std::fs::remove_dir_all(&dir);

    // 5. Sessions.
    let (reuse, fresh) = sessions(200).await;
    println!(
        "through the gateway on loopback (tools/call, median of 200): on its session {reuse:.2} ms; \
         sent where the session is unknown (404, initialize, initialized, the call) {fresh:.2} ms, \
         {:.1}x",
        fresh / reuse
    );
}
