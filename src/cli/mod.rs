/*!
The command line: one file per subcommand, each a thin layer over the library. `main` calls
[`run`], which returns the exit code; errors are printed once, with their chain.
*/
pub mod audit;
pub mod check;
pub mod demo;
mod demo_tls;
pub mod diff;
pub mod drift;
pub mod explain;
pub mod mock_partner;
pub mod optouts;
pub mod serve;
pub mod test;
pub mod token;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

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
    /// terminal). The level comes from RUST_LOG (default: info for serve, warn otherwise).
    #[arg(long, global = true, value_enum, default_value = "json")]
    log_format: crate::logs::LogFormat,
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
    /// Run the policy tests in <policy>/tests/*.yaml: exit 0 when all pass, 1 listing each failure as FILE:LINE.
    Test {
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
    },
    /// What a policy change starts or stops disclosing: exit 0 = nothing new, 4 = discloses more, 1 = invalid policy.
    Diff {
        /// The policy in force.
        #[arg(long)]
        policy: PathBuf,
        /// The candidate policy.
        #[arg(long)]
        against: PathBuf,
        /// A directory of sample requests (policy-test format) to run through both policies.
        #[arg(long)]
        samples: Option<PathBuf>,
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// List the fields callers send that no policy path names, from a running gateway's
    /// admin listener; with --suggest, the allow-list lines that would pass them (never applied).
    Drift {
        /// The admin listener, e.g. http://127.0.0.1:9090.
        #[arg(long)]
        admin: String,
        /// Print the allow-list lines that would pass the unknown fields.
        #[arg(long)]
        suggest: bool,
        /// Environment variable holding the admin token.
        #[arg(long, default_value = drift::DEFAULT_TOKEN_ENV)]
        token_env: String,
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
        /// Both legs over TLS (mTLS too) with the DEMO certificates in certs/.
        #[arg(long)]
        tls: bool,
    },
    /// Bulk work on the opt-out store the policy names.
    Optouts {
        #[command(subcommand)]
        command: OptoutsCommand,
    },
    /// Mint a caller token for local testing (signed with a caller private key).
    Token {
        /// PKCS#8 private key (e.g. the DEMO key certs/callers-demo.pem).
        #[arg(long)]
        key: PathBuf,
        /// The calling system's name: the token's `sub`.
        #[arg(long)]
        sub: String,
        #[arg(long, default_value = "5m")]
        ttl: String,
        /// Issuer and audience default to the policy's `callers` section.
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        audience: Option<String>,
        #[arg(long)]
        kid: Option<String>,
    },
    /// Check a data-use token (and optionally the body it covers) against a JWKS file or http:// URL.
    VerifyToken {
        #[arg(long)]
        jwks: String,
        /// The exact body the partner received; its SHA-256 must match `body_sha256`.
        #[arg(long)]
        body: Option<PathBuf>,
        /// The partner id the token must be for (`aud`).
        #[arg(long)]
        aud: Option<String>,
        /// The gateway issuer the token must come from (`iss`).
        #[arg(long)]
        iss: Option<String>,
        token: String,
    },
    /// An upstream that answers each request with a JSON echo of what it received.
    /// Read the disclosure ledger back.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    MockPartner {
        #[arg(long)]
        listen: String,
        #[arg(long, default_value = "mock")]
        name: String,
        /// Wait this long before answering (to try timeouts).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Listen with TLS, presenting this PEM certificate chain (with --tls-key).
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// Require client certificates chaining to this PEM CA (mTLS); the log records each
        /// request's client certificate DNS name as `client_cert`.
        #[arg(long)]
        tls_client_ca: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check ledger files (hash chain and signed checkpoints): exit 0, or 1 naming FILE:LINE
    /// of the first break.
    Verify {
        /// Ledger files or directories (default: the ledger directory in gateway.yaml).
        paths: Vec<PathBuf>,
        /// Check checkpoint signatures with this JWKS (a file or an http:// URL).
        #[arg(long)]
        jwks: Option<String>,
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Every disclosure that carried this customer's record (the ledger key must be in the
    /// environment).
    WhoReceived {
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
        #[arg(long)]
        ledger: Option<PathBuf>,
        #[arg(long)]
        customer: String,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Records of processing per recipient (GDPR Art. 30 style).
    Report {
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
        #[arg(long)]
        ledger: Option<PathBuf>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value = "md")]
        format: String,
    },
}

fn run_audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match command {
        AuditCommand::Verify {
            paths,
            jwks,
            policy,
            ledger,
        } => {
            let paths = if paths.is_empty() {
                vec![audit::ledger_dir(&policy, ledger.as_deref())?]
            } else {
                paths
            };
            audit::verify::run(&paths, jwks.as_deref(), &mut out, &mut err)
        }
        AuditCommand::WhoReceived {
            policy,
            ledger,
            customer,
            since,
            until,
            format,
        } => {
            let config = crate::loader::load(&policy, None)
                .ok()
                .and_then(|l| l.policy.gateway.ledger);
            let dir = match (&ledger, &config) {
                (Some(dir), _) => dir.clone(),
                (None, Some(c)) => c.path.clone(),
                (None, None) => audit::ledger_dir(&policy, None)?,
            };
            let key_env = config.map_or_else(
                || gateway_core::ledger::DEFAULT_SUBJECT_KEY_ENV.to_string(),
                |c| c.subject_key_env,
            );
            let query = audit::who::Query {
                customer: &customer,
                since: since.map(|d| audit::bound(&d, false)).transpose()?,
                until: until.map(|d| audit::bound(&d, true)).transpose()?,
                format: &format,
            };
            let files = audit::ledger_files(&[dir])?;
            audit::who::run(&files, &key_env, &query, &mut out)
        }
        AuditCommand::Report {
            policy,
            ledger,
            since,
            until,
            format,
        } => {
            let loaded = crate::loader::load(&policy, None)
                .map_err(|d| crate::loader::diagnostics_error(&d))?;
            let dir = match ledger {
                Some(dir) => dir,
                None => audit::ledger_dir(&policy, None)?,
            };
            let files = audit::ledger_files(&[dir])?;
            let since = since.map(|d| audit::bound(&d, false)).transpose()?;
            let until = until.map(|d| audit::bound(&d, true)).transpose()?;
            audit::report::run(&loaded.policy, &files, since, until, &format, &mut out)
        }
    }
}

#[derive(Subcommand)]
enum OptoutsCommand {
    /// Import a CSV (`customer_id,scope`) or NDJSON file: all or nothing (embedded store: the gateway must be stopped).
    Import {
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
        file: PathBuf,
    },
    /// Write every opt-out to stdout.
    Export {
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
        #[arg(long, default_value = "ndjson")]
        format: String,
    },
    /// Count customers per scope.
    Count {
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
    },
    /// Create or update the PostgreSQL opt-out tables (idempotent; the gateway also does at start).
    Migrate {
        #[arg(long, default_value = "policy/")]
        policy: PathBuf,
    },
}

/// Where the policy keeps opt-outs (validated as `check` would).
fn optout_config(
    policy: &std::path::Path,
) -> anyhow::Result<gateway_core::policy::OptOutStoreConfig> {
    let loaded =
        crate::loader::load(policy, None).map_err(|d| crate::loader::diagnostics_error(&d))?;
    loaded.policy.gateway.optouts.ok_or_else(|| {
        anyhow::anyhow!("{}/gateway.yaml has no `optouts` section", policy.display())
    })
}

fn run_optouts(command: OptoutsCommand) -> anyhow::Result<ExitCode> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match command {
        OptoutsCommand::Import { policy, file } => {
            optouts::import_into(&optout_config(&policy)?, &file, None, &mut out, &mut err)?
        }
        OptoutsCommand::Export { policy, format } => {
            let format = match format.as_str() {
                "ndjson" => gateway_core::optout::bulk::Format::Ndjson,
                "csv" => gateway_core::optout::bulk::Format::Csv,
                other => anyhow::bail!("unknown format {other:?} (expected ndjson or csv)"),
            };
            optouts::export_from(&optout_config(&policy)?, format, &mut out)?
        }
        OptoutsCommand::Count { policy } => {
            optouts::count_from(&optout_config(&policy)?, &mut out)?
        }
        OptoutsCommand::Migrate { policy } => optouts::migrate(&optout_config(&policy)?, &mut out)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    crate::logs::init(cli.log_format, default_level);
    match cli.command {
        Command::Serve { policy } => serve::run(&policy),
        Command::Check { policy } => Ok(check::run(&policy)),
        Command::Test { policy } => Ok(test::run(&policy)),
        Command::Diff {
            policy,
            against,
            samples,
            format,
        } => Ok(diff::run(&policy, &against, samples.as_deref(), &format)),
        Command::Drift {
            admin,
            suggest,
            token_env,
        } => drift::run(&admin, &token_env, suggest),
        Command::Explain {
            policy,
            partner,
            method,
            path,
            caller,
            headers,
        } => explain::run(
            &policy,
            &partner,
            &method,
            &path,
            caller.as_deref(),
            &headers,
        ),
        Command::Demo { policy, tls } => demo::run(&policy, tls),
        Command::Optouts { command } => run_optouts(command),
        Command::Audit { command } => run_audit(command),
        Command::Token {
            key,
            sub,
            ttl,
            policy,
            issuer,
            audience,
            kid,
        } => {
            let callers = crate::loader::load(&policy, None)
                .ok()
                .and_then(|l| l.policy.gateway.callers);
            let issuer = issuer.or_else(|| callers.as_ref().map(|c| c.issuer.clone()));
            let audience = audience.or_else(|| callers.as_ref().map(|c| c.audience.clone()));
            let (Some(issuer), Some(audience)) = (issuer, audience) else {
                anyhow::bail!(
                    "no --issuer/--audience given and no `callers` section in {}",
                    policy.display()
                );
            };
            let token = token::mint(
                &key,
                &sub,
                token::parse_ttl(&ttl)?,
                &issuer,
                &audience,
                kid.as_deref(),
            )?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::VerifyToken {
            jwks,
            body,
            aud,
            iss,
            token,
        } => {
            token::run_verify(&jwks, body.as_deref(), &token, &token::Expect { aud, iss })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::MockPartner {
            listen,
            name,
            delay_ms,
            tls_cert,
            tls_key,
            tls_client_ca,
        } => {
            let tls = mock_partner::MockTls {
                cert: tls_cert,
                key: tls_key,
                client_ca: tls_client_ca,
            };
            mock_partner::run(&listen, &name, Duration::from_millis(delay_ms), &tls)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
