/*!
`audit`: reading the disclosure ledger back. `verify` checks the chain and the checkpoint
signatures; `who-received` lists the disclosures that carried one customer's record;
`report` summarises processing per recipient. All of them stream the files line by line, so
memory does not grow with the ledger.
*/
pub mod report;
pub mod verify;
pub mod who;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::cli::args::{LedgerArgs, PeriodArgs, PolicyArg, ReportFormat, TextOrJson};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check ledger files (hash chain and signed checkpoints): exit 0, or 1 naming FILE:LINE
    /// of the first break; 2 when the ledger or the JWKS cannot be read.
    Verify {
        /// Ledger files or directories (default: the ledger directory in gateway.yaml).
        paths: Vec<PathBuf>,
        /// Check checkpoint signatures with this JWKS (a file, or an http:// or https:// URL).
        #[arg(long)]
        jwks: Option<String>,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Every disclosure that carried this customer's record (the ledger key must be in the
    /// environment).
    WhoReceived {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[arg(long, value_parser = super::args::customer_id)]
        customer: String,
        #[command(flatten)]
        period: PeriodArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Records of processing per recipient (GDPR Art. 30 style).
    Report {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        period: PeriodArgs,
        #[arg(long, value_enum, default_value = "md")]
        format: ReportFormat,
    },
}

/// Runs one `audit` subcommand.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let period = match &command {
        Command::WhoReceived { period, .. } | Command::Report { period, .. } => period.empty(),
        Command::Verify { .. } => None,
    };
    if let Some(why) = period {
        use std::io::Write as _;
        let _ = writeln!(err, "error: {why}");
        return Ok(ExitCode::from(2));
    }
    match command {
        Command::Verify {
            paths,
            jwks,
            ledger,
        } => {
            let paths = if paths.is_empty() {
                ledger_dir(&ledger.policy.policy, ledger.ledger.as_deref()).map(|d| vec![d])
            } else {
                Ok(paths)
            };
            let checked = paths.and_then(|p| verify::run(&p, jwks.as_deref(), &mut out, &mut err));
            // Exit 1 says the chain is broken; what kept the check from running (a ledger or
            // a JWKS that cannot be read or fetched) is 2, so that no script takes one for the
            // other.
            checked.or_else(|e| {
                use std::io::Write as _;
                let _ = writeln!(err, "partner-gateway: error: {e:#}");
                Ok(ExitCode::from(2))
            })
        }
        Command::WhoReceived {
            ledger,
            customer,
            period,
            format,
        } => {
            let (dir, key_env) = who_received_ledger(&ledger)?;
            let query = who::Query {
                customer: &customer,
                since: period.since,
                until: period.until,
                format,
            };
            let files = ledger_files(&[dir])?;
            let key = who::key_from_env(&key_env)?;
            who::run(&files, &key, &query, &mut out)
        }
        Command::Report {
            ledger,
            period,
            format,
        } => {
            let PolicyArg { policy } = &ledger.policy;
            let loaded = crate::loader::load(policy, None)
                .map_err(|d| crate::loader::diagnostics_error(&d))?;
            let files = ledger_files(&[ledger_dir(policy, ledger.ledger.as_deref())?])?;
            report::run(&loaded.policy, &files, period, format, &mut out)
        }
    }
}

/// `who-received`'s ledger directory and the variable holding its subject key: `--ledger`,
/// or the policy's `ledger` section, read without failing on other policy errors.
fn who_received_ledger(args: &LedgerArgs) -> anyhow::Result<(PathBuf, String)> {
    let policy = &args.policy.policy;
    let config = crate::loader::load(policy, None)
        .ok()
        .and_then(|l| l.policy.gateway.ledger);
    let dir = match (&args.ledger, &config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(c)) => c.path.clone(),
        (None, None) => ledger_dir(policy, None)?,
    };
    let key_env = config.map_or_else(
        || gateway_core::ledger::DEFAULT_SUBJECT_KEY_ENV.to_string(),
        |c| c.subject_key_env,
    );
    Ok((dir, key_env))
}

/// The ledger directory: `--ledger`, or the one `gateway.yaml` names.
pub fn ledger_dir(policy: &Path, ledger: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = ledger {
        return Ok(dir.to_path_buf());
    }
    let loaded =
        crate::loader::load(policy, None).map_err(|d| crate::loader::diagnostics_error(&d))?;
    match loaded.policy.gateway.ledger {
        Some(l) => Ok(l.path),
        None => bail!(
            "{}/gateway.yaml has no `ledger` section (or pass --ledger DIR)",
            policy.display()
        ),
    }
}

/// The ledger files named by `paths` (files, or directories holding them), in chain order.
pub fn ledger_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            refuse_unreadable_names(path)?;
            let names = crate::ledger::ledger_files(path)?;
            files.extend(names.into_iter().map(|n| path.join(n)));
        } else {
            files.push(path.clone());
        }
    }
    // A file named twice (a directory and a file in it, overlapping globs) is read once.
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| {
        use std::os::unix::fs::MetadataExt;
        let id = std::fs::metadata(f).map(|m| (m.dev(), m.ino()));
        id.map_or(true, |id| seen.insert(id))
    });
    // A shell glob sorts `-10` before `-2`: put ledger files in chain order when every name
    // is a ledger file name.
    let keys: Option<Vec<_>> = files
        .iter()
        .map(|p| gateway_core::ledger::parse_file_name(p.file_name()?.to_str()?))
        .collect();
    if let Some(keys) = keys {
        let mut keyed: Vec<_> = keys.into_iter().zip(files).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        files = keyed.into_iter().map(|(_, f)| f).collect();
    }
    if files.is_empty() {
        bail!("no ledger files (ledger-<date>-<n>.jsonl) found");
    }
    Ok(files)
}

/// A name of the ledger's in `dir` that is no regular file (a dangling link, a FIFO, a
/// directory) is an error: skipped, it would leave a gap `verify` reports as removed lines, or
/// an answer from `who-received` without that file's disclosures.
fn refuse_unreadable_names(dir: &Path) -> anyhow::Result<()> {
    let listing =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in listing {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let ledger_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| gateway_core::ledger::parse_file_name(n).is_some());
        if ledger_name && !path.is_file() {
            bail!(
                "{} is named like a ledger file but is no regular file that can be read",
                path.display()
            );
        }
    }
    Ok(())
}

/// Calls `each(line_number, bytes, complete)` for every line of `file` (without its newline);
/// `complete` is false for a last line that has no newline.
pub fn each_line(
    file: &Path,
    mut each: impl FnMut(u64, &[u8], bool) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    // Opened without blocking, so that a FIFO in the ledger's place is refused below instead
    // of waiting for a writer; a regular file reads the same either way.
    use std::os::unix::fs::OpenOptionsExt as _;
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file)
        .with_context(|| format!("cannot open {}", file.display()))?;
    if !handle.metadata()?.is_file() {
        bail!("{} is not a regular file", file.display());
    }
    let mut reader = std::io::BufReader::with_capacity(1 << 20, handle);
    let mut buf = Vec::with_capacity(1024);
    let mut number = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        let complete = buf.last() == Some(&b'\n');
        let bytes = if complete {
            &buf[..buf.len() - 1]
        } else {
            &buf[..]
        };
        if !each(number, bytes, complete)? {
            return Ok(());
        }
    }
}

/// A `--since`/`--until` DATE (RFC 3339 date or date-time) as the ledger writes times (UTC,
/// milliseconds), so bounds compare as text; both are included. A date alone is the start of
/// that UTC day for `--since`, and its last millisecond for `--until` (`end`); a date-time is
/// that millisecond.
pub fn bound(date: &str, end: bool) -> anyhow::Result<String> {
    use chrono::{DateTime, Datelike, Days, NaiveDate, SecondsFormat, Utc};
    // Ledger times are four-digit years: a bound past them would not compare as text.
    let text = |t: DateTime<Utc>| match t.year() {
        0..=9999 => Ok(t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        10000.. if end => Ok("9999-12-31T23:59:59.999Z".to_string()),
        _ => anyhow::bail!("DATE {date:?} is outside the years 0000 to 9999"),
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(date) {
        let t = t.with_timezone(&Utc);
        let ms = t.timestamp_millis();
        return text(DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(t));
    }
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| anyhow::anyhow!("invalid DATE {date:?}: expected an RFC 3339 date (2026-11-29) or date-time (2026-11-29T10:00:00Z)"))?;
    let day = if end {
        day.checked_add_days(Days::new(1)).unwrap_or(day)
    } else {
        day
    };
    let start = day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    text(if end {
        start - chrono::Duration::milliseconds(1)
    } else {
        start
    })
}

#[cfg(test)]
mod tests;
