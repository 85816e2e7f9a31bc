//! Values the trie does not walk: removed members (validated, not copied) and `.**` subtrees
//! (validated and copied compactly), in one iterative loop.
use super::super::compile::{fingerprint, is_path_syntax, Found};
use super::lex::copy_span;
use super::predict::{Cursor, KeyOrders, Known};
use super::{Fail, Scanner};

impl<'a> Scanner<'a> {
    /// Reads a member name and its `:`. When copying (`EMIT`, not `hidden`), writes the name —
    /// after a `,` if the object already has a member in `out` — and returns whether the member
    /// is written: a name no policy path can spell is dropped even inside a `.**` subtree.
    /// `keys`: the key-order cursor of a top object that is only checked (see `predict`).
    #[inline(always)]
    pub(super) fn member_key<const EMIT: bool>(
        &mut self,
        out: &mut Vec<u8>,
        hidden: bool,
        wrote_member: Option<&mut bool>,
        keys: Option<&mut Cursor>,
    ) -> Result<bool, Fail> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a member name in double quotes"));
        }
        let start = self.pos;
        let unnameable = match keys {
            Some(keys) if !EMIT => {
                if self.take_predicted_key(keys).is_none() {
                    self.checked_key(keys)?;
                }
                false
            }
            _ => {
                let key = self.read_key()?;
                let unnameable =
                    (EMIT || self.watch_names) && key.iter().any(|&b| is_path_syntax(b));
                if !EMIT && unnameable {
                    self.altered = true;
                }
                let fp = fingerprint(&key);
                self.add_key(key, fp, start)?;
                unnameable
            }
        };
        let written = EMIT && !hidden && !unnameable;
        if written {
            if let Some(wrote) = wrote_member {
                if *wrote {
                    out.push(b',');
                }
                *wrote = true;
            }
            copy_span(out, self.input, start, self.pos);
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
        self.colon()?;
        Ok(written)
    }

    /// Reads and records the name of a member of a top object that is only checked, which
    /// key-order prediction (see `predict`) did not foresee; a name no path can spell is noted
    /// in `altered` when `watch_names` asks.
    #[inline(never)]
    fn checked_key(&mut self, keys: &mut Cursor) -> Result<(), Fail> {
        debug_assert!(self.orders.hit(keys, self.input, self.pos).is_none());
        let start = self.pos;
        let key = self.read_key()?;
        let unnameable = key.iter().any(|&b| is_path_syntax(b));
        if unnameable && self.watch_names {
            self.altered = true;
        }
        let fp = fingerprint(&key);
        let learnable = KeyOrders::learning(keys) && !unnameable;
        let known = learnable
            .then(|| Known::of(start, &key, fp, Found::Unknown, false))
            .flatten();
        self.add_unforeseen_key(keys, (key, fp, start), known)
    }

    /// Opens the container at `pos` (copying its bracket unless `hidden`); when it is empty,
    /// closes it again and returns true.
    pub(super) fn enter<const EMIT: bool>(
        &mut self,
        object: bool,
        hidden: bool,
        out: &mut Vec<u8>,
        wrote: &mut Vec<bool>,
    ) -> Result<bool, Fail> {
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
    pub(super) fn leave<const EMIT: bool>(
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

    /// Reads the name of a member inside a skipped value (see [`Scanner::member_key`]); when
    /// copying, a member that is not written hides its value up to the depth it ends at.
    #[inline(always)]
    fn skipped_member<const EMIT: bool>(
        &mut self,
        out: &mut Vec<u8>,
        hidden_at: &mut Option<usize>,
        wrote: &mut [bool],
        keys: Option<&mut Cursor>,
    ) -> Result<(), Fail> {
        let hidden = hidden_at.is_some();
        if !self.member_key::<EMIT>(out, hidden, wrote.last_mut(), keys)? && EMIT && !hidden {
            *hidden_at = Some(self.frames.len());
        }
        Ok(())
    }

    /// Validates one whole value at `pos` (which is not whitespace), copying it compactly to
    /// `out` when `EMIT`. Iterative, so input nesting never deepens the Rust stack. When
    /// copying, a member whose name no path can spell is validated but not written.
    ///
    /// `top`: the key-order cursor for the members of the value when it is an object that is
    /// only checked (not copied), or of each object element when it is an array (see
    /// `KeyOrders::element`); objects deeper inside are read without prediction.
    pub(super) fn skip_value<const EMIT: bool>(
        &mut self,
        out: &mut Vec<u8>,
        top: Option<Cursor>,
    ) -> Result<(), Fail> {
        let base = self.frames.len();
        // The depth of the objects a cursor predicts, and the cursor of the one being read.
        let array_top = self.peek() == Some(b'[');
        let top_depth = base + 1 + usize::from(array_top);
        let mut cursor = if array_top { None } else { top };
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
                        let predicted = object && self.frames.len() == top_depth;
                        if let Some(home) = top.as_ref().filter(|_| predicted && array_top) {
                            let index = self.frames.get(base).map_or(0, |f| f.cur);
                            cursor = Some(self.orders.element(home, index));
                        }
                        if object {
                            let keys = cursor.as_mut().filter(|_| predicted);
                            self.skipped_member::<EMIT>(out, &mut hidden_at, &mut wrote, keys)?;
                        }
                        continue 'value;
                    }
                }
                _ => {
                    let (start, end) = self.scalar()?;
                    if EMIT && !hidden {
                        copy_span(out, self.input, start, end);
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
                            let keys = cursor.as_mut().filter(|_| self.frames.len() == top_depth);
                            self.skipped_member::<EMIT>(out, &mut hidden_at, &mut wrote, keys)?;
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
}
