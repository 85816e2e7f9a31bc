/*!
The strict one-pass scanner. [`Scanner`] owns the input position, the stack of open containers
and the keys seen in each open object, and validates as it goes; [`Filter`] follows the
compiled trie on top of it and writes the partner's body.

Where the trie ends (a removed member, a subtree passed whole) the scanner takes over with an
iterative loop, so arbitrarily deep input never deepens the Rust stack: recursion is bounded by
the policy's path lengths, nesting by `max_depth`.

Kept values are copied byte-for-byte from the input (numbers stay as written, strings keep
their escapes); only whitespace is dropped.
*/
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;

use super::compile::{fingerprint, Kind, Members, NodeId};
use super::transform::{self, Hmac256};
use super::{Change, FilterOptions, FilterProgram, Filtered, OptOutLookup, Report, Transform};
use crate::drift::{self, Shapes};
use crate::optout::id::{self, BadId};
use crate::{Refusal, RefusalKind};

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
    /// Objects: index in `keys` of the member being read (`NONE` before the first).
    /// Arrays: index of the element being read.
    cur: usize,
    /// Objects with many keys: index of their hash set in `Scanner::sets`.
    set: usize,
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
}

fn bad(message: String) -> Refusal {
    Refusal::new(RefusalKind::BadRequest, message)
}

/// Checks the whole body is UTF-8 without a BOM, so the scanner can slice it as text.
fn check_text(body: &[u8]) -> Result<&str, Refusal> {
    if body.starts_with(BOM) {
        return Err(bad(
            "the body starts with a UTF-8 byte order mark; send JSON without a BOM".into(),
        ));
    }
    std::str::from_utf8(body).map_err(|e| {
        bad(format!(
            "the body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })
}

/// Bit 7 of each byte of the result is set where `w` holds `"`, `\` or a control character.
/// Bits above a true hit may be false positives (borrows run upward), so only the lowest set
/// bit is exact, and that is the only one used.
#[inline]
fn string_specials(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let q = quote.wrapping_sub(ONES) & !quote;
    let b = backslash.wrapping_sub(ONES) & !backslash;
    let c = w.wrapping_sub(ONES * 0x20) & !w;
    (q | b | c) & HIGH
}

fn hex_value(b: u8) -> Option<u16> {
    match b {
        b'0'..=b'9' => Some(u16::from(b - b'0')),
        b'a'..=b'f' => Some(u16::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u16::from(b - b'A' + 10)),
        _ => None,
    }
}

fn hex4(bytes: &[u8]) -> Option<u16> {
    match bytes {
        [a, b, c, d, ..] => {
            Some(hex_value(*a)? << 12 | hex_value(*b)? << 8 | hex_value(*c)? << 4 | hex_value(*d)?)
        }
        _ => None,
    }
}

/// Decodes the inside of a string the scanner already validated.
pub(super) fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let Some(rel) = raw[i..].iter().position(|&b| b == b'\\') else {
            out.extend_from_slice(&raw[i..]);
            return;
        };
        out.extend_from_slice(&raw[i..i + rel]);
        i += rel;
        let simple = match raw.get(i + 1) {
            Some(b'"') => Some(b'"'),
            Some(b'\\') => Some(b'\\'),
            Some(b'/') => Some(b'/'),
            Some(b'b') => Some(0x08),
            Some(b'f') => Some(0x0c),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            i += 2;
            continue;
        }
        let unit = hex4(raw.get(i + 2..).unwrap_or_default()).unwrap_or(0xFFFD);
        i += 6;
        let code = if (0xD800..0xDC00).contains(&unit) {
            let low = hex4(raw.get(i + 2..).unwrap_or_default()).unwrap_or(0xFFFD);
            i += 6;
            0x10000
                + ((u32::from(unit) - 0xD800) << 10)
                + (u32::from(low).wrapping_sub(0xDC00) & 0x3FF)
        } else {
            u32::from(unit)
        };
        let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    }
}

fn starts_value(byte: Option<u8>) -> bool {
    matches!(
        byte,
        Some(b'{' | b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9')
    )
}

fn describe(byte: Option<u8>) -> &'static str {
    match byte {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        _ => "not a JSON value",
    }
}

/// Appends one key to a rendered path: plain when the path language could spell it,
/// `["..."]` otherwise, so the rendering is never ambiguous.
fn push_key(path: &mut String, key: &[u8]) {
    let key = String::from_utf8_lossy(key);
    let plain = !key.is_empty()
        && key.chars().all(|c| {
            !c.is_whitespace()
                && !c.is_control()
                && !matches!(c, '.' | '[' | ']' | '*' | '"' | '\\')
        });
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&key);
    } else {
        path.push('[');
        path.push_str(&serde_json::to_string(&key).unwrap_or_else(|_| format!("{key:?}")));
        path.push(']');
    }
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, max_depth: usize) -> Self {
        Scanner {
            input: text.as_bytes(),
            text,
            pos: 0,
            max_depth,
            frames: Vec::with_capacity(16),
            keys: Vec::with_capacity(64),
            fps: Vec::with_capacity(64),
            sets: Vec::new(),
            sets_used: 0,
            hidden_removed: 0,
            hidden_paths: None,
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.input.get(self.pos) {
            self.pos += 1;
        }
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
            } else if let Some(key) = self.keys.get(frame.cur) {
                drift::push_member(out, key);
            }
        }
    }

    fn path_upto(&self, depth: usize) -> String {
        let mut path = String::new();
        for frame in &self.frames[..depth.min(self.frames.len())] {
            if frame.object {
                if let Some(key) = self.keys.get(frame.cur) {
                    push_key(&mut path, key);
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

    fn syntax_at(&self, at: usize, what: &str) -> Refusal {
        bad(format!(
            "malformed JSON at byte {at}{}: {what}",
            self.where_()
        ))
    }

    fn unexpected(&self, expected: &str) -> Refusal {
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
    fn expect(&mut self, byte: u8, expected: &str) -> Result<(), Refusal> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn open(&mut self, object: bool) -> Result<(), Refusal> {
        if self.frames.len() >= self.max_depth {
            return Err(bad(format!(
                "nesting deeper than {} levels at byte {}{}",
                self.max_depth,
                self.pos,
                self.where_()
            )));
        }
        let cur = if object { NONE } else { 0 };
        self.frames.push(Frame {
            object,
            key_base: self.keys.len(),
            cur,
            set: NONE,
        });
        Ok(())
    }

    fn close(&mut self) {
        if let Some(frame) = self.frames.pop() {
            if frame.object {
                self.keys.truncate(frame.key_base);
                self.fps.truncate(frame.key_base);
                if frame.set != NONE {
                    if let Some(set) = self.sets.get_mut(frame.set) {
                        set.clear();
                    }
                    self.sets_used -= 1;
                }
            }
        }
    }

    #[inline]
    fn next_element(&mut self) {
        if let Some(frame) = self.frames.last_mut() {
            frame.cur += 1;
        }
    }

    /// Records a key of the innermost object, refusing duplicates.
    fn add_key(&mut self, key: Cow<'a, [u8]>, fp: u64, at: usize) -> Result<(), Refusal> {
        let Some(frame) = self.frames.last().copied() else {
            return Err(bad("internal error: a key outside an object".into()));
        };
        let duplicate = if frame.set == NONE {
            let seen = &self.keys[frame.key_base..];
            let duplicate = self.fps[frame.key_base..]
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
            f.cur = self.keys.len() - 1;
        }
        Ok(())
    }

    /// At `\`: validates one escape and returns the index after it.
    fn escape(&self, i: usize) -> Result<usize, Refusal> {
        match self.input.get(i + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
            Some(b'u') => {
                let bad_hex = || self.syntax_at(i, "`\\u` must be followed by 4 hex digits");
                let unit = hex4(self.input.get(i + 2..).unwrap_or_default()).ok_or_else(bad_hex)?;
                match unit {
                    0xD800..=0xDBFF => {
                        let low = match self.input.get(i + 6..i + 8) {
                            Some(b"\\u") => hex4(self.input.get(i + 8..).unwrap_or_default()),
                            _ => None,
                        };
                        match low {
                            Some(0xDC00..=0xDFFF) => Ok(i + 12),
                            _ => Err(self.syntax_at(
                                i,
                                &format!("lone surrogate `\\u{unit:04x}`: a high surrogate must be followed by a low one"),
                            )),
                        }
                    }
                    0xDC00..=0xDFFF => Err(self.syntax_at(
                        i,
                        &format!(
                            "lone surrogate `\\u{unit:04x}`: a low surrogate without a high one"
                        ),
                    )),
                    _ => Ok(i + 6),
                }
            }
            Some(&b) if b.is_ascii_graphic() => {
                Err(self.syntax_at(i, &format!("invalid escape `\\{}`", char::from(b))))
            }
            Some(_) => Err(self.syntax_at(i, "invalid escape")),
            None => Err(self.syntax_at(i, "unterminated string")),
        }
    }

    /// At `"`: validates a string, leaves `pos` after its closing quote, and says whether it
    /// holds escapes.
    #[inline]
    fn scan_string(&mut self) -> Result<bool, Refusal> {
        let input = self.input;
        let mut i = self.pos + 1;
        let mut escaped = false;
        loop {
            while let Some(chunk) = input.get(i..i + 8) {
                let Ok(word) = <[u8; 8]>::try_from(chunk) else {
                    break;
                };
                let hits = string_specials(u64::from_le_bytes(word));
                if hits != 0 {
                    i += (hits.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            match input.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    i = self.escape(i)?;
                }
                Some(&b) if b < 0x20 => {
                    return Err(self.syntax_at(
                        i,
                        &format!("control character 0x{b:02x} in a string must be escaped"),
                    ))
                }
                Some(_) => i += 1,
                None => return Err(self.syntax_at(self.pos, "unterminated string")),
            }
        }
    }

    /// At `"` of a key: validates it and returns it unescaped (borrowed unless it has escapes).
    #[inline]
    fn read_key(&mut self) -> Result<Cow<'a, [u8]>, Refusal> {
        let start = self.pos;
        let escaped = self.scan_string()?;
        let raw = &self.input[start + 1..self.pos - 1];
        if escaped {
            let mut key = Vec::with_capacity(raw.len());
            unescape(raw, &mut key);
            Ok(Cow::Owned(key))
        } else {
            Ok(Cow::Borrowed(raw))
        }
    }

    /// At `-` or a digit: validates an RFC 8259 number and leaves `pos` after it.
    #[inline]
    fn scan_number(&mut self) -> Result<(), Refusal> {
        let input = self.input;
        let start = self.pos;
        let mut i = self.pos;
        let digits = |mut i: usize| {
            while input.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        if input.get(i) == Some(&b'-') {
            i += 1;
        }
        match input.get(i) {
            Some(b'0') => {
                i += 1;
                if input.get(i).is_some_and(u8::is_ascii_digit) {
                    return Err(self.syntax_at(start, "numbers must not have leading zeros"));
                }
            }
            Some(b'1'..=b'9') => i = digits(i + 1),
            _ => return Err(self.syntax_at(i, "expected a digit in a number")),
        }
        if input.get(i) == Some(&b'.') {
            let after = digits(i + 1);
            if after == i + 1 {
                return Err(self.syntax_at(i, "expected a digit after `.` in a number"));
            }
            i = after;
        }
        if let Some(b'e' | b'E') = input.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = input.get(i) {
                i += 1;
            }
            let after = digits(i);
            if after == i {
                return Err(self.syntax_at(i, "expected a digit in a number's exponent"));
            }
            i = after;
        }
        self.pos = i;
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), Refusal> {
        if self.input[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.unexpected("a JSON value"))
        }
    }

    /// Reads one scalar at `pos` (already known not to be a container) and returns its span.
    #[inline]
    fn scalar(&mut self) -> Result<(usize, usize), Refusal> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => {
                self.scan_string()?;
            }
            Some(b'-' | b'0'..=b'9') => self.scan_number()?,
            Some(b't') => self.literal(b"true")?,
            Some(b'f') => self.literal(b"false")?,
            Some(b'n') => self.literal(b"null")?,
            _ => return Err(self.unexpected("a JSON value")),
        }
        Ok((start, self.pos))
    }

    /// At `"` of a member (or where one must be): reads the key and the `:` after it, refusing
    /// duplicates; `emit` gets the key as written.
    #[inline]
    /// Reads a member name and its `:`. When copying (`EMIT`, not `hidden`), writes the name —
    /// after a `,` if the object already has a member in `out` — and returns whether the member
    /// is written: a name no policy path can spell is dropped even inside a `.**` subtree.
    fn member_key<const EMIT: bool>(
        &mut self,
        out: &mut Vec<u8>,
        hidden: bool,
        wrote_member: Option<&mut bool>,
    ) -> Result<bool, Refusal> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a member name in double quotes"));
        }
        let start = self.pos;
        let key = self.read_key()?;
        let unnameable = EMIT && key.iter().any(|b| matches!(b, b'.' | b'[' | b']' | b'*'));
        let fp = fingerprint(&key);
        self.add_key(key, fp, start)?;
        let written = EMIT && !hidden && !unnameable;
        if written {
            if let Some(wrote) = wrote_member {
                if *wrote {
                    out.push(b',');
                }
                *wrote = true;
            }
            out.extend_from_slice(&self.input[start..self.pos]);
            out.push(b':');
        } else if EMIT && !hidden {
            self.hidden_removed += 1;
            if self.hidden_paths.is_some() {
                let path = self.path();
                if let Some(paths) = self.hidden_paths.as_mut() {
                    paths.push(path);
                }
            }
        }
        self.skip_ws();
        self.expect(b':', "`:` after a member name")?;
        self.skip_ws();
        Ok(written)
    }

    /// Opens the container at `pos` (copying its bracket unless `hidden`); when it is empty,
    /// closes it again and returns true.
    fn enter<const EMIT: bool>(
        &mut self,
        object: bool,
        hidden: bool,
        out: &mut Vec<u8>,
        wrote: &mut Vec<bool>,
    ) -> Result<bool, Refusal> {
        self.open(object)?;
        let (open, close) = if object { (b'{', b'}') } else { (b'[', b']') };
        self.pos += 1;
        if EMIT {
            wrote.push(false);
            if !hidden {
                out.push(open);
            }
        }
        self.skip_ws();
        if self.peek() == Some(close) {
            self.leave::<EMIT>(close, hidden, out, wrote);
            return Ok(true);
        }
        Ok(false)
    }

    /// Closes the container whose closing bracket `close` is at `pos`.
    fn leave<const EMIT: bool>(
        &mut self,
        close: u8,
        hidden: bool,
        out: &mut Vec<u8>,
        wrote: &mut Vec<bool>,
    ) {
        self.pos += 1;
        if EMIT {
            wrote.pop();
            if !hidden {
                out.push(close);
            }
        }
        self.close();
    }

    /// Validates one whole value at `pos` (which is not whitespace), copying it compactly to
    /// `out` when `EMIT`. Iterative, so input nesting never deepens the Rust stack. When
    /// copying, a member whose name no path can spell is validated but not written.
    fn skip_value<const EMIT: bool>(&mut self, out: &mut Vec<u8>) -> Result<(), Refusal> {
        let base = self.frames.len();
        // Copying only: the depth of the member being dropped, and for each container opened
        // here whether it has written a member yet (commas go before every written member).
        let mut hidden_at: Option<usize> = None;
        let mut wrote: Vec<bool> = Vec::new();
        'value: loop {
            let hidden = hidden_at.is_some();
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    let object = c == b'{';
                    if !self.enter::<EMIT>(object, hidden, out, &mut wrote)? {
                        if object
                            && !self.member_key::<EMIT>(out, hidden, wrote.last_mut())?
                            && EMIT
                            && !hidden
                        {
                            hidden_at = Some(self.frames.len());
                        }
                        continue 'value;
                    }
                }
                _ => {
                    let (start, end) = self.scalar()?;
                    if EMIT && !hidden {
                        out.extend_from_slice(&self.input[start..end]);
                    }
                }
            }
            // After a value: close every container that ends here, then find the next value.
            loop {
                if hidden_at.is_some_and(|depth| self.frames.len() <= depth) {
                    hidden_at = None; // the dropped member's value has ended
                }
                if self.frames.len() <= base {
                    return Ok(());
                }
                let hidden = hidden_at.is_some();
                self.skip_ws();
                let object = self.frames.last().is_some_and(|f| f.object);
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                        if object {
                            if !self.member_key::<EMIT>(out, hidden, wrote.last_mut())?
                                && EMIT
                                && !hidden
                            {
                                hidden_at = Some(self.frames.len());
                            }
                        } else {
                            if EMIT && !hidden {
                                out.push(b',');
                            }
                            self.next_element();
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => self.leave::<EMIT>(b'}', hidden, out, &mut wrote),
                    Some(b']') if !object => self.leave::<EMIT>(b']', hidden, out, &mut wrote),
                    _ => {
                        return Err(self.unexpected(if object {
                            "`,` or `}`"
                        } else {
                            "`,` or `]`"
                        }))
                    }
                }
            }
        }
    }

    /// Classifies the subject value at `start..pos`: its canonical id, or what it is instead.
    fn subject_id(&self, start: usize) -> Result<Cow<'a, str>, &'static str> {
        let raw = &self.input[start..self.pos];
        match raw.first() {
            Some(b'"') => {
                let inner = &raw[1..raw.len() - 1];
                if inner.is_empty() {
                    return Err("an empty string");
                }
                let text = if inner.contains(&b'\\') {
                    let mut text = Vec::with_capacity(inner.len());
                    unescape(inner, &mut text);
                    String::from_utf8(text)
                        .map(Cow::Owned)
                        .map_err(|_| "not valid text")?
                } else {
                    self.text
                        .get(start + 1..self.pos - 1)
                        .map(Cow::Borrowed)
                        .ok_or("not valid text")?
                };
                id::check_string_id(&text).map_err(BadId::what)?;
                Ok(text)
            }
            Some(b'-' | b'0'..=b'9') => {
                if raw.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                    Err("a number with a fraction or exponent")
                } else if raw == b"-0" {
                    // Any JSON reader takes `-0` for 0: compared as the text "-0" it would
                    // slip past customer 0's opt-out.
                    Err("-0, which JSON readers take for 0")
                } else {
                    let text = self.text.get(start..self.pos).ok_or("not valid text")?;
                    id::check_integer_literal(text).map_err(BadId::what)?;
                    Ok(Cow::Borrowed(text))
                }
            }
            other => Err(describe(other.copied())),
        }
    }

    /// After the top-level value: only whitespace may follow.
    fn finish(&mut self) -> Result<(), Refusal> {
        self.skip_ws();
        if self.pos < self.input.len() {
            return Err(self.syntax_at(self.pos, "unexpected data after the JSON value"));
        }
        Ok(())
    }

    /// Before the top-level value.
    fn start(&mut self) -> Result<(), Refusal> {
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

pub(super) fn validate(body: &[u8], max_depth: usize) -> Result<(), Refusal> {
    let text = check_text(body)?;
    let mut sc = Scanner::new(text, max_depth);
    sc.start()?;
    sc.skip_value::<false>(&mut Vec::new())?;
    sc.finish()
}

/// Report counters at the start of a record, restored when the record is dropped.
struct Snapshot {
    fields_removed: u64,
    transformed: [u64; 4],
    changes: usize,
}

struct Filter<'a, 'p> {
    sc: Scanner<'a>,
    out: Vec<u8>,
    report: Report,
    program: &'p FilterProgram,
    detail: bool,
    optouts: Option<&'p dyn OptOutLookup>,
    /// Collect forwarded records' subject ids.
    subjects: bool,
    hmac: Option<Hmac256>,
    scratch: Vec<u8>,
    /// `report.matched` at the start of the record being read (restored if it is dropped).
    saved_matched: Vec<u64>,
    drift_scratch: String,
}

pub(super) fn filter(
    program: &FilterProgram,
    body: &[u8],
    options: &FilterOptions<'_>,
) -> Result<Filtered, Refusal> {
    if !program.takes_body {
        return Err(bad("this route takes no body".into()));
    }
    // Decided before reading the body, so the outcome never depends on whether a
    // pseudonymized field happens to be present.
    let hmac = match (program.uses_pseudonymize, options.pseudonymize_key) {
        (false, _) => None,
        (true, Some(key)) => Some(transform::hmac_for(key).ok_or_else(|| {
            Refusal::new(
                RefusalKind::NotReady,
                "this partner's pseudonymization key cannot be used",
            )
        })?),
        (true, None) => {
            return Err(Refusal::new(
                RefusalKind::NotReady,
                "the policy pseudonymizes a field but this partner has no pseudonymization key",
            ))
        }
    };
    if options.optouts.is_some() && program.subject.is_none() {
        return Err(Refusal::new(RefusalKind::SubjectMissing,
            "this route honours opt-outs but its policy names no records and subject, so opt-outs cannot be checked"
                ,
        ));
    }
    let text = check_text(body)?;
    let mut f = Filter {
        sc: Scanner::new(text, options.max_depth),
        out: Vec::with_capacity(body.len()),
        report: Report {
            matched: vec![0; program.sources],
            ..Report::default()
        },
        program,
        detail: options.detail,
        optouts: options.optouts,
        subjects: options.subjects,
        hmac,
        scratch: Vec::new(),
        saved_matched: Vec::new(),
        drift_scratch: String::new(),
    };
    if options.detail {
        f.sc.hidden_paths = Some(Vec::new());
    }
    f.sc.start()?;
    f.walk(program.root)?;
    f.sc.finish()?;
    Ok(Filtered {
        body: f.out,
        report: f.report,
    })
}

impl<'a, 'p> Filter<'a, 'p> {
    /// Handles the value at `pos` as node `id` says; false when it is a record that was dropped.
    fn walk(&mut self, id: NodeId) -> Result<bool, Refusal> {
        let program = self.program;
        let Some(node) = program.nodes.get(id as usize) else {
            return Err(bad(
                "internal error: the filter program is inconsistent".into()
            ));
        };
        for &source in node.sources.iter() {
            if let Some(n) = self.report.matched.get_mut(source as usize) {
                *n += 1;
            }
        }
        match &node.kind {
            Kind::Scalar => self.scalar().map(|()| true),
            Kind::Transform(t) => self.transform(*t).map(|()| true),
            Kind::Subtree => {
                self.sc.skip_value::<true>(&mut self.out)?;
                self.report.fields_removed += std::mem::take(&mut self.sc.hidden_removed);
                if let Some(paths) = self.sc.hidden_paths.as_mut() {
                    self.report
                        .changes
                        .extend(paths.drain(..).map(|path| Change::Removed { path }));
                }
                Ok(true)
            }
            Kind::Object(members) => self.object(members, node.records),
            Kind::Array { elements } => self.array(*elements).map(|()| true),
        }
    }

    fn scalar(&mut self) -> Result<(), Refusal> {
        if let Some(b'{' | b'[') = self.sc.peek() {
            return Err(bad(format!(
                "`{}` holds {}, but the policy passes only a string, number, boolean or null there",
                self.sc.path(),
                describe(self.sc.peek())
            )));
        }
        let (start, end) = self.sc.scalar()?;
        self.out.extend_from_slice(&self.sc.input[start..end]);
        Ok(())
    }

    fn transform(&mut self, t: Transform) -> Result<(), Refusal> {
        let input = self.sc.input;
        let start = self.sc.pos;
        match self.sc.peek() {
            Some(b'"') => {
                let escaped = self.sc.scan_string()?;
                let inner = &input[start + 1..self.sc.pos - 1];
                if escaped {
                    self.scratch.clear();
                    unescape(inner, &mut self.scratch);
                    transform::apply(t, &self.scratch, self.hmac.as_ref(), &mut self.out)?;
                } else {
                    transform::apply(t, inner, self.hmac.as_ref(), &mut self.out)?;
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                self.sc.scan_number()?;
                transform::apply(
                    t,
                    &input[start..self.sc.pos],
                    self.hmac.as_ref(),
                    &mut self.out,
                )?;
            }
            Some(b'n') => {
                self.sc.literal(b"null")?;
                self.out.extend_from_slice(b"null");
                return Ok(());
            }
            Some(b'{' | b'[' | b't' | b'f') => {
                return Err(bad(format!(
                    "`{}` holds {}, but transform {} accepts only a string, number or null",
                    self.sc.path(),
                    describe(self.sc.peek()),
                    t.name()
                )))
            }
            _ => return Err(self.sc.unexpected("a JSON value")),
        }
        self.report.transformed[t as usize] += 1;
        if self.detail {
            self.report.changes.push(Change::Transformed {
                path: self.sc.path(),
                transform: t,
            });
        }
        Ok(())
    }

    fn object(&mut self, members: &'p Members, records: bool) -> Result<bool, Refusal> {
        match self.sc.peek() {
            Some(b'{') => {}
            Some(b'n') if !records => {
                self.sc.literal(b"null")?;
                self.out.extend_from_slice(b"null");
                return Ok(true);
            }
            other if !starts_value(other) => return Err(self.sc.unexpected("a JSON value")),
            other if records => {
                return Err(bad(format!(
                    "record `{}` is {}, but records must be objects",
                    self.sc.path(),
                    describe(other)
                )))
            }
            other => {
                return Err(bad(format!(
                    "`{}` is {}, but the policy expects an object there",
                    self.sc.path(),
                    describe(other)
                )))
            }
        }
        let input = self.sc.input;
        self.sc.open(true)?;
        self.sc.pos += 1;
        self.out.push(b'{');
        let snapshot = records.then_some(Snapshot {
            fields_removed: self.report.fields_removed,
            transformed: self.report.transformed,
            changes: self.report.changes.len(),
        });
        let want_subject = records && (self.optouts.is_some() || self.subjects);
        if records && self.optouts.is_some() {
            self.saved_matched.clone_from(&self.report.matched);
        }
        let mut subject: Option<Result<Cow<'a, str>, &'static str>> = None;
        let mut folded: Option<Refusal> = None;
        let mut first = true;
        self.sc.skip_ws();
        if self.sc.peek() != Some(b'}') {
            loop {
                if self.sc.peek() != Some(b'"') {
                    return Err(self.sc.unexpected("a member name in double quotes"));
                }
                let key_start = self.sc.pos;
                let key = self.sc.read_key()?;
                let key_end = self.sc.pos;
                let fp = fingerprint(&key);
                let child = members.lookup(&key, fp);
                let known = child.is_some() || members.removed(&key, fp);
                let is_subject = want_subject && self.program.subject.as_deref() == Some(&*key);
                if records && self.optouts.is_some() && !is_subject && folded.is_none() {
                    folded = self.folded_subject(&key);
                }
                self.sc.add_key(key, fp, key_start)?;
                self.sc.skip_ws();
                self.sc.expect(b':', "`:` after a member name")?;
                self.sc.skip_ws();
                let value_start = self.sc.pos;
                if is_subject
                    && self.optouts.is_some()
                    && matches!(self.sc.peek(), Some(b'{' | b'['))
                {
                    // An object or array where the customer id belongs is a missing
                    // subject (422), whatever shape the policy allows for that member.
                    return Err(Refusal::new(RefusalKind::SubjectMissing, format!(
                        "record `{}` has no valid subject id: `{}` is an object or array (expected a non-empty string or an integer)",
                        self.sc.path(),
                        String::from_utf8_lossy(self.program.subject.as_deref().unwrap_or_default())
                    )));
                }
                match child {
                    Some(child) => {
                        if !first {
                            self.out.push(b',');
                        }
                        first = false;
                        self.out.extend_from_slice(&input[key_start..key_end]);
                        self.out.push(b':');
                        // Records are array elements or the root, never members: nothing
                        // beneath a member is dropped.
                        self.walk(child)?;
                    }
                    None => {
                        let shapes = Shapes::of_first_byte(self.sc.peek());
                        self.sc.skip_value::<false>(&mut self.out)?;
                        self.report.fields_removed += 1;
                        if !known {
                            self.note_unknown(shapes);
                        }
                        if self.detail {
                            self.report.changes.push(Change::Removed {
                                path: self.sc.path(),
                            });
                        }
                    }
                }
                if is_subject {
                    subject = Some(self.sc.subject_id(value_start));
                }
                self.sc.skip_ws();
                match self.sc.peek() {
                    Some(b',') => {
                        self.sc.pos += 1;
                        self.sc.skip_ws();
                    }
                    Some(b'}') => break,
                    _ => return Err(self.sc.unexpected("`,` or `}`")),
                }
            }
        }
        self.sc.pos += 1;
        self.out.push(b'}');
        self.sc.close();
        match snapshot {
            None => Ok(true),
            Some(snapshot) => self.finish_record(snapshot, want_subject, subject, folded),
        }
    }

    /// A record member that case-insensitive JSON readers take for the subject member
    /// (`Customer_Id` next to `customer_id`) could make the partner judge the record by another
    /// customer than the gateway did: the refusal (400) for it, given once the record's own
    /// subject is known to be valid.
    fn folded_subject(&self, key: &[u8]) -> Option<Refusal> {
        let subject = self.program.subject.as_deref().unwrap_or_default();
        let (Ok(key), Ok(subject)) = (std::str::from_utf8(key), std::str::from_utf8(subject))
        else {
            return None;
        };
        id::folds_to_subject(key, subject).then(|| {
            bad(format!(
                "record `{}` has a member {key:?}, which case-insensitive JSON readers take for the subject `{subject}`",
                self.sc.path()
            ))
        })
    }

    /// At the end of a record: checks its subject against the opt-outs and counts it.
    fn finish_record(
        &mut self,
        snapshot: Snapshot,
        want_subject: bool,
        subject: Option<Result<Cow<'a, str>, &'static str>>,
        folded: Option<Refusal>,
    ) -> Result<bool, Refusal> {
        let Some(optouts) = self.optouts.filter(|_| want_subject) else {
            // Without opt-outs a record is never refused for its subject; the ledger just
            // gets no id for it.
            if let (true, Some(Ok(subject))) = (want_subject, subject) {
                self.report.subjects.push(subject.into_owned());
            }
            self.report.records_forwarded += 1;
            return Ok(true);
        };
        {
            let name = String::from_utf8_lossy(self.program.subject.as_deref().unwrap_or_default())
                .into_owned();
            let subject = match subject {
                Some(Ok(subject)) => subject,
                Some(Err(what)) => {
                    return Err(Refusal::new(RefusalKind::SubjectMissing, format!(
                        "record `{}` has no valid subject id: `{name}` is {what} (expected a non-empty string or an integer)",
                        self.sc.path()
                    )))
                }
                None => {
                    return Err(Refusal::new(RefusalKind::SubjectMissing, format!(
                        "record `{}` has no subject id: member `{name}` is missing",
                        self.sc.path()
                    )))
                }
            };
            if let Some(refusal) = folded {
                return Err(refusal);
            }
            if id::is_opted_out(optouts, &subject) {
                if self.program.single_record {
                    return Err(Refusal::new(
                        RefusalKind::SubjectOptedOut,
                        "the customer this record is about opted out of sharing with this partner",
                    ));
                }
                self.report.fields_removed = snapshot.fields_removed;
                self.report.transformed = snapshot.transformed;
                self.report.changes.truncate(snapshot.changes);
                self.report.matched.clone_from(&self.saved_matched);
                self.report.records_dropped += 1;
                if self.detail {
                    self.report.changes.push(Change::RecordDropped {
                        path: self.sc.path(),
                        subject: subject.into_owned(),
                    });
                }
                return Ok(false);
            }
            if self.subjects {
                self.report.subjects.push(subject.into_owned());
            }
        }
        self.report.records_forwarded += 1;
        Ok(true)
    }

    /// Counts a member no path names, and notes its drift path.
    fn note_unknown(&mut self, shapes: Shapes) {
        self.report.unknown_fields += 1;
        let mut path = std::mem::take(&mut self.drift_scratch);
        self.sc.drift_path(&mut path);
        drift::note(&mut self.report.unknown, &path, shapes);
        self.drift_scratch = path;
    }

    fn array(&mut self, elements: NodeId) -> Result<(), Refusal> {
        match self.sc.peek() {
            Some(b'[') => {}
            Some(b'n') => {
                self.sc.literal(b"null")?;
                self.out.extend_from_slice(b"null");
                return Ok(());
            }
            other if !starts_value(other) => return Err(self.sc.unexpected("a JSON value")),
            other => {
                return Err(bad(format!(
                    "`{}` is {}, but the policy expects an array there",
                    self.sc.path(),
                    describe(other)
                )))
            }
        }
        self.sc.open(false)?;
        self.sc.pos += 1;
        self.out.push(b'[');
        self.sc.skip_ws();
        if self.sc.peek() != Some(b']') {
            let mut any_kept = false;
            loop {
                // A dropped record takes its comma with it.
                let mark = self.out.len();
                if any_kept {
                    self.out.push(b',');
                }
                if self.walk(elements)? {
                    any_kept = true;
                } else {
                    self.out.truncate(mark);
                }
                self.sc.skip_ws();
                match self.sc.peek() {
                    Some(b',') => {
                        self.sc.pos += 1;
                        self.sc.skip_ws();
                        self.sc.next_element();
                    }
                    Some(b']') => break,
                    _ => return Err(self.sc.unexpected("`,` or `]`")),
                }
            }
        }
        self.sc.pos += 1;
        self.out.push(b']');
        self.sc.close();
        Ok(())
    }
}
