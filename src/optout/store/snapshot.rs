//! Writing a snapshot file (through `snapshot.tmp`, fsync, rename, fsync of the directory,
//! so the file is always the old or the new one, never half of one) and reading one back.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use gateway_core::optout::codec::snapshot;
use gateway_core::optout::OptOutSet;

use super::files::{read_optional, sync_dir, SNAPSHOT, SNAPSHOT_TMP};

/// Writes and commits snapshot `generation` of `set` merged with `extra`. Returns its length.
pub(super) fn write(
    dir: &Path,
    generation: u64,
    set: &OptOutSet,
    extra: Option<&OptOutSet>,
) -> Result<u64> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let len = snapshot::encode::<anyhow::Error>(generation, set, extra, &mut |bytes| {
        out.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))
    })?;
    let file = out
        .into_inner()
        .map_err(|e| anyhow!("cannot write {}: {}", tmp.display(), e.error()))?;
    file.sync_all()
        .with_context(|| format!("cannot fsync {}", tmp.display()))?;
    drop(file);
    fs::rename(&tmp, dir.join(SNAPSHOT))
        .with_context(|| format!("cannot rename {} to {SNAPSHOT}", tmp.display()))?;
    sync_dir(dir)?;
    Ok(len)
}

/// The snapshot in `dir` (set, generation, length in bytes), or `None` when there is none.
pub(super) fn read(dir: &Path) -> Result<Option<(OptOutSet, u64, u64)>> {
    let path = dir.join(SNAPSHOT);
    let Some(bytes) = read_optional(&path)? else {
        return Ok(None);
    };
    let (set, generation) =
        snapshot::decode(&bytes).with_context(|| format!("{} is corrupted", path.display()))?;
    Ok(Some((set, generation, bytes.len() as u64)))
}
