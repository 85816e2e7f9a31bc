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
//! trie does not walk are read in one loop that predicts only its top object, or the object
//! elements of its top array (one after another; the first in the value's slot, the next ones
//! in removed-member slots by position), so no other object rewrites a slot's order while one
//! of its objects is open.
use std::borrow::Cow;

use super::super::compile::{same_key, Found, NodeId};
use super::SMALL_OBJECT;

/// Slots for the objects of removed members, after one slot per node.
pub(super) const REMOVED_SLOTS: usize = 16;

/// Array elements from this position on share their slot (see [`KeyOrders::element`]).
const ELEMENT_POSITIONS: usize = 3;

/// The slot of the objects of removed member `fp` in objects at `node`, of `nodes` nodes.
#[inline]
pub(super) fn removed_slot(nodes: usize, node: NodeId, fp: u64) -> usize {
    spread(nodes, fp ^ u64::from(node))
}

/// One of the [`REMOVED_SLOTS`] slots after the first `nodes`, chosen by `key`.
#[inline]
fn spread(nodes: usize, key: u64) -> usize {
    let hash = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    nodes + (hash >> 60) as usize % REMOVED_SLOTS
}

/// Keys shorter than this (their closing quote included) are compared as one `u128`.
const SPELLED: usize = 16;

/// One remembered key: where its bytes are in this request's input, and its decision.
#[derive(Debug, Clone, Copy)]
pub(super) struct Known {
    /// Index of the key's first byte after the opening quote.
    pub(super) start: usize,
    pub(super) len: usize,
    /// The key and its closing quote as little-endian bytes, when they fit in 16 bytes
    /// ([`SPELLED`]): compared with one masked load instead of two slices; `mask` keeps the
    /// bytes they take (see [`spelled_bytes`]).
    spelling: u128,
    mask: u128,
    pub(super) fp: u64,
    pub(super) found: Found,
    /// The key is the subject member's name.
    pub(super) subject: bool,
    /// An unknown member of an object that stands for one drift path: where its occurrences
    /// go in the report, once the first was noted (see `unknown`).
    pub(super) drift: Option<u32>,
}

impl Known {
    /// What to remember about a name read from `quote` (its opening quote): nothing when it
    /// has escapes, as its raw bytes then differ from the name.
    #[inline]
    #[allow(
        clippy::ptr_arg,
        reason = "whether the name was borrowed is what tells escapes"
    )]
    pub(super) fn of(
        quote: usize,
        key: &Cow<'_, [u8]>,
        fp: u64,
        found: Found,
        subject: bool,
    ) -> Option<Known> {
        matches!(key, Cow::Borrowed(_)).then(|| Known {
            start: quote + 1,
            len: key.len(),
            spelling: spelling(key),
            mask: spelled_bytes(key.len()),
            fp,
            found,
            subject,
            drift: None,
        })
    }

    /// What was decided about the key.
    #[inline]
    pub(super) fn decision(&self) -> Decision {
        Decision {
            fp: self.fp,
            found: self.found,
            subject: self.subject,
            drift: self.drift,
        }
    }
}

/// What a predicted key hands over: what was decided about it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Decision {
    pub(super) fp: u64,
    pub(super) found: Found,
    pub(super) subject: bool,
    pub(super) drift: Option<u32>,
}

/// `key` and a closing quote as little-endian bytes (zeros when they do not fit).
fn spelling(key: &[u8]) -> u128 {
    let mut bytes = [0; SPELLED];
    if let Some((quote, name)) = bytes
        .get_mut(..=key.len())
        .and_then(|room| room.split_last_mut())
    {
        name.copy_from_slice(key);
        *quote = b'"';
    }
    u128::from_le_bytes(bytes)
}

/// The bytes of a [`spelling`] of a `len`-byte key that the key and its quote take (none
/// when they do not fit): computed once, so that a compare does not wait for a shift.
fn spelled_bytes(len: usize) -> u128 {
    if len + 1 > SPELLED {
        return 0;
    }
    u128::MAX >> (128 - 8 * (len + 1))
}

/// Where an open object is in its node's remembered order.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor {
    node: usize,
    /// How many keys the object has read.
    pub(super) at: usize,
    /// The object's keys so far are the remembered ones before `at`.
    on: bool,
    /// Prediction is used for this slot (see [`KeyOrders::element`]).
    enabled: bool,
}

/// A slot no object has used yet: the first object of a slot is read without prediction, so
/// a body with one record pays nothing for it.
const UNUSED: u32 = u32::MAX;
/// A slot that has not remembered a key yet.
const NO_BLOCK: u32 = u32::MAX - 1;

/// Blocks room is made for at once (a small body uses a few; one allocation).
const FIRST_BLOCKS: usize = 8;

/// Each slot's remembered key order, for one request: few allocations, since a small body
/// must not pay for prediction it hardly uses.
#[derive(Default)]
pub(super) struct KeyOrders {
    /// Per slot: its block in `known` (or [`UNUSED`], [`NO_BLOCK`]), and how many keys it
    /// remembers.
    slots: Vec<(u32, u8)>,
    /// Blocks of [`SMALL_OBJECT`] keys, one per slot that has remembered a key.
    known: Vec<Known>,
}

impl Cursor {
    /// The slot whose remembered keys the cursor follows.
    #[inline]
    pub(super) fn slot(&self) -> u32 {
        self.node as u32
    }
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
                enabled: false,
            };
        }
        if self.slots.len() < slots {
            self.slots.resize(slots, (UNUSED, 0));
        }
        self.start(slot)
    }

    /// A cursor for the object that is element `index` of an array whose own cursor is `home`
    /// (the top of a value the trie does not walk): the first element is remembered in
    /// `home`'s slot, the next ones in removed-member slots chosen by their position, since
    /// arrays often hold objects of a few shapes in a fixed order.
    #[inline]
    pub(super) fn element(&mut self, home: &Cursor, index: usize) -> Cursor {
        if !home.enabled {
            return Cursor { at: 0, ..*home };
        }
        let slot = if index == 0 {
            home.node
        } else {
            let nodes = self.slots.len().saturating_sub(REMOVED_SLOTS);
            let position = index.min(ELEMENT_POSITIONS) as u64;
            spread(nodes, home.node as u64 ^ position << 32)
        };
        self.start(slot)
    }

    /// A cursor at the start of `slot` (in range): off for the slot's first object.
    #[inline]
    fn start(&mut self, slot: usize) -> Cursor {
        let first = self.slots.get_mut(slot).is_some_and(|(block, _)| {
            let first = *block == UNUSED;
            if first {
                *block = NO_BLOCK;
            }
            first
        });
        Cursor {
            node: slot,
            at: 0,
            on: !first,
            enabled: true,
        }
    }

    /// The remembered key at the cursor when `input` spells it at `quote` (the key's opening
    /// quote), closing quote included.
    #[inline]
    pub(super) fn hit(&self, cursor: &Cursor, input: &[u8], quote: usize) -> Option<&Known> {
        if !cursor.on {
            return None;
        }
        let &(block, len) = self.slots.get(cursor.node)?;
        if cursor.at >= usize::from(len) {
            return None;
        }
        let known = self.known.get(block as usize * SMALL_OBJECT + cursor.at)?;
        let n = known.len + 1;
        if n <= SPELLED {
            if let Some(here) = input.get(quote + 1..quote + 1 + SPELLED) {
                let here = u128::from_le_bytes(here.try_into().ok()?);
                return ((here ^ known.spelling) & known.mask == 0).then_some(known);
            }
        }
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
        let Some((block, len)) = self.slots.get_mut(cursor.node) else {
            cursor.on = false;
            return;
        };
        *len = (*len).min(u8::try_from(cursor.at).unwrap_or(u8::MAX));
        let Some(key) = key.filter(|_| cursor.at < SMALL_OBJECT) else {
            cursor.on = false;
            return;
        };
        if *block >= NO_BLOCK {
            let Ok(next) = u32::try_from(self.known.len() / SMALL_OBJECT) else {
                cursor.on = false;
                return;
            };
            if self.known.capacity() == 0 {
                self.known.reserve_exact(FIRST_BLOCKS * SMALL_OBJECT);
            }
            // Entries past a slot's length are never read: any key fills them.
            self.known.extend(std::iter::repeat_n(key, SMALL_OBJECT));
            *block = next;
        }
        if let Some(entry) = self
            .known
            .get_mut(*block as usize * SMALL_OBJECT + cursor.at)
        {
            *entry = key;
            *len = u8::try_from(cursor.at + 1).unwrap_or(u8::MAX);
        } else {
            cursor.on = false;
        }
    }

    /// Remembers, with the key the cursor has just read (predicted or learned), where the
    /// drift report puts its occurrences: a function of the key and the slot's node, as
    /// everything else remembered.
    #[inline]
    pub(super) fn remember_drift(&mut self, cursor: &Cursor, entry: u32) {
        if !cursor.on || cursor.at == 0 {
            return;
        }
        let Some(&(block, len)) = self.slots.get(cursor.node) else {
            return;
        };
        if cursor.at <= usize::from(len) {
            if let Some(known) = self
                .known
                .get_mut(block as usize * SMALL_OBJECT + cursor.at - 1)
            {
                known.drift = Some(entry);
            }
        }
    }

    /// The key remembered at position `at` of `slot`. (`hit` does this lookup itself: calling
    /// this from it made the 1 MiB load body 12 % slower.)
    pub(super) fn remembered(&self, slot: usize, at: usize) -> Option<&Known> {
        let &(block, len) = self.slots.get(slot)?;
        if at >= usize::from(len) {
            return None;
        }
        self.known.get(block as usize * SMALL_OBJECT + at)
    }

    /// Whether a key read now could be remembered.
    #[inline]
    pub(super) fn learning(cursor: &Cursor) -> bool {
        cursor.on && cursor.at < SMALL_OBJECT
    }
}
