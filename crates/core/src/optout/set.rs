/*!
The in-memory opt-out set: customer id → the scopes that customer opted out of.

The request path asks it once per record, so a lookup is one hash probe and a bit test, with
no allocation. Memory per id is kept small because the set holds every opted-out customer
(tens of millions):

- every id's bytes live in one string arena (no per-id heap allocation);
- the hash table holds a 12-byte [`Slot`] per id: arena offset, length, and a *combination*
  id — customers share a handful of distinct scope combinations, so each combination is
  interned once (its sorted [`ScopeId`]s plus a 64-bit mask of the first 64 scopes);
- scopes are interned to [`ScopeId`]s (`u16`) in order of first use.

Per-scope counts (the `partner_gateway_optouts{scope}` gauge) are kept up to date on every
change, never computed by scanning.

Ids are stored as written. An incoming id is looked up as it is, in its lowercase and
uppercase forms and (beyond ASCII) the case folds of it and of its uppercase
(`crate::optout::id::is_opted_out`). A stored id is also indexed under the forms that reach it
from another casing, where they differ from it (`folded`, see [`folded_keys`]): `Mixed-Case`
under `mixed-case`, `straße` under `strasse`, `ılık` under `ilik`. An ASCII id in one case
(`c-200`, `CUST-7`, `12345`) is never in that index, so such a set pays nothing for it; beyond
ASCII an id is indexed whenever its case fold differs from it.
*/

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use super::OptOutLookup;
use super::Scope;

mod builder;

pub use builder::SetBuilder;

/// The longest customer id accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// At most this many distinct scopes can be interned (ids are `u16`).
const MAX_SCOPES: usize = u16::MAX as usize;

/// The largest arena offset a [`Slot`] can hold (48 bits).
const MAX_ARENA: usize = 1 << 48;

/// An id that cannot be a customer id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCustomerId {
    #[error("customer id is empty")]
    Empty,
    #[error("customer id is longer than {MAX_ID_LEN} bytes")]
    TooLong,
    // Errors name no customer id: they can reach log lines, and a customer id never may.
    #[error("customer id contains a control character")]
    ControlCharacter,
}

/// Why the set refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptOutError {
    #[error(transparent)]
    InvalidId(#[from] InvalidCustomerId),
    #[error("too many distinct opt-out scopes (at most {MAX_SCOPES})")]
    TooManyScopes,
    #[error("opt-out set is full")]
    Full,
    #[error("unknown scope id {0}")]
    UnknownScopeId(usize),
    #[error("a customer is listed twice")]
    Duplicate,
    #[error("opt-out scope {0} is listed twice")]
    DuplicateScope(String),
    #[error("a customer has no scopes")]
    NoScopes,
}

/// The keys a stored id is also indexed under: the forms that a lookup of another casing of
/// it probes and that differ from the id. ASCII: its lowercase, when it mixes cases (an id in
/// one case is reached by the lowercase or uppercase probe of any casing). Other text: its
/// case fold (`straße` → `strasse`, `Σας` → `σασ`), and the case fold of its uppercase
/// (`ılık` → `ILIK` → `ilik`), each when it differs from the id.
pub(super) fn folded_keys(id: &str) -> Vec<String> {
    if id.is_ascii() {
        let upper = id.bytes().any(|b| b.is_ascii_uppercase());
        let lower = id.bytes().any(|b| b.is_ascii_lowercase());
        return if upper && lower {
            vec![id.to_ascii_lowercase()]
        } else {
            Vec::new()
        };
    }
    let mut keys = Vec::new();
    for key in super::id::case_folds(id) {
        if key != id && !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// Checks that `id` can be a customer id: non-empty, at most [`MAX_ID_LEN`] bytes, no control
/// characters. Ids are otherwise opaque and compared exactly (`123` from a JSON integer and
/// `"123"` from a JSON string are the same text).
pub fn validate_customer_id(id: &str) -> Result<(), InvalidCustomerId> {
    if id.is_empty() {
        return Err(InvalidCustomerId::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(InvalidCustomerId::TooLong);
    }
    let control = if id.is_ascii() {
        id.bytes().any(|b| b.is_ascii_control())
    } else {
        id.chars().any(char::is_control)
    };
    if control {
        return Err(InvalidCustomerId::ControlCharacter);
    }
    Ok(())
}

/// A scope interned in one [`OptOutSet`] (meaningless in another set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeId(u16);

impl ScopeId {
    /// Position in [`OptOutSet::interned_scopes`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The id at position `i` (of a [`SetBuilder`]'s scope list); `None` past `u16`.
    pub fn from_index(i: usize) -> Option<ScopeId> {
        u16::try_from(i).ok().map(ScopeId)
    }
}

/// One id in the table: where its bytes are in the arena and which combination it holds.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    off_lo: u32,
    combo: u32,
    len: u16,
    off_hi: u16,
}

impl Slot {
    fn range(&self) -> std::ops::Range<usize> {
        let off = (usize::from(self.off_hi) << 32) | self.off_lo as usize;
        off..off + usize::from(self.len)
    }
}

/// An interned, non-empty set of scopes held by at least one customer (or free when `refs == 0`).
#[derive(Debug, Clone, Default)]
struct Combo {
    /// Sorted, deduplicated.
    scopes: Box<[ScopeId]>,
    /// Bit `i` set when scope id `i < 64` is in `scopes`.
    low: u64,
    /// Some scope id is `>= 64`.
    high: bool,
    refs: u64,
}

impl Combo {
    fn new(scopes: Box<[ScopeId]>) -> Combo {
        let low = scopes
            .iter()
            .filter(|s| s.0 < 64)
            .fold(0u64, |m, s| m | (1u64 << s.0));
        let high = scopes.iter().any(|s| s.0 >= 64);
        Combo {
            scopes,
            low,
            high,
            refs: 0,
        }
    }
}

/// The in-memory opt-out set. See the module docs for its layout.
#[derive(Clone)]
pub struct OptOutSet {
    hasher: DefaultHashBuilder,
    table: HashTable<Slot>,
    arena: String,
    /// Arena bytes no slot points to any more (removed ids); compacted when they dominate.
    dead: usize,
    scopes: Vec<Scope>,
    scope_ids: HashMap<String, ScopeId>,
    scope_counts: Vec<u64>,
    combos: Vec<Combo>,
    combo_ids: HashMap<Box<[ScopeId]>, u32>,
    free_combos: Vec<u32>,
    pairs: u64,
    /// The extra keys of stored ids ([`folded_keys`]) → those ids.
    folded: HashMap<String, Vec<String>>,
}

impl std::fmt::Debug for OptOutSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptOutSet")
            .field("customers", &self.len())
            .field("opt_outs", &self.pairs)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl Default for OptOutSet {
    fn default() -> Self {
        Self::new()
    }
}

/// Same customers with the same scopes (interning order does not matter).
impl PartialEq for OptOutSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.pairs == other.pairs
            && self.iter().all(|(id, scopes)| {
                other.get(id).is_some_and(|theirs| {
                    let mut ours: Vec<Scope> = scopes.cloned().collect();
                    ours.sort();
                    ours == theirs
                })
            })
    }
}

impl Eq for OptOutSet {}

impl OptOutSet {
    pub fn new() -> OptOutSet {
        OptOutSet::with_capacity(0, 0)
    }

    /// Pre-sizes for `ids` customers whose ids total `id_bytes` bytes (loading a snapshot).
    pub fn with_capacity(ids: usize, id_bytes: usize) -> OptOutSet {
        OptOutSet {
            hasher: DefaultHashBuilder::default(),
            table: HashTable::with_capacity(ids),
            arena: String::with_capacity(id_bytes),
            dead: 0,
            scopes: Vec::new(),
            scope_ids: HashMap::new(),
            scope_counts: Vec::new(),
            combos: Vec::new(),
            combo_ids: HashMap::new(),
            free_combos: Vec::new(),
            pairs: 0,
            folded: HashMap::new(),
        }
    }

    /// Number of customers with at least one opt-out.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Number of (customer, scope) opt-outs.
    pub fn opt_out_count(&self) -> u64 {
        self.pairs
    }

    /// Total bytes of the ids held (what an arena for a copy of this set needs).
    pub fn id_bytes(&self) -> usize {
        self.arena.len() - self.dead
    }

    /// Heap bytes held (table, arena, interning tables), for memory reports.
    pub fn heap_bytes(&self) -> usize {
        self.table.allocation_size()
            + self.arena.capacity()
            + self.scope_ids.allocation_size()
            + self.combo_ids.allocation_size()
            + self.combos.capacity() * std::mem::size_of::<Combo>()
            + self
                .combos
                .iter()
                .map(|c| c.scopes.len() * 2)
                .sum::<usize>()
            + self.folded.allocation_size()
            + self
                .folded
                .iter()
                .map(|(k, v)| k.capacity() + v.iter().map(String::capacity).sum::<usize>())
                .sum::<usize>()
    }

    /// Every scope ever interned in this set, indexed by [`ScopeId::index`].
    pub fn interned_scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// The id of `scope` in this set, interning it if new. Interning alone changes no
    /// customer; the scope then shows up in [`OptOutSet::count_by_scope`] with 0.
    pub fn intern(&mut self, scope: &Scope) -> Result<ScopeId, OptOutError> {
        if let Some(&id) = self.scope_ids.get(scope.as_str()) {
            return Ok(id);
        }
        let n = self.scopes.len();
        let id = ScopeId(u16::try_from(n).map_err(|_| OptOutError::TooManyScopes)?);
        if n >= MAX_SCOPES {
            return Err(OptOutError::TooManyScopes);
        }
        self.scopes.push(scope.clone());
        self.scope_counts.push(0);
        self.scope_ids.insert(scope.as_str().to_string(), id);
        Ok(id)
    }

    /// The id of `scope` if it was ever interned.
    pub fn scope_id(&self, scope: &Scope) -> Option<ScopeId> {
        self.scope_ids.get(scope.as_str()).copied()
    }

    fn hash(hasher: &DefaultHashBuilder, id: &str) -> u64 {
        hasher.hash_one(id)
    }

    fn slot(&self, id: &str) -> Option<&Slot> {
        if self.table.is_empty() {
            return None;
        }
        let hash = Self::hash(&self.hasher, id);
        self.table.find(hash, |s| &self.arena[s.range()] == id)
    }

    /// The slots a lookup of `id` answers from: the id's own, and those of the stored ids
    /// indexed under `id` (see [`folded_keys`]).
    fn slots_for<'s>(&'s self, id: &'s str) -> impl Iterator<Item = &'s Slot> + 's {
        let spellings = self.folded.get(id).map_or(&[][..], Vec::as_slice);
        self.slot(id)
            .into_iter()
            .chain(spellings.iter().filter_map(|other| self.slot(other)))
    }

    /// Indexes a newly stored id under its [`folded_keys`].
    fn fold_in(&mut self, id: &str) {
        for key in folded_keys(id) {
            let spellings = self.folded.entry(key).or_default();
            if !spellings.iter().any(|s| s == id) {
                spellings.push(id.to_string());
            }
        }
    }

    /// Takes a removed id out of the index.
    fn fold_out(&mut self, id: &str) {
        for key in folded_keys(id) {
            if let Some(spellings) = self.folded.get_mut(&key) {
                spellings.retain(|s| s != id);
                if spellings.is_empty() {
                    self.folded.remove(&key);
                }
            }
        }
    }

    /// True when the customer has opted out of any scope at all.
    pub fn contains(&self, id: &str) -> bool {
        self.slot(id).is_some()
    }

    /// The customer's scopes, sorted by name; `None` when it has none.
    pub fn get(&self, id: &str) -> Option<Vec<Scope>> {
        let slot = self.slot(id)?;
        let mut scopes: Vec<Scope> = self.combos[slot.combo as usize]
            .scopes
            .iter()
            .map(|s| self.scopes[s.index()].clone())
            .collect();
        scopes.sort();
        Some(scopes)
    }

    /// The customer's interned scope ids (sorted by id), without allocating.
    pub fn get_ids(&self, id: &str) -> Option<&[ScopeId]> {
        self.slot(id)
            .map(|s| &*self.combos[s.combo as usize].scopes)
    }

    /// True when `id` opted out of any of `honoured`. No allocation; for many lookups against
    /// the same scopes, [`OptOutSet::honouring`] resolves the scopes once.
    pub fn is_opted_out(&self, id: &str, honoured: &[Scope]) -> bool {
        if honoured.is_empty() {
            return false;
        }
        self.slots_for(id).any(|slot| {
            let combo = &self.combos[slot.combo as usize];
            honoured
                .iter()
                .filter_map(|s| self.scope_ids.get(s.as_str()))
                .any(|sid| combo.scopes.binary_search(sid).is_ok())
        })
    }

    /// A lookup for one route: `honoured` resolved to a bit mask once, then one hash probe
    /// and one AND per record. Implements the filter's [`OptOutLookup`].
    pub fn honouring(&self, honoured: &[Scope]) -> Honouring<'_> {
        let mut low = 0u64;
        let mut high = Vec::new();
        for sid in honoured
            .iter()
            .filter_map(|s| self.scope_ids.get(s.as_str()))
        {
            if sid.0 < 64 {
                low |= 1u64 << sid.0;
            } else if !high.contains(sid) {
                high.push(*sid);
            }
        }
        Honouring {
            set: self,
            low,
            high,
        }
    }

    fn intern_combo(&mut self, scopes: &[ScopeId]) -> Result<u32, OptOutError> {
        if let Some(&c) = self.combo_ids.get(scopes) {
            return Ok(c);
        }
        let combo = Combo::new(scopes.into());
        let id = match self.free_combos.pop() {
            Some(id) => {
                self.combos[id as usize] = combo;
                id
            }
            None => {
                let id = u32::try_from(self.combos.len()).map_err(|_| OptOutError::Full)?;
                self.combos.push(combo);
                id
            }
        };
        self.combo_ids.insert(scopes.into(), id);
        Ok(id)
    }

    fn release_combo(&mut self, c: u32) {
        let combo = &mut self.combos[c as usize];
        combo.refs -= 1;
        if combo.refs == 0 {
            let scopes = std::mem::take(&mut combo.scopes);
            self.combo_ids.remove(&scopes);
            self.free_combos.push(c);
        }
    }

    /// Adds `scopes` to the customer's opt-outs. Returns true when something was added.
    pub fn insert(&mut self, id: &str, scopes: &[Scope]) -> Result<bool, OptOutError> {
        validate_customer_id(id)?;
        let mut ids = Vec::with_capacity(scopes.len());
        for scope in scopes {
            ids.push(self.intern(scope)?);
        }
        self.insert_ids(id, &ids)
    }

    /// [`OptOutSet::insert`] with scopes already interned in this set (fast path for loading).
    pub fn insert_ids(&mut self, id: &str, scopes: &[ScopeId]) -> Result<bool, OptOutError> {
        validate_customer_id(id)?;
        if let Some(bad) = scopes.iter().find(|s| s.index() >= self.scopes.len()) {
            return Err(OptOutError::UnknownScopeId(bad.index()));
        }
        if scopes.is_empty() {
            return Ok(false);
        }
        let wanted = sorted_distinct(scopes);
        let wanted: &[ScopeId] = &wanted;

        let hash = Self::hash(&self.hasher, id);
        let existing = {
            let arena = &self.arena;
            self.table.find(hash, |s| &arena[s.range()] == id).copied()
        };
        match existing {
            Some(slot) => {
                let old = &self.combos[slot.combo as usize].scopes;
                let added: Vec<ScopeId> = wanted
                    .iter()
                    .filter(|s| old.binary_search(s).is_err())
                    .copied()
                    .collect();
                if added.is_empty() {
                    return Ok(false);
                }
                let mut union: Vec<ScopeId> = old.iter().chain(&added).copied().collect();
                union.sort_unstable();
                let new_combo = self.intern_combo(&union)?;
                self.combos[new_combo as usize].refs += 1;
                self.release_combo(slot.combo);
                let arena = &self.arena;
                if let Some(s) = self.table.find_mut(hash, |s| &arena[s.range()] == id) {
                    s.combo = new_combo;
                }
                for s in &added {
                    self.scope_counts[s.index()] += 1;
                }
                self.pairs += added.len() as u64;
            }
            None => {
                let slot = self.add_new(id, wanted)?;
                let (arena, hasher) = (&self.arena, &self.hasher);
                self.table
                    .insert_unique(hash, slot, |s| Self::hash(hasher, &arena[s.range()]));
                self.fold_in(id);
            }
        }
        Ok(true)
    }

    /// Counts a customer not in the set yet with the sorted, distinct `wanted` scopes and
    /// appends its id to the arena; the caller puts the returned slot into the table.
    fn add_new(&mut self, id: &str, wanted: &[ScopeId]) -> Result<Slot, OptOutError> {
        let off = self.arena.len();
        if off + id.len() > MAX_ARENA {
            return Err(OptOutError::Full);
        }
        let combo = self.intern_combo(wanted)?;
        self.combos[combo as usize].refs += 1;
        for s in wanted {
            self.scope_counts[s.index()] += 1;
        }
        self.pairs += wanted.len() as u64;
        self.arena.push_str(id);
        Ok(Slot {
            off_lo: (off & 0xffff_ffff) as u32,
            off_hi: (off >> 32) as u16,
            // validate_customer_id bounds the length by MAX_ID_LEN
            len: id.len() as u16,
            combo,
        })
    }

    /// Removes some (`Some(scopes)`) or all (`None`) of the customer's opt-outs.
    /// Returns `None` when the customer had none, else the scopes left (sorted, maybe empty).
    pub fn remove(&mut self, id: &str, scopes: Option<&[Scope]>) -> Option<Vec<Scope>> {
        let ids: Option<Vec<ScopeId>> =
            scopes.map(|list| list.iter().filter_map(|s| self.scope_id(s)).collect());
        self.remove_ids(id, ids.as_deref())
    }

    /// [`OptOutSet::remove`] with interned scope ids.
    pub fn remove_ids(&mut self, id: &str, scopes: Option<&[ScopeId]>) -> Option<Vec<Scope>> {
        let hash = Self::hash(&self.hasher, id);
        let slot = {
            let arena = &self.arena;
            *self.table.find(hash, |s| &arena[s.range()] == id)?
        };
        let old = &self.combos[slot.combo as usize].scopes;
        let (keep, gone): (Vec<ScopeId>, Vec<ScopeId>) = match scopes {
            None => (Vec::new(), old.to_vec()),
            Some(list) => old.iter().partition(|s| !list.contains(s)),
        };
        if !gone.is_empty() {
            for s in &gone {
                self.scope_counts[s.index()] -= 1;
            }
            self.pairs -= gone.len() as u64;
            if keep.is_empty() {
                let arena = &self.arena;
                if let Ok(entry) = self.table.find_entry(hash, |s| &arena[s.range()] == id) {
                    entry.remove();
                }
                self.dead += usize::from(slot.len);
                self.release_combo(slot.combo);
                self.fold_out(id);
                self.maybe_compact_arena();
            } else if let Ok(new_combo) = self.intern_combo(&keep) {
                self.combos[new_combo as usize].refs += 1;
                self.release_combo(slot.combo);
                let arena = &self.arena;
                if let Some(s) = self.table.find_mut(hash, |s| &arena[s.range()] == id) {
                    s.combo = new_combo;
                }
            }
        }
        let mut left: Vec<Scope> = keep
            .iter()
            .map(|s| self.scopes[s.index()].clone())
            .collect();
        left.sort();
        Some(left)
    }

    /// Rewrites the arena without the bytes of removed ids once they are most of it.
    fn maybe_compact_arena(&mut self) {
        if self.dead < (1 << 20) || self.dead * 2 < self.arena.len() {
            return;
        }
        let mut arena = String::with_capacity(self.arena.len() - self.dead);
        for slot in self.table.iter_mut() {
            let off = arena.len();
            arena.push_str(&self.arena[slot.range()]);
            slot.off_lo = (off & 0xffff_ffff) as u32;
            slot.off_hi = (off >> 32) as u16;
        }
        self.arena = arena;
        self.dead = 0;
    }

    /// Adds every opt-out of `other` to this set.
    pub fn merge(&mut self, other: &OptOutSet) -> Result<(), OptOutError> {
        let map: Vec<ScopeId> = other
            .scopes
            .iter()
            .map(|s| self.intern(s))
            .collect::<Result<_, _>>()?;
        let (arena, hasher) = (&self.arena, &self.hasher);
        self.table
            .reserve(other.len(), |s| Self::hash(hasher, &arena[s.range()]));
        self.arena.reserve(other.arena.len() - other.dead);
        let mut ids = Vec::new();
        for (id, scopes) in other.iter() {
            ids.clear();
            ids.extend(scopes.ids().iter().map(|s| map[s.index()]));
            self.insert_ids(id, &ids)?;
        }
        Ok(())
    }

    /// Customers per scope, sorted by scope, including scopes that dropped to 0.
    pub fn count_by_scope(&self) -> Vec<(Scope, u64)> {
        let mut counts: Vec<(Scope, u64)> = self
            .scopes
            .iter()
            .cloned()
            .zip(self.scope_counts.iter().copied())
            .collect();
        counts.sort();
        counts
    }

    /// Every customer and its scopes, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Scopes<'_>)> + '_ {
        self.table.iter().map(move |slot| {
            let combo = &self.combos[slot.combo as usize];
            (
                &self.arena[slot.range()],
                Scopes {
                    ids: &combo.scopes,
                    names: &self.scopes,
                },
            )
        })
    }
}

/// One customer's scopes, borrowed from an [`OptOutSet`]; iterates in interning order.
#[derive(Debug, Clone, Copy)]
pub struct Scopes<'a> {
    ids: &'a [ScopeId],
    names: &'a [Scope],
}

impl<'a> Scopes<'a> {
    /// The interned ids, sorted by id.
    pub fn ids(&self) -> &'a [ScopeId] {
        self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Iterates the scopes.
    pub fn iter(&self) -> impl Iterator<Item = &'a Scope> + 'a {
        let names = self.names;
        self.ids.iter().map(move |s| &names[s.index()])
    }

    /// The scopes sorted by name.
    pub fn sorted(&self) -> Vec<&'a Scope> {
        let mut v: Vec<&Scope> = self.iter().collect();
        v.sort();
        v
    }
}

impl<'a> Iterator for Scopes<'a> {
    type Item = &'a Scope;

    fn next(&mut self) -> Option<&'a Scope> {
        let (first, rest) = self.ids.split_first()?;
        self.ids = rest;
        Some(&self.names[first.index()])
    }
}

/// An [`OptOutSet`] asked on behalf of one route's honoured scopes; see [`OptOutSet::honouring`].
#[derive(Debug, Clone)]
pub struct Honouring<'a> {
    set: &'a OptOutSet,
    low: u64,
    /// Honoured scope ids `>= 64` (rare; empty `Vec`s do not allocate).
    high: Vec<ScopeId>,
}

impl Honouring<'_> {
    /// True when `id` opted out of any honoured scope.
    pub fn is_opted_out(&self, id: &str) -> bool {
        if self.low == 0 && self.high.is_empty() {
            return false;
        }
        self.set.slots_for(id).any(|slot| {
            let combo = &self.set.combos[slot.combo as usize];
            combo.low & self.low != 0
                || (combo.high
                    && self
                        .high
                        .iter()
                        .any(|h| combo.scopes.binary_search(h).is_ok()))
        })
    }
}

impl super::OptOutSource for OptOutSet {
    fn is_opted_out(&self, customer_id: &str, scopes: &[Scope]) -> bool {
        OptOutSet::is_opted_out(self, customer_id, scopes)
    }

    fn with_lookup(&self, scopes: &[Scope], f: &mut dyn FnMut(&dyn OptOutLookup)) {
        f(&self.honouring(scopes))
    }
}

/// A set shared between request threads and its writer. Fails closed: if the lock is poisoned
/// (a writer panicked mid-change), every customer counts as opted out. Both durable stores
/// (file journal and PostgreSQL) answer through this.
impl super::OptOutSource for std::sync::RwLock<OptOutSet> {
    fn is_opted_out(&self, customer_id: &str, scopes: &[Scope]) -> bool {
        match self.read() {
            Ok(set) => set.is_opted_out(customer_id, scopes),
            Err(_) => true,
        }
    }

    /// One read lock for the whole request.
    fn with_lookup(&self, scopes: &[Scope], f: &mut dyn FnMut(&dyn OptOutLookup)) {
        struct Everyone;
        impl OptOutLookup for Everyone {
            fn is_opted_out(&self, _subject: &str) -> bool {
                true
            }
        }
        match self.read() {
            Ok(set) => f(&set.honouring(scopes)),
            Err(_) => f(&Everyone),
        }
    }
}

impl OptOutLookup for Honouring<'_> {
    fn is_opted_out(&self, subject: &str) -> bool {
        Honouring::is_opted_out(self, subject)
    }
}

/// The scope ids sorted and distinct; borrowed when they already are (loading a snapshot passes
/// them so), so the common path allocates nothing.
fn sorted_distinct(scopes: &[ScopeId]) -> std::borrow::Cow<'_, [ScopeId]> {
    if scopes.windows(2).all(|w| w[0] < w[1]) {
        std::borrow::Cow::Borrowed(scopes)
    } else {
        let mut v = scopes.to_vec();
        v.sort_unstable();
        v.dedup();
        std::borrow::Cow::Owned(v)
    }
}

#[cfg(test)]
mod tests;
