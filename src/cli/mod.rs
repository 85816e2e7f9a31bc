/*!
The command line: one file per subcommand, each a thin layer over the library. `main` calls
[`run`], which returns the exit code; errors are printed once, with their chain.
*/
pub mod check;
pub mod demo;
pub mod explain;
pub mod mock_partner;
pub mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "partner-gateway", version, about = "A fail-closed reverse proxy that enforces OhSoft's privacy policy on data sent to partners")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: the proxy listener and the admin listener.
    Serve {
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
    },
    /// Validate every policy file: exit 0, or 1 listing every error as FILE:LINE: message.
    Check {
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
    },
    /// Show exactly what a partner would receive for a request body read from stdin.
    Explain {
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
        #[arg(long)]
        partner: String,
        #[arg(long, default_value = "POST")]
        method: String,
        /// The path at the partner, e.g. /v1/shipments (a query string may follow `?`).
        #[arg(long)]
        path: String,
        /// The calling system's `sub`, checked against the partner's allowed_callers.
        #[arg(long)]
        caller: Option<String>,
        /// Extra request header, `name: value` (repeatable).
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
    },
    /// Start mock partners and the gateway on loopback with the bundled policy, send sample
    /// traffic, and show what OhSoft sent next to what each partner received.
    Demo {
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
    },
    /// An upstream that answers each request with a JSON echo of what it received.
    MockPartner {
        #[arg(long)]
        listen: String,
        #[arg(long, default_value = "mock")]
        name: String,
        /// Wait this long before answering (to try timeouts).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { policy } => serve::run(&policy),
        Command::Check { policy } => Ok(check::run(&policy)),
        Command::Explain { policy, partner, method, path, caller, headers } => {
            explain::run(&policy, &partner, &method, &path, caller.as_deref(), &headers)
        }
        Command::Demo { policy } => demo::run(&policy),
        Command::MockPartner { listen, name, delay_ms } => {
            mock_partner::run(&listen, &name, Duration::from_millis(delay_ms))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
