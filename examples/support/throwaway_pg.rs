//! A throwaway Postgres cluster for one test or benchmark: Debian's `postgresql` binaries,
//! `initdb` into a fresh directory under `target/`, on a free loopback port, stopped and removed
//! when dropped.
//!
//! Without the binaries the tests that need it skip with a loud message, unless
//! `MCP_GATEKEEPER_REQUIRE_POSTGRES` is set (as `.ci/run` sets it): then they fail.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct TestPg {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `runuser -u postgres --` when the tests run as root (Postgres refuses root).
    as_user: Option<String>,
    /// Server options besides the port and addresses (TLS).
    extra: String,
}

/// Where `initdb` and `pg_ctl` are: on `PATH`, or Debian's versioned directory.
fn binaries() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("pg_ctl").exists() && dir.join("initdb").exists() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("pg_ctl").exists() && b.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestPg {
    /// A running cluster, or `None` (after saying so loudly) when Postgres is not installed.
    pub fn start(test: &str) -> Option<Self> {
        let pg = Self::init(test)?;
        pg.up();
        Some(pg)
    }

    /// A running cluster that serves TLS (and plain connections) with this certificate and
    /// key (PEM).
    pub fn start_tls(test: &str, certificate: &str, key: &str) -> Option<Self> {
        let mut pg = Self::init(test)?;
        let data = pg.data();
        for (name, text) in [("server.crt", certificate), ("server.key", key)] {
            let path = data.join(name);
            std::fs::write(&path, text).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if let Some(user) = &pg.as_user {
                let owner = format!("{user}:{user}");
                assert!(
                    Command::new("chown")
                        .arg(&owner)
                        .arg(&path)
                        .status()
                        .unwrap()
                        .success()
                );
            }
        }
        pg.extra = "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".into();
        pg.up();
        Some(pg)
    }

    /// A cluster made with `initdb`, not started.
    fn init(test: &str) -> Option<Self> {
        let Some(bin) = binaries() else {
            if std::env::var_os("MCP_GATEKEEPER_REQUIRE_POSTGRES").is_some() {
                panic!("Postgres is required here, but no initdb/pg_ctl was found");
            }
            eprintln!(
                "\n!!!!! SKIPPED {test}: Postgres is not installed (apt-get install postgresql); \
                 `bash .ci/run` installs it !!!!!\n"
            );
            return None;
        };
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        let dir = target.join(format!(
            "pg-{test}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let as_user = is_root().then(|| "postgres".to_owned());
        if as_user.is_some() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown of the cluster directory");
        }
        let pg = Self {
            bin,
            dir,
            port: free_port(),
            as_user,
            extra: String::new(),
        };
        let data = pg.data();
        let out = pg
            .run("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "gatekeeper",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match &self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Starts the server (again, on the same port).
    pub fn up(&self) {
        let options = format!(
            // No fsync (a throwaway cluster), but commits are written before they are
            // acknowledged, so an immediate stop (the tests' outage) loses nothing committed.
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off \
             -c max_connections=200 {}",
            self.port, self.extra
        );
        let out = self
            .run("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// Stops the server at once (connections are cut).
    pub fn down(&self) {
        let _ = self
            .run("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .output();
    }

    /// The URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://gatekeeper@127.0.0.1:{}/postgres", self.port)
    }

    /// A directory for the test's own files, removed with the cluster.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.join("scratch").join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
