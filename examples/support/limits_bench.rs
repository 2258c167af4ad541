//! `loadbench --limits`: what the limit layer adds per call, from one run.
//!
//! Three processes serve the same stack over a bare rmcp server: (b) the six layers with no
//! limit configured, (l) the same with five limits on every call (the key's `rpm_limit` and
//! `max_parallel_requests`, `rpm` and `max_parallel` on the tool, the team's `max_budget`)
//! counted in process, and (r) the same limits counted in a Redis started for the run. Each
//! drives `tools/call` at concurrency 1, 8 and 32, the targets taking turns, and prints
//! requests/s, p50, p99, CPU per request of the serving process (and of Redis for (r)), and
//! what (l) and (r) add over (b).

use std::time::Duration;

use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::counters::{InProcessStore, LimitStore};
use mcp_gatekeeper::engine::Mount;
use mcp_gatekeeper::limit::LimitLayer;
use serde_json::json;

use super::load::{KEY, Kind, Sample, clients, cpu, drive, us};

/// The policy of the limited targets: every call passes five limits it never reaches.
pub(crate) fn limited_policy() -> Config {
    Config::from_json_str(
        &json!({
            "mcp_servers": {"bench": {"url": "http://127.0.0.1/mcp", "allowed_params": {"echo": ["message"]},
                                      "mcp_info": {"mcp_server_cost_info": {"default_cost_per_query": 0.001}}}},
            "keys": [{"key": KEY, "key_alias": "bench", "team_id": "t",
                      "rpm_limit": 1_000_000_000_000u64, "max_parallel_requests": 1_000_000,
                      "mcp_tool_limits": {"bench": {"echo": {"rpm": 1_000_000_000_000u64, "max_parallel": 1_000_000}}},
                      "object_permission": {"mcp_servers": ["bench"]}}],
            "teams": [{"team_id": "t", "max_budget": 1_000_000_000.0, "object_permission": {"mcp_servers": ["bench"]}}]
        })
        .to_string(),
    )
    .expect("a valid policy")
}

/// The policy of the limited targets, as the six layers' gatekeeper (one server mounted).
pub(crate) fn limited_gatekeeper() -> Gatekeeper {
    Gatekeeper::new(limited_policy().policy().expect("policy"))
        .with_mount(Mount::Single("bench".into()))
}

/// The store of role `stack-redis` (`--redis URL`), or of `stack-limited`.
pub(crate) fn store(redis: Option<&str>) -> std::sync::Arc<dyn LimitStore> {
    match redis {
        #[cfg(feature = "redis")]
        Some(url) => std::sync::Arc::new(
            mcp_gatekeeper::redis_limits::RedisLimits::new(url)
                .expect("a Redis URL")
                .timeout(Duration::from_secs(5)),
        ),
        #[cfg(not(feature = "redis"))]
        Some(_) => panic!("the Redis target needs the `redis` feature"),
        None => std::sync::Arc::new(InProcessStore::new()),
    }
}

/// The limit layer over `gk` counting in `store`.
pub(crate) fn layer(gk: &Gatekeeper, store: std::sync::Arc<dyn LimitStore>) -> LimitLayer {
    LimitLayer::new(gk.clone()).store(store)
}

/// One target: its name, URL and server process id (and Redis's, for CPU).
pub(crate) struct Target<'a> {
    pub(crate) name: &'a str,
    pub(crate) url: &'a str,
    pub(crate) pid: u32,
    pub(crate) helper: Option<u32>,
}

/// Drives the targets in turns and prints the table.
pub(crate) async fn run(targets: &[Target<'_>], quick: bool) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let requests = if quick { 2_000 } else { 20_000 };
    let rounds = if quick { 2 } else { 5 };
    for t in targets {
        let workers = clients(&client, t.url, 4, false).await;
        let o = drive(&client, t.url, Kind::Call, &workers, 400, false).await;
        assert_eq!(o.failures, 0, "warm-up against {} failed", t.name);
    }
    println!(
        "{requests} tools/call per row, in {rounds} rounds taken in turn; CPU per request in µs"
    );
    println!(
        "{:<14} {:>4} {:>10} {:>9} {:>9} {:>12} {:>12}",
        "target", "conc", "req/s", "p50 µs", "p99 µs", "cpu/req µs", "redis cpu µs"
    );
    for conc in [1usize, 8, 32] {
        let mut workers = Vec::new();
        for t in targets {
            workers.push(clients(&client, t.url, conc, false).await);
        }
        let mut samples: Vec<Sample> = targets.iter().map(|_| Sample::default()).collect();
        let mut own = vec![Duration::ZERO; targets.len()];
        let mut helper = vec![Duration::ZERO; targets.len()];
        for round in 0..rounds {
            for i in (0..targets.len()).map(|i| (i + round) % targets.len()) {
                let t = &targets[i];
                let h = || t.helper.map_or(Duration::ZERO, cpu);
                let (c0, h0) = (cpu(t.pid), h());
                let s = drive(
                    &client,
                    t.url,
                    Kind::Call,
                    &workers[i],
                    requests / rounds,
                    false,
                )
                .await;
                own[i] += cpu(t.pid) - c0;
                helper[i] += h() - h0;
                samples[i].absorb(s);
            }
        }
        let mut rows = Vec::new();
        for (i, sample) in samples.into_iter().enumerate() {
            let n = sample.latencies.len() as f64;
            let o = sample.outcome();
            let redis = if targets[i].helper.is_some() {
                format!("{:.1}", us(helper[i]) / n)
            } else {
                "-".into()
            };
            println!(
                "{:<14} {:>4} {:>10.0} {:>9.1} {:>9.1} {:>12.1} {:>12}{}",
                targets[i].name,
                conc,
                o.rps,
                us(o.p50),
                us(o.p99),
                us(own[i]) / n,
                redis,
                if o.failures > 0 {
                    format!("  ({} failed)", o.failures)
                } else {
                    String::new()
                }
            );
            rows.push((o, us(own[i]) / n + us(helper[i]) / n));
        }
        for (o, cpu_total) in rows.iter().skip(1) {
            println!(
                "{:<14} {:>4} over {}: p50 {:+.1} µs, CPU {:+.1} µs per call, req/s x{:.2}",
                "added",
                conc,
                targets[0].name,
                us(o.p50) - us(rows[0].0.p50),
                cpu_total - rows[0].1,
                o.rps / rows[0].0.rps
            );
        }
    }
}
