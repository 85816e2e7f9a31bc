//! The follower: load the set, then keep it current from the change log (LISTEN/NOTIFY plus a
//! poll), reconnecting with backoff.
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use gateway_core::optout::{OptOutSet, Scope, ScopeId};
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, Client};

use super::connect::{within, Tables, CONNECT_TIMEOUT};
use super::{schema, write, PgOptOuts, POLL};

/// When a change was written, as SQL over a change row: microseconds since the epoch (the
/// catch-up compares the change it applied last with the row of that id by it).
pub(super) const AT_MICROS: &str = "(extract(epoch FROM at) * 1000000)::bigint";

/// What a catch-up found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CaughtUp {
    /// The set holds every change there is.
    Current,
    /// The set is behind (not loaded, or the table is to be read again) in the same history.
    Behind,
    /// The database is not the one the set followed (restored, failed over): the follower
    /// reads the table again.
    HistoryChanged,
}

/// Longest read of the whole table after an import before it is started again.
const IMPORT_READ_TIMEOUT: Duration = Duration::from_secs(600);

/// Most changes applied per catch-up query.
const CATCH_UP_BATCH: i64 = 10_000;
/// Once the rows of a whole-table read flow, how long it may go without one: a connection gone
/// silent mid-read is given up then, not after the read's whole bound.
const ROW_STALL: Duration = Duration::from_secs(30);
/// How long ending a whole-table read's read-only transaction may take.
const END_WAIT: Duration = Duration::from_secs(5);
/// How long the follower waits for its migration check (which may wait for another replica's
/// migration) before it gives the connection up and makes a new one: longer than the
/// migration's own lock waits, which the server ends.
const MIGRATE_TIMEOUT: Duration = schema::MIGRATE_LOCK_WAIT.saturating_add(Duration::from_secs(10));
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often each replica reads the whole table again beside following the change log: what
/// reached the table without a change logged (a writer that took itself for the gateway) is
/// enforced within this long.
const RECONCILE_EVERY: Duration = Duration::from_secs(300);

impl PgOptOuts {
    /// Runs for the life of the process (with the import reloader beside it).
    pub(super) async fn follow(self: std::sync::Arc<Self>) {
        tokio::spawn(self.clone().reload_after_imports());
        tokio::spawn(self.clone().reconcile());
        let mut backoff = BACKOFF_MIN;
        let mut migrated = false;
        loop {
            let (result, caught_up);
            (result, migrated, caught_up) = self.clone().session_task(migrated).await;
            if let Err(e) = result {
                if self.loaded.load(Ordering::Acquire) {
                    log::warn!("opt-out database: {e:#}; enforcing the last known opt-outs and reconnecting");
                } else {
                    log::error!("opt-out database: {e:#}; routes that honour opt-outs answer 503 until the first load");
                }
            }
            // A connection that worked (it caught up) was lost, not refused: reconnect soon.
            if caught_up {
                backoff = BACKOFF_MIN;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// [`PgOptOuts::session`] as a task of its own, so that a panic in it (a database client
    /// library's, on data it did not expect) ends the session, not the follower: the follower
    /// then migrates and checks the tables again and reconnects. Returns the session's result,
    /// whether the tables are migrated, and whether it caught up.
    async fn session_task(self: std::sync::Arc<Self>, migrated: bool) -> (Result<()>, bool, bool) {
        let task = tokio::spawn(async move {
            let (mut migrated, mut caught_up) = (migrated, false);
            let result = self.session(&mut migrated, &mut caught_up).await;
            (result, migrated, caught_up)
        });
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => {
                let what = if e.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                (
                    Err(anyhow::anyhow!("the follower's session {what}")),
                    false,
                    false,
                )
            }
        }
    }

    /// One connection's life: migrate (once), LISTEN, load or catch up, then follow.
    /// `caught_up` is set once the connection has brought the set up to date.
    async fn session(&self, migrated: &mut bool, caught_up: &mut bool) -> Result<()> {
        let (mut client, mut connection) = self.listener.connect_raw().await?;
        let (tx, mut notified) = tokio::sync::mpsc::unbounded_channel::<()>();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => {
                        let _ = tx.send(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log::debug!("opt-out listener connection: {e}");
                        break;
                    }
                }
            }
        });
        let _abort = AbortOnDrop(driver);
        // Every step is bounded here, so a connection gone silent is given up and made again.
        if !*migrated {
            let migration = schema::migrate(&mut client, &self.tables);
            within(
                MIGRATE_TIMEOUT,
                "cannot migrate the opt-out tables",
                migration,
            )
            .await?;
            *migrated = true;
        }
        // The server, too, ends a whole-table read after as long as the follower waits for it.
        let sql = format!(
            "SET statement_timeout = '{}s'; LISTEN {}",
            IMPORT_READ_TIMEOUT.as_secs(),
            self.tables.changes
        );
        let what = "cannot LISTEN for opt-out changes";
        let listen = async { client.batch_execute(&sql).await.context(what) };
        within(CONNECT_TIMEOUT, what, listen).await?;
        if self.loaded.load(Ordering::Acquire) {
            let state = within(POLL * 4, "catching up", self.catch_up(&client)).await?;
            self.reread_unless_current(&client, state).await?;
        } else {
            self.reload(&client).await?;
            log::info!(
                "opt-outs loaded from PostgreSQL table {}: {} customers",
                self.tables.optouts,
                self.customer_count()
            );
        }
        *caught_up = true;
        loop {
            tokio::select! {
                got = notified.recv() => {
                    if got.is_none() {
                        bail!("the listening connection was closed");
                    }
                    while notified.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(POLL) => {}
                _ = self.kick.notified() => {}
            }
            // The catch-up query is bounded tightly; reading the whole table, when it is
            // needed, takes as long as the table is large (see `load_set` for its bounds).
            let state = within(POLL * 4, "catching up", self.catch_up(&client)).await?;
            self.reread_unless_current(&client, state).await?;
        }
    }

    /// On the follower's connection, after a catch-up that found the change log cannot be
    /// followed: reads the whole table again, with a warning.
    async fn reread_unless_current(&self, client: &Client, state: CaughtUp) -> Result<()> {
        if state == CaughtUp::Current {
            return Ok(());
        }
        let history_changed = state == CaughtUp::HistoryChanged;
        log::warn!(
            "opt-out change log in {} {}: reading the opt-outs again",
            self.tables.changes,
            if history_changed {
                "is not the one applied (the database was restored or failed over)"
            } else {
                "has a gap, or a counter other than its changes"
            }
        );
        let mut applied = self.applied.lock().await;
        self.reload_locked(client, &mut applied, history_changed)
            .await
    }

    /// Applies every change after the last one applied, in order. Each query reads, in one
    /// snapshot, the change counter, the change the replica applied last and the changes after
    /// it; the set is to be read again (not `Current`) whenever they disagree with what was
    /// applied:
    /// - a gap in the ids;
    /// - a counter ahead of every change there is to read (the newest were pruned before this
    ///   replica saw them);
    /// - a counter behind what was applied, or a last applied change that is now another one
    ///   (its time differs): the database came back from a backup or failed over to a standby
    ///   that was behind, and new changes reuse ids the replica has already applied.
    ///
    /// It never reads the whole table itself: only the follower does, on its own connection
    /// ([`PgOptOuts::reread_unless_current`]). A read cut short by a writer's timeout would
    /// leave its transaction open on a pooled connection.
    pub(super) async fn catch_up(&self, client: &Client) -> Result<CaughtUp> {
        let began = Instant::now();
        let mut applied = self.applied.lock().await;
        if *applied < 0 {
            return Ok(CaughtUp::Behind);
        }
        let (seq, changes) = (&self.tables.seq, &self.tables.changes);
        let sql = format!(
            "SELECT s.last, p.at_us, c.id, c.customer_id, c.op, c.scopes, c.at_us FROM {seq} s \
             LEFT JOIN LATERAL (SELECT {AT_MICROS} AS at_us FROM {changes} WHERE id = $1) p ON true \
             LEFT JOIN LATERAL (SELECT id, customer_id, op, scopes, {AT_MICROS} AS at_us FROM {changes} \
             WHERE id > $1 ORDER BY id LIMIT {CATCH_UP_BATCH}) c ON true ORDER BY c.id"
        );
        loop {
            let asked_ms = self.now_ms();
            let rows = client
                .query(&sql, &[&*applied])
                .await
                .context("cannot read opt-out changes")?;
            let Some(first) = rows.first() else {
                bail!("the change counter {seq} has no row");
            };
            let last: i64 = first.get(0);
            let then: Option<i64> = first.get(1);
            let remembered = *self.applied_at.lock().map_err(|_| poisoned())?;
            let replaced = matches!((remembered, then), (Some(a), Some(b)) if a != b)
                || self.own_replaced(&rows, last, asked_ms)?;
            let changes: Vec<_> = rows
                .iter()
                .filter(|row| row.get::<_, Option<i64>>(2).is_some())
                .collect();
            let must_reload = replaced
                || changes
                    .iter()
                    .enumerate()
                    .any(|(i, row)| row.get::<_, i64>(2) != *applied + 1 + i as i64);
            if replaced {
                return Ok(CaughtUp::HistoryChanged);
            }
            if must_reload {
                return Ok(CaughtUp::Behind);
            }
            {
                let mut set = self.set.write().map_err(|_| poisoned())?;
                let mut at = self.applied_at.lock().map_err(|_| poisoned())?;
                for row in &changes {
                    let customer: Option<&str> = row.get(3);
                    let scopes: Vec<&str> = row.get(5);
                    if row.get::<_, &str>(4) == "reload" {
                        self.import_seen();
                    }
                    apply(&mut set, row.get(4), customer.unwrap_or(""), &scopes);
                    *applied = row.get(2);
                    *at = row.get(6);
                }
                self.held_through(*applied);
            }
            if (changes.len() as i64) < CATCH_UP_BATCH {
                if *applied != last {
                    return Ok(if last < *applied {
                        CaughtUp::HistoryChanged
                    } else {
                        CaughtUp::Behind
                    });
                }
                break;
            }
        }
        self.mark_fresh(began);
        Ok(CaughtUp::Current)
    }

    /// Reads the whole table (the first load).
    async fn reload(&self, client: &Client) -> Result<()> {
        let mut applied = self.applied.lock().await;
        self.reload_locked(client, &mut applied, false).await
    }

    /// `history_changed`: the database is not the one the set followed (restored, failed
    /// over), so the changes this replica applied out of turn may be gone from it: dropped.
    async fn reload_locked(
        &self,
        client: &Client,
        applied: &mut i64,
        history_changed: bool,
    ) -> Result<()> {
        let began = Instant::now();
        let began_ms = self.now_ms();
        self.rereading_history
            .store(history_changed, Ordering::Release);
        let read = load_set(client, &self.tables);
        let loaded = within(IMPORT_READ_TIMEOUT, "reading the opt-outs", read).await;
        self.rereading_history.store(false, Ordering::Release);
        let (set, last, last_at) = loaded?;
        if history_changed {
            // Held before this read began: from the history the set followed. A change held
            // since may be of the new one, and this read may not hold it yet.
            let mut own = self.own.lock().map_err(|_| poisoned())?;
            own.retain(|(held_at, _)| *held_at >= began_ms);
        }
        self.replace_set(set, last)?;
        // After the new set is in place: a writer waiting for this read then sees it.
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.imports_loaded(began_ms);
        *applied = last;
        *self.applied_at.lock().map_err(|_| poisoned())? = last_at;
        self.loaded.store(true, Ordering::Release);
        self.mark_fresh(began);
        Ok(())
    }
}

impl PgOptOuts {
    /// Runs for the life of the process: after each bulk import the follower saw, reads the
    /// whole table again beside it (see [`PgOptOuts::reload_beside`]), retrying with backoff.
    /// Every [`RECONCILE_EVERY`], has the table read again as after an import (without counting
    /// toward staleness: nothing is known to be missing).
    async fn reconcile(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        tick.tick().await; // at once: the follower reads the table at start anyway
        loop {
            tick.tick().await;
            self.imported.notify_one();
        }
    }

    async fn reload_after_imports(self: std::sync::Arc<Self>) {
        loop {
            self.imported.notified().await;
            let mut backoff = BACKOFF_MIN;
            loop {
                // A task of its own: a panic in it (a client library's) is one failed read,
                // retried, not the end of every read after imports.
                let this = self.clone();
                let read = tokio::spawn(async move {
                    tokio::time::timeout(IMPORT_READ_TIMEOUT, this.reload_beside()).await
                });
                let e = match read.await {
                    Ok(Ok(Ok(()))) => break,
                    Ok(Ok(Err(e))) => e,
                    Ok(Err(_)) => anyhow::anyhow!("no end within {IMPORT_READ_TIMEOUT:?}"),
                    Err(_) => anyhow::anyhow!("the read panicked"),
                };
                log::warn!("opt-out database: reading the whole table again (after an import, or the periodic check): {e:#}; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Reads the whole table into a new set on a pool connection while the follower goes on
    /// applying changes to the set that serves, so an opt-out acknowledged meanwhile is
    /// enforced as always. Then, holding `applied`, gives the new set the changes the follower
    /// applied after its snapshot, and puts it in place. Should the follower have read the
    /// table again itself meanwhile, its set is the newer one and this one is dropped.
    ///
    /// The read has a connection of its own, closed when it ends, so a read cut short never
    /// leaves a transaction open on a connection something else uses. While it runs, the
    /// import counts toward the copy's staleness (see [`PgOptOuts::import_seen`]).
    async fn reload_beside(&self) -> Result<()> {
        let generation = self.generation.load(Ordering::Acquire);
        let client = self.reader.connect().await?;
        // A read waiting on a lock, or running away, ends on the server too.
        client
            .batch_execute(&format!(
                "SET lock_timeout = '30s'; SET statement_timeout = '{}s'",
                IMPORT_READ_TIMEOUT.as_secs()
            ))
            .await
            .context("cannot set the read's timeouts")?;
        let began_ms = self.now_ms();
        let (mut set, last, last_at) = load_set(&client, &self.tables).await?;
        let mut applied = self.applied.lock().await;
        if *applied < 0 || self.generation.load(Ordering::Acquire) != generation {
            return Ok(());
        }
        if *applied > last {
            let sql = format!(
                "SELECT id, customer_id, op, scopes FROM {} WHERE id > $1 AND id <= $2 ORDER BY id",
                self.tables.changes
            );
            // Bounded: the follower waits for `applied` meanwhile.
            let what = "cannot read opt-out changes";
            let query = async { client.query(&sql, &[&last, &*applied]).await.context(what) };
            let rows = within(POLL * 4, what, query).await?;
            let contiguous = rows
                .iter()
                .enumerate()
                .all(|(i, row)| row.get::<_, i64>(0) == last + 1 + i as i64);
            if !contiguous || rows.len() as i64 != *applied - last {
                bail!("changes after the new snapshot are missing (pruned?)");
            }
            for row in &rows {
                let customer: Option<&str> = row.get(1);
                let scopes: Vec<&str> = row.get(3);
                apply(&mut set, row.get(2), customer.unwrap_or(""), &scopes);
            }
        } else {
            *applied = last;
            *self.applied_at.lock().map_err(|_| poisoned())? = last_at;
        }
        self.replace_set(set, *applied)?;
        self.imports_loaded(began_ms);
        log::info!(
            "opt-outs read again (after an import, or the periodic check): {} customers",
            self.customer_count()
        );
        Ok(())
    }

    /// Puts `set`, which holds every change through `through`, in place, with this replica's
    /// own changes after that applied again.
    fn replace_set(&self, set: OptOutSet, through: i64) -> Result<()> {
        let mut guard = self.set.write().map_err(|_| poisoned())?;
        *guard = set;
        self.set_through.store(through, Ordering::Release);
        let mut own = self.own.lock().map_err(|_| poisoned())?;
        own.retain(|(_, c)| c.id > through);
        for (_, c) in own.iter() {
            c.apply(&mut guard);
        }
        Ok(())
    }

    /// Whether the database lost a change of this replica's own that the set holds out of
    /// turn (restored, failed over): the change rows read (`id` at 2, time at 6) give its id to
    /// a change of another time, or the counter `last`, read by a query asked (`asked_ms`) after
    /// the change was held, is below its id.
    fn own_replaced(&self, rows: &[tokio_postgres::Row], last: i64, asked_ms: u64) -> Result<bool> {
        let own = self.own.lock().map_err(|_| poisoned())?;
        if own.is_empty() {
            return Ok(false);
        }
        let taken = rows.iter().any(|row| {
            let (id, at): (Option<i64>, Option<i64>) = (row.get(2), row.get(6));
            own.iter()
                .any(|(_, c)| Some(c.id) == id && Some(c.at_us) != at)
        });
        let gone = own
            .iter()
            .any(|(held_ms, c)| *held_ms < asked_ms && c.id > last);
        Ok(taken || gone)
    }

    /// The set holds every change through `through` in turn (called with the set's write
    /// lock held): own changes up to it need no more applying.
    fn held_through(&self, through: i64) {
        self.set_through.store(through, Ordering::Release);
        if let Ok(mut own) = self.own.lock() {
            own.retain(|(_, c)| c.id > through);
        }
    }

    /// Makes the set hold `change`, which this replica acknowledged and the set has not
    /// reached in turn: applied now, out of turn, and to every set put in place until the set
    /// holds it in turn. Changes after it are applied after it, in order, as always.
    ///
    /// `force`: the set may follow another history than the change's (a restored database
    /// the follower has not read yet), so its position says nothing about the change.
    pub(super) fn hold_own(&self, change: write::Logged, force: bool) {
        let Ok(mut set) = self.set.write() else {
            return;
        };
        if !force && self.set_through.load(Ordering::Acquire) >= change.id {
            return; // in already, in turn: a later change may have decided since
        }
        let Ok(mut own) = self.own.lock() else {
            change.apply(&mut set);
            return;
        };
        let at = own.partition_point(|(_, c)| c.id < change.id);
        own.insert(at, (self.now_ms(), change));
        // This customer's later changes held already are applied again after it: held out of
        // turn, they still apply in turn among themselves.
        let customer = own[at].1.customer.clone();
        for (_, c) in own[at..].iter().filter(|(_, c)| c.customer == customer) {
            c.apply(&mut set);
        }
    }
}

fn poisoned() -> anyhow::Error {
    anyhow::anyhow!("opt-out set poisoned")
}

/// Applies one logged change. Values that are not valid ids or scopes (written by hand) are
/// skipped with a warning: no request can name such an id, and the table made by `optouts
/// migrate` refuses such a scope (a table made before that check may still hold one). A scope
/// added with capitals partners never honour it by is added as what it spells
/// ([`Scope::parse_stored`]); one removed so is removed as written, which leaves the scope it
/// spells enforced until the table is read again: the error on the side of an opt-out.
pub(super) fn apply(set: &mut OptOutSet, op: &str, customer: &str, scopes: &[&str]) {
    let scopes: Vec<Scope> = scopes
        .iter()
        .filter_map(|s| match op {
            "add" => Scope::parse_stored(s).ok().map(|(scope, _)| scope),
            _ => Scope::parse(s).ok(),
        })
        .collect();
    let result = match op {
        "add" if !scopes.is_empty() => set.insert(customer, &scopes).map(|_| ()),
        "remove" => {
            set.remove(customer, Some(&scopes));
            Ok(())
        }
        _ => Ok(()),
    };
    if let Err(e) = result {
        log::warn!("skipping an opt-out change the gateway cannot hold: {e}");
    }
}

/// Streams the whole table into a new set, in one `REPEATABLE READ` snapshot together with
/// the last change id it includes.
/// Also returns when the last change was written (see `catch_up`), when its row is there.
pub async fn load_set(client: &Client, tables: &Tables) -> Result<(OptOutSet, i64, Option<i64>)> {
    client
        .batch_execute(&format!(
            // The lock before the snapshot (taken by the first query, not by LOCK): a snapshot
            // taken while a table-rewriting ALTER or a TRUNCATE is under way would see the table
            // empty once it commits (PostgreSQL documents both as not MVCC-safe).
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
             LOCK TABLE {}, {}, {} IN ACCESS SHARE MODE",
            tables.optouts, tables.changes, tables.seq
        ))
        .await
        .context("cannot start the opt-out load")?;
    let result = load_in_snapshot(client, tables).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    // Bounded: after a read given up on a connection gone silent, an unbounded ROLLBACK would
    // wait for that connection all the same.
    let what = "cannot end the opt-out load";
    let ended = async { client.batch_execute(end).await.context(what) };
    let ended = within(END_WAIT, what, ended).await;
    let loaded = result?;
    ended?;
    Ok(loaded)
}

async fn load_in_snapshot(
    client: &Client,
    tables: &Tables,
) -> Result<(OptOutSet, i64, Option<i64>)> {
    schema::check_columns(client, tables).await?;
    let counter = client
        .query_one(
            &format!(
                "SELECT s.last, (SELECT {AT_MICROS} FROM {} WHERE id = s.last) FROM {} s",
                tables.changes, tables.seq
            ),
            &[],
        )
        .await
        .with_context(|| format!("cannot read {}", tables.seq))?;
    let (last, last_at): (i64, Option<i64>) = (counter.get(0), counter.get(1));
    let estimate: f32 = client
        .query_one(
            "SELECT greatest(reltuples, 0)::real FROM pg_class WHERE oid = $1::text::regclass",
            &[&tables.optouts],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0.0);
    let copy = format!(
        "COPY (SELECT customer_id, scope FROM {} ORDER BY customer_id, scope) TO STDOUT (FORMAT binary)",
        tables.optouts
    );
    let stream = client
        .copy_out(&copy)
        .await
        .with_context(|| format!("cannot read {}", tables.optouts))?;
    let rows = BinaryCopyOutStream::new(stream, &[Type::TEXT, Type::TEXT]);
    futures_util::pin_mut!(rows);
    let mut set = OptOutSet::with_capacity(estimate as usize, estimate as usize * 8);
    let mut current = String::new();
    let mut ids: Vec<ScopeId> = Vec::new();
    let (mut skipped, mut miscased_rows) = (0u64, 0u64);
    let mut waited = IMPORT_READ_TIMEOUT; // the first row may wait for the server's sort
    loop {
        let Ok(next) = tokio::time::timeout(waited, rows.next()).await else {
            bail!("cannot read {}: no row for {waited:?}", tables.optouts);
        };
        let Some(row) = next else { break };
        waited = ROW_STALL;
        let row = row.with_context(|| format!("cannot read {}", tables.optouts))?;
        // `try_get`: a value the client cannot decode is an error of this read, never a panic.
        let read = |i: usize| row.try_get::<Option<&str>>(i);
        let (customer, scope) = match (read(0), read(1)) {
            (Ok(Some(customer)), Ok(Some(scope))) => (customer, scope),
            (Ok(_), Ok(_)) => {
                skipped += 1;
                continue;
            }
            (Err(e), _) | (_, Err(e)) => {
                bail!("cannot read {}: {e} (its columns changed?)", tables.optouts)
            }
        };
        if customer != current {
            flush(&mut set, &current, &mut ids, &mut skipped);
            current.clear();
            current.push_str(customer);
        }
        let parsed = Scope::parse_stored(scope).map_err(anyhow::Error::msg);
        match parsed.and_then(|(s, miscased)| Ok((set.intern(&s)?, miscased))) {
            Ok((id, miscased)) => {
                ids.push(id);
                miscased_rows += u64::from(miscased);
            }
            Err(_) => skipped += 1,
        }
    }
    flush(&mut set, &current, &mut ids, &mut skipped);
    if skipped > 0 {
        log::warn!(
            "{}: skipped {skipped} rows that are not valid customer ids or scopes",
            tables.optouts
        );
    }
    if miscased_rows > 0 {
        log::warn!(
            "{}: {miscased_rows} rows spell partner_sharing or partner:<id> with capitals; they are enforced as those scopes (write them in lowercase: a table made by this version's `optouts migrate` refuses them)",
            tables.optouts
        );
    }
    Ok((set, last, last_at))
}

fn flush(set: &mut OptOutSet, customer: &str, ids: &mut Vec<ScopeId>, skipped: &mut u64) {
    if !ids.is_empty() && set.insert_ids(customer, ids).is_err() {
        *skipped += 1;
    }
    ids.clear();
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
