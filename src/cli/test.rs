//! `test`: runs the policy tests in `<policy>/tests/*.yaml` (requests and what the partner
//! must receive) against the policy, with the same core decision as the proxy. Prints each
//! failure as `FILE:LINE: FAIL name: message` with a diff; exit 0 when all pass, 1 otherwise
//! (also for an invalid policy or an unreadable test file).
use crate::cli::out::{outln, Out};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use gateway_core::policy::Policy;
use gateway_core::policytest::{self, Case};

use crate::loader;

/// The YAML files of a directory (`<policy>/tests`, or a samples directory), sorted by name.
pub fn test_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The policy as `check` validates it, with the test pseudonymisation keys (never real secrets).
pub fn load_for_tests(dir: &Path) -> Result<Policy, anyhow::Error> {
    let loaded = loader::load(dir, None).map_err(|d| loader::diagnostics_error(&d))?;
    let mut policy = loaded.policy;
    for (id, partner) in policy.partners.iter_mut() {
        if let Some(p) = Arc::get_mut(partner) {
            if p.pseudonymize_key_env.is_some() {
                p.pseudonymize_key = Some(policytest::test_pseudonymize_key(id));
            }
        }
    }
    Ok(policy)
}

/// Parses one test file; errors are `FILE:LINE: message` lines.
pub fn read_cases(path: &Path) -> Result<Vec<Case>, Vec<String>> {
    let shown = path.display();
    let text =
        crate::loader::read_policy_string(path).map_err(|e| vec![format!("{shown}:1: {e}")])?;
    policytest::parse(&text).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{shown}:{}: {}", e.line, e.message))
            .collect()
    })
}

/// Reads a file a case names, relative to the test file's directory.
pub fn reader(test_file: &Path) -> impl Fn(&str) -> Result<Vec<u8>, String> + '_ {
    move |name: &str| {
        let base = test_file.parent().unwrap_or(Path::new("."));
        crate::loader::read_policy_file(&base.join(name)).map_err(|e| e.to_string())
    }
}

fn run_tests(dir: &Path, out: &mut Out) -> ExitCode {
    let policy = match load_for_tests(dir) {
        Ok(p) => p,
        Err(e) => {
            outln!(out, "{e:#}");
            return ExitCode::from(1);
        }
    };
    let files = match test_files(&dir.join("tests")) {
        Ok(f) => f,
        Err(e) => {
            outln!(
                out,
                "{}: cannot list tests: {e}",
                dir.join("tests").display()
            );
            return ExitCode::from(1);
        }
    };
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, 0usize);
    for file in &files {
        let cases = match read_cases(file) {
            Ok(c) => c,
            Err(lines) => {
                for l in lines {
                    outln!(out, "{l}");
                }
                broken += 1;
                continue;
            }
        };
        let read = reader(file);
        for case in &cases {
            match policytest::run_case(&policy, case, &read) {
                Ok(()) => passed += 1,
                Err(f) => {
                    failed += 1;
                    outln!(
                        out,
                        "{}:{}: FAIL {}: {}",
                        file.display(),
                        f.line,
                        case.name,
                        f.message
                    );
                    if let Some(diff) = f.diff {
                        for line in diff.lines() {
                            outln!(out, "    {line}");
                        }
                    }
                }
            }
        }
    }
    if files.is_empty() {
        outln!(out, "{}: no policy tests", dir.join("tests").display());
    }
    let broken_note = if broken > 0 {
        format!(", {broken} unreadable test file(s)")
    } else {
        String::new()
    };
    outln!(
        out,
        "{}: {passed} passed, {failed} failed{broken_note}",
        dir.join("tests").display()
    );
    if failed > 0 || broken > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `test DIR`: exit 0 when every policy test passes, 1 listing each failure.
pub fn run(dir: &Path) -> ExitCode {
    let mut out = Out::new();
    let code = run_tests(dir, &mut out);
    out.finish(code)
}
