//! Drift bookkeeping for members no path names, without a path string per member.
//!
//! Every unknown member counts in [`Report::unknown_fields`](super::super::Report) and adds an
//! occurrence to its distinct drift path in `Report::unknown` ([`drift::note`] decides, with its
//! bound of [`drift::MAX_PATHS_PER_REQUEST`]). Building that path and searching the list for it
//! is the slow part, and bodies repeat the same members record after record. So where an object's
//! trie node stands for one drift path ([`Node::one_path`](super::super::compile::Node)), the
//! pair (node, member name) remembers the entry the path went to — or that the full list refused
//! it, which it would do again, since the list only grows. Later occurrences add to that entry
//! directly. Objects under a `*` member (whose path depends on the key above them), names not
//! yet remembered, and names past [`MAX_REMEMBERED`] take the slow path.
use std::borrow::Cow;

use hashbrown::HashTable;

use super::super::compile::NodeId;
use crate::drift::{self, Shapes, UnknownField};

/// Most (node, name) pairs remembered per request: bodies keyed by data (`{"c-1042": …}`) stop
/// filling the table here, and keep being counted exactly on the slow path.
pub(super) const MAX_REMEMBERED: usize = 1024;

/// The list was full when this path was first seen: it is not listed.
const NOT_LISTED: u32 = u32::MAX;

struct Remembered<'a> {
    hash: u64,
    node: NodeId,
    name: Cow<'a, [u8]>,
    entry: u32,
}

/// What one request has learned about where its unknown members' paths went.
#[derive(Default)]
pub(super) struct Unknowns<'a> {
    remembered: HashTable<Remembered<'a>>,
    /// Reused for the drift paths the slow path builds.
    path: String,
}

fn hash_of(node: NodeId, fp: u64) -> u64 {
    (fp ^ u64::from(node).wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xA076_1D64_78BD_642F)
}

impl<'a> Unknowns<'a> {
    /// One occurrence of member `name` (fingerprint `fp`, holding `shapes`) of an object at
    /// node `node` (`None` unless the node stands for one drift path). `path_of` writes the
    /// member's drift path; it is called only when the answer is not remembered.
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
    ) {
        let Some(node) = node else {
            path_of(&mut self.path);
            drift::note(unknown, &self.path, shapes);
            return;
        };
        let hash = hash_of(node, fp);
        let same = |r: &Remembered<'a>| r.node == node && *r.name == **name;
        if let Some(r) = self.remembered.find(hash, same) {
            if let Some(field) = unknown.get_mut(r.entry as usize) {
                field.seen_again(shapes);
            }
            return;
        }
        path_of(&mut self.path);
        let entry = drift::note(unknown, &self.path, shapes);
        if self.remembered.len() < MAX_REMEMBERED {
            let entry = entry
                .and_then(|e| u32::try_from(e).ok())
                .unwrap_or(NOT_LISTED);
            let name = name.clone();
            self.remembered.insert_unique(
                hash,
                Remembered {
                    hash,
                    node,
                    name,
                    entry,
                },
                |r| r.hash,
            );
        }
    }
}
