/*!
The strict one-pass scanner. [`Scanner`] owns the input position, the stack of open containers
and the keys seen in each open object, and validates as it goes; [`Filter`] follows the
compiled trie on top of it and writes the partner's body.

Where the trie ends (a removed member, a subtree passed whole) the scanner takes over with an
iterative loop, so arbitrarily deep input never deepens the Rust stack: recursion is bounded by
the policy's path lengths, nesting by `max_depth`.

Kept values are copied byte-for-byte from the input (numbers stay as written, strings keep
their escapes); only whitespace is dropped. The output is reserved at the input's length up
front and every kept byte is copied once, straight from the input.

What is removed is validated as strictly as what is kept (the same string, number, escape,
depth and duplicate-key checks), only nothing is written.

- `lex`: tokens (strings 16 bytes at a time, escapes, numbers, literals) and message helpers.
- `skip`: values the trie does not walk — removed members and `.**` subtrees.
- `walk`: [`Filter`], the trie walk, records, subjects and the report.
- `unknown`: drift bookkeeping for members no path names, remembered per (node, name).
- `predict`: key-order prediction, which takes over a member's decision when its key repeats
  the key order of the node's last objects.

Duplicate keys: each open object keeps a 64-bit set of its keys' fingerprint bits, so a new key
whose bit is clear is settled without comparing; objects past [`SMALL_OBJECT`] keys switch to
a hash set. Errors travel as [`Fail`] (a boxed [`Refusal`]) to keep the hot `Result`s small.
*/
mod lex;
mod predict;
mod skip;
mod unknown;
mod walk;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;

use crate::drift;
use crate::optout::id::{self, BadId};
use crate::{Refusal, RefusalKind};

pub(in crate::filter) use lex::unescape;
use lex::{check_text, describe, push_key};
pub(in crate::filter) use walk::filter;

/// Objects with more keys than this switch from a linear duplicate check to a hash set.
const SMALL_OBJECT: usize = 16;
const NONE: usize = usize::MAX;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One open container.
#[derive(Debug, Clone, Copy)]
struct Frame {
    object: bool,
    /// Objects: where this object's keys start in `Scanner::keys`.
    key_base: usize,
    /// Objects: position of the member being read (`NONE` before the first), see
    /// [`Scanner::key_of`]. Arrays: index of the element being read.
    cur: usize,
    /// Objects: how many of the first keys key-order prediction took over without recording
    /// them in `Scanner::keys` (they are the remembered keys of `slot`); recorded when a key
    /// it did not foresee must be checked against them ([`Scanner::record_predicted`]).
    predicted: u32,
    slot: u32,
    /// Objects with many keys: index of their hash set in `Scanner::sets`.
    set: usize,
    /// Objects: one bit per key seen ([`key_bit`]); a key whose bit is clear is no duplicate.
    bits: u64,
}

/// The bit of [`Frame::bits`] a key with fingerprint `fp` sets.
#[inline]
fn key_bit(fp: u64) -> u64 {
    1 << (fp.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

pub(super) struct Scanner<'a> {
    input: &'a [u8],
    text: &'a str,
    pos: usize,
    max_depth: usize,
    frames: Vec<Frame>,
    /// Keys of every open object, unescaped; each object's keys are a suffix run.
    keys: Vec<Cow<'a, [u8]>>,
    /// The [`fingerprint`] of each of `keys`, at the same index.
    fps: Vec<u64>,
    /// Hash sets of large open objects (`sets[..sets_used]`); the rest are cleared spares.
    sets: Vec<HashSet<Cow<'a, [u8]>>>,
    sets_used: usize,
    /// Members a copied `.**` subtree dropped because no path can name their key (`.`, `[`,
    /// `]` or `*` in it): counted, and their paths kept when `hidden_paths` is on.
    pub(super) hidden_removed: u64,
    pub(super) hidden_paths: Option<Vec<String>>,
    /// Set when whitespace is skipped, and (with `watch_names`) when a key no path can name is
    /// read without copying: the value being checked would not be copied as it stands.
    pub(super) altered: bool,
    pub(super) watch_names: bool,
    /// Remembered key orders (see `predict`).
    orders: predict::KeyOrders,
}

/// A subject value that is no valid customer id: what it is instead and, for a non-empty string
/// or an integer literal, its text as written (unescaped). Where opt-outs are honoured the
/// record is refused; elsewhere the ledger still keys it by that text, so `audit who-received`
/// finds the disclosure.
#[derive(Debug)]
struct NotAnId<'a> {
    what: &'static str,
    text: Option<Cow<'a, str>>,
}

/// A refusal on its way out of the scanner, boxed so that the `Result`s of the hot path stay
/// small (one word for `Result<(), Fail>`).
pub(in crate::filter) type Fail = Box<Refusal>;

fn fail(kind: RefusalKind, message: impl Into<String>) -> Fail {
    Box::new(Refusal::new(kind, message))
}

fn bad(message: String) -> Fail {
    fail(RefusalKind::BadRequest, message)
}

/// A broken invariant of the filter itself, never the body's fault: 500 `internal_error`.
fn broken(message: &str) -> Fail {
    fail(RefusalKind::Internal, format!("internal error: {message}"))
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, max_depth: usize) -> Self {
        Scanner {
            input: text.as_bytes(),
            text,
            pos: 0,
            max_depth,
            // Small, so that a small body's scanner takes three small allocations (a thread's
            // cache serves those); a large body grows them a few times.
            frames: Vec::with_capacity(8),
            keys: Vec::with_capacity(16),
            fps: Vec::with_capacity(16),
            sets: Vec::new(),
            sets_used: 0,
            hidden_removed: 0,
            hidden_paths: None,
            altered: false,
            watch_names: false,
            orders: predict::KeyOrders::default(),
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        // Compact bodies have no whitespace: one compare settles the usual case.
        if self.input.get(self.pos).is_some_and(|&b| b > b' ') {
            return;
        }
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.input.get(self.pos) {
            self.pos += 1;
            self.altered = true;
        }
    }

    /// After a member name: its `:` and the whitespace around it. Compact bodies have `:`
    /// and then the value: a two-byte compare settles the usual case.
    #[inline]
    fn colon(&mut self) -> Result<(), Fail> {
        if let Some(&[b':', value]) = self.input.get(self.pos..).and_then(<[u8]>::first_chunk) {
            if value > b' ' {
                self.pos += 1;
                return Ok(());
            }
        }
        self.skip_ws();
        self.expect(b':', "`:` after a member name")?;
        self.skip_ws();
        Ok(())
    }

    /// At a `,` directly followed by the next member or element (a compact body): steps over
    /// it. Otherwise leaves `pos` for the full check.
    #[inline]
    fn compact_comma(&mut self) -> bool {
        if let Some(&[b',', next]) = self.input.get(self.pos..).and_then(<[u8]>::first_chunk) {
            if next > b' ' {
                self.pos += 1;
                return true;
            }
        }
        false
    }

    /// The concrete path of the value being read (`shipments[0].card_number`, or `$`).
    fn path(&self) -> String {
        self.path_upto(self.frames.len())
    }

    /// The path of the member being read in drift syntax (see [`crate::drift`]).
    fn drift_path(&self, out: &mut String) {
        out.clear();
        for frame in &self.frames {
            if !frame.object {
                drift::push_element(out);
            } else if let Some(key) = self.key_of(frame) {
                drift::push_member(out, &key);
            }
        }
    }

    /// The name of the member being read in the innermost object.
    fn current_key(&self) -> Option<Cow<'a, [u8]>> {
        let frame = self.frames.last().filter(|f| f.object)?;
        self.key_of(frame)
    }

    /// The name of the member the object of `frame` is reading: a predicted key not recorded
    /// yet is the slot's remembered key at its position, whose bytes are earlier in the input.
    fn key_of(&self, frame: &Frame) -> Option<Cow<'a, [u8]>> {
        let input = self.input;
        if frame.cur < frame.predicted as usize {
            let known = self.orders.remembered(frame.slot as usize, frame.cur)?;
            return input
                .get(known.start..known.start + known.len)
                .map(Cow::Borrowed);
        }
        self.keys.get(frame.key_base..)?.get(frame.cur).cloned()
    }

    fn path_upto(&self, depth: usize) -> String {
        let mut path = String::new();
        for frame in &self.frames[..depth.min(self.frames.len())] {
            if frame.object {
                if let Some(key) = self.key_of(frame) {
                    push_key(&mut path, &key);
                }
            } else {
                let _ = write!(path, "[{}]", frame.cur);
            }
        }
        if path.is_empty() {
            path.push('$');
        }
        path
    }

    fn where_(&self) -> String {
        if self.frames.is_empty() {
            String::new()
        } else {
            format!(" in `{}`", self.path())
        }
    }

    fn syntax_at(&self, at: usize, what: &str) -> Fail {
        bad(format!(
            "malformed JSON at byte {at}{}: {what}",
            self.where_()
        ))
    }

    fn unexpected(&self, expected: &str) -> Fail {
        match self.peek() {
            None => self.syntax_at(
                self.pos,
                &format!("unexpected end of body, expected {expected}"),
            ),
            Some(b) if b.is_ascii_graphic() => self.syntax_at(
                self.pos,
                &format!("unexpected `{}`, expected {expected}", char::from(b)),
            ),
            Some(b) if b < 0x80 => self.syntax_at(
                self.pos,
                &format!("unexpected byte 0x{b:02x}, expected {expected}"),
            ),
            Some(_) => {
                let c = self
                    .text
                    .get(self.pos..)
                    .and_then(|s| s.chars().next())
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                self.syntax_at(self.pos, &format!("unexpected {c:?}, expected {expected}"))
            }
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8, expected: &str) -> Result<(), Fail> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    #[inline(always)]
    fn open(&mut self, object: bool) -> Result<(), Fail> {
        if self.frames.len() >= self.max_depth {
            return Err(self.too_deep());
        }
        let cur = if object { NONE } else { 0 };
        self.frames.push(Frame {
            object,
            key_base: self.keys.len(),
            cur,
            predicted: 0,
            slot: 0,
            set: NONE,
            bits: 0,
        });
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn too_deep(&self) -> Fail {
        bad(format!(
            "nesting deeper than {} levels at byte {}{}",
            self.max_depth,
            self.pos,
            self.where_()
        ))
    }

    #[inline]
    fn close(&mut self) {
        if let Some(frame) = self.frames.pop() {
            if frame.object {
                self.keys.truncate(frame.key_base);
                self.fps.truncate(frame.key_base);
                if frame.set != NONE {
                    self.release_set(frame.set);
                }
            }
        }
    }

    /// Clears the hash set of a large object that closed, for the next one.
    #[cold]
    fn release_set(&mut self, set: usize) {
        if let Some(set) = self.sets.get_mut(set) {
            set.clear();
        }
        self.sets_used -= 1;
    }

    #[inline]
    fn next_element(&mut self) {
        if let Some(frame) = self.frames.last_mut() {
            frame.cur += 1;
        }
    }

    /// Records a key of the innermost object, refusing duplicates.
    #[inline]
    fn add_key(&mut self, key: Cow<'a, [u8]>, fp: u64, at: usize) -> Result<(), Fail> {
        let Some(mut frame) = self.frames.last().copied() else {
            return Err(broken("a key outside an object"));
        };
        if frame.predicted != 0 {
            frame = self.record_predicted()?;
        }
        let bit = key_bit(fp);
        let duplicate = if frame.set == NONE {
            let seen = &self.keys[frame.key_base..];
            let duplicate = frame.bits & bit != 0
                && self.fps[frame.key_base..]
                    .iter()
                    .zip(seen)
                    .any(|(&seen_fp, k)| seen_fp == fp && **k == *key);
            if !duplicate && seen.len() >= SMALL_OBJECT {
                if self.sets_used == self.sets.len() {
                    self.sets.push(HashSet::with_capacity(2 * SMALL_OBJECT));
                }
                let set = &mut self.sets[self.sets_used];
                set.extend(seen.iter().cloned());
                set.insert(key.clone());
                if let Some(f) = self.frames.last_mut() {
                    f.set = self.sets_used;
                }
                self.sets_used += 1;
            }
            duplicate
        } else {
            !self.sets[frame.set].insert(key.clone())
        };
        if duplicate {
            let object = self.path_upto(self.frames.len() - 1);
            let name = String::from_utf8_lossy(&key);
            return Err(bad(format!(
                "duplicate key {name:?} at byte {at} in the object at `{object}`"
            )));
        }
        self.keys.push(key);
        self.fps.push(fp);
        if let Some(f) = self.frames.last_mut() {
            f.cur = self.keys.len() - 1 - f.key_base;
            f.bits |= bit;
        }
        Ok(())
    }

    /// Records the keys prediction took over in the innermost object (none has been recorded
    /// after them: prediction only ever takes over an object's first keys), before a key it did
    /// not foresee is checked against them. Returns the frame as it is then. The slot keeps
    /// its first keys while the object is open (see `predict`); should one be missing, the
    /// body is refused rather than checked against fewer keys.
    #[cold]
    #[inline(never)]
    fn record_predicted(&mut self) -> Result<Frame, Fail> {
        let input = self.input;
        let missing = || broken("a predicted key is no longer remembered");
        let f = self.frames.last_mut().ok_or_else(missing)?;
        debug_assert_eq!(self.keys.len(), f.key_base);
        for at in 0..std::mem::take(&mut f.predicted) as usize {
            let known = self.orders.remembered(f.slot as usize, at);
            debug_assert!(known.is_some(), "a predicted key is no longer remembered");
            let known = known.ok_or_else(missing)?;
            let key = input
                .get(known.start..known.start + known.len)
                .ok_or_else(missing)?;
            self.keys.push(Cow::Borrowed(key));
            self.fps.push(known.fp);
            f.bits |= key_bit(known.fp);
        }
        Ok(*f)
    }

    /// At a member name's `"`: when key-order prediction foresaw the name (see `predict`),
    /// takes it over and returns what was remembered about it. The name is passed (closing
    /// quote included) and counted as a key of the innermost object without the duplicate
    /// check: a predicted name differs from the object's keys before it, which are fewer than
    /// [`SMALL_OBJECT`]. It is not recorded in `keys` (that cost the 1 MiB load body 10 %):
    /// the frame counts it, and [`Scanner::key_of`] and [`Scanner::record_predicted`] find it
    /// among the slot's remembered keys. Always inlined: out of line, the call cost 8 %.
    #[inline(always)]
    fn take_predicted_key(&mut self, keys: &mut predict::Cursor) -> Option<predict::Decision> {
        let start = self.pos;
        let input = self.input;
        let known = self.orders.hit(keys, input, start)?;
        let (len, decision) = (known.len, known.decision());
        self.pos = start + len + 2;
        if let Some(f) = self.frames.last_mut() {
            // Every key before this one in the object was predicted as well.
            debug_assert_eq!(f.predicted as usize, keys.at);
            f.cur = keys.at;
            f.predicted = keys.at as u32 + 1;
            f.slot = keys.slot();
        }
        keys.at += 1;
        Some(decision)
    }

    /// Records a name prediction did not foresee, read from `start` (refusing a duplicate), and
    /// remembers `known` about it at the cursor's position (see `predict`).
    #[inline]
    fn add_unforeseen_key(
        &mut self,
        keys: &mut predict::Cursor,
        (key, fp, start): (Cow<'a, [u8]>, u64, usize),
        known: Option<predict::Known>,
    ) -> Result<(), Fail> {
        self.add_key(key, fp, start)?;
        self.orders.learn(keys, known);
        keys.at += 1;
        Ok(())
    }

    /// Classifies the subject value at `start..pos`: its canonical id, or what it is instead.
    fn subject_id(&self, start: usize) -> Result<Cow<'a, str>, NotAnId<'a>> {
        let raw = &self.input[start..self.pos];
        let not = |what: &'static str| NotAnId { what, text: None };
        let written = |text: Cow<'a, str>| {
            move |bad: BadId| NotAnId {
                what: bad.what(),
                text: Some(text),
            }
        };
        match raw.first() {
            Some(b'"') => {
                let inner = &raw[1..raw.len() - 1];
                if inner.is_empty() {
                    return Err(not("an empty string"));
                }
                let text = if inner.contains(&b'\\') {
                    let mut text = Vec::with_capacity(inner.len());
                    unescape(inner, &mut text);
                    String::from_utf8(text)
                        .map(Cow::Owned)
                        .map_err(|_| not("not valid text"))?
                } else {
                    self.text
                        .get(start + 1..self.pos - 1)
                        .map(Cow::Borrowed)
                        .ok_or(not("not valid text"))?
                };
                match id::check_string_id(&text) {
                    Ok(()) => Ok(text),
                    Err(bad) => Err(written(text)(bad)),
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let text = self
                    .text
                    .get(start..self.pos)
                    .ok_or(not("not valid text"))?;
                if raw.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                    Err(not("a number with a fraction or exponent"))
                } else if raw == b"-0" {
                    // Any JSON reader takes `-0` for 0: compared as the text "-0" it would
                    // slip past customer 0's opt-out.
                    Err(NotAnId {
                        what: "-0, which JSON readers take for 0",
                        text: Some(Cow::Borrowed(text)),
                    })
                } else {
                    id::check_integer_literal(text).map_err(written(Cow::Borrowed(text)))?;
                    Ok(Cow::Borrowed(text))
                }
            }
            other => Err(not(describe(other.copied()))),
        }
    }

    /// After the top-level value: only whitespace may follow.
    fn finish(&mut self) -> Result<(), Fail> {
        self.skip_ws();
        if self.pos < self.input.len() {
            return Err(self.syntax_at(self.pos, "unexpected data after the JSON value"));
        }
        Ok(())
    }

    /// Before the top-level value.
    fn start(&mut self) -> Result<(), Fail> {
        if self.input.is_empty() {
            return Err(bad("the body is empty".into()));
        }
        self.skip_ws();
        if self.pos == self.input.len() {
            return Err(bad("the body holds only whitespace, no JSON value".into()));
        }
        Ok(())
    }
}

pub(super) fn validate(body: &[u8], max_depth: usize) -> Result<(), Fail> {
    let text = check_text(body)?;
    let mut sc = Scanner::new(text, max_depth);
    sc.start()?;
    sc.skip_value::<false>(&mut Vec::new(), None)?;
    sc.finish()
}
