//! `check`: validate a policy directory the way `serve` would, without secrets from the environment.
use std::path::Path;
use std::process::ExitCode;

use crate::loader;

pub fn run(dir: &Path) -> ExitCode {
    match loader::load(dir, None) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!(
                    "{}:{}: warning: {}",
                    warning.file, warning.line, warning.message
                );
            }
            let policy = &loaded.policy;
            let routes: usize = policy.partners.values().map(|p| p.routes.len()).sum();
            println!(
                "{}: ok: {} partners, {} routes, policy version {}",
                dir.display(),
                policy.partners.len(),
                routes,
                policy.version
            );
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                println!("{d}");
            }
            ExitCode::from(1)
        }
    }
}
