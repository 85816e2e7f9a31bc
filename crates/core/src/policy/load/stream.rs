/*!
`stream:` on a route, and what a streaming route cannot also be. Each line of a streamed body
is one record (a JSON object) filtered on its own, so settings about a whole body do not fit:
- `records` other than `$` (each line is the record; `records: $` may be written, or only `subject`);
- a route without `allow` or `transform` (it would take no body);
- methods without a body (`GET`, `HEAD`, `DELETE`, `OPTIONS`);
- `decode` (decoding is bounded by `max_decoded_bytes` over a whole body) and `json_types`
  (the body is NDJSON, never a `+json` document);
- a path starting at an array (`[*]...`): a line must be an object.
*/
use super::route::InvalidRoute;
use super::{line, Diags};
use crate::filter::{FieldPath, Segment};
use crate::policy::file::{RouteFile, Spanned};
use crate::policy::model::StreamFormat;

/// Methods a streaming route may list: those that carry a body.
const STREAM_METHODS: [&str; 3] = ["POST", "PUT", "PATCH"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum InvalidStream {
    #[error("unknown stream format {0:?} (expected ndjson)")]
    Format(String),
    #[error(
        "a streaming route's records are its lines: write `records: $` or name only its subject"
    )]
    Records,
    #[error("a streaming route needs allow or transform: it takes a body")]
    NoBody,
    #[error("method {0:?} carries no body: a streaming route takes POST, PUT or PATCH")]
    Method(String),
    #[error("a streaming route cannot decode: content codings are refused on it (415)")]
    Decode,
    #[error("a streaming route takes application/x-ndjson only: json_types do not apply")]
    JsonTypes,
    #[error("{0:?} starts at an array, but each line of a stream is one record (an object)")]
    ArrayRoot(String),
}

impl From<InvalidStream> for super::Invalid {
    fn from(e: InvalidStream) -> Self {
        InvalidRoute::Stream(e).into()
    }
}

/// The route's `stream:` value; `None` when absent or invalid (reported).
pub(super) fn stream_format(
    path: &str,
    value: Option<&Spanned<String>>,
    d: &mut Diags,
) -> Option<StreamFormat> {
    let value = value?;
    match value.value.as_str() {
        "ndjson" => Some(StreamFormat::Ndjson),
        other => {
            d.error(path, line(value), InvalidStream::Format(other.to_string()));
            None
        }
    }
}

/// A streaming route's `records` when it is written as something other than `$` (each line
/// is the record, so `$` is the only value it may have).
pub(super) fn records_not_lines(r: &RouteFile) -> Option<&Spanned<String>> {
    r.records.as_ref().filter(|x| x.value.trim() != "$")
}

/// Reports every setting a streaming route cannot have, each on its own line.
pub(super) fn check_stream_route(path: &str, r: &RouteFile, takes_body: bool, d: &mut Diags) {
    if let Some(records) = records_not_lines(r) {
        d.error(path, line(records), InvalidStream::Records);
    }
    if !takes_body {
        d.error(path, line(&r.path), InvalidStream::NoBody);
    }
    for m in r.methods.iter().flat_map(|m| &m.value) {
        let known = super::METHODS.contains(&m.value.as_str());
        if known && !STREAM_METHODS.contains(&m.value.as_str()) {
            d.error(path, line(m), InvalidStream::Method(m.value.clone()));
        }
    }
    if let Some(decode) = r.decode.as_ref().filter(|l| !l.value.is_empty()) {
        d.error(path, line(decode), InvalidStream::Decode);
    }
    if let Some(types) = r.json_types.as_ref().filter(|l| !l.value.is_empty()) {
        d.error(path, line(types), InvalidStream::JsonTypes);
    }
    let written = r.allow.iter().flat_map(|a| &a.value);
    let transformed = r
        .transform
        .iter()
        .flat_map(|t| t.value.0.iter().map(|(k, _)| k));
    for p in written.chain(transformed) {
        let starts_at_array = FieldPath::parse(&p.value)
            .is_ok_and(|f| f.segments.first() == Some(&Segment::Elements));
        if starts_at_array {
            d.error(path, line(p), InvalidStream::ArrayRoot(p.value.clone()));
        }
    }
}
