//! Pins (`gk_tool_pins`) and the audit trail (`gk_audit`) in Postgres.

use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use super::{Database, DbError};
use crate::audit::{AuditEvent, AuditSink, SinkError};
use crate::engine::{PinBook, PinDigest, PinKind, PinParts, PinStore, StoredPin};

/// Pins kept in `gk_tool_pins`, shared by every replica on the database: what one replica
/// learns or approves, the others load when they start.
pub struct PgPins {
    db: Database,
    runtime: tokio::runtime::Handle,
    problem: std::sync::Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for PgPins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPins").finish_non_exhaustive()
    }
}

impl PgPins {
    /// The pin store of `db` (migrated), with the pins it holds. Call it inside a Tokio
    /// runtime: saving spawns onto it.
    ///
    /// # Errors
    ///
    /// The pins cannot be read (nothing is trusted anew over a store that could not be read).
    pub async fn load(db: Database) -> Result<(Self, Vec<StoredPin>), DbError> {
        let pins = read_pins(&db).await?;
        Ok((
            Self {
                db,
                runtime: tokio::runtime::Handle::current(),
                problem: std::sync::Arc::default(),
            },
            pins,
        ))
    }

    /// Every `every`, reads the pins the database holds and hands them to `book`
    /// ([`PinBook::absorb`]): an approval made on another replica, or a row changed by hand,
    /// takes effect here without a restart. Stops when the book is dropped.
    pub fn follow(&self, book: Weak<PinBook>, every: Duration) -> tokio::task::JoinHandle<()> {
        let db = self.db.clone();
        let problem = std::sync::Arc::clone(&self.problem);
        self.runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(book) = book.upgrade() else { return };
                match read_pins(&db).await {
                    Ok(pins) => {
                        book.absorb(pins);
                    }
                    Err(e) => {
                        *problem.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(e.to_string());
                    }
                }
            }
        })
    }
}

async fn read_pins(db: &Database) -> Result<Vec<StoredPin>, DbError> {
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT server, kind, name, digest, parts FROM gk_tool_pins",
            &[],
        )
        .await
        .map_err(|e| DbError::new("reading gk_tool_pins", e))?;
    let mut pins = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.get(1);
        let digest: String = row.get(3);
        let parts: Option<Vec<String>> = row.get(4);
        let (Ok(kind), Ok(digest)) = (kind.parse::<PinKind>(), digest.parse::<PinDigest>()) else {
            continue;
        };
        pins.push(StoredPin {
            kind,
            server: row.get::<_, String>(0).into(),
            name: row.get::<_, String>(2).into(),
            digest,
            parts: parts.and_then(|p| PinParts::from_hex(&p)),
        });
    }
    Ok(pins)
}

async fn upsert(db: &Database, pins: &[StoredPin]) -> Result<(), DbError> {
    let mut client = db.client().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| DbError::new("saving pins", e))?;
    for p in pins {
        let parts: Option<Vec<String>> = p.parts.map(|parts| parts.to_hex());
        tx.execute(
            "INSERT INTO gk_tool_pins (server, kind, name, digest, parts) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (server, kind, name) DO UPDATE \
             SET digest = excluded.digest, parts = excluded.parts, pinned_at = now()",
            &[
                &&*p.server,
                &p.kind.as_str(),
                &&*p.name,
                &p.digest.to_string(),
                &parts,
            ],
        )
        .await
        .map_err(|e| DbError::new("saving pins", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| DbError::new("saving pins", e))
}

impl PinStore for PgPins {
    fn save(&self, pins: Vec<StoredPin>) {
        let db = self.db.clone();
        let problem = std::sync::Arc::clone(&self.problem);
        self.runtime.spawn(async move {
            // A few tries: pins are small and rare, and a lost one is learned again.
            let mut outcome = Ok(());
            for attempt in 0..5u64 {
                outcome = upsert(&db, &pins).await;
                if outcome.is_ok() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
            *problem.lock().unwrap_or_else(PoisonError::into_inner) = outcome.err().map(|e| {
                let message = e.to_string();
                crate::decision_events::warn(&format!("pins not saved: {message}"));
                message
            });
        });
    }

    fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Audit events as rows of `gk_audit` (the event's JSON in `body`, its main fields in columns
/// for queries). Writes on the audit thread, one batch per transaction.
pub struct PgAuditSink {
    db: Database,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for PgAuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAuditSink").finish_non_exhaustive()
    }
}

impl PgAuditSink {
    /// A sink writing to `db` (migrated). Call it inside a Tokio runtime: writes run on it.
    #[must_use]
    pub fn new(db: Database) -> Self {
        Self {
            db,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

async fn insert(db: &Database, events: &[AuditEvent]) -> Result<(), DbError> {
    let mut client = db.client().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| DbError::new("writing gk_audit", e))?;
    let statement = tx
        .prepare(
            "INSERT INTO gk_audit (at, event, outcome, key_id, server, name, body) \
             VALUES (to_timestamp($1::float8 / 1000), $2, $3, $4, $5, $6, $7)",
        )
        .await
        .map_err(|e| DbError::new("writing gk_audit", e))?;
    for e in events {
        #[allow(clippy::cast_precision_loss)]
        let at = e.ts_ms as f64;
        let body = serde_json::to_value(e).expect("an event serialises");
        tx.execute(
            &statement,
            &[
                &at,
                &e.event.as_str(),
                &e.outcome.as_str(),
                &e.key.as_deref(),
                &e.server.as_deref(),
                &e.name.as_deref(),
                &body,
            ],
        )
        .await
        .map_err(|e| DbError::new("writing gk_audit", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| DbError::new("writing gk_audit", e))
}

impl AuditSink for PgAuditSink {
    fn write(&self, events: &[AuditEvent]) -> Result<(), SinkError> {
        // The audit thread is not a runtime thread: it waits here for the runtime to write.
        let db = self.db.clone();
        let events = events.to_vec();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(insert(&db, &events).await);
        });
        match rx.recv() {
            Ok(outcome) => outcome.map_err(Into::into),
            Err(_) => Err("the runtime stopped before the audit batch was written".into()),
        }
    }
}
