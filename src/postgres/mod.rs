//! Policy and spend in Postgres (feature `postgres`), so several gateway replicas share one
//! source of truth.
//!
//! - [`Database`]: a connection pool ([`deadpool_postgres`] over [`tokio_postgres`]) and the
//!   crate's schema, applied as ordered migrations by [`Database::migrate`] (the SQL ships in
//!   `migrations/postgres/` of the crate).
//! - [`PgPolicySource`]: a [`PolicySource`](crate::source::PolicySource) that builds the policy
//!   from the configuration's servers and the database's keys, teams, organisations, end users,
//!   agents, object permissions and server rules, read in one consistent transaction; changes
//!   arrive through `LISTEN mcp_gatekeeper_policy` (every table has a trigger that notifies) and
//!   a periodic resync. Give it to [`watch`](crate::source::watch).
//! - Key management: [`Database::create_key`] (the key is returned once; only its SHA-256 digest
//!   is stored), [`Database::revoke_key`], [`Database::rotate_key`], [`Database::list_keys`].
//! - [`PgSpendSink`]: a [`SpendSink`](crate::cost::SpendSink) that journals every event to a
//!   local append-only spool before the caller's answer leaves, and writes the spool to
//!   `gk_spend` in batches.
//!
//! A row that cannot be used (a permission naming a server the configuration lacks, a JSON
//! column of the wrong shape) fails closed for its principal only: that key is refused, that
//! team, organisation, end user or agent grants nothing, and the problem is reported by
//! [`PgPolicySource::problems`] and in `/health`.
//!
//! In an axum app (or with the gateway), the pieces fit like this:
//!
//! ```no_run
//! use std::sync::Arc;
//! use mcp_gatekeeper::config::Config;
//! use mcp_gatekeeper::postgres::{Database, PgPolicySource, PgSpendSink, SpendOptions};
//! use mcp_gatekeeper::source::{self, WatchOptions};
//! use mcp_gatekeeper::{Gatekeeper, PolicySnapshot};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Arc::new(Config::from_path("gateway.yaml")?);
//! let db = Database::connect(&std::env::var("DATABASE_URL")?, 16)?;
//! // Until the database answers, every request is refused with 503.
//! let gatekeeper = Gatekeeper::new(PolicySnapshot::pending(Arc::new(config.catalog()?)));
//! let policy = PgPolicySource::new(db.clone(), Arc::clone(&config)).migrating();
//! let watch = source::watch(gatekeeper.clone(), Arc::new(policy), WatchOptions::default());
//! let spend = PgSpendSink::start(db, &SpendOptions::new("/var/lib/gatekeeper/spool"))?;
//! let layer = gatekeeper.layer().spend_sink(spend.clone());
//! // Serve `layer.layer(your_mcp_service)`; keep `watch` alive as long as it serves, and
//! // report `watch.status()` and `spend.report()` where your health check can see them.
//! # let _ = (layer, watch); Ok(()) }
//! ```
//!
//! The database URL is libpq's (`postgres://user:password@host:5432/db`, or key-value
//! `host=/run/postgresql dbname=gatekeeper`), over TCP or a Unix socket. TLS follows libpq's
//! `sslmode` (`disable`, `allow`, `prefer` — the default —, `require`, `verify-ca`,
//! `verify-full`) and `sslrootcert` (a PEM CA bundle; without it, the platform's roots): as with
//! libpq, `prefer` and `require` encrypt without checking the certificate unless `sslrootcert` is
//! given; use `verify-full` wherever the network is not yours.

mod budgets;
mod keys;
mod load;
#[cfg(feature = "litellm-db")]
pub(crate) use load::string_lists;
mod migrate;
mod policy;
mod spend;
mod spool;
mod tls;
mod trail;

pub use budgets::PersistedBudgets;
pub use deadpool_postgres;
pub use keys::{CreatedKey, KeyInfo, KeyRef, NewKey};
pub use policy::PgPolicySource;
pub use spend::{PgSpendSink, SpendOptions, SpendStatus};
pub use tokio_postgres;
pub use trail::{PgAuditSink, PgPins};

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

/// The notification channel the policy tables' triggers notify on every change.
pub const POLICY_CHANNEL: &str = "mcp_gatekeeper_policy";

/// A database error, with what was being done.
#[derive(Debug)]
pub struct DbError {
    doing: &'static str,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl DbError {
    pub(crate) fn new(
        doing: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            doing,
            source: source.into(),
        }
    }
}

impl DbError {
    /// Whether the server refused the data itself (SQLSTATE classes 22 and 23: a value it
    /// cannot store, a constraint), as opposed to a connection or an unavailable database.
    pub(crate) fn is_bad_data(&self) -> bool {
        self.source
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.as_db_error())
            .is_some_and(|db| {
                let code = db.code().code();
                code.starts_with("22") || code.starts_with("23")
            })
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.doing, self.source)?;
        // tokio-postgres puts the server's message in the source.
        if let Some(db) = self
            .source
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.as_db_error())
        {
            write!(f, " ({})", db.message())?;
        }
        // The causes (a TLS handshake's reason, say), each once.
        let mut shown = self.source.to_string();
        let mut cause = self.source.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            cause = e.source();
        }
        Ok(())
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// A pool of connections to the policy and spend database.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The configuration holds the password: show where, not how.
        f.debug_struct("Database")
            .field("hosts", &self.config.get_hosts().len())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl Database {
    /// A pool of at most `max_connections` connections to `url`. Nothing is connected until
    /// first used.
    ///
    /// # Errors
    ///
    /// When `url` is not a Postgres connection string.
    pub fn connect(url: &str, max_connections: usize) -> Result<Self, DbError> {
        let split = tls::split(url)?;
        let mut config = tokio_postgres::Config::from_str(&split.rest)
            .map_err(|e| DbError::new("reading the database URL", e))?;
        config.ssl_mode(split.mode.ssl_mode());
        let tls = tls::connector(&split)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("mcp-gatekeeper");
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| DbError::new("building the connection pool", e))?;
        Ok(Self { pool, config, tls })
    }

    /// A connection from the pool, for queries of your own (reports on `gk_spend`, changes to
    /// teams and permissions; every change to a policy table notifies the gateways).
    ///
    /// # Errors
    ///
    /// When no connection can be made within the pool's timeouts (5 s).
    pub async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.pool
            .get()
            .await
            .map_err(|e| DbError::new("connecting to the database", e))
    }

    /// A connection of its own, outside the pool (for `LISTEN`), and the task driving it,
    /// which forwards notifications to `notify`.
    pub(crate) async fn dedicated(
        &self,
        notify: tokio::sync::mpsc::UnboundedSender<()>,
    ) -> Result<tokio_postgres::Client, DbError> {
        let (client, mut connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| DbError::new("connecting to the database", e))?;
        tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                        if notify.send(()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            // The connection is gone: dropping `notify` tells the listener.
        });
        Ok(client)
    }

    /// Applies the crate's migrations that the database lacks, in order, in one transaction
    /// under an advisory lock (replicas starting together apply them once).
    ///
    /// # Errors
    ///
    /// When the database cannot be reached, a migration fails (nothing is applied), or the
    /// database has migrations this build does not know (it is newer).
    pub async fn migrate(&self) -> Result<(), DbError> {
        migrate::run(self).await
    }
}
