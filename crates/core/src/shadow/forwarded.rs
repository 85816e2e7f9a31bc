/*!
Reading a [`Forwarded`] note: raw paths (member names as received, see
[`crate::filter::forwarded`]) written in drift syntax ([`Rendered`]: `[*]` for elements,
data-like names as `*`), and the leaves of subtrees passed whole ([`subtree_leaves`]). This runs
on the shadow thread, never on the request path.
*/
use crate::drift::{push_element, push_member};
pub use crate::filter::forwarded::{Forwarded, Value, ELEMENT, MEMBER};

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
