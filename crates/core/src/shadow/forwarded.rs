/*!
[`Forwarded`]: what a filter run passed to the partner, value by value, as the filter noted it
while writing the body (only when asked: [`crate::filter::filter_forwarded`]). Each entry is a
path and the value's form; a subtree passed whole (`.**`) is kept as the bytes the partner
receives. Noting only copies bytes (the raw path, the subtree); writing paths in drift syntax
and reading subtrees into leaves wait until a [`super::Decision`] is made from it, on the
shadow thread. No parse of the forwarded body, no per-field change list.
*/
use crate::drift::{push_element, push_member};
use crate::filter::Transform;

/// Every value a filter run forwarded: paths and forms.
///
/// The request path only copies bytes: a path is kept raw, as the member names appear in the
/// body (quoted, escapes and all) with a mark per array element, and written in drift syntax
/// only when [`Forwarded::each`] reads it (on the shadow thread).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The path of the value being read, raw: [`MEMBER`] + length (4 bytes, little endian) +
    /// the quoted name as received, or [`ELEMENT`], per level.
    stack: Vec<u8>,
    /// The entries' raw paths, one after the other.
    paths: Vec<u8>,
    entries: Vec<Entry>,
    /// The entries' subtrees as forwarded (compact JSON), one after the other.
    subtrees: Vec<u8>,
}

const MEMBER: u8 = b'.';
const ELEMENT: u8 = b'[';

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Where the path ends in `paths` (it starts where the previous one ends).
    path_end: usize,
    kept: Kept,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// A scalar, `null` or empty container, as received.
    Clear,
    Transformed(Transform),
    /// A subtree passed whole: its bytes end there in `subtrees`.
    Subtree(usize),
}

/// A point to go back to ([`Forwarded::truncate`]), when a record is dropped.
#[derive(Debug, Clone, Copy)]
pub struct Mark(usize, usize, usize);

/// One value as [`Forwarded::each`] hands it over: `Err` holds a subtree's JSON.
pub type Value<'a> = Result<Option<Transform>, &'a [u8]>;

impl Forwarded {
    /// Room for what a body of `len` bytes usually forwards, so noting rarely reallocates.
    pub fn for_body(len: usize) -> Forwarded {
        Forwarded {
            stack: Vec::with_capacity(256),
            paths: Vec::with_capacity(len),
            entries: Vec::with_capacity(len / 24),
            subtrees: Vec::new(),
        }
    }

    /// Steps into the member whose name is `quoted` (as in the body, with its quotes);
    /// returns the depth to [`Forwarded::leave`] to.
    pub fn enter_member(&mut self, quoted: &[u8]) -> usize {
        let depth = self.stack.len();
        self.stack.push(MEMBER);
        let len = u32::try_from(quoted.len()).unwrap_or(u32::MAX);
        self.stack.extend_from_slice(&len.to_le_bytes());
        self.stack.extend_from_slice(&quoted[..len as usize]);
        depth
    }

    /// Steps into the elements of an array.
    pub fn enter_element(&mut self) -> usize {
        let depth = self.stack.len();
        self.stack.push(ELEMENT);
        depth
    }

    pub fn leave(&mut self, depth: usize) {
        self.stack.truncate(depth);
    }

    /// The value at the current path is forwarded in clear (`None`) or transformed.
    pub fn value(&mut self, transform: Option<Transform>) {
        let kept = transform.map_or(Kept::Clear, Kept::Transformed);
        self.push(kept);
    }

    /// The value at the current path is a subtree forwarded whole, as `json`.
    pub fn subtree(&mut self, json: &[u8]) {
        self.subtrees.extend_from_slice(json);
        self.push(Kept::Subtree(self.subtrees.len()));
    }

    fn push(&mut self, kept: Kept) {
        self.paths.extend_from_slice(&self.stack);
        self.entries.push(Entry {
            path_end: self.paths.len(),
            kept,
        });
    }

    pub fn mark(&self) -> Mark {
        Mark(self.paths.len(), self.entries.len(), self.subtrees.len())
    }

    /// Forgets what was noted since `mark` (a record that was then dropped).
    pub fn truncate(&mut self, Mark(paths, entries, subtrees): Mark) {
        self.paths.truncate(paths);
        self.entries.truncate(entries);
        self.subtrees.truncate(subtrees);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `other` noted the same values: same paths as received, same forms, same
    /// subtrees (then both decisions read alike).
    pub fn same_values(&self, other: &Forwarded) -> bool {
        self.entries == other.entries
            && self.paths == other.paths
            && self.subtrees == other.subtrees
    }

    /// Every entry in document order: its raw path (see [`Forwarded`]; [`Rendered`] writes it
    /// in drift syntax) and its form, or its subtree's JSON.
    pub fn each(&self, f: &mut dyn FnMut(&[u8], Value<'_>)) {
        let (mut path_start, mut subtree_start) = (0, 0);
        for entry in &self.entries {
            let raw = &self.paths[path_start..entry.path_end];
            path_start = entry.path_end;
            match entry.kept {
                Kept::Clear => f(raw, Ok(None)),
                Kept::Transformed(t) => f(raw, Ok(Some(t))),
                Kept::Subtree(end) => {
                    f(raw, Err(&self.subtrees[subtree_start..end]));
                    subtree_start = end;
                }
            }
        }
    }
}

/// The levels of a raw path: `Some(quoted name)` for a member, `None` for an array element.
pub fn levels(raw: &[u8]) -> impl Iterator<Item = Option<&[u8]>> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let kind = *raw.get(at)?;
        if kind == ELEMENT {
            at += 1;
            return Some(None);
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(raw.get(at + 1..at + 5).unwrap_or(&[0; 4]));
        let end = (at + 5 + u32::from_le_bytes(len) as usize).min(raw.len());
        let quoted = &raw[(at + 5).min(end)..end];
        at = end.max(at + 1);
        Some(Some(quoted))
    })
}

/// The inside of a quoted name.
pub fn unquoted(quoted: &[u8]) -> &[u8] {
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
}

/// Writes raw paths in drift syntax. The last one is kept: the next one usually shares most of
/// its levels with it (siblings), so only the levels after the shared ones are written again.
#[derive(Default)]
pub struct Rendered {
    raw: Vec<u8>,
    text: String,
    /// Per level: where it ends in `raw` and in `text`.
    levels: Vec<(usize, usize)>,
    name: Vec<u8>,
}

impl Rendered {
    /// `raw` in drift syntax (`$` for the body itself).
    pub fn render(&mut self, raw: &[u8]) -> &str {
        let (mut shared, mut start) = (0, 0);
        for &(end, _) in &self.levels {
            if raw.get(start..end) != self.raw.get(start..end) {
                break;
            }
            (shared, start) = (shared + 1, end);
        }
        self.levels.truncate(shared);
        let (at, text_end) = self.levels.last().copied().unwrap_or((0, 0));
        self.text.truncate(text_end);
        let mut at = at;
        for level in levels(&raw[at.min(raw.len())..]) {
            match level {
                None => {
                    push_element(&mut self.text);
                    at += 1;
                }
                Some(quoted) => {
                    let inner = unquoted(quoted);
                    if inner.contains(&b'\\') {
                        self.name.clear();
                        crate::filter::unescape_string(inner, &mut self.name);
                        push_member(&mut self.text, &self.name);
                    } else {
                        push_member(&mut self.text, inner);
                    }
                    at += 5 + quoted.len();
                }
            }
            self.levels.push((at, self.text.len()));
        }
        self.raw.clear();
        self.raw.extend_from_slice(raw);
        if self.text.is_empty() {
            "$"
        } else {
            &self.text
        }
    }
}

/// Appends to `raw` each leaf (scalar or empty container) of `json`, a value the filter wrote
/// (strict, compact JSON; names quoted as received), and calls `leaf` with that raw path.
/// Malformed input (never written by the filter) ends the walk early.
pub fn subtree_leaves(json: &[u8], raw: &mut Vec<u8>, leaf: &mut dyn FnMut(&[u8])) {
    let _ = Leaves { json, pos: 0 }.value(raw, leaf);
}

struct Leaves<'a> {
    json: &'a [u8],
    pos: usize,
}

impl Leaves<'_> {
    fn peek(&self) -> Option<u8> {
        self.json.get(self.pos).copied()
    }

    /// One value at `pos`; `None` on bytes the filter never writes.
    fn value(&mut self, raw: &mut Vec<u8>, leaf: &mut dyn FnMut(&[u8])) -> Option<()> {
        let len = raw.len();
        match self.peek()? {
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.pos += 1;
                if self.peek()? == close {
                    self.pos += 1;
                    leaf(raw);
                    return Some(());
                }
                loop {
                    if open == b'{' {
                        let start = self.pos;
                        self.string()?;
                        let quoted = &self.json[start..self.pos];
                        raw.push(MEMBER);
                        raw.extend_from_slice(&(quoted.len() as u32).to_le_bytes());
                        raw.extend_from_slice(quoted);
                        self.pos += 1; // `:`
                    } else {
                        raw.push(ELEMENT);
                    }
                    self.value(raw, leaf)?;
                    raw.truncate(len);
                    let next = self.peek()?;
                    self.pos += 1;
                    if next == close {
                        return Some(());
                    }
                }
            }
            b'"' => {
                self.string()?;
                leaf(raw);
            }
            _ => {
                // A number or literal: up to the next delimiter.
                let rest = &self.json[self.pos..];
                let end = rest
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']'))
                    .unwrap_or(rest.len());
                self.pos += end;
                leaf(raw);
            }
        }
        Some(())
    }

    /// Skips the string at `pos`.
    fn string(&mut self) -> Option<()> {
        let mut i = self.pos + 1;
        loop {
            match *self.json.get(i)? {
                b'"' => break,
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        self.pos = i + 1;
        Some(())
    }
}
