/*!
Shadow decisions: what a candidate policy would have done with a request, compared with what
the active policy did. Both decisions come from the same [`crate::plan::plan_forwarded`] call,
whose filter notes every value it forwards ([`Forwarded`]); this module only reads them: the
fields each would forward (paths in drift syntax, array indexes as
`[*]`, data-like member names as `*`; see [`crate::drift`]) and how (in clear or transformed),
or the refusal. [`compare`] lists the differences as field paths only, never a value, and no
refusal message (messages can quote request input), only status and code.
*/
use crate::filter::Transform;
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
    Forwarded(Fields),
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
    /// Reads a [`crate::plan::plan_forwarded`] outcome (the forwarded values come from its
    /// report's [`Forwarded`]; an outcome of [`crate::plan::plan`] lists none).
    /// `None` when what it forwarded is too large to read ([`Fields::of`]).
    pub fn of(outcome: &Result<Outgoing, Refusal>) -> Option<Decision> {
        match outcome {
            Err(refusal) => Some(Decision::refused(refusal)),
            Ok(outgoing) => Decision::forwarded(&outgoing.report.forwarded),
        }
    }

    pub fn refused(refusal: &Refusal) -> Decision {
        Decision::Refused {
            status: refusal.status(),
            code: refusal.code(),
        }
    }

    /// Every path `forwarded` noted, the leaves of its subtrees included ([`Fields::of`]).
    pub fn forwarded(forwarded: &Forwarded) -> Option<Decision> {
        Fields::of(forwarded).map(Decision::Forwarded)
    }
}

/// A decision as the request left it: what the filter forwarded, not read yet (reading is
/// left to the shadow thread, and skipped when both sides forwarded the same), or any other
/// decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Noted {
    /// What the filter forwarded, and how many records (customers) it dropped.
    Forwarded(Forwarded, u64),
    Decided(Decision),
}

impl Noted {
    /// Takes what a [`crate::plan::plan_forwarded`] outcome forwarded out of its report, or
    /// reads its refusal.
    pub fn take(outcome: &mut Result<Outgoing, Refusal>) -> Noted {
        match outcome {
            Ok(outgoing) => Noted::Forwarded(
                std::mem::take(&mut outgoing.report.forwarded),
                outgoing.report.records_dropped,
            ),
            Err(refusal) => Noted::Decided(Decision::refused(refusal)),
        }
    }

    /// `None` when what it forwarded is too large to read.
    pub fn read(&self) -> Option<Decision> {
        match self {
            Noted::Forwarded(forwarded, _) => Decision::forwarded(forwarded),
            Noted::Decided(decision) => Some(decision.clone()),
        }
    }
}

/// [`compare`] of two noted decisions on one request. Nothing is read when both forwarded the
/// same values (same paths as received, same forms, same subtrees); two forwarded bodies are
/// compared on the paths as received, and only differing paths are written in drift syntax.
/// Two decisions that drop a different number of records come first, as a `newly_forwarded`
/// (the candidate forwards records the active policy drops: customers whose opt-out it no
/// longer honours, or a route without `records`) or a `newly_refused` without a path: paths
/// alone cannot show it, as every record has the same ones. `None` when a note is incomplete or too large to read: a body
/// whose forwarded paths would take many times its size is not compared.
pub fn compare_noted(active: &Noted, shadow: &Noted) -> Option<Vec<Difference>> {
    match (active, shadow) {
        (Noted::Forwarded(a, ra), Noted::Forwarded(s, rs)) => {
            let mut out = Vec::new();
            if ra != rs {
                let records = |n: &u64| format!("{n} records dropped");
                out.push(Difference {
                    change: if rs < ra {
                        ShadowChange::NewlyForwarded
                    } else {
                        ShadowChange::NewlyRefused
                    },
                    path: None,
                    active: records(ra),
                    shadow: records(rs),
                });
            }
            if !a.same_values(s) {
                out.extend(raw::compare_forwarded(a, s)?);
            }
            Some(out)
        }
        _ => Some(compare(&active.read()?, &shadow.read()?)),
    }
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
            let name = |f: Option<Form>| f.map_or("removed", |f| f.name()).to_string();
            a.merge(s, &mut |path, active, shadow| {
                let change = match (active, shadow) {
                    (Some(_), None) => ShadowChange::FieldRemoved,
                    (None, Some(_)) => ShadowChange::FieldAdded,
                    (Some(x), Some(y)) if x != y => ShadowChange::TransformChanged,
                    _ => return,
                };
                out.push(Difference {
                    change,
                    path: Some(path.to_string()),
                    active: name(active),
                    shadow: name(shadow),
                });
            });
            out
        }
    }
}

mod fields;
pub mod forwarded;
mod raw;
mod recent;
pub use fields::Fields;
pub use forwarded::Forwarded;
pub use recent::{Entry, Recent};

#[cfg(test)]
mod tests;
