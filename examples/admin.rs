//! Key management on the Postgres policy store.
//!
//! ```text
//! DATABASE_URL=postgres://… cargo run --features postgres --example admin -- <command>
//!   migrate                                      apply the crate's migrations
//!   create [--alias A] [--team T] [--org O] [--agent G] [--servers a,b] [--expires-in SECONDS]
//!                                                print a new key (shown once; only its digest is stored)
//!   revoke (--alias A | --key K | --digest sha256:…)
//!   rotate (--alias A | --key K | --digest sha256:…)   print the replacement key
//!   list                                         every key: digest, alias, team, state
//! ```
//! Running gateways see every change within a second (LISTEN/NOTIFY).

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcp_gatekeeper::engine::{KeyDigest, PermissionSpec};
use mcp_gatekeeper::postgres::{Database, KeyRef, NewKey};

const USAGE: &str = "usage: admin [--database-url URL] (migrate | create [--alias A] [--team T] \
[--org O] [--agent G] [--servers a,b] [--expires-in SECONDS] | revoke KEY | rotate KEY | list)
  KEY: --alias A | --key K | --digest sha256:HEX; the URL defaults to $DATABASE_URL";

struct Args {
    url: Option<String>,
    command: String,
    options: Vec<(String, String)>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut url = None;
    let mut command = None;
    let mut options = Vec::new();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if let Some(name) = arg.strip_prefix("--") {
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            if name == "database-url" {
                url = Some(value);
            } else {
                options.push((name.to_owned(), value));
            }
        } else if command.is_none() {
            command = Some(arg);
        } else {
            return Err(format!("unexpected {arg:?}"));
        }
    }
    Ok(Args {
        url: url.or_else(|| std::env::var("DATABASE_URL").ok()),
        command: command.ok_or("name a command")?,
        options,
    })
}

impl Args {
    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.options.iter().position(|(n, _)| n == name)?;
        Some(self.options.remove(i).1)
    }

    fn key(&mut self) -> Result<KeyRef, String> {
        if let Some(alias) = self.take("alias") {
            return Ok(KeyRef::Alias(alias));
        }
        if let Some(key) = self.take("key") {
            return Ok(KeyRef::Key(key));
        }
        if let Some(digest) = self.take("digest") {
            return KeyDigest::parse(&digest)
                .map(KeyRef::Digest)
                .ok_or_else(|| "--digest: write sha256:<64 hex digits>".to_owned());
        }
        Err("name the key: --alias, --key or --digest".into())
    }

    fn done(&self) -> Result<(), String> {
        match self.options.first() {
            Some((name, _)) => Err(format!("--{name} does not apply to {}", self.command)),
            None => Ok(()),
        }
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn run(mut args: Args) -> Result<(), String> {
    let url = args
        .url
        .clone()
        .ok_or("give --database-url or set DATABASE_URL")?;
    let db = Database::connect(&url, 2).map_err(|e| e.to_string())?;
    match args.command.as_str() {
        "migrate" => {
            args.done()?;
            db.migrate().await.map_err(|e| e.to_string())?;
            println!("migrated");
        }
        "create" => {
            let mut new = NewKey::default();
            new.alias = args.take("alias");
            new.team_id = args.take("team");
            new.organization_id = args.take("org");
            new.agent_id = args.take("agent");
            if let Some(servers) = args.take("servers") {
                new.permissions = Some(PermissionSpec {
                    mcp_servers: Some(
                        servers
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    ),
                    ..PermissionSpec::default()
                });
            }
            if let Some(seconds) = args.take("expires-in") {
                let seconds: u64 = seconds
                    .parse()
                    .map_err(|_| "--expires-in: a number of seconds")?;
                new.expires_at = Some(SystemTime::now() + Duration::from_secs(seconds));
            }
            args.done()?;
            let created = db.create_key(&new).await.map_err(|e| e.to_string())?;
            println!("{}", created.key);
            eprintln!(
                "created {:?}; the key above is shown once, only its digest is stored",
                created.digest
            );
        }
        "revoke" => {
            let key = args.key()?;
            args.done()?;
            db.revoke_key(&key).await.map_err(|e| e.to_string())?;
            println!("revoked");
        }
        "rotate" => {
            let key = args.key()?;
            args.done()?;
            let created = db.rotate_key(&key).await.map_err(|e| e.to_string())?;
            println!("{}", created.key);
            eprintln!("the old key is revoked; the new one above is shown once");
        }
        "list" => {
            args.done()?;
            for k in db.list_keys().await.map_err(|e| e.to_string())? {
                let state = if k.blocked {
                    "revoked".to_owned()
                } else if k.expires_at.is_some_and(|e| e <= SystemTime::now()) {
                    "expired".to_owned()
                } else {
                    k.expires_at
                        .map_or("active".to_owned(), |e| format!("active until {}", unix(e)))
                };
                println!(
                    "{:?}\t{}\t{}\t{}",
                    k.digest,
                    k.alias.as_deref().unwrap_or("-"),
                    k.team_id.as_deref().unwrap_or("-"),
                    state
                );
            }
        }
        other => return Err(format!("unknown command {other:?}")),
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("admin: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("admin: {e}");
            ExitCode::from(1)
        }
    }
}
