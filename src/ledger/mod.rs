/*!
The disclosure ledger writer: one record per forwarded request, appended before the request's
body leaves the gateway, its outcome after, and signed checkpoints every 1,000 records, at
rotation and at shutdown. The line formats and the chain are the core's
([`gateway_core::ledger`]); this module owns the files.

Durability. A line is written with one `write(2)` under the ledger lock before the request is
forwarded: once `record` returns, the line is in the kernel's page cache and survives the
process being killed (`kill -9`). A background thread `fdatasync`s the file at least every
[`SYNC_INTERVAL`] (group commit: one sync covers every line appended since the last), so an OS
crash or power loss loses at most the lines of the last interval. The shutdown checkpoint is
synced before the process exits.

Failure. A write that fails (disk full, permissions, a file that cannot be created at
rotation) makes the ledger broken: the failing request and every later one that would be
forwarded are refused with 503 `not_ready` (nothing is forwarded unrecorded), the incident is
logged once, and a background thread reopens the ledger (repairing a torn last line) every
[`RETRY_INTERVAL`] until it can write again: until a probe file of a few dozen records' size
is written and synced in the ledger's directory (a full disk still opens files).
*/
mod files;

pub use files::ledger_files;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use gateway_core::ledger::{Chain, Disclosure, SealedLine, StreamForwarded};
use gateway_core::policy::LedgerConfig;
use gateway_core::tagging::TokenSigner;

use files::{Current, DirLock};

/// The longest an appended line waits for `fdatasync`.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// How often a broken ledger is reopened.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Why a line could not be appended (the request is refused with 503).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the disclosure ledger cannot be written: {0}")]
    Broken(String),
    #[error("the disclosure ledger is closed (the gateway is shutting down)")]
    Closed,
    /// The line belongs to a record of a chain this gateway no longer writes (its directory
    /// was replaced): it is not written anywhere.
    #[error("the record is in a ledger chain this gateway no longer writes")]
    OtherChain,
}

enum State {
    Open(Current),
    /// Why, and the chain as this gateway last wrote it (none when it never had the directory
    /// open, or holds another directory at the path now): see [`Ledger::retry`].
    Broken(String, Option<Chain>),
    Closed,
}

/// The ledger of one gateway process.
pub struct Ledger {
    dir: PathBuf,
    rotate_bytes: u64,
    key: Vec<u8>,
    state: Mutex<State>,
    /// The directory's lock, kept while the ledger is broken too (a passing failure must not
    /// hand the directory to another gateway); taken after `state` when both are.
    dir_lock: Mutex<Option<DirLock>>,
    /// Lines appended since the last `fdatasync`.
    dirty: AtomicBool,
    /// Which chain this process writes: raised (under the state lock) when a directory that
    /// replaced the one it held starts a new chain, so that no outcome or subjects line of a
    /// record in the old chain lands in the new one ([`RecordRef`]).
    chain: AtomicU64,
    /// Called for each failed attempt to reopen a broken ledger (once a second), so that the
    /// error count keeps rising for as long as it cannot be written, traffic or not.
    on_failed_retry: Box<dyn Fn() + Send + Sync>,
}

/// A record this ledger wrote: its seq, in the chain it was written to. Its outcome and
/// subjects lines are written only into that chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    pub seq: u64,
    chain: u64,
}

/// Now, as the ledger writes it (RFC 3339 UTC, milliseconds), and its UTC date.
pub fn now_text() -> (String, String) {
    let time = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    // `YYYY-MM-DD` starts every RFC 3339 time chrono writes (years 0 to 9999).
    let date = time.get(..10).unwrap_or_default().to_string();
    (time, date)
}

impl Ledger {
    /// Opens the ledger `config` names. One that cannot be opened is returned broken (every
    /// forwarded request answers 503) and is retried in the background.
    pub fn start(
        config: &LedgerConfig,
        on_failed_retry: Box<dyn Fn() + Send + Sync>,
    ) -> Arc<Ledger> {
        let (_, today) = now_text();
        let dir_lock = DirLock::take(&config.path);
        let opened = dir_lock
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|lock| opened_in(lock, &config.path, &today));
        let state = match opened {
            Ok(current) => {
                log::info!(
                    "disclosure ledger {} open at seq {}",
                    current.path.display(),
                    current.chain.next_seq()
                );
                if current.chain.needs_checkpoint() {
                    // The next checkpoint signs lines this run did not write: say so once.
                    log::warn!(
                        "disclosure ledger: its last line (seq {}) is no checkpoint: the last run did not shut down cleanly, or lines were added after it; the next checkpoint signs the lines since the last one, so audit them first (`partner-gateway audit verify --jwks`)",
                        current.chain.next_seq() - 1
                    );
                }
                State::Open(current)
            }
            Err(e) => {
                log::error!("disclosure ledger: {e:#}: requests that would be forwarded answer 503 until it can be written");
                State::Broken(format!("{e:#}"), None)
            }
        };
        let ledger = Arc::new(Ledger {
            dir: config.path.clone(),
            rotate_bytes: config.rotate_bytes,
            key: config.subject_key.clone().unwrap_or_default(),
            state: Mutex::new(state),
            dir_lock: Mutex::new(dir_lock.ok()),
            dirty: AtomicBool::new(false),
            chain: AtomicU64::new(0),
            on_failed_retry,
        });
        spawn_background(Arc::downgrade(&ledger));
        ledger
    }

    /// The HMAC key for customer ids.
    pub fn subject_key(&self) -> &[u8] {
        &self.key
    }

    /// Whether the ledger can be written right now (for `/readyz`).
    pub fn writable(&self) -> bool {
        matches!(*self.lock(), State::Open(_))
    }

    /// Whether lines of `record` can still be written: the ledger is open, in the chain the
    /// record is in (a stream checks this before it forwards more customers).
    pub fn holds(&self, record: RecordRef) -> bool {
        let state = self.lock();
        matches!(*state, State::Open(_)) && self.chain.load(Ordering::Relaxed) == record.chain
    }

    /// Appends the record of one request about to be forwarded and returns its seq. Only
    /// when this returns `Ok` may the request be forwarded.
    pub fn record(
        &self,
        disclosure: &Disclosure,
        signer: Option<&TokenSigner>,
    ) -> Result<RecordRef, LedgerError> {
        let (seq, chain) = self.append(signer, &disclosure.time, None, &|chain| {
            chain.record(disclosure)
        })?;
        Ok(RecordRef { seq, chain })
    }

    /// Appends the outcome of `record`: the partner's status, or 502/504 (and, for a stream,
    /// what it forwarded). [`LedgerError::OtherChain`] when the record's chain is no longer
    /// the one written.
    pub fn outcome(
        &self,
        record: RecordRef,
        status: u16,
        stream: Option<&StreamForwarded>,
        signer: Option<&TokenSigner>,
    ) -> Result<(), LedgerError> {
        let (time, _) = now_text();
        self.append(signer, &time, Some(record.chain), &|chain| {
            chain.outcome(record.seq, status, &time, stream)
        })
        .map(|_| ())
    }

    /// Appends a subjects line of the stream `record`: `subjects` are keyed hashes, sorted,
    /// each once (see [`gateway_core::ledger::STREAM_SUBJECTS_PER_LINE`]).
    pub fn subjects(
        &self,
        record: RecordRef,
        subjects: &[String],
        signer: Option<&TokenSigner>,
    ) -> Result<(), LedgerError> {
        let (time, _) = now_text();
        self.append(signer, &time, Some(record.chain), &|chain| {
            chain.subjects(record.seq, subjects)
        })
        .map(|_| ())
    }

    /// Shutdown: appends the final checkpoint (the last line written), syncs, and refuses
    /// every later append.
    pub fn close(&self, signer: Option<&TokenSigner>) {
        let mut state = self.lock();
        if let State::Open(current) = &mut *state {
            if current.chain.needs_checkpoint() {
                if let Err(e) = write_checkpoint(current, signer) {
                    log::error!("disclosure ledger: shutdown checkpoint not written: {e:#}");
                }
            }
            if let Err(e) = current.file.sync_data() {
                log::error!("disclosure ledger: final sync failed: {e}");
            }
            log::info!(
                "disclosure ledger closed at seq {}",
                current.chain.next_seq() - 1
            );
        }
        *state = State::Closed;
    }

    /// Syncs the current file if anything was appended since the last sync.
    pub fn sync(&self) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let file = match &*self.lock() {
            State::Open(current) => current.file.try_clone(),
            _ => return,
        };
        // Synced outside the lock: appends go on meanwhile (and set `dirty` again).
        if let Err(e) = file.and_then(|f| f.sync_data()) {
            self.dirty.store(true, Ordering::Release);
            log::warn!("disclosure ledger: fdatasync failed: {e}");
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// The open file, rotated first when the UTC date changed.
    fn writable_current<'a>(
        &self,
        state: &'a mut State,
        signer: Option<&TokenSigner>,
        time: &str,
    ) -> Result<&'a mut Current, LedgerError> {
        let date = time.get(..10).unwrap_or_default();
        // Only ever forward: a line timed before the current file's date (two requests that
        // straddle midnight, a clock stepped back) stays in the current file, so file names
        // keep the chain's order. A file still empty (opened before midnight, nothing written
        // since) gives way to one of the new date: see `rotate`.
        let new_day = matches!(&*state, State::Open(c) if c.date.as_str() < date);
        if new_day {
            self.rotate(state, signer, date)?;
        }
        // A checkpoint that came due but could not be written (the ledger broke just then)
        // goes first, so no more than `CHECKPOINT_EVERY` records ever stand between two.
        let due = matches!(&*state, State::Open(c) if c.chain.checkpoint_due());
        if due {
            let written = match &mut *state {
                State::Open(current) => write_checkpoint(current, signer),
                _ => Ok(()),
            };
            if let Err(e) = written {
                return Err(self.break_down(state, e));
            }
        }
        match state {
            State::Open(current) => Ok(current),
            State::Broken(why, _) => Err(LedgerError::Broken(why.clone())),
            State::Closed => Err(LedgerError::Closed),
        }
    }

    /// Seals a line with `make` and writes it, rotating first when the UTC date changed or
    /// the line would take the file past `rotate_bytes` (the line is then sealed again,
    /// after the rotation checkpoint), and a checkpoint after it when one is due. Any
    /// failure breaks the ledger; a line that was written is still `Ok` (its request goes on,
    /// recorded) when only the checkpoint after it failed. `of_chain`: the chain the line must
    /// go to (a record's outcome or subjects line). Returns the line's seq and chain.
    fn append(
        &self,
        signer: Option<&TokenSigner>,
        time: &str,
        of_chain: Option<u64>,
        make: &dyn Fn(&Chain) -> SealedLine,
    ) -> Result<(u64, u64), LedgerError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        // Read under the state lock, where `retry` raises it.
        let chain = self.chain.load(Ordering::Relaxed);
        if of_chain.is_some_and(|c| c != chain) {
            return Err(LedgerError::OtherChain);
        }
        let current = self.writable_current(state, signer, time)?;
        let mut line = make(&current.chain);
        if current.len > 0 && current.len + line.bytes.len() as u64 > self.rotate_bytes {
            let date = current.date.clone();
            let today = time.get(..10).unwrap_or_default().to_string();
            self.rotate(state, signer, if today > date { &today } else { &date })?;
            let State::Open(current) = &*state else {
                return Err(LedgerError::Closed);
            };
            line = make(&current.chain);
        }
        let State::Open(current) = &mut *state else {
            return Err(LedgerError::Closed);
        };
        let written = write_line(current, &line);
        self.dirty.store(true, Ordering::Release);
        if let Err(e) = written {
            return Err(self.break_down(state, e));
        }
        // The line is written: its request goes on whatever becomes of the checkpoint after
        // it. A checkpoint that fails breaks the ledger for the next lines.
        if current.chain.checkpoint_due() {
            if let Err(e) = write_checkpoint(current, signer) {
                self.break_down(state, e);
            }
        }
        Ok((line.seq, chain))
    }

    /// Ends the current file with a checkpoint and continues the chain in a new one.
    fn rotate(
        &self,
        state: &mut State,
        signer: Option<&TokenSigner>,
        date: &str,
    ) -> Result<(), LedgerError> {
        let State::Open(current) = &mut *state else {
            return Ok(());
        };
        let result = (|| {
            if current.chain.needs_checkpoint() {
                write_checkpoint(current, signer)?;
            }
            current.file.sync_data()?;
            let n = if current.date == date {
                current.n + 1
            } else {
                files::next_number(&self.dir, date)?
            };
            // Never a file in a directory this gateway does not hold (moved away, and
            // another gateway's since).
            if !self.holds_dir() {
                return Err(self.dir_moved());
            }
            let next = files::create(&self.dir, date, n, current.chain.clone())?;
            if current.len == 0 {
                // Nothing was ever written to it: it holds no part of the chain.
                files::remove_empty(&self.dir, &current.path);
            }
            log::info!("disclosure ledger continues in {}", next.path.display());
            Ok(next)
        })();
        match result {
            Ok(next) => {
                *state = State::Open(next);
                Ok(())
            }
            Err(e) => Err(self.break_down(state, e)),
        }
    }

    /// Marks the ledger broken (logged once per incident).
    fn break_down(&self, state: &mut State, e: anyhow::Error) -> LedgerError {
        let why = format!("{e:#}");
        if let State::Open(current) = &*state {
            log::error!(
                "disclosure ledger {}: {why}: requests that would be forwarded answer 503 until it can be written again",
                current.path.display()
            );
            let head = current.chain.clone();
            *state = State::Broken(why.clone(), Some(head));
        }
        LedgerError::Broken(why)
    }

    /// Holds the lock of the directory the ledger's path names now (taken anew when it was
    /// moved away or replaced: then true).
    fn relock(&self) -> anyhow::Result<bool> {
        let mut held = crate::lock(&self.dir_lock);
        if held.as_ref().is_some_and(|l| l.still_at(&self.dir)) {
            return Ok(false);
        }
        *held = None;
        *held = Some(DirLock::take(&self.dir)?);
        Ok(true)
    }

    /// Breaks an open ledger whose directory is no longer at its path (moved away, replaced):
    /// its next lines would go where nobody looks for them, while another gateway may take the
    /// path. Called every [`SYNC_INTERVAL`]; the retry then locks what the path names.
    fn check_place(&self) {
        let mut state = self.lock();
        if !matches!(*state, State::Open(_)) {
            return;
        }
        if !self.holds_dir() {
            let e = self.dir_moved();
            self.break_down(&mut state, e);
            return;
        }
        if let State::Open(current) = &*state {
            if !still_named(current) {
                let e = anyhow::anyhow!(
                    "{} was moved or deleted while the gateway appended to it (its lines through seq {} are not in the ledger directory)",
                    current.path.display(),
                    current.chain.next_seq().saturating_sub(1)
                );
                self.break_down(&mut state, e);
            }
        }
    }

    /// Whether the ledger's path still names the directory this gateway locked.
    fn holds_dir(&self) -> bool {
        crate::lock(&self.dir_lock)
            .as_ref()
            .is_some_and(|l| l.still_at(&self.dir))
    }

    /// Why a ledger whose path no longer names its locked directory takes no more lines.
    fn dir_moved(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "{} is no longer the directory this gateway locked (moved or replaced)",
            self.dir.display()
        )
    }

    /// Reopens a broken ledger (called by the background thread). When the files left in the
    /// same directory end before the chain this gateway wrote (a file deleted or cut short
    /// meanwhile), the chain goes on from what it wrote, not from the files: the lines that
    /// are gone stay a gap that `audit verify` reports, instead of their seqs being written
    /// again. A directory that replaced the one this gateway held starts from its own files.
    fn retry(&self) {
        if !matches!(*self.lock(), State::Broken(..)) {
            return;
        }
        match self.relock() {
            Ok(false) => {}
            Ok(true) => {
                if let State::Broken(_, head) = &mut *self.lock() {
                    // Another directory: a new chain, which no line of the old one may join.
                    *head = None;
                    self.chain.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                log::debug!("disclosure ledger still cannot be opened: {e:#}");
                (self.on_failed_retry)();
                return;
            }
        }
        let (_, today) = now_text();
        let opened = match crate::lock(&self.dir_lock).as_ref() {
            Some(lock) => opened_in(lock, &self.dir, &today),
            None => Err(anyhow::anyhow!("the ledger directory is not locked")),
        };
        match opened {
            Ok(mut current) => {
                let mut state = self.lock();
                if let State::Broken(_, Some(head)) = &*state {
                    let on_disk = current.chain.next_seq();
                    if head.next_seq() > on_disk {
                        log::error!(
                            "disclosure ledger {}: lines seq {on_disk} to {} are gone from its files (deleted, moved away or cut short): the chain goes on after them, and `audit verify` reports the gap",
                            self.dir.display(),
                            head.next_seq() - 1
                        );
                        current.chain = head.clone();
                    }
                }
                if matches!(*state, State::Broken(..)) {
                    log::info!(
                        "disclosure ledger {} is writable again (seq {})",
                        current.path.display(),
                        current.chain.next_seq()
                    );
                    *state = State::Open(current);
                }
            }
            Err(e) => {
                log::debug!("disclosure ledger still cannot be opened: {e:#}");
                (self.on_failed_retry)();
            }
        }
    }
}

/// Whether the open file is still the one its path names (not renamed away, say by a log rotation
/// that moves files; a file deleted outright is also caught at each append).
fn still_named(current: &Current) -> bool {
    match (current.file.metadata(), std::fs::metadata(&current.path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Opens the ledger at `dir`, which `lock` must still be after opening (the path could have
/// been pointed elsewhere meanwhile, at a directory another gateway holds).
fn opened_in(lock: &DirLock, dir: &std::path::Path, today: &str) -> anyhow::Result<Current> {
    let current = files::open(dir, today)?;
    if !lock.still_at(dir) {
        anyhow::bail!(
            "{} changed while the ledger was being opened",
            dir.display()
        );
    }
    Ok(current)
}

/// Appends one line with a single write; on failure cuts the file back to its last complete
/// line, so that a later append cannot follow a torn one. A file that was deleted (no name left
/// in any directory) takes writes that no one will read: that is a failure too.
fn write_line(current: &mut Current, line: &SealedLine) -> anyhow::Result<()> {
    if let Err(e) = current.file.write_all(&line.bytes) {
        let _ = current.file.set_len(current.len);
        return Err(
            anyhow::Error::new(e).context(format!("cannot append to {}", current.path.display()))
        );
    }
    let links = current.file.metadata().map(|m| m.nlink());
    if links.as_ref().map_or(true, |&n| n == 0) {
        // Written, into a file no one can read: the line is gone like those before it, and its
        // seq is never written again (see `Ledger::retry`).
        current.chain.commit(line);
        return Err(anyhow::anyhow!(
            "{} was deleted while the gateway appended to it: its lines, through seq {}, are gone",
            current.path.display(),
            line.seq
        ));
    }
    current.len += line.bytes.len() as u64;
    current.chain.commit(line);
    Ok(())
}

fn write_checkpoint(current: &mut Current, signer: Option<&TokenSigner>) -> anyhow::Result<()> {
    let iat = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
    let line = current
        .chain
        .checkpoint(signer, iat)
        .map_err(|e| anyhow::anyhow!("cannot sign a checkpoint: {e}"))?;
    write_line(current, &line)
}

/// Syncs every [`SYNC_INTERVAL`] and retries a broken ledger every [`RETRY_INTERVAL`], for
/// as long as the ledger lives.
fn spawn_background(ledger: Weak<Ledger>) {
    let _ = std::thread::Builder::new()
        .name("ledger-sync".into())
        .spawn(move || {
            let ticks_per_retry = (RETRY_INTERVAL.as_millis() / SYNC_INTERVAL.as_millis()).max(1);
            let mut tick = 0u128;
            let mut last = std::time::Instant::now();
            loop {
                // From the start of one sync to the start of the next, so a slow `fdatasync`
                // does not stretch the interval (the next one then starts at once).
                std::thread::sleep(SYNC_INTERVAL.saturating_sub(last.elapsed()));
                last = std::time::Instant::now();
                let Some(ledger) = ledger.upgrade() else {
                    return;
                };
                ledger.sync();
                ledger.check_place();
                tick += 1;
                if tick.is_multiple_of(ticks_per_retry) {
                    ledger.retry();
                }
            }
        });
}

#[cfg(test)]
mod tests;
