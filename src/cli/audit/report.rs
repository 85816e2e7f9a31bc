//! `audit report [--since DATE] [--until DATE] [--format md|json|html]`: records of
//! processing per recipient, from the policy and the ledger.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use gateway_core::ledger::report::{self, ReportBuilder};
use gateway_core::policy::Policy;

use crate::cli::args::{PeriodArgs, ReportFormat};

pub fn run(
    policy: &Policy,
    files: &[PathBuf],
    period: PeriodArgs,
    format: ReportFormat,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let mut builder = ReportBuilder::new(policy, period.since, period.until);
    for file in files {
        super::each_line(file, |_, bytes, complete| {
            if complete {
                builder.line(bytes);
            }
            Ok(true)
        })?;
    }
    let r = builder.finish(policy);
    match format {
        ReportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?,
        ReportFormat::Html => write!(out, "{}", report::html::html(&r))?,
        ReportFormat::Md => write!(out, "{}", report::markdown(&r))?,
    }
    Ok(ExitCode::SUCCESS)
}
