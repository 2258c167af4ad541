//! [`RedisLimits`]: limit counters in Redis, shared by every replica that uses the same server.
//!
//! Each [`LimitStore`] operation is one Lua script, so Redis runs it atomically: an admission
//! checks every counter of a call and takes from all of them or none, and a hand-back frees
//! slots and settles or releases reservations in one step. Time is Redis's own (`TIME`), so
//! replicas with skewed clocks still share one window. Rate counters expire with their window,
//! budget hashes with their period; a parallel slot of a replica that died is freed after an
//! hour at the latest. Every key starts with `{<prefix>}:` (default `{mcp-gatekeeper}`), one
//! hash tag, so on a Redis cluster a script's keys share one slot.
//!
//! When Redis cannot be reached, an admission answers with a [`StoreError`] (the layer then
//! denies or allows, as configured) and [`LimitStore::problem`] says so until an operation
//! succeeds again; hand-backs are retried in the background until Redis answers, so a slot or
//! reservation taken before an outage is given back after it.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};

use crate::counters::{
    Admission, Admitting, BudgetSeed, CounterKind, CounterOp, LimitStore, StoreError, StoreFuture,
    Taken,
};
use crate::engine::Nanos;

/// How long a parallel slot outlives the replica that took it, at most.
const SLOT_TTL_MS: u64 = 3_600_000;
/// How long a budget hash outlives its period (reservations still in flight settle into it).
const BUDGET_GRACE_MS: u64 = 3_600_000;

/// `KEYS`: the counters, then this admission's mark and its tombstone. `ARGV`: four numbers
/// per counter, kind (1 rate, 2 parallel, 3 budget) and its parameters, then whether the
/// admission holds anything to hand back (`1`: then the mark is set), then the grace period of
/// budget hashes. Returns `{0, 0}` when admitted, else `{index,
/// retry_ms}` of the first counter that refuses (`retry_ms` -1 when unknown), or `{-1, -1}`
/// when the admission was cancelled before it ran; nothing is changed unless admitted.
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = #KEYS - 2
if redis.call('EXISTS', KEYS[n + 2]) == 1 then return {-1, -1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(v) return string.format('%d', v) end
local function budget(k, period)
  local h = redis.call('HMGET', k, 'start', 'spent', 'reserved')
  local start, spent, reserved = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
  local current = 0
  if period > 0 then current = now - (now % period) end
  if start ~= current then start, spent = current, 0 end
  return start, spent, reserved
end
for i = 1, n do
  local k, b = KEYS[i], (i - 1) * 4
  local kind, a, p, amount = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  if kind == 1 or kind == 2 then
    local used = tonumber(redis.call('GET', k) or '0')
    if used >= a then
      if kind == 1 then return {i, redis.call('PTTL', k)} end
      return {i, -1}
    end
  else
    local start, spent, reserved = budget(k, p)
    local used = spent + reserved
    if used + amount > a or (a > 0 and used >= a) then
      if p > 0 then return {i, start + p - now} end
      return {i, -1}
    end
  end
end
for i = 1, n do
  local k, b = KEYS[i], (i - 1) * 4
  local kind, p, amount = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  if kind == 1 then
    if redis.call('INCR', k) == 1 then redis.call('PEXPIRE', k, p) end
  elseif kind == 2 then
    redis.call('INCR', k)
    redis.call('PEXPIRE', k, p)
  else
    local start, spent, reserved = budget(k, p)
    redis.call('HSET', k, 'start', int(start), 'spent', int(spent), 'reserved', int(reserved + amount))
    if p > 0 then redis.call('PEXPIRE', k, start + p - now + tonumber(ARGV[#ARGV])) else redis.call('PERSIST', k) end
  end
end
if ARGV[#ARGV - 1] == '1' then redis.call('SET', KEYS[n + 1], '1', 'PX', tonumber(ARGV[#ARGV])) end
return {0, 0}
",
    )
});

/// Undoes an admission whose answer was lost (a timeout, a dropped connection): same `KEYS`
/// and `ARGV` as [`ADMIT`]. If the admission ran (its mark is there) everything it took is
/// given back; if not, its tombstone keeps it from ever running.
static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = #KEYS - 2
local grace = tonumber(ARGV[#ARGV])
if redis.call('EXISTS', KEYS[n + 1]) == 0 then
  redis.call('SET', KEYS[n + 2], '1', 'PX', grace)
  return 0
end
redis.call('DEL', KEYS[n + 1])
for i = 1, n do
  local k, b = KEYS[i], (i - 1) * 4
  local kind, amount = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 4])
  if kind == 1 then
    if tonumber(redis.call('GET', k) or '0') > 0 then redis.call('DECR', k) end
  elseif kind == 2 then
    if redis.call('DECR', k) <= 0 then redis.call('DEL', k) end
  else
    local r = tonumber(redis.call('HGET', k, 'reserved') or '0') - amount
    if r < 0 then r = 0 end
    if redis.call('EXISTS', k) == 1 then redis.call('HSET', k, 'reserved', string.format('%d', r)) end
  end
end
return 1
",
    )
});

/// `KEYS`: the parallel counters, then the budgets, then the admission's mark (removed).
/// `ARGV[1]`: how many parallel counters;
/// then three numbers per budget: the amount reserved, the cost to settle (-1: release), the
/// period in ms (0: none); last, the grace period of budget hashes.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(v) return string.format('%d', v) end
local slots = tonumber(ARGV[1])
redis.call('DEL', KEYS[#KEYS])
for i = 1, slots do
  if redis.call('DECR', KEYS[i]) <= 0 then redis.call('DEL', KEYS[i]) end
end
for i = slots + 1, #KEYS - 1 do
  local k, b = KEYS[i], 2 + (i - slots - 1) * 3
  local amount, cost, p = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local h = redis.call('HMGET', k, 'start', 'spent', 'reserved')
  local start, spent, reserved = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
  local current = 0
  if p > 0 then current = now - (now % p) end
  if start ~= current then start, spent = current, 0 end
  reserved = reserved - amount
  if reserved < 0 then reserved = 0 end
  if cost >= 0 then spent = spent + cost end
  if spent > 0 or reserved > 0 then
    redis.call('HSET', k, 'start', int(start), 'spent', int(spent), 'reserved', int(reserved))
    if p > 0 then redis.call('PEXPIRE', k, start + p - now + tonumber(ARGV[#ARGV])) end
  else
    redis.call('DEL', k)
  end
end
return 1
",
    )
});

/// `KEYS`: budgets. `ARGV`: per budget its period in ms (0: none) and what was spent, then the
/// grace period. A budget whose hash already counts the current period is left alone.
static SEED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  local k, p, spent = KEYS[i], tonumber(ARGV[2 * i - 1]), ARGV[2 * i]
  local current = 0
  if p > 0 then current = now - (now % p) end
  if tonumber(redis.call('HGET', k, 'start')) ~= current then
    redis.call('HSET', k, 'start', string.format('%d', current), 'spent', spent)
    if redis.call('HEXISTS', k, 'reserved') == 0 then redis.call('HSET', k, 'reserved', '0') end
    if p > 0 then redis.call('PEXPIRE', k, current + p - now + tonumber(ARGV[#ARGV])) end
  end
end
return 1
",
    )
});

struct Inner {
    client: Client,
    prefix: String,
    timeout: Duration,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// After a failed connection, no new attempt before this instant.
    quiet_until: Mutex<Option<Instant>>,
    problem: Mutex<Option<String>>,
    /// Hand-backs given up on (Redis unreachable for longer than the retries last).
    abandoned: AtomicU64,
    /// Admission tokens: random per process, never repeated.
    tokens: std::collections::hash_map::RandomState,
    next: AtomicU64,
}

/// Limit counters in Redis. See the [module docs](self).
#[derive(Clone)]
pub struct RedisLimits {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("RedisLimits")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLimits {
    /// A store on the Redis server at `url` (`redis://[:password@]host:port[/db]`, or
    /// `rediss://` for TLS when the `redis` crate is built with it). Connects on first use and
    /// again after every failure, so it can be created while Redis is down.
    ///
    /// # Errors
    ///
    /// The URL cannot be read (the error never repeats it).
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url)
            .map_err(|e| StoreError(format!("the Redis URL is not valid ({:?})", e.kind())))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                prefix: "mcp-gatekeeper".into(),
                timeout: Duration::from_secs(1),
                connection: tokio::sync::Mutex::new(None),
                quiet_until: Mutex::new(None),
                problem: Mutex::new(None),
                abandoned: AtomicU64::new(0),
                tokens: std::collections::hash_map::RandomState::new(),
                next: AtomicU64::new(0),
            }),
        })
    }

    /// Starts every key with `{prefix}:` instead of `{mcp-gatekeeper}:` (stores that share a
    /// Redis server but not their limits).
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.prefix = prefix.to_owned();
        }
        self
    }

    /// How long one operation (and one connection attempt) may take before it counts as a
    /// failure (default 1 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.timeout = timeout;
        }
        self
    }

    /// Hand-backs given up on because Redis stayed unreachable for longer than they are retried
    /// (ten minutes); their slots and reservations expire with their keys.
    #[must_use]
    pub fn abandoned(&self) -> u64 {
        self.inner.abandoned.load(Ordering::Relaxed)
    }

    fn key(&self, name: &str) -> String {
        format!("{{{}}}:{name}", self.inner.prefix)
    }

    /// Runs `attempt` until it succeeds, backing off up to 5 s between tries, for at most ten
    /// minutes (then the keys' own expiry frees what it would have).
    fn retry_in_background<F, Fut>(&self, attempt: F)
    where
        F: Fn(RedisLimits) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), StoreError>> + Send,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.abandoned.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let store = self.clone();
        runtime.spawn(async move {
            let mut wait = Duration::from_millis(100);
            let give_up = Instant::now() + Duration::from_secs(600);
            while attempt(store.clone()).await.is_err() {
                if Instant::now() >= give_up {
                    store.inner.abandoned.fetch_add(1, Ordering::Relaxed);
                    crate::decision_events::warn(
                        "a limit hand-back to Redis was given up after ten minutes",
                    );
                    return;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        });
    }
}

impl Inner {
    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut held = self.connection.lock().await;
        if let Some(c) = &*held {
            return Ok(c.clone());
        }
        let quiet = *self
            .quiet_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if quiet.is_some_and(|until| Instant::now() < until) {
            let why = self.problem_text();
            return Err(StoreError(
                why.unwrap_or_else(|| "Redis is unreachable".into()),
            ));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        match self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => {
                *held = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                *self
                    .quiet_until
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(Instant::now() + Duration::from_millis(250));
                Err(self.failed(&e).await)
            }
        }
    }

    fn problem_text(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Notes a failure (the connection is dropped, so the next operation reconnects).
    async fn failed(&self, e: &redis::RedisError) -> StoreError {
        let why = format!("Redis is unreachable or failing: {}", describe(e));
        *self
            .problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why.clone());
        if let Ok(mut held) = self.connection.try_lock() {
            *held = None;
        }
        StoreError(why)
    }

    fn succeeded(&self) {
        let mut problem = self
            .problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if problem.is_some() {
            *problem = None;
        }
    }
}

/// A Redis error's kind and text, without the address or credentials of the server.
fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection lost".into()
    } else {
        format!("{:?}", e.kind())
    }
}

/// One admission's counters as the scripts take them, with its mark and tombstone keys.
fn admission_of(
    script: &'static Script,
    store: &RedisLimits,
    counters: &[CounterOp],
    token: u64,
) -> redis::ScriptInvocation<'static> {
    let mut invocation = script.prepare_invoke();
    for c in counters {
        invocation.key(store.key(&c.name));
        let (kind, a, b, amount) = match c.kind {
            CounterKind::Rate { limit, window } => (1, limit, millis(window), 0),
            CounterKind::Parallel { limit } => (2, limit, SLOT_TTL_MS, 0),
            CounterKind::Budget {
                max,
                period,
                amount,
            } => (3, max.0, period.map_or(0, millis), amount.0),
        };
        invocation.arg(kind).arg(a).arg(b).arg(amount);
    }
    let holds = counters
        .iter()
        .any(|c| !matches!(c.kind, CounterKind::Rate { .. }));
    invocation
        .key(mark(store, token))
        .key(store.key(&format!("cancelled:{token:016x}")))
        .arg(u8::from(holds))
        .arg(BUDGET_GRACE_MS);
    invocation
}

/// The key that says an admission ran and holds something not yet handed back.
fn mark(store: &RedisLimits, token: u64) -> String {
    store.key(&format!("admitted:{token:016x}"))
}

async fn admit(
    store: RedisLimits,
    counters: Vec<CounterOp>,
    token: u64,
) -> Result<Admission, StoreError> {
    let inner = &store.inner;
    let mut connection = inner.connection().await?;
    let invocation = admission_of(&ADMIT, &store, &counters, token);
    let answer: Result<(i64, i64), _> =
        tokio::time::timeout(inner.timeout, invocation.invoke_async(&mut connection))
            .await
            .unwrap_or_else(|_| Err(timed_out()));
    if answer.is_ok() {
        inner.succeeded();
    }
    match answer {
        Ok((0, _)) => {
            let mut taken = Taken::of(&counters);
            taken.token = token;
            Ok(Admission::Admitted(taken))
        }
        Ok((index, retry_ms)) => {
            let index = usize::try_from(index - 1)
                .unwrap_or(0)
                .min(counters.len() - 1);
            Ok(Admission::Refused {
                index,
                retry_after: u64::try_from(retry_ms).ok().map(Duration::from_millis),
            })
        }
        Err(e) => {
            // The script may have run with its answer lost: undo it, or keep it from running.
            let error = inner.failed(&e).await;
            store.retry_in_background(move |store| {
                let counters = counters.clone();
                async move { cancel_once(&store, &counters, token).await }
            });
            Err(error)
        }
    }
}

async fn cancel_once(
    store: &RedisLimits,
    counters: &[CounterOp],
    token: u64,
) -> Result<(), StoreError> {
    let inner = &store.inner;
    run(inner, admission_of(&CANCEL, store, counters, token)).await
}

/// Runs a script that answers a number, within the store's timeout.
async fn run(
    inner: &Inner,
    invocation: redis::ScriptInvocation<'static>,
) -> Result<(), StoreError> {
    let mut connection = inner.connection().await?;
    let done: Result<i64, _> =
        tokio::time::timeout(inner.timeout, invocation.invoke_async(&mut connection))
            .await
            .unwrap_or_else(|_| Err(timed_out()));
    match done {
        Ok(_) => {
            inner.succeeded();
            Ok(())
        }
        Err(e) => Err(inner.failed(&e).await),
    }
}

async fn finish_once(
    store: &RedisLimits,
    taken: &Taken,
    spent: Option<Nanos>,
) -> Result<(), StoreError> {
    let inner = &store.inner;
    let mut invocation = FINISH.prepare_invoke();
    invocation.arg(taken.slots.len());
    for name in &taken.slots {
        invocation.key(store.key(name));
    }
    for (name, amount, period) in &taken.reserved {
        invocation.key(store.key(name));
        let cost = spent.map_or(-1, |c| i64::try_from(c.0).unwrap_or(i64::MAX));
        invocation
            .arg(amount.0)
            .arg(cost)
            .arg(period.map_or(0, millis));
    }
    invocation
        .key(mark(store, taken.token))
        .arg(BUDGET_GRACE_MS);
    run(inner, invocation).await
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl LimitStore for RedisLimits {
    fn admit(&self, counters: &[CounterOp]) -> Admitting {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Admitting::Ready(Some(Err(StoreError(
                "the Redis limit store needs a Tokio runtime".into(),
            ))));
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let store = self.clone();
        let counters = counters.to_vec();
        let token = self
            .inner
            .tokens
            .hash_one(self.inner.next.fetch_add(1, Ordering::Relaxed));
        // Run to the end even if the caller goes away: what Redis took is then given back.
        runtime.spawn(async move {
            let answer = admit(store.clone(), counters, token).await;
            if let Err(Ok(Admission::Admitted(taken))) = tx.send(answer) {
                store.finish(taken, None);
            }
        });
        Admitting::Later(Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(StoreError("the admission was cancelled".into())))
        }))
    }

    fn finish(&self, taken: Taken, spent: Option<Nanos>) {
        if taken.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.abandoned.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let _ = runtime;
        let taken = Arc::new(taken);
        self.retry_in_background(move |store| {
            let taken = Arc::clone(&taken);
            async move { finish_once(&store, &taken, spent).await }
        });
    }

    fn problem(&self) -> Option<String> {
        self.inner.problem_text()
    }

    fn seed(&self, seeds: Vec<BudgetSeed>) -> StoreFuture<()> {
        let store = self.clone();
        Box::pin(async move {
            let mut invocation = SEED.prepare_invoke();
            for s in &seeds {
                invocation
                    .key(store.key(&s.name))
                    .arg(s.period.map_or(0, millis))
                    .arg(s.spent.0);
            }
            invocation.arg(BUDGET_GRACE_MS);
            run(&store.inner, invocation).await
        })
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}
