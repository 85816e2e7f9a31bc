//! The members of an object node: how the scanner finds what the policy says about a key.
//! Keys are compared by [`fingerprint`] first and then with [`same_key`], both with fixed-size
//! loads, since the keys of real bodies are short and a `memcmp` call per compare would cost
//! more than the compare.
use std::collections::HashMap;

use super::{NodeId, REMOVED};
use crate::optout::id;

/// Above this many named members a hash map beats a linear scan.
const LINEAR_MEMBERS: usize = 8;

#[derive(Debug)]
pub(in crate::filter) struct Members {
    /// Name, its [`fingerprint`], and the member's node.
    pub(super) named: Vec<(Box<[u8]>, u64, NodeId)>,
    index: Option<HashMap<Box<[u8]>, NodeId>>,
    pub(super) any: Option<NodeId>,
    /// Named members a path transforms or removes something of: a key that reaches `*`
    /// while case-insensitive readers take it for one of them is refused (see
    /// [`Members::folds_onto_guarded`]).
    guarded: Box<[Box<[u8]>]>,
}

/// What the policy says about one member of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::filter) enum Found {
    /// The member goes through this node.
    Child(NodeId),
    /// A `remove` path names it: removed, and known to the policy.
    Removed,
    /// No path names it: removed, and drift.
    Unknown,
}

impl Members {
    pub(super) fn new(named: Vec<(Box<[u8]>, u64, NodeId)>, any: Option<NodeId>) -> Members {
        let index = (named.len() > LINEAR_MEMBERS).then(|| {
            named
                .iter()
                .map(|(name, _, id)| (name.clone(), *id))
                .collect()
        });
        Members {
            named,
            index,
            any,
            guarded: Box::default(),
        }
    }

    /// The same, guarding the members named `guarded` (see [`Members::guarded`]).
    pub(super) fn guarding(mut self, guarded: Vec<Box<[u8]>>) -> Members {
        if matches!(self.any, Some(id) if id != REMOVED) {
            self.guarded = guarded.into_boxed_slice();
        }
        self
    }

    /// The guarded member that `key` (fingerprint `fp`), passed by `*`, is another spelling
    /// of for a case-insensitive JSON reader (Go's `encoding/json`, Jackson, .NET): such a
    /// reader could take its untransformed value for the member the policy transforms.
    #[inline]
    pub(in crate::filter) fn folds_onto_guarded(&self, key: &[u8], fp: u64) -> Option<&[u8]> {
        if self.guarded.is_empty() || self.named(key, fp).is_some() {
            return None;
        }
        self.guarded
            .iter()
            .find(|name| id::name_folds_onto(key, name))
            .map(|name| &name[..])
    }

    /// The node of the member named `key` (fingerprint `fp`), if the policy names it.
    #[inline]
    fn named(&self, key: &[u8], fp: u64) -> Option<NodeId> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self
                .named
                .iter()
                .find(|(name, name_fp, _)| *name_fp == fp && same_key(name, key))
                .map(|&(_, _, id)| id),
        }
    }

    /// What happens to the member with (unescaped) name `key` and fingerprint `fp`.
    #[inline]
    pub(in crate::filter) fn find(&self, key: &[u8], fp: u64) -> Found {
        match self.named(key, fp) {
            Some(REMOVED) => Found::Removed,
            Some(id) => Found::Child(id),
            None => match self.any {
                Some(REMOVED) => Found::Removed,
                // Named members never contain these bytes (compile refuses such names), so
                // only the wildcard needs the check: such a key no path can name is drift.
                Some(id) if !key.iter().any(|&b| is_path_syntax(b)) => Found::Child(id),
                _ => Found::Unknown,
            },
        }
    }
}

/// A key containing one of these can never be named by a path, so it is never matched.
pub(in crate::filter) fn is_path_syntax(b: u8) -> bool {
    matches!(b, b'.' | b'[' | b']' | b'*')
}

#[inline]
fn u32_at(key: &[u8], i: usize) -> u64 {
    key.get(i..i + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
}

#[inline]
fn u64_at(key: &[u8], i: usize) -> u64 {
    key.get(i..i + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// A key of up to 16 bytes as two (overlapping) words that together hold every byte.
#[inline]
fn words(key: &[u8]) -> (u64, u64) {
    let n = key.len();
    match n {
        0 => (0, 0),
        1..=3 => (
            u64::from(key[0]) | u64::from(key[n / 2]) << 8 | u64::from(key[n - 1]) << 16,
            0,
        ),
        4..=7 => (u32_at(key, 0), u32_at(key, n - 4)),
        _ => (u64_at(key, 0), u64_at(key, n - 8)),
    }
}

/// A cheap summary of a key (length, first and last 8 bytes): keys with different fingerprints
/// differ, so most comparisons never reach a byte-wise compare.
#[inline]
pub(in crate::filter) fn fingerprint(key: &[u8]) -> u64 {
    // Fixed-size (overlapping) loads only: a variable-length copy would cost a `memcpy` call.
    let (head, tail) = words(key);
    head ^ tail.rotate_left(29) ^ (key.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// `a == b`, without a `memcmp` call for keys of up to 16 bytes.
#[inline]
pub(in crate::filter) fn same_key(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 16 {
        return a == b;
    }
    words(a) == words(b)
}

#[cfg(test)]
mod tests;
