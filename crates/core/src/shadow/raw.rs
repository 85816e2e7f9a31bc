/*!
Comparing two notes of one request without writing every path in drift syntax. Both sides come
from one body, so they spell its values' paths alike: raw paths (names as received, see
[`Forwarded`]) can be compared directly. Each side's raw paths are hashed, sorted by hash and
kept once with their form, the two lists are merged, and only the paths that differ are
written in drift syntax.

That equals comparing the [`Fields`] of both sides as long as writing raw paths in drift syntax
is one to one: every member name on either side is a field name written as itself (no escape,
nothing written `*`). Otherwise (maps keyed by data, escaped names: two raw paths may then be
written alike) the comparison goes through [`Fields`].
*/
use std::cmp::Ordering;
use std::ops::Range;

use super::forwarded::{self, Forwarded, Rendered};
use super::{compare, Decision, Difference, Form, ShadowChange};
use crate::drift::is_field_name;

/// One side's raw paths, each once, sorted by hash then bytes.
struct RawSet {
    arena: Vec<u8>,
    items: Vec<Item>,
    /// Every member name is a field name written as itself.
    one_to_one: bool,
    /// The last path pushed: the levels it shares with the next were checked already.
    last: Range<usize>,
}

struct Item {
    hash: u64,
    range: Range<usize>,
    form: Form,
}

impl RawSet {
    /// `None` when the note is incomplete or its paths would take more than its read budget.
    fn of(forwarded: &Forwarded) -> Option<RawSet> {
        if !forwarded.complete() {
            return None;
        }
        let budget = forwarded.read_budget();
        let mut set = RawSet {
            arena: Vec::with_capacity(1024),
            items: Vec::with_capacity(64),
            one_to_one: true,
            last: 0..0,
        };
        let mut raw = Vec::new();
        forwarded.each(&mut |at, value| match value {
            Ok(transform) => set.push(at, transform.map_or(Form::Clear, Form::Transformed)),
            Err(json) => {
                raw.clear();
                raw.extend_from_slice(at);
                forwarded::subtree_leaves(json, &mut raw, &mut |leaf| {
                    if set.arena.len() <= budget {
                        set.push(leaf, Form::Clear)
                    }
                });
            }
        });
        if set.arena.len() > budget {
            return None;
        }
        set.sort();
        Some(set)
    }

    fn push(&mut self, raw: &[u8], form: Form) {
        let start = self.arena.len();
        if self.one_to_one {
            // Paths come in document order: most levels repeat the previous path's (checked).
            let last = &self.arena[self.last.clone()];
            let mut previous = forwarded::levels(last);
            let mut shared = true;
            for level in forwarded::levels(raw) {
                shared = shared && previous.next() == Some(level);
                if let (false, Some(quoted)) = (shared, level) {
                    self.one_to_one &= is_field_name(forwarded::unquoted(quoted));
                }
            }
        }
        self.last = start..start + raw.len();
        self.arena.extend_from_slice(raw);
        self.items.push(Item {
            hash: hash(raw),
            range: start..self.arena.len(),
            form,
        });
    }

    fn raw(&self, item: &Item) -> &[u8] {
        &self.arena[item.range.clone()]
    }

    fn order(&self, a: &Item, other: &RawSet, b: &Item) -> Ordering {
        a.hash
            .cmp(&b.hash)
            .then_with(|| self.raw(a).cmp(other.raw(b)))
    }

    /// Sorts and keeps each raw path once; a path forwarded both in clear and transformed is
    /// transformed.
    fn sort(&mut self) {
        let mut items = std::mem::take(&mut self.items);
        items.sort_unstable_by(|a, b| self.order(a, self, b));
        let mut kept: Vec<Item> = Vec::with_capacity(items.len());
        for item in items {
            match kept.last_mut() {
                Some(last) if self.order(last, self, &item).is_eq() => {
                    if let Form::Transformed(_) = item.form {
                        last.form = item.form;
                    }
                }
                _ => kept.push(item),
            }
        }
        self.items = kept;
    }
}

/// FxHash over 8-byte words: quick, and collisions only cost a byte comparison.
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let mut w = [0u8; 8];
    w[..words.remainder().len()].copy_from_slice(words.remainder());
    (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K)
}

/// The differences between the values two decisions on one request forwarded, field paths in
/// order: the same list as [`compare`] of both sides' [`Fields`](super::Fields). `None` when a
/// note is too large to read (see [`Forwarded::read_budget`]).
pub(super) fn compare_forwarded(active: &Forwarded, shadow: &Forwarded) -> Option<Vec<Difference>> {
    let (a, s) = (RawSet::of(active)?, RawSet::of(shadow)?);
    if !(a.one_to_one && s.one_to_one) {
        let (a, s) = (Decision::forwarded(active)?, Decision::forwarded(shadow)?);
        return Some(compare(&a, &s));
    }
    let mut out = Vec::new();
    let mut rendered = Rendered::default();
    let mut note = |raw: &[u8], active: Option<Form>, shadow: Option<Form>| {
        let change = match (active, shadow) {
            (Some(_), None) => ShadowChange::FieldRemoved,
            (None, Some(_)) => ShadowChange::FieldAdded,
            (Some(x), Some(y)) if x != y => ShadowChange::TransformChanged,
            _ => return,
        };
        let name = |f: Option<Form>| f.map_or("removed", |f| f.name()).to_string();
        out.push(Difference {
            change,
            path: Some(rendered.render(raw).to_string()),
            active: name(active),
            shadow: name(shadow),
        });
    };
    let (mut i, mut j) = (0, 0);
    while i < a.items.len() || j < s.items.len() {
        let order = match (a.items.get(i), s.items.get(j)) {
            (Some(x), Some(y)) => a.order(x, &s, y),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                note(a.raw(&a.items[i]), Some(a.items[i].form), None);
                i += 1;
            }
            Ordering::Greater => {
                note(s.raw(&s.items[j]), None, Some(s.items[j].form));
                j += 1;
            }
            Ordering::Equal => {
                let (x, y) = (&a.items[i], &s.items[j]);
                note(a.raw(x), Some(x.form), Some(y.form));
                (i, j) = (i + 1, j + 1);
            }
        }
    }
    out.sort_by(|x, y| x.path.cmp(&y.path));
    super::still_sent_containers(&mut out);
    Some(out)
}
