//! `drift --admin URL [--suggest]`: what a running gateway's `/drift` lists — the fields callers
//! send that no policy path names, per partner and route — and, with `--suggest`, the
//! allow-list lines that would pass them. It only prints: adding a line discloses more and is a
//! privacy decision (`partner-gateway diff` reports it), so nothing is ever applied.
use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};
use gateway_core::drift::{suggestion, Shapes, Suggestion};
use serde_json::Value;

/// `drift --admin URL [--token-env NAME] [--suggest]`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub admin: crate::cli::args::AdminArgs,
    /// Print the allow-list lines that would pass the unknown fields.
    #[arg(long)]
    pub suggest: bool,
}

/// Fetches `/drift` from the admin listener at `admin` (`http://host:port`, optionally with a
/// path prefix) with the token in `token_env`, and prints the list or the suggestions.
pub fn run(admin: &str, token_env: &str, suggest: bool) -> anyhow::Result<ExitCode> {
    let report = fetch(admin, token_env)?;
    let mut out = std::io::stdout().lock();
    if suggest {
        write_suggestions(&report, &mut out)?;
    } else {
        write_list(&report, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn fetch(admin: &str, token_env: &str) -> anyhow::Result<Value> {
    let url = if admin.contains("://") {
        admin.to_string()
    } else {
        format!("http://{admin}")
    };
    let authority = url.split("://").nth(1).unwrap_or("").split('/').next();
    if authority.is_some_and(|a| a.contains('@')) {
        // Never echoed: it carries a credential.
        bail!("--admin must not carry credentials (the admin token comes from --token-env)");
    }
    let (addr, prefix) = crate::http1::split_url(&url)
        .with_context(|| format!("--admin {admin:?} is not an http://host:port URL"))?;
    let path = format!("{}/drift", prefix.trim_end_matches('/'));
    let token = std::env::var(token_env).unwrap_or_default();
    if token.is_empty() {
        bail!("environment variable {token_env} (the admin token) is not set");
    }
    let bearer = format!("Bearer {token}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("accept", "application/json"),
    ];
    let response = crate::http1::send(&addr, "GET", &path, &headers, None)
        .with_context(|| format!("cannot reach the admin listener at {url}"))?;
    if response.status != 200 {
        let body = response.json();
        let message = body["message"].as_str().unwrap_or("");
        bail!("GET {path} at {addr}: HTTP {} {message}", response.status);
    }
    serde_json::from_slice(&response.body).context("the /drift answer is not JSON")
}

/// A string of the answer as printed: control characters escaped, so an answer cannot write to
/// the terminal or add lines of its own.
fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or("?")
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn routes(report: &Value) -> impl Iterator<Item = &Value> {
    report["routes"].as_array().into_iter().flatten()
}

fn shapes(path: &Value) -> Shapes {
    let names: Vec<&str> = path["shapes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    Shapes {
        scalar: names.contains(&"scalar"),
        object: names.contains(&"object"),
        array: names.contains(&"array"),
    }
}

/// One line per path: partner, route, path, count, first and last seen.
fn write_list(report: &Value, out: &mut impl Write) -> std::io::Result<()> {
    let mut any = false;
    for route in routes(report) {
        for path in route["paths"].as_array().into_iter().flatten() {
            any = true;
            writeln!(
                out,
                "{} {} {}  seen {} times, first {}, last {}",
                text(&route["partner"]),
                text(&route["route"]),
                text(&path["path"]),
                path["count"],
                text(&path["first_seen"]),
                text(&path["last_seen"]),
            )?;
        }
        if route["not_listed"].as_u64().is_some_and(|n| n > 0) {
            writeln!(
                out,
                "{} {} ({} more occurrences of paths not listed: the list is full)",
                text(&route["partner"]),
                text(&route["route"]),
                route["not_listed"]
            )?;
        }
    }
    if !any {
        writeln!(out, "no unknown fields seen since the gateway started")?;
    }
    Ok(())
}

/// Per route, the `allow:` lines that would pass its unknown fields, as YAML to paste into
/// `partners/<id>.yaml` after review.
fn write_suggestions(report: &Value, out: &mut impl Write) -> std::io::Result<()> {
    let mut any = false;
    for route in routes(report) {
        let paths: Vec<&Value> = route["paths"].as_array().into_iter().flatten().collect();
        if paths.is_empty() {
            continue;
        }
        any = true;
        let partner = text(&route["partner"]);
        writeln!(
            out,
            "# partners/{partner}.yaml, route {}: allow-list lines that would pass the unknown fields.",
            text(&route["route"])
        )?;
        writeln!(
            out,
            "# Each one DISCLOSES MORE: review it, then run `partner-gateway diff`. Nothing was applied."
        )?;
        writeln!(out, "    allow:")?;
        let mut held_back = Vec::new();
        for path in paths {
            let name = text(&path["path"]);
            let seen = format!(
                "seen {} times, first {}",
                path["count"],
                text(&path["first_seen"])
            );
            match suggestion(&name, shapes(path)) {
                Suggestion::Allow(line) => {
                    writeln!(out, "      - {:<40} # {seen}", yaml_item(&line))?
                }
                Suggestion::Container => writeln!(
                    out,
                    "      # not suggested: {name} ({seen}; an object or array, whose members drift does not see: allow the ones the partner needs by name, never the whole)"
                )?,
                Suggestion::DataLikeNames => held_back.push(name.to_string()),
                Suggestion::CustomerId => writeln!(
                    out,
                    "      # not suggested: {name} (looks like a customer's identifier: allowed as it is, it hands the partner the raw id; allow it deliberately, with `pseudonymize` where the partner only tells customers apart)"
                )?,
                Suggestion::NotADriftPath => writeln!(
                    out,
                    "      # not suggested: {name} (not a path a gateway's drift table writes: is --admin a partner-gateway?)"
                )?,
                Suggestion::NetworkOrBrowserData => writeln!(
                    out,
                    "      # not suggested: {name} (looks like IP address, domain or browser data, which the privacy policy never joins to personal data)"
                )?,
            }
        }
        for name in held_back {
            writeln!(
                out,
                "      # not suggested: {name} (member names that look like data, not field names)"
            )?;
        }
    }
    if !any {
        writeln!(
            out,
            "# no unknown fields seen since the gateway started: nothing to suggest"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// A suggested path as a YAML list item: quoted where YAML would read the plain word as
/// something other than text (`null`, `true`, `no`, ...), which would make the pasted line an
/// error. Other paths are plain (a drift path holds only letters, digits, `_`, `-`, `.`, `[*]`).
fn yaml_item(path: &str) -> std::borrow::Cow<'_, str> {
    const NOT_TEXT: [&str; 9] = ["null", "true", "false", "yes", "no", "on", "off", "y", "n"];
    if NOT_TEXT.iter().any(|w| path.eq_ignore_ascii_case(w)) {
        format!("\"{path}\"").into()
    } else {
        path.into()
    }
}
