/*!
Bulk opt-out files: parsing imports and formatting exports. Pure: bytes in, bytes out.

Two formats:
- CSV with the header row `customer_id,scope` and one scope per row (RFC 4180 quoting:
  `"12,3",partner_sharing`); a UTF-8 byte order mark before the header is skipped;
- NDJSON, one `{"customer_id": "..", "scopes": [..]}` per line; `customer_id` may be a JSON
  string or an integer literal (`123` and `"123"` are the same customer); blank lines are skipped.

Parsing is all-or-nothing: either every line is valid and the result is the set of opt-outs the
file names (rows for the same customer merge), or the caller gets every error as
`LINE: message` (1-based), capped at [`MAX_ERRORS`] listed errors plus a count of the rest.
*/

use serde::Deserialize;
use serde_json::value::RawValue;

use super::set::{validate_customer_id, OptOutSet};
use super::Scope;

/// At most this many errors are listed; the rest are only counted.
pub const MAX_ERRORS: usize = 1000;

/// The header row a CSV import must start with.
pub const CSV_HEADER: &str = "customer_id,scope";

/// A bulk file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// `csv`, or `ndjson` (also accepted: `jsonl`).
    #[cfg(test)]
    pub fn from_name(name: &str) -> Result<Format, String> {
        match name {
            "csv" => Ok(Format::Csv),
            "ndjson" | "jsonl" => Ok(Format::Ndjson),
            other => Err(format!(
                "unknown opt-out file format {other:?} (expected csv or ndjson)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }

    /// By extension (`.csv`; `.ndjson`, `.jsonl`, `.json`), else by content: a first
    /// non-blank byte `{` means NDJSON, anything else CSV.
    pub fn detect(file_name: &str, content: &[u8]) -> Format {
        let lower = file_name.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            return Format::Csv;
        }
        if [".ndjson", ".jsonl", ".json"]
            .iter()
            .any(|ext| lower.ends_with(ext))
        {
            return Format::Ndjson;
        }
        match strip_bom(content).iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Format::Ndjson,
            _ => Format::Csv,
        }
    }
}

/// One problem in a bulk file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {message}")]
pub struct LineError {
    /// 1-based line number (for a CSV record spanning lines, the line it starts on).
    pub line: u64,
    pub message: String,
}

/// Every problem found in a bulk file (nothing of it may be imported).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BulkErrors {
    /// The first [`MAX_ERRORS`] errors, in file order.
    pub errors: Vec<LineError>,
    /// Errors found but not listed.
    pub omitted: u64,
}

impl std::fmt::Display for BulkErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        if self.omitted > 0 {
            write!(f, "\n... and {} more errors", self.omitted)?;
        }
        Ok(())
    }
}

impl BulkErrors {
    /// Total number of errors found.
    pub fn total(&self) -> u64 {
        self.errors.len() as u64 + self.omitted
    }
}

#[derive(Default)]
struct Collector {
    errors: Vec<LineError>,
    omitted: u64,
}

impl Collector {
    fn push(&mut self, line: u64, message: impl Into<String>) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(LineError {
                line,
                message: message.into(),
            });
        } else {
            self.omitted += 1;
        }
    }

    fn finish(self, set: OptOutSet) -> Result<OptOutSet, BulkErrors> {
        if self.errors.is_empty() {
            Ok(set)
        } else {
            Err(BulkErrors {
                errors: self.errors,
                omitted: self.omitted,
            })
        }
    }
}

fn strip_bom(content: &[u8]) -> &[u8] {
    content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content)
}

/// Parses a whole bulk file into the opt-outs it names.
pub fn parse(content: &[u8], format: Format) -> Result<OptOutSet, BulkErrors> {
    let content = strip_bom(content);
    match format {
        Format::Csv => parse_csv(content),
        Format::Ndjson => parse_ndjson(content),
    }
}

/// An id an opt-out can be recorded for: one a request could carry (see
/// [`super::id::check_new_opt_out_id`]).
fn checked_id(raw: &str) -> Result<&str, String> {
    validate_customer_id(raw).map_err(|e| format!("invalid customer_id: {e}"))?;
    super::id::check_new_opt_out_id(raw).map_err(|e| {
        format!("invalid customer_id: it is {e}, which no request can carry as a subject id")
    })?;
    Ok(raw)
}

fn add(set: &mut OptOutSet, errors: &mut Collector, line: u64, id: &str, scopes: &[Scope]) {
    if let Err(e) = set.insert(id, scopes) {
        errors.push(line, e.to_string());
    }
}

/// The 1-based line of a byte offset, for offsets that only grow (the CSV reader's own line
/// count leaves out blank lines it skips).
struct LineOf<'a> {
    content: &'a [u8],
    byte: usize,
    line: u64,
}

impl<'a> LineOf<'a> {
    fn new(content: &'a [u8]) -> Self {
        LineOf {
            content,
            byte: 0,
            line: 1,
        }
    }

    /// The line of the first byte at or after `byte` that is not a line end (a record's
    /// position may lie before the blank lines skipped ahead of it).
    fn at(&mut self, byte: u64) -> u64 {
        let mut byte = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .min(self.content.len());
        while matches!(self.content.get(byte), Some(b'\n' | b'\r')) {
            byte += 1;
        }
        if byte > self.byte {
            // `\n`, `\r\n` and a lone `\r` each end a line.
            let part = &self.content[self.byte..byte];
            let ends = part.iter().enumerate().filter(|&(i, b)| {
                *b == b'\n' || (*b == b'\r' && self.content.get(self.byte + i + 1) != Some(&b'\n'))
            });
            self.line += ends.count() as u64;
            self.byte = byte;
        }
        self.line
    }
}

fn parse_csv(content: &[u8]) -> Result<OptOutSet, BulkErrors> {
    let mut set = OptOutSet::new();
    let mut errors = Collector::default();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(content);
    let mut record = csv::ByteRecord::new();
    let mut saw_header = false;
    let mut lines = LineOf::new(content);
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.at(p.byte()));
                errors.push(line, format!("unreadable CSV: {e}"));
                break;
            }
        }
        let start = record.position().map_or(0, csv::Position::byte);
        let line = lines.at(start);
        let raw = usize::try_from(start)
            .ok()
            .zip(usize::try_from(reader.position().byte()).ok())
            .and_then(|(start, end)| content.get(start..end));
        if !raw.is_some_and(strictly_quoted) {
            errors.push(line, "a quoted field goes on after its closing quote (`\"a\"b`): quote the whole field, and write a `\"` inside it as `\"\"`");
            saw_header = true;
            continue;
        }
        if !saw_header {
            saw_header = true;
            if let Err(message) = csv_header(&record) {
                errors.push(line, message);
            }
            continue;
        }
        match csv_row(&record) {
            Ok((id, scope)) => add(
                &mut set,
                &mut errors,
                line,
                id,
                std::slice::from_ref(&scope),
            ),
            Err(message) => errors.push(line, message),
        }
    }
    if !saw_header {
        errors.push(
            1,
            format!("empty file: expected the header row {CSV_HEADER}"),
        );
    }
    errors.finish(set)
}

/// Whether the raw bytes of one CSV record quote as RFC 4180 says: a field that opens with `"`
/// closes with the `"` right before a `,` or the line's end (`""` inside it is one quote). The
/// CSV reader takes `"a"b` for `ab`, which would record an id or scope nobody wrote.
fn strictly_quoted(raw: &[u8]) -> bool {
    let mut i = 0;
    let mut field_start = true;
    while let Some(&b) = raw.get(i) {
        i += 1;
        if !(field_start && b == b'"') {
            // A record's bytes may start with the line ends skipped ahead of it.
            field_start = matches!(b, b',' | b'\r' | b'\n');
            continue;
        }
        loop {
            match (raw.get(i), raw.get(i + 1)) {
                (None, _) => return false,
                (Some(b'"'), Some(b'"')) => i += 2,
                (Some(b'"'), after) => {
                    i += 1;
                    if !matches!(after, None | Some(b',' | b'\r' | b'\n')) {
                        return false;
                    }
                    break;
                }
                _ => i += 1,
            }
        }
        field_start = false;
    }
    true
}

/// The CSV file's first row must be its header, [`CSV_HEADER`].
fn csv_header(record: &csv::ByteRecord) -> Result<(), String> {
    if record.len() == 2 && &record[0] == b"customer_id" && &record[1] == b"scope" {
        return Ok(());
    }
    let found: Vec<_> = record.iter().map(String::from_utf8_lossy).collect();
    Err(format!(
        "expected the header row {CSV_HEADER}, found {:?}",
        found.join(",")
    ))
}

/// One data row: a customer id that passes the opt-out id rules, and one new scope.
fn csv_row(record: &csv::ByteRecord) -> Result<(&str, Scope), String> {
    if record.len() != 2 {
        return Err(format!(
            "expected 2 fields (customer_id,scope), found {}",
            record.len()
        ));
    }
    let (Ok(id), Ok(scope)) = (
        std::str::from_utf8(&record[0]),
        std::str::from_utf8(&record[1]),
    ) else {
        return Err("not valid UTF-8".into());
    };
    let id = checked_id(id)?;
    Ok((id, Scope::parse_new(scope)?))
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = r#"an object {"customer_id": .., "scopes": [..]}"#
)]
struct NdjsonLine<'a> {
    #[serde(borrow)]
    customer_id: &'a RawValue,
    scopes: Vec<String>,
}

/// `-?(0|[1-9][0-9]*)`: JSON's integer literals, whose text is the customer id.
fn is_integer_literal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    match digits.as_bytes() {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// serde_json's message without its " at line 1 column N" (the line is ours to number).
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(pos) => format!("{} (column {})", &text[..pos], e.column()),
        None => text,
    }
}

fn ndjson_id(raw: &RawValue) -> Result<String, String> {
    let text = raw.get();
    let id = if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .map_err(|e| format!("invalid customer_id: {}", json_message(&e)))?
    } else if is_integer_literal(text) {
        super::id::check_integer_literal(text).map_err(|e| {
            format!("invalid customer_id: it is {e}, which no request can carry as a subject id")
        })?;
        text.to_string()
    } else {
        return Err(format!(
            "customer_id must be a string or an integer, found {text}"
        ));
    };
    checked_id(&id)?;
    Ok(id)
}

fn parse_ndjson(content: &[u8]) -> Result<OptOutSet, BulkErrors> {
    let mut set = OptOutSet::new();
    let mut errors = Collector::default();
    let mut scopes = Vec::new();
    for (i, raw) in content.split(|&b| b == b'\n').enumerate() {
        let line = i as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            errors.push(
                line,
                r#"expected an object {"customer_id": .., "scopes": [..]}"#,
            );
            continue;
        }
        let parsed: NdjsonLine<'_> = match serde_json::from_slice(raw) {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.push(line, json_message(&e));
                continue;
            }
        };
        let id = match ndjson_id(parsed.customer_id) {
            Ok(id) => id,
            Err(message) => {
                errors.push(line, message);
                continue;
            }
        };
        if parsed.scopes.is_empty() {
            errors.push(line, "scopes is empty: list at least one scope");
            continue;
        }
        scopes.clear();
        let mut ok = true;
        for s in &parsed.scopes {
            match Scope::parse_new(s) {
                Ok(scope) => scopes.push(scope),
                Err(message) => {
                    errors.push(line, message);
                    ok = false;
                }
            }
        }
        if ok {
            add(&mut set, &mut errors, line, &id, &scopes);
        }
    }
    errors.finish(set)
}

/// What an export starts with (the CSV header row; nothing for NDJSON).
pub fn export_header(format: Format) -> &'static [u8] {
    match format {
        Format::Csv => b"customer_id,scope\n",
        Format::Ndjson => b"",
    }
}

/// Appends one customer's export lines to `out`: one NDJSON line, or one CSV row per scope.
/// Ids are always written as strings. Scopes are written in the order given.
pub fn export_record<'a>(
    format: Format,
    id: &str,
    scopes: impl IntoIterator<Item = &'a Scope>,
    out: &mut Vec<u8>,
) {
    match format {
        Format::Ndjson => {
            out.extend_from_slice(b"{\"customer_id\":");
            json_string(id, out);
            out.extend_from_slice(b",\"scopes\":[");
            for (i, scope) in scopes.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_string(scope.as_str(), out);
            }
            out.extend_from_slice(b"]}\n");
        }
        Format::Csv => {
            for scope in scopes {
                csv_field(id, out);
                out.push(b',');
                csv_field(scope.as_str(), out);
                out.push(b'\n');
            }
        }
    }
}

fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

fn csv_field(s: &str, out: &mut Vec<u8>) {
    let needs_quotes = s.is_empty()
        || s.starts_with(' ')
        || s.ends_with(' ')
        || s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if needs_quotes {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests;
