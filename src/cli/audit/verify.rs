//! `audit verify PATH... [--jwks FILE_OR_URL]`: recomputes the chain across the files and
//! checks the checkpoints (their signatures too, with a key set). Exit 0, or 1 with
//! `FILE:LINE: reason` for the first break (an error here, such as a JWKS that cannot be
//! fetched, is exit 2: see `audit::run`).
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use gateway_core::ledger::verify::{Break, ChainVerifier};

/// Runs the check; prints a summary (exit 0) or the first break (exit 1).
pub fn run(
    paths: &[PathBuf],
    jwks: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let files = super::ledger_files(paths)?;
    let jwks_json = jwks.map(crate::cli::token::load_jwks).transpose()?;
    let mut verifier =
        ChainVerifier::new(jwks_json.as_deref()).map_err(|e| anyhow::anyhow!("--jwks: {e}"))?;
    let mut broken: Option<Break> = None;
    for file in &files {
        let name = file.display().to_string();
        super::each_line(file, |number, bytes, complete| {
            let result = if complete {
                verifier.line(&name, number, bytes)
            } else {
                Err(verifier.torn(&name, number))
            };
            match result {
                Ok(()) => Ok(true),
                Err(b) => {
                    broken = Some(b);
                    Ok(false)
                }
            }
        })?;
        if broken.is_some() {
            break;
        }
    }
    let result = match broken {
        Some(b) => Err(b),
        None => verifier.finish(),
    };
    match result {
        // The verdict is the exit code: a report that cannot be printed does not change it.
        Err(b) => {
            if let Err(e) = writeln!(out, "{b}") {
                let _ = writeln!(err, "partner-gateway: cannot write the report ({e}): {b}");
            }
            Ok(ExitCode::from(1))
        }
        Ok(s) => {
            let subject_lines = match s.subject_lines {
                0 => String::new(),
                n => format!(", {n} stream subjects lines"),
            };
            let written = writeln!(
                out,
                "ok: {} lines in {} files ({} records, {} outcomes{subject_lines}, {} checkpoints), last seq {}, head {}",
                s.lines,
                files.len(),
                s.records,
                s.outcomes,
                s.checkpoints,
                s.last_seq,
                s.head
            );
            if let Err(e) = written {
                let _ = writeln!(
                    err,
                    "partner-gateway: cannot write the report ({e}); the chain verified"
                );
            }
            match jwks {
                Some(src) => {
                    let _ = writeln!(
                        out,
                        "{} checkpoint signatures verified with the keys from {src}",
                        s.signatures_verified
                    );
                    let _ = writeln!(out, "{}", unsigned_tail(&s));
                }
                None => {
                    let _ = writeln!(
                        err,
                        "note: checkpoint signatures not checked (give --jwks FILE_OR_URL)"
                    );
                }
            }
            if s.without_outcome > 0 {
                let _ = writeln!(err, "note: {} records have no outcome line (requests under way, partners no byte reached, or an outcome the ledger could not write)", s.without_outcome);
            }
            if s.lines > 0 && !s.ends_with_checkpoint {
                let _ = writeln!(err, "note: the last line is not a checkpoint (the gateway is running, or it stopped without shutting down)");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What the signatures vouch for: every line through the last verified checkpoint. The lines
/// after it are only hash-chained, so whoever can write the files can rewrite them (and a
/// young ledger has no checkpoint yet); said on every run so no one reads more into `ok`.
fn unsigned_tail(s: &gateway_core::ledger::verify::Summary) -> String {
    let after = s.last_seq - s.signed_through;
    match (s.signed_through, after) {
        _ if s.last_seq == 0 => "signed: no line (the ledger is empty)".to_string(),
        (_, 0) => format!(
            "signed: every line, through the checkpoint at seq {} (whole files or lines cut after a checkpoint would not show: compare its through and hash with the last one you kept)",
            s.last_seq
        ),
        (0, _) => format!(
            "signed: no line yet; all {after} lines are only hash-chained: whoever can write the files can rewrite them until a checkpoint is signed"
        ),
        (through, _) => format!(
            "signed: through seq {through}; the {after} lines after it are only hash-chained: whoever can write the files can rewrite them until the next checkpoint"
        ),
    }
}

#[cfg(test)]
mod tests {
    use gateway_core::ledger::verify::Summary;

    /// An empty ledger is not "signed through seq 0": nothing in it is signed.
    #[test]
    fn an_empty_ledger_is_not_called_signed() {
        let empty = Summary::default();
        assert_eq!(
            super::unsigned_tail(&empty),
            "signed: no line (the ledger is empty)"
        );
        let whole = Summary {
            last_seq: 7,
            signed_through: 7,
            ..Summary::default()
        };
        assert!(super::unsigned_tail(&whole)
            .starts_with("signed: every line, through the checkpoint at seq 7"));
    }
}
