/*!
One route of a partner file: its template, methods, body paths and transforms, records and
subject, forwarded query parameters, headers and JSON media types; then the checks across
routes (overlaps) and the filter program compiled from a route that is sound.
*/
use std::sync::Arc;

use super::{is_never_forwarded, is_token, line, Diags, Invalid, METHODS};
use crate::filter::{CompileError, FilterProgram, FilterSpec, Transform};
use crate::policy::file::{RouteFile, Spanned};
use crate::policy::model::{Route, RouteSegment};
use crate::policy::path::FieldPath;
use crate::policy::route::{literal_count, parse_template, same_shape};

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
    methods: Vec<String>,
    /// `None`: the route takes no body. Only compiled when `spec_ok`.
    spec: Option<FilterSpec>,
    spec_ok: bool,
    /// Each path written in the route (as written, as displayed) with its line, to place compile errors.
    path_lines: Vec<(String, String, u64)>,
    pub(super) pseudonymize_line: Option<u64>,
    query: Vec<String>,
    headers: Vec<String>,
    json_types: Vec<String>,
}

pub(super) fn validate_route(
    ctx: &RouteCtx<'_>,
    spanned: &Spanned<RouteFile>,
    d: &mut Diags,
) -> RouteDraft {
    let path = ctx.path;
    let r = &spanned.value;
    let route_line = line(spanned);
    let template = r.path.value.clone();
    let segments = match parse_template(&template) {
        Ok(s) => Some(s),
        Err(reason) => {
            d.error(
                path,
                line(&r.path),
                Invalid::RoutePath {
                    path: template.clone(),
                    reason,
                },
            );
            None
        }
    };

    let mut methods: Vec<String> = Vec::new();
    match &r.methods {
        Some(list) if !list.value.is_empty() => {
            for m in &list.value {
                let name = m.value.as_str();
                let upper = name.to_ascii_uppercase();
                let problem = if METHODS.contains(&name) {
                    None
                } else if upper == "CONNECT" {
                    Some(Invalid::ForbiddenMethod(
                        name.to_string(),
                        "it would open a tunnel past the filter",
                    ))
                } else if upper == "TRACE" {
                    Some(Invalid::ForbiddenMethod(
                        name.to_string(),
                        "it echoes the request back",
                    ))
                } else if METHODS.contains(&upper.as_str()) {
                    Some(Invalid::LowercaseMethod(name.to_string(), upper))
                } else {
                    Some(Invalid::Method(name.to_string()))
                };
                match problem {
                    Some(problem) => d.error(path, line(m), problem),
                    None if methods.iter().any(|x| x == name) => {
                        d.error(path, line(m), Invalid::DuplicateMethod(name.to_string()))
                    }
                    None => methods.push(name.to_string()),
                }
            }
        }
        _ => d.error(path, route_line, Invalid::NoMethods(template.clone())),
    }

    let mut spec = FilterSpec::default();
    let mut spec_ok = true;
    let mut path_lines = Vec::new();
    let mut field_path = |text: &Spanned<String>, d: &mut Diags| match FieldPath::parse(&text.value)
    {
        Ok(p) => {
            path_lines.push((text.value.clone(), p.to_string(), line(text)));
            Some(p)
        }
        Err(e) => {
            d.error(path, line(text), Invalid::FieldPath(e));
            None
        }
    };
    for a in r.allow.iter().flat_map(|a| &a.value) {
        match field_path(a, d) {
            Some(p) => spec.allow.push(p),
            None => spec_ok = false,
        }
    }
    let mut pseudonymize_line = None;
    let named_transforms = r.transform.as_ref().is_some_and(|t| !t.value.0.is_empty());
    for (key, value) in r.transform.iter().flat_map(|t| &t.value.0) {
        let p = field_path(key, d);
        let t = match &value.value {
            None => {
                d.error(path, line(value), Invalid::NullTransform(key.value.clone()));
                None
            }
            Some(name) => match Transform::parse(name) {
                Ok(t) => Some(t),
                Err(message) => {
                    d.error(path, line(value), Invalid::Transform(message));
                    None
                }
            },
        };
        match (p, t) {
            (Some(p), Some(Some(t))) => {
                if t == Transform::Pseudonymize && pseudonymize_line.is_none() {
                    pseudonymize_line = Some(line(value));
                }
                spec.transforms.push((p, t));
            }
            // `remove`: not allowed, which is the default.
            (Some(_), Some(None)) => {}
            _ => spec_ok = false,
        }
    }
    // As written: a route that names any allow or transform entry filters a body.
    let takes_body = r.allow.as_ref().is_some_and(|a| !a.value.is_empty()) || named_transforms;

    if let Some(records) = &r.records {
        match field_path(records, d) {
            Some(p) => spec.records = Some(p),
            None => spec_ok = false,
        }
    }
    if let Some(subject) = &r.subject {
        let s = &subject.value;
        if s.is_empty() || s.contains(['.', '[', ']', '*', '$']) {
            d.error(path, line(subject), Invalid::Subject(s.clone()));
            spec_ok = false;
        } else {
            path_lines.push((s.clone(), s.clone(), line(subject)));
            spec.subject = Some(s.clone());
            if r.records.is_none() {
                d.error(
                    path,
                    line(subject),
                    Invalid::SubjectWithoutRecords(s.clone()),
                );
                spec_ok = false;
            }
        }
    }
    if !takes_body && (r.records.is_some() || r.subject.is_some()) {
        d.error(
            path,
            route_line,
            Invalid::RecordsWithoutBody(template.clone()),
        );
    }
    if takes_body && ctx.honours && (r.records.is_none() || r.subject.is_none()) {
        d.error(path, route_line, Invalid::NoSubjects(template.clone()));
    }
    let mut query = Vec::new();
    for q in r.query.iter().flat_map(|q| &q.value) {
        let bad = q.value.is_empty()
            || q.value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "&=#%+".contains(c));
        if bad {
            d.error(path, line(q), Invalid::QueryName(q.value.clone()));
        } else if !query.contains(&q.value) {
            query.push(q.value.clone());
        }
    }

    let mut headers = Vec::new();
    for h in r.headers.iter().flat_map(|h| &h.value) {
        let name = h.value.to_ascii_lowercase();
        if !is_token(&name) {
            d.error(path, line(h), Invalid::HeaderName(h.value.clone()));
        } else if is_never_forwarded(&name) {
            d.error(path, line(h), Invalid::ForbiddenHeader(h.value.clone()));
        } else if ctx.credential_header == Some(name.as_str()) {
            d.error(path, line(h), Invalid::CredentialHeader(h.value.clone()));
        } else if !headers.contains(&name) {
            headers.push(name);
        }
    }

    let mut json_types = Vec::new();
    for t in r.json_types.iter().flat_map(|t| &t.value) {
        let valid = t.value.split_once('/').is_some_and(|(ty, sub)| {
            is_token(ty) && is_token(sub) && sub.ends_with("+json") && sub.len() > "+json".len()
        }) && t.value == t.value.to_ascii_lowercase();
        if !valid {
            d.error(path, line(t), Invalid::JsonType(t.value.clone()));
        } else if !json_types.contains(&t.value) {
            json_types.push(t.value.clone());
        }
    }

    RouteDraft {
        template,
        line: route_line,
        segments,
        methods,
        spec: takes_body.then_some(spec),
        spec_ok,
        path_lines,
        pseudonymize_line,
        query,
        headers,
        json_types,
    }
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
                    Invalid::DuplicateRoute {
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
                    Invalid::AmbiguousRoutes {
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
            Ok(program) => Some(Arc::new(program)),
            Err(errors) => {
                for e in errors {
                    let at = compile_error_line(&draft, &e);
                    let CompileError { path: p, message } = e;
                    d.error(path, at, Invalid::Compile { path: p, message });
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
        methods: draft.methods,
        filter,
        query: draft.query,
        headers: draft.headers,
        json_types: draft.json_types,
    })
}

fn compile_error_line(draft: &RouteDraft, e: &CompileError) -> u64 {
    draft
        .path_lines
        .iter()
        .find(|(written, shown, _)| *written == e.path || *shown == e.path)
        .map_or(draft.line, |(_, _, l)| *l)
}
