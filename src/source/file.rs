//! [`ConfigFile`]: the policy of a configuration file, loaded again when the file changes or
//! when asked (the example gateway asks on `SIGHUP`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::{PolicySource, SourceError, SourceFuture};
use crate::config::Config;
use crate::gatekeeper::PolicySnapshot;

/// A configuration file as a [`PolicySource`]. A version that fails to load (a syntax error, an
/// unknown server in a permission) is refused as a whole and the policy in place stays; so is
/// one that adds, removes or renames servers, since the gateway's upstream connections are
/// built at start (restart to apply those).
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    poll: Duration,
    servers: Mutex<Option<Vec<String>>>,
    seen: Mutex<Option<(SystemTime, u64)>>,
    kick: tokio::sync::Notify,
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
            let names: Vec<String> = config
                .mcp_servers
                .iter()
                .map(|(n, _)| n.to_owned())
                .collect();
            {
                let mut servers = lock(&self.servers);
                match &*servers {
                    Some(first) if *first != names => {
                        return Err(SourceError::new(format!(
                            "the servers changed (from {first:?} to {names:?}); restart the \
                             gateway to apply that, the policy in place stays"
                        )));
                    }
                    Some(_) => {}
                    None => *servers = Some(names),
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
