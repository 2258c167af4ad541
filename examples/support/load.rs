//! The load driver shared by the benchmark examples: JSON-RPC requests from many workers over
//! one reqwest client, their latencies, and a process's CPU time and memory from `/proc`.
#![allow(dead_code)] // each example uses part of it

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

/// The key every benchmark client presents.
pub(crate) const KEY: &str = "sk-bench";

/// User + system CPU time of a process so far.
pub(crate) fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 1000 / clock_ticks())
}

pub(crate) fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Call,
    List,
}

pub(crate) struct Outcome {
    pub(crate) rps: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) failures: u64,
}

/// What a stretch of load measured: every latency, the wall time, the failures. Stretches of
/// one target add up (rounds interleaved with other targets).
#[derive(Default)]
pub(crate) struct Sample {
    pub(crate) latencies: Vec<Duration>,
    pub(crate) elapsed: Duration,
    pub(crate) failures: u64,
}

impl Sample {
    pub(crate) fn absorb(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.elapsed += other.elapsed;
        self.failures += other.failures;
    }

    pub(crate) fn outcome(mut self) -> Outcome {
        self.latencies.sort_unstable();
        let all = &self.latencies;
        let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
        Outcome {
            rps: all.len() as f64 / self.elapsed.as_secs_f64(),
            p50: pick(0.50),
            p99: pick(0.99),
            failures: self.failures,
        }
    }
}

/// One client per worker: with sessions, each opens its own first (as real clients do), once,
/// outside any measurement.
pub(crate) async fn clients(
    client: &reqwest::Client,
    url: &str,
    workers: usize,
    sessions: bool,
) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(workers);
    for _ in 0..workers {
        out.push(if sessions {
            Some(open_session(client, url).await)
        } else {
            None
        });
    }
    out
}

/// Sends `requests` requests, one worker per entry of `sessions`.
pub(crate) async fn drive(
    client: &reqwest::Client,
    url: &str,
    kind: Kind,
    sessions: &[Option<String>],
    requests: usize,
    prefixed: bool,
) -> Sample {
    let tool = if prefixed { "bench-echo" } else { "echo" };
    drive_tool(client, url, kind, sessions, requests, tool).await
}

/// [`drive`], calling the echo tool by the name `tool`.
pub(crate) async fn drive_tool(
    client: &reqwest::Client,
    url: &str,
    kind: Kind,
    sessions: &[Option<String>],
    requests: usize,
    tool: &str,
) -> Sample {
    let next = Arc::new(AtomicU64::new(1));
    let failures = Arc::new(AtomicU64::new(0));
    let tool: Arc<str> = Arc::from(tool);
    let started = Instant::now();
    let per = requests / sessions.len();
    let workers: Vec<_> = sessions
        .iter()
        .map(|session| {
            let (client, url, next, failures, session, tool) = (client.clone(), url.to_owned(), Arc::clone(&next), Arc::clone(&failures), session.clone(), Arc::clone(&tool));
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for _ in 0..per {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    let body = match kind {
                        Kind::Call => json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": &*tool, "arguments": {"message": "hello"}}}),
                        Kind::List => json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}),
                    };
                    let t = Instant::now();
                    let mut r = post(&client, &url);
                    if let Some(s) = &session {
                        r = r.header("mcp-session-id", s);
                    }
                    let r = r.body(body.to_string()).send().await;
                    let ok = match r {
                        Ok(r) if r.status().is_success() => r.bytes().await.map(|b| is_success(&b)).unwrap_or(false),
                        _ => false,
                    };
                    lat.push(t.elapsed());
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    for w in workers {
        latencies.extend(w.await.expect("worker"));
    }
    Sample {
        latencies,
        elapsed: started.elapsed(),
        failures: failures.load(Ordering::Relaxed),
    }
}

static BEARER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on the key is also presented as a bearer token, for gateways that read only that.
pub(crate) fn present_as_bearer_too() {
    BEARER.store(true, Ordering::Relaxed);
}

pub(crate) fn post(client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    let request = client
        .post(url)
        .header("x-litellm-api-key", KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if BEARER.load(Ordering::Relaxed) {
        request.header("authorization", format!("Bearer {KEY}"))
    } else {
        request
    }
}

/// Opens a session (initialize, then initialized); its id.
pub(crate) async fn open_session(client: &reqwest::Client, url: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "loadbench", "version": "0"}}});
    let r = post(client, url)
        .body(init.to_string())
        .send()
        .await
        .expect("initialize");
    let id = r.headers()["mcp-session-id"]
        .to_str()
        .expect("a session id")
        .to_owned();
    let _ = r.bytes().await;
    let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    post(client, url)
        .header("mcp-session-id", &id)
        .body(done.to_string())
        .send()
        .await
        .expect("initialized");
    id
}

/// A JSON-RPC result that is not a tool error, as JSON or in an event stream.
pub(crate) fn is_success(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let message = if text.trim_start().starts_with('{') {
        serde_json::from_str::<serde_json::Value>(&text).ok()
    } else {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
    };
    message
        .and_then(|v| {
            v.get("result")
                .map(|r| r.get("isError") != Some(&json!(true)))
        })
        .unwrap_or(false)
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
