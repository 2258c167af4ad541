//! A throwaway Redis server for one test or benchmark: Debian's `redis-server` on a free
//! loopback port, nothing saved to disk, stopped when dropped (and on demand, to test what
//! happens while Redis is down).
//!
//! Without the binary the tests that need it skip with a loud message, unless
//! `MCP_GATEKEEPER_REQUIRE_REDIS` is set (as `.ci/run` sets it): then they fail.
#![allow(dead_code, unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestRedis {
    port: u16,
    child: Option<Child>,
}

fn binary() -> Option<&'static str> {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then_some("redis-server")
}

impl TestRedis {
    /// A running server, or `None` (after saying so loudly) when Redis is not installed.
    pub fn start(test: &str) -> Option<Self> {
        if binary().is_none() {
            if std::env::var_os("MCP_GATEKEEPER_REQUIRE_REDIS").is_some() {
                panic!(
                    "{test}: redis-server is not installed, and MCP_GATEKEEPER_REQUIRE_REDIS is set"
                );
            }
            eprintln!(
                "\n*** SKIPPED {test}: redis-server is not installed (Debian: apt-get install redis-server) ***\n"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.up();
        Some(redis)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port, empty).
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (what it held is lost, as when a Redis without persistence restarts).
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `redis-cli` with `args` against this server: its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.down();
    }
}
