/*!
One route of a partner file: its template, methods, body paths and transforms, records and
subject, forwarded query parameters, headers and JSON media types; then the checks across
routes (overlaps) and the filter program compiled from a route that is sound.
*/
use std::sync::Arc;

use super::{is_never_forwarded, is_token, line, Diags, Invalid, METHODS};
use crate::filter::{CompileError, FilterProgram, FilterSpec, Transform};
use crate::filter::{FieldPath, PathError, Segment};
use crate::headers::is_never_relayed;
use crate::policy::categories;
use crate::policy::file::{RouteFile, Spanned};
use crate::policy::model::{ContentCoding, Route, RouteField, RouteSegment, StreamFormat};
use crate::policy::route::{literal_count, parse_typed_template, same_shape};

/// What can be wrong with a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum InvalidRoute {
    #[error("invalid route path {path:?}: {reason}")]
    RoutePath { path: String, reason: String },
    #[error("route {0:?} has no methods (expected a list such as [POST])")]
    NoMethods(String),
    #[error(
        "unknown method {0:?} (expected one of: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)"
    )]
    Method(String),
    #[error("unknown method {0:?} (methods are uppercase: {1:?})")]
    LowercaseMethod(String, String),
    #[error("method {0:?} is never allowed: {1}")]
    ForbiddenMethod(String, &'static str),
    #[error("method {0:?} is listed twice")]
    DuplicateMethod(String),
    #[error("route {path:?} duplicates route {other:?} on line {other_line}: both take {methods}")]
    DuplicateRoute {
        path: String,
        other: String,
        other_line: u64,
        methods: String,
    },
    #[error(
        "routes {path:?} and {other:?} (line {other_line}) both match some {methods} requests equally well; the one declared first wins"
    )]
    AmbiguousRoutes {
        path: String,
        other: String,
        other_line: u64,
        methods: String,
    },
    #[error("{0}")]
    FieldPath(PathError),
    #[error(
        "transform for {0:?} is an unquoted YAML null: write \"null\" in quotes to replace the value with null (or `remove`)"
    )]
    NullTransform(String),
    #[error("{0}")]
    Transform(String),
    #[error("invalid subject {0:?}: expected the name of one member of each record")]
    Subject(String),
    #[error("subject {0:?} needs records (the path of the customer records; \"$\" when the body is one record)")]
    SubjectWithoutRecords(String),
    #[error("route {0:?} takes no body (no allow or transform), so records and subject have nothing to select")]
    RecordsWithoutBody(String),
    #[error(
        "route {0:?} must name records and subject: this partner honours opt-outs, and without them the records of customers who opted out could never be dropped"
    )]
    NoSubjects(String),
    #[error(
        "header {0:?} carries the partner's credential (upstream_auth); the caller may not send it"
    )]
    CredentialHeader(String),
    #[error("answer header {0:?} is never relayed to callers (credentials, cookies, challenges and framing stay with the partner)")]
    NeverRelayed(String),
    #[error("invalid query parameter name {0:?}: expected a non-empty name without `&`, `=`, `#`, `%`, `+` or spaces")]
    QueryName(String),
    #[error(
        "invalid json_types entry {0:?}: expected a lowercase media type ending in +json, such as application/merge-patch+json"
    )]
    JsonType(String),
    #[error("invalid decode entry {0:?}: expected gzip, deflate or br")]
    Decode(String),
    #[error("{path:?}: {message}")]
    Compile { path: String, message: String },
    #[error("unknown data category {name:?} for {path:?}: not a fideslang data category (nearest: {nearest})")]
    UnknownCategory {
        path: String,
        name: String,
        nearest: String,
    },
    #[error("categories names {0:?}, which is neither an allow nor a transform path of this route (write it exactly as there)")]
    CategoryPathNotDisclosed(String),
    #[error("{0:?} has no data category: add it under this route's `categories:`")]
    Uncategorized(String),
    #[error("{0}")]
    Stream(super::stream::InvalidStream),
    #[error(
        "{0:?} passes record members through a wildcard on a partner that honours opt-outs: members the policy never names reach the partner (a second, case-folded subject key is refused, other look-alikes are not); list the members instead"
    )]
    WildcardRecords(String),
}

pub(super) struct RouteCtx<'a> {
    pub(super) path: &'a str,
    /// The partner honours some opt-out scope: body routes need records and subject.
    pub(super) honours: bool,
    /// The partner's credential header (from upstream_auth), never taken from the caller.
    pub(super) credential_header: Option<&'a str>,
}

/// A route whose parts have been checked, waiting for its filter program.
pub(super) struct RouteDraft {
    template: String,
    line: u64,
    segments: Option<Vec<RouteSegment>>,
    subject_params: Vec<String>,
    methods: Vec<String>,
    /// `None`: the route takes no body. Only compiled when `spec_ok`.
    spec: Option<FilterSpec>,
    spec_ok: bool,
    /// Each path written in the route (as written, as displayed) with its line, to place compile errors.
    path_lines: Vec<(String, String, u64)>,
    pub(super) pseudonymize_line: Option<u64>,
    query: Vec<String>,
    subject_query: Vec<String>,
    headers: Vec<String>,
    json_types: Vec<String>,
    response_headers: Vec<String>,
    decode: Vec<ContentCoding>,
    fields: Vec<RouteField>,
    stream: Option<StreamFormat>,
}

/// Checks one route's parts, section by section, in the order they are written.
pub(super) fn validate_route(
    ctx: &RouteCtx<'_>,
    spanned: &Spanned<RouteFile>,
    d: &mut Diags,
) -> RouteDraft {
    let path = ctx.path;
    let r = &spanned.value;
    let route_line = line(spanned);
    let template = r.path.value.clone();
    let mut subject_params = Vec::new();
    let segments = match parse_typed_template(&template) {
        Ok((s, subjects)) => {
            subject_params = subjects;
            Some(s)
        }
        Err(reason) => {
            let problem = InvalidRoute::RoutePath {
                path: template.clone(),
                reason,
            };
            d.error(path, line(&r.path), problem);
            None
        }
    };
    let methods = methods(path, r.methods.as_ref(), route_line, &template, d);
    // A bad `stream:` value is reported once; the rest is checked as a streaming route.
    let stream = super::stream::stream_format(path, r.stream.as_ref(), d);
    let mut body = body(ctx, r, route_line, r.stream.is_some(), d);
    if r.stream.is_some() {
        super::stream::check_stream_route(path, r, body.takes_body, d);
    }
    let fields = route_categories(path, r, std::mem::take(&mut body.fields), d);
    let (query, subject_query) = query_names(path, r.query.as_ref(), d);
    RouteDraft {
        template,
        line: route_line,
        segments,
        subject_params,
        methods,
        spec: body.takes_body.then_some(body.spec),
        spec_ok: body.ok,
        path_lines: body.path_lines,
        pseudonymize_line: body.pseudonymize_line,
        query,
        subject_query,
        headers: headers(ctx, r.headers.as_ref(), d),
        json_types: json_types(path, r.json_types.as_ref(), d),
        response_headers: response_headers(ctx, r.response_headers.as_ref(), d),
        decode: decode(path, r.decode.as_ref(), d),
        fields,
        stream,
    }
}

/// Checks a route's `categories:` against its allow/transform paths (`fields`, as written,
/// with their lines) and the fideslang taxonomy; returns the fields with their categories.
fn route_categories(
    path: &str,
    r: &RouteFile,
    fields: Vec<(String, u64)>,
    d: &mut Diags,
) -> Vec<RouteField> {
    let entries = r.categories.as_ref().map_or(&[][..], |c| &c.value.0[..]);
    for (key, name) in entries {
        if !fields.iter().any(|(written, _)| *written == key.value) {
            let problem = InvalidRoute::CategoryPathNotDisclosed(key.value.clone());
            d.error(path, line(key), problem);
        }
        if !categories::is_known(&name.value) {
            let problem = InvalidRoute::UnknownCategory {
                path: key.value.clone(),
                name: name.value.clone(),
                nearest: categories::nearest(&name.value, 3).join(", "),
            };
            d.error(path, line(name), problem);
        }
    }
    let repeats: Vec<bool> = (0..fields.len())
        .map(|i| fields[..i].iter().any(|(w, _)| *w == fields[i].0))
        .collect();
    fields
        .into_iter()
        .zip(repeats)
        .map(|((written, at), repeat)| {
            let category = entries
                .iter()
                .find(|(k, _)| k.value == written)
                .map(|(_, v)| v.value.clone());
            if category.is_none() {
                d.warn(path, at, InvalidRoute::Uncategorized(written.clone()));
            }
            RouteField {
                path: written,
                category,
                repeat,
            }
        })
        .collect()
}

type List = Spanned<Vec<Spanned<String>>>;

/// Known uppercase methods, each once; never CONNECT or TRACE.
fn methods(
    path: &str,
    list: Option<&List>,
    route_line: u64,
    template: &str,
    d: &mut Diags,
) -> Vec<String> {
    let mut methods: Vec<String> = Vec::new();
    let Some(list) = list.filter(|l| !l.value.is_empty()) else {
        d.error(
            path,
            route_line,
            InvalidRoute::NoMethods(template.to_string()),
        );
        return methods;
    };
    for m in &list.value {
        let name = m.value.as_str();
        match method_problem(name) {
            Some(problem) => d.error(path, line(m), problem),
            None if methods.iter().any(|x| x == name) => d.error(
                path,
                line(m),
                InvalidRoute::DuplicateMethod(name.to_string()),
            ),
            None => methods.push(name.to_string()),
        }
    }
    methods
}

fn method_problem(name: &str) -> Option<InvalidRoute> {
    let upper = name.to_ascii_uppercase();
    if METHODS.contains(&name) {
        None
    } else if upper == "CONNECT" {
        Some(InvalidRoute::ForbiddenMethod(
            name.to_string(),
            "it would open a tunnel past the filter",
        ))
    } else if upper == "TRACE" {
        Some(InvalidRoute::ForbiddenMethod(
            name.to_string(),
            "it echoes the request back",
        ))
    } else if METHODS.contains(&upper.as_str()) {
        Some(InvalidRoute::LowercaseMethod(name.to_string(), upper))
    } else {
        Some(InvalidRoute::Method(name.to_string()))
    }
}

/// What a route says about the body: the filter spec and where each path was written.
#[derive(Default)]
struct BodyDraft {
    spec: FilterSpec,
    /// Every path parsed: only then is the spec compiled.
    ok: bool,
    /// As written, as displayed, line.
    path_lines: Vec<(String, String, u64)>,
    pseudonymize_line: Option<u64>,
    /// As written: a route that names any allow or transform entry filters a body.
    takes_body: bool,
    /// Allow paths, then (non-`remove`) transform paths, as written with their lines: the
    /// order of the spec's paths, which the filter's match counts follow.
    fields: Vec<(String, u64)>,
}

impl BodyDraft {
    fn field_path(
        &mut self,
        file: &str,
        text: &Spanned<String>,
        d: &mut Diags,
    ) -> Option<FieldPath> {
        match FieldPath::parse(&text.value) {
            Ok(p) => {
                self.path_lines
                    .push((text.value.clone(), p.to_string(), line(text)));
                Some(p)
            }
            Err(e) => {
                d.error(file, line(text), InvalidRoute::FieldPath(e));
                None
            }
        }
    }
}

/// `allow`, `transform`, `records` and `subject`, and how they fit together. On a streaming
/// route each line is one record: `records` is implied (`$`), and `$` is the only value it may have.
fn body(
    ctx: &RouteCtx<'_>,
    r: &RouteFile,
    route_line: u64,
    stream: bool,
    d: &mut Diags,
) -> BodyDraft {
    let path = ctx.path;
    let mut body = BodyDraft {
        ok: true,
        ..BodyDraft::default()
    };
    for a in r.allow.iter().flat_map(|a| &a.value) {
        match body.field_path(path, a, d) {
            Some(p) => {
                body.spec.allow.push(p);
                body.fields.push((a.value.clone(), line(a)));
            }
            None => body.ok = false,
        }
    }
    transforms(path, r, &mut body, d);
    let named_transforms = r.transform.as_ref().is_some_and(|t| !t.value.0.is_empty());
    body.takes_body = r.allow.as_ref().is_some_and(|a| !a.value.is_empty()) || named_transforms;
    records_and_subject(path, r, stream, &mut body, d);
    if ctx.honours {
        warn_wildcard_records(path, r, &body.spec, d);
    }
    let template = &r.path.value;
    if !body.takes_body && (r.records.is_some() || r.subject.is_some()) {
        d.error(
            path,
            route_line,
            InvalidRoute::RecordsWithoutBody(template.clone()),
        );
    }
    let records_named = r.records.is_some() || stream;
    if body.takes_body && ctx.honours && (!records_named || r.subject.is_none()) {
        d.error(path, route_line, InvalidRoute::NoSubjects(template.clone()));
    }
    body
}

fn transforms(path: &str, r: &RouteFile, body: &mut BodyDraft, d: &mut Diags) {
    for (key, value) in r.transform.iter().flat_map(|t| &t.value.0) {
        let p = body.field_path(path, key, d);
        let t = match &value.value {
            None => {
                d.error(
                    path,
                    line(value),
                    InvalidRoute::NullTransform(key.value.clone()),
                );
                None
            }
            Some(name) => match Transform::parse(name) {
                Ok(t) => Some(t),
                Err(message) => {
                    d.error(path, line(value), InvalidRoute::Transform(message));
                    None
                }
            },
        };
        match (p, t) {
            (Some(p), Some(Some(t))) => {
                if t == Transform::Pseudonymize && body.pseudonymize_line.is_none() {
                    body.pseudonymize_line = Some(line(value));
                }
                body.spec.transforms.push((p, t));
                body.fields.push((key.value.clone(), line(key)));
            }
            // `remove`: removed even where an `allow` path also names it.
            (Some(p), Some(None)) => body.spec.removes.push(p),
            _ => body.ok = false,
        }
    }
}

/// On a partner that honours opt-outs, `records[*].*` and `records[*].**` pass members nobody
/// named (look-alikes of the subject among them): a `check` warning.
fn warn_wildcard_records(path: &str, r: &RouteFile, spec: &FilterSpec, d: &mut Diags) {
    let Some(records) = &spec.records else {
        return;
    };
    let n = records.segments.len();
    for a in r.allow.iter().flat_map(|a| &a.value) {
        let Ok(p) = FieldPath::parse(&a.value) else {
            continue;
        };
        let under_records = p.segments.len() >= n && p.segments[..n] == records.segments[..];
        let wildcard = match p.segments.get(n) {
            None => p.subtree,
            Some(seg) => *seg == Segment::AnyMember,
        };
        if under_records && wildcard {
            d.warn(
                path,
                line(a),
                InvalidRoute::WildcardRecords(a.value.clone()),
            );
        }
    }
}

fn records_and_subject(
    path: &str,
    r: &RouteFile,
    stream: bool,
    body: &mut BodyDraft,
    d: &mut Diags,
) {
    if stream {
        // Each line is the record: `records` is `$` when written (anything else is reported
        // by the stream checks).
        if super::stream::records_not_lines(r).is_some() {
            body.ok = false;
        } else if r.subject.is_some() {
            body.spec.records = Some(FieldPath::parse("$").expect("`$` parses"));
        }
    } else if let Some(records) = &r.records {
        match body.field_path(path, records, d) {
            Some(p) => body.spec.records = Some(p),
            None => body.ok = false,
        }
    }
    let Some(subject) = &r.subject else {
        return;
    };
    let s = &subject.value;
    if s.is_empty() || s.contains(['.', '[', ']', '*', '$']) {
        d.error(path, line(subject), InvalidRoute::Subject(s.clone()));
        body.ok = false;
        return;
    }
    body.path_lines.push((s.clone(), s.clone(), line(subject)));
    body.spec.subject = Some(s.clone());
    if r.records.is_none() && !stream {
        d.error(
            path,
            line(subject),
            InvalidRoute::SubjectWithoutRecords(s.clone()),
        );
        body.ok = false;
    }
}

/// Forwarded query parameter names, each once, and those typed as customer ids
/// (`name:subject`, written like a typed path parameter).
fn query_names(path: &str, list: Option<&List>, d: &mut Diags) -> (Vec<String>, Vec<String>) {
    let mut query = Vec::new();
    let mut subjects = Vec::new();
    for q in list.iter().flat_map(|q| &q.value) {
        let (name, typed) = match q.value.strip_suffix(":subject") {
            Some(name) => (name, true),
            None => (q.value.as_str(), false),
        };
        let bad = name.is_empty()
            || name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "&=#%+".contains(c));
        if bad {
            d.error(path, line(q), InvalidRoute::QueryName(q.value.clone()));
            continue;
        }
        if !query.iter().any(|n| n == name) {
            query.push(name.to_string());
        }
        if typed && !subjects.iter().any(|n| n == name) {
            subjects.push(name.to_string());
        }
    }
    (query, subjects)
}

/// Forwarded header names, lowercase, each once: never one the gateway strips or the
/// partner's credential.
fn headers(ctx: &RouteCtx<'_>, list: Option<&List>, d: &mut Diags) -> Vec<String> {
    let path = ctx.path;
    let mut headers = Vec::new();
    for h in list.iter().flat_map(|h| &h.value) {
        let name = h.value.to_ascii_lowercase();
        if !is_token(&name) {
            d.error(path, line(h), Invalid::HeaderName(h.value.clone()));
        } else if is_never_forwarded(&name) {
            d.error(path, line(h), Invalid::ForbiddenHeader(h.value.clone()));
        } else if ctx.credential_header == Some(name.as_str()) {
            d.error(
                path,
                line(h),
                InvalidRoute::CredentialHeader(h.value.clone()),
            );
        } else if !headers.contains(&name) {
            headers.push(name);
        }
    }
    headers
}

/// Partner answer headers relayed beyond the defaults (lowercase, each once); never one that
/// may never reach a caller, nor the header the partner's credential travels in.
fn response_headers(ctx: &RouteCtx<'_>, list: Option<&List>, d: &mut Diags) -> Vec<String> {
    let path = ctx.path;
    let mut headers = Vec::new();
    for h in list.iter().flat_map(|h| &h.value) {
        let name = h.value.to_ascii_lowercase();
        if !is_token(&name) {
            d.error(path, line(h), Invalid::HeaderName(h.value.clone()));
        } else if is_never_relayed(&name) || ctx.credential_header == Some(name.as_str()) {
            d.error(path, line(h), InvalidRoute::NeverRelayed(h.value.clone()));
        } else if !headers.contains(&name) {
            headers.push(name);
        }
    }
    headers
}

/// Content-Encodings the route decodes (`gzip`, `deflate`, `br`), each once.
fn decode(path: &str, list: Option<&List>, d: &mut Diags) -> Vec<ContentCoding> {
    let mut codings = Vec::new();
    for c in list.iter().flat_map(|c| &c.value) {
        match ContentCoding::parse(&c.value).filter(|_| c.value == c.value.to_ascii_lowercase()) {
            Some(coding) if !codings.contains(&coding) => codings.push(coding),
            Some(_) => {}
            None => d.error(path, line(c), InvalidRoute::Decode(c.value.clone())),
        }
    }
    codings
}

/// Extra JSON media types (`type/sub+json`, lowercase), each once.
fn json_types(path: &str, list: Option<&List>, d: &mut Diags) -> Vec<String> {
    let mut json_types = Vec::new();
    for t in list.iter().flat_map(|t| &t.value) {
        let valid = t.value.split_once('/').is_some_and(|(ty, sub)| {
            is_token(ty) && is_token(sub) && sub.ends_with("+json") && sub.len() > "+json".len()
        }) && t.value == t.value.to_ascii_lowercase();
        if !valid {
            d.error(path, line(t), InvalidRoute::JsonType(t.value.clone()));
        } else if !json_types.contains(&t.value) {
            json_types.push(t.value.clone());
        }
    }
    json_types
}

/// Two routes of the same template shape with a method in common are an error (which one
/// should get the request?); two different templates that match the same paths equally
/// well are a warning (the first declared wins).
pub(super) fn check_route_overlaps(path: &str, drafts: &[RouteDraft], d: &mut Diags) {
    for (i, later) in drafts.iter().enumerate() {
        let Some(later_segments) = &later.segments else {
            continue;
        };
        for earlier in &drafts[..i] {
            let Some(earlier_segments) = &earlier.segments else {
                continue;
            };
            let shared: Vec<&str> = later
                .methods
                .iter()
                .filter(|m| earlier.methods.contains(m))
                .map(String::as_str)
                .collect();
            if shared.is_empty() {
                continue;
            }
            let methods = shared.join(", ");
            if same_shape(later_segments, earlier_segments) {
                d.error(
                    path,
                    later.line,
                    InvalidRoute::DuplicateRoute {
                        path: later.template.clone(),
                        other: earlier.template.clone(),
                        other_line: earlier.line,
                        methods,
                    },
                );
            } else if can_overlap(later_segments, earlier_segments)
                && literal_count(later_segments) == literal_count(earlier_segments)
            {
                d.warn(
                    path,
                    later.line,
                    InvalidRoute::AmbiguousRoutes {
                        path: later.template.clone(),
                        other: earlier.template.clone(),
                        other_line: earlier.line,
                        methods,
                    },
                );
            }
        }
    }
}

/// Is there a path both templates match?
fn can_overlap(a: &[RouteSegment], b: &[RouteSegment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (RouteSegment::Literal(x), RouteSegment::Literal(y)) => x == y,
            (RouteSegment::Param(_), RouteSegment::Literal(l))
            | (RouteSegment::Literal(l), RouteSegment::Param(_)) => !l.is_empty(),
            (RouteSegment::Param(_), RouteSegment::Param(_)) => true,
        })
}

pub(super) fn compile_route(path: &str, draft: RouteDraft, d: &mut Diags) -> Option<Route> {
    let filter = match (&draft.spec, draft.spec_ok) {
        (Some(spec), true) => match FilterProgram::compile(spec) {
            Ok(program) => {
                for e in program.warnings() {
                    let at = compile_error_line(&draft, e);
                    let (p, message) = (e.path.clone(), e.message.clone());
                    d.warn(path, at, InvalidRoute::Compile { path: p, message });
                }
                Some(Arc::new(program))
            }
            Err(errors) => {
                for e in errors {
                    let at = compile_error_line(&draft, &e);
                    let CompileError { path: p, message } = e;
                    d.error(path, at, InvalidRoute::Compile { path: p, message });
                }
                return None;
            }
        },
        (Some(_), false) => return None,
        (None, _) => None,
    };
    Some(Route {
        template: draft.template,
        segments: draft.segments?,
        subject_params: draft.subject_params,
        methods: draft.methods,
        filter,
        query: draft.query,
        subject_query: draft.subject_query,
        headers: draft.headers,
        json_types: draft.json_types,
        response_headers: draft.response_headers,
        decode: draft.decode,
        fields: draft.fields,
        stream: draft.stream,
    })
}

fn compile_error_line(draft: &RouteDraft, e: &CompileError) -> u64 {
    draft
        .path_lines
        .iter()
        .find(|(written, shown, _)| *written == e.path || *shown == e.path)
        .map_or(draft.line, |(_, _, l)| *l)
}
