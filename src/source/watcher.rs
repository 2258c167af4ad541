//! The task that keeps a [`Gatekeeper`] on the newest snapshot of a [`PolicySource`].

use std::sync::Arc;
use std::time::Duration;

use super::{PolicySource, SourceStatus, WatchOptions};
use crate::gatekeeper::Gatekeeper;

/// A running [`watch`]: its status, and the task, stopped when the handle is dropped.
#[derive(Debug)]
pub struct PolicyWatch {
    status: Arc<SourceStatus>,
    task: tokio::task::JoinHandle<()>,
    loaded: tokio::sync::watch::Receiver<bool>,
}

impl PolicyWatch {
    /// What the source last did.
    #[must_use]
    pub fn status(&self) -> &Arc<SourceStatus> {
        &self.status
    }

    /// Waits until the first snapshot is in place, at most `limit`; returns whether it is.
    pub async fn loaded(&self, limit: Duration) -> bool {
        let mut loaded = self.loaded.clone();
        tokio::time::timeout(limit, loaded.wait_for(|l| *l))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for PolicyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Loads `source` into `gatekeeper` now and whenever it changes, on a task of the current tokio
/// runtime, until the returned handle is dropped. See the [module docs](super).
#[must_use = "the watch stops when its handle is dropped"]
pub fn watch(
    gatekeeper: Gatekeeper,
    source: Arc<dyn PolicySource>,
    options: WatchOptions,
) -> PolicyWatch {
    let status = Arc::new(SourceStatus::new(source.describe()));
    let (tx, loaded) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run(gatekeeper, source, options, Arc::clone(&status), tx));
    PolicyWatch {
        status,
        task,
        loaded,
    }
}

async fn run(
    gatekeeper: Gatekeeper,
    source: Arc<dyn PolicySource>,
    options: WatchOptions,
    status: Arc<SourceStatus>,
    loaded: tokio::sync::watch::Sender<bool>,
) {
    let name = source.describe();
    let mut backoff = options.min_backoff;
    loop {
        match source.load().await {
            Ok(snapshot) => {
                gatekeeper.reload(snapshot);
                if status.record_load(source.problems()) {
                    crate::trace::warn(&format!(
                        "policy: {name} answers again; serving its current policy"
                    ));
                }
                loaded.send_replace(true);
                backoff = options.min_backoff;
            }
            Err(e) => {
                let serving = if status.is_loaded() {
                    "serving the last good policy"
                } else {
                    "nothing loaded yet: every request is refused (503)"
                };
                crate::trace::warn(&format!(
                    "policy: cannot load from {name}: {e}; {serving}; retrying in {backoff:?}"
                ));
                status.record_failure(&e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.max_backoff);
                continue;
            }
        }
        tokio::select! {
            changed = source.changed() => {
                if let Err(e) = changed {
                    crate::trace::warn(&format!(
                        "policy: lost the change signal of {name}: {e}; loading again in {backoff:?}"
                    ));
                    status.record_failure(&e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(options.max_backoff);
                }
            }
            () = tokio::time::sleep(options.resync) => {}
        }
    }
}
