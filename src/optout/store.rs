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

- `snapshot`: the whole set at one generation. Magic `PGOPTSNP`, format version, generation,
  the scope table, the customer count, then `id_len u16 | id | n u16 | n scope indices u16` per
  customer, then a CRC-32 of everything before it and the end magic `PGOPTEND`. Written to
  `snapshot.tmp`, fsynced, renamed over `snapshot`, and the directory fsynced: it is either
  the old or the new file, never half of one.
- `journal`: changes since that snapshot. A 24-byte header (magic `PGOPTJNL`, format
  version, the generation of the snapshot it follows, CRC-32 of the header), then frames:
  `len u32 | len ^ 0x50474f4a u32 | crc32(payload) u32 | payload`, payload `op u8 | id_len u16 |
  id | n u16 | n × (scope_len u8 | scope)`, op 1 = add, 2 = remove these, 3 = remove all.
  Replaying an op twice gives the same state, so replay is safe even if it overlapped.
- `lock`: held with `flock` (exclusive) by the one process that may write; the kernel drops it
  when that process dies, even by `kill -9`.

# Crash safety

- **Acknowledged means on disk.** [`OptOutStore::put`] and [`OptOutStore::delete`] append one
  frame and `fdatasync` the journal before they update memory and return; an admin API answer
  is sent only after that. A `kill -9` (or power loss) after the answer keeps the change.
- **A torn tail is ignored.** A crash during an append can leave a partial or garbled frame at
  the very end of the journal. That frame was never acknowledged. On open, the first frame that
  does not check out is treated as a torn tail *only if no valid frame follows it anywhere in
  the rest of the file*; it is then cut off (logged) and appending resumes after the last good
  frame. A customer id cannot contain bytes below 0x20, so a frame header (whose length has a
  zero high byte) can never be forged inside an id.
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

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use anyhow::{anyhow, bail, Context, Result};
use gateway_core::filter::OptOutLookup;
use gateway_core::optout::bulk::{self, Format};
use gateway_core::optout::{
    validate_customer_id, OptOutSet, OptOutSource, Scope, ScopeId, SetBuilder, MAX_ID_LEN,
};

const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const JOURNAL: &str = "journal";
const JOURNAL_TMP: &str = "journal.tmp";
const LOCK: &str = "lock";

const SNAPSHOT_MAGIC: &[u8; 8] = b"PGOPTSNP";
const SNAPSHOT_END: &[u8; 8] = b"PGOPTEND";
const JOURNAL_MAGIC: &[u8; 8] = b"PGOPTJNL";
const FORMAT_VERSION: u32 = 1;
const JOURNAL_HEADER_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 12;
const LEN_CHECK: u32 = 0x5047_4f4a;
/// Largest journal frame: one change to one customer.
const MAX_FRAME: usize = 1 << 20;
/// The journal is folded into a new snapshot once it is larger than this and than the snapshot.
const COMPACT_MIN_JOURNAL: u64 = 64 << 20;

const OP_ADD: u8 = 1;
const OP_REMOVE: u8 = 2;
const OP_REMOVE_ALL: u8 = 3;

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
    set: RwLock<OptOutSet>,
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

struct Writer {
    dir: PathBuf,
    journal: File,
    journal_len: u64,
    generation: u64,
    snapshot_len: u64,
    /// Set after a failure that leaves the journal's state unknown: no more writes.
    broken: Option<String>,
    _lock: File,
}

impl OptOutStore {
    /// Opens (creating it if needed) the store in `dir` for reading and writing, and loads every
    /// opt-out into memory. Only one process may hold a store open this way.
    pub fn open(dir: &Path) -> Result<OptOutStore> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create opt-out store directory {}", dir.display()))?;
        let lock = lock_dir(dir)?;
        for tmp in [SNAPSHOT_TMP, JOURNAL_TMP] {
            let path = dir.join(tmp);
            if path.exists() {
                fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        let loaded = load(dir)?;
        let journal_path = dir.join(JOURNAL);
        let journal_len = match loaded.journal {
            JournalState::Missing | JournalState::Stale => {
                if matches!(loaded.journal, JournalState::Missing) {
                    log::info!("created a new, empty opt-out store in {}", dir.display());
                } else {
                    log::info!(
                        "{}: discarding a journal already folded into snapshot generation {}",
                        journal_path.display(),
                        loaded.generation
                    );
                }
                write_new_journal(dir, loaded.generation)?;
                JOURNAL_HEADER_LEN as u64
            }
            JournalState::Replayed {
                valid_len,
                file_len,
            } => {
                if valid_len < file_len {
                    log::warn!(
                        "{}: ignoring {} bytes of an unfinished write at byte {} (a crash during a change that was never acknowledged)",
                        journal_path.display(),
                        file_len - valid_len,
                        valid_len
                    );
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&journal_path)
                        .with_context(|| format!("cannot open {}", journal_path.display()))?;
                    file.set_len(valid_len)
                        .and_then(|()| file.sync_all())
                        .with_context(|| {
                            format!(
                                "cannot cut the unfinished write off {}",
                                journal_path.display()
                            )
                        })?;
                }
                valid_len
            }
        };
        let journal = OpenOptions::new()
            .append(true)
            .open(&journal_path)
            .with_context(|| format!("cannot open {} for appending", journal_path.display()))?;
        let store = OptOutStore {
            dir: dir.to_path_buf(),
            set: RwLock::new(loaded.set),
            writer: Some(Mutex::new(Writer {
                dir: dir.to_path_buf(),
                journal,
                journal_len,
                generation: loaded.generation,
                snapshot_len: loaded.snapshot_len,
                broken: None,
                _lock: lock,
            })),
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
            match load(dir) {
                Ok(loaded) => break loaded,
                Err(e) if attempt < 5 && e.downcast_ref::<GenerationRace>().is_some() => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        };
        Ok(OptOutStore {
            dir: dir.to_path_buf(),
            set: RwLock::new(loaded.set),
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

    fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| anyhow!("opt-out store {} was opened read-only", self.dir.display()))?;
        let guard = writer
            .lock()
            .map_err(|_| anyhow!("the opt-out store writer is unusable after a failed change"))?;
        if let Some(why) = &guard.broken {
            bail!(
                "opt-out store {} accepts no more changes until restarted: {why}",
                self.dir.display()
            );
        }
        Ok(guard)
    }

    /// True when `id` opted out of any of `honoured`. Fails closed: if the set is unusable,
    /// every customer counts as opted out.
    pub fn is_opted_out(&self, id: &str, honoured: &[Scope]) -> bool {
        OptOutSource::is_opted_out(&self.set, id, honoured)
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
        let payload = encode_change(OP_ADD, id, scopes)?;
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
            None => encode_change(OP_REMOVE_ALL, id, &[])?,
            Some(list) => {
                let gone: Vec<Scope> = current
                    .iter()
                    .filter(|s| list.contains(s))
                    .cloned()
                    .collect();
                if gone.is_empty() {
                    return Ok(Some(current));
                }
                encode_change(OP_REMOVE, id, &gone)?
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

    /// Folds the journal into a new snapshot.
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
        let set = self.read()?;
        let generation = writer.generation + 1;
        let mut table: Vec<Scope> = set.interned_scopes().to_vec();
        let mut extra_map: Vec<u16> = Vec::new();
        let mut customers = set.len() as u64;
        let mut id_bytes = set.id_bytes() as u64;
        if let Some(extra) = extra {
            let mut index: HashMap<&str, usize> = table
                .iter()
                .enumerate()
                .map(|(i, s)| (s.as_str(), i))
                .collect();
            let mut added = Vec::new();
            for scope in extra.interned_scopes() {
                let i = match index.get(scope.as_str()) {
                    Some(&i) => i,
                    None => {
                        let i = table.len() + added.len();
                        index.insert(scope.as_str(), i);
                        added.push(scope.clone());
                        i
                    }
                };
                extra_map.push(
                    u16::try_from(i).map_err(|_| anyhow!("too many distinct opt-out scopes"))?,
                );
            }
            drop(index);
            table.extend(added);
            if table.len() >= usize::from(u16::MAX) {
                bail!("too many distinct opt-out scopes ({})", table.len());
            }
            for (id, _) in extra.iter().filter(|(id, _)| !set.contains(id)) {
                customers += 1;
                id_bytes += id.len() as u64;
            }
        }
        let mut out = SnapshotWriter::create(&writer.dir, generation, &table, customers, id_bytes)?;
        let mut idx: Vec<u16> = Vec::new();
        let to_u16 = |s: &ScopeId| s.index() as u16;
        for (id, scopes) in set.iter() {
            idx.clear();
            idx.extend(scopes.ids().iter().map(to_u16));
            if let Some(more) = extra.and_then(|e| e.get_ids(id)) {
                idx.extend(more.iter().map(|s| extra_map[s.index()]));
                idx.sort_unstable();
                idx.dedup();
            }
            out.entry(id, &idx)?;
        }
        if let Some(extra) = extra {
            for (id, scopes) in extra.iter().filter(|(id, _)| !set.contains(id)) {
                idx.clear();
                idx.extend(scopes.ids().iter().map(|s| extra_map[s.index()]));
                out.entry(id, &idx)?;
            }
        }
        drop(set);
        let snapshot_len = out.commit()?;
        // The snapshot is committed: from here the old journal is stale. If starting the new
        // one fails, appending to the old one would be lost on restart, so refuse writes.
        let journal = write_new_journal(&writer.dir, generation).and_then(|()| {
            let path = writer.dir.join(JOURNAL);
            OpenOptions::new()
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open {} for appending", path.display()))
        });
        match journal {
            Ok(journal) => {
                writer.journal = journal;
                writer.journal_len = JOURNAL_HEADER_LEN as u64;
                writer.generation = generation;
                writer.snapshot_len = snapshot_len;
                Ok(())
            }
            Err(e) => {
                writer.broken = Some(format!("{e:#}"));
                Err(e)
            }
        }
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

impl OptOutSource for OptOutStore {
    fn is_opted_out(&self, customer_id: &str, scopes: &[Scope]) -> bool {
        OptOutStore::is_opted_out(self, customer_id, scopes)
    }

    /// One read lock for the whole request. Fails closed like [`OptOutStore::is_opted_out`]:
    /// if the set is unusable, every customer counts as opted out.
    fn with_lookup(&self, scopes: &[Scope], f: &mut dyn FnMut(&dyn OptOutLookup)) {
        self.set.with_lookup(scopes, f)
    }
}

impl Writer {
    /// Appends one frame and makes it durable.
    fn append(&mut self, payload: &[u8]) -> Result<()> {
        let frame = encode_frame(payload);
        if let Err(e) = self.journal.write_all(&frame) {
            // Nothing was acknowledged: cut off whatever part got written, or stop writing.
            let path = self.dir.join(JOURNAL);
            if let Err(e2) = self
                .journal
                .set_len(self.journal_len)
                .and_then(|()| self.journal.sync_data())
            {
                self.broken = Some(format!(
                    "cannot repair {} after a failed write: {e2}",
                    path.display()
                ));
            }
            return Err(e).with_context(|| format!("cannot write to {}", path.display()));
        }
        if let Err(e) = self.journal.sync_data() {
            let path = self.dir.join(JOURNAL);
            self.broken = Some(format!("fsync of {} failed: {e}", path.display()));
            return Err(e).with_context(|| format!("cannot fsync {}", path.display()));
        }
        self.journal_len += frame.len() as u64;
        Ok(())
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => bail!(
            "opt-out store {} is in use by another process (a running gateway?): stop it, or change opt-outs through the admin API",
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

fn write_new_journal(dir: &Path, generation: u64) -> Result<()> {
    let tmp = dir.join(JOURNAL_TMP);
    let mut header = Vec::with_capacity(JOURNAL_HEADER_LEN);
    header.extend_from_slice(JOURNAL_MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&generation.to_le_bytes());
    header.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());
    let mut file =
        File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(&header)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, dir.join(JOURNAL))
        .with_context(|| format!("cannot rename {} to {JOURNAL}", tmp.display()))?;
    sync_dir(dir)
}

fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&(len ^ LEN_CHECK).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The frame starting at `pos`, if it is complete and checks out: `(payload, end)`.
fn frame_at(bytes: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(pos..pos.checked_add(FRAME_HEADER_LEN)?)?;
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (len, check, crc) = (word(0), word(4), word(8));
    if len ^ LEN_CHECK != check || len as usize > MAX_FRAME {
        return None;
    }
    let start = pos + FRAME_HEADER_LEN;
    let end = start + len as usize;
    let payload = bytes.get(start..end)?;
    (crc32fast::hash(payload) == crc).then_some((payload, end))
}

fn encode_change(op: u8, id: &str, scopes: &[Scope]) -> Result<Vec<u8>> {
    validate_customer_id(id)?;
    let mut payload = Vec::with_capacity(5 + id.len() + scopes.len() * 24);
    payload.push(op);
    payload.extend_from_slice(&(id.len() as u16).to_le_bytes());
    payload.extend_from_slice(id.as_bytes());
    let n = u16::try_from(scopes.len()).map_err(|_| anyhow!("too many scopes in one change"))?;
    payload.extend_from_slice(&n.to_le_bytes());
    for scope in scopes {
        let len = u8::try_from(scope.as_str().len())
            .map_err(|_| anyhow!("opt-out scope {scope} is too long"))?;
        payload.push(len);
        payload.extend_from_slice(scope.as_str().as_bytes());
    }
    if payload.len() > MAX_FRAME {
        bail!("too many scopes in one change");
    }
    Ok(payload)
}

/// A little-endian reader over a byte slice whose errors say what was being read.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or_else(|| anyhow!("truncated at byte {} while reading {what}", self.pos))?;
        self.pos += n;
        Ok(slice)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn str(&mut self, n: usize, what: &str) -> Result<&'a str> {
        let at = self.pos;
        std::str::from_utf8(self.take(n, what)?)
            .map_err(|_| anyhow!("{what} at byte {at} is not UTF-8"))
    }
}

/// A change read back from the journal.
struct Change<'a> {
    op: u8,
    id: &'a str,
    scopes: Vec<Scope>,
}

fn decode_change(payload: &[u8]) -> Result<Change<'_>> {
    let mut c = Cursor {
        bytes: payload,
        pos: 0,
    };
    let op = c.u8("operation")?;
    if !matches!(op, OP_ADD | OP_REMOVE | OP_REMOVE_ALL) {
        bail!("unknown operation {op}");
    }
    let id_len = c.u16("id length")?;
    let id = c.str(usize::from(id_len), "customer id")?;
    validate_customer_id(id)?;
    let n = c.u16("scope count")?;
    let mut scopes = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let len = c.u8("scope length")?;
        let text = c.str(usize::from(len), "scope")?;
        scopes.push(Scope::parse(text).map_err(|e| anyhow!(e))?);
    }
    if c.pos != payload.len() {
        bail!(
            "{} unexpected bytes after the change",
            payload.len() - c.pos
        );
    }
    if op != OP_REMOVE_ALL && scopes.is_empty() {
        bail!("a change with no scopes");
    }
    Ok(Change { op, id, scopes })
}

/// Writes a snapshot to `snapshot.tmp`; [`SnapshotWriter::commit`] renames it into place.
struct SnapshotWriter {
    dir: PathBuf,
    out: BufWriter<File>,
    crc: crc32fast::Hasher,
    len: u64,
    expected: u64,
    written: u64,
}

impl SnapshotWriter {
    fn create(
        dir: &Path,
        generation: u64,
        scopes: &[Scope],
        customers: u64,
        id_bytes: u64,
    ) -> Result<SnapshotWriter> {
        let path = dir.join(SNAPSHOT_TMP);
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = SnapshotWriter {
            dir: dir.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
            len: 0,
            expected: customers,
            written: 0,
        };
        w.put(SNAPSHOT_MAGIC)?;
        w.put(&FORMAT_VERSION.to_le_bytes())?;
        w.put(&generation.to_le_bytes())?;
        w.put(&(scopes.len() as u32).to_le_bytes())?;
        for scope in scopes {
            let len = u8::try_from(scope.as_str().len())
                .map_err(|_| anyhow!("opt-out scope {scope} is too long"))?;
            w.put(&[len])?;
            w.put(scope.as_str().as_bytes())?;
        }
        w.put(&customers.to_le_bytes())?;
        w.put(&id_bytes.to_le_bytes())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .with_context(|| format!("cannot write {}", self.dir.join(SNAPSHOT_TMP).display()))
    }

    fn entry(&mut self, id: &str, scopes: &[u16]) -> Result<()> {
        let mut buf = [0u8; 2 + MAX_ID_LEN + 2];
        let id_len = id.len();
        if id_len > MAX_ID_LEN || scopes.is_empty() {
            bail!("cannot write customer {id:?} to a snapshot");
        }
        buf[..2].copy_from_slice(&(id_len as u16).to_le_bytes());
        buf[2..2 + id_len].copy_from_slice(id.as_bytes());
        buf[2 + id_len..4 + id_len].copy_from_slice(&(scopes.len() as u16).to_le_bytes());
        self.put(&buf[..4 + id_len])?;
        for s in scopes {
            self.put(&s.to_le_bytes())?;
        }
        self.written += 1;
        Ok(())
    }

    /// Finishes, fsyncs and renames the snapshot into place. Returns its length.
    fn commit(mut self) -> Result<u64> {
        if self.written != self.expected {
            bail!(
                "snapshot has {} customers, expected {}",
                self.written,
                self.expected
            );
        }
        let crc = self.crc.clone().finalize();
        self.put(&crc.to_le_bytes())?;
        self.put(SNAPSHOT_END)?;
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let file = self
            .out
            .into_inner()
            .map_err(|e| anyhow!("cannot write {}: {}", tmp.display(), e.error()))?;
        file.sync_all()
            .with_context(|| format!("cannot fsync {}", tmp.display()))?;
        drop(file);
        fs::rename(&tmp, self.dir.join(SNAPSHOT))
            .with_context(|| format!("cannot rename {} to {SNAPSHOT}", tmp.display()))?;
        sync_dir(&self.dir)?;
        Ok(self.len)
    }
}

fn load_snapshot(path: &Path, bytes: &[u8]) -> Result<(OptOutSet, u64)> {
    let shown = path.display();
    let body_len = bytes
        .len()
        .checked_sub(12)
        .filter(|&n| n >= 8 && bytes.ends_with(SNAPSHOT_END))
        .ok_or_else(|| {
            anyhow!("{shown} is corrupted: it is truncated or not an opt-out snapshot")
        })?;
    let (body, trailer) = bytes.split_at(body_len);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if crc32fast::hash(body) != stored {
        bail!("{shown} is corrupted: checksum mismatch");
    }
    let mut c = Cursor {
        bytes: body,
        pos: 0,
    };
    let parse = |c: &mut Cursor<'_>| -> Result<(OptOutSet, u64)> {
        if c.take(8, "magic")? != SNAPSHOT_MAGIC {
            bail!("not an opt-out snapshot");
        }
        let version = c.u32("format version")?;
        if version != FORMAT_VERSION {
            bail!("unsupported snapshot format version {version}");
        }
        let generation = c.u64("generation")?;
        let n_scopes = c.u32("scope count")? as usize;
        let mut scopes = Vec::with_capacity(n_scopes.min(1 << 16));
        for _ in 0..n_scopes {
            let len = c.u8("scope length")?;
            let text = c.str(usize::from(len), "scope")?;
            scopes.push(Scope::parse(text).map_err(|e| anyhow!(e))?);
        }
        let customers = c.u64("customer count")?;
        let id_bytes = c.u64("id byte count")?;
        // Counts come from the file: never reserve more than the file could hold.
        let room = body.len() / 5;
        let mut builder = SetBuilder::new(
            &scopes,
            (customers as usize).min(room),
            (id_bytes as usize).min(body.len()),
        )?;
        let mut buf: Vec<ScopeId> = Vec::new();
        for _ in 0..customers {
            let at = c.pos;
            let id_len = c.u16("id length")?;
            let id = c.str(usize::from(id_len), "customer id")?;
            let n = c.u16("scope count")?;
            buf.clear();
            for _ in 0..n {
                let i = usize::from(c.u16("scope index")?);
                let sid = ScopeId::from_index(i)
                    .filter(|_| i < scopes.len())
                    .ok_or_else(|| anyhow!("scope index {i} out of range at byte {at}"))?;
                buf.push(sid);
            }
            builder
                .push(id, &buf)
                .with_context(|| format!("customer at byte {at}"))?;
        }
        if c.pos != body.len() {
            bail!(
                "{} unexpected bytes after the last customer",
                body.len() - c.pos
            );
        }
        Ok((builder.finish()?, generation))
    };
    parse(&mut c).with_context(|| format!("{shown} is corrupted"))
}

/// The journal and snapshot generations disagree in a way a concurrent compaction explains.
#[derive(Debug)]
struct GenerationRace(String);

impl std::fmt::Display for GenerationRace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GenerationRace {}

enum JournalState {
    /// No journal file (a new store).
    Missing,
    /// A journal older than the snapshot: already folded in.
    Stale,
    /// Replayed up to `valid_len`; bytes after it are a torn tail.
    Replayed { valid_len: u64, file_len: u64 },
}

struct Loaded {
    set: OptOutSet,
    generation: u64,
    snapshot_len: u64,
    journal: JournalState,
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn load(dir: &Path) -> Result<Loaded> {
    let snapshot_path = dir.join(SNAPSHOT);
    let journal_path = dir.join(JOURNAL);
    let (mut set, generation, snapshot_len) = match read_optional(&snapshot_path)? {
        Some(bytes) => {
            let (set, generation) = load_snapshot(&snapshot_path, &bytes)?;
            (set, generation, bytes.len() as u64)
        }
        None => (OptOutSet::new(), 0, 0),
    };
    let Some(bytes) = read_optional(&journal_path)? else {
        if snapshot_len > 0 {
            bail!(
                "{} is missing next to {}: opt-outs recorded since the snapshot would be lost; restore it",
                journal_path.display(),
                snapshot_path.display()
            );
        }
        return Ok(Loaded {
            set,
            generation,
            snapshot_len,
            journal: JournalState::Missing,
        });
    };
    let shown = journal_path.display();
    let header = bytes
        .get(..JOURNAL_HEADER_LEN)
        .ok_or_else(|| anyhow!("{shown} is corrupted: its header is truncated"))?;
    let stored = u32::from_le_bytes([header[20], header[21], header[22], header[23]]);
    if &header[..8] != JOURNAL_MAGIC || crc32fast::hash(&header[..20]) != stored {
        bail!("{shown} is corrupted: bad header");
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if version != FORMAT_VERSION {
        bail!("{shown}: unsupported journal format version {version}");
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&header[12..20]);
    let journal_generation = u64::from_le_bytes(g);
    if journal_generation < generation {
        return Ok(Loaded {
            set,
            generation,
            snapshot_len,
            journal: JournalState::Stale,
        });
    }
    if journal_generation > generation {
        return Err(anyhow!(GenerationRace(format!(
            "{shown} (generation {journal_generation}) is newer than {} (generation {generation}): the snapshot was lost or replaced",
            snapshot_path.display()
        ))));
    }
    let mut pos = JOURNAL_HEADER_LEN;
    while pos < bytes.len() {
        let Some((payload, end)) = frame_at(&bytes, pos) else {
            if let Some(next) = (pos + 1..bytes.len()).find(|&q| frame_at(&bytes, q).is_some()) {
                bail!("{shown} is corrupted at byte {pos}: a damaged record is followed by valid ones (at byte {next})");
            }
            break;
        };
        let change = decode_change(payload)
            .with_context(|| format!("{shown} is corrupted: record at byte {pos}"))?;
        match change.op {
            OP_ADD => {
                set.insert(change.id, &change.scopes)
                    .with_context(|| format!("{shown}: record at byte {pos}"))?;
            }
            OP_REMOVE => {
                set.remove(change.id, Some(&change.scopes));
            }
            _ => {
                set.remove(change.id, None);
            }
        }
        pos = end;
    }
    Ok(Loaded {
        set,
        generation,
        snapshot_len,
        journal: JournalState::Replayed {
            valid_len: pos as u64,
            file_len: bytes.len() as u64,
        },
    })
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
