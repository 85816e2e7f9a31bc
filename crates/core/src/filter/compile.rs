/*!
Compiles a route's `allow`, `transform`, `records` and `subject` into the trie that the
scanner follows, and finds every policy mistake on the way.

Paths are first put into a raw trie exactly as written. The raw trie is then expanded into
the runtime trie, where each node says what one position of the body may hold. Expansion is
where paths combine: the `*` subtrie is merged into every named sibling, so `a.x` and `*.e`
give `a` both `x` and `e`, and conflicts that only appear after combining (`a.x: mask` with
`*.x: last4`) are found at compile time rather than per request.
*/
use std::collections::{BTreeMap, BTreeSet};

mod members;

use super::path::{FieldPath, Segment};
use super::{CompileError, FilterProgram, FilterSpec, Transform};
pub(super) use members::{fingerprint, is_path_syntax, same_key, Found, Members};

pub(super) type NodeId = u32;

/// What one position of the body may hold.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) kind: Kind,
    /// The value here is a customer record: it must be an object, and its subject is read.
    pub(super) records: bool,
    /// The spec's allow/transform paths (allow indexes first, then transforms) that end here:
    /// each value handled here is a match for them.
    pub(super) sources: Box<[u16]>,
    /// Every value handled here sits at the same drift path (no `*` member on the way from the
    /// root, and one way there): the node can stand for that path (see [`mark_one_path`]).
    pub(super) one_path: bool,
}

#[derive(Debug)]
pub(super) enum Kind {
    /// A string, number, boolean or null passes as written; an object or array is refused.
    Scalar,
    /// A string or number passes transformed, null as null; anything else is refused.
    Transform(Transform),
    /// Anything passes whole (still strictly validated).
    Subtree,
    /// An object (or null); members not listed are removed.
    Object(Members),
    /// An array (or null); every element goes through `elements`.
    Array { elements: NodeId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Scalar,
    Subtree,
    Transform(Transform),
    /// An explicit `remove`: wins over everything else naming the same position.
    Remove,
}

/// The node id of a member an explicit `remove` names: [`Members::lookup`] answers `None`.
pub(super) const REMOVED: NodeId = NodeId::MAX;

/// One node of the paths as written, before wildcards are combined.
#[derive(Default)]
struct Raw {
    /// What paths ending here say, with each path's text for messages and its source index.
    leaves: Vec<LeafOf>,
    records: Option<String>,
    members: BTreeMap<String, usize>,
    any: Option<usize>,
    elements: Option<usize>,
}

impl Raw {
    fn children(&self) -> impl Iterator<Item = usize> + '_ {
        self.members
            .values()
            .copied()
            .chain(self.any)
            .chain(self.elements)
    }
}

/// A path ending at a raw node: what it says, its text (for messages), its source index.
type LeafOf = (Leaf, String, u16);

/// The sorted, distinct source indices of the `leaves` that `pick` selects.
fn sources_of(leaves: &[&LeafOf], pick: &dyn Fn(Leaf) -> bool) -> Box<[u16]> {
    let mut out: Vec<u16> = leaves
        .iter()
        .filter(|(leaf, _, _)| pick(*leaf))
        .map(|(_, _, s)| *s)
        .collect();
    out.sort_unstable();
    out.dedup();
    out.into_boxed_slice()
}

fn insert(raw: &mut Vec<Raw>, path: &FieldPath) -> usize {
    let mut at = 0;
    for seg in &path.segments {
        let next = match seg {
            Segment::Member(name) => raw[at].members.get(name).copied(),
            Segment::AnyMember => raw[at].any,
            Segment::Elements => raw[at].elements,
        };
        at = match next {
            Some(next) => next,
            None => {
                let id = raw.len();
                raw.push(Raw::default());
                match seg {
                    Segment::Member(name) => {
                        raw[at].members.insert(name.clone(), id);
                    }
                    Segment::AnyMember => raw[at].any = Some(id),
                    Segment::Elements => raw[at].elements = Some(id),
                }
                id
            }
        };
    }
    at
}

/// A path's index in the spec (a policy has far fewer than 65,535 paths per route).
fn source_index(index: usize) -> u16 {
    u16::try_from(index).unwrap_or(u16::MAX)
}

fn error(path: impl Into<String>, message: impl Into<String>) -> CompileError {
    CompileError {
        path: path.into(),
        message: message.into(),
    }
}

/// Member names a path can never match: the path language cannot spell them, but a
/// programmatically built [`FieldPath`] could.
fn check_names(path: &FieldPath, text: &str, errors: &mut Vec<CompileError>) -> bool {
    let mut ok = true;
    for seg in &path.segments {
        if let Segment::Member(name) = seg {
            if name.bytes().any(is_path_syntax) {
                errors.push(error(
                    text,
                    format!("member name {name:?} contains `.`, `[`, `]` or `*` and can never match a key"),
                ));
                ok = false;
            }
        }
    }
    ok
}

pub(super) fn compile(spec: &FilterSpec) -> Result<FilterProgram, Vec<CompileError>> {
    let mut errors = Vec::new();
    let mut raw = vec![Raw::default()];
    add_allowed(spec, &mut raw, &mut errors);
    add_transforms(spec, &mut raw, &mut errors);
    add_removes(spec, &mut raw, &mut errors);
    let single_record = add_records(spec, &mut raw, &mut errors);
    let subject = subject(spec, &mut errors);

    let mut builder = Builder {
        raw: &raw,
        nodes: Vec::new(),
        errors,
        warnings: Vec::new(),
        subtree: None,
    };
    let root = builder.expand(&[0], 1, "$");
    mark_one_path(&mut builder.nodes, root);
    let mut errors = builder.errors;
    let mut warnings = builder.warnings;
    // Only checked on a trie that compiled: a mistake in the paths is reported where it is.
    let checkable = errors.is_empty() && (!spec.allow.is_empty() || !spec.transforms.is_empty());
    if let Some(records) = spec.records.as_ref().filter(|_| checkable) {
        if !records_carry_data(&builder.nodes) {
            errors.push(error(
                records.to_string(),
                "no allow or transform path lies at or beneath the records, so no record's data is forwarded and opt-outs could never drop any: point `records` at the array holding the customers' data",
            ));
        }
    }

    // Combining `*` into every sibling can report one mistake several times.
    let mut seen = BTreeSet::new();
    errors.retain(|e| seen.insert((e.path.clone(), e.message.clone())));
    warnings.retain(|e| seen.insert((e.path.clone(), e.message.clone())));
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(FilterProgram {
        spec: spec.clone(),
        nodes: builder.nodes,
        root,
        takes_body: !spec.allow.is_empty() || !spec.transforms.is_empty(),
        subject,
        single_record,
        predict_keys: true,
        sources: spec.allow.len() + spec.transforms.len(),
        warnings,
        uses_pseudonymize: spec
            .transforms
            .iter()
            .any(|(_, t)| *t == Transform::Pseudonymize),
    })
}

/// Whether some record node holds, at or beneath it, a value an allow or transform path
/// matches (true when no node is a record: that mistake is reported where it arises).
fn records_carry_data(nodes: &[Node]) -> bool {
    let mut record_nodes = (0..nodes.len()).filter(|&i| nodes[i].records).peekable();
    record_nodes.peek().is_none()
        || record_nodes.any(|i| carries_sources(nodes, i as NodeId, nodes.len()))
}

/// Whether the value at `id`, or one beneath it, is matched by an allow or transform path.
/// `budget` bounds the walk by the number of nodes (the trie has no cycles).
fn carries_sources(nodes: &[Node], id: NodeId, budget: usize) -> bool {
    let Some(node) = nodes.get(id as usize).filter(|_| budget > 0) else {
        return false;
    };
    if !node.sources.is_empty() {
        return true;
    }
    match &node.kind {
        Kind::Object(members) => members
            .named
            .iter()
            .map(|&(_, _, child)| child)
            .chain(members.any)
            .any(|child| child != REMOVED && carries_sources(nodes, child, budget - 1)),
        Kind::Array { elements } => carries_sources(nodes, *elements, budget - 1),
        Kind::Scalar | Kind::Transform(_) | Kind::Subtree => false,
    }
}

/// Sets [`Node::one_path`] on the nodes reached exactly once from `root`, through named
/// members and array elements only. A node under a `*` member is reached by many keys, so the
/// drift path of what it holds depends on the key, not on the node.
fn mark_one_path(nodes: &mut [Node], root: NodeId) {
    // Per node: times reached, and whether every way there was through named members.
    let mut visits = vec![(0u32, true); nodes.len()];
    let mut stack = vec![(root, true)];
    while let Some((id, named)) = stack.pop() {
        let (Some(visit), Some(node)) = (visits.get_mut(id as usize), nodes.get(id as usize))
        else {
            continue; // REMOVED
        };
        visit.0 += 1;
        visit.1 &= named;
        match &node.kind {
            Kind::Object(members) => {
                stack.extend(members.named.iter().map(|&(_, _, child)| (child, named)));
                stack.extend(members.any.map(|child| (child, false)));
            }
            Kind::Array { elements } => stack.push((*elements, named)),
            Kind::Scalar | Kind::Transform(_) | Kind::Subtree => {}
        }
    }
    for (node, (count, named)) in nodes.iter_mut().zip(visits) {
        node.one_path = count == 1 && named;
    }
}

/// The `allow` paths, as scalar or subtree leaves.
fn add_allowed(spec: &FilterSpec, raw: &mut Vec<Raw>, errors: &mut Vec<CompileError>) {
    for (index, path) in spec.allow.iter().enumerate() {
        let source = source_index(index);
        let text = path.to_string();
        if path.segments.is_empty() {
            if path.subtree {
                errors.push(error(
                    "**",
                    "`**` on the body root would pass everything; list the members instead",
                ));
            } else {
                errors.push(error(
                    text,
                    "`$` names the whole body; allow its members instead",
                ));
            }
            continue;
        }
        let leaf = if path.subtree {
            Leaf::Subtree
        } else {
            Leaf::Scalar
        };
        add_leaf(raw, errors, path, text, leaf, source);
    }
}

/// Adds the leaf a path ends in, unless one of its member names can never match.
fn add_leaf(
    raw: &mut Vec<Raw>,
    errors: &mut Vec<CompileError>,
    path: &FieldPath,
    text: String,
    leaf: Leaf,
    source: u16,
) {
    if check_names(path, &text, errors) {
        let at = insert(raw, path);
        raw[at].leaves.push((leaf, text, source));
    }
}

/// The `transforms`, each on single values (numbered after the `allow` paths).
fn add_transforms(spec: &FilterSpec, raw: &mut Vec<Raw>, errors: &mut Vec<CompileError>) {
    for (index, (path, transform)) in spec.transforms.iter().enumerate() {
        let source = source_index(spec.allow.len() + index);
        let text = path.to_string();
        if path.subtree {
            errors.push(error(
                text,
                format!(
                    "transform {} applies to single values, not to a subtree (`.**`); list the members instead",
                    transform.name()
                ),
            ));
            continue;
        }
        if path.segments.is_empty() {
            errors.push(error(
                text,
                "a transform cannot apply to the whole body; name a member or element",
            ));
            continue;
        }
        add_leaf(raw, errors, path, text, Leaf::Transform(*transform), source);
    }
}

/// The `remove` paths: object members only.
fn add_removes(spec: &FilterSpec, raw: &mut Vec<Raw>, errors: &mut Vec<CompileError>) {
    for path in &spec.removes {
        let text = path.to_string();
        let last_is_member = matches!(
            path.segments.last(),
            Some(Segment::Member(_) | Segment::AnyMember)
        );
        if path.subtree || !last_is_member {
            errors.push(error(
                text,
                "remove applies to object members: name a member (`a.b`, `a.*`), not `[*]` or `.**`",
            ));
            continue;
        }
        add_leaf(raw, errors, path, text, Leaf::Remove, u16::MAX);
    }
}

/// Where the records are; true when the whole body is one record.
fn add_records(spec: &FilterSpec, raw: &mut Vec<Raw>, errors: &mut Vec<CompileError>) -> bool {
    let Some(records) = &spec.records else {
        return false;
    };
    let text = records.to_string();
    if records.subtree {
        errors.push(error(
            text,
            "records cannot end in `.**`; use `$` or a path ending in `[*]`",
        ));
    } else if !records.is_root() && records.segments.last() != Some(&Segment::Elements) {
        errors.push(error(
            text,
            "records must be `$` (the body is one record) or a path ending in `[*]`",
        ));
    } else if check_names(records, &text, errors) {
        let at = insert(raw, records);
        raw[at].records = Some(text);
        return records.is_root();
    }
    false
}

/// The member of each record holding the customer id; records and subject come together.
fn subject(spec: &FilterSpec, errors: &mut Vec<CompileError>) -> Option<Box<[u8]>> {
    match (&spec.records, &spec.subject) {
        (Some(records), None) => errors.push(error(
            records.to_string(),
            "records given without subject: name the member of each record holding the customer id",
        )),
        (None, Some(name)) => errors.push(error(
            name.as_str(),
            "subject given without records: say where the records are (`$` or a path ending in `[*]`)",
        )),
        (Some(_), Some(name)) => {
            if name.is_empty() {
                errors.push(error(name.as_str(), "subject is empty"));
            } else if name.bytes().any(is_path_syntax) {
                errors.push(error(
                    name.as_str(),
                    "subject contains `.`, `[`, `]` or `*`: it names one member of each record and can never match such a key",
                ));
            } else {
                return Some(name.as_bytes().into());
            }
        }
        (None, None) => {}
    }
    None
}

struct Builder<'r> {
    raw: &'r [Raw],
    nodes: Vec<Node>,
    errors: Vec<CompileError>,
    /// Paths that compile but never pass anything (see [`Builder::removed`]).
    warnings: Vec<CompileError>,
    /// The one shared node for "anything passes" (members of a record passed whole).
    subtree: Option<NodeId>,
}

fn join(at: &str, name: &str) -> String {
    if at == "$" {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

fn elements_of(at: &str) -> String {
    if at == "$" {
        "[*]".to_string()
    } else {
        format!("{at}[*]")
    }
}

impl<'r> Builder<'r> {
    fn push(&mut self, kind: Kind, records: bool) -> NodeId {
        self.push_with(kind, records, Box::default())
    }

    fn push_with(&mut self, kind: Kind, records: bool, sources: Box<[u16]>) -> NodeId {
        self.nodes.push(Node {
            kind,
            records,
            sources,
            one_path: false,
        });
        // A policy has far fewer than 2^32 nodes.
        NodeId::try_from(self.nodes.len() - 1).unwrap_or(NodeId::MAX)
    }

    fn subtree_node(&mut self) -> NodeId {
        match self.subtree {
            Some(id) => id,
            None => {
                let id = self.push(Kind::Subtree, false);
                self.subtree = Some(id);
                id
            }
        }
    }

    /// Every path text ending in the subtries below `ids` (not at `ids` themselves).
    fn sources_below(&self, ids: &[usize]) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack: Vec<usize> = ids.iter().flat_map(|&id| self.raw[id].children()).collect();
        while let Some(id) = stack.pop() {
            let raw = &self.raw[id];
            out.extend(raw.leaves.iter().map(|(_, text, _)| text.clone()));
            out.extend(raw.records.iter().cloned());
            stack.extend(raw.children());
        }
        out.sort();
        out.dedup();
        out
    }

    /// Inside a subtree that passes whole, nothing is looked at, so transforms and records
    /// there would silently do nothing: refuse them.
    fn beneath_subtree(&mut self, ids: &[usize], subtree: &str) {
        let mut stack: Vec<usize> = ids.to_vec();
        while let Some(id) = stack.pop() {
            let raw = &self.raw[id];
            for (leaf, text, _) in &raw.leaves {
                if let Some(name) = transform_name(*leaf) {
                    self.errors.push(error(
                        text.as_str(),
                        format!(
                            "transform {name} sits beneath `{subtree}`, which passes whole; list the members instead of using `.**`"
                        ),
                    ));
                }
            }
            if let Some(records) = &raw.records {
                self.errors.push(error(
                    records.as_str(),
                    format!("records lie beneath `{subtree}`, which passes whole; list the members instead of using `.**`"),
                ));
            }
            stack.extend(raw.children());
        }
    }

    /// Builds the runtime node for the union of raw nodes `ids` (one named member plus every
    /// `*` that also matches it). `at` is the position for messages.
    ///
    /// The first `own` of `ids` are reached through the position's own names: a path ending
    /// at or beneath them matches only here, so it is reported when the position makes it
    /// dead. The others come through a `*`: their paths also match other members, and a
    /// position that stops them here is no mistake (`a.*.name` beside `a.internal: remove`).
    fn expand(&mut self, ids: &[usize], own: usize, at: &str) -> NodeId {
        let raw = self.raw;
        let nodes: Vec<&'r Raw> = ids.iter().map(|&id| &raw[id]).collect();
        let leaves: Vec<&'r LeafOf> = nodes.iter().flat_map(|n| &n.leaves).collect();
        let records = nodes.iter().find_map(|n| n.records.as_deref());
        let own_ids = &ids[..own.min(ids.len())];
        if let Some((_, remove, _)) = leaves.iter().find(|(leaf, _, _)| *leaf == Leaf::Remove) {
            let own_leaves: Vec<&LeafOf> = nodes[..own_ids.len()]
                .iter()
                .flat_map(|n| &n.leaves)
                .collect();
            return self.removed(own_ids, at, (remove, &own_leaves), records);
        }
        if let Some((_, subtree, _)) = leaves.iter().find(|(leaf, _, _)| *leaf == Leaf::Subtree) {
            let children: Vec<usize> = nodes.iter().flat_map(|n| n.children()).collect();
            return self.whole(&children, at, subtree, &leaves, records);
        }
        if let Some(node) = self.single_value(own_ids, at, &leaves, records) {
            return node;
        }
        self.container(&nodes, own_ids.len(), at, records)
    }

    /// An explicit remove wins over `allow` and `*`: nothing at or below passes. Paths below
    /// it are errors; another path ending at the removed member itself is a warning, since a
    /// policy may allow a field and remove it on purpose (`*: remove` beside named members).
    /// `own_ids` and `own_leaves`: the position's own raw nodes and the paths ending there (see
    /// [`Builder::expand`]).
    fn removed(
        &mut self,
        own_ids: &[usize],
        at: &str,
        (remove, own_leaves): (&str, &[&LeafOf]),
        records: Option<&str>,
    ) -> NodeId {
        for (leaf, text, _) in own_leaves {
            if *leaf != Leaf::Remove {
                self.warnings.push(error(
                    text.as_str(),
                    format!("never passes anything: `{remove}` removes `{at}`"),
                ));
            }
        }
        for below in self.sources_below(own_ids) {
            self.errors.push(error(
                below,
                format!("can never match: `{remove}` removes `{at}` whole"),
            ));
        }
        if let Some(records) = records {
            self.errors.push(error(
                records,
                format!("records can never be forwarded: `{remove}` removes `{at}`"),
            ));
        }
        REMOVED
    }

    /// `subtree` (`at.**`) passes `at` whole: transforms at or below it conflict.
    fn whole(
        &mut self,
        children: &[usize],
        at: &str,
        subtree: &str,
        leaves: &[&LeafOf],
        records: Option<&str>,
    ) -> NodeId {
        for (leaf, text, _) in leaves {
            if let Leaf::Transform(t) = leaf {
                self.errors.push(error(
                    text.as_str(),
                    format!(
                        "transform {} conflicts with `{subtree}`, which passes `{at}` whole; list the members instead of using `.**`",
                        t.name()
                    ),
                ));
            }
        }
        self.beneath_subtree(children, subtree);
        let sources = sources_of(leaves, &|leaf| leaf == Leaf::Subtree);
        if records.is_some() {
            // A record passed whole still needs its subject read and its object shape
            // enforced, so it becomes an object whose every member passes whole.
            let any = self.subtree_node();
            return self.push_with(
                Kind::Object(Members::new(Vec::new(), Some(any))),
                true,
                sources,
            );
        }
        self.push_with(Kind::Subtree, false, sources)
    }

    /// A position allowed as a scalar or transformed holds one value: paths below its own raw
    /// nodes `own_ids` can never match. `None` when no path ends here as a single value.
    fn single_value(
        &mut self,
        own_ids: &[usize],
        at: &str,
        leaves: &[&LeafOf],
        records: Option<&str>,
    ) -> Option<NodeId> {
        let (kind, from, what) = self.single_value_kind(at, leaves)?;
        for below in self.sources_below(own_ids) {
            self.errors.push(error(
                below,
                format!(
                    "can never match: `{from}` is {what}, so `{at}` must hold a string, number, boolean or null; \
                     allow `{at}.**` instead to pass a subtree"
                ),
            ));
        }
        if let Some(records) = records {
            self.errors.push(error(
                records,
                format!(
                    "records must be objects, but `{from}` passes only a single value at `{at}`"
                ),
            ));
        }
        let sources = sources_of(leaves, &|leaf| leaf != Leaf::Subtree);
        Some(self.push_with(kind, false, sources))
    }

    /// The kind of a single-value position, the path that made it one, and what it is.
    /// Allowed plainly and transformed: the transform wins, failing closed.
    fn single_value_kind<'a>(
        &mut self,
        at: &str,
        leaves: &[&'a LeafOf],
    ) -> Option<(Kind, &'a str, String)> {
        let mut transforms: Vec<(Transform, &str)> = leaves
            .iter()
            .filter_map(|(leaf, text, _)| match leaf {
                Leaf::Transform(t) => Some((*t, text.as_str())),
                _ => None,
            })
            .collect();
        transforms.sort_by_key(|&(t, _)| t);
        transforms.dedup_by_key(|&mut (t, _)| t);
        if let [(a, from_a), (b, from_b), ..] = transforms[..] {
            self.errors.push(error(
                at,
                format!(
                    "conflicting transforms: {} (from `{from_a}`) and {} (from `{from_b}`)",
                    a.name(),
                    b.name()
                ),
            ));
        }
        let scalar = leaves
            .iter()
            .find(|(leaf, _, _)| *leaf == Leaf::Scalar)
            .map(|(_, text, _)| text.as_str());
        match (transforms.first(), scalar) {
            (Some(&(t, from)), _) => Some((
                Kind::Transform(t),
                from,
                format!("transformed ({})", t.name()),
            )),
            (None, Some(from)) => Some((Kind::Scalar, from, "allowed as a scalar".to_string())),
            (None, None) => None,
        }
    }

    /// An object (members, `*`, or records) or an array (`[*]`); a position cannot be both.
    /// The first `own` of `nodes` are the position's own (see [`Builder::expand`]).
    fn container(&mut self, nodes: &[&Raw], own: usize, at: &str, records: Option<&str>) -> NodeId {
        let names: BTreeSet<&String> = nodes.iter().flat_map(|n| n.members.keys()).collect();
        // Children in `nodes`' order, with how many come from the own nodes.
        let children = |child: &dyn Fn(&Raw) -> Option<usize>| -> (Vec<usize>, usize) {
            let own_children = nodes[..own].iter().filter_map(|n| child(n)).count();
            (
                nodes.iter().filter_map(|n| child(n)).collect(),
                own_children,
            )
        };
        let (anys, own_anys) = children(&|n| n.any);
        let (elements, own_elements) = children(&|n| n.elements);
        let wants_object = !names.is_empty() || !anys.is_empty() || records.is_some();
        if wants_object && !elements.is_empty() {
            self.object_or_array(nodes, &elements, at, records);
        }
        if !wants_object && !elements.is_empty() {
            let inner = self.expand(&elements, own_elements, &elements_of(at));
            // `remove` only names members, so array elements are never REMOVED.
            return self.push(Kind::Array { elements: inner }, false);
        }
        let mut named = Vec::with_capacity(names.len());
        let mut guarded = Vec::new();
        let mut plain = Vec::new();
        for name in names {
            // A named member's own nodes are its own name's; every `*` beside it is shared.
            let (mut member_ids, own_members) = children(&|n| n.members.get(name).copied());
            let by_name = member_ids.len();
            if self.transforms_or_removes(&member_ids[..by_name]) {
                guarded.push(Box::<[u8]>::from(name.as_bytes()));
            } else {
                plain.push((name, member_ids[..by_name].to_vec()));
            }
            member_ids.extend(&anys);
            let child = if self.passes_anything(&member_ids) {
                self.expand(&member_ids, own_members, &join(at, name))
            } else {
                REMOVED
            };
            named.push((
                Box::<[u8]>::from(name.as_bytes()),
                fingerprint(name.as_bytes()),
                child,
            ));
        }
        let any = (!anys.is_empty()).then(|| {
            if self.passes_anything(&anys) {
                self.expand(&anys, own_anys, &join(at, "*"))
            } else {
                REMOVED
            }
        });
        self.warn_folded_names(&plain, &guarded);
        let members = Members::new(named, any).guarding(guarded);
        self.push(Kind::Object(members), records.is_some())
    }

    /// A member passed as it stands whose name case-insensitive JSON readers take for a
    /// sibling the policy transforms or removes (`Card` allowed beside `card: last4`): keys are
    /// matched exactly, so it is legal, but such a reader may take its raw value for the other.
    fn warn_folded_names(&mut self, plain: &[(&String, Vec<usize>)], guarded: &[Box<[u8]>]) {
        for (name, ids) in plain {
            let Some(other) = guarded
                .iter()
                .find(|g| crate::optout::id::name_folds_onto(name.as_bytes(), g))
            else {
                continue;
            };
            let other = String::from_utf8_lossy(other);
            for source in self.sources_below_ids(ids) {
                self.warnings.push(error(
                    source,
                    format!("passes `{name}` as it stands, which case-insensitive JSON readers take for `{other}`, which the policy transforms or removes beside it"),
                ));
            }
        }
    }

    /// Does a path through one of the raw nodes `ids` transform or remove what it reaches?
    fn transforms_or_removes(&self, ids: &[usize]) -> bool {
        self.any_at_or_below(ids, |raw| {
            let guards = |(leaf, _, _): &LeafOf| matches!(leaf, Leaf::Transform(_) | Leaf::Remove);
            raw.leaves.iter().any(guards)
        })
    }

    /// Whether `hit` holds for one of the raw nodes `ids` or a node beneath them.
    fn any_at_or_below(&self, ids: &[usize], hit: impl Fn(&Raw) -> bool) -> bool {
        let mut stack = ids.to_vec();
        while let Some(id) = stack.pop() {
            let raw = &self.raw[id];
            if hit(raw) {
                return true;
            }
            stack.extend(raw.children());
        }
        false
    }

    /// Paths expect an object at `at` and others an array: the array ones can never match.
    /// Through a `*` too: which shape wins would be a guess, so the policy must say.
    fn object_or_array(
        &mut self,
        nodes: &[&Raw],
        elements: &[usize],
        at: &str,
        records: Option<&str>,
    ) {
        let object_from = match records {
            Some(records) => records.to_string(),
            None => {
                let members: Vec<usize> = nodes
                    .iter()
                    .flat_map(|n| n.members.values().copied().chain(n.any))
                    .collect();
                self.sources_below_ids(&members)
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| at.to_string())
            }
        };
        for below in self.sources_below_ids(elements) {
            self.errors.push(error(
                below,
                format!("can never match: `{object_from}` expects an object at `{at}`, but this path expects an array there"),
            ));
        }
    }

    /// Does any allow or transform path (or records) end at or below the raw nodes `ids`? A
    /// position only `remove` paths lead to is removed, never passed as an empty shell.
    fn passes_anything(&self, ids: &[usize]) -> bool {
        self.any_at_or_below(ids, |raw| {
            raw.records.is_some() || raw.leaves.iter().any(|(leaf, _, _)| *leaf != Leaf::Remove)
        })
    }

    /// Every path text ending at or below the raw nodes `ids`.
    fn sources_below_ids(&self, ids: &[usize]) -> Vec<String> {
        let mut out: Vec<String> = ids
            .iter()
            .flat_map(|&id| {
                let raw = &self.raw[id];
                raw.leaves
                    .iter()
                    .map(|(_, text, _)| text.clone())
                    .chain(raw.records.iter().cloned())
            })
            .collect();
        out.extend(self.sources_below(ids));
        out.sort();
        out.dedup();
        out
    }
}

/// The transform a leaf names, `remove` included.
fn transform_name(leaf: Leaf) -> Option<&'static str> {
    match leaf {
        Leaf::Transform(t) => Some(t.name()),
        Leaf::Remove => Some("remove"),
        Leaf::Scalar | Leaf::Subtree => None,
    }
}
