/*!
Verified caller tokens, remembered so a caller that sends the same token on every request pays
for one signature check, not one per request.

The key is the token's exact bytes: the same bytes carry the same signature over the same
claims, so a hit proves what the first verification proved. What changes with time does not
come from the cache: every hit checks `exp` (and `nbf`) against the `now` handed in, so an
expired token is refused on a hit exactly as on a miss. Only successes are stored (a refusal is
always computed afresh). The cache belongs to one [`super::CallerVerifier`], which is rebuilt
on every policy load, so new keys, issuer or audience never meet an old entry.

Bounded: at [`TokenCache::capacity`] entries, expired entries are dropped first and then
arbitrary ones (the map's order is randomly seeded), so a flood of valid tokens costs memory
up to the bound and a signature check each, never more. Pure: no clock, no I/O.
*/
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{AuthError, Caller, LEEWAY_SECS};

/// Entries kept by default (a few hundred bytes each).
pub const DEFAULT_CAPACITY: usize = 4096;

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
        if now_unix >= self.exp.saturating_add(LEEWAY_SECS) {
            return Err(AuthError::Expired);
        }
        if self
            .nbf
            .is_some_and(|nbf| nbf > now_unix.saturating_add(LEEWAY_SECS))
        {
            return Err(AuthError::NotYetValid);
        }
        Ok(())
    }
}

/// A bounded map from token bytes to the caller they proved.
#[derive(Debug)]
pub struct TokenCache {
    entries: Mutex<HashMap<Box<str>, Entry>>,
    capacity: usize,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (0 turns caching off).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written: use the map.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The caller `token` proved, if it was verified before: `Some(Err)` when it has expired
    /// (or is not valid yet) at `now_unix`, `None` when it is not known.
    pub(super) fn get(&self, token: &str, now_unix: u64) -> Option<Result<Arc<Caller>, AuthError>> {
        let entries = self.lock();
        let entry = entries.get(token)?;
        Some(entry.check_time(now_unix).map(|()| entry.caller.clone()))
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
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(token) {
            entries.retain(|_, e| e.check_time(now_unix).is_ok());
            while entries.len() >= self.capacity {
                let Some(victim) = entries.keys().next().cloned() else {
                    break;
                };
                entries.remove(&victim);
            }
        }
        entries.insert(token.into(), Entry { caller, exp, nbf });
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests;
