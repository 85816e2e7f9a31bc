//! Reads a policy directory the way the shell does, for the loader's tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use gateway_core::policy::{PolicySource, SourceFile};

/// The workspace root (cargo runs these tests in `crates/core`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads `shown` (relative to the workspace root, e.g. `policy/`) into a [`PolicySource`] whose
/// file paths are displayed as `check --policy shown` would show them.
pub fn read_policy(shown: &str) -> PolicySource {
    let dir = workspace().join(shown);
    let base = shown.trim_end_matches('/');
    let read = |relative: &str| SourceFile {
        path: format!("{base}/{relative}"),
        text: std::fs::read_to_string(dir.join(relative))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(relative).display())),
    };
    let mut names: Vec<String> = std::fs::read_dir(dir.join("partners"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    PolicySource {
        dir: PathBuf::from(shown),
        gateway: read("gateway.yaml"),
        partners: names
            .iter()
            .map(|n| read(&format!("partners/{n}")))
            .collect(),
    }
}
