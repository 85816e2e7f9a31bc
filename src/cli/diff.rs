//! `diff`: what a policy change starts or stops disclosing, from the two compiled policies
//! (the core's `diff`), in words a privacy officer reads; with `--samples DIR`, the sample
//! requests in `DIR/*.yaml` (the policy-test format, `expect` optional) run through both
//! policies and every difference in what the partner would receive is shown.
//! Exit 0 = nothing new is disclosed, 4 = the change discloses more, 1 = an invalid policy.
use crate::cli::out::{outln, Out};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gateway_core::policy::Policy;
use gateway_core::policytest::{self, Forwarded};
use gateway_core::Refusal;
use serde::Serialize;

use crate::cli::args::TextOrJson;
use crate::cli::test::{load_for_tests, read_cases, reader, test_files};

/// `diff --policy OLD --against NEW [--samples DIR] [--format text|json]`.
#[derive(clap::Args)]
pub struct Args {
    /// The policy in force.
    #[arg(long)]
    pub policy: PathBuf,
    /// The candidate policy.
    #[arg(long)]
    pub against: PathBuf,
    /// A directory of sample requests (policy-test format) to run through both policies.
    #[arg(long)]
    pub samples: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: TextOrJson,
}

/// Exit code when the change discloses more.
pub const EXIT_DISCLOSES_MORE: u8 = 4;

/// One sample request run through both policies.
#[derive(Serialize)]
struct SampleResult {
    /// `FILE:LINE` of the sample.
    at: String,
    name: String,
    /// `same`, `changed`, `newly_forwarded` or `newly_refused`.
    outcome: &'static str,
    /// Newly forwarded, or forwarded both times and the partner would get a field, a header or
    /// a query parameter more times than before (see `policytest::carries_more`).
    discloses_more: bool,
    old: String,
    new: String,
    /// Line diff of the bodies (`-` old, `+` new) when they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    body_diff: Option<String>,
}

fn summary(outcome: &Result<Forwarded, Refusal>) -> String {
    match outcome {
        Ok(f) => format!(
            "forwarded to {}, {} body bytes",
            f.outgoing.path_and_query,
            f.outgoing.body.len()
        ),
        Err(r) => format!("refused {} {}", r.status(), r.code()),
    }
}

fn compare_sample(
    at: String,
    name: &str,
    old: Result<Forwarded, Refusal>,
    new: Result<Forwarded, Refusal>,
) -> SampleResult {
    let discloses_more = match (&old, &new) {
        (Ok(o), Ok(n)) => policytest::carries_more(&o.outgoing, &n.outgoing),
        (Err(_), Ok(_)) => true,
        _ => false,
    };
    let (outcome, body_diff) = match (&old, &new) {
        (Ok(o), Ok(n)) => {
            let same = o.outgoing.body == n.outgoing.body
                && o.outgoing.path_and_query == n.outgoing.path_and_query
                && o.outgoing.headers == n.outgoing.headers;
            let diff = (o.outgoing.body != n.outgoing.body).then(|| {
                policytest::unified_diff(
                    &policytest::pretty_json(&o.outgoing.body),
                    &policytest::pretty_json(&n.outgoing.body),
                )
            });
            (if same { "same" } else { "changed" }, diff)
        }
        (Err(o), Err(n)) if o.code() == n.code() => ("same", None),
        (Err(_), Err(_)) => ("changed", None),
        (Err(_), Ok(_)) => ("newly_forwarded", None),
        (Ok(_), Err(_)) => ("newly_refused", None),
    };
    SampleResult {
        at,
        name: name.to_string(),
        outcome,
        discloses_more,
        old: summary(&old),
        new: summary(&new),
        body_diff,
    }
}

fn run_samples(dir: &Path, old: &Policy, new: &Policy) -> Result<Vec<SampleResult>, Vec<String>> {
    let mut results = Vec::new();
    let files = test_files(dir).map_err(|e| vec![format!("{}: {e}", dir.display())])?;
    if files.is_empty() {
        return Err(vec![format!("{}: no sample files (*.yaml)", dir.display())]);
    }
    for file in &files {
        let read = reader(file);
        for case in read_cases(file)? {
            let at = format!("{}:{}", file.display(), case.line);
            let decide = |p: &Policy| {
                policytest::decide_case(p, &case, &read)
                    .map_err(|f| vec![format!("{}:{}: {}", file.display(), f.line, f.message)])
            };
            results.push(compare_sample(at, &case.name, decide(old)?, decide(new)?));
        }
    }
    Ok(results)
}

fn print_text(out: &mut Out, report: &gateway_core::diff::PolicyDiff, samples: &[SampleResult]) {
    out.text(&report.to_text());
    if samples.is_empty() {
        return;
    }
    outln!(out, "samples:");
    for s in samples {
        if s.outcome == "same" {
            outln!(out, "  {}: {}: same ({})", s.at, s.name, s.new);
            continue;
        }
        outln!(
            out,
            "  {}: {}: {}{}",
            s.at,
            s.name,
            s.outcome.replace('_', " "),
            if s.discloses_more && s.outcome == "changed" {
                " (the partner would receive more)"
            } else {
                ""
            }
        );
        outln!(out, "      old: {}", s.old);
        outln!(out, "      new: {}", s.new);
        for line in s.body_diff.iter().flat_map(|d| d.lines()) {
            outln!(out, "      {line}");
        }
    }
}

fn compare(
    (old_dir, new_dir): (&Path, &Path),
    samples: Option<&Path>,
    format: TextOrJson,
    out: &mut Out,
) -> ExitCode {
    let mut load =
        |dir: &Path| load_for_tests(dir).map_err(|e| outln!(out, "{}: {e:#}", dir.display()));
    let (Ok(old), Ok(new)) = (load(old_dir), load(new_dir)) else {
        return ExitCode::from(1);
    };
    let unusable: Vec<String> = [(old_dir, &old), (new_dir, &new)]
        .into_iter()
        .flat_map(|(dir, policy)| unusable_files(dir, policy))
        .collect();
    if !unusable.is_empty() {
        for line in unusable {
            outln!(out, "{line}");
        }
        return ExitCode::from(1);
    }
    // A file neither copy can read (a policy copied without its `certs/`) is known by its
    // path below its policy's base, so two such copies compare equal.
    let mut bases = [old_dir, new_dir].map(gateway_core::policy::base_dir);
    // The deeper base first: an empty one (`--policy policy`) is a prefix of every path.
    bases.sort_by_key(|b| std::cmp::Reverse(b.components().count()));
    let identity = |path: &Path| {
        file_digest(path).or_else(|| {
            let below = bases.iter().find_map(|b| path.strip_prefix(b).ok())?;
            Some(format!("unreadable {}", below.display()))
        })
    };
    let report = gateway_core::diff::diff_with(&old, &new, &identity);
    let samples = match samples.map(|dir| run_samples(dir, &old, &new)) {
        None => Vec::new(),
        Some(Ok(s)) => s,
        Some(Err(lines)) => {
            for l in lines {
                outln!(out, "{l}");
            }
            return ExitCode::from(1);
        }
    };
    let more = report.discloses_more || samples.iter().any(|s| s.discloses_more);
    if format == TextOrJson::Json {
        let doc = serde_json::json!({
            "discloses_more": more,
            "changes": report.changes,
            "samples": samples,
        });
        outln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    } else {
        print_text(out, &report, &samples);
    }
    if more {
        ExitCode::from(EXIT_DISCLOSES_MORE)
    } else {
        ExitCode::SUCCESS
    }
}

/// The problems `check` finds with the key and certificate files `policy` names (not PEM, a key
/// that does not match its certificate, …): such a policy is invalid, whatever it discloses.
/// A copy that lacks some of its files (certificates and keys kept elsewhere) is compared as
/// it is, the absent files by path (see [`file_digest`]); the ones there are checked.
fn unusable_files(dir: &Path, policy: &gateway_core::policy::Policy) -> Vec<String> {
    let missing: Vec<String> = crate::reload::named_files(policy)
        .iter()
        .filter(|f| !f.exists())
        .map(|f| format!(" {}: ", f.display()))
        .collect();
    let mut problems: Vec<String> = match crate::loader::load(dir, None) {
        Ok(loaded) => crate::loader::build_active(dir, loaded.policy)
            .err()
            .unwrap_or_default(),
        Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
    };
    // Problems of the files that are there; the absent ones are compared by path.
    problems.retain(|line| !missing.iter().any(|m| line.contains(m.as_str())));
    // The candidate policy `shadow` names must load too, as `check` says: a policy directory
    // (kept beside this one, unlike key files), so a missing one is an error as in `serve`.
    if let Err(diagnostics) = crate::loader::load_shadow(policy, None) {
        problems.extend(diagnostics.iter().map(ToString::to_string));
    }
    problems
}

/// What a file a policy names holds, for `diff` to compare across the two policies (their
/// copies of a CA bundle usually sit in different directories): the start of its SHA-256; of
/// its certificates when it is a PEM bundle (so line endings and comments do not count).
fn file_digest(path: &Path) -> Option<String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    use sha2::{Digest, Sha256};
    let bytes = crate::loader::read_policy_file(path).ok()?;
    let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let mut hasher = Sha256::new();
    if certs.is_empty() {
        hasher.update(&bytes);
    }
    for cert in &certs {
        hasher.update(cert.as_ref());
    }
    let digest = hasher.finalize();
    Some(format!(
        "sha256 {}",
        gateway_core::ledger::hex(&digest[..16])
    ))
}

/// `diff`: exit 0 when the new policy discloses nothing new, 4 when it discloses more, 1 when
/// either policy is invalid.
pub fn run(old_dir: &Path, new_dir: &Path, samples: Option<&Path>, format: TextOrJson) -> ExitCode {
    let mut out = Out::new();
    let code = compare((old_dir, new_dir), samples, format, &mut out);
    out.finish(code)
}
