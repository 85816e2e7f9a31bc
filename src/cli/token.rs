/*!
`partner-gateway token` (mint a caller token for local testing) and `partner-gateway
verify-token` (what a partner or an auditor runs to check an `ohsoft-data-use-token` and the
body digest). The checks themselves live in `gateway_core::callers` and `gateway_core::tagging`;
this file reads files, fetches the JWKS, reads the clock and draws randomness.
*/
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gateway_core::callers::{mint_caller_token, CallerTokenInput};
use gateway_core::tagging::verify_data_use_token;

/// Longest lifetime `token` mints: demo tokens are short-lived.
pub const MAX_CALLER_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Largest JWKS accepted by `verify-token`.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

pub use crate::gateway::{new_jti, now_unix};

/// `token --key PEM --sub NAME [--ttl 5m] [--policy DIR] [--issuer ..] [--audience ..] [--kid ..]`.
#[derive(clap::Args)]
pub struct MintArgs {
    /// PKCS#8 private key (e.g. the DEMO key certs/callers-demo.pem).
    #[arg(long)]
    pub key: PathBuf,
    /// The calling system's name: the token's `sub`.
    #[arg(long)]
    pub sub: String,
    #[arg(long, default_value = "5m", value_parser = crate::cli::args::ttl)]
    pub ttl: Duration,
    /// Issuer and audience default to the policy's `callers` section.
    #[command(flatten)]
    pub policy: crate::cli::args::PolicyArg,
    #[arg(long)]
    pub issuer: Option<String>,
    #[arg(long)]
    pub audience: Option<String>,
    #[arg(long)]
    pub kid: Option<String>,
}

/// `verify-token --jwks FILE|URL [--body FILE] [--aud ID] [--iss ISSUER] TOKEN`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    #[arg(long)]
    pub jwks: String,
    /// The exact body the partner received; its SHA-256 must match `body_sha256`.
    #[arg(long)]
    pub body: Option<PathBuf>,
    /// The partner id the token must be for (`aud`).
    #[arg(long)]
    pub aud: Option<String>,
    /// The gateway issuer the token must come from (`iss`).
    #[arg(long)]
    pub iss: Option<String>,
    /// Check the token's lifetime as of this time (RFC 3339, or Unix seconds) instead of now:
    /// an auditor checking a stored token gives the time of its ledger record.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<u64>,
    pub token: String,
}

/// `2026-11-30T10:00:00Z` or `1796040000`: a moment, as Unix seconds.
fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(unix) = s.trim().parse::<u64>() {
        return Ok(unix);
    }
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .ok_or_else(|| "expected an RFC 3339 time (2026-11-30T10:00:00Z) or Unix seconds".into())
}

/// `token`: mints a token (issuer and audience from the policy unless given) and prints it.
pub fn run_mint(args: MintArgs) -> Result<ExitCode> {
    let policy = &args.policy.policy;
    let loaded = crate::loader::load(policy, None);
    let callers = loaded
        .as_ref()
        .ok()
        .and_then(|l| l.policy.gateway.callers.as_ref());
    let issuer = args
        .issuer
        .or_else(|| callers.as_ref().map(|c| c.issuer.clone()));
    let audience = args
        .audience
        .or_else(|| callers.as_ref().map(|c| c.audience.clone()));
    let (Some(issuer), Some(audience)) = (issuer, audience) else {
        if let Err(errors) = &loaded {
            return Err(crate::loader::diagnostics_error(errors).context(format!(
                "no --issuer/--audience given, and the policy in {} that would name them (its `callers` section) does not load",
                policy.display()
            )));
        }
        bail!(
            "no --issuer/--audience given and no `callers` section in {}",
            policy.display()
        );
    };
    let token = mint(
        &args.key,
        &args.sub,
        args.ttl,
        &issuer,
        &audience,
        args.kid.as_deref(),
    )?;
    print_line(&token)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` and a newline to stdout, flushed: a failure is an error (exit 1), not a
/// panic, and never a success with nothing written.
fn print_line(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .context("cannot write the output")
}

/// `verify-token`: exit 0 when the token (and body) check out.
pub fn run_verify_args(args: VerifyArgs) -> Result<ExitCode> {
    let expect = Expect {
        aud: args.aud,
        iss: args.iss,
    };
    let check = Check {
        body: args.body.as_deref(),
        at_unix: args.at,
        expect: &expect,
    };
    run_verify(&args.jwks, &args.token, &check)?;
    Ok(ExitCode::SUCCESS)
}

/// `300`, `300s`, `5m`, `1h`: a token lifetime, 1 s to 24 h.
pub fn parse_ttl(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .with_context(|| format!("invalid ttl {s:?}: expected e.g. 300s, 5m or 1h"))?;
    let secs = match unit {
        "" | "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => bail!("invalid ttl {s:?}: a whole number followed by s, m or h (e.g. 300s, 5m, 1h)"),
    };
    let ttl = Duration::from_secs(secs.with_context(|| format!("invalid ttl {s:?}: too long"))?);
    if ttl.is_zero() {
        bail!("invalid ttl {s:?}: must be at least 1s");
    }
    if ttl > MAX_CALLER_TTL {
        bail!("invalid ttl {s:?}: at most 24h");
    }
    Ok(ttl)
}

/// Mints a caller token signed with the private key in `key_file` (PKCS#8 Ed25519 or P-256, or
/// RSA), for `partner-gateway token`. `kid` goes into the JWS header when given.
pub fn mint(
    key_file: &Path,
    sub: &str,
    ttl: Duration,
    issuer: &str,
    audience: &str,
    kid: Option<&str>,
) -> Result<String> {
    let pem = std::fs::read(key_file)
        .with_context(|| format!("cannot read key file {}", key_file.display()))?;
    if ttl.is_zero() || ttl > MAX_CALLER_TTL {
        bail!("ttl must be between 1s and 24h");
    }
    let input = CallerTokenInput {
        issuer,
        audience,
        sub,
        kid,
        now_unix: now_unix(),
        ttl_secs: ttl.as_secs(),
    };
    mint_caller_token(&pem, &input)
        .with_context(|| format!("cannot mint a token with {}", key_file.display()))
}

/// Checks a data-use token now: see [`verify_at`].
pub fn verify(jwks: &str, body: Option<&Path>, token: &str) -> Result<serde_json::Value> {
    verify_at(jwks, body, token, None)
}

/// Checks a data-use token against the JWKS at `jwks` (a file path or an `http://` URL):
/// signature by `kid`, type, lifetime, expiry at `at_unix` (default: now) and, when `body` is
/// given, that `body_sha256` is the digest of that file's exact bytes. Returns the claims.
pub fn verify_at(
    jwks: &str,
    body: Option<&Path>,
    token: &str,
    at_unix: Option<u64>,
) -> Result<serde_json::Value> {
    let jwks_json = load_jwks(jwks)?;
    let body = match body {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("cannot read body file {}", p.display()))?,
        ),
        None => None,
    };
    let now = match at_unix {
        Some(t) => t,
        None => now_unix(),
    };
    let claims = verify_data_use_token(&jwks_json, token.trim(), body.as_deref(), now)
        .with_context(|| format!("token rejected (keys from {jwks})"))?;
    serde_json::to_value(&claims).context("cannot render the claims")
}

/// `verify-token`: verifies, prints the claims as JSON on stdout and `body_sha256 matches`
/// (or that no body was checked) on stderr.
/// What a partner expects of a token beyond its signature: its own id as `aud`, the gateway's `iss`.
#[derive(Debug, Default, Clone)]
pub struct Expect {
    pub aud: Option<String>,
    pub iss: Option<String>,
}

/// What `verify-token` checks besides the signature.
pub struct Check<'a> {
    /// The body the partner received.
    pub body: Option<&'a Path>,
    /// The moment the lifetime is checked at (default: now).
    pub at_unix: Option<u64>,
    pub expect: &'a Expect,
}

pub fn run_verify(jwks: &str, token: &str, check: &Check<'_>) -> Result<()> {
    let (body, expect) = (check.body, check.expect);
    let claims = verify_at(jwks, body, token, check.at_unix)?;
    for (claim, wanted) in [("aud", &expect.aud), ("iss", &expect.iss)] {
        if let Some(wanted) = wanted {
            let got = claims.get(claim).and_then(|v| v.as_str()).unwrap_or("");
            if got != wanted {
                bail!("token rejected: {claim} is {got:?}, expected {wanted:?}");
            }
        }
    }
    print_line(&serde_json::to_string_pretty(&claims).context("cannot render the claims")?)?;
    let digest = match body {
        Some(_) => "body_sha256 matches",
        None => "no --body given: body_sha256 not checked",
    };
    let when = match check.at_unix {
        Some(at) => {
            let at = i64::try_from(at)
                .ok()
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map_or_else(|| at.to_string(), |t| t.to_rfc3339());
            format!("; lifetime checked as of {at} (--at), not now")
        }
        None => String::new(),
    };
    // Not `eprintln!`: a stderr that cannot be written must not turn the verdict into a panic.
    // Not `eprintln!`: a stderr that cannot be written must not turn the verdict into a panic.
    let _ = writeln!(std::io::stderr(), "signature valid, {digest}{when}");
    Ok(())
}

/// The JWKS document from a file, or from an `http://` or `https://` URL (HTTP/1.1 GET, 200
/// required; https trusts the system's roots, or the bundle `SSL_CERT_FILE` names).
pub fn load_jwks(src: &str) -> Result<String> {
    let bytes = if src.starts_with("http://") {
        let (addr, path) = crate::http1::split_url(src)
            .ok_or_else(|| anyhow::anyhow!("invalid JWKS URL {src:?}"))?;
        let path = path.as_str();
        let resp = crate::http1::send(&addr, "GET", path, &[("accept", "application/json")], None)
            .with_context(|| format!("cannot fetch the JWKS from {src}"))?;
        if resp.status != 200 {
            bail!("fetching the JWKS from {src} answered HTTP {}", resp.status);
        }
        resp.body
    } else if src.starts_with("https://") {
        let config = crate::tls::client_config(None).context("TLS for the JWKS URL")?;
        let accept = [("accept", "application/json")];
        let resp = crate::http1::get_https(src, std::sync::Arc::new(config), &accept)
            .with_context(|| format!("cannot fetch the JWKS from {src}"))?;
        if resp.status != 200 {
            bail!("fetching the JWKS from {src} answered HTTP {}", resp.status);
        }
        resp.body
    } else {
        crate::loader::read_policy_file(std::path::Path::new(src))
            .with_context(|| format!("cannot read JWKS file {src}"))?
    };
    if bytes.len() > MAX_JWKS_BYTES {
        bail!("the JWKS from {src} is larger than {MAX_JWKS_BYTES} bytes");
    }
    String::from_utf8(bytes).with_context(|| format!("the JWKS from {src} is not UTF-8"))
}

#[cfg(test)]
mod tests;
