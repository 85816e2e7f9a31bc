/*!
The durable opt-out store: an append-only journal plus snapshots in the `optouts.path`
directory, loaded whole into an in-memory [`OptOutSet`] that the request path asks.

# Why a journal and not an embedded database

The gateway never reads opt-outs from disk on the request path: the whole set lives in memory
(see `gateway_core::optout::set`) and the disk only has to (1) make each acknowledged change
durable and (2) give the set back quickly at start. That is exactly what a journal of changes
plus a periodic snapshot does, with no page cache of a B-tree to keep in step, no second copy
of 10 million ids in a database's own format, and a load that is one sequential read. An
embedded database (redb) would also be ACID, but loading the set would mean walking a B-tree
of 10 million keys and a bulk import would build it key by key.

# Files

- `snapshot`: the whole set at one generation ([`snapshot`] writes and reads it). Written to
  `snapshot.tmp`, fsynced, renamed over `snapshot`, and the directory fsynced: it is either
  the old or the new file, never half of one.
- `journal`: changes since that snapshot, one checksummed frame each ([`files::Writer`]
  appends them).
- `lock`: held with `flock` (exclusive) by the one process that may write; the kernel drops it
  when that process dies, even by `kill -9`.

The byte formats of both files are in `gateway_core::optout::codec`, as pure functions; how the
store comes back after a crash is in [`recovery`].

# Crash safety

- **Acknowledged means on disk.** [`OptOutStore::put`] and [`OptOutStore::delete`] append one
  frame and `fdatasync` the journal before they update memory and return; an admin API answer
  is sent only after that. A `kill -9` (or power loss) after the answer keeps the change.
- **A torn tail is ignored.** A crash during an append can leave a partial frame, or one with
  a sector of zeros, at the very end of the journal. That frame was never acknowledged. On
  open, the first frame that does not check out is treated as a torn tail *only if no valid
  frame follows it anywhere in the rest of the file* and it is not whole (a record written
  whole and changed afterwards may have been acknowledged: `journal::replay` refuses it as
  corruption); it is then cut off (logged) and appending resumes after the last good frame. A
  customer id cannot contain bytes below 0x20, so a frame header (whose length has a zero high
  byte) can never be forged inside an id.
- **Real corruption refuses to load.** A bad frame followed by valid frames, a frame whose
  checksum is right but whose content is not a valid change, a snapshot whose checksum or
  structure is wrong, a journal whose generation is newer than the snapshot, or a journal that
  is missing next to a snapshot: [`OptOutStore::open`] fails with an error naming the file and
  byte offset. The gateway then runs without opt-out data and answers 503 `not_ready` on the
  routes that need it (fail closed) instead of forwarding records of customers who opted out.
- **Compaction and import are atomic.** Both write a new snapshot (generation + 1) and commit
  it by rename, then start a new empty journal for that generation (also by rename). A crash
  between the two leaves a journal of an older generation, which is recognised as already
  folded into the snapshot and discarded.
- **After a failed fsync** the store stops accepting writes until it is reopened (Linux may
  have dropped the dirty pages; retrying could claim durability that is not there). Reads go on.

Other processes (`optouts export`, `optouts count`) may read a store that a running gateway is
writing, with [`OptOutStore::open_read_only`]: no lock, no repairs, torn tails skipped.
*/

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use anyhow::{anyhow, bail, Context, Result};
use gateway_core::optout::bulk::{self, Format};
use gateway_core::optout::codec::journal::{self, Op};
use gateway_core::optout::{validate_customer_id, OptOutSet, OptOutSource, Scope, ScopeId};

mod files;
mod recovery;
mod snapshot;

use files::Writer;
use recovery::GenerationRace;

/// The journal is folded into a new snapshot once it is larger than this and than the snapshot.
const COMPACT_MIN_JOURNAL: u64 = 64 << 20;

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    /// Customers named in the import.
    pub customers: usize,
    /// (customer, scope) opt-outs named in the import.
    pub opt_outs: u64,
    /// Customers in the store afterwards.
    pub total_customers: usize,
    /// Opt-outs in the store afterwards.
    pub total_opt_outs: u64,
}

/// The durable opt-out store with its in-memory set. Share it behind an `Arc`.
pub struct OptOutStore {
    dir: PathBuf,
    /// What the request path asks (see [`OptOutStore::in_memory`]).
    set: Arc<RwLock<OptOutSet>>,
    /// `None` when opened read-only.
    writer: Option<Mutex<Writer>>,
}

impl std::fmt::Debug for OptOutStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptOutStore")
            .field("dir", &self.dir)
            .field("read_only", &self.writer.is_none())
            .finish()
    }
}

impl OptOutStore {
    /// Opens (creating it if needed) the store in `dir` for reading and writing, and loads every
    /// opt-out into memory. Only one process may hold a store open this way.
    pub fn open(dir: &Path) -> Result<OptOutStore> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create opt-out store directory {}", dir.display()))?;
        let lock = files::lock_dir(dir)?;
        recovery::remove_leftovers(dir)?;
        let loaded = recovery::load(dir)?;
        let journal_len = recovery::repair(dir, &loaded)?;
        let writer = Writer::open(
            dir,
            lock,
            journal_len,
            loaded.generation,
            loaded.snapshot_len,
        )?;
        let store = OptOutStore {
            dir: dir.to_path_buf(),
            set: Arc::new(RwLock::new(loaded.set)),
            writer: Some(Mutex::new(writer)),
        };
        store.maybe_compact();
        Ok(store)
    }

    /// Loads the store in `dir` without locking or changing anything (for `export` and
    /// `count` next to a running gateway). Writes through it fail.
    pub fn open_read_only(dir: &Path) -> Result<OptOutStore> {
        if !dir.is_dir() {
            bail!("no opt-out store at {}", dir.display());
        }
        // A writer may fold the journal into a new snapshot between our two reads; try again then.
        let mut attempt = 0;
        let loaded = loop {
            attempt += 1;
            match recovery::load(dir) {
                Ok(loaded) => break loaded,
                Err(e) if attempt < 5 && e.downcast_ref::<GenerationRace>().is_some() => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        };
        Ok(OptOutStore {
            dir: dir.to_path_buf(),
            set: Arc::new(RwLock::new(loaded.set)),
            writer: None,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The in-memory set, for many lookups under one lock (e.g. `read()?.honouring(&scopes)`).
    /// Fails only if a writer panicked while changing it.
    pub fn read(&self) -> Result<RwLockReadGuard<'_, OptOutSet>> {
        self.set.read().map_err(|_| {
            anyhow!("the opt-out set is unusable after a failed change; restart the gateway")
        })
    }

    fn write_set(&self) -> Result<RwLockWriteGuard<'_, OptOutSet>> {
        self.set.write().map_err(|_| {
            anyhow!("the opt-out set is unusable after a failed change; restart the gateway")
        })
    }

    /// The in-memory set as the request path asks it: every change is visible to it as soon as
    /// [`OptOutStore::put`] or [`OptOutStore::delete`] returns.
    pub fn in_memory(&self) -> Arc<dyn OptOutSource> {
        self.set.clone()
    }

    fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| anyhow!("opt-out store {} was opened read-only", self.dir.display()))?;
        let mut guard = writer
            .lock()
            .map_err(|_| anyhow!("the opt-out store writer is unusable after a failed change"))?;
        guard.repair()?;
        Ok(guard)
    }

    /// True when `id` opted out of any of `honoured`. Fails closed: if the set is unusable,
    /// every customer counts as opted out.
    pub fn is_opted_out(&self, id: &str, honoured: &[Scope]) -> bool {
        self.set.is_opted_out(id, honoured)
    }

    /// The customer's scopes (sorted), or `None` when it has none.
    pub fn get(&self, id: &str) -> Result<Option<Vec<Scope>>> {
        Ok(self.read()?.get(id))
    }

    /// Customers with at least one opt-out.
    pub fn customer_count(&self) -> Result<usize> {
        Ok(self.read()?.len())
    }

    /// (customer, scope) opt-outs.
    pub fn opt_out_count(&self) -> Result<u64> {
        Ok(self.read()?.opt_out_count())
    }

    /// Customers per scope, for the `partner_gateway_optouts{scope}` gauge (includes zeros).
    pub fn count_by_scope(&self) -> Result<Vec<(Scope, u64)>> {
        Ok(self.read()?.count_by_scope())
    }

    /// Adds `scopes` to the customer's opt-outs. Returns every scope the customer now has,
    /// once the change is on disk; the very next lookup sees it.
    pub fn put(&self, id: &str, scopes: &[Scope]) -> Result<Vec<Scope>> {
        validate_customer_id(id)?;
        if scopes.is_empty() {
            bail!("no scopes to add");
        }
        let mut writer = self.writer()?;
        let current = self.read()?.get(id).unwrap_or_default();
        if scopes.iter().all(|s| current.contains(s)) {
            return Ok(current);
        }
        let payload = journal::encode_change(Op::Add, id, scopes)?;
        {
            // Intern first, so that nothing can refuse the change after it is on disk.
            let mut set = self.write_set()?;
            for scope in scopes {
                set.intern(scope)?;
            }
        }
        writer.append(&payload)?;
        let now = {
            let mut set = self.write_set()?;
            set.insert(id, scopes)?;
            set.get(id).unwrap_or_default()
        };
        drop(writer);
        self.maybe_compact();
        Ok(now)
    }

    /// Removes all (`None`) or some of the customer's opt-outs, once on disk. Returns `None`
    /// when the customer had none, else the scopes left (sorted, maybe empty).
    pub fn delete(&self, id: &str, scopes: Option<&[Scope]>) -> Result<Option<Vec<Scope>>> {
        let mut writer = self.writer()?;
        let Some(current) = self.read()?.get(id) else {
            return Ok(None);
        };
        let payload = match scopes {
            None => journal::encode_change(Op::RemoveAll, id, &[])?,
            Some(list) => {
                let gone: Vec<Scope> = current
                    .iter()
                    .filter(|s| list.contains(s))
                    .cloned()
                    .collect();
                if gone.is_empty() {
                    return Ok(Some(current));
                }
                journal::encode_change(Op::Remove, id, &gone)?
            }
        };
        writer.append(&payload)?;
        let left = self.write_set()?.remove(id, scopes).unwrap_or_default();
        drop(writer);
        self.maybe_compact();
        Ok(Some(left))
    }

    /// Adds every opt-out in `incoming`, all or nothing: it is committed as one new snapshot
    /// (atomic rename), then applied in memory.
    pub fn import(&self, incoming: &OptOutSet) -> Result<ImportSummary> {
        let mut writer = self.writer()?;
        self.rewrite(&mut writer, Some(incoming))?;
        let set = {
            let mut set = self.write_set()?;
            set.merge(incoming)?;
            set
        };
        Ok(ImportSummary {
            customers: incoming.len(),
            opt_outs: incoming.opt_out_count(),
            total_customers: set.len(),
            total_opt_outs: set.opt_out_count(),
        })
    }

    /// Folds the journal into a new snapshot (the store does it itself once the journal
    /// outgrows the snapshot; tests call it directly).
    #[cfg(test)]
    pub fn compact(&self) -> Result<()> {
        let mut writer = self.writer()?;
        self.rewrite(&mut writer, None)
    }

    fn maybe_compact(&self) {
        let Ok(mut writer) = self.writer() else {
            return;
        };
        if writer.journal_len < COMPACT_MIN_JOURNAL.max(writer.snapshot_len) {
            return;
        }
        if let Err(e) = self.rewrite(&mut writer, None) {
            log::warn!(
                "cannot compact the opt-out journal in {}: {e:#}",
                self.dir.display()
            );
        }
    }

    /// Writes snapshot generation + 1 holding the current set plus `extra`, commits it, and
    /// starts an empty journal for it. The caller applies `extra` in memory afterwards.
    fn rewrite(&self, writer: &mut Writer, extra: Option<&OptOutSet>) -> Result<()> {
        let generation = writer.generation + 1;
        let snapshot_len = snapshot::write(&writer.dir, generation, &*self.read()?, extra)?;
        // The snapshot is committed: from here the old journal is stale.
        writer.restart(generation, snapshot_len)
    }

    /// Writes every opt-out, sorted by customer id, in `format` to `out`. Returns the number
    /// of customers written.
    pub fn export(&self, format: Format, out: &mut dyn Write) -> Result<u64> {
        let set = self.read()?;
        // 32 bytes per customer while sorting (an export of 10 M ids holds ~320 MB briefly).
        let mut entries: Vec<(&str, &[ScopeId])> =
            set.iter().map(|(id, s)| (id, s.ids())).collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let names = set.interned_scopes();
        let mut scopes: Vec<&Scope> = Vec::new();
        let mut buf = bulk::export_header(format).to_vec();
        for (id, ids) in &entries {
            scopes.clear();
            scopes.extend(ids.iter().map(|s| &names[s.index()]));
            scopes.sort();
            bulk::export_record(format, id, scopes.iter().copied(), &mut buf);
            if buf.len() >= 1 << 16 {
                out.write_all(&buf).context("cannot write the export")?;
                buf.clear();
            }
        }
        out.write_all(&buf)
            .and_then(|()| out.flush())
            .context("cannot write the export")?;
        Ok(entries.len() as u64)
    }
}

#[cfg(test)]
mod tests;
