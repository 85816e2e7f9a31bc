//! How the demo shows a sample: the bodies side by side, what the filter did (the same core
//! call `explain` makes), and the headers the partner received with secrets shortened.

use gateway_core::filter::Change;
use gateway_core::plan::{self, Incoming};
use serde_json::Value;

use super::SampleRequest;
use crate::gateway::{optouts_view, Gateway};

/// Headers whose values are shown shortened: credentials and signed tokens.
fn is_secret(name: &str) -> bool {
    name == "ohsoft-data-use-token" || name == "authorization" || name.contains("api-key")
}

/// The partner's view of the request: method, path and query, and whether it checked the
/// gateway's client certificate.
pub(super) fn print_request(record: &Value) {
    println!(
        "  the partner got: {} {}{}",
        record["method"].as_str().unwrap_or(""),
        record["path"].as_str().unwrap_or(""),
        record["query"]
            .as_str()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    );
    if let Some(name) = record["client_cert"].as_str() {
        println!("  over TLS; the partner verified the gateway's client certificate ({name})");
    }
}

/// The headers in the mock partner's echo (`[[name, value], ...]`).
pub(super) fn received_headers(record: &Value) -> Vec<(String, String)> {
    let pair = |h: &Value| {
        Some((
            h.get(0)?.as_str()?.to_string(),
            h.get(1)?.as_str()?.to_string(),
        ))
    };
    record
        .get("headers")
        .and_then(Value::as_array)
        .map(|hs| hs.iter().filter_map(pair).collect())
        .unwrap_or_default()
}

/// The headers the partner received. Its credential (`upstream_auth`) is shown only when it is
/// the demo's own stand-in (`demo-only-…`): a real one set in the environment is not printed.
pub(super) fn print_headers(gateway: &Gateway, partner: &str, headers: &[(String, String)]) {
    let active = gateway.active();
    let auth = active
        .policy
        .partners
        .get(partner)
        .and_then(|p| p.upstream_auth.as_ref());
    println!("  headers the partner received:");
    for (name, value) in headers {
        let real_credential = auth.is_some_and(|a| {
            !a.secret.starts_with("demo-only-")
                && (a.header.eq_ignore_ascii_case(name) || value.contains(&a.secret))
        });
        let shown = if real_credential {
            "(the partner's credential from the environment: not shown)".to_string()
        } else if is_secret(name) {
            format!("{}…", value.chars().take(24).collect::<String>())
        } else {
            value.clone()
        };
        println!("    {name}: {shown}");
    }
}

/// What the filter did, as `explain` shows it: the same core call on the same input.
pub(super) fn print_changes(
    gateway: &Gateway,
    sample: &SampleRequest,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let active = gateway.active();
    let (path, query) = match sample.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (sample.path.as_str(), None),
    };
    let Ok(target) = plan::resolve(
        &active.policy.partners,
        &sample.method,
        &format!("/{}{path}", sample.partner),
    ) else {
        return;
    };
    let source = gateway.optout_source();
    let incoming = Incoming {
        query,
        headers,
        body,
    };
    let Ok(outgoing) = plan::plan(
        &target,
        &incoming,
        &active.policy.gateway.limits,
        optouts_view(&source),
        true,
    ) else {
        return;
    };
    let mut removed = Vec::new();
    for change in &outgoing.report.changes {
        match change {
            Change::Removed { path } => removed.push(path.as_str()),
            Change::Transformed { path, transform } => {
                println!("  transformed: {path} → {}", transform.name())
            }
            Change::RecordDropped { path, subject } => {
                println!("  dropped:     {path} (customer {subject} opted out)")
            }
        }
    }
    if !removed.is_empty() {
        println!("  removed:     {}", removed.join(", "));
    }
    if !outgoing.query_removed.is_empty() {
        println!(
            "  removed query parameters: {}",
            outgoing.query_removed.join(", ")
        );
    }
    println!("  removed headers: {}", outgoing.headers_removed.join(", "));
}

/// Indents JSON text for reading, keeping member order and number literals as sent.
fn pretty(body: &[u8]) -> Vec<String> {
    gateway_core::policytest::pretty_json(body)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Two JSON bodies in two columns, each line clipped to the column.
pub(super) fn side_by_side(left_title: &str, left: &[u8], right_title: &str, right: &[u8]) {
    const WIDTH: usize = 58;
    let (left, right) = (pretty(left), pretty(right));
    let clip = |s: &str| -> String {
        if s.chars().count() > WIDTH {
            format!("{}…", s.chars().take(WIDTH - 1).collect::<String>())
        } else {
            s.to_string()
        }
    };
    println!("  {:<WIDTH$} │ {}", left_title, right_title);
    println!("  {:─<WIDTH$}─┼─{:─<WIDTH$}", "", "");
    for i in 0..left.len().max(right.len()) {
        let l = left.get(i).map(|s| clip(s)).unwrap_or_default();
        let r = right.get(i).map(|s| clip(s)).unwrap_or_default();
        println!("  {l:<WIDTH$} │ {r}");
    }
}
