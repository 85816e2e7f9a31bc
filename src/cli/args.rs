//! Arguments several subcommands share, defined once and flattened into each
//! (`#[command(flatten)]`), and the value parsers that turn their text into typed values, so
//! a bad value is a usage error from clap (exit 2) before any work starts.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// `--policy DIR`: the policy directory (default `policy/`).
#[derive(Args, Debug, Clone)]
pub struct PolicyArg {
    /// The policy directory.
    #[arg(long, default_value = "policy/")]
    pub policy: PathBuf,
}

/// `--admin URL --token-env NAME`: a running gateway's admin listener and its token.
#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// The admin listener, e.g. http://127.0.0.1:9090.
    #[arg(long)]
    pub admin: String,
    /// Environment variable holding the admin token.
    #[arg(long, default_value = DEFAULT_ADMIN_TOKEN_ENV)]
    pub token_env: String,
}

/// Default environment variable holding the admin token.
pub const DEFAULT_ADMIN_TOKEN_ENV: &str = "PARTNER_GATEWAY_ADMIN_TOKEN";

/// `--policy DIR --ledger DIR`: the disclosure ledger directory, by default the one the
/// policy's `gateway.yaml` names.
#[derive(Args, Debug, Clone)]
pub struct LedgerArgs {
    #[command(flatten)]
    pub policy: PolicyArg,
    /// The ledger directory (default: the one gateway.yaml names).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
}

/// `--since DATE --until DATE`, as the ledger writes times (see [`since`] and [`until`]).
#[derive(Args, Debug, Clone)]
pub struct PeriodArgs {
    /// Only records at or after DATE (an RFC 3339 date or date-time).
    #[arg(long, value_name = "DATE", value_parser = since)]
    pub since: Option<String>,
    /// Only records up to the end of DATE (an RFC 3339 date: that whole UTC day; or a
    /// date-time: that instant included).
    #[arg(long, value_name = "DATE", value_parser = until)]
    pub until: Option<String>,
}

impl PeriodArgs {
    /// Why the period selects nothing, if it does: `--since` after `--until` (a usage error,
    /// like a DATE that cannot be read).
    pub fn empty(&self) -> Option<String> {
        match (&self.since, &self.until) {
            (Some(since), Some(until)) if since > until => Some(format!(
                "--since ({since}) is after --until ({until}): the period selects nothing"
            )),
            _ => None,
        }
    }
}

/// A `--customer` id: not empty.
pub fn customer_id(id: &str) -> anyhow::Result<String> {
    anyhow::ensure!(!id.is_empty(), "a customer id is not empty");
    Ok(id.to_string())
}

/// `--format text|json`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextOrJson {
    #[default]
    Text,
    Json,
}

/// `audit report --format md|json|html`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportFormat {
    #[default]
    Md,
    Json,
    Html,
}

/// `optouts export --format ndjson|csv`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    #[default]
    Ndjson,
    Csv,
}

impl From<ExportFormat> for gateway_core::optout::bulk::Format {
    fn from(format: ExportFormat) -> Self {
        match format {
            ExportFormat::Ndjson => gateway_core::optout::bulk::Format::Ndjson,
            ExportFormat::Csv => gateway_core::optout::bulk::Format::Csv,
        }
    }
}

/// A `--since` DATE: a date alone is the start of that UTC day.
pub fn since(date: &str) -> anyhow::Result<String> {
    super::audit::bound(date, false)
}

/// An `--until` DATE: a date alone is the end of that UTC day; a date-time is included.
pub fn until(date: &str) -> anyhow::Result<String> {
    super::audit::bound(date, true)
}

/// A `--ttl`: `300`, `300s`, `5m`, `1h` (1 s to 24 h).
pub fn ttl(text: &str) -> anyhow::Result<Duration> {
    super::token::parse_ttl(text)
}

/// A `--header NAME: VALUE`: the name lowercased, both sides trimmed.
pub fn header(arg: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = arg
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("{arg:?} is not `name: value`"))?;
    Ok((name.trim().to_ascii_lowercase(), value.trim().to_string()))
}
