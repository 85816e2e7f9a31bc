/*!
What a route discloses of one field path, read semantically from its allow and transform
paths: `a.**` covers `a.b`, `*` covers every named member, and a transform wins over an allow
that also names the field (the filter's rule). Comparing two routes field by field gives the
fields that start or stop being sent or change transform.
*/
use crate::filter::{FieldPath, Segment};
use crate::filter::{FilterSpec, Transform};

/// How a field reaches the partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disclosure {
    /// Not at all (removed).
    None,
    /// Only some of what lies beneath (a `.**` path asked of a route that names members there).
    Partial(Vec<String>),
    Transformed(Transform),
    /// In clear, a scalar.
    Clear,
    /// In clear, with everything beneath it.
    Subtree,
}

impl Disclosure {
    /// How much it reveals; `Transformed(last4)` and `Transformed(pseudonymize)` rank alike but
    /// reveal different things, so a change between them still counts as disclosing more.
    fn rank(&self) -> u8 {
        match self {
            Disclosure::None => 0,
            Disclosure::Transformed(Transform::Null) => 1,
            Disclosure::Transformed(Transform::Mask) => 2,
            Disclosure::Partial(_) => 3,
            Disclosure::Transformed(_) => 3,
            Disclosure::Clear => 4,
            Disclosure::Subtree => 5,
        }
    }

    /// True when going from `self` to `new` lets the partner learn something it did not.
    pub fn more(&self, new: &Disclosure) -> bool {
        new.rank() > self.rank() || (new.rank() == self.rank() && new != self)
    }

    /// Words for a privacy officer: "in clear", "masked (mask)".
    pub fn words(&self) -> String {
        match self {
            Disclosure::None => "not at all".into(),
            Disclosure::Partial(paths) => format!("only in part ({})", paths.join(", ")),
            Disclosure::Transformed(Transform::Mask) => "masked (mask)".into(),
            Disclosure::Transformed(Transform::Last4) => "as its last 4 digits (last4)".into(),
            Disclosure::Transformed(Transform::Pseudonymize) => {
                "pseudonymised (pseudonymize)".into()
            }
            Disclosure::Transformed(Transform::Null) => "as null".into(),
            Disclosure::Clear => "in clear".into(),
            Disclosure::Subtree => "in clear, with everything beneath it".into(),
        }
    }

    /// A short machine name: `none`, `partial`, `mask`, …, `clear`, `subtree`.
    pub fn name(&self) -> &'static str {
        match self {
            Disclosure::None => "none",
            Disclosure::Partial(_) => "partial",
            Disclosure::Transformed(t) => t.name(),
            Disclosure::Clear => "clear",
            Disclosure::Subtree => "subtree",
        }
    }
}

/// Does policy segment `rule` cover request segment `asked` (`*` covers named members)?
fn covers(rule: &Segment, asked: &Segment) -> bool {
    match (rule, asked) {
        (Segment::AnyMember, Segment::Member(_) | Segment::AnyMember) => true,
        (a, b) => a == b,
    }
}

pub(super) fn covers_all(rule: &[Segment], asked: &[Segment]) -> bool {
    rule.len() == asked.len() && rule.iter().zip(asked).all(|(r, a)| covers(r, a))
}

/// Could `rule` name something at or beneath `asked` (either may be a wildcard)?
fn overlaps_beneath(rule: &[Segment], asked: &[Segment]) -> bool {
    rule.len() >= asked.len()
        && rule
            .iter()
            .zip(asked)
            .all(|(r, a)| covers(r, a) || covers(a, r))
}

/// What `spec` (of a route that takes a body; `None` = no body at all) discloses at `asked`.
pub fn disclosure(spec: Option<&FilterSpec>, asked: &FieldPath) -> Disclosure {
    let Some(spec) = spec else {
        return Disclosure::None;
    };
    let segs = &asked.segments;
    // An explicit `remove` at or above the field wins over every allow and transform.
    if removed(spec, segs) {
        return Disclosure::None;
    }
    if !asked.subtree {
        if let Some((_, t)) = spec
            .transforms
            .iter()
            .find(|(p, _)| !p.subtree && covers_all(&p.segments, segs))
        {
            return Disclosure::Transformed(*t);
        }
    }
    let whole = spec.allow.iter().any(|p| {
        p.subtree
            && p.segments.len() <= segs.len()
            && covers_all(&p.segments, &segs[..p.segments.len()])
    });
    if whole {
        return Disclosure::Subtree;
    }
    if !asked.subtree {
        if spec
            .allow
            .iter()
            .any(|p| !p.subtree && covers_all(&p.segments, segs))
        {
            return Disclosure::Clear;
        }
        return Disclosure::None;
    }
    // Each with its transform, if any: folding `a.b: mask` into `a.**` sends `a.b` in clear.
    let mut beneath: Vec<String> = spec
        .allow
        .iter()
        .map(|p| (p, None))
        .chain(spec.transforms.iter().map(|(p, t)| (p, Some(t))))
        .filter(|(p, _)| overlaps_beneath(&p.segments, segs) && !removed(spec, &p.segments))
        .map(|(p, t)| match t {
            Some(t) => format!("{p}: {}", t.name()),
            None => p.to_string(),
        })
        .collect();
    beneath.sort();
    beneath.dedup();
    if beneath.is_empty() {
        Disclosure::None
    } else {
        Disclosure::Partial(beneath)
    }
}

/// Does one of the spec's `remove` paths name `segs` or a member above it (`*` covering named
/// members)?
fn removed(spec: &FilterSpec, segs: &[Segment]) -> bool {
    spec.removes.iter().any(|r| {
        r.segments.len() <= segs.len() && covers_all(&r.segments, &segs[..r.segments.len()])
    })
}

/// Every path either spec writes (allowed, transformed or removed), once each, in the order
/// written (old first).
pub fn written_paths(old: Option<&FilterSpec>, new: Option<&FilterSpec>) -> Vec<FieldPath> {
    let mut out: Vec<FieldPath> = Vec::new();
    for spec in [old, new].into_iter().flatten() {
        let paths = spec
            .allow
            .iter()
            .chain(spec.transforms.iter().map(|(p, _)| p))
            .chain(&spec.removes);
        for p in paths {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
    }
    out
}

/// One field whose disclosure changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub path: FieldPath,
    pub old: Disclosure,
    pub new: Disclosure,
}

/// The fields whose disclosure differs between two routes' specs. A change beneath a path whose
/// whole subtree changes is left out (the subtree's change says it, and a field beneath a
/// subtree can never disclose more than the subtree does, so the direction is kept).
///
/// A path a `remove` names (`card.cvc: remove` beside an allowed `card.*`) is compared as
/// written and, when neither it nor any path beneath it changes, as the subtree beneath it:
/// taking out the `remove` of an object whose members a `*` allows discloses those members.
pub fn compare(old: Option<&FilterSpec>, new: Option<&FilterSpec>) -> Vec<FieldChange> {
    let at = |path: FieldPath| {
        let change = FieldChange {
            old: disclosure(old, &path),
            new: disclosure(new, &path),
            path,
        };
        (change.old != change.new).then_some(change)
    };
    let mut changes: Vec<FieldChange> =
        written_paths(old, new).into_iter().filter_map(at).collect();
    let removes = [old, new].into_iter().flatten().flat_map(|s| &s.removes);
    let mut beneath: Vec<FieldChange> = removes
        .filter(|r| {
            !r.subtree
                && !changes.iter().any(|c| {
                    c.path.segments.len() >= r.segments.len()
                        && covers_all(&r.segments, &c.path.segments[..r.segments.len()])
                })
        })
        .filter_map(|r| {
            at(FieldPath {
                segments: r.segments.clone(),
                subtree: true,
            })
        })
        .collect();
    beneath.dedup();
    changes.append(&mut beneath);
    let subtrees: Vec<Vec<Segment>> = changes
        .iter()
        .filter(|c| c.path.subtree)
        .map(|c| c.path.segments.clone())
        .collect();
    changes.retain(|c| {
        !subtrees.iter().any(|s| {
            let inside = c.path.segments.len() > s.len()
                || (c.path.segments.len() == s.len() && !c.path.subtree);
            inside && covers_all(s, &c.path.segments[..s.len()])
        })
    });
    changes
}

#[cfg(test)]
mod tests;
