//! `check`: validate a policy directory the way `serve` would, without secrets from the
//! environment: the files, their meaning, and the key and certificate files they name
//! (unreadable, not PEM, or a key that does not match its certificate is an error naming the
//! file; an expired certificate is a warning).
use std::path::Path;
use std::process::ExitCode;

use gateway_core::policy::{Diagnostic, Policy};

use crate::cli::out::{noteln, outln, Out};
use crate::loader;

/// `DIR: ok: N partners, M routes, policy version V`.
fn summary(dir: &Path, policy: &Policy) -> String {
    let routes: usize = policy.partners.values().map(|p| p.routes.len()).sum();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}: ok: {}, {}, policy version {}",
        dir.display(),
        plural(policy.partners.len(), "partner"),
        plural(routes, "route"),
        policy.version
    )
}

/// The candidate policy `shadow.policy` names, validated as a policy directory of its own
/// (its files in every diagnostic): the summary line, or its errors.
fn check_shadow(policy: &Policy) -> Result<Option<String>, Vec<Diagnostic>> {
    let Some(loaded) = loader::load_shadow(policy, None)? else {
        return Ok(None);
    };
    for warning in &loaded.warnings {
        noteln!(
            "{}:{}: warning: {}",
            warning.file,
            warning.line,
            warning.message
        );
    }
    let dir = policy.gateway.shadow.as_deref().unwrap_or(Path::new(""));
    Ok(Some(format!(
        "{} (shadow policy)",
        summary(dir, &loaded.policy)
    )))
}

fn check(dir: &Path, out: &mut Out) -> ExitCode {
    match loader::load_partly(dir, None) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                noteln!(
                    "{}:{}: warning: {}",
                    warning.file,
                    warning.line,
                    warning.message
                );
            }
            let policy = &loaded.policy;
            let mut summary = summary(dir, policy);
            let mut failed = false;
            match check_shadow(policy) {
                Ok(Some(line)) => summary.push_str(&format!("\n{line}")),
                Ok(None) => {}
                Err(errors) => {
                    for d in &errors {
                        outln!(out, "{d}");
                    }
                    failed = true;
                }
            }
            // TLS problems are listed below with those of the other files the policy names.
            let now = crate::gateway::now_unix() as i64;
            if let Ok((_, warnings)) = crate::tls::TlsMaterial::load(policy, now) {
                for w in &warnings {
                    noteln!("{}:{}: warning: {}", w.file, w.line, w.message);
                }
            }
            for warning in loader::demo_key_warnings(policy) {
                noteln!("{warning}");
            }
            // The files the policy names (TLS material, caller keys, signing key, published
            // keys), loaded as `serve` would, every problem listed.
            if let Err(lines) = loader::build_active(dir, loaded.policy) {
                for line in lines {
                    outln!(out, "{line}");
                }
                failed = true;
            }
            if failed {
                return ExitCode::from(1);
            }
            outln!(out, "{summary}");
            ExitCode::SUCCESS
        }
        Err((mut diagnostics, partial)) => {
            // The files named by the `tls` sections that validated in partner files that did
            // not, listed in file and line order with the rest; then those named by what did
            // validate (gateway.yaml's sections, and the partner files), so a mistake hides no
            // problem of a certificate or key file.
            let now = crate::gateway::now_unix() as i64;
            for only in &partial.partner_tls {
                diagnostics.extend(crate::tls::PartnerPeerTls::problems(only, now));
            }
            diagnostics.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            let mut listed: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            // The candidate `shadow.policy` names is checked too: one round lists both.
            let shadow = match &partial.policy {
                Some(policy) if partial.gateway_valid => check_shadow(policy).err(),
                _ => None,
            };
            let more = match partial.policy {
                Some(policy) if partial.gateway_valid => match loader::build_active(dir, *policy) {
                    Err(lines) => lines,
                    Ok(_) => Vec::new(),
                },
                Some(policy) => loader::named_file_problems(*policy),
                None => Vec::new(),
            };
            let shadow = shadow.into_iter().flatten().map(|d| d.to_string());
            for line in more.into_iter().chain(shadow) {
                if !listed.contains(&line) {
                    listed.push(line);
                }
            }
            for line in &listed {
                outln!(out, "{line}");
            }
            ExitCode::from(1)
        }
    }
}

/// `check DIR`: exit 0 with the summary, or 1 listing every error.
pub fn run(dir: &Path) -> ExitCode {
    let mut out = Out::new();
    let code = check(dir, &mut out);
    out.finish(code)
}
