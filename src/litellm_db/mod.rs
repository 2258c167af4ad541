//! Governing MCP traffic from the Postgres database a LiteLLM proxy already keeps (feature
//! `litellm-db`): its virtual keys, teams, organisations, end users, agents, object
//! permissions and MCP servers, read as LiteLLM wrote them and never written.
//!
//! The schema is LiteLLM's as created by the migrations of `litellm-proxy-extras` 0.4.110
//! (LiteLLM 1.108). Each stored value keeps LiteLLM's meaning — above all, an empty list
//! restricts nothing at its level, and a key none of whose levels lists a server reaches only
//! the `allow_all_keys` servers (see [`Hierarchy::LiteLlm`](crate::engine::Hierarchy)) —
//! except where LiteLLM is known to leak: a tool permission never grants a server, the
//! organisation caps `allow_all_keys` servers too, and what this build cannot read (toolsets,
//! `blocked_tools`, access groups from `LiteLLM_AccessGroupTable` that grant servers) never
//! widens access.
//!
//! - [`LiteLlmSource::connect`] reads the registered MCP servers once and adds them to the
//!   configuration ([`LiteLlmSource::config`]): build the gateway's upstreams from it.
//! - As a [`PolicySource`], it builds the whole policy from the rows in one consistent
//!   read, and notices changes by polling (every `policy_poll_seconds`, 2 by default; LiteLLM's
//!   tables carry no change notification, and a read-only role cannot add one): a short query
//!   over the tables' row versions, then, only when something was written, a fingerprint of
//!   exactly the columns it reads, both computed by the database.
//! - Keys are LiteLLM's `token` column, the SHA-256 hex digest of the key. A blocked key, a key
//!   of a blocked team, an expired key and a key whose budget (or its team's or
//!   organisation's) is spent are refused.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mcp_gatekeeper::config::Config;
//! use mcp_gatekeeper::litellm_db::LiteLlmSource;
//! use mcp_gatekeeper::postgres::Database;
//! use mcp_gatekeeper::source::{self, WatchOptions};
//! use mcp_gatekeeper::{Gatekeeper, PolicySnapshot};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_path("gateway.yaml")?; // database_schema: litellm
//! let db = Database::connect(&std::env::var("DATABASE_URL")?, 8)?;
//! let source = LiteLlmSource::connect(db, &config).await?;
//! let with_servers = source.config().clone(); // the upstreams to serve
//! let gatekeeper = Gatekeeper::new(PolicySnapshot::pending(Arc::new(with_servers.catalog()?)));
//! let watch = source::watch(gatekeeper.clone(), Arc::new(source), WatchOptions::default());
//! # let _ = watch; Ok(()) }
//! ```

mod credentials;
mod levels;
mod read;
mod servers;
mod snapshot;

use std::sync::Mutex;
use std::time::Duration;

use crate::config::Config;
use crate::gatekeeper::PolicySnapshot;
use crate::postgres::{Database, DbError};
use crate::source::{PolicySource, SourceError, SourceFuture};

/// A read-only [`PolicySource`] over a LiteLLM proxy's database.
pub struct LiteLlmSource {
    db: Database,
    start: snapshot::Start,
    salt_key: Option<String>,
    poll: Duration,
    seen: tokio::sync::Mutex<Option<read::Fingerprint>>,
    problems: Mutex<Vec<String>>,
}

impl std::fmt::Debug for LiteLlmSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteLlmSource")
            .field("db", &self.db)
            .field("servers", &self.start.servers.len())
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl LiteLlmSource {
    /// Reads the MCP servers registered in LiteLLM's database and adds those that can be served
    /// to `config` (see [`LiteLlmSource::config`]); the rest are reported by
    /// [`LiteLlmSource::problems`]. Credentials are opened with
    /// `general_settings.litellm_salt_key`, else the master key, as LiteLLM does.
    ///
    /// # Errors
    ///
    /// The database cannot be read, or its tables are not LiteLLM's.
    pub async fn connect(db: Database, config: &Config) -> Result<Self, DbError> {
        let settings = config
            .general_settings
            .deployment()
            .map_err(|e| DbError::new("reading the configuration", e.to_string()))?;
        let salt_key = match settings.litellm_salt_key {
            Some(k) => Some(k),
            None => config
                .general_settings
                .master_key
                .as_ref()
                .map(|k| k.resolve("general_settings.master_key"))
                .transpose()
                .map_err(|e| DbError::new("reading the configuration", e.to_string()))?,
        };
        let (rows, _) = read::rows(&db).await?;
        let mut problems = Vec::new();
        let start = snapshot::start(config, &rows, salt_key.as_deref(), &mut problems);
        Ok(Self {
            db,
            start,
            salt_key,
            poll: Duration::from_secs(settings.policy_poll_seconds),
            seen: tokio::sync::Mutex::new(None),
            problems: Mutex::new(problems),
        })
    }

    /// The configuration with LiteLLM's servers added, as they were when this source
    /// connected: the upstreams to serve. A server registered later, renamed or reached
    /// differently needs a restart (reported meanwhile); its access rules apply at once, and a
    /// server no longer registered is withheld from everyone at once.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.start.config
    }

    /// How often the database is checked for changes (default `policy_poll_seconds`, 2 s).
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(50));
        self
    }

    /// What the last load could not use and left out (failing closed), with why.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Builds the policy as the rows are now, with what it could not use, without
    /// changing what [`PolicySource::changed`] compares against.
    ///
    /// # Errors
    ///
    /// The database cannot be read, or the snapshot cannot be built.
    pub async fn load_once(&self) -> Result<(PolicySnapshot, Vec<String>), DbError> {
        let (rows, _) = read::rows(&self.db).await?;
        self.build(&rows)
    }

    fn build(&self, rows: &read::Rows) -> Result<(PolicySnapshot, Vec<String>), DbError> {
        snapshot::snapshot(&self.start, rows, self.salt_key.as_deref())
            .map_err(|e| DbError::new("building the policy from LiteLLM's rows", e))
    }
}

impl LiteLlmSource {
    /// Whether the rows this source reads changed since its last load (the check
    /// [`PolicySource::changed`] repeats every poll interval): one short query over the row
    /// versions, and only when something was written, a fingerprint of the columns read.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn has_changed(&self) -> Result<bool, DbError> {
        let mut seen = self.seen.lock().await;
        let Some(last) = seen.as_ref() else {
            return Ok(true);
        };
        match read::moved(&self.db, last).await? {
            Ok(()) => Ok(true),
            Err(same) => {
                // Written to, but not in what is read: remember, so the next check is quick.
                *seen = Some(same);
                Ok(false)
            }
        }
    }
}

impl PolicySource for LiteLlmSource {
    fn describe(&self) -> String {
        "litellm database".to_owned()
    }

    fn load(&self) -> SourceFuture<'_, PolicySnapshot> {
        Box::pin(async move {
            let (rows, print) = read::rows(&self.db).await.map_err(SourceError::new)?;
            // Each load translates the server rows again, so a server that cannot be served is
            // reported by every load, as it was when connecting.
            let (snapshot, problems) = self.build(&rows).map_err(SourceError::new)?;
            *self.seen.lock().await = Some(print);
            *self
                .problems
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = problems;
            Ok(snapshot)
        })
    }

    fn changed(&self) -> SourceFuture<'_, ()> {
        Box::pin(async move {
            loop {
                tokio::time::sleep(self.poll).await;
                if self.has_changed().await.map_err(SourceError::new)? {
                    return Ok(());
                }
            }
        })
    }

    fn problems(&self) -> Vec<String> {
        LiteLlmSource::problems(self)
    }
}
