//! [`PgPolicySource`]: the policy from Postgres, reloaded on `NOTIFY`.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{Database, DbError, POLICY_CHANNEL, load};
use crate::config::Config;
use crate::gatekeeper::PolicySnapshot;
use crate::source::{PolicySource, SourceError, SourceFuture};

/// The policy of a configuration's servers and a database's identities and rules. See the
/// [module docs](super).
///
/// The configuration gives the servers (how to reach them, their configured rules) and may hold
/// keys, teams and the master key of its own; the database adds its keys, teams,
/// organisations, end users and agents, and its `gk_server_rules` replace configured rules
/// column by column.
#[derive(Debug)]
pub struct PgPolicySource {
    db: Database,
    config: Arc<Config>,
    listener: tokio::sync::Mutex<Option<Listener>>,
    problems: Mutex<Vec<String>>,
    migrate: std::sync::atomic::AtomicBool,
}

/// The `LISTEN` connection and the notifications it forwards.
#[derive(Debug)]
struct Listener {
    _client: tokio_postgres::Client,
    notes: mpsc::UnboundedReceiver<()>,
}

impl PgPolicySource {
    /// The policy of `config`'s servers and `db`'s rows.
    #[must_use]
    pub fn new(db: Database, config: Arc<Config>) -> Self {
        Self {
            db,
            config,
            listener: tokio::sync::Mutex::new(None),
            problems: Mutex::default(),
            migrate: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Applies the crate's migrations ([`Database::migrate`]) before the first load, retried
    /// with the load while the database is unreachable.
    #[must_use]
    pub fn migrating(self) -> Self {
        self.migrate
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// What the last load could not use (each such principal is refused or grants nothing).
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Listens before reading, so a change committed while the policy is read is noticed.
    async fn ensure_listening(&self) -> Result<(), DbError> {
        let mut listener = self.listener.lock().await;
        // A listener whose connection closed is replaced.
        if listener.as_ref().is_some_and(|l| !l.notes.is_closed()) {
            return Ok(());
        }
        let (tx, notes) = mpsc::unbounded_channel();
        let client = self.db.dedicated(tx).await?;
        client
            .batch_execute(&format!("LISTEN {POLICY_CHANNEL}"))
            .await
            .map_err(|e| DbError::new("listening for policy changes", e))?;
        *listener = Some(Listener {
            _client: client,
            notes,
        });
        Ok(())
    }

    /// Loads the policy once (no listening), with what could not be used in it.
    ///
    /// # Errors
    ///
    /// When the database cannot be read, or the catalog or the configuration's own identities
    /// cannot be built.
    pub async fn load_once(&self) -> Result<(PolicySnapshot, Vec<String>), DbError> {
        let loaded = load::load(&self.db, &self.config).await?;
        Ok((loaded.snapshot, loaded.problems))
    }
}

impl PolicySource for PgPolicySource {
    fn describe(&self) -> String {
        "postgres".to_owned()
    }

    fn load(&self) -> SourceFuture<'_, PolicySnapshot> {
        Box::pin(async move {
            use std::sync::atomic::Ordering;
            if self.migrate.load(Ordering::Relaxed) {
                self.db.migrate().await.map_err(SourceError::new)?;
                self.migrate.store(false, Ordering::Relaxed);
            }
            if let Err(e) = self.ensure_listening().await {
                // Without the change signal nothing would arrive in time: fail, retry.
                return Err(SourceError::new(e));
            }
            // Changes noticed before this read are in it.
            if let Some(l) = self.listener.lock().await.as_mut() {
                while l.notes.try_recv().is_ok() {}
            }
            let loaded = load::load(&self.db, &self.config)
                .await
                .map_err(SourceError::new)?;
            for problem in &loaded.problems {
                crate::decision_events::warn(&format!("policy: {problem}"));
            }
            *self
                .problems
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = loaded.problems;
            Ok(loaded.snapshot)
        })
    }

    fn changed(&self) -> SourceFuture<'_, ()> {
        Box::pin(async move {
            let mut guard = self.listener.lock().await;
            let Some(listener) = guard.as_mut() else {
                return Err(SourceError::new("not listening for policy changes"));
            };
            if listener.notes.recv().await.is_some() {
                Ok(())
            } else {
                *guard = None;
                Err(SourceError::new(
                    "the connection listening for policy changes closed",
                ))
            }
        })
    }

    fn problems(&self) -> Vec<String> {
        PgPolicySource::problems(self)
    }
}
