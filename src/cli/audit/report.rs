//! `audit report [--since DATE] [--until DATE] [--format md|json|html]`: records of
//! processing per recipient, from the policy and the ledger.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use gateway_core::ledger::report::{self, ReportBuilder};
use gateway_core::policy::Policy;

pub fn run(
    policy: &Policy,
    files: &[PathBuf],
    since: Option<String>,
    until: Option<String>,
    format: &str,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if !matches!(format, "md" | "json" | "html") {
        bail!("unknown format {format:?} (expected md, json or html)");
    }
    let mut builder = ReportBuilder::new(since, until);
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
        "json" => writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?,
        "html" => write!(out, "{}", report::html::html(&r))?,
        _ => write!(out, "{}", report::markdown(&r))?,
    }
    Ok(ExitCode::SUCCESS)
}
