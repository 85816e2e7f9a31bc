//! Building a whole set at once from distinct customers (loading a snapshot), faster than
//! inserting them one by one.

use hashbrown::HashTable;

use super::{
    folded_keys, sorted_distinct, validate_customer_id, OptOutError, OptOutSet, ScopeId, Slot,
};
use crate::optout::Scope;

/// Builds an [`OptOutSet`] from distinct customers (a snapshot) several times faster than
/// inserting them one by one: ids go to the arena in order, then the table slots are sorted
/// by the table region they land in and inserted region by region, so the table is written
/// almost sequentially instead of with a cache miss or two per customer.
#[derive(Debug)]
pub struct SetBuilder {
    set: OptOutSet,
    pending: Vec<(u64, Slot)>,
}

impl SetBuilder {
    /// A builder for about `customers` customers whose ids total `id_bytes`, with `scopes`
    /// interned in order (`ScopeId` `i` is `scopes[i]`).
    pub fn new(
        scopes: &[Scope],
        customers: usize,
        id_bytes: usize,
    ) -> Result<SetBuilder, OptOutError> {
        let mut set = OptOutSet::with_capacity(0, id_bytes);
        for (i, scope) in scopes.iter().enumerate() {
            if set.intern(scope)?.index() != i {
                return Err(OptOutError::DuplicateScope(scope.to_string()));
            }
        }
        Ok(SetBuilder {
            set,
            pending: Vec::with_capacity(customers),
        })
    }

    /// Adds a customer not added before (checked in [`SetBuilder::finish`]).
    pub fn push(&mut self, id: &str, scopes: &[ScopeId]) -> Result<(), OptOutError> {
        validate_customer_id(id)?;
        let set = &mut self.set;
        if let Some(bad) = scopes.iter().find(|s| s.index() >= set.scopes.len()) {
            return Err(OptOutError::UnknownScopeId(bad.index()));
        }
        let wanted = sorted_distinct(scopes);
        let wanted: &[ScopeId] = &wanted;
        if wanted.is_empty() {
            return Err(OptOutError::NoScopes);
        }
        let slot = set.add_new(id, wanted)?;
        self.pending.push((OptOutSet::hash(&set.hasher, id), slot));
        Ok(())
    }

    /// The finished set; fails if a customer was pushed twice.
    pub fn finish(self) -> Result<OptOutSet, OptOutError> {
        let SetBuilder {
            mut set,
            mut pending,
        } = self;
        set.table = HashTable::with_capacity(pending.len());
        // hashbrown probes from `hash & (buckets - 1)`; buckets = capacity * 8 / 7 once past 14.
        let buckets = (set.table.capacity() / 7 * 8).next_power_of_two().max(1) as u64;
        let bits = buckets.trailing_zeros();
        let shift = bits.saturating_sub(12);
        let region = |h: u64| ((h & (buckets - 1)) >> shift) as usize;
        sort_by_region(&mut pending, 1 << (bits - shift), region);
        let OptOutSet {
            table,
            arena,
            hasher,
            ..
        } = &mut set;
        for (hash, slot) in pending {
            let id = &arena[slot.range()];
            if table.find(hash, |s| &arena[s.range()] == id).is_some() {
                return Err(OptOutError::Duplicate);
            }
            table.insert_unique(hash, slot, |s| OptOutSet::hash(hasher, &arena[s.range()]));
        }
        // Distinct ids: each (key, id) pair is new, so no `fold_in` check is needed.
        for slot in set.table.iter() {
            let id = &set.arena[slot.range()];
            for key in folded_keys(id) {
                set.folded.entry(key).or_default().push(id.to_string());
            }
        }
        Ok(set)
    }
}

/// In-place one-pass radix sort of `items` into `regions` buckets (American flag sort).
fn sort_by_region(items: &mut [(u64, Slot)], regions: usize, region: impl Fn(u64) -> usize) {
    let mut start = vec![0usize; regions + 1];
    for (h, _) in items.iter() {
        start[region(*h) + 1] += 1;
    }
    for r in 0..regions {
        start[r + 1] += start[r];
    }
    let mut next = start.clone();
    for r in 0..regions {
        while next[r] < start[r + 1] {
            let target = region(items[next[r]].0);
            if target == r {
                next[r] += 1;
            } else {
                items.swap(next[r], next[target]);
                next[target] += 1;
            }
        }
    }
}
