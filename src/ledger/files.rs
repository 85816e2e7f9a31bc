//! The ledger directory on disk: its lock (one writing process per directory, [`DirLock`]),
//! finding the current file, repairing a line a crash cut off, and resuming the chain from the
//! last complete line.
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use gateway_core::ledger::{self, Chain};

/// The file records are appended to, and where the chain stands.
pub struct Current {
    pub file: File,
    pub path: PathBuf,
    pub date: String,
    pub n: u32,
    pub len: u64,
    pub chain: Chain,
}

/// The ledger files of `dir` in chain order (names only; regular files, or links to them).
pub fn ledger_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        // Only files (a directory that merely has a ledger file's name is no part of it).
        if let (Some(name), true) = (entry.file_name().to_str(), entry.path().is_file()) {
            names.push(name.to_string());
        }
    }
    Ok(ledger::chain_order(names))
}

/// A ledger directory locked by this process: `flock` (exclusive) on the directory itself, held
/// until dropped or the process dies. A second gateway appending to the same files would fork
/// the chain; the lock is the directory's own, so removing a file cannot release it.
pub struct DirLock {
    dir: File,
}

impl DirLock {
    /// Creates `dir` when missing and locks it.
    pub fn take(dir: &Path) -> anyhow::Result<DirLock> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let file = File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DirLock { dir: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => bail!(
                "ledger {} is in use by another process (another gateway?): each gateway needs a ledger directory of its own",
                dir.display()
            ),
            Err(e) => Err(e).with_context(|| format!("cannot lock {}", dir.display())),
        }
    }

    /// Whether `dir` still names the directory locked (it was not moved away or replaced).
    pub fn still_at(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.dir.metadata(), fs::metadata(dir)) {
            (Ok(held), Ok(now)) => held.dev() == now.dev() && held.ino() == now.ino(),
            _ => false,
        }
    }
}

/// Opens the ledger in `dir` (locked by the caller, see [`DirLock`]) for appending, creating
/// the first file of `today` when there is none, once the directory takes new bytes
/// ([`probe`]). A last line without its newline is repaired first ([`repair_tail`]).
pub fn open(dir: &Path, today: &str) -> anyhow::Result<Current> {
    probe(dir)?;
    let names = ledger_files(dir)?;
    let Some(last) = names.last() else {
        return create(dir, today, 1, Chain::new());
    };
    let path = dir.join(last);
    let (date, n) = ledger::parse_file_name(last).context("ledger file name")?;
    let len = repair_tail(&path, &|| chain_before(dir, &names, names.len() - 1))?;
    let chain = resume(dir, &names)?;
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {} for appending", path.display()))?;
    Ok(Current {
        file,
        path,
        date,
        n,
        len,
        chain: chain.unwrap_or_default(),
    })
}

/// The chain up to file `i` of `names`: resumed from the newest file before it that has a
/// line (the start of the chain when there is none; `None` when one cannot be read).
fn chain_before(dir: &Path, names: &[String], i: usize) -> Option<Chain> {
    for name in names[..i].iter().rev() {
        match Chain::resume_file(&read_regular(&dir.join(name)).ok()?) {
            Ok(Some(chain)) => return Some(chain),
            Ok(None) => continue,
            Err(_) => return None,
        }
    }
    Some(Chain::new())
}

/// Where the chain resumes: after the last line of the newest file that has one. Files after it
/// are empty (a crash at rotation), so its tail is repaired as the newest file's is.
fn resume(dir: &Path, names: &[String]) -> anyhow::Result<Option<Chain>> {
    let last = names.len().saturating_sub(1);
    for (i, name) in names.iter().enumerate().rev() {
        if i != last {
            repair_tail(&dir.join(name), &|| chain_before(dir, names, i))?;
        }
        let bytes = read_regular(&dir.join(name))?;
        let resumed = Chain::resume_file(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{}: the last line is not a ledger line ({e}); run `partner-gateway audit verify`",
                dir.join(name).display()
            )
        })?;
        if resumed.is_some() {
            return Ok(resumed);
        }
    }
    Ok(None)
}

/// How many bytes [`probe`] writes: room for a few dozen records.
const PROBE_BYTES: usize = 16 * 1024;

/// Whether `dir` takes new bytes now: writes, syncs and removes a probe file (not a ledger
/// file's name, so never part of the chain). Opening the current file proves nothing: a full
/// disk still opens.
fn probe(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(".write-probe");
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(&[b'\n'; PROBE_BYTES])?;
            f.sync_data()
        });
    let _ = fs::remove_file(&path);
    written.with_context(|| format!("cannot write to {}", dir.display()))
}

/// Starts file `n` of `date` (it must not exist yet).
pub fn create(dir: &Path, date: &str, n: u32, chain: Chain) -> anyhow::Result<Current> {
    let path = dir.join(ledger::file_name(date, n));
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // The new name must survive a crash too.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Current {
        file,
        path,
        date: date.to_string(),
        n,
        len: 0,
        chain,
    })
}

/// Removes a ledger file that was opened but never written to (a rotation left it behind). A
/// failure leaves an empty file, which holds no part of the chain either.
pub fn remove_empty(dir: &Path, path: &Path) {
    let empty = fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0);
    if empty && fs::remove_file(path).is_ok() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// The next file number for `date` after the files already in `dir`.
pub fn next_number(dir: &Path, date: &str) -> anyhow::Result<u32> {
    let max = ledger_files(dir)?
        .iter()
        .filter_map(|n| ledger::parse_file_name(n))
        .filter(|(d, _)| d == date)
        .map(|(_, n)| n)
        .max();
    Ok(max.map_or(1, |n| n + 1))
}

/// Repairs a last line that has no newline: a whole line that follows the one before it only
/// lost its newline, which is given back; anything else was cut off before it was acknowledged
/// and is removed. The line before is the file's own, or, for its first line, the chain of the
/// files before it (`before`). Returns the file's length after.
fn repair_tail(path: &Path, before: &dyn Fn() -> Option<Chain>) -> anyhow::Result<u64> {
    let bytes = read_regular(path)?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(bytes.len() as u64);
    }
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let (head, tail) = bytes.split_at(keep);
    let chain = match Chain::resume_file(head) {
        Ok(Some(chain)) => Some(chain),
        Ok(None) => before(),
        Err(_) => None,
    };
    if let Some(chain) = chain {
        if chain.continues_with(tail) {
            OpenOptions::new()
                .append(true)
                .open(path)
                .and_then(|mut f| {
                    f.write_all(b"\n")?;
                    f.sync_all()
                })
                .with_context(|| format!("cannot repair {}", path.display()))?;
            log::warn!(
                "{}: gave a complete last line (seq {}) back its newline (a crash cut it off after the line)",
                path.display(),
                chain.next_seq()
            );
            return Ok(bytes.len() as u64 + 1);
        }
    }
    log::warn!(
        "{}: removed an incomplete last line of {} bytes (cut off by a crash before it was acknowledged)",
        path.display(),
        bytes.len() - keep
    );
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot repair {}", path.display()))?;
    file.set_len(keep as u64)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot repair {}", path.display()))?;
    Ok(keep as u64)
}

/// Reads a ledger file, refusing anything but a regular file (a device never ends).
fn read_regular(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot open {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes)
}
