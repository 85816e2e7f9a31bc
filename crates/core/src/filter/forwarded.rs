/*!
[`Forwarded`]: what a filter run passed to the partner, value by value, noted while the body is
written (only when asked: [`super::filter_forwarded`], for shadow decisions). Each entry is a
raw path and the value's form; a subtree passed whole (`.**`) is kept as the bytes the partner
receives. Noting only copies bytes: writing paths in drift syntax and reading subtrees into
leaves are left to the reader (`crate::shadow`, on the shadow thread).
*/
use super::Transform;

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
    /// Most bytes the note may hold (paths, subtrees and entry records): every value copies its
    /// whole path and has a record, so deep paths with long names or many tiny values could
    /// otherwise take many times the body's size.
    budget: usize,
    /// A value was not noted for want of room: the note is incomplete.
    overflowed: bool,
}

/// How many times its body's size (plus [`BUDGET_SLACK`]) a note may take.
pub const BUDGET_PER_BODY_BYTE: usize = 4;
pub const BUDGET_SLACK: usize = 64 * 1024;

/// A raw path's level: a member (then its quoted name's length and the name).
pub const MEMBER: u8 = b'.';
/// A raw path's level: an array element.
pub const ELEMENT: u8 = b'[';

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
    /// Also sets the note's budget ([`BUDGET_PER_BODY_BYTE`] × `len` + [`BUDGET_SLACK`]).
    pub fn for_body(len: usize) -> Forwarded {
        let room = len.min(BUDGET_SLACK);
        Forwarded {
            stack: Vec::with_capacity(256),
            paths: Vec::with_capacity(room),
            entries: Vec::with_capacity(room / 24),
            subtrees: Vec::new(),
            budget: len
                .saturating_mul(BUDGET_PER_BODY_BYTE)
                .saturating_add(BUDGET_SLACK),
            overflowed: false,
        }
    }

    /// False when some value could not be noted (see [`Forwarded::for_body`]): then the note
    /// cannot be compared.
    pub fn complete(&self) -> bool {
        !self.overflowed
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
        if self.overflowed {
            return;
        }
        self.subtrees.extend_from_slice(json);
        self.push(Kept::Subtree(self.subtrees.len()));
    }

    fn push(&mut self, kept: Kept) {
        if self.overflowed {
            return;
        }
        if self.held() > self.budget {
            self.overflow();
            return;
        }
        self.paths.extend_from_slice(&self.stack);
        self.entries.push(Entry {
            path_end: self.paths.len(),
            kept,
        });
    }

    /// Adds what `other` noted after what this note holds (the records of a stream, each
    /// noted from its own root). An incomplete `other`, or one that takes this note past its
    /// budget, makes this note incomplete.
    pub fn append(&mut self, other: &Forwarded) {
        if self.overflowed {
            return;
        }
        let more = other.paths.len()
            + other.subtrees.len()
            + other.entries.len() * std::mem::size_of::<Entry>();
        if !other.complete() || self.held().saturating_add(more) > self.budget {
            self.overflow();
            return;
        }
        let (paths, subtrees) = (self.paths.len(), self.subtrees.len());
        self.entries.extend(other.entries.iter().map(|e| Entry {
            path_end: e.path_end + paths,
            kept: match e.kept {
                Kept::Subtree(end) => Kept::Subtree(end + subtrees),
                kept => kept,
            },
        }));
        self.paths.extend_from_slice(&other.paths);
        self.subtrees.extend_from_slice(&other.subtrees);
    }

    /// Marks the note incomplete. An incomplete note is never read: it gives its memory back
    /// now rather than carry it to the shadow thread (it can be many times the body's size).
    fn overflow(&mut self) {
        self.overflowed = true;
        self.paths = Vec::new();
        self.entries = Vec::new();
        self.subtrees = Vec::new();
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

    /// What the note holds once one more value is noted: every path byte, every subtree byte
    /// and every entry record (the budget counts them all, so a body of many tiny values cannot
    /// make a note many times its size).
    fn held(&self) -> usize {
        self.paths.len()
            + self.stack.len()
            + self.subtrees.len()
            + (self.entries.len() + 1) * std::mem::size_of::<Entry>()
    }

    /// Heap bytes this note holds (what a queue that keeps it must count, besides the body).
    pub fn heap_bytes(&self) -> usize {
        self.stack.capacity()
            + self.paths.capacity()
            + self.subtrees.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Most bytes a reader should let paths read from this note take (subtrees expanded):
    /// more means a note built to be expensive to read.
    pub fn read_budget(&self) -> usize {
        (self.paths.len() + self.subtrees.len())
            .saturating_mul(BUDGET_PER_BODY_BYTE)
            .saturating_add(BUDGET_SLACK)
    }

    /// True when `other` noted the same values: same paths as received, same forms, same
    /// subtrees (then both decisions read alike).
    pub fn same_values(&self, other: &Forwarded) -> bool {
        self.complete()
            && other.complete()
            && self.entries == other.entries
            && self.paths == other.paths
            && self.subtrees == other.subtrees
    }

    /// Every entry in document order: its raw path (see [`Forwarded`]) and its form, or its
    /// subtree's JSON.
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

#[cfg(test)]
mod tests;
