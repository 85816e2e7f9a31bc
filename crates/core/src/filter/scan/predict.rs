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
//! A node's objects never nest inside one another (the trie has no cycles), so no other object
//! rewrites a node's order while one of its objects is open.
use super::super::compile::{same_key, Found, NodeId};
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
    /// A cursor for a new object at `node` (of `nodes`); off when prediction is not used.
    #[inline]
    pub(super) fn cursor(&mut self, node: NodeId, nodes: usize, enabled: bool) -> Cursor {
        let node = node as usize;
        if !enabled || node >= nodes {
            return Cursor {
                node,
                at: 0,
                on: false,
            };
        }
        if self.by_node.len() < nodes {
            self.by_node.resize_with(nodes, Vec::new);
        }
        Cursor {
            node,
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
