/*!
Runs one policy test case: decides its request exactly as the proxy would (same
[`plan::resolve`], caller check and [`plan::plan`]) and compares the outcome with the
expectation, rendering a mismatch as a unified diff of indented JSON.
*/
use serde_json::Value;

use super::file::{Body, Case, Expect, ExpectedBody};
use crate::callers::Caller;
use crate::optout::OptOutSet;
use crate::plan::{self, Incoming, OptOuts, Outgoing};
use crate::policy::Policy;
use crate::shadow::excess;
use crate::tagging::{DataUseTag, DATA_USE_HEADER, DATA_USE_TOKEN_HEADER};
use crate::Refusal;

/// Why a case failed: the line to point at, what went wrong, and a diff when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub line: u64,
    pub message: String,
    /// Unified diff, `-` expected, `+` actual.
    pub diff: Option<String>,
}

impl Failure {
    fn at(line: u64, message: String) -> Failure {
        Failure {
            line,
            message,
            diff: None,
        }
    }
}

/// The pseudonymisation key policy tests use for a partner (never the real one, so expected
/// pseudonyms are stable and reveal nothing): the bytes of `test-key:<partner id>`.
pub fn test_pseudonymize_key(partner_id: &str) -> Vec<u8> {
    format!("test-key:{partner_id}").into_bytes()
}

/// What the partner would get: the outgoing request plus the `ohsoft-data-use` tag.
pub struct Forwarded {
    pub outgoing: Outgoing,
    pub tag: String,
    /// The partner's credential header (`upstream_auth`), added when the request is sent.
    pub credential_header: Option<String>,
}

/// Headers the gateway adds only when it sends the request (framing, the signed token): a
/// test decides without connecting or signing, so it cannot say whether or how they are sent.
const ADDED_WHEN_SENT: [&str; 4] = [
    "host",
    "content-length",
    "transfer-encoding",
    DATA_USE_TOKEN_HEADER,
];

/// Decides `case`'s request under `policy` (whose pseudonymisation keys are already set):
/// the forwarded request or the refusal. `Err` when a file the case names cannot be read.
/// `read` reads a file named by the case, relative to its test file.
pub fn decide_case(
    policy: &Policy,
    case: &Case,
    read: &dyn Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<Result<Forwarded, Refusal>, Failure> {
    let body = match &case.body {
        Body::None => Vec::new(),
        Body::Bytes(bytes) => bytes.clone(),
        Body::File(name) => read(name)
            .map_err(|e| Failure::at(case.line, format!("cannot read body_file {name:?}: {e}")))?,
    };
    let mut headers = crate::plan::borrowed_headers(&case.headers);
    if !body.is_empty() && !headers.iter().any(|(n, _)| *n == "content-type") {
        headers.push(("content-type", "application/json"));
    }
    let mut set = OptOutSet::new();
    for (id, scopes) in &case.optouts {
        set.insert(id, scopes)
            .map_err(|e| Failure::at(case.line, format!("optouts: {e}")))?;
    }
    Ok(decide(policy, case, &headers, &body, &set))
}

/// Runs one test case: its decision must match its expectation.
pub fn run_case(
    policy: &Policy,
    case: &Case,
    read: &dyn Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<(), Failure> {
    let Some(expect) = &case.expect else {
        return Err(Failure::at(
            case.line,
            "no `expect`: give the body the partner must receive, or the refusal".into(),
        ));
    };
    let outcome = decide_case(policy, case, read)?;
    compare(expect, outcome, read)
}

fn decide(
    policy: &Policy,
    case: &Case,
    headers: &[(&str, &str)],
    body: &[u8],
    optouts: &OptOutSet,
) -> Result<Forwarded, Refusal> {
    let (raw_path, query) = match case.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (case.path.as_str(), None),
    };
    let target = plan::resolve(
        &policy.partners,
        &case.method,
        &format!("/{}{raw_path}", case.partner),
    )?;
    if let Some(caller) = &case.caller {
        Caller::named(caller).check_partner(&target.partner)?;
    }
    let incoming = Incoming {
        query,
        headers,
        body,
    };
    let outgoing = plan::plan(
        &target,
        &incoming,
        &policy.gateway.limits,
        OptOuts::Loaded(optouts),
        false,
    )?;
    let partner = &target.partner;
    let tag = DataUseTag::for_request(partner, &policy.version, outgoing.legal_basis.as_deref())
        .request_header_value()?;
    let credential_header = partner
        .upstream_auth_source
        .as_ref()
        .map(|c| c.header.clone());
    Ok(Forwarded {
        outgoing,
        tag,
        credential_header,
    })
}

fn compare(
    expect: &Expect,
    outcome: Result<Forwarded, Refusal>,
    read: &dyn Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<(), Failure> {
    match (expect, outcome) {
        (Expect::Refused { status, code, line }, Err(refusal)) => {
            if refusal.status() == *status && refusal.code() == code {
                Ok(())
            } else {
                Err(Failure::at(
                    *line,
                    format!(
                        "expected refusal {status} {code}, got {} {} ({})",
                        refusal.status(),
                        refusal.code(),
                        refusal.message()
                    ),
                ))
            }
        }
        (Expect::Refused { status, code, line }, Ok(forwarded)) => Err(Failure {
            line: *line,
            message: format!(
                "expected refusal {status} {code}, but the request would be forwarded with this body"
            ),
            diff: Some(pretty_json(&forwarded.outgoing.body)),
        }),
        (Expect::Forwarded { body_line, .. }, Err(refusal)) => Err(Failure::at(
            *body_line,
            format!(
                "expected the request to be forwarded, but it would be refused: {} {} ({})",
                refusal.status(),
                refusal.code(),
                refusal.message()
            ),
        )),
        (expect @ Expect::Forwarded { .. }, Ok(forwarded)) => {
            compare_forwarded(expect, &forwarded, read)
        }
    }
}

fn compare_forwarded(
    expect: &Expect,
    forwarded: &Forwarded,
    read: &dyn Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<(), Failure> {
    let Expect::Forwarded {
        body,
        body_line,
        headers,
        headers_line,
        path,
    } = expect
    else {
        return Ok(());
    };
    let actual = &forwarded.outgoing.body;
    compare_body(body, *body_line, actual, read)?;
    for (name, want) in headers {
        if ADDED_WHEN_SENT.contains(&name.as_str())
            || forwarded.credential_header.as_ref() == Some(name)
        {
            return Err(Failure::at(
                *headers_line,
                format!(
                    "header {name:?} is added when the gateway sends the request (framing, the signed data-use token, the partner's credential): a policy test cannot check it; remove this expectation"
                ),
            ));
        }
        let got = if name == DATA_USE_HEADER {
            Some(forwarded.tag.as_str())
        } else {
            forwarded
                .outgoing
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        if got != want.as_deref() {
            let show = |v: Option<&str>| v.map_or("(not sent)".to_string(), |v| format!("{v:?}"));
            return Err(Failure::at(
                *headers_line,
                format!(
                    "header {name:?}: expected {}, got {}",
                    show(want.as_deref()),
                    show(got)
                ),
            ));
        }
    }
    if let Some((want, line)) = path {
        if *want != forwarded.outgoing.path_and_query {
            return Err(Failure::at(
                *line,
                format!(
                    "forwarded path: expected {want:?}, got {:?}",
                    forwarded.outgoing.path_and_query
                ),
            ));
        }
    }
    Ok(())
}

fn compare_body(
    expected: &ExpectedBody,
    line: u64,
    actual: &[u8],
    read: &dyn Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<(), Failure> {
    let exact = |want: &[u8]| {
        if want == actual {
            return Ok(());
        }
        let (want_text, actual_text) = (pretty_json(want), pretty_json(actual));
        if want_text != actual_text {
            return Err(body_failure(line, &want_text, &actual_text));
        }
        // Equal once laid out alike: the difference is whitespace or a final newline, which
        // the line diff would not show. Both bodies as written, escaped.
        Err(Failure {
            line,
            message: "the partner would receive a different body: it differs only in layout (whitespace, or a final newline such as a YAML `|` block adds); a string `body` is compared byte for byte, a mapping as JSON (- expected, + actual)".into(),
            diff: Some(format!(
                "- {:?}\n+ {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(actual)
            )),
        })
    };
    match expected {
        ExpectedBody::Empty => exact(b""),
        ExpectedBody::Exact(text) => exact(text.as_bytes()),
        ExpectedBody::File(name) => {
            let mut want = read(name)
                .map_err(|e| Failure::at(line, format!("cannot read body_file {name:?}: {e}")))?;
            if want.last() == Some(&b'\n') {
                want.pop();
            }
            exact(&want)
        }
        ExpectedBody::Json(want) => {
            let got: Option<Value> = serde_json::from_slice(actual).ok();
            if got.as_ref() == Some(want) {
                return Ok(());
            }
            let render = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
            let actual_text = got.as_ref().map_or_else(|| pretty_json(actual), render);
            Err(body_failure(line, &render(want), &actual_text))
        }
    }
}

fn body_failure(line: u64, expected: &str, actual: &str) -> Failure {
    Failure {
        line,
        message: "the partner would receive a different body (- expected, + actual)".into(),
        diff: Some(unified_diff(expected, actual)),
    }
}

/// Whether `new` carries more than `old` toward the partner: a body field (a value's path,
/// array indexes as `[*]`) more times, a header or a query parameter more times. Values are
/// not compared: a masked value in place of a clear one is not more, and how each field is
/// sent is what the field-level comparison reports. A body that is neither JSON nor NDJSON
/// counts as more whenever it differs.
pub fn carries_more(old: &Outgoing, new: &Outgoing) -> bool {
    let query = |o: &Outgoing| -> Vec<String> {
        let q = o.path_and_query.split_once('?').map_or("", |(_, q)| q);
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split('=').next().unwrap_or_default().to_string())
            .collect()
    };
    let headers =
        |o: &Outgoing| -> Vec<String> { o.headers.iter().map(|(n, _)| n.clone()).collect() };
    let body_more = match (field_counts(&old.body), field_counts(&new.body)) {
        (Some(o), Some(n)) => excess(n, o) > 0,
        _ => old.body != new.body,
    };
    body_more || excess(query(new), query(old)) > 0 || excess(headers(new), headers(old)) > 0
}

/// The path of every value in a JSON (or NDJSON) body, once per occurrence; `None` when the
/// body is neither. An empty body has none.
fn field_counts(body: &[u8]) -> Option<Vec<String>> {
    let mut paths = Vec::new();
    let text = std::str::from_utf8(body).ok()?;
    let whole = serde_json::from_str::<Value>(text).ok();
    let docs: Vec<Value> = match whole {
        Some(doc) => vec![doc],
        None => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .ok()?,
    };
    let mut stack: Vec<(String, &Value)> = docs.iter().map(|d| ("$".to_string(), d)).collect();
    while let Some((path, value)) = stack.pop() {
        match value {
            Value::Object(members) => {
                for (k, v) in members {
                    stack.push((format!("{path}.{k:?}"), v));
                }
            }
            Value::Array(items) => {
                for v in items {
                    stack.push((format!("{path}[*]"), v));
                }
            }
            _ => {}
        }
        paths.push(path);
    }
    Some(paths)
}

/// A line diff: ` ` common, `-` only in `expected`, `+` only in `actual`; only changed lines
/// and three lines around each are shown, `…` marks what is left out.
pub fn unified_diff(expected: &str, actual: &str) -> String {
    let mut out = String::new();
    let diff = similar::TextDiff::from_lines(expected, actual);
    let groups = diff.grouped_ops(3);
    let total = expected.lines().count().max(actual.lines().count());
    for (i, group) in groups.iter().enumerate() {
        let starts_at_top = group
            .first()
            .is_some_and(|op| op.old_range().start == 0 && op.new_range().start == 0);
        if i > 0 || !starts_at_top {
            out.push_str("  …\n");
        }
        for op in group {
            for change in diff.iter_changes(op) {
                let sign = match change.tag() {
                    similar::ChangeTag::Equal => ' ',
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                };
                out.push(sign);
                out.push(' ');
                out.push_str(change.value().trim_end_matches('\n'));
                out.push('\n');
            }
        }
        let ends_at_bottom = group
            .last()
            .is_some_and(|op| op.old_range().end.max(op.new_range().end) >= total);
        if i + 1 == groups.len() && !ends_at_bottom {
            out.push_str("  …\n");
        }
    }
    out
}

/// Indents JSON text for reading, keeping it as written: member order and number literals are
/// the bytes that were sent (a `serde_json::Value` round trip would sort keys and reformat
/// numbers). Not JSON-aware beyond strings: it only adds line breaks and indentation.
pub fn pretty_json(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        return "(no body)".to_string();
    }
    let (mut lines, mut line) = (Vec::new(), String::new());
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |lines: &mut Vec<String>, line: &mut String, depth: usize| {
        if !line.trim().is_empty() {
            lines.push(std::mem::take(line));
        }
        *line = "  ".repeat(depth);
    };
    for c in text.chars() {
        if in_string {
            line.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                line.push(c);
            }
            '{' | '[' => {
                line.push(c);
                depth += 1;
                newline(&mut lines, &mut line, depth);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut lines, &mut line, depth);
                line.push(c);
            }
            ',' => {
                line.push(c);
                newline(&mut lines, &mut line, depth);
            }
            ':' => line.push_str(": "),
            c if c.is_whitespace() => {}
            c => line.push(c),
        }
    }
    newline(&mut lines, &mut line, 0);
    lines.join("\n")
}
