//! Admin reads and writes against the database: one transaction per change, acknowledged
//! only after `COMMIT` returned.
use std::time::Duration;

use std::sync::atomic::Ordering;

use anyhow::anyhow;
use gateway_core::optout::Scope;
use tokio_postgres::Transaction;

use super::connect::described;
use super::sync::CaughtUp;
use super::{PgOptOuts, WRITE_TIMEOUT};
use crate::optout::BackendError;

/// How long a write waits for its own change to be applied before it holds it itself.
const CATCH_UP_AFTER_WRITE: Duration = Duration::from_millis(500);

/// Wakes the other replicas' followers: the change log's channel, with the change id.
const NOTIFY: &str = "SELECT pg_notify($1, $2::bigint::text)";

/// The statements both kinds of change run, for one replica's tables.
struct ChangeSql {
    /// The customer's scopes after the change.
    current: String,
    /// The change log entry; its time comes back, as a kept change is known by id and time
    /// (see `hold_own`).
    log: String,
}

impl ChangeSql {
    fn new(t: &super::connect::Tables) -> ChangeSql {
        ChangeSql {
            current: format!(
                "SELECT scope FROM {} WHERE customer_id = $1 ORDER BY scope",
                t.optouts
            ),
            log: format!(
                "INSERT INTO {} (id, customer_id, op, scopes) VALUES ($1, $2, $3, $4) RETURNING {}",
                t.changes,
                super::sync::AT_MICROS
            ),
        }
    }
}

/// What an admin call changes.
pub enum Change<'a> {
    Put(&'a [Scope]),
    Delete(Option<&'a [Scope]>),
}

/// What a transaction did: the change it logged (if it changed anything) and the customer's
/// scopes afterwards (`None`: a DELETE of a customer without opt-outs).
struct Outcome {
    change: Option<Logged>,
    scopes: Option<Vec<Scope>>,
}

/// One change as the change log holds it.
pub(super) struct Logged {
    pub(super) id: i64,
    /// When it was written (microseconds since the epoch, the database's clock).
    pub(super) at_us: i64,
    op: &'static str,
    pub(super) customer: String,
    scopes: Vec<String>,
}

impl Logged {
    pub(super) fn apply(&self, set: &mut gateway_core::optout::OptOutSet) {
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        super::sync::apply(set, self.op, &self.customer, &scopes);
    }
}

/// A deadlock or a serialization failure: the database rolled the transaction back.
fn retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

fn unavailable(e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(anyhow!("{e}"))
}

fn scopes_of(rows: &[tokio_postgres::Row]) -> Vec<Scope> {
    // Rows that are not valid scopes (written by hand) are left out, as the follower does.
    rows.iter()
        .filter_map(|r| Scope::parse(r.try_get::<_, &str>(0).ok()?).ok())
        .collect()
}

impl PgOptOuts {
    /// The customer's scopes as committed in the database.
    pub(super) async fn read_scopes(&self, id: &str) -> Result<Option<Vec<Scope>>, BackendError> {
        let sql = format!(
            "SELECT scope FROM {} WHERE customer_id = $1 ORDER BY scope",
            self.tables.optouts
        );
        let read = async {
            let client = (self.pool.get().await).map_err(|e| unavailable(described(&e)))?;
            (client.query(&sql, &[&id]).await).map_err(|e| unavailable(described(&e)))
        };
        let rows = tokio::time::timeout(WRITE_TIMEOUT, read)
            .await
            .map_err(|_| unavailable("no answer in time"))??;
        let scopes = scopes_of(&rows);
        Ok((!scopes.is_empty()).then_some(scopes))
    }

    /// Runs `change` in one transaction; tried again (at most three times in all) when a pooled
    /// connection turns out to be closed before `COMMIT` was sent (the database restarted), or
    /// the database chose it as a deadlock's or serialization failure's victim.
    pub(super) async fn write(
        &self,
        id: &str,
        change: Change<'_>,
    ) -> Result<Option<Vec<Scope>>, BackendError> {
        let attempt = async {
            let mut last = None;
            for _ in 0..3 {
                let mut client = (self.pool.get().await).map_err(|e| unavailable(described(&e)))?;
                let tx = match client.transaction().await {
                    Ok(tx) => tx,
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                };
                // The tables as the gateway reads them, checked in the change's transaction: a
                // column changed meanwhile (a case-insensitive collation makes one customer's
                // change another's) refuses the write instead of committing it.
                if let Err(e) = super::schema::check_columns(&*tx, &self.tables).await {
                    return Err(unavailable(format!("{e:#}")));
                }
                let outcome = match self.run_change(&tx, id, &change).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        drop(tx);
                        // A closed connection, or a deadlock or serialization failure with a
                        // writer outside the gateway: nothing was committed, so once more.
                        let again = client.is_closed() || retryable(&e);
                        last = Some(e);
                        if again {
                            continue;
                        }
                        break;
                    }
                };
                // From here an error means the commit's fate is unknown: never acknowledge.
                match outcome.change {
                    Some(_) => tx.commit().await.map_err(|e| unavailable(described(&e)))?,
                    None => tx
                        .rollback()
                        .await
                        .map_err(|e| unavailable(described(&e)))?,
                }
                if let Some(logged) = outcome.change {
                    self.catch_up_after_write(&client, logged).await;
                }
                return Ok(outcome.scopes);
            }
            Err(unavailable(last.map_or_else(
                || "no connection".to_string(),
                |e| described(&e),
            )))
        };
        match tokio::time::timeout(WRITE_TIMEOUT, attempt).await {
            Ok(result) => result,
            Err(_) => Err(unavailable(format!(
                "no answer within {}s; the change may or may not have been committed, retry it",
                WRITE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The statements of one change, sent pipelined (they run in order on the server): the
    /// next change id first (its row lock orders writers), then the put or delete.
    async fn run_change(
        &self,
        tx: &Transaction<'_>,
        id: &str,
        change: &Change<'_>,
    ) -> Result<Outcome, tokio_postgres::Error> {
        let sql = ChangeSql::new(&self.tables);
        let next = format!(
            "UPDATE {} SET last = last + 1 RETURNING last",
            self.tables.seq
        );
        // Marked as the gateway's own write first (see `schema`), in the same round trip.
        let (_, next) = futures_util::future::try_join(
            tx.execute(super::schema::GATEWAY_WRITER, &[&self.tables.optouts]),
            tx.query_one(&next, &[]),
        )
        .await?;
        let change_id: i64 = next.try_get(0)?;
        match change {
            Change::Put(scopes) => self.run_put(tx, &sql, (change_id, id), scopes).await,
            Change::Delete(only) => self.run_delete(tx, &sql, (change_id, id), *only).await,
        }
    }

    /// Adds `scopes` for customer `id` as change `change_id`.
    async fn run_put(
        &self,
        tx: &Transaction<'_>,
        sql: &ChangeSql,
        (change_id, id): (i64, &str),
        scopes: &[Scope],
    ) -> Result<Outcome, tokio_postgres::Error> {
        let names: Vec<&str> = scopes.iter().map(Scope::as_str).collect();
        let insert = format!(
            "INSERT INTO {} (customer_id, scope) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
            self.tables.optouts
        );
        let (_, logged, _, rows) = futures_util::future::try_join4(
            tx.execute(&insert, &[&id, &names]),
            tx.query_one(&sql.log, &[&change_id, &id, &"add", &names]),
            tx.query(NOTIFY, &[&self.tables.changes, &change_id]),
            tx.query(&sql.current, &[&id]),
        )
        .await?;
        Ok(Outcome {
            change: Some(Logged {
                id: change_id,
                at_us: logged.try_get(0)?,
                op: "add",
                customer: id.to_string(),
                scopes: names.iter().map(|s| s.to_string()).collect(),
            }),
            scopes: Some(scopes_of(&rows)),
        })
    }

    /// Removes `only` these scopes (all without) for customer `id` as change `change_id`; a
    /// delete that removes nothing logs nothing (the transaction is rolled back).
    async fn run_delete(
        &self,
        tx: &Transaction<'_>,
        sql: &ChangeSql,
        (change_id, id): (i64, &str),
        only: Option<&[Scope]>,
    ) -> Result<Outcome, tokio_postgres::Error> {
        let names: Option<Vec<&str>> = only.map(|s| s.iter().map(Scope::as_str).collect());
        let delete = format!(
            "DELETE FROM {} WHERE customer_id = $1 AND ($2::text[] IS NULL OR scope = ANY($2)) RETURNING scope",
            self.tables.optouts
        );
        let (gone, left) = futures_util::future::try_join(
            tx.query(&delete, &[&id, &names]),
            tx.query(&sql.current, &[&id]),
        )
        .await?;
        let gone: Vec<&str> = gone
            .iter()
            .map(|r| r.try_get::<_, &str>(0))
            .collect::<Result<_, _>>()?;
        let left = scopes_of(&left);
        if gone.is_empty() {
            // Nothing to remove: roll back (the counter too).
            let scopes = (!left.is_empty()).then_some(left);
            return Ok(Outcome {
                change: None,
                scopes,
            });
        }
        let (logged, _) = futures_util::future::try_join(
            tx.query_one(&sql.log, &[&change_id, &id, &"remove", &gone]),
            tx.query(NOTIFY, &[&self.tables.changes, &change_id]),
        )
        .await?;
        Ok(Outcome {
            change: Some(Logged {
                id: change_id,
                at_us: logged.try_get(0)?,
                op: "remove",
                customer: id.to_string(),
                scopes: gone.iter().map(|s| s.to_string()).collect(),
            }),
            scopes: Some(left),
        })
    }

    /// Makes this replica enforce the change it just acknowledged (read-your-writes): a
    /// catch-up on the writer's connection, which never reads the whole table. Should that not
    /// bring the set up to date in time (the follower has the table to read again, or is
    /// busy), the change is held out of turn ([`PgOptOuts::hold_own`]) and the follower woken.
    ///
    /// When the database is not the one the set followed (restored, failed over), the set's
    /// position says nothing about this change: the follower is given a moment to read the
    /// table again, and the change is held whatever the set's position if it has not.
    async fn catch_up_after_write(&self, client: &tokio_postgres::Client, change: Logged) {
        let generation = self.generation.load(Ordering::Acquire);
        let caught_up = tokio::time::timeout(CATCH_UP_AFTER_WRITE, self.catch_up(client));
        let force = match caught_up.await {
            Ok(Ok(CaughtUp::Current)) => return,
            Ok(Ok(CaughtUp::HistoryChanged)) => !self.reread_since(generation).await,
            // The follower is reading a new history: the set's position is the old one's.
            Err(_) => self.rereading_history.load(Ordering::Acquire),
            Ok(Ok(CaughtUp::Behind)) => false,
            Ok(Err(e)) => {
                log::debug!("catch-up after a write failed: {e:#}");
                false
            }
        };
        self.hold_own(change, force);
        self.kick.notify_one();
    }

    /// Waits, up to [`CATCH_UP_AFTER_WRITE`], for the follower to have read the table again
    /// since `generation`.
    async fn reread_since(&self, generation: u64) -> bool {
        self.kick.notify_one();
        let deadline = tokio::time::Instant::now() + CATCH_UP_AFTER_WRITE;
        while self.generation.load(Ordering::Acquire) == generation {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}
