//! Key-order prediction: records repeat their keys in the same order, so each object node of
//! the trie remembers, per request, the keys its last objects held in order and what was
//! decided about each. When the next key's raw bytes (with its closing quote) equal the
//! predicted key's, the member's decision is taken over without reading the key as a string,
//! looking it up, fingerprinting it or checking it for a duplicate.
//!
//! Why that is the same answer:
//! - Only keys without escapes are remembered, so equal raw bytes up to and including the
//!   closing quote are the same valid string, and the scan would end at the same quote.
//! - What is remembered (fingerprint, [`Found`], "is the subject member", "folds to the
//!   subject") depends only on the key and the node, never on the object it was read in.
//!   Keys that fold to the subject are not remembered, so a hit never has to refuse.
//! - A [`Cursor`] stays "on" only while the keys read so far in its object are exactly the
//!   remembered ones before its position (a hit keeps that true; a miss rewrites the order
//!   from there with the key just read, or switches the cursor off). Every remembered key was
//!   checked against the remembered keys before it, in an object that held exactly those, and
//!   passed: so a hit at position `i` differs from every key before it, and is no duplicate.
//! - Positions stop at [`SMALL_OBJECT`]: beyond, duplicate checks go through a hash set that is
//!   built from the keys, which the slow path does.
//!
//! Each object node has a slot of remembered keys. So do the top objects of the values the trie
//! does not walk: a subtree passed whole (in its node's slot) and a removed member (in one of
//! [`REMOVED_SLOTS`] slots chosen by its object's node and its name; names that share a slot
//! only predict each other badly). Whatever fills a slot, every entry was checked as above.
//! A node's objects never nest inside one another (the trie has no cycles), and the values the
//! trie does not walk are read in one loop that predicts only its top object, so no other object
//! rewrites a slot's order while one of its objects is open.
use super::super::compile::{same_key, Found, NodeId};

/// Slots for the objects of removed members, after one slot per node.
pub(super) const REMOVED_SLOTS: usize = 16;

/// The slot of the objects of removed member `fp` in objects at `node`, of `nodes` nodes.
#[inline]
pub(super) fn removed_slot(nodes: usize, node: NodeId, fp: u64) -> usize {
    let hash = (fp ^ u64::from(node)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    nodes + (hash >> 60) as usize % REMOVED_SLOTS
}
use super::SMALL_OBJECT;

/// One remembered key: where its bytes are in this request's input, and its decision.
#[derive(Debug, Clone, Copy)]
pub(super) struct Known {
    /// Index of the key's first byte after the opening quote.
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) fp: u64,
    pub(super) found: Found,
    /// The key is the subject member's name.
    pub(super) subject: bool,
}

/// Where an open object is in its node's remembered order.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor {
    node: usize,
    /// How many keys the object has read.
    pub(super) at: usize,
    /// The object's keys so far are the remembered ones before `at`.
    on: bool,
}

/// Each node's remembered key order, for one request.
#[derive(Default)]
pub(super) struct KeyOrders {
    by_node: Vec<Vec<Known>>,
}

impl KeyOrders {
    /// A cursor for a new object whose keys are remembered in `slot` (of `slots`); off when
    /// prediction is not used.
    #[inline]
    pub(super) fn cursor(&mut self, slot: usize, slots: usize, enabled: bool) -> Cursor {
        if !enabled || slot >= slots {
            return Cursor {
                node: slot,
                at: 0,
                on: false,
            };
        }
        if self.by_node.len() < slots {
            self.by_node.resize_with(slots, Vec::new);
        }
        Cursor {
            node: slot,
            at: 0,
            on: true,
        }
    }

    /// The remembered key at the cursor when `input` spells it at `quote` (the key's opening
    /// quote), closing quote included.
    #[inline]
    pub(super) fn hit(&self, cursor: &Cursor, input: &[u8], quote: usize) -> Option<Known> {
        if !cursor.on {
            return None;
        }
        let known = *self.by_node.get(cursor.node)?.get(cursor.at)?;
        let n = known.len + 1;
        let here = input.get(quote + 1..quote + 1 + n)?;
        let there = input.get(known.start..known.start + n)?;
        same_key(here, there).then_some(known)
    }

    /// After a key the cursor did not predict was read and accepted: remembers it at the
    /// cursor's position (`None`: it cannot be remembered, and the cursor goes off).
    #[inline]
    pub(super) fn learn(&mut self, cursor: &mut Cursor, key: Option<Known>) {
        if !cursor.on {
            return;
        }
        let Some(order) = self.by_node.get_mut(cursor.node) else {
            cursor.on = false;
            return;
        };
        order.truncate(cursor.at);
        match key {
            Some(key) if cursor.at < SMALL_OBJECT => order.push(key),
            _ => cursor.on = false,
        }
    }

    /// Whether a key read now could be remembered.
    #[inline]
    pub(super) fn learning(cursor: &Cursor) -> bool {
        cursor.on && cursor.at < SMALL_OBJECT
    }
}
