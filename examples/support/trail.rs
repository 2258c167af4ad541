//! Where the example gateway keeps tool pins and sends audit events: `general_settings.pin_store`
//! (by default a file next to the configuration, or Postgres when the database holds
//! mcp-gatekeeper's tables) and `general_settings.audit.sinks`.

use std::path::Path;
use std::sync::Arc;

use mcp_gatekeeper::audit::{AuditSink, Auditor, JsonlSink};
use mcp_gatekeeper::config::{AuditSinkConfig, DatabaseSchema, Deployment, PinStoreConfig};
use mcp_gatekeeper::engine::{PinBook, PinStore};
use mcp_gatekeeper::pin_file::PinFile;

/// How often a pin store is read again for approvals made elsewhere (another replica, an edit).
const FOLLOW: std::time::Duration = std::time::Duration::from_secs(2);

/// The pin book, loaded from its store and following it.
pub(crate) async fn pins(
    settings: &Deployment,
    config: Option<&Path>,
) -> Result<Arc<PinBook>, String> {
    let own_database =
        settings.database_url.is_some() && settings.database_schema == DatabaseSchema::Gatekeeper;
    let chosen = match (&settings.pin_store, config) {
        (Some(c), _) => c.clone(),
        (None, _) if own_database => PinStoreConfig::Postgres,
        (None, Some(path)) => {
            let mut file = path.as_os_str().to_owned();
            file.push(".pins.json");
            PinStoreConfig::File {
                path: file.to_string_lossy().into_owned(),
            }
        }
        (None, None) => PinStoreConfig::Memory,
    };
    match chosen {
        PinStoreConfig::Memory => Ok(Arc::default()),
        PinStoreConfig::File { path } => {
            let (file, pins) = PinFile::open(super::resolve(&path)?).map_err(|e| e.to_string())?;
            let file = Arc::new(file);
            let store: Arc<dyn PinStore> = file.clone();
            let book = Arc::new(PinBook::new(pins, Some(store)));
            let weak = Arc::downgrade(&book);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(FOLLOW).await;
                    let Some(book) = weak.upgrade() else { return };
                    match file.reread() {
                        Ok(Some(pins)) => {
                            let changed = book.absorb(pins);
                            eprintln!("gateway: pin file changed: {changed} pin(s) taken in");
                        }
                        Ok(None) => {}
                        Err(e) => eprintln!("gateway: {e}; the pins held so far stay"),
                    }
                }
            });
            Ok(book)
        }
        PinStoreConfig::Postgres => {
            #[cfg(feature = "postgres")]
            {
                use mcp_gatekeeper::postgres::{Database, PgPins};
                let url = settings.database_url.as_deref().unwrap_or_default();
                let db = Database::connect(url, 2).map_err(|e| e.to_string())?;
                // Pins are read before anything is served: nothing is trusted anew.
                loop {
                    let loaded = match db.migrate().await {
                        Ok(()) => PgPins::load(db.clone()).await,
                        Err(e) => Err(e),
                    };
                    match loaded {
                        Ok((store, pins)) => {
                            let store = Arc::new(store);
                            let book = Arc::new(PinBook::new(pins, Some(store.clone())));
                            store.follow(Arc::downgrade(&book), FOLLOW);
                            return Ok(book);
                        }
                        Err(e) => {
                            eprintln!("gateway: pins: {e}; trying again in 2 s");
                            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                        }
                    }
                }
            }
            #[cfg(not(feature = "postgres"))]
            Err("general_settings.pin_store: postgres needs the `postgres` feature".into())
        }
    }
}

/// The audit trail of `general_settings.audit`.
pub(crate) fn auditor(settings: &Deployment) -> Result<Auditor, String> {
    let mut sinks: Vec<Arc<dyn AuditSink>> = Vec::new();
    for sink in &settings.audit.sinks {
        match sink {
            AuditSinkConfig::Jsonl { path } => {
                let path = super::resolve(path)?;
                let sink = JsonlSink::open(&path)
                    .map_err(|e| format!("cannot open the audit log {path}: {e}"))?;
                sinks.push(Arc::new(sink));
            }
            AuditSinkConfig::Postgres => {
                #[cfg(feature = "postgres")]
                {
                    use mcp_gatekeeper::postgres::{Database, PgAuditSink};
                    let url = settings.database_url.as_deref().unwrap_or_default();
                    let db = Database::connect(url, 2).map_err(|e| e.to_string())?;
                    sinks.push(Arc::new(PgAuditSink::new(db)));
                }
                #[cfg(not(feature = "postgres"))]
                return Err(
                    "general_settings.audit: a postgres sink needs the `postgres` feature".into(),
                );
            }
        }
    }
    Ok(Auditor::new(sinks, settings.audit.queue_capacity))
}
