//! Back to back against another MCP gateway: `tools/call` and `tools/list` at concurrency 1, 8
//! and 32 through gateways that front the same upstream, in rounds taken in turn, with each
//! gateway's CPU time per request read from `/proc`.
//!
//! ```text
//! cargo run --release --features gateway --example versus -- \
//!     --upstream-pid <pid> <name>=<url>,<pid>,<tool> <name>=<url>,<pid>,<tool> ...
//! ```
//! Each target is a gateway already running: its MCP endpoint, its process id, and the name the
//! upstream's `echo` tool has through it. Every worker opens a session first (initialize, then
//! initialized) and presents the benchmark key both as `x-litellm-api-key` and as a bearer
//! token, so that a gateway configured with either reads it. The upstream is `loadbench --serve
//! bare`; `loadbench --serve gateway-sessions --upstream <url>` is this project's gateway on a
//! stateful endpoint.

#[path = "support/load.rs"]
mod load;

use std::time::Duration;

use load::{Kind, Sample, clients, cpu, drive_tool, us};

struct Target {
    name: String,
    url: String,
    pid: u32,
    tool: String,
}

fn parse(arg: &str) -> Option<Target> {
    let (name, rest) = arg.split_once('=')?;
    let mut parts = rest.split(',');
    let (url, pid, tool) = (parts.next()?, parts.next()?, parts.next()?);
    Some(Target {
        name: name.to_owned(),
        url: url.to_owned(),
        pid: pid.parse().ok()?,
        tool: tool.to_owned(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let upstream: u32 = args
        .iter()
        .position(|a| a == "--upstream-pid")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .expect("--upstream-pid <pid>");
    let targets: Vec<Target> = args
        .iter()
        .filter(|a| a.contains('='))
        .map(|a| parse(a).unwrap_or_else(|| panic!("not <name>=<url>,<pid>,<tool>: {a}")))
        .collect();
    assert!(!targets.is_empty(), "no targets");
    load::present_as_bearer_too();
    // reqwest carries rustls without a crypto provider under the gateway feature.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(&targets, upstream));
}

async fn run(targets: &[Target], upstream: u32) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let (requests, rounds) = (20_000, 5);
    for t in targets {
        let workers = clients(&client, &t.url, 4, true).await;
        let o = drive_tool(&client, &t.url, Kind::Call, &workers, 400, &t.tool).await;
        assert_eq!(o.failures, 0, "warm-up against {} failed", t.name);
        drive_tool(&client, &t.url, Kind::List, &workers, 100, &t.tool).await;
    }
    println!(
        "{requests} requests per row, in {rounds} rounds taken in turn; CPU per request in µs"
    );
    println!(
        "{:<12} {:<10} {:>4} {:>9} {:>9} {:>11} {:>15}",
        "target", "method", "conc", "req/s", "p50 µs", "cpu/req µs", "upstream cpu µs"
    );
    for kind in [Kind::Call, Kind::List] {
        let method = if kind == Kind::Call {
            "tools/call"
        } else {
            "tools/list"
        };
        for conc in [1usize, 8, 32] {
            let mut workers = Vec::new();
            for t in targets {
                workers.push(clients(&client, &t.url, conc, true).await);
            }
            let mut samples: Vec<Sample> = targets.iter().map(|_| Sample::default()).collect();
            let mut spent = vec![(Duration::ZERO, Duration::ZERO); targets.len()];
            for round in 0..rounds {
                for k in 0..targets.len() {
                    let i = (k + round) % targets.len();
                    let t = &targets[i];
                    let (own, up) = (cpu(t.pid), cpu(upstream));
                    let n = requests / rounds;
                    samples[i]
                        .absorb(drive_tool(&client, &t.url, kind, &workers[i], n, &t.tool).await);
                    spent[i].0 += cpu(t.pid) - own;
                    spent[i].1 += cpu(upstream) - up;
                }
            }
            for (i, sample) in samples.into_iter().enumerate() {
                let o = sample.outcome();
                let per = |d: Duration| us(d) / requests as f64;
                println!(
                    "{:<12} {:<10} {:>4} {:>9.0} {:>9.1} {:>11.1} {:>15.1}{}",
                    targets[i].name,
                    method,
                    conc,
                    o.rps,
                    us(o.p50),
                    per(spent[i].0),
                    per(spent[i].1),
                    if o.failures > 0 {
                        format!("  ({} failed)", o.failures)
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
}
