//! [`PgSpendSink`]: tool-call events into `gk_spend`, through a local spool.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::spool::{AppendError, Spool};
use super::{Database, DbError};
use crate::cost::{SpendSink, ToolCallEvent};

/// How a [`PgSpendSink`] spools and writes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SpendOptions {
    /// The spool's directory; one per replica, kept across restarts.
    pub spool_dir: PathBuf,
    /// The most uncommitted bytes the spool holds (default 256 MiB, about a million events).
    pub max_spool_bytes: u64,
    /// The most rows in one insert (default 1000).
    pub batch: usize,
}

impl SpendOptions {
    /// Spooling in `spool_dir`, with the default bounds.
    #[must_use]
    pub fn new(spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            spool_dir: spool_dir.into(),
            max_spool_bytes: 256 << 20,
            batch: 1000,
        }
    }
}

/// Counters of a [`PgSpendSink`].
#[derive(Debug, Default)]
pub struct SpendStatus {
    spooled: AtomicU64,
    written: AtomicU64,
    dropped_full: AtomicU64,
    dropped_io: AtomicU64,
    rejected: AtomicU64,
    unreadable: AtomicU64,
    failures: AtomicU64,
    failing_since: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

impl SpendStatus {
    /// Events appended to the spool.
    #[must_use]
    pub fn spooled(&self) -> u64 {
        self.spooled.load(Ordering::Relaxed)
    }

    /// Events confirmed in the database (inserted, or already there from an earlier replay).
    #[must_use]
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Events dropped: the spool was full or could not be written, a line could not be read
    /// back, or the database refused a row's data.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed)
            + self.dropped_io.load(Ordering::Relaxed)
            + self.unreadable.load(Ordering::Relaxed)
            + self.rejected.load(Ordering::Relaxed)
    }

    /// Whether the last write to the database failed.
    #[must_use]
    pub fn is_failing(&self) -> bool {
        self.failing_since.load(Ordering::Relaxed) != 0
    }
}

#[derive(Debug)]
struct SinkState {
    /// Event ids: a random half drawn when the sink starts, and a counter.
    id_high: u64,
    next_id: AtomicU64,
    spool: Spool,
    wake: tokio::sync::Notify,
    status: SpendStatus,
    batch: usize,
}

/// Aborts the writer when the last handle of the sink goes.
#[derive(Debug)]
struct Writer(tokio::task::JoinHandle<()>);

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A [`SpendSink`] that writes to Postgres through a local spool.
///
/// **Guarantee.** [`SpendSink::record`] appends the event, with a fresh `event_id` (64 random
/// bits drawn when the sink starts, and a counter), to the spool
/// file before it returns, and the cost layer records before the caller's answer leaves. So
/// once a caller has its answer, its event is in the spool or already in the database: a
/// replica killed (even with `SIGKILL`) loses nothing, and on restart with the same spool
/// directory it writes what was left. Events are not `fsync`ed one by one: a machine that
/// loses power can lose what the page cache held and the database did not yet have.
///
/// A writer task reads the spool in order and inserts up to [`SpendOptions::batch`] rows per
/// statement (`INSERT … SELECT FROM unnest(…) ON CONFLICT (event_id) DO NOTHING`), so a replay
/// never counts an event twice. While the database is down the spool grows, up to
/// [`SpendOptions::max_spool_bytes`]; past that, events are dropped and counted
/// ([`SpendStatus`]), never silently. The spool *is* the queue: nothing waits in memory.
#[derive(Clone, Debug)]
pub struct PgSpendSink {
    shared: Arc<SinkState>,
    _writer: Arc<Writer>,
}

/// One spool line: the event as the JSONL sink writes it, and its id.
#[derive(Serialize)]
struct Line<'a> {
    event_id: uuid::Uuid,
    #[serde(flatten)]
    event: &'a ToolCallEvent,
}

/// A spool line read back.
#[derive(Deserialize)]
struct Row {
    event_id: uuid::Uuid,
    server: Option<String>,
    tool: String,
    qualified_tool: String,
    argument_keys: Vec<String>,
    key_id: Option<String>,
    key_alias: Option<String>,
    team_id: Option<String>,
    organization_id: Option<String>,
    end_user_id: Option<String>,
    agent_id: Option<String>,
    session_id: Option<String>,
    started_at: u64,
    duration_ms: f64,
    outcome: String,
    error_code: Option<i64>,
    http_status: Option<i32>,
    cost: f64,
}

impl PgSpendSink {
    /// Opens the spool and starts the writer on the current tokio runtime. Events left in the
    /// spool by an earlier run are written first.
    ///
    /// # Errors
    ///
    /// When the spool directory or file cannot be created or read.
    pub fn start(db: Database, options: &SpendOptions) -> std::io::Result<Self> {
        let spool = Spool::open(&options.spool_dir, options.max_spool_bytes)?;
        let shared = Arc::new(SinkState {
            id_high: uuid::Uuid::new_v4().as_u64_pair().0,
            next_id: AtomicU64::new(0),
            spool,
            wake: tokio::sync::Notify::new(),
            status: SpendStatus::default(),
            batch: options.batch.max(1),
        });
        let writer = tokio::spawn(write_loop(db, Arc::clone(&shared)));
        Ok(Self {
            shared,
            _writer: Arc::new(Writer(writer)),
        })
    }

    /// The counters.
    #[must_use]
    pub fn status(&self) -> &SpendStatus {
        &self.shared.status
    }

    /// Bytes in the spool not yet in the database.
    #[must_use]
    pub fn backlog_bytes(&self) -> u64 {
        self.shared.spool.backlog()
    }

    /// Waits until everything spooled is in the database, at most `limit`; returns whether it
    /// is.
    pub async fn flush(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.shared.spool.backlog() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            self.shared.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A JSON summary for `/health`: `state` (`ok`, or `spooling` while the database refuses
    /// writes), the counters, the backlog and the last error.
    #[must_use]
    pub fn report(&self) -> serde_json::Value {
        let s = &self.shared.status;
        let since = s.failing_since.load(Ordering::Relaxed);
        serde_json::json!({
            "state": if since == 0 { "ok" } else { "spooling" },
            "spooled": s.spooled(),
            "written": s.written(),
            "backlog_bytes": self.shared.spool.backlog(),
            "dropped_spool_full": s.dropped_full.load(Ordering::Relaxed),
            "dropped_spool_error": s.dropped_io.load(Ordering::Relaxed),
            "unreadable_lines": s.unreadable.load(Ordering::Relaxed),
            "rejected_rows": s.rejected.load(Ordering::Relaxed),
            "failures": s.failures.load(Ordering::Relaxed),
            "failing_since": (since != 0).then_some(since),
            "last_error": s.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }
}

impl crate::source::HealthReport for PgSpendSink {
    fn state(&self) -> crate::source::HealthState {
        let s = &self.shared.status;
        if s.is_failing() || s.dropped() > 0 {
            crate::source::HealthState::Degraded
        } else {
            crate::source::HealthState::Ok
        }
    }
    fn report(&self) -> serde_json::Value {
        PgSpendSink::report(self)
    }
}

impl SpendSink for PgSpendSink {
    fn record(&self, event: ToolCallEvent) {
        // Unique without a system call per event: the random half tells sinks (replicas,
        // restarts) apart, the counter events within one.
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let line = Line {
            event_id: uuid::Uuid::from_u64_pair(self.shared.id_high, n),
            event: &event,
        };
        let Ok(mut bytes) = serde_json::to_vec(&line) else {
            return;
        };
        bytes.push(b'\n');
        let status = &self.shared.status;
        match self.shared.spool.append(&bytes) {
            Ok(()) => {
                status.spooled.fetch_add(1, Ordering::Relaxed);
                self.shared.wake.notify_one();
            }
            Err(AppendError::Full) => {
                if status.dropped_full.fetch_add(1, Ordering::Relaxed) == 0 {
                    crate::decision_events::warn(
                        "spend: the spool is full; events are dropped (and counted) until the \
                         database takes them",
                    );
                }
            }
            Err(AppendError::Io(e)) => {
                status.dropped_io.fetch_add(1, Ordering::Relaxed);
                crate::decision_events::warn(&format!("spend: the spool cannot be written: {e}"));
            }
        }
    }
}

const INSERT: &str = "INSERT INTO gk_spend (event_id, server, tool, qualified_tool, \
     argument_keys, key_id, key_alias, team_id, organization_id, end_user_id, agent_id, \
     session_id, started_at, duration_ms, outcome, error_code, http_status, cost) \
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], \
     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
     $13::timestamptz[], $14::float8[], $15::text[], $16::int8[], $17::int4[], $18::float8[]) \
     ON CONFLICT (event_id) DO NOTHING";

/// Text as Postgres takes it: a NUL (which `text` and `jsonb` cannot hold, and which a caller
/// can put in an argument name) becomes U+FFFD.
fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}").into()
    } else {
        text.into()
    }
}

/// The latest `started_at` a row may have: the end of year 9999, in milliseconds.
const LATEST_MS: u64 = 253_402_300_799_999;

async fn insert(db: &Database, rows: &[Row]) -> Result<(), DbError> {
    let client = db.client().await?;
    let statement = client
        .prepare_cached(INSERT)
        .await
        .map_err(|e| DbError::new("preparing the spend insert", e))?;
    macro_rules! column {
        ($f:expr) => {
            rows.iter().map($f).collect::<Vec<_>>()
        };
    }
    let ids = column!(|r| r.event_id);
    let server = column!(|r| r.server.as_deref().map(clean));
    let tool = column!(|r| clean(&r.tool));
    let qualified = column!(|r| clean(&r.qualified_tool));
    let args = column!(|r| {
        serde_json::Value::Array(
            r.argument_keys
                .iter()
                .map(|k| serde_json::Value::String(clean(k).into_owned()))
                .collect(),
        )
    });
    let key_id = column!(|r| r.key_id.as_deref().map(clean));
    let key_alias = column!(|r| r.key_alias.as_deref().map(clean));
    let team = column!(|r| r.team_id.as_deref().map(clean));
    let org = column!(|r| r.organization_id.as_deref().map(clean));
    let user = column!(|r| r.end_user_id.as_deref().map(clean));
    let agent = column!(|r| r.agent_id.as_deref().map(clean));
    let session = column!(|r| r.session_id.as_deref().map(clean));
    let started = column!(|r| UNIX_EPOCH + Duration::from_millis(r.started_at));
    let duration = column!(|r| r.duration_ms);
    let outcome = column!(|r| clean(&r.outcome));
    let code = column!(|r| r.error_code);
    let status = column!(|r| r.http_status);
    let cost = column!(|r| r.cost);
    client
        .execute(
            &statement,
            &[
                &ids, &server, &tool, &qualified, &args, &key_id, &key_alias, &team, &org, &user,
                &agent, &session, &started, &duration, &outcome, &code, &status, &cost,
            ],
        )
        .await
        .map_err(|e| DbError::new("writing spend", e))?;
    Ok(())
}

/// Inserts `rows` one at a time, counting (and dropping) those the database refuses; how many
/// it refused.
async fn one_by_one(db: &Database, rows: &[Row], status: &SpendStatus) -> Result<u64, DbError> {
    let mut refused = 0;
    for row in rows {
        match insert(db, std::slice::from_ref(row)).await {
            Ok(()) => {}
            Err(e) if e.is_bad_data() => {
                refused += 1;
                status.rejected.fetch_add(1, Ordering::Relaxed);
                crate::decision_events::warn(&format!(
                    "spend: the database refused an event ({e}); dropped"
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(refused)
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().max(1))
}

async fn write_loop(db: Database, shared: Arc<SinkState>) {
    let status = &shared.status;
    let mut backoff = Duration::from_millis(100);
    // Lines read but not yet written, and the offset after them.
    let mut pending: Vec<Row> = Vec::new();
    let mut pending_until = None;
    loop {
        if pending_until.is_none() {
            match shared.spool.read() {
                Ok((lines, until)) if !lines.is_empty() => {
                    for line in &lines {
                        match serde_json::from_slice::<Row>(line) {
                            Ok(row) if row.started_at <= LATEST_MS => pending.push(row),
                            _ => {
                                if status.unreadable.fetch_add(1, Ordering::Relaxed) == 0 {
                                    crate::decision_events::warn(
                                        "spend: a spool line cannot be read back; it is skipped \
                                         (and counted)",
                                    );
                                }
                            }
                        }
                    }
                    pending_until = Some(until);
                }
                Ok(_) => {
                    // Nothing to write: wait for an event (or look again shortly).
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), shared.wake.notified()).await;
                    continue;
                }
                Err(e) => {
                    crate::decision_events::warn(&format!("spend: the spool cannot be read: {e}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let mut failed = None;
        let mut refused = 0;
        for chunk in pending.chunks(shared.batch) {
            match insert(&db, chunk).await {
                Ok(()) => {}
                // The database refuses some row's data: row by row, so one bad row never
                // holds the others back.
                Err(e) if e.is_bad_data() => match one_by_one(&db, chunk, status).await {
                    Ok(n) => refused += n,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                },
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => {
                status
                    .written
                    .fetch_add(pending.len() as u64 - refused, Ordering::Relaxed);
                pending.clear();
                if let Some(until) = pending_until.take()
                    && let Err(e) = shared.spool.commit(until)
                {
                    crate::decision_events::warn(&format!(
                        "spend: the spool offset cannot be saved: {e}"
                    ));
                }
                if status.failing_since.swap(0, Ordering::Relaxed) != 0 {
                    crate::decision_events::warn(
                        "spend: the database takes writes again; the spool drains",
                    );
                }
                backoff = Duration::from_millis(100);
            }
            Some(e) => {
                // Rows of this read that went in are written again on retry: the id keeps
                // them single.
                status.failures.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = status.last_error.lock() {
                    *last = Some(e.to_string());
                }
                if status
                    .failing_since
                    .compare_exchange(0, now_seconds(), Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    crate::decision_events::warn(&format!(
                        "spend: cannot write to the database ({e}); events are spooled"
                    ));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
