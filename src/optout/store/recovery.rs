//! Getting the store back at start: the snapshot plus the journal replayed over it, what to
//! do with a journal that is older than the snapshot (discard it) or has a torn tail (cut it
//! off), and the leftovers of a crash during a rewrite.

use std::fs::{self, OpenOptions};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use gateway_core::optout::codec::journal;
use gateway_core::optout::OptOutSet;

use super::files::{
    read_optional, write_new_journal, JOURNAL, JOURNAL_TMP, SNAPSHOT, SNAPSHOT_TMP,
};
use super::snapshot;

/// The journal and snapshot generations disagree in a way a concurrent compaction explains.
#[derive(Debug)]
pub(super) struct GenerationRace(String);

impl std::fmt::Display for GenerationRace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GenerationRace {}

pub(super) enum JournalState {
    /// No journal file (a new store).
    Missing,
    /// A journal older than the snapshot: already folded in.
    Stale,
    /// Replayed up to `valid_len`; bytes after it are a torn tail.
    Replayed { valid_len: u64, file_len: u64 },
}

pub(super) struct Loaded {
    pub(super) set: OptOutSet,
    pub(super) generation: u64,
    pub(super) snapshot_len: u64,
    pub(super) journal: JournalState,
}

/// Removes what a crash during a rewrite left behind (never committed, so never needed).
pub(super) fn remove_leftovers(dir: &Path) -> Result<()> {
    for tmp in [SNAPSHOT_TMP, JOURNAL_TMP] {
        let path = dir.join(tmp);
        if path.exists() {
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

/// Reads the snapshot and replays the journal over it, changing nothing on disk.
pub(super) fn load(dir: &Path) -> Result<Loaded> {
    let (set, generation, snapshot_len) =
        snapshot::read(dir)?.unwrap_or_else(|| (OptOutSet::new(), 0, 0));
    let mut loaded = Loaded {
        set,
        generation,
        snapshot_len,
        journal: JournalState::Missing,
    };
    let journal_path = dir.join(JOURNAL);
    let Some(bytes) = read_optional(&journal_path)? else {
        if snapshot_len > 0 {
            bail!(
                "{} is missing next to {}: opt-outs recorded since the snapshot would be lost; restore it",
                journal_path.display(),
                dir.join(SNAPSHOT).display()
            );
        }
        return Ok(loaded);
    };
    let shown = journal_path.display();
    let journal_generation =
        journal::read_header(&bytes).with_context(|| format!("{shown} is corrupted"))?;
    if journal_generation < generation {
        loaded.journal = JournalState::Stale;
        return Ok(loaded);
    }
    if journal_generation > generation {
        return Err(anyhow!(GenerationRace(format!(
            "{shown} (generation {journal_generation}) is newer than {} (generation {generation}): the snapshot was lost or replaced",
            dir.join(SNAPSHOT).display()
        ))));
    }
    let valid_len = journal::replay(&bytes, &mut loaded.set)
        .with_context(|| format!("{shown} is corrupted"))?;
    loaded.journal = JournalState::Replayed {
        valid_len: valid_len as u64,
        file_len: bytes.len() as u64,
    };
    Ok(loaded)
}

/// Makes the journal appendable again after [`load`]: starts a new one if it was missing or
/// stale, cuts a torn tail off. Returns the journal's length.
pub(super) fn repair(dir: &Path, loaded: &Loaded) -> Result<u64> {
    let journal_path = dir.join(JOURNAL);
    match loaded.journal {
        JournalState::Missing => {
            log::info!("created a new, empty opt-out store in {}", dir.display());
        }
        JournalState::Stale => {
            log::info!(
                "{}: discarding a journal already folded into snapshot generation {}",
                journal_path.display(),
                loaded.generation
            );
        }
        JournalState::Replayed {
            valid_len,
            file_len,
        } => {
            if valid_len < file_len {
                cut_torn_tail(&journal_path, valid_len, file_len)?;
            }
            return Ok(valid_len);
        }
    }
    write_new_journal(dir, loaded.generation)?;
    Ok(journal::HEADER_LEN as u64)
}

fn cut_torn_tail(journal_path: &Path, valid_len: u64, file_len: u64) -> Result<()> {
    log::warn!(
        "{}: ignoring {} bytes at byte {} that do not form a whole change: a write a crash cut short, which was never acknowledged",
        journal_path.display(),
        file_len - valid_len,
        valid_len
    );
    let file = OpenOptions::new()
        .write(true)
        .open(journal_path)
        .with_context(|| format!("cannot open {}", journal_path.display()))?;
    file.set_len(valid_len)
        .and_then(|()| file.sync_all())
        .with_context(|| {
            format!(
                "cannot cut the unfinished write off {}",
                journal_path.display()
            )
        })
}
