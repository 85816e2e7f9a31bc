//! Bulk work on the opt-out database for the `optouts` commands: `migrate`, `import` (binary
//! `COPY` into a staging table, merged in one transaction), `export` (binary `COPY` out,
//! streamed) and `count`; and a one-shot load for `explain`.
use std::io::Write;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use gateway_core::optout::bulk::{self, Format};
use gateway_core::optout::{OptOutSet, Scope};
use gateway_core::policy::PostgresOptOuts;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::connect::{within, DbContext, Tables, Target};
use super::schema;
use crate::optout::ImportSummary;

/// How long one write of an import's upload may wait for the database to take it.
const COPY_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `work` with a connection to the database `config` names (on a runtime of its own),
/// after making sure the tables exist.
pub fn with_client<T>(
    config: &PostgresOptOuts,
    work: impl AsyncFnOnce(&mut Client, &Tables) -> Result<T>,
) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let target = Target::from_env(config, "partner-gateway-cli")?;
    let tables = Tables::new(&config.table);
    runtime.block_on(async {
        let mut client = target.connect().await?;
        schema::migrate(&mut client, &tables).await?;
        work(&mut client, &tables).await
    })
}

/// Adds every opt-out in `incoming` in one transaction, and tells every replica to reload.
pub async fn import(
    client: &mut Client,
    tables: &Tables,
    incoming: &OptOutSet,
) -> Result<ImportSummary> {
    let tx = client
        .transaction()
        .await
        .db_context("cannot start the import")?;
    tx.execute(super::schema::GATEWAY_WRITER, &[&tables.optouts])
        .await
        .db_context("cannot start the import")?;
    tx.batch_execute(
        "CREATE TEMP TABLE partner_gateway_import (customer_id text, scope text) ON COMMIT DROP",
    )
    .await
    .db_context("cannot create the staging table")?;
    // The upload goes to the staging table before the change counter is locked: every writer
    // of the fleet waits for that lock, and an upload that stalls (a slow or silent path) must
    // not hold them up. Each write, and the end, is bounded for the same reason.
    let sink = tx
        .copy_in("COPY partner_gateway_import (customer_id, scope) FROM STDIN (FORMAT binary)")
        .await
        .db_context("cannot start COPY")?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT]);
    futures_util::pin_mut!(writer);
    for (id, scopes) in incoming.iter() {
        for scope in scopes.iter() {
            let scope = scope.as_str();
            let write = async {
                writer
                    .as_mut()
                    .write(&[&id, &scope])
                    .await
                    .db_context("COPY failed")
            };
            within(COPY_STALL, "COPY failed", write).await?;
        }
    }
    let finish = writer.finish();
    within(COPY_STALL, "COPY failed", async {
        finish.await.db_context("COPY failed")
    })
    .await?;
    let change: i64 = tx
        .query_one(
            &format!("UPDATE {} SET last = last + 1 RETURNING last", tables.seq),
            &[],
        )
        .await
        .db_context("cannot lock the change log")?
        .get(0);
    tx.execute(
        &format!(
            "INSERT INTO {} (customer_id, scope) SELECT DISTINCT customer_id, scope FROM partner_gateway_import ON CONFLICT DO NOTHING",
            tables.optouts
        ),
        &[],
    )
    .await
    .db_context("cannot merge the import")?;
    tx.execute(
        &format!(
            "INSERT INTO {} (id, op) VALUES ($1, 'reload')",
            tables.changes
        ),
        &[&change],
    )
    .await
    .db_context("cannot log the import")?;
    tx.execute(
        "SELECT pg_notify($1, $2::bigint::text)",
        &[&tables.changes, &change],
    )
    .await
    .db_context("cannot notify the replicas")?;
    let totals = tx
        .query_one(
            &format!(
                "SELECT count(DISTINCT customer_id), count(*) FROM {}",
                tables.optouts
            ),
            &[],
        )
        .await
        .db_context("cannot count")?;
    tx.commit().await.db_context("cannot commit the import")?;
    Ok(ImportSummary {
        customers: incoming.len(),
        opt_outs: incoming.opt_out_count(),
        total_customers: totals.get::<_, i64>(0) as usize,
        total_opt_outs: totals.get::<_, i64>(1) as u64,
    })
}

/// Writes every opt-out, sorted by customer id, streamed. Returns the number of customers.
pub async fn export(
    client: &mut Client,
    tables: &Tables,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64> {
    let copy = format!(
        "COPY (SELECT customer_id, scope FROM {} ORDER BY customer_id, scope) TO STDOUT (FORMAT binary)",
        tables.optouts
    );
    let stream = client
        .copy_out(&copy)
        .await
        .db_context("cannot start COPY")?;
    let rows = BinaryCopyOutStream::new(stream, &[Type::TEXT, Type::TEXT]);
    futures_util::pin_mut!(rows);
    let mut buf = bulk::export_header(format).to_vec();
    let mut current: Option<String> = None;
    let mut scopes: Vec<Scope> = Vec::new();
    let mut customers = 0u64;
    let mut emit = |id: &str, scopes: &mut Vec<Scope>, buf: &mut Vec<u8>| {
        if !scopes.is_empty() {
            bulk::export_record(format, id, scopes.iter(), buf);
            customers += 1;
        }
        scopes.clear();
    };
    while let Some(row) = rows.next().await {
        let row = row.db_context("COPY failed")?;
        let (id, scope): (&str, &str) = (
            row.try_get(0).db_context("cannot read a customer id")?,
            row.try_get(1).db_context("cannot read a scope")?,
        );
        if current.as_deref() != Some(id) {
            if let Some(previous) = &current {
                emit(previous, &mut scopes, &mut buf);
            }
            current = Some(id.to_string());
        }
        if let Ok(scope) = Scope::parse(scope) {
            scopes.push(scope);
        }
        if buf.len() >= 1 << 16 {
            out.write_all(&buf).context("cannot write the export")?;
            buf.clear();
        }
    }
    if let Some(previous) = &current {
        emit(previous, &mut scopes, &mut buf);
    }
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .context("cannot write the export")?;
    Ok(customers)
}

/// Customers per scope (scopes in use, sorted), opt-outs, customers.
pub async fn count(client: &mut Client, tables: &Tables) -> Result<(Vec<(String, u64)>, u64, u64)> {
    let per_scope = client
        .query(
            &format!(
                "SELECT scope, count(*) FROM {} GROUP BY scope ORDER BY scope",
                tables.optouts
            ),
            &[],
        )
        .await
        .db_context("cannot count")?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
        .collect();
    let totals = client
        .query_one(
            &format!(
                "SELECT count(*), count(DISTINCT customer_id) FROM {}",
                tables.optouts
            ),
            &[],
        )
        .await
        .db_context("cannot count")?;
    Ok((
        per_scope,
        totals.get::<_, i64>(0) as u64,
        totals.get::<_, i64>(1) as u64,
    ))
}

/// The whole set, loaded once (for `explain`).
pub fn load_once(config: &PostgresOptOuts) -> Result<OptOutSet> {
    with_client(config, async |client, tables| {
        Ok(super::sync::load_set(client, tables).await?.0)
    })
}
