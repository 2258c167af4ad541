//! The hop beside nginx (`loadbench --hop`): the bare upstream, nginx as a plain reverse proxy in
//! front of it, and the gateway in front of it, driven by `wrk` in one run.
//!
//! nginx is Debian's (`nginx-light` or any nginx on the PATH or in /usr/sbin) with keep-alive
//! connections to the upstream and buffering off; it runs as a throwaway instance from a
//! configuration written to a temporary folder, on a free port, with as many workers as the
//! machine has cores. wrk (Debian's `wrk`) sends the same POST over and over on `conc` kept-alive
//! connections. Without nginx or wrk the benchmark says so and stops: it never runs half.
//!
//! CPU per request is the server processes' user + system time over the requests wrk counted
//! (nginx: its master and workers). The targets take turns, a few seconds each, in an order
//! that rotates every round.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::load::{KEY, cpu};

/// A server the hop benchmark drives: its URL and the processes whose CPU it counts.
pub(crate) struct Target<'a> {
    pub(crate) name: &'a str,
    pub(crate) url: String,
    pub(crate) pids: Vec<u32>,
    /// The tool name this target answers (the gateway prefixes its servers' names).
    pub(crate) tool: &'a str,
}

/// A program from the machine: on the PATH, or in the sbin folders Debian installs nginx in.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// nginx and wrk, or why the benchmark cannot run.
pub(crate) fn tools() -> Result<(PathBuf, PathBuf), String> {
    let nginx = program("nginx").ok_or(
        "nginx not found: install Debian's nginx-light (apt-get install nginx-light) to compare the hop with it",
    )?;
    let wrk = program("wrk").ok_or("wrk not found: install Debian's wrk (apt-get install wrk)")?;
    Ok((nginx, wrk))
}

/// A throwaway nginx proxying to `upstream`; stopped when dropped.
pub(crate) struct Nginx {
    child: Child,
    dir: PathBuf,
    pub(crate) url: String,
}

impl Nginx {
    pub(crate) fn start(nginx: &Path, upstream: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("loadbench-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let authority = upstream
            .strip_prefix("http://")
            .and_then(|u| u.split('/').next())
            .expect("an http:// upstream");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes auto;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               upstream up {{ server {authority}; keepalive 64; }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://up;\n\
                 proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n\
                 proxy_buffering off;\n      proxy_request_buffering off;\n    }}\n  }}\n}}\n"
        );
        let file = dir.join("nginx.conf");
        std::fs::write(&file, conf).expect("write nginx.conf");
        let mut child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&file)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let url = format!("http://127.0.0.1:{port}/mcp");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { child, dir, url };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nginx did not listen on {port}; see {d}/error.log");
    }

    /// The master and its workers.
    pub(crate) fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        std::iter::once(master)
            .chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then itself. A master killed outright would
        // leave its workers running.
        let pids = self.pids();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Any worker still there (its master did not stop it in time) goes too.
        for pid in pids.iter().skip(1) {
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one wrk run measured.
#[derive(Default, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) requests: u64,
    pub(crate) seconds: f64,
    pub(crate) cpu: Duration,
    pub(crate) p50_us: f64,
    pub(crate) failed: u64,
}

/// The wrk script that posts `body` with the benchmark's headers.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let file = dir.join(format!("{name}.lua"));
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = [[{body}]]\n\
         wrk.headers[\"content-type\"] = \"application/json\"\n\
         wrk.headers[\"accept\"] = \"application/json, text/event-stream\"\n\
         wrk.headers[\"mcp-protocol-version\"] = \"2025-06-18\"\n\
         wrk.headers[\"x-litellm-api-key\"] = \"{KEY}\"\n"
    );
    std::fs::write(&file, lua).expect("write a wrk script");
    file
}

/// The body of a request of `method` (`tools/call` of `tool`, or `tools/list`).
pub(crate) fn body(method: &str, tool: &str) -> String {
    match method {
        "tools/call" => format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"message":"hello"}}}}}}"#
        ),
        _ => r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_owned(),
    }
}

/// Drives `target` with wrk for `seconds` at concurrency `conc`.
pub(crate) fn drive(
    wrk: &Path,
    target: &Target<'_>,
    method: &str,
    conc: usize,
    seconds: u64,
) -> Run {
    let dir = std::env::temp_dir();
    let lua = script(
        &dir,
        &format!("loadbench-{}-{}", std::process::id(), target.tool),
        &body(method, target.tool),
    );
    let before: Duration = target.pids.iter().map(|&p| cpu(p)).sum();
    let out = Command::new(wrk)
        .args(["-t", if conc == 1 { "1" } else { "2" }])
        .args([
            "-c",
            &conc.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&lua)
        .arg(&target.url)
        .output()
        .expect("run wrk");
    let after: Duration = target.pids.iter().map(|&p| cpu(p)).sum();
    let _ = std::fs::remove_file(&lua);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut run = Run {
        cpu: after.saturating_sub(before),
        ..Run::default()
    };
    for line in text.lines().map(str::trim) {
        if let Some((n, tail)) = line.split_once(" requests in ") {
            run.requests = n.trim().parse().unwrap_or(0);
            run.seconds = tail
                .split('s')
                .next()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(seconds as f64);
        } else if let Some(p) = line.strip_prefix("50%") {
            run.p50_us = micros(p.trim());
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.failed = n.trim().parse().unwrap_or(u64::MAX);
        }
    }
    assert!(
        run.requests > 0,
        "wrk against {} printed no count:\n{text}",
        target.url
    );
    run
}

/// wrk's latency (`812.00us`, `1.20ms`, `2.00s`) in µs.
fn micros(text: &str) -> f64 {
    let (n, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        (text, 1.0)
    };
    n.parse::<f64>().unwrap_or(f64::NAN) * scale
}

/// Runs the hop benchmark: `bare` the upstream, each of `gateways` in front of it; nginx is
/// started here.
pub(crate) fn run(bare: Target<'_>, gateways: &[Target<'_>], quick: bool) {
    let (nginx_bin, wrk) = match tools() {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED: the hop benchmark needs nginx and wrk: {why}");
            std::process::exit(2);
        }
    };
    let nginx = Nginx::start(&nginx_bin, &bare.url);
    let upstream = bare.pids.clone();
    let proxy = Target {
        name: "n nginx",
        url: nginx.url.clone(),
        pids: nginx.pids(),
        tool: bare.tool,
    };
    let targets: Vec<&Target<'_>> = [&bare, &proxy].into_iter().chain(gateways).collect();
    let n = targets.len();
    let (rounds, seconds): (u32, u64) = if quick { (2, 2) } else { (3, 4) };
    // Warm every path (connections, the gateway's upstream session and lists).
    for t in &targets {
        for method in ["tools/call", "tools/list"] {
            let r = drive(&wrk, t, method, 4, 1);
            assert_eq!(r.failed, 0, "warm-up of {method} against {} failed", t.url);
        }
    }
    println!(
        "wrk, {rounds} rounds of {seconds} s per target and row, taken in turn; CPU per request in µs of the target's processes (nginx: master and workers) and of the upstream"
    );
    println!(
        "{:<10} {:<10} {:>4} {:>10} {:>9} {:>11} {:>13}",
        "target", "method", "conc", "req/s", "p50 µs", "cpu/req µs", "upstream µs"
    );
    for method in ["tools/call", "tools/list"] {
        for conc in [1usize, 8, 32] {
            let mut sums = vec![(0u64, 0f64, Duration::ZERO, Duration::ZERO, 0f64); n];
            for round in 0..rounds as usize {
                for i in (0..n).map(|i| (i + round) % n) {
                    let t = targets[i];
                    let up0: Duration = upstream.iter().map(|&p| cpu(p)).sum();
                    let r = drive(&wrk, t, method, conc, seconds);
                    let up1: Duration = upstream.iter().map(|&p| cpu(p)).sum();
                    assert_eq!(r.failed, 0, "{method} against {} failed", t.url);
                    let s = &mut sums[i];
                    s.0 += r.requests;
                    s.1 += r.seconds;
                    s.2 += r.cpu;
                    s.3 += if i == 0 {
                        Duration::ZERO
                    } else {
                        up1.saturating_sub(up0)
                    };
                    s.4 += r.p50_us / f64::from(rounds);
                }
            }
            let per = |d: Duration, n: u64| d.as_secs_f64() * 1e6 / n as f64;
            let mut rows = Vec::new();
            for (t, s) in targets.iter().zip(sums) {
                let rps = s.0 as f64 / s.1;
                let cpu_us = per(s.2, s.0);
                let up = if t.pids == upstream {
                    "-".to_owned()
                } else {
                    format!("{:.1}", per(s.3, s.0))
                };
                println!(
                    "{:<10} {:<10} {:>4} {:>10.0} {:>9.1} {:>11.1} {:>13}",
                    t.name, method, conc, rps, s.4, cpu_us, up
                );
                rows.push((rps, cpu_us));
            }
            let (a, x) = (rows[0], rows[1]);
            for (i, (t, c)) in targets[2..].iter().zip(&rows[2..]).enumerate() {
                let c_ = t.name.split(' ').next().unwrap_or("c");
                // A second gateway (traced, say) beside the first, too.
                let beside = (i > 0).then(|| format!("  cpu {c_}/c {:.3}", c.1 / rows[2].1));
                println!(
                    "ratios     {method:<10} {conc:>4} cpu {c_}/n {:.2}  req/s {c_}/n {:.2}  req/s {c_}/a {:.2}  req/s n/a {:.2}{}",
                    c.1 / x.1,
                    c.0 / x.0,
                    c.0 / a.0,
                    x.0 / a.0,
                    beside.unwrap_or_default()
                );
            }
        }
    }
    drop(nginx);
}
