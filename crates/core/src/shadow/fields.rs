/*!
[`Fields`]: the field paths one decision forwards and their forms, sorted by path, each path
once, read from a [`Forwarded`] note. Paths live in one string (no allocation per path), and two
decisions are compared by walking both in order ([`Fields::merge`]).
*/
use std::cmp::Ordering;
use std::ops::Range;

use super::forwarded::{self, Forwarded, Rendered};
use super::Form;

/// Field paths (drift syntax) and forms, sorted by path, each path once.
#[derive(Clone, Default)]
pub struct Fields {
    text: String,
    fields: Vec<(Range<usize>, Form)>,
}

impl Fields {
    /// Every path `forwarded` noted, the leaves of its subtrees included. A path forwarded
    /// both in clear and transformed (paths collapse: `[*]`, `*`) is transformed, by the last
    /// transform in document order.
    /// `None` when the note is incomplete or its raw paths (subtrees' leaves included) add up
    /// to more than its read budget.
    pub fn of(forwarded: &Forwarded) -> Option<Fields> {
        if !forwarded.complete() {
            return None;
        }
        let budget = forwarded.read_budget();
        let mut out = Fields::default();
        let mut rendered = Rendered::default();
        let mut raw = Vec::new();
        let mut walked = 0usize;
        forwarded.each(&mut |at, value| match value {
            Ok(transform) => {
                let form = transform.map_or(Form::Clear, Form::Transformed);
                out.push(rendered.render(at), form);
            }
            Err(json) => {
                raw.clear();
                raw.extend_from_slice(at);
                forwarded::subtree_leaves(json, &mut raw, &mut |leaf| {
                    walked = walked.saturating_add(leaf.len());
                    if walked <= budget {
                        out.push(rendered.render(leaf), Form::Clear)
                    }
                });
            }
        });
        if walked > budget {
            return None;
        }
        out.sort();
        Some(out)
    }

    fn push(&mut self, path: &str, form: Form) {
        // Siblings of one record often repeat the previous path: share its text.
        if let Some((last, _)) = self.fields.last() {
            if &self.text[last.clone()] == path {
                let range = last.clone();
                self.fields.push((range, form));
                return;
            }
        }
        let start = self.text.len();
        self.text.push_str(path);
        self.fields.push((start..self.text.len(), form));
    }

    /// Sorts by path (stable: document order within a path) and keeps each path once.
    fn sort(&mut self) {
        let text = &self.text;
        self.fields
            .sort_by(|(a, _), (b, _)| text[a.clone()].cmp(&text[b.clone()]));
        let mut kept: Vec<(Range<usize>, Form)> = Vec::with_capacity(self.fields.len());
        for (range, form) in self.fields.drain(..) {
            match kept.last_mut() {
                Some((last, kept_form)) if text[last.clone()] == text[range.clone()] => {
                    if let Form::Transformed(_) = form {
                        *kept_form = form;
                    }
                }
                _ => kept.push((range, form)),
            }
        }
        self.fields = kept;
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Paths and forms, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Form)> + '_ {
        self.fields
            .iter()
            .map(|(range, form)| (&self.text[range.clone()], *form))
    }

    /// The form of `path`, if it is forwarded.
    pub fn get(&self, path: &str) -> Option<Form> {
        self.fields
            .binary_search_by(|(range, _)| self.text[range.clone()].cmp(path))
            .ok()
            .map(|i| self.fields[i].1)
    }

    /// Every path of either side in order, with its form on each side.
    pub fn merge<'a>(
        &'a self,
        other: &'a Fields,
        f: &mut dyn FnMut(&'a str, Option<Form>, Option<Form>),
    ) {
        let (mut a, mut b) = (self.iter().peekable(), other.iter().peekable());
        loop {
            let (x, y) = (a.peek().copied(), b.peek().copied());
            let order = match (x, y) {
                (None, None) => return,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((x, _)), Some((y, _))) => x.cmp(y),
            };
            match (order, x, y) {
                (Ordering::Less, Some((path, form)), _) => {
                    a.next();
                    f(path, Some(form), None);
                }
                (Ordering::Greater, _, Some((path, form))) => {
                    b.next();
                    f(path, None, Some(form));
                }
                (_, Some((path, x)), Some((_, y))) => {
                    a.next();
                    b.next();
                    f(path, Some(x), Some(y));
                }
                _ => return,
            }
        }
    }
}

impl FromIterator<(String, Form)> for Fields {
    /// Fields from paths and forms in any order (a later form of a path replaces an earlier
    /// clear one, as in [`Fields::of`]).
    fn from_iter<I: IntoIterator<Item = (String, Form)>>(iter: I) -> Fields {
        let mut out = Fields::default();
        for (path, form) in iter {
            out.push(&path, form);
        }
        out.sort();
        out
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Fields {}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}
