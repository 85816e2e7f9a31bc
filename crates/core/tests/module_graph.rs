//! The core's module graph: no cycles, and `docs/architecture.md` draws it as it is.
//!
//! An edge `a ──> b` is any `crate::b` outside comments in the non-test files of top-level module
//! `a` (unit tests may use any module).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !is_test_file(&path) {
            out.push(path);
        }
    }
}

fn is_test_file(path: &Path) -> bool {
    let stem = path.file_stem().unwrap().to_string_lossy();
    stem == "tests" || stem.ends_with("_tests")
}

/// `crate::name` references in code, skipping `//` comments and `/*! */` blocks.
fn references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut in_block = false;
    for line in text.lines() {
        let line = line.trim_start();
        if in_block {
            in_block = !line.contains("*/");
            continue;
        }
        if line.starts_with("/*") {
            in_block = !line.contains("*/");
            continue;
        }
        if line.starts_with("//") {
            continue;
        }
        for (i, _) in line.match_indices("crate::") {
            let name: String = line[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn code_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if name == "lib" {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path.clone());
        }
        let uses = graph.entry(name.clone()).or_default();
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            uses.extend(references(&text));
        }
        uses.remove(&name);
        // `refusal` is used by every module that refuses (also as `crate::Refusal`).
        uses.remove("refusal");
    }
    graph
}

fn documented_graph() -> Graph {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/architecture.md");
    let text = fs::read_to_string(doc).unwrap();
    let core = text
        .split("## The core's modules")
        .nth(1)
        .and_then(|rest| rest.split("## The shell").next())
        .expect("docs/architecture.md has a section \"The core's modules\"");
    let mut graph = Graph::new();
    for line in core.lines() {
        let Some((from, to)) = line.split_once("──>") else {
            continue;
        };
        let from = from.trim();
        let uses = graph.entry(from.to_string()).or_default();
        for name in to.split(',').map(str::trim) {
            if name != "(nothing)" {
                uses.insert(name.to_string());
            }
        }
    }
    graph
}

#[test]
fn the_core_module_graph_has_no_cycle() {
    let graph = code_graph();
    // Kahn: repeatedly remove modules that use nothing left.
    let mut left = graph.clone();
    while let Some(leaf) = left
        .iter()
        .find(|(_, uses)| uses.iter().all(|u| !left.contains_key(u)))
        .map(|(name, _)| name.clone())
    {
        left.remove(&leaf);
    }
    assert!(left.is_empty(), "modules in a cycle: {left:#?}");
}

#[test]
fn the_architecture_page_draws_the_module_graph_as_it_is() {
    assert_eq!(documented_graph(), code_graph());
}
