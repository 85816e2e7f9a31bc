/*!
Shadow decisions: what a candidate policy would have done with a request, compared with what
the active policy did. Both decisions come from the same [`crate::plan::plan_forwarded`] call,
whose filter notes every value it forwards ([`Forwarded`]); this module only reads them: the
fields each would forward (paths in drift syntax, array indexes as
`[*]`, data-like member names as `*`; see [`crate::drift`]) and how (in clear or transformed),
or the refusal. [`compare`] lists the differences as field paths only, never a value, and no
refusal message (messages can quote request input), only status and code.
*/
use std::collections::HashSet;

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
    /// What the filter forwarded, which records (customers), and the names of the query
    /// parameters and headers sent with it.
    Forwarded(Forwarded, Records, Head),
    Decided(Decision),
}

/// The records (customers) a forwarded decision kept and dropped, as far as comparing needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub dropped: u64,
    /// The subject ids of the forwarded records (none on a route without `subject`).
    pub subjects: Vec<String>,
}

/// The names (never the values) of the query parameters and headers a forwarded request
/// carries, as the paths a difference lists them by: `?name` and `header:name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head(pub Vec<String>);

impl Head {
    pub fn of(outgoing: &Outgoing) -> Head {
        let query = outgoing
            .path_and_query
            .split_once('?')
            .map_or("", |(_, q)| q);
        let params = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| format!("?{}", p.split_once('=').map_or(p, |(name, _)| name)));
        let headers = outgoing.headers.iter().map(|(n, _)| format!("header:{n}"));
        Head(params.chain(headers).collect())
    }

    /// The bytes the names hold (for a queue's bound).
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<String>()
            + self.0.iter().map(String::capacity).sum::<usize>()
    }
}

impl Records {
    /// The bytes the subject ids hold (for a queue's bound).
    pub fn heap_bytes(&self) -> usize {
        self.subjects.capacity() * std::mem::size_of::<String>()
            + self.subjects.iter().map(String::capacity).sum::<usize>()
    }

    /// Whether the decision knows its records by subject: it forwarded one, or dropped one (a
    /// record is only dropped by its subject's opt-out).
    fn by_subject(&self) -> bool {
        !self.subjects.is_empty() || self.dropped > 0
    }
}

impl Noted {
    /// Takes what a [`crate::plan::plan_forwarded`] outcome forwarded out of its report, or
    /// reads its refusal.
    pub fn take(outcome: &mut Result<Outgoing, Refusal>) -> Noted {
        match outcome {
            Ok(outgoing) => {
                // Copied, not taken: the request's ledger record still needs the subjects.
                let records = Records {
                    dropped: outgoing.report.records_dropped,
                    subjects: outgoing.report.subjects.clone(),
                };
                let head = Head::of(outgoing);
                let forwarded = std::mem::take(&mut outgoing.report.forwarded);
                Noted::Forwarded(forwarded, records, head)
            }
            Err(refusal) => Noted::Decided(Decision::refused(refusal)),
        }
    }

    /// `None` when what it forwarded is too large to read.
    pub fn read(&self) -> Option<Decision> {
        match self {
            Noted::Forwarded(forwarded, ..) => Decision::forwarded(forwarded),
            Noted::Decided(decision) => Some(decision.clone()),
        }
    }
}

/// [`compare`] of two noted decisions on one request. Nothing is read when both forwarded the
/// same values (same paths as received, same forms, same subtrees); two forwarded bodies are
/// compared on the paths as received, and only differing paths are written in drift syntax.
/// Differences in which records are forwarded come first ([`record_differences`]): paths alone
/// cannot show them, as every record has the same ones. `None` when a note is incomplete or
/// too large to read: a body whose forwarded paths would take many times its size is not
/// compared.
pub fn compare_noted(active: &Noted, shadow: &Noted) -> Option<Vec<Difference>> {
    match (active, shadow) {
        (Noted::Forwarded(a, ra, ha), Noted::Forwarded(s, rs, hs)) => {
            let mut out = record_differences(ra, rs);
            out.extend(head_differences(ha, hs));
            if !a.same_values(s) {
                out.extend(raw::compare_forwarded(a, s)?);
            }
            Some(out)
        }
        _ => Some(compare(&active.read()?, &shadow.read()?)),
    }
}

/// Records one decision forwards and the other drops, without a path: a `newly_forwarded` for
/// records the candidate forwards and the active policy drops (customers whose opt-out it no
/// longer honours), a `newly_refused` for the reverse. By subject id when both decisions know
/// their records by subject (so a candidate that drops as many records, but other customers',
/// is seen); otherwise by how many records each drops (a route without `records` drops none).
fn record_differences(a: &Records, s: &Records) -> Vec<Difference> {
    let (newly, gone) = if a.by_subject() && s.by_subject() {
        (
            excess(&s.subjects, &a.subjects) as u64,
            excess(&a.subjects, &s.subjects) as u64,
        )
    } else {
        (
            a.dropped.saturating_sub(s.dropped),
            s.dropped.saturating_sub(a.dropped),
        )
    };
    let dropped = |r: &Records| format!("{} records dropped", r.dropped);
    let mut out = Vec::new();
    for (n, change, what) in [
        (
            newly,
            ShadowChange::NewlyForwarded,
            "forwarded that the active policy drops",
        ),
        (
            gone,
            ShadowChange::NewlyRefused,
            "dropped that the active policy forwards",
        ),
    ] {
        if n > 0 {
            out.push(Difference {
                change,
                path: None,
                active: dropped(a),
                shadow: format!("{} ({n} {what})", dropped(s)),
            });
        }
    }
    out
}

/// Query parameters and headers one decision sends and the other does not (by name, as many
/// times as each sends it): `field_added` for the candidate's, `field_removed` for the active
/// policy's, listed as `?name` and `header:name`.
fn head_differences(a: &Head, s: &Head) -> Vec<Difference> {
    let mut out = Vec::new();
    let count = |h: &Head, name: &String| h.0.iter().filter(|n| *n == name).count();
    let names: std::collections::BTreeSet<&String> = a.0.iter().chain(&s.0).collect();
    for name in names {
        let (in_a, in_s) = (count(a, name), count(s, name));
        let (change, active, shadow) = match in_s.cmp(&in_a) {
            std::cmp::Ordering::Greater => (ShadowChange::FieldAdded, "removed", "clear"),
            std::cmp::Ordering::Less => (ShadowChange::FieldRemoved, "clear", "removed"),
            std::cmp::Ordering::Equal => continue,
        };
        out.push(Difference {
            change,
            path: Some(name.clone()),
            active: active.into(),
            shadow: shadow.into(),
        });
    }
    out
}

/// How many items of `more` are left over once each is matched with an equal item of `than`
/// (a multiset difference's size): records, fields, headers one side has more of.
pub(crate) fn excess<T: Eq + std::hash::Hash>(
    more: impl IntoIterator<Item = T>,
    than: impl IntoIterator<Item = T>,
) -> usize {
    let mut counts: std::collections::HashMap<T, i64> = std::collections::HashMap::new();
    for item in than {
        *counts.entry(item).or_default() -= 1;
    }
    for item in more {
        *counts.entry(item).or_default() += 1;
    }
    counts.values().map(|&c| c.max(0) as usize).sum()
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
            still_sent_containers(&mut out);
            out
        }
    }
}

/// An empty object or array that one side sends where the other sends it with members
/// (`device: {}` against `device.f1`) goes to the partner either way: only its members differ,
/// so it is neither removed nor added.
fn still_sent_containers(out: &mut Vec<Difference>) {
    let ancestors = |change: ShadowChange| -> HashSet<&str> {
        let mut set = HashSet::new();
        for path in out
            .iter()
            .filter(|d| d.change == change)
            .flat_map(|d| &d.path)
        {
            for (at, _) in path.match_indices(['.', '[']) {
                set.insert(&path[..at]);
            }
        }
        set
    };
    let (beneath_added, beneath_removed) = (
        ancestors(ShadowChange::FieldAdded),
        ancestors(ShadowChange::FieldRemoved),
    );
    let keep: Vec<bool> = out
        .iter()
        .map(|d| {
            let path = d.path.as_deref().unwrap_or_default();
            match d.change {
                ShadowChange::FieldRemoved => !beneath_added.contains(path),
                ShadowChange::FieldAdded => !beneath_removed.contains(path),
                _ => true,
            }
        })
        .collect();
    let mut keep = keep.into_iter();
    out.retain(|_| keep.next().unwrap_or(true));
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
