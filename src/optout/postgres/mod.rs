/*!
Opt-outs in PostgreSQL, shared by several gateway replicas ([`PgOptOuts`]).

Each replica keeps the whole set in memory (the request path never waits for the database)
and keeps it current from the change log (see [`schema`]):

1. **Load**: at start, one `REPEATABLE READ` transaction reads the last change id and streams
   the table with binary `COPY` into a new set (never one big result in memory).
2. **Follow**: a dedicated connection `LISTEN`s on the change channel; each notification, and
   a timer every [`POLL`] in case a notification was lost, runs a catch-up: apply every change
   with an id above the last one applied, in order. A `reload` change (bulk import) wakes a
   second task that reads the table again beside the follower, on a connection of its own,
   while the follower goes on applying changes to the set that serves; the new set gets the
   changes after its snapshot and replaces the old one. A change log that cannot be followed
   (a gap, a counter that disagrees) is read again by the follower itself.
3. **Reconnect**: a lost connection is retried with backoff; the catch-up after reconnecting
   replays what changed meanwhile. A lost notification costs at most [`POLL`], never an opt-out.
4. **Staleness**: the copy's age is the time since the last successful catch-up, or since an
   import it does not hold yet was seen, whichever is longer. Past `max_staleness_s` the copy
   is not used: routes that honour opt-outs answer 503 while contractor routes keep working
   (see [`OptOutBackend::source`]).

Writes (admin `PUT`/`DELETE`) run in one transaction that takes the change counter's row lock,
changes the table, appends the change and notifies; the answer is sent only after `COMMIT`
returned. An unreachable database, or one that does not answer within [`WRITE_TIMEOUT`], is a
503 and nothing is acknowledged. The writing replica then catches up at once, so its next
lookup already sees the change.
*/

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use async_trait::async_trait;
use deadpool_postgres::Pool;
use gateway_core::optout::{validate_customer_id, OptOutSet, OptOutSource, Scope};
use gateway_core::policy::PostgresOptOuts;

use super::{BackendError, Freshness, OptOutBackend};

pub mod bulk;
pub mod connect;
pub mod schema;
mod sync;
mod write;

pub use connect::{Tables, Target};

/// How often a replica asks for changes even without a notification.
pub const POLL: Duration = Duration::from_millis(500);
/// A replica whose last catch-up is older than this reports itself stale.
pub const CURRENT_WITHIN: Duration = Duration::from_secs(3);
/// Longest an admin write may wait for the database before it is answered 503.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// One replica's view of the shared opt-outs. Share it behind an `Arc`.
pub struct PgOptOuts {
    config: PostgresOptOuts,
    tables: Tables,
    /// Where the follower connects (`application_name` `partner-gateway-listen`).
    listener: Target,
    /// Where the import reader connects, a fresh connection per read (`partner-gateway-read`).
    reader: Target,
    pool: Pool,
    /// What the request path asks (one read lock per request; an unusable set counts
    /// everyone as opted out).
    set: Arc<RwLock<OptOutSet>>,
    /// The last change id applied to `set` (`-1` before the first load). Holding it
    /// serialises applying changes.
    applied: tokio::sync::Mutex<i64>,
    /// When the change `applied` names was written (microseconds since the epoch, from its
    /// row), when known: a database whose change of that id has another time is not the one
    /// the set followed. Only touched while `applied` is held.
    applied_at: std::sync::Mutex<Option<i64>>,
    loaded: AtomicBool,
    started: Instant,
    /// Milliseconds after `started` at which the last successful catch-up began.
    fresh_at_ms: AtomicU64,
    /// Wakes the follower (after a local write).
    kick: tokio::sync::Notify,
    /// Wakes the import reloader: the follower applied a `reload` change (a bulk import).
    imported: tokio::sync::Notify,
    /// How many times the follower read the whole set again because the change log could not
    /// be followed (a gap, a counter that disagrees); only changed while `applied` is held.
    generation: AtomicU64,
    /// Milliseconds after `started` at which the newest `reload` change (bulk import) was seen
    /// in the change log. A set read from a snapshot begun after that holds the import.
    import_seen_ms: AtomicU64,
    /// Milliseconds after `started` since when the set lacks an import ([`NO_IMPORT`]: it
    /// lacks none). The copy is as stale as that.
    import_pending_ms: AtomicU64,
    /// The change id the set holds every change through (under the set's write lock; `-1`
    /// before the first load).
    set_through: AtomicI64,
    /// Changes this replica acknowledged that the set held only because they were applied out
    /// of turn ([`PgOptOuts::hold_own`]): applied again to every set put in place, until the
    /// set holds them in turn.
    own: std::sync::Mutex<Vec<(u64, write::Logged)>>,
    /// The follower is reading the table again because the database is not the one it
    /// followed: the set's position (`set_through`) is of the old history.
    rereading_history: AtomicBool,
}

/// `import_pending_ms` when every import seen is in the set.
const NO_IMPORT: u64 = u64::MAX;

impl std::fmt::Debug for PgOptOuts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptOuts")
            .field("table", &self.tables.optouts)
            .finish()
    }
}

impl PgOptOuts {
    /// A replica for `config` (the URL read from its environment variable), not yet loaded.
    pub fn new(config: &PostgresOptOuts) -> anyhow::Result<PgOptOuts> {
        let target = Target::from_env(config, "partner-gateway")?;
        let pool = target.pool()?;
        Ok(PgOptOuts {
            config: config.clone(),
            tables: Tables::new(&config.table),
            listener: target.with_application("partner-gateway-listen"),
            reader: target.with_application("partner-gateway-read"),
            pool,
            set: Arc::new(RwLock::new(OptOutSet::new())),
            applied: tokio::sync::Mutex::new(-1),
            applied_at: std::sync::Mutex::new(None),
            loaded: AtomicBool::new(false),
            started: Instant::now(),
            fresh_at_ms: AtomicU64::new(0),
            kick: tokio::sync::Notify::new(),
            imported: tokio::sync::Notify::new(),
            generation: AtomicU64::new(0),
            import_seen_ms: AtomicU64::new(0),
            import_pending_ms: AtomicU64::new(NO_IMPORT),
            set_through: AtomicI64::new(-1),
            own: std::sync::Mutex::new(Vec::new()),
            rereading_history: AtomicBool::new(false),
        })
    }

    /// Starts the replica: a thread with its own runtime migrates the schema, loads the set
    /// and follows changes for the life of the process.
    pub fn start(config: &PostgresOptOuts) -> anyhow::Result<Arc<PgOptOuts>> {
        let replica = Arc::new(PgOptOuts::new(config)?);
        // Two workers: an import's whole-table read (busy building the new set) never holds up
        // the follower applying changes beside it.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("optouts-pg")
            .enable_all()
            .build()
            .map_err(|e| anyhow!("cannot start the opt-out follower: {e}"))?;
        let follower = replica.clone();
        std::thread::Builder::new()
            .name("optouts-pg".into())
            .spawn(move || runtime.block_on(follower.follow()))
            .map_err(|e| anyhow!("cannot start the opt-out follower: {e}"))?;
        Ok(replica)
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Customers in the in-memory copy.
    pub fn customer_count(&self) -> usize {
        self.set.read().map_or(0, |s| s.len())
    }

    fn mark_fresh(&self, since: Instant) {
        let ms = since.saturating_duration_since(self.started).as_millis() as u64;
        self.fresh_at_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The time since the last successful catch-up, or since an import the set does not hold
    /// yet was first seen, whichever is longer: past `max_staleness_s` either fails closed.
    fn staleness(&self) -> Duration {
        let at = |ms: u64| self.started + Duration::from_millis(ms);
        let now = Instant::now();
        let fresh_at = at(self.fresh_at_ms.load(Ordering::Relaxed));
        let caught_up = now.saturating_duration_since(fresh_at);
        match self.import_pending_ms.load(Ordering::Acquire) {
            NO_IMPORT => caught_up,
            pending => caught_up.max(now.saturating_duration_since(at(pending))),
        }
    }

    /// Milliseconds since `started`.
    fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.started)
            .as_millis() as u64
    }

    /// Notes a `reload` change applied from the log: the import it stands for is pending until
    /// a set read from a snapshot begun after now is in place. Called with `applied` held.
    fn import_seen(&self) {
        let now = self.now_ms();
        self.import_seen_ms.store(now, Ordering::Release);
        let _ = self.import_pending_ms.compare_exchange(
            NO_IMPORT,
            now,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.imported.notify_one();
    }

    /// A set read from a snapshot begun at `began_ms` is in place: it holds every import seen
    /// before that. One seen later is still pending, counted from the snapshot's start (no
    /// later than when that import was seen). By time, not change id, so a database restored
    /// to before an import does not leave one pending for ever. Called with `applied` held.
    fn imports_loaded(&self, began_ms: u64) {
        let pending = self.import_pending_ms.load(Ordering::Acquire);
        if pending == NO_IMPORT {
            return;
        }
        let next = if self.import_seen_ms.load(Ordering::Acquire) < began_ms {
            NO_IMPORT
        } else {
            pending.max(began_ms)
        };
        self.import_pending_ms.store(next, Ordering::Release);
    }
}

#[async_trait]
impl OptOutBackend for PgOptOuts {
    fn source(self: Arc<Self>) -> Option<Arc<dyn OptOutSource>> {
        if self.freshness().usable() {
            Some(self.set.clone())
        } else {
            None
        }
    }

    fn freshness(&self) -> Freshness {
        if !self.loaded.load(Ordering::Acquire) {
            return Freshness::NotLoaded;
        }
        let staleness = self.staleness();
        if staleness <= CURRENT_WITHIN.min(self.config.max_staleness) {
            Freshness::Current { staleness }
        } else {
            Freshness::Stale {
                staleness,
                max_staleness: self.config.max_staleness,
            }
        }
    }

    fn count_by_scope(&self) -> Vec<(Scope, u64)> {
        self.set
            .read()
            .map(|s| s.count_by_scope())
            .unwrap_or_default()
    }

    async fn get(&self, id: &str) -> Result<Option<Vec<Scope>>, BackendError> {
        validate_customer_id(id).map_err(|e| BackendError::Failed(e.into()))?;
        self.read_scopes(id).await
    }

    async fn put(&self, id: &str, scopes: &[Scope]) -> Result<Vec<Scope>, BackendError> {
        validate_customer_id(id).map_err(|e| BackendError::Failed(e.into()))?;
        if scopes.is_empty() {
            return Err(BackendError::Failed(anyhow!("no scopes to add")));
        }
        let now = self.write(id, write::Change::Put(scopes)).await?;
        Ok(now.unwrap_or_default())
    }

    async fn delete(
        &self,
        id: &str,
        scopes: Option<&[Scope]>,
    ) -> Result<Option<Vec<Scope>>, BackendError> {
        validate_customer_id(id).map_err(|e| BackendError::Failed(e.into()))?;
        self.write(id, write::Change::Delete(scopes)).await
    }
}
