/*!
Shadow decisions: what a candidate policy would have done with a request, compared with what
the active policy did. Both decisions come from the same [`crate::plan::plan`] call; this
module only reads them: the fields each would forward (paths in drift syntax, array indexes as
`[*]`, data-like member names as `*`; see [`crate::drift`]) and how (in clear or transformed),
or the refusal. [`compare`] lists the differences as field paths only, never a value, and no
refusal message (messages can quote request input), only status and code.
*/
use std::collections::BTreeMap;

use crate::drift::{push_element, push_member};
use crate::filter::{Change, Transform};
use crate::plan::Outgoing;
use crate::Refusal;

/// The kinds of difference counted in `partner_gateway_shadow_differences_total{change}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShadowChange {
    /// The candidate would forward a field the active policy does not.
    FieldAdded,
    /// The candidate would not forward a field the active policy does.
    FieldRemoved,
    /// Both forward the field, in different forms.
    TransformChanged,
    /// The active policy forwards the request, the candidate would refuse it.
    NewlyRefused,
    /// The active policy refuses the request, the candidate would forward it.
    NewlyForwarded,
}

impl ShadowChange {
    pub const ALL: [ShadowChange; 5] = [
        ShadowChange::FieldAdded,
        ShadowChange::FieldRemoved,
        ShadowChange::TransformChanged,
        ShadowChange::NewlyRefused,
        ShadowChange::NewlyForwarded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ShadowChange::FieldAdded => "field_added",
            ShadowChange::FieldRemoved => "field_removed",
            ShadowChange::TransformChanged => "transform_changed",
            ShadowChange::NewlyRefused => "newly_refused",
            ShadowChange::NewlyForwarded => "newly_forwarded",
        }
    }
}

/// How a field reaches the partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Clear,
    Transformed(Transform),
}

impl Form {
    pub fn name(self) -> &'static str {
        match self {
            Form::Clear => "clear",
            Form::Transformed(t) => t.name(),
        }
    }
}

/// One policy's decision on a request, as far as comparing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every field path the partner would receive (leaves and empty containers) and its form.
    Forwarded(BTreeMap<String, Form>),
    Refused {
        status: u16,
        code: &'static str,
    },
    /// The request's head passes (partner, route, method, caller, headers), and the body was
    /// never read: the active policy refused the request on its head alone, before asking for
    /// the body, so what would be forwarded is not known.
    Admitted,
}

impl Decision {
    /// Reads a [`crate::plan::plan`] outcome made with `detail` (the transforms' paths come
    /// from the report's changes).
    pub fn of(outcome: &Result<Outgoing, Refusal>) -> Decision {
        match outcome {
            Err(refusal) => Decision::Refused {
                status: refusal.status(),
                code: refusal.code(),
            },
            Ok(outgoing) => {
                let mut fields = BTreeMap::new();
                if !outgoing.body.is_empty() {
                    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&outgoing.body) {
                        leaves(&value, &mut String::new(), &mut fields);
                    }
                }
                for change in &outgoing.report.changes {
                    if let Change::Transformed { path, transform } = change {
                        fields.insert(collapse(path), Form::Transformed(*transform));
                    }
                }
                Decision::Forwarded(fields)
            }
        }
    }
}

fn leaves(value: &serde_json::Value, path: &mut String, out: &mut BTreeMap<String, Form>) {
    let len = path.len();
    match value {
        serde_json::Value::Object(members) if !members.is_empty() => {
            for (name, member) in members {
                push_member(path, name.as_bytes());
                leaves(member, path, out);
                path.truncate(len);
            }
        }
        serde_json::Value::Array(elements) if !elements.is_empty() => {
            for element in elements {
                push_element(path);
                leaves(element, path, out);
                path.truncate(len);
            }
        }
        _ => {
            let key = if path.is_empty() { "$" } else { path.as_str() };
            out.insert(key.to_string(), Form::Clear);
        }
    }
}

/// A concrete filter path (`shipments[0].card_number`, `a["odd key"]`) in drift syntax.
fn collapse(concrete: &str) -> String {
    let mut out = String::new();
    let mut rest = concrete;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("[\"") {
            // A quoted member name: up to the closing `"]` (escapes inside never end it).
            let mut end = None;
            let bytes = after.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' if bytes.get(i + 1) == Some(&b']') => {
                        end = Some(i);
                        break;
                    }
                    _ => i += 1,
                }
            }
            let end = end.unwrap_or(after.len());
            push_member(&mut out, b"\0"); // never a field name: written `*`
            rest = after.get(end + 2..).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix('[') {
            push_element(&mut out);
            rest = after.split_once(']').map_or("", |(_, r)| r);
        } else {
            let rest_trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_trimmed.find(['.', '[']).unwrap_or(rest_trimmed.len());
            push_member(&mut out, &rest_trimmed.as_bytes()[..end]);
            rest = &rest_trimmed[end..];
        }
    }
    out
}

/// The candidate's side of a `newly_forwarded` decided on the head alone.
pub const ADMITTED: &str = "admitted (body not read)";

/// One difference between the active decision and the candidate's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub change: ShadowChange,
    /// The field path, for field differences.
    pub path: Option<String>,
    /// `removed`, `clear` or a transform name (field differences); `forwarded` or
    /// `<status> <code>` (outcome differences).
    pub active: String,
    pub shadow: String,
}

/// Every difference, field paths in order; at most one outcome difference. Two refusals
/// (whatever their codes) are no difference: nothing is forwarded either way. A head the
/// candidate admits where the active policy refused it is `newly_forwarded` (its body was never
/// read); [`Decision::Admitted`] against anything but a refusal says nothing.
pub fn compare(active: &Decision, shadow: &Decision) -> Vec<Difference> {
    let refused = |status: &u16, code: &str| format!("{status} {code}");
    match (active, shadow) {
        (Decision::Refused { .. }, Decision::Refused { .. }) => Vec::new(),
        (Decision::Refused { status, code }, Decision::Admitted) => vec![Difference {
            change: ShadowChange::NewlyForwarded,
            path: None,
            active: refused(status, code),
            shadow: ADMITTED.into(),
        }],
        (Decision::Admitted, _) | (_, Decision::Admitted) => Vec::new(),
        (Decision::Forwarded(_), Decision::Refused { status, code }) => vec![Difference {
            change: ShadowChange::NewlyRefused,
            path: None,
            active: "forwarded".into(),
            shadow: refused(status, code),
        }],
        (Decision::Refused { status, code }, Decision::Forwarded(_)) => vec![Difference {
            change: ShadowChange::NewlyForwarded,
            path: None,
            active: refused(status, code),
            shadow: "forwarded".into(),
        }],
        (Decision::Forwarded(a), Decision::Forwarded(s)) => {
            let mut out = Vec::new();
            let mut paths: Vec<&String> = a.keys().chain(s.keys()).collect();
            paths.sort();
            paths.dedup();
            for path in paths {
                let change = match (a.get(path), s.get(path)) {
                    (Some(_), None) => ShadowChange::FieldRemoved,
                    (None, Some(_)) => ShadowChange::FieldAdded,
                    (Some(x), Some(y)) if x != y => ShadowChange::TransformChanged,
                    _ => continue,
                };
                let name = |f: Option<&Form>| f.map_or("removed", |f| f.name()).to_string();
                out.push(Difference {
                    change,
                    path: Some(path.clone()),
                    active: name(a.get(path)),
                    shadow: name(s.get(path)),
                });
            }
            out
        }
    }
}

mod recent;
pub use recent::{Entry, Recent};

#[cfg(test)]
mod tests;
