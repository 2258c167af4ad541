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
                    crate::decision_events::warn(&format!(
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
                crate::decision_events::warn(&format!(
                    "policy: cannot load from {name}: {e}; {serving}; retrying in {backoff:?}"
                ));
                status.record_failure(&e);
                // Retried after the back-off, or at once when the source says it changed (the
                // fix of what made this load fail, say); a source that cannot say so now only
                // waits.
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    Ok(()) = source.changed() => {}
                }
                backoff = (backoff * 2).min(options.max_backoff);
                continue;
            }
        }
        tokio::select! {
            changed = source.changed() => {
                if let Err(e) = changed {
                    crate::decision_events::warn(&format!(
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::Config;
    use crate::gatekeeper::PolicySnapshot;
    use crate::source::{SourceError, SourceFuture};

    /// Fails its first load; says it changed when told to.
    struct FailsOnce {
        loads: AtomicUsize,
        changed: tokio::sync::Notify,
    }

    impl PolicySource for FailsOnce {
        fn describe(&self) -> String {
            "fails once".into()
        }
        fn load(&self) -> SourceFuture<'_, PolicySnapshot> {
            Box::pin(async move {
                if self.loads.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(SourceError::new("a row that cannot be read"));
                }
                Ok(Config::from_json_str("{}").unwrap().policy().unwrap())
            })
        }
        fn changed(&self) -> SourceFuture<'_, ()> {
            Box::pin(async move {
                self.changed.notified().await;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_failed_load_is_retried_as_soon_as_the_source_changes() {
        let source = Arc::new(FailsOnce {
            loads: AtomicUsize::new(0),
            changed: tokio::sync::Notify::new(),
        });
        let options = WatchOptions {
            min_backoff: Duration::from_secs(3600),
            ..WatchOptions::default()
        };
        let config = Config::from_json_str("{}").unwrap();
        let gk = Gatekeeper::new(PolicySnapshot::pending(Arc::new(config.catalog().unwrap())));
        let watch = watch(gk, source.clone(), options);
        while source.loads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!watch.loaded(Duration::from_millis(50)).await);
        // Fixed and announced: loaded at once, not after the hour-long back-off.
        source.changed.notify_one();
        assert!(watch.loaded(Duration::from_secs(5)).await);
        assert!(watch.status().is_healthy());
    }
}
