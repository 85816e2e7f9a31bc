/*!
The opt-out tables and their migration (idempotent: the gateway runs it at start and
`partner-gateway optouts migrate` runs it on demand).

- `{table}` (`customer_id`, `scope`): the current opt-outs, one row per pair; the truth.
- `{table}_changes` (`id`, `customer_id`, `op`, `scopes`, `at`): one row per committed change,
  `id` 1, 2, 3, … with no gaps and in commit order. `op` is `add` or `remove` (with the scopes
  actually removed) or `reload` (a bulk import: replicas re-read the whole table).
- `{table}_seq` (one row, `last`): the last change id. Every writer increments it first in its
  transaction, so its row lock orders writers and a change's id is visible only after every
  smaller one: a replica that has applied change N has applied all changes up to N.

Every write transaction also calls `pg_notify('{table}_changes', id)`, delivered at commit.
Ids compare with `COLLATE "C"` (bytewise), as the gateway compares them.

Writes to `{table}` that do not come from the gateway (SQL by hand, a CRM sync, logical
replication into it) are caught by triggers that fire `ALWAYS` (so also in replication's apply
workers, which fire row triggers only): before a transaction's first row in the table (or a
TRUNCATE) they take the change counter's row lock, the order the gateway's writers take it in,
and after it they log one `reload` change per transaction and table (the flags saying so are
named after the table), so every replica re-reads the table, as after a bulk import. They send
no notification (a transaction that notified cannot be prepared, which two-phase writers and
subscriptions need): replicas find the change by polling the log. They name the counter and the log in the table's own schema, whatever the writer's
search path. The gateway marks its own transactions ([`GATEWAY_WRITER`]) so that the triggers
leave them alone. Functions and triggers are created when missing, never replaced: only their
owner could replace them, and the migration runs as whichever role starts a replica. Whatever
slips past them (a writer that marks itself as the gateway) is caught by the replicas' periodic
full read (`RECONCILE_EVERY`).
*/
use anyhow::{bail, Result};
use tokio_postgres::Client;

use super::connect::{DbContext, Tables};

/// Makes the transaction's `COMMIT` wait for its WAL flush where the database or role set
/// `synchronous_commit = off` (the other values all flush locally and are left alone): the
/// gateway acknowledges a change once `COMMIT` returned, and an acknowledged opt-out (or a
/// migration `optouts migrate` reported) must survive the database crashing.
macro_rules! durable_commit {
    () => {
        "CASE WHEN current_setting('synchronous_commit') = 'off' \
         THEN set_config('synchronous_commit', 'on', true) END"
    };
}

/// [`durable_commit!`] alone.
const DURABLE_COMMIT: &str = concat!("SELECT ", durable_commit!());

/// Marks the current transaction as the gateway's own write of one table: that table's
/// triggers skip it. Its commit is durable ([`durable_commit!`]).
/// Its parameter is the table the gateway writes: a write it causes in another gateway's table
/// (an operator's trigger copying rows across) is still logged there.
pub const GATEWAY_WRITER: &str = concat!(
    "SELECT set_config('partner_gateway.writer', $1, true), ",
    durable_commit!()
);

/// Schema version written into the table comment, for future migrations.
pub const SCHEMA_VERSION: u32 = 2;

/// How long the migration waits for each lock (another replica's migration, writers of tables
/// it creates triggers on) before it fails; the follower waits for the whole migration a little
/// longer, so the server gives up first.
pub const MIGRATE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Creates the tables if missing. Safe to run concurrently from several replicas (an
/// advisory lock serialises the DDL).
pub async fn migrate(client: &mut Client, tables: &Tables) -> Result<()> {
    let Tables {
        optouts,
        changes,
        seq,
    } = tables;
    let tx = client
        .transaction()
        .await
        .db_context("cannot start the migration")?;
    // Ended by the server too: a backend waiting for a lock does not notice its client gone,
    // so a follower that gave up waiting (and connected again) would leave one behind per try.
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{}s'",
        MIGRATE_LOCK_WAIT.as_secs()
    ))
    .await
    .db_context("cannot start the migration")?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&optouts])
        .await
        .db_context("cannot lock for the migration")?;
    tx.execute(DURABLE_COMMIT, &[])
        .await
        .db_context("cannot start the migration")?;
    // Done already (by the tables' owner, say): nothing to change, so a replica whose role may
    // use the tables but not create or alter them starts too.
    let current = tx
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL \
             AND to_regclass($3) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_trigger \
             WHERE tgname = $4 AND tgrelid = to_regclass($1))",
            &[optouts, changes, seq, &format!("{optouts}_fw_rlock")],
        )
        .await
        .db_context("cannot read the schema")?
        .get::<_, bool>(0);
    if current {
        check_columns(&tx, tables).await?;
        return tx.commit().await.db_context("cannot commit the migration");
    }
    // `Scope::parse_new`'s rule (which the admin API and imports apply), so a scope written by
    // SQL is refused when it is written rather than kept and skipped, or kept and honoured by no
    // one (`Partner_Sharing`, `partner:BIZ`: the scopes partners honour are lowercase), by every
    // replica.
    let scope_rest = gateway_core::optout::Scope::MAX_LEN - 1;
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {optouts} (
            customer_id text COLLATE \"C\" NOT NULL,
            scope text COLLATE \"C\" NOT NULL
                CHECK (scope ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{{0,{scope_rest}}}$' AND scope !~ ':$'
                    AND (scope = lower(scope)
                        OR NOT (lower(scope) = 'partner_sharing' OR lower(scope) LIKE 'partner:%'))),
            PRIMARY KEY (customer_id, scope)
        );
        CREATE TABLE IF NOT EXISTS {changes} (
            id bigint PRIMARY KEY,
            customer_id text COLLATE \"C\",
            op text NOT NULL CHECK (op IN ('add', 'remove', 'reload')),
            scopes text[] NOT NULL DEFAULT '{{}}',
            at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS {seq} (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            last bigint NOT NULL
        );
        INSERT INTO {seq} (one, last) VALUES (true, 0) ON CONFLICT DO NOTHING;
        COMMENT ON TABLE {optouts} IS 'partner-gateway opt-outs, schema {SCHEMA_VERSION}';
        DO $body$ BEGIN
            IF to_regprocedure('{optouts}_fw_lock()') IS NULL THEN
                CREATE FUNCTION {optouts}_fw_lock() RETURNS trigger
                LANGUAGE plpgsql AS $fn$
                DECLARE flag text;
                BEGIN
                    flag := 'partner_gateway.k' || md5(TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
                    IF coalesce(current_setting('partner_gateway.writer', true), '') <> TG_TABLE_NAME
                       AND coalesce(current_setting(flag, true), '') <> 'on' THEN
                        EXECUTE format('SELECT 1 FROM %I.%I FOR UPDATE', TG_TABLE_SCHEMA, '{seq}');
                        PERFORM set_config(flag, 'on', true);
                    END IF;
                    IF TG_LEVEL = 'STATEMENT' THEN RETURN NULL; END IF;
                    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
                    RETURN NEW;
                END
                $fn$;
            END IF;
            IF to_regprocedure('{optouts}_fw_log()') IS NULL THEN
                CREATE FUNCTION {optouts}_fw_log() RETURNS trigger
                LANGUAGE plpgsql AS $fn$
                DECLARE next bigint; flag text;
                BEGIN
                    flag := 'partner_gateway.l' || md5(TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
                    IF coalesce(current_setting('partner_gateway.writer', true), '') <> TG_TABLE_NAME
                       AND coalesce(current_setting(flag, true), '') <> 'on' THEN
                        EXECUTE format('UPDATE %I.%I SET last = last + 1 RETURNING last',
                                       TG_TABLE_SCHEMA, '{seq}') INTO next;
                        EXECUTE format('INSERT INTO %I.%I (id, op) VALUES ($1, ''reload'')',
                                       TG_TABLE_SCHEMA, '{changes}') USING next;
                        PERFORM set_config(flag, 'on', true);
                    END IF;
                    RETURN NULL;
                END
                $fn$;
            END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_trigger
                           WHERE tgname = '{optouts}_fw_rlock' AND tgrelid = '{optouts}'::regclass) THEN
                CREATE TRIGGER {optouts}_fw_rlock BEFORE INSERT OR UPDATE OR DELETE ON {optouts}
                    FOR EACH ROW EXECUTE FUNCTION {optouts}_fw_lock();
                CREATE TRIGGER {optouts}_fw_rlog AFTER INSERT OR UPDATE OR DELETE ON {optouts}
                    FOR EACH ROW EXECUTE FUNCTION {optouts}_fw_log();
                CREATE TRIGGER {optouts}_fw_tlock BEFORE TRUNCATE ON {optouts}
                    FOR EACH STATEMENT EXECUTE FUNCTION {optouts}_fw_lock();
                CREATE TRIGGER {optouts}_fw_tlog AFTER TRUNCATE ON {optouts}
                    FOR EACH STATEMENT EXECUTE FUNCTION {optouts}_fw_log();
                ALTER TABLE {optouts} ENABLE ALWAYS TRIGGER {optouts}_fw_rlock;
                ALTER TABLE {optouts} ENABLE ALWAYS TRIGGER {optouts}_fw_rlog;
                ALTER TABLE {optouts} ENABLE ALWAYS TRIGGER {optouts}_fw_tlock;
                ALTER TABLE {optouts} ENABLE ALWAYS TRIGGER {optouts}_fw_tlog;
            END IF;
        END
        $body$;"
    );
    tx.batch_execute(&ddl).await.db_context(&format!(
        "cannot create the opt-out tables {optouts}, {changes}, {seq}"
    ))?;
    check_columns(&tx, tables).await?;
    tx.commit()
        .await
        .db_context("cannot commit the migration")?;
    Ok(())
}

/// The columns the gateway reads and writes, per table of [`Tables`] (in its order), with the
/// types it reads them as: text for ids and scopes (`character varying` reads the same).
const COLUMNS: [&[(&str, &str)]; 3] = [
    &[("customer_id", "text"), ("scope", "text")],
    &[
        ("id", "bigint"),
        ("customer_id", "text"),
        ("op", "text"),
        ("scopes", "text[]"),
        ("at", "timestamp with time zone"),
    ],
    &[("last", "bigint")],
];

/// Refuses tables the gateway would misread: a table created beforehand by someone else (an
/// `optouts` table with `integer` ids, say) is left as it is by `CREATE TABLE IF NOT EXISTS`,
/// and its rows would load as other ids, or not at all, with every opt-out in it unenforced.
/// Checked at migration and again before every read of the whole table, so a column changed
/// while replicas serve stops the reads (the copy goes stale, and opt-out routes fail closed)
/// instead of loading an empty set. A domain reads as its base type. The current opt-outs' id
/// and scope must also be `NOT NULL` (a row without them enforces nothing) and compare bytewise
/// (a case-insensitive collation makes `Anna` and `anna` one row, so one's opt-out is lost).
/// And the database must store text as UTF-8: in a `SQL_ASCII` one a hand-written row that is
/// not valid UTF-8 cannot be read at all, and stops every replica's read of the table.
pub(super) async fn check_columns<C>(client: &C, tables: &Tables) -> Result<()>
where
    C: tokio_postgres::GenericClient + Sync,
{
    let encoding: String = client
        .query_one(
            "SELECT pg_encoding_to_char(encoding)::text FROM pg_database \
             WHERE datname = current_database()",
            &[],
        )
        .await
        .db_context("cannot read the database's encoding")?
        .get(0);
    if encoding != "UTF8" {
        bail!("the database's encoding is {encoding}, but opt-out ids are UTF-8 text (in another encoding a row that is not valid UTF-8 stops every replica's read); keep the opt-outs in a database created with ENCODING 'UTF8'");
    }
    let names = [&tables.optouts, &tables.changes, &tables.seq];
    let rows = client
        .query(
            "SELECT t.i::int4, a.attname::text, \
             format_type(CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE a.atttypid END, \
                         CASE WHEN ty.typtype = 'd' THEN ty.typtypmod ELSE a.atttypmod END), \
             a.attnotnull, \
             coalesce((SELECT c.collisdeterministic FROM pg_collation c \
                       WHERE c.oid = a.attcollation), true) \
             FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i) \
             JOIN pg_attribute a ON a.attrelid = to_regclass(t.name) \
             JOIN pg_type ty ON ty.oid = a.atttypid \
             WHERE a.attnum > 0 AND NOT a.attisdropped",
            &[&names.iter().map(|n| n.as_str()).collect::<Vec<_>>()],
        )
        .await
        .db_context("cannot read the opt-out tables' columns")?;
    for (i, (table, columns)) in names.iter().zip(COLUMNS).enumerate() {
        for &(column, want) in columns {
            let found = rows
                .iter()
                .find(|r| r.get::<_, i32>(0) as usize == i + 1 && r.get::<_, &str>(1) == column);
            let Some(row) = found else {
                bail!("table {table} has no column {column} ({want}); it was not created by partner-gateway: move it aside and let the gateway create its own");
            };
            let (found, not_null, bytewise): (&str, bool, bool) =
                (row.get(2), row.get(3), row.get(4));
            let varchar = found.starts_with("character varying");
            let readable = found == want
                || (want == "text" && varchar && !found.ends_with("[]"))
                || (want == "text[]" && varchar && found.ends_with("[]"));
            let fix = "or move the table aside and let the gateway create its own";
            if !readable {
                let collate = if want == "text" { " COLLATE \"C\"" } else { "" };
                bail!("table {table}: column {column} is {found}, but partner-gateway reads it as {want} (the opt-outs in it would not be enforced); convert it (ALTER TABLE {table} ALTER COLUMN {column} TYPE {want}{collate}) {fix}");
            }
            if i == 0 && !not_null {
                bail!("table {table}: column {column} allows NULL, and a row without it enforces nothing; ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL {fix}");
            }
            if !bytewise {
                bail!("table {table}: column {column} has a collation that takes different ids for one (case-insensitive, say), so one customer's opt-out can replace or remove another's; ALTER TABLE {table} ALTER COLUMN {column} TYPE text COLLATE \"C\" {fix}");
            }
        }
    }
    check_change_logging(client, &tables.optouts).await
}

/// The triggers that log changes written by SQL (see the module's docs) must all be there and
/// fire always, and no table may inherit from the opt-out table (rows written to a child fire
/// no trigger of it): otherwise such a change reaches the replicas only at their next full read
/// of the table, and the opt-out is not enforced until then.
async fn check_change_logging<C>(client: &C, optouts: &str) -> Result<()>
where
    C: tokio_postgres::GenericClient + Sync,
{
    let names: Vec<String> = ["rlock", "rlog", "tlock", "tlog"]
        .iter()
        .map(|t| format!("{optouts}_fw_{t}"))
        .collect();
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) \
                     AND tgname = ANY($2) AND tgenabled = 'A')::int4, \
                    (SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass($1))::int4",
            &[&optouts, &names],
        )
        .await
        .db_context("cannot read the opt-out table's triggers")?;
    let (enabled, children): (i32, i32) = (row.get(0), row.get(1));
    if enabled as usize != names.len() {
        let enable: Vec<String> = names
            .iter()
            .map(|n| format!("ALTER TABLE {optouts} ENABLE ALWAYS TRIGGER {n};"))
            .collect();
        bail!("table {optouts}: the triggers that log opt-outs written by SQL are missing or not enabled (disabled, say), so such an opt-out would reach the replicas only at their next full read; {}", enable.join(" "));
    }
    if children > 0 {
        bail!("table {optouts} has child tables (INHERITS or partitions): rows written to them are not logged as changes, so their opt-outs would reach the replicas only at their next full read; move them aside");
    }
    Ok(())
}
