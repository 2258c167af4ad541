//! [`ConfigFile`]: the policy of a configuration file, loaded again when the file changes or
//! when asked (the example gateway asks on `SIGHUP`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::{PolicySource, SourceError, SourceFuture};
use crate::config::{Config, ServerConfig};
use crate::gatekeeper::PolicySnapshot;

/// A configuration file as a [`PolicySource`]. A version that fails to load (a syntax error, an
/// unknown server in a permission) is refused as a whole and the policy in place stays; so is
/// one that adds, removes or renames servers or changes how one is reached (its URL, transport,
/// command, credentials, headers, TLS), since the gateway's upstream connections are built at
/// start: restart to apply those. Rules, keys, teams and the other levels apply at once.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    poll: Duration,
    servers: Mutex<Option<Vec<(String, ServerConfig)>>>,
    seen: Mutex<Option<(SystemTime, u64)>>,
    kick: tokio::sync::Notify,
}

/// What of a server's configuration is fixed at start: all but its rules and descriptions.
fn connection(server: &ServerConfig) -> ServerConfig {
    ServerConfig {
        alias: None,
        description: None,
        server_name: None,
        server_id: None,
        access_groups: Vec::new(),
        allowed_tools: None,
        disallowed_tools: Vec::new(),
        allowed_params: Default::default(),
        allow_all_keys: false,
        mcp_info: None,
        tool_pinning: None,
        pinned_tools: Default::default(),
        pinned_prompts: Default::default(),
        pin_new_tools: None,
        audit_redact: None,
        ..server.clone()
    }
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ConfigFile {
    /// The file at `path`, looked at every second for a change.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            poll: Duration::from_secs(1),
            servers: Mutex::new(None),
            seen: Mutex::new(None),
            kick: tokio::sync::Notify::new(),
        }
    }

    /// Looks at the file this often instead (at least 10 ms).
    #[must_use]
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(10));
        self
    }

    /// Loads the file again now, changed or not.
    pub fn reload_now(&self) {
        self.kick.notify_one();
    }
}

impl PolicySource for ConfigFile {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn load(&self) -> SourceFuture<'_, PolicySnapshot> {
        Box::pin(async move {
            *lock(&self.seen) = stamp(&self.path);
            let config = Config::from_path(&self.path).map_err(SourceError::new)?;
            let now: Vec<(String, ServerConfig)> = config
                .mcp_servers
                .iter()
                .map(|(n, s)| (n.to_owned(), connection(s)))
                .collect();
            {
                let mut servers = lock(&self.servers);
                match &*servers {
                    Some(first) if *first != now => {
                        let names = |v: &[(String, ServerConfig)]| {
                            v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
                        };
                        let what = if names(first) == names(&now) {
                            let changed: Vec<&str> = first
                                .iter()
                                .zip(&now)
                                .filter(|(a, b)| a != b)
                                .map(|(a, _)| a.0.as_str())
                                .collect();
                            format!("how servers {changed:?} are reached changed")
                        } else {
                            format!(
                                "the servers changed (from {:?} to {:?})",
                                names(first),
                                names(&now)
                            )
                        };
                        return Err(SourceError::new(format!(
                            "{what}; restart the gateway to apply that, the policy in place stays"
                        )));
                    }
                    Some(_) => {}
                    None => *servers = Some(now),
                }
            }
            config.policy().map_err(SourceError::new)
        })
    }

    fn changed(&self) -> SourceFuture<'_, ()> {
        Box::pin(async move {
            loop {
                tokio::select! {
                    () = self.kick.notified() => return Ok(()),
                    () = tokio::time::sleep(self.poll) => {
                        if stamp(&self.path) != *lock(&self.seen) {
                            return Ok(());
                        }
                    }
                }
            }
        })
    }
}
