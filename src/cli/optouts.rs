/*!
`partner-gateway optouts import|export|count|migrate`: bulk work on the opt-out data the
policy names: the embedded store (`optouts.path`; import needs the gateway stopped) or the
PostgreSQL database (`optouts.postgres`; import, export and count stream with `COPY` while
the gateways run, and every replica reloads after an import).

- `import FILE`: CSV (`customer_id,scope`) or NDJSON, detected from the extension or content
  (or forced with a format). All or nothing: any bad line and nothing is imported; every error
  is printed as `FILE:LINE: message`. Import needs the store to itself: while a gateway holds it,
  the import is refused (use the admin API then).
- `export`: every opt-out, sorted by customer id, as NDJSON (default) or CSV on stdout.
- `count`: customers per scope and totals.
- `migrate`: creates the database tables if missing (the gateway also does at start).
*/

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use gateway_core::optout::bulk::{self, Format};

use gateway_core::optout::OptOutSet;
use gateway_core::policy::OptOutStoreConfig;

use crate::cli::args::{ExportFormat, PolicyArg};
use crate::optout::postgres::bulk as pg_bulk;
use crate::optout::OptOutStore;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Import a CSV (`customer_id,scope`) or NDJSON file: all or nothing (embedded store: the gateway must be stopped).
    Import {
        #[command(flatten)]
        policy: PolicyArg,
        file: PathBuf,
    },
    /// Write every opt-out to stdout.
    Export {
        #[command(flatten)]
        policy: PolicyArg,
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormat,
    },
    /// Count customers per scope.
    Count(PolicyArg),
    /// Create or update the PostgreSQL opt-out tables (idempotent; the gateway also does at start).
    Migrate(PolicyArg),
}

/// Where the policy keeps opt-outs (validated as `check` would).
fn optout_config(policy: &Path) -> Result<OptOutStoreConfig> {
    let loaded =
        crate::loader::load(policy, None).map_err(|d| crate::loader::diagnostics_error(&d))?;
    loaded.policy.gateway.optouts.ok_or_else(|| {
        anyhow::anyhow!("{}/gateway.yaml has no `optouts` section", policy.display())
    })
}

/// Runs one `optouts` subcommand.
pub fn run(command: Command) -> Result<ExitCode> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match command {
        Command::Import { policy, file } => import_into(
            &optout_config(&policy.policy)?,
            &file,
            None,
            &mut out,
            &mut err,
        )?,
        Command::Export { policy, format } => {
            export_from(&optout_config(&policy.policy)?, format.into(), &mut out)?
        }
        Command::Count(policy) => count_from(&optout_config(&policy.policy)?, &mut out)?,
        Command::Migrate(policy) => migrate(&optout_config(&policy.policy)?, &mut out)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `optouts import`: prints `imported N opt-outs (M customers)`, or every error and fails.
/// `file` `-` reads standard input.
pub fn import(store_dir: &Path, file: &Path, format: Option<Format>) -> Result<()> {
    import_to(
        store_dir,
        file,
        format,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
}

/// [`import`] writing to the given streams.
pub fn import_to(
    store_dir: &Path,
    file: &Path,
    format: Option<Format>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let config = OptOutStoreConfig::Embedded {
        path: store_dir.to_path_buf(),
    };
    import_into(&config, file, format, out, err)
}

/// Parses `file` (every error printed, nothing imported on any), then imports it into the
/// embedded store or the database `config` names.
pub fn import_into(
    config: &OptOutStoreConfig,
    file: &Path,
    format: Option<Format>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let incoming = parse_file(file, format, err)?;
    let summary = match config {
        OptOutStoreConfig::Embedded { path } => {
            let store = OptOutStore::open(path)
                .with_context(|| format!("cannot open the opt-out store {}", path.display()))?;
            store
                .import(&incoming)
                .with_context(|| format!("nothing imported into {}", path.display()))?
        }
        OptOutStoreConfig::Postgres(pg) => pg_bulk::with_client(pg, async |client, tables| {
            pg_bulk::import(client, tables, &incoming).await
        })
        .with_context(|| format!("nothing imported into table {}", pg.table))?,
    };
    writeln!(
        out,
        "imported {} opt-outs ({} customers)",
        summary.opt_outs, summary.customers
    )?;
    Ok(())
}

fn parse_file(file: &Path, format: Option<Format>, err: &mut dyn Write) -> Result<OptOutSet> {
    let shown = file.display().to_string();
    let content = if shown == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf)
            .context("cannot read standard input")?;
        buf
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {shown}"))?
    };
    let format = format.unwrap_or_else(|| Format::detect(&shown, &content));
    match bulk::parse(&content, format) {
        Ok(set) => Ok(set),
        Err(errors) => {
            for e in &errors.errors {
                writeln!(err, "{shown}:{}: {}", e.line, e.message)?;
            }
            if errors.omitted > 0 {
                writeln!(err, "{shown}: ... and {} more errors", errors.omitted)?;
            }
            bail!(
                "nothing imported: {} error(s) in {shown} ({} format)",
                errors.total(),
                format.name()
            );
        }
    }
}

/// `optouts export` from either backend.
pub fn export_from(config: &OptOutStoreConfig, format: Format, out: &mut dyn Write) -> Result<()> {
    match config {
        OptOutStoreConfig::Embedded { path } => export(path, format, out),
        OptOutStoreConfig::Postgres(pg) => {
            pg_bulk::with_client(pg, async |client, tables| {
                pg_bulk::export(client, tables, format, out).await
            })?;
            Ok(())
        }
    }
}

/// `optouts count` from either backend.
pub fn count_from(config: &OptOutStoreConfig, out: &mut dyn Write) -> Result<()> {
    match config {
        OptOutStoreConfig::Embedded { path } => count_to(path, out),
        OptOutStoreConfig::Postgres(pg) => {
            let (per_scope, opt_outs, customers) =
                pg_bulk::with_client(pg, async |client, tables| {
                    pg_bulk::count(client, tables).await
                })?;
            for (scope, n) in per_scope {
                writeln!(out, "{scope}\t{n}")?;
            }
            writeln!(out, "total\t{opt_outs} opt-outs ({customers} customers)")?;
            Ok(())
        }
    }
}

/// `optouts migrate`: creates or updates the database tables (idempotent). The embedded store
/// needs no migration.
pub fn migrate(config: &OptOutStoreConfig, out: &mut dyn Write) -> Result<()> {
    match config {
        OptOutStoreConfig::Embedded { path } => {
            writeln!(
                out,
                "the embedded opt-out store {} needs no migration",
                path.display()
            )?;
        }
        OptOutStoreConfig::Postgres(pg) => {
            let tables = pg_bulk::with_client(pg, async |_, tables| Ok(tables.clone()))?;
            writeln!(
                out,
                "opt-out tables {}, {}, {} are at schema version {}",
                tables.optouts,
                tables.changes,
                tables.seq,
                crate::optout::postgres::schema::SCHEMA_VERSION
            )?;
        }
    }
    Ok(())
}

/// `optouts export`: every opt-out in `format`, sorted by customer id.
pub fn export(store_dir: &Path, format: Format, out: &mut dyn Write) -> Result<()> {
    let store = OptOutStore::open_read_only(store_dir)
        .with_context(|| format!("cannot open the opt-out store {}", store_dir.display()))?;
    store.export(format, out)?;
    Ok(())
}

/// `optouts count`: one `SCOPE<TAB>CUSTOMERS` line per scope in use, then the totals.
pub fn count(store_dir: &Path) -> Result<()> {
    count_to(store_dir, &mut std::io::stdout().lock())
}

/// [`count`] writing to `out`.
pub fn count_to(store_dir: &Path, out: &mut dyn Write) -> Result<()> {
    let store = OptOutStore::open_read_only(store_dir)
        .with_context(|| format!("cannot open the opt-out store {}", store_dir.display()))?;
    let set = store.read()?;
    for (scope, n) in set.count_by_scope().into_iter().filter(|(_, n)| *n > 0) {
        writeln!(out, "{scope}\t{n}")?;
    }
    writeln!(
        out,
        "total\t{} opt-outs ({} customers)",
        set.opt_out_count(),
        set.len()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
