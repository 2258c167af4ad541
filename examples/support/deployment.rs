//! How the example gateway gets its policy and where its spend goes: the configuration file
//! (loaded again when it changes or on SIGHUP), Postgres (`general_settings.database_url`, with
//! the `postgres` feature), or a LiteLLM proxy's database (`database_schema: litellm`, with the
//! `litellm-db` feature); spend to a JSONL file or Postgres (`general_settings.spend_sink`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::{Config, LimitStoreSettings, SpendSinkConfig};
use mcp_gatekeeper::cost::{JsonlSink, SpendSink};
use mcp_gatekeeper::counters::{InProcessStore, LimitStore};
use mcp_gatekeeper::limit::LimitLayer;
use mcp_gatekeeper::source::{self, ConfigFile, HealthReport, PolicyWatch, WatchOptions};

#[path = "trail.rs"]
mod trail;

/// What the gateway is built with, and what must live as long as it.
pub(crate) struct Deployment {
    pub(crate) gatekeeper: Gatekeeper,
    pub(crate) spend: Option<Arc<dyn SpendSink>>,
    pub(crate) reports: Vec<(String, Arc<dyn HealthReport>)>,
    pub(crate) session_secret: Option<Vec<u8>>,
    /// Limits and budgets, counted where `general_settings.limit_store` says.
    pub(crate) limit: LimitLayer,
    /// The configuration with the servers a LiteLLM database registers, when it is the source.
    pub(crate) served: Option<Config>,
    pub(crate) _watch: Option<PolicyWatch>,
}

/// A shared sink as the layer takes it.
pub(crate) struct SharedSink(pub(crate) Arc<dyn SpendSink>);

impl SpendSink for SharedSink {
    fn record(&self, event: mcp_gatekeeper::cost::ToolCallEvent) {
        self.0.record(event);
    }
}

/// Sets up the policy source and the spend sink of `config` (read from `path`, if any).
pub(crate) async fn setup(config: &Config, path: Option<&Path>) -> Result<Deployment, String> {
    let settings = config
        .general_settings
        .deployment()
        .map_err(|e| e.to_string())?;
    let options = WatchOptions {
        resync: Duration::from_secs(settings.policy_resync_seconds),
        ..WatchOptions::default()
    };
    let mut reports: Vec<(String, Arc<dyn HealthReport>)> = Vec::new();
    let mut spend: Option<Arc<dyn SpendSink>> = None;
    #[cfg_attr(not(feature = "litellm-db"), allow(unused_mut))]
    let mut served = None;
    // The database spend goes to, which budgets then start from after a restart.
    #[cfg_attr(not(feature = "postgres"), allow(unused_mut))]
    let mut spend_db: SpendDb = None;
    let litellm = settings.database_schema == mcp_gatekeeper::config::DatabaseSchema::Litellm;
    let pins = trail::pins(&settings, path).await?;
    let audit = trail::auditor(&settings)?;
    let made = |policy| {
        Gatekeeper::new(policy)
            .with_pins(Arc::clone(&pins))
            .with_audit(audit.clone())
    };
    let (gatekeeper, watch) = match (&settings.database_url, path) {
        (Some(url), _) if litellm => {
            #[cfg(feature = "litellm-db")]
            {
                use mcp_gatekeeper::PolicySnapshot;
                use mcp_gatekeeper::litellm_db::LiteLlmSource;
                use mcp_gatekeeper::postgres::Database;
                let db = Database::connect(url, 8).map_err(|e| e.to_string())?;
                // The servers are registered in the database: serve once it has answered.
                let source = loop {
                    match LiteLlmSource::connect(db.clone(), config).await {
                        Ok(source) => break source,
                        Err(e) => {
                            eprintln!("gateway: LiteLLM database: {e}; trying again in 2 s");
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    }
                };
                for problem in source.problems() {
                    eprintln!("gateway: LiteLLM database: {problem}");
                }
                let with_servers = source.config().clone();
                let catalog = with_servers.catalog().map_err(|e| e.to_string())?;
                let gatekeeper = made(PolicySnapshot::pending(Arc::new(catalog)));
                served = Some(with_servers);
                let watch = source::watch(gatekeeper.clone(), Arc::new(source), options);
                (gatekeeper, Some(watch))
            }
            #[cfg(not(feature = "litellm-db"))]
            {
                let _ = url;
                return Err(
                    "general_settings.database_schema: litellm needs the `litellm-db` feature: \
                     cargo run --features gateway,litellm-db --example gateway"
                        .into(),
                );
            }
        }
        (Some(url), _) => {
            #[cfg(feature = "postgres")]
            {
                use mcp_gatekeeper::PolicySnapshot;
                use mcp_gatekeeper::postgres::{
                    Database, PgPolicySource, PgSpendSink, SpendOptions,
                };
                let db = Database::connect(url, 16).map_err(|e| e.to_string())?;
                let catalog = config.catalog().map_err(|e| e.to_string())?;
                // Until the database answers, every request is refused (503).
                let gatekeeper = made(PolicySnapshot::pending(Arc::new(catalog)));
                let source = PgPolicySource::new(db.clone(), Arc::new(config.clone())).migrating();
                let watch = source::watch(gatekeeper.clone(), Arc::new(source), options);
                if let Some(SpendSinkConfig::Postgres {
                    spool_dir,
                    max_spool_mb,
                }) = &settings.spend_sink
                {
                    let mut options = SpendOptions::new(resolve(spool_dir)?);
                    if let Some(mb) = max_spool_mb {
                        options.max_spool_bytes = mb << 20;
                    }
                    spend_db = Some(db.clone());
                    let sink = PgSpendSink::start(db, &options)
                        .map_err(|e| format!("spend spool {spool_dir}: {e}"))?;
                    reports.push(("spend".into(), Arc::new(sink.clone())));
                    spend = Some(Arc::new(sink));
                }
                (gatekeeper, Some(watch))
            }
            #[cfg(not(feature = "postgres"))]
            {
                let _ = url;
                return Err(
                    "general_settings.database_url needs the `postgres` feature: \
                            cargo run --features gateway,postgres --example gateway"
                        .into(),
                );
            }
        }
        (None, Some(path)) => {
            let gatekeeper = made(config.policy().map_err(|e| e.to_string())?);
            let file = Arc::new(ConfigFile::new(path));
            reload_on_hangup(Arc::clone(&file));
            let watch = source::watch(gatekeeper.clone(), file, options);
            (gatekeeper, Some(watch))
        }
        (None, None) => (made(config.policy().map_err(|e| e.to_string())?), None),
    };
    if let Some(watch) = &watch {
        reports.push(("policy".into(), watch.status().clone()));
    }
    if let Some(SpendSinkConfig::Jsonl { path }) = &settings.spend_sink {
        let path = resolve(path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open the spend log {path}: {e}"))?;
        spend = Some(Arc::new(JsonlSink::new(file)));
    }
    let limit = limit_layer(&gatekeeper, &settings, spend_db)?;
    reports.push(("limits".into(), Arc::new(limit.clone())));
    log_changes(reports.clone());
    Ok(Deployment {
        gatekeeper,
        spend,
        reports,
        session_secret: settings.session_secret,
        limit,
        served,
        _watch: watch,
    })
}

/// The database spend goes to, when it is Postgres.
#[cfg(feature = "postgres")]
type SpendDb = Option<mcp_gatekeeper::postgres::Database>;
#[cfg(not(feature = "postgres"))]
type SpendDb = Option<std::convert::Infallible>;

/// The limit layer, counting in this process or in Redis; with spend in Postgres, budgets start
/// from what was spent before a restart.
fn limit_layer(
    gatekeeper: &Gatekeeper,
    settings: &mcp_gatekeeper::config::Deployment,
    spend_db: SpendDb,
) -> Result<LimitLayer, String> {
    let layer = LimitLayer::new(gatekeeper.clone()).on_store_error(settings.on_limit_store_error);
    let store: Arc<dyn LimitStore> = match &settings.limit_store {
        LimitStoreSettings::Redis {
            url,
            key_prefix,
            timeout,
        } => {
            #[cfg(feature = "redis")]
            {
                let store = mcp_gatekeeper::redis_limits::RedisLimits::new(url)
                    .map_err(|e| format!("general_settings.limit_store: {e}"))?
                    .prefix(key_prefix)
                    .timeout(*timeout);
                Arc::new(store)
            }
            #[cfg(not(feature = "redis"))]
            {
                let _ = (url, key_prefix, timeout);
                return Err(
                    "general_settings.limit_store: redis needs the `redis` feature: \
                     cargo run --features gateway,redis --example gateway"
                        .into(),
                );
            }
        }
        _ => Arc::new(InProcessStore::new()),
    };
    #[cfg(feature = "postgres")]
    if let Some(db) = spend_db {
        let persisted = mcp_gatekeeper::postgres::PersistedBudgets::new(store, db);
        return Ok(layer.store(persisted));
    }
    #[cfg(not(feature = "postgres"))]
    let _ = spend_db;
    Ok(layer.store(store))
}

fn resolve(value: &str) -> Result<String, String> {
    match value.strip_prefix("os.environ/") {
        Some(name) => std::env::var(name).map_err(|_| format!("{name} is not set")),
        None => Ok(value.to_owned()),
    }
}

#[cfg(unix)]
fn reload_on_hangup(file: Arc<ConfigFile>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            eprintln!("gateway: SIGHUP: loading the configuration again");
            file.reload_now();
        }
    });
}

#[cfg(not(unix))]
fn reload_on_hangup(_: Arc<ConfigFile>) {}

/// Prints each change of state of the policy source and the spend sink (this example has no
/// `tracing` subscriber).
fn log_changes(reports: Vec<(String, Arc<dyn HealthReport>)>) {
    if reports.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut last = vec![None; reports.len()];
        loop {
            for ((name, part), last) in reports.iter().zip(last.iter_mut()) {
                let now = part.state();
                if *last != Some(now) {
                    let report = part.report();
                    let error = report["last_error"].as_str().unwrap_or("");
                    eprintln!("gateway: {name}: {} {error}", now.as_str());
                }
                *last = Some(now);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}
