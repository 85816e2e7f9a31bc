//! Drift bookkeeping for members no path names, without a path string per member.
//!
//! Every unknown member counts in [`Report::unknown_fields`](super::super::Report) and adds an
//! occurrence to its distinct drift path in `Report::unknown` ([`drift::note`] decides, with its
//! bound of [`drift::MAX_PATHS_PER_REQUEST`]). Building that path and searching the list for it
//! is the slow part, and bodies repeat the same members record after record. So where an object's
//! trie node stands for one drift path ([`Node::one_path`](super::super::compile::Node)), the
//! pair (node, member name) remembers the entry the path went to — or that the full list refused
//! it, which it would do again, since the list only grows. Later occurrences add to that entry
//! directly. The memory is direct-mapped ([`SLOTS`] slots, a newer pair evicts an older one
//! in its slot), so it stays small however many names a body holds. Objects under a `*`
//! member (whose path depends on the key above them) and pairs not (or no longer) remembered
//! take the slow path, which gives the same answer; so does a body's first unknown member, so
//! that a body with only one never allocates the memory. When key-order prediction remembers
//! the member's key (in the node's slot), the answer is remembered with it too, so a predicted
//! unknown member goes straight to its entry.
use std::borrow::Cow;

use super::super::compile::{same_key, NodeId};
use crate::drift::{self, Shapes, UnknownField};

/// How many (node, name) pairs can be remembered at once (a power of two).
pub(super) const SLOTS: usize = 64;

/// The list was full when this path was first seen: it is not listed.
const NOT_LISTED: u32 = u32::MAX;

struct Remembered<'a> {
    node: NodeId,
    fp: u64,
    name: Cow<'a, [u8]>,
    entry: u32,
}

/// What one request has learned about where its unknown members' paths went.
#[derive(Default)]
pub(super) struct Unknowns<'a> {
    /// Empty until the first unknown member of an object that stands for one path.
    remembered: Vec<Option<Remembered<'a>>>,
    /// Reused for the drift paths the slow path builds.
    path: String,
    /// Whether one unknown member was noted already: the first is not remembered, so that a
    /// body with a single one (an NDJSON line, a small request) never allocates the memory.
    noted_one: bool,
}

fn hash_of(node: NodeId, fp: u64) -> u64 {
    (fp ^ u64::from(node).wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xA076_1D64_78BD_642F)
}

impl<'a> Unknowns<'a> {
    /// One occurrence of member `name` (fingerprint `fp`, holding `shapes`) of an object at
    /// node `node` (`None` unless the node stands for one drift path). `path_of` writes the
    /// member's drift path; it is called only when the answer is not remembered. With a node,
    /// returns where every later occurrence of the pair goes (see [`Unknowns::again`]).
    // `name` stays a `Cow` so that remembering a name borrowed from the body copies nothing.
    #[allow(clippy::ptr_arg)]
    pub(super) fn note(
        &mut self,
        unknown: &mut Vec<UnknownField>,
        node: Option<NodeId>,
        name: &Cow<'a, [u8]>,
        fp: u64,
        shapes: Shapes,
        path_of: impl FnOnce(&mut String),
    ) -> Option<u32> {
        let Some(node) = node else {
            path_of(&mut self.path);
            drift::note(unknown, &self.path, shapes);
            return None;
        };
        let slot = (hash_of(node, fp) >> 32) as usize & (SLOTS - 1);
        if self.remembered.is_empty() {
            if !std::mem::replace(&mut self.noted_one, true) {
                path_of(&mut self.path);
                return Some(listed(drift::note(unknown, &self.path, shapes)));
            }
            self.remembered.resize_with(SLOTS, || None);
        }
        if let Some(Some(r)) = self.remembered.get(slot) {
            if r.node == node && r.fp == fp && same_key(&r.name, name) {
                Self::again(unknown, r.entry, shapes);
                return Some(r.entry);
            }
        }
        path_of(&mut self.path);
        let entry = listed(drift::note(unknown, &self.path, shapes));
        if let Some(remembered) = self.remembered.get_mut(slot) {
            *remembered = Some(Remembered {
                node,
                fp,
                name: name.clone(),
                entry,
            });
        }
        Some(entry)
    }

    /// A later occurrence of a (node, name) pair whose [`Unknowns::note`] returned `entry`.
    #[inline]
    pub(super) fn again(unknown: &mut [UnknownField], entry: u32, shapes: Shapes) {
        if let Some(field) = unknown.get_mut(entry as usize) {
            field.seen_again(shapes);
        }
    }
}

/// Where a path's occurrences go: its entry in the list, or [`NOT_LISTED`].
fn listed(entry: Option<usize>) -> u32 {
    entry
        .and_then(|e| u32::try_from(e).ok())
        .unwrap_or(NOT_LISTED)
}
