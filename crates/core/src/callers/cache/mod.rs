/*!
Verified caller tokens, remembered so a caller that sends the same token on every request pays
for one signature check, not one per request.

The key is the token's exact bytes: the same bytes carry the same signature over the same
claims, so a hit proves what the first verification proved. What changes with time does not
come from the cache: every hit checks `exp` (and `nbf`) against the `now` handed in, so an
expired token is refused on a hit exactly as on a miss. Only successes are stored (a refusal is
always computed afresh). The cache belongs to one [`super::CallerVerifier`], which is rebuilt
on every policy load, so new keys, issuer or audience never meet an old entry.

Bounded twice: at most [`TokenCache::capacity`] tokens and at most [`TokenCache::max_bytes`]
bytes of them (tokens and the callers they prove, [`Entry::bytes`]), whichever is reached
first. The least recently used entry makes room for a new one, after entries already expired,
which are also dropped when a hit finds them expired. So a flood of distinct valid tokens costs
a signature check each and memory up to the bound, never more, and the tokens callers keep
using stay cached through it. Pure: no clock, no I/O.
*/
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;

use super::{check_times, AuthError, Caller};

/// Tokens kept by default.
pub const DEFAULT_CAPACITY: usize = 4096;
/// Bytes of tokens and callers kept by default: room for the default capacity of tokens of
/// about 1 KiB; larger tokens make fewer entries.
pub const DEFAULT_MAX_BYTES: usize = 4 << 20;

/// What the first verification established, and the times later hits must still check.
#[derive(Debug, Clone)]
struct Entry {
    caller: Arc<Caller>,
    exp: u64,
    nbf: Option<u64>,
}

impl Entry {
    /// The same time rules as a full verification.
    fn check_time(&self, now_unix: u64) -> Result<(), AuthError> {
        check_times(self.exp, self.nbf, now_unix)
    }

    /// What an entry for `token` costs, counted against [`TokenCache::max_bytes`]: the
    /// token, the caller's names as allocated (each name's capacity, its `String` in the list,
    /// and an allocator's share per allocation), and a fixed share for the entry's bookkeeping.
    fn bytes(token: &str, caller: &Caller) -> usize {
        const OVERHEAD: usize = 160;
        const PER_ALLOCATION: usize = 32;
        let string = std::mem::size_of::<String>();
        let groups: usize = caller
            .groups
            .iter()
            .map(|g| g.capacity() + PER_ALLOCATION)
            .sum();
        OVERHEAD + token.len() + caller.sub.capacity() + groups + caller.groups.capacity() * string
    }
}

#[derive(Debug)]
struct Entries {
    /// Most recently used first.
    lru: LruCache<Box<str>, Entry>,
    /// [`Entry::bytes`] of every entry in `lru`.
    bytes: usize,
}

impl Entries {
    fn remove_lru(&mut self) -> bool {
        match self.lru.pop_lru() {
            Some((token, entry)) => {
                self.bytes -= Entry::bytes(&token, &entry.caller);
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, token: &str) {
        if let Some((token, entry)) = self.lru.pop_entry(token) {
            self.bytes -= Entry::bytes(&token, &entry.caller);
        }
    }
}

/// A bounded map from token bytes to the caller they proved.
#[derive(Debug)]
pub struct TokenCache {
    entries: Mutex<Entries>,
    capacity: usize,
    max_bytes: usize,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (0 turns caching off) and
    /// [`DEFAULT_MAX_BYTES`] bytes.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache::with_max_bytes(capacity, DEFAULT_MAX_BYTES)
    }

    /// A cache holding at most `capacity` tokens and `max_bytes` bytes of them.
    pub fn with_max_bytes(capacity: usize, max_bytes: usize) -> TokenCache {
        TokenCache {
            entries: Mutex::new(Entries {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            capacity,
            max_bytes,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    pub fn len(&self) -> usize {
        self.lock().lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`Entry::bytes`] of every entry held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave an entry half-written: use the map.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The caller `token` proved, if it was verified before: `Some(Err)` when it has expired
    /// (or is not valid yet) at `now_unix`, `None` when it is not known. An expired entry is
    /// dropped.
    pub(super) fn get(&self, token: &str, now_unix: u64) -> Option<Result<Arc<Caller>, AuthError>> {
        let mut entries = self.lock();
        let checked = {
            let entry = entries.lru.get(token)?;
            entry.check_time(now_unix).map(|()| entry.caller.clone())
        };
        if checked == Err(AuthError::Expired) {
            entries.remove(token);
        }
        Some(checked)
    }

    /// Remembers a verified token; its entry is checked against `exp`/`nbf` on every hit.
    pub(super) fn insert(
        &self,
        token: &str,
        caller: Arc<Caller>,
        exp: u64,
        nbf: Option<u64>,
        now_unix: u64,
    ) {
        let bytes = Entry::bytes(token, &caller);
        if self.capacity == 0 || bytes > self.max_bytes {
            return;
        }
        let mut entries = self.lock();
        entries.remove(token);
        // Expired entries at the cold end go first, whatever the room.
        while entries
            .lru
            .peek_lru()
            .is_some_and(|(_, e)| e.check_time(now_unix) == Err(AuthError::Expired))
        {
            entries.remove_lru();
        }
        while entries.lru.len() >= self.capacity || entries.bytes + bytes > self.max_bytes {
            if !entries.remove_lru() {
                break;
            }
        }
        entries.bytes += bytes;
        entries.lru.push(token.into(), Entry { caller, exp, nbf });
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests;
