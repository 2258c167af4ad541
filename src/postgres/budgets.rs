//! [`PersistedBudgets`]: budgets that a restart does not reset.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Database;
use crate::counters::{
    Admitting, BudgetSeed, CounterKind, CounterOp, LimitStore, StoreError, StoreFuture, Taken,
    period_start,
};
use crate::engine::{Level, Nanos};

/// A [`LimitStore`] whose budgets start from the spend recorded in Postgres.
///
/// The spend of every call is kept in `gk_spend` (see [`PgSpendSink`](super::PgSpendSink)).
/// Before a budget is first checked in a period, this store reads what its level spent in that
/// period from there (`sum(cost)` since the period began, by the key's alias or short id, the
/// team, organisation, end user or agent id) and seeds the store it wraps with it; a store that
/// already counts the period (a Redis shared by replicas that stayed up) keeps its own count.
/// A read that fails fails the admission, which the limit layer then denies or allows as
/// `on_limit_store_error` says: a budget is never checked against a count that forgot the past.
pub struct PersistedBudgets {
    inner: Arc<dyn LimitStore>,
    db: Database,
    /// Budgets seeded in this process, with the start of the period they were seeded for.
    seeded: Arc<Mutex<HashMap<Arc<str>, Duration>>>,
    /// Why the last read of past spend failed, until one succeeds.
    failing: Arc<Mutex<Option<String>>>,
}

impl fmt::Debug for PersistedBudgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistedBudgets").finish_non_exhaustive()
    }
}

impl PersistedBudgets {
    /// Wraps `store`, reading past spend from `db`'s `gk_spend`.
    #[must_use]
    pub fn new(store: impl LimitStore, db: Database) -> Self {
        Self {
            inner: Arc::new(store),
            db,
            seeded: Arc::default(),
            failing: Arc::default(),
        }
    }
}

/// The `gk_spend` column a level's id is recorded in.
fn column(level: Level) -> &'static str {
    match level {
        Level::Key => "key_id",
        Level::Team => "team_id",
        Level::Organization => "organization_id",
        Level::EndUser => "end_user_id",
        Level::Agent => "agent_id",
    }
}

/// A budget to seed: its counter, period, level, ledger id, and the start of its period.
struct Unseeded {
    name: Arc<str>,
    period: Option<Duration>,
    level: Level,
    id: Arc<str>,
    start: Duration,
}

async fn read_spend(db: &Database, todo: &[Unseeded]) -> Result<Vec<BudgetSeed>, StoreError> {
    let client = db.client().await.map_err(|e| StoreError(e.to_string()))?;
    let mut seeds = Vec::with_capacity(todo.len());
    for u in todo {
        let sql = format!(
            "SELECT coalesce(sum(cost), 0)::float8 FROM gk_spend WHERE {} = $1 AND started_at >= $2",
            column(u.level)
        );
        let since = UNIX_EPOCH + u.start;
        let row = client
            .query_one(&sql, &[&&*u.id, &since])
            .await
            .map_err(|e| StoreError(format!("reading past spend: {e}")))?;
        seeds.push(BudgetSeed {
            name: Arc::clone(&u.name),
            period: u.period,
            spent: Nanos::from_dollars(row.get::<_, f64>(0)),
        });
    }
    Ok(seeds)
}

impl LimitStore for PersistedBudgets {
    fn admit(&self, counters: &[CounterOp]) -> Admitting {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let todo: Vec<_> = {
            let seeded = self
                .seeded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            counters
                .iter()
                .filter_map(|c| match (c.kind, &c.ledger) {
                    (CounterKind::Budget { period, .. }, Some((level, id))) => {
                        // The epoch for a budget that never starts again.
                        let start = period.map_or(Duration::ZERO, |p| period_start(now, p));
                        (seeded.get(&c.name) != Some(&start)).then(|| Unseeded {
                            name: Arc::clone(&c.name),
                            period,
                            level: *level,
                            id: Arc::clone(id),
                            start,
                        })
                    }
                    _ => None,
                })
                .collect()
        };
        if todo.is_empty() {
            return self.inner.admit(counters);
        }
        let (inner, db, seeded) = (
            Arc::clone(&self.inner),
            self.db.clone(),
            Arc::clone(&self.seeded),
        );
        let failing = Arc::clone(&self.failing);
        let counters = counters.to_vec();
        Admitting::Later(Box::pin(async move {
            let read = read_spend(&db, &todo).await;
            *failing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                read.as_ref().err().map(ToString::to_string);
            let seeds = read?;
            inner.seed(seeds).await?;
            {
                let mut seeded = seeded
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for u in todo {
                    seeded.insert(u.name, u.start);
                }
            }
            inner.admit(&counters).await
        }))
    }

    fn finish(&self, taken: Taken, spent: Option<Nanos>) {
        self.inner.finish(taken, spent);
    }

    fn problem(&self) -> Option<String> {
        let failing = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        failing.or_else(|| self.inner.problem())
    }

    fn seed(&self, seeds: Vec<BudgetSeed>) -> StoreFuture<()> {
        self.inner.seed(seeds)
    }
}
