/*!
The wire format of a policy test file (`policy/tests/<name>.yaml`): a list of cases, each a request
and its expectation. Parsing checks the shape only (unknown keys, types, `body` and `body_file`
together, an expectation that is neither a forwarded body nor a refusal); the line of each
case and expectation is kept so failures can say `FILE:LINE`.
*/
use serde::Deserialize;
use serde_json::Value;

use crate::optout::Scope;
use crate::policy::file::{parse_yaml, Entries, Spanned};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    name: Spanned<String>,
    partner: Spanned<String>,
    method: Option<Spanned<String>>,
    path: Spanned<String>,
    caller: Option<Spanned<String>>,
    headers: Option<Entries<Spanned<String>, Spanned<String>>>,
    body: Option<Spanned<Value>>,
    body_file: Option<Spanned<String>>,
    optouts: Option<Entries<Spanned<String>, Vec<Spanned<String>>>>,
    /// Optional so that sample requests (`diff --samples`) can share the format.
    expect: Option<Spanned<ExpectFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFile {
    body: Option<Spanned<Value>>,
    body_file: Option<Spanned<String>>,
    headers: Option<Spanned<Entries<Spanned<String>, Option<String>>>>,
    path: Option<Spanned<String>>,
    status: Option<Spanned<u16>>,
    error: Option<Spanned<String>>,
}

/// A request body: none, bytes given inline, or a file relative to the test file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    None,
    Bytes(Vec<u8>),
    File(String),
}

/// What the partner must receive as its body.
#[derive(Debug, Clone, PartialEq)]
pub enum ExpectedBody {
    /// No body at all (a route that takes none, or an expectation that gives none).
    Empty,
    /// Equal as JSON to this value (member order and number spelling aside).
    Json(Value),
    /// Exactly these bytes (a YAML string holding JSON text).
    Exact(String),
    /// Exactly the bytes of this file (relative to the test file; one final newline ignored).
    File(String),
}

/// How a case must end.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Forwarded {
        body: ExpectedBody,
        /// Line of `expect.body` (or of `expect` when no body is given).
        body_line: u64,
        /// Lowercase name → value; `None` means the header must not be sent.
        headers: Vec<(String, Option<String>)>,
        headers_line: u64,
        /// The path and query sent to the partner.
        path: Option<(String, u64)>,
    },
    Refused {
        status: u16,
        code: String,
        line: u64,
    },
}

/// One test: a request and its expectation.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    /// Line of the case's first key.
    pub line: u64,
    pub partner: String,
    pub method: String,
    pub path: String,
    pub caller: Option<String>,
    /// Lowercase names, in file order.
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Customers who opted out, with their scopes, while this case runs.
    pub optouts: Vec<(String, Vec<Scope>)>,
    /// `None` for a sample request without an expectation (`test` reports it as a failure).
    pub expect: Option<Expect>,
}

/// A test file that cannot be read as tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {message}")]
pub struct ParseError {
    pub line: u64,
    pub message: String,
}

fn line<T>(s: &Spanned<T>) -> u64 {
    s.referenced.line().max(1)
}

/// Parses one test file; every case must be well formed.
pub fn parse(text: &str) -> Result<Vec<Case>, Vec<ParseError>> {
    let files: Vec<Spanned<CaseFile>> = parse_yaml(text).map_err(|e| {
        vec![ParseError {
            line: e.line,
            message: e.message,
        }]
    })?;
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match case(file) {
            Ok(c) => cases.push(c),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(cases)
    } else {
        Err(errors)
    }
}

fn case(spanned: Spanned<CaseFile>) -> Result<Case, ParseError> {
    let at = line(&spanned);
    let f = spanned.value;
    let err = |line: u64, message: String| ParseError { line, message };
    let body = match (f.body, f.body_file) {
        (Some(_), Some(file)) => {
            return Err(err(
                line(&file),
                "give `body` or `body_file`, not both".into(),
            ))
        }
        (Some(body), None) => Body::Bytes(request_bytes(body.value)),
        (None, Some(file)) => Body::File(file.value),
        (None, None) => Body::None,
    };
    let mut optouts = Vec::new();
    for (id, scopes) in f.optouts.map(|o| o.0).unwrap_or_default() {
        let mut parsed = Vec::new();
        for scope in scopes {
            parsed.push(Scope::parse(&scope.value).map_err(|m| err(line(&scope), m))?);
        }
        optouts.push((id.value, parsed));
    }
    if let Some(m) = &f.method {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if m.value.is_empty() || !m.value.bytes().all(token) {
            return Err(err(
                line(m),
                format!(
                    "method {:?} is not an HTTP method (a token such as POST)",
                    m.value
                ),
            ));
        }
    }
    if !f.path.value.starts_with('/') {
        return Err(err(
            line(&f.path),
            "the path at the partner starts with `/` (e.g. /v1/shipments)".into(),
        ));
    }
    let expect = f.expect.map(expect).transpose()?;
    Ok(Case {
        name: f.name.value,
        line: at,
        partner: f.partner.value,
        // As written: methods are case-sensitive, and the gateway refuses `post` (405).
        method: f.method.map_or_else(|| "POST".to_string(), |m| m.value),
        path: f.path.value,
        caller: f.caller.map(|c| c.value),
        headers: f
            .headers
            .map(|h| h.0)
            .unwrap_or_default()
            .into_iter()
            .map(|(n, v)| (n.value.to_ascii_lowercase(), v.value))
            .collect(),
        body,
        optouts,
        expect,
    })
}

/// A YAML string is the body's bytes as written (malformed JSON, duplicate keys and escapes can
/// be tested); anything else is written out as JSON.
fn request_bytes(value: Value) -> Vec<u8> {
    match value {
        Value::String(text) => text.into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

fn expect(spanned: Spanned<ExpectFile>) -> Result<Expect, ParseError> {
    let at = line(&spanned);
    let e = spanned.value;
    let forwarded =
        e.body.is_some() || e.body_file.is_some() || e.headers.is_some() || e.path.is_some();
    match (e.status, e.error) {
        (Some(status), Some(code)) if !forwarded => Ok(Expect::Refused {
            status: status.value,
            code: code.value,
            line: line(&status),
        }),
        (None, None) => {
            let (body, body_line) = match (e.body, e.body_file) {
                (Some(_), Some(file)) => {
                    return Err(ParseError {
                        line: line(&file),
                        message: "give `expect.body` or `expect.body_file`, not both".into(),
                    })
                }
                (Some(b), None) => {
                    let l = line(&b);
                    let body = match b.value {
                        Value::String(text) => ExpectedBody::Exact(text),
                        Value::Null => ExpectedBody::Empty,
                        other => ExpectedBody::Json(other),
                    };
                    (body, l)
                }
                (None, Some(f)) => (ExpectedBody::File(f.value.clone()), line(&f)),
                (None, None) => (ExpectedBody::Empty, at),
            };
            let (headers, headers_line) = match e.headers {
                Some(h) => {
                    let l = line(&h);
                    let list = h
                        .value
                        .0
                        .into_iter()
                        .map(|(n, v)| (n.value.to_ascii_lowercase(), v))
                        .collect();
                    (list, l)
                }
                None => (Vec::new(), at),
            };
            Ok(Expect::Forwarded {
                body,
                body_line,
                headers,
                headers_line,
                path: e.path.map(|p| {
                    let l = line(&p);
                    (p.value, l)
                }),
            })
        }
        _ => Err(ParseError {
            line: at,
            message: "`expect` is either a forwarded request (`body` or `body_file`, `headers`, `path`) or a refusal (`status` and `error`), not both or half of one".into(),
        }),
    }
}
