/*!
The JSON filter engine: turns a caller's body into exactly what a partner may see.

A route's `allow`, `transform`, `records` and `subject` are compiled once per policy load
into a [`FilterProgram`]. [`filter`] then makes one pass over the input bytes, without building
a DOM: it validates strictly (UTF-8, no BOM, no duplicate keys at any depth, no lone
surrogates, depth limit, no trailing bytes), copies allowed values as raw JSON (numbers stay
byte-identical), applies transforms, drops opted-out records, and reports what it did.

- `path`: the field-path language the policy writes (`a.b`, `a[*]`, `a.*`, `a.**`, `$`).
- `compile`: policy paths → a trie of nodes, with every policy mistake reported.
- `scan`: the strict one-pass scanner that validates and emits at the same time.
- `transform`: what `mask`, `last4`, `pseudonymize` and `null` write.

Depth counts containers: a scalar body has depth 0, `[]` and `{}` have depth 1, `{"a":[]}`
has depth 2; `max_depth` is the deepest nesting allowed.
*/

mod compile;
pub mod forwarded;
pub mod path;
mod scan;
mod transform;

#[cfg(test)]
mod tests;

use crate::Refusal;
pub use path::{FieldPath, PathError, Segment};

/// A transform applied to a value that may pass only in changed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transform {
    /// Replaced by `"***"`.
    Mask,
    /// Only the last 4 digits kept, the rest masked; fewer than 8 digits → `"***"`.
    ///
    /// The output is `"***"` followed by the last 4 digits (`"4111 1111 1111 1111"` →
    /// `"***1111"`): the mask has a fixed length so it reveals neither the value's length nor
    /// its separators. Only ASCII digits of the unescaped string (or the number's literal text)
    /// count.
    Last4,
    /// Lowercase hex HMAC-SHA256 of the value's text with the partner's key.
    Pseudonymize,
    /// Replaced by `null`.
    Null,
}

impl Transform {
    pub const ALL: [Transform; 4] = [
        Transform::Mask,
        Transform::Last4,
        Transform::Pseudonymize,
        Transform::Null,
    ];

    /// The name used in policy files and in the `transform` metric label.
    pub fn name(self) -> &'static str {
        match self {
            Transform::Mask => "mask",
            Transform::Last4 => "last4",
            Transform::Pseudonymize => "pseudonymize",
            Transform::Null => "null",
        }
    }

    /// `remove` is not a transform: it is what happens to everything not allowed, so naming it
    /// under `transform` is accepted and means "not allowed" (returns `Ok(None)`).
    pub fn parse(name: &str) -> Result<Option<Transform>, String> {
        match name {
            "mask" => Ok(Some(Transform::Mask)),
            "last4" => Ok(Some(Transform::Last4)),
            "pseudonymize" => Ok(Some(Transform::Pseudonymize)),
            "null" => Ok(Some(Transform::Null)),
            "remove" => Ok(None),
            other => Err(format!(
                "unknown transform {other:?} (expected one of: remove, mask, last4, pseudonymize, null)"
            )),
        }
    }
}

/// What a route's policy says about its body, as written (paths already parsed).
#[derive(Debug, Clone, Default)]
pub struct FilterSpec {
    pub allow: Vec<FieldPath>,
    pub transforms: Vec<(FieldPath, Transform)>,
    /// Paths written `remove` under `transform`: what they match is removed even where an
    /// `allow` path (or `*`) also names it.
    pub removes: Vec<FieldPath>,
    /// Where the customer records are; `$` when the body is one record.
    pub records: Option<FieldPath>,
    /// Member of each record holding the customer id.
    pub subject: Option<String>,
}

/// A policy mistake found while compiling a route's paths; the loader adds file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CompileError {
    /// The offending path as written in the policy.
    pub path: String,
    pub message: String,
}

/// A route's paths compiled into a matcher, built once per policy load.
#[derive(Debug)]
pub struct FilterProgram {
    /// The paths as the policy wrote them (parsed): what `diff` compares.
    spec: FilterSpec,
    nodes: Vec<compile::Node>,
    root: compile::NodeId,
    /// False when the spec has neither `allow` nor `transform`: such a route takes no body.
    takes_body: bool,
    /// The unescaped member name holding each record's customer id.
    subject: Option<Box<[u8]>>,
    single_record: bool,
    uses_pseudonymize: bool,
    /// Paths that compile but never pass anything: `check` warnings.
    warnings: Vec<CompileError>,
    /// How many allow + transform paths the spec had (the length of [`Report::matched`]).
    sources: usize,
    /// Objects take over a member's decision when its key repeats their node's last key order
    /// (off only in tests, to compare against).
    predict_keys: bool,
}

impl FilterProgram {
    /// Compiles a route's spec; returns every mistake found, not just the first.
    ///
    /// Besides malformed `records`/`subject`, these are errors, each naming the path as written:
    /// `**` or a transform on the body root; a transform on a `.**` path, at or beneath a path
    /// that passes a subtree whole (also through `*`); two different transforms for one field
    /// (also through `*`); a path continuing beneath a field that passes only a scalar or is
    /// transformed (`a` with `a.b`, `*` with `a.b`); one field expected to be both an object and an
    /// array (`a.b` with `a[*]`); records that could never be objects; a member name or subject
    /// containing `.`, `[`, `]` or `*`, which no key can match. A field both allowed plainly and
    /// transformed is transformed (fail closed); a path beneath a `.**` path is redundant, not an
    /// error.
    pub fn compile(spec: &FilterSpec) -> Result<FilterProgram, Vec<CompileError>> {
        compile::compile(spec)
    }

    /// The spec this program was compiled from.
    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }

    /// True when some path uses `pseudonymize` (the partner then needs a key).
    pub fn uses_pseudonymize(&self) -> bool {
        self.uses_pseudonymize
    }

    /// Paths that compile but never pass anything (an `allow` of a member an explicit
    /// `remove` takes): `check` shows them as warnings.
    pub fn warnings(&self) -> &[CompileError] {
        &self.warnings
    }

    /// True when `records` is `$`: an opted-out subject refuses the request (451) instead of being dropped.
    pub fn single_record(&self) -> bool {
        self.single_record
    }

    /// True when the program declares both `records` and `subject` (opt-outs can be applied).
    pub fn has_subjects(&self) -> bool {
        self.subject.is_some()
    }

    /// False when the route's spec has neither `allow` nor `transform`: any body is refused.
    pub fn takes_body(&self) -> bool {
        self.takes_body
    }

    /// Tests: the same program with every unknown member's drift path built and looked up
    /// anew (no node stands for one drift path), to compare against the remembered answers.
    #[cfg(test)]
    fn without_drift_memo(mut self) -> FilterProgram {
        for node in &mut self.nodes {
            node.one_path = false;
        }
        self
    }

    /// Tests: the same program with every member name read, looked up and checked anew (no
    /// key-order prediction), to compare against the predicted answers.
    #[cfg(test)]
    fn without_key_prediction(mut self) -> FilterProgram {
        self.predict_keys = false;
        self
    }
}

pub use crate::optout::OptOutLookup;

/// Per-request inputs besides the body.
pub struct FilterOptions<'a> {
    pub max_depth: usize,
    /// Required when the program uses `pseudonymize`; missing → the call fails closed (bad request never; an internal refusal).
    pub pseudonymize_key: Option<&'a [u8]>,
    /// `Some` on routes that honour opt-outs: records are checked against it and need a subject.
    pub optouts: Option<&'a dyn OptOutLookup>,
    /// Collect per-field [`Change`]s (for `explain`); counts are always collected.
    pub detail: bool,
    /// Collect the subject id of every forwarded record into [`Report::subjects`] (for the
    /// disclosure ledger). Without opt-outs, a record without a valid subject is not refused;
    /// it just adds no id.
    pub subjects: bool,
}

/// The body a partner receives and what it took to make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    pub body: Vec<u8>,
    pub report: Report,
}

/// Counts are for what the partner receives: fields removed or transformed inside a record that
/// is then dropped are not counted (the record counts once, in `records_dropped`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Members and elements removed (a removed subtree counts once).
    pub fields_removed: u64,
    /// Count per transform, indexed like [`Transform::ALL`].
    pub transformed: [u64; 4],
    pub records_forwarded: u64,
    pub records_dropped: u64,
    /// Only with `detail`: each change in document order, with its concrete path (`shipments[0].card_number`).
    pub changes: Vec<Change>,
    /// Per allow path, then per transform path (spec order): how many forwarded values it
    /// matched (a subtree passed whole counts once). Values of dropped records do not count.
    pub matched: Vec<u64>,
    /// With [`FilterOptions::subjects`]: the canonical subject id of every forwarded record
    /// (the unescaped string, or an integer's literal text), in document order.
    pub subjects: Vec<String>,
    /// Members no path names (removed by default), every occurrence, also inside records that
    /// were then dropped: what callers send that the policy does not know (drift).
    pub unknown_fields: u64,
    /// Their distinct paths (drift syntax: `[*]` indexes, data-like names as `*`), at most
    /// [`crate::drift::MAX_PATHS_PER_REQUEST`]; never a value.
    pub unknown: Vec<crate::drift::UnknownField>,
    /// Only from [`filter_forwarded`]: every value the partner receives, path and form (what a
    /// shadow decision compares).
    pub forwarded: forwarded::Forwarded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Removed { path: String },
    Transformed { path: String, transform: Transform },
    RecordDropped { path: String, subject: String },
}

/// Filters `body` through `program`. Any refusal means nothing may be forwarded.
///
/// Refusals: `BadRequest` for anything wrong with the body (malformed, duplicate keys, too
/// deep, a shape the policy does not allow; an empty body too, though callers usually decide
/// about empty bodies first); `SubjectMissing` for a record without a valid subject id, or when
/// `optouts` is given to a program without `records`/`subject` (opt-outs could not be honoured);
/// `SubjectOptedOut` for an opted-out single record; `NotReady` when the program pseudonymizes
/// and no key was given.
pub fn filter(
    program: &FilterProgram,
    body: &[u8],
    options: &FilterOptions<'_>,
) -> Result<Filtered, Refusal> {
    scan::filter(program, body, options, false).map_err(|refusal| *refusal)
}

/// [`filter`], also noting in [`Report::forwarded`] every value the partner receives (for
/// shadow decisions). The body and everything else in the report are the same.
pub fn filter_forwarded(
    program: &FilterProgram,
    body: &[u8],
    options: &FilterOptions<'_>,
) -> Result<Filtered, Refusal> {
    scan::filter(program, body, options, true).map_err(|refusal| *refusal)
}

/// Decodes the inside of a JSON string the filter wrote (or validated).
pub(crate) fn unescape_string(raw: &[u8], out: &mut Vec<u8>) {
    scan::unescape(raw, out)
}

/// Checks that `body` is one strict JSON value (the same rules as [`filter`]: UTF-8 without a
/// BOM, RFC 8259 syntax, no lone surrogates, no duplicate keys, at most `max_depth` levels, no
/// trailing bytes) without filtering it.
pub fn validate(body: &[u8], max_depth: usize) -> Result<(), Refusal> {
    scan::validate(body, max_depth).map_err(|refusal| *refusal)
}
