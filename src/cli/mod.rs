/*!
The command line: one file per subcommand, each a thin layer over the library. `main` calls
[`run`], which returns the exit code; errors are printed once, with their chain.
*/
pub mod args;
pub mod audit;
pub mod check;
pub mod demo;
pub mod diff;
pub mod drift;
pub mod explain;
pub mod mock_partner;
pub mod optouts;
mod out;
pub mod serve;
pub mod test;
pub mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use args::PolicyArg;

#[derive(Parser)]
#[command(
    name = "partner-gateway",
    version,
    about = "A fail-closed reverse proxy that enforces OhSoft's privacy policy on data sent to partners"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written on stderr: `json` (one object per line) or `text` (for a
    /// terminal). The level comes from RUST_LOG (default: info for serve, error for check,
    /// which prints its own warnings, warn otherwise).
    #[arg(long, global = true, value_enum, default_value = "json")]
    log_format: crate::logs::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: the proxy listener and the admin listener.
    Serve(PolicyArg),
    /// Validate every policy file: exit 0, or 1 listing every error as FILE:LINE: message.
    Check(PolicyArg),
    /// Run the policy tests in <policy>/tests/*.yaml: exit 0 when all pass, 1 listing each failure as FILE:LINE.
    Test(PolicyArg),
    /// What a policy change starts or stops disclosing: exit 0 = nothing new, 4 = discloses more, 1 = invalid policy.
    Diff(diff::Args),
    /// List the fields callers send that no policy path names, from a running gateway's
    /// admin listener; with --suggest, the allow-list lines that would pass them (never applied).
    Drift(drift::Args),
    /// Show exactly what a partner would receive for a request body read from stdin.
    Explain(explain::Args),
    /// Start mock partners and the gateway on loopback with the bundled policy, send sample
    /// traffic, and show what OhSoft sent next to what each partner received.
    Demo(demo::Args),
    /// Bulk work on the opt-out store the policy names.
    Optouts {
        #[command(subcommand)]
        command: optouts::Command,
    },
    /// Mint a caller token for local testing (signed with a caller private key).
    Token(token::MintArgs),
    /// Check a data-use token (and optionally the body it covers) against a JWKS file, or an http:// or https:// URL.
    VerifyToken(token::VerifyArgs),
    /// Read the disclosure ledger back.
    Audit {
        #[command(subcommand)]
        command: audit::Command,
    },
    /// An upstream that answers each request with a JSON echo of what it received.
    MockPartner(mock_partner::Args),
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        // `check` prints every warning itself as `FILE:LINE: warning: ...`; loading the keys
        // as `serve` would must not log them a second time.
        Command::Check { .. } => "error",
        _ => "warn",
    };
    let format = cli.log_format;
    crate::logs::init(format, default_level);
    match cli.command {
        // In the log's format like every other event of `serve` (one JSON object per line by
        // default), so that a collector reading a crash-looping unit or pod parses it too, and
        // past the log's filter: never silent, whatever `RUST_LOG` says.
        Command::Serve(a) => serve::run(&a.policy).or_else(|e| {
            crate::logs::write_unfiltered(format, module_path!(), &format!("{e:#}"));
            Ok(ExitCode::from(1))
        }),
        Command::Check(a) => Ok(check::run(&a.policy)),
        Command::Test(a) => Ok(test::run(&a.policy)),
        Command::Diff(a) => Ok(diff::run(
            &a.policy,
            &a.against,
            a.samples.as_deref(),
            a.format,
        )),
        Command::Drift(a) => drift::run(&a.admin.admin, &a.admin.token_env, a.suggest),
        Command::Explain(a) => explain::run(&a),
        Command::Demo(a) => demo::run(&a.policy.policy, a.tls),
        Command::Optouts { command } => optouts::run(command),
        Command::Audit { command } => audit::run(command),
        Command::Token(a) => token::run_mint(a),
        Command::VerifyToken(a) => token::run_verify_args(a),
        Command::MockPartner(a) => mock_partner::run_args(a),
    }
}
