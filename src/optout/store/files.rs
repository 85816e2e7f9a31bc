//! The store directory's files and the one writer: the directory lock, the journal that
//! changes are appended to (each append made durable before it returns), and fsync of the
//! directory after a rename.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gateway_core::optout::codec::journal;

pub(super) const SNAPSHOT: &str = "snapshot";
pub(super) const SNAPSHOT_TMP: &str = "snapshot.tmp";
pub(super) const JOURNAL: &str = "journal";
pub(super) const JOURNAL_TMP: &str = "journal.tmp";
const LOCK: &str = "lock";

/// The journal being appended to, with what the store needs to know to compact it.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    journal: File,
    pub(super) journal_len: u64,
    pub(super) generation: u64,
    pub(super) snapshot_len: u64,
    /// Set after a failure that left the files unlike `journal_len` and `generation` say;
    /// the next write repairs them first (see [`Writer::repair`]).
    pub(super) damage: Option<Damage>,
    _lock: File,
}

impl Writer {
    /// The writer of the journal in `dir`, `journal_len` bytes long, which follows snapshot
    /// `generation`.
    pub(super) fn open(
        dir: &Path,
        lock: File,
        journal_len: u64,
        generation: u64,
        snapshot_len: u64,
    ) -> Result<Writer> {
        Ok(Writer {
            dir: dir.to_path_buf(),
            journal: open_for_append(dir)?,
            journal_len,
            generation,
            snapshot_len,
            damage: None,
            _lock: lock,
        })
    }

    /// Appends one frame and makes it durable.
    pub(super) fn append(&mut self, payload: &[u8]) -> Result<()> {
        let frame = journal::frame(payload);
        let path = self.dir.join(JOURNAL);
        if let Err(e) = self.journal.write_all(&frame) {
            // Nothing was acknowledged: cut off whatever part got written, or stop writing.
            if let Err(e2) = self
                .journal
                .set_len(self.journal_len)
                .and_then(|()| self.journal.sync_data())
            {
                log::warn!(
                    "cannot cut {} back after a failed write ({e2}): the next change tries again",
                    path.display()
                );
                self.damage = Some(Damage::Tail);
            }
            return Err(e).with_context(|| format!("cannot write to {}", path.display()));
        }
        if let Err(e) = self.journal.sync_data() {
            // Whether the frame reached the disk is unknown: cut it off before the next one.
            self.damage = Some(Damage::Tail);
            return Err(e).with_context(|| format!("cannot fsync {}", path.display()));
        }
        self.journal_len += frame.len() as u64;
        Ok(())
    }

    /// Starts an empty journal for the snapshot `generation` just committed. If that fails,
    /// appending to the old journal would be lost on restart, so the writer refuses writes.
    pub(super) fn restart(&mut self, generation: u64, snapshot_len: u64) -> Result<()> {
        let journal =
            write_new_journal(&self.dir, generation).and_then(|()| open_for_append(&self.dir));
        match journal {
            Ok(journal) => {
                self.journal = journal;
                self.journal_len = journal::HEADER_LEN as u64;
                self.generation = generation;
                self.snapshot_len = snapshot_len;
                Ok(())
            }
            Err(e) => {
                self.damage = Some(Damage::NoJournal {
                    generation,
                    snapshot_len,
                });
                Err(e)
            }
        }
    }

    /// Repairs what an earlier failure left (nothing acknowledged is lost by it): a journal
    /// that may hold an unacknowledged frame past `journal_len` is cut back to it and synced;
    /// a committed snapshot whose new journal could not be started gets it now. Until that
    /// works every change fails with the file system's error (503, retryable), and the writer
    /// writes nothing else.
    pub(super) fn repair(&mut self) -> Result<()> {
        match self.damage {
            None => Ok(()),
            Some(Damage::Tail) => {
                let path = self.dir.join(JOURNAL);
                self.journal
                    .set_len(self.journal_len)
                    .and_then(|()| self.journal.sync_data())
                    .with_context(|| {
                        format!("cannot cut {} back after a failed write", path.display())
                    })?;
                self.damage = None;
                Ok(())
            }
            Some(Damage::NoJournal {
                generation,
                snapshot_len,
            }) => {
                self.restart(generation, snapshot_len)?;
                self.damage = None;
                Ok(())
            }
        }
    }
}

/// What a failed write left for [`Writer::repair`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Damage {
    /// The journal may end in a frame that was not acknowledged.
    Tail,
    /// Snapshot `generation` is committed, but its empty journal could not be started: an
    /// append to the old journal would be discarded on restart.
    NoJournal { generation: u64, snapshot_len: u64 },
}

fn open_for_append(dir: &Path) -> Result<File> {
    let path = dir.join(JOURNAL);
    OpenOptions::new()
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {} for appending", path.display()))
}

/// Takes the directory's lock, held until the returned file is dropped (or the process dies).
pub(super) fn lock_dir(dir: &Path) -> Result<File> {
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

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

/// Replaces the journal with an empty one for snapshot `generation` (write, fsync, rename).
pub(super) fn write_new_journal(dir: &Path, generation: u64) -> Result<()> {
    let tmp = dir.join(JOURNAL_TMP);
    let mut file =
        File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(&journal::header(generation))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, dir.join(JOURNAL))
        .with_context(|| format!("cannot rename {} to {JOURNAL}", tmp.display()))?;
    sync_dir(dir)
}

/// The file's bytes, or `None` when it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}
