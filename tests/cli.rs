//! The `check` command on the bundled policy and on bad fixtures, run as a user would.
mod util;

use std::path::Path;
use std::process::Command;

use util::BIN;

fn check(policy: &str) -> (i32, String) {
    let output = Command::new(BIN)
        .args(["check", "--policy", policy])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
    )
}

#[test]
fn bundled_policy_passes_check() {
    let (code, out) = check("policy/");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn the_bundled_demo_keys_are_named_as_such() {
    let output = Command::new(BIN)
        .args(["check", "--policy", "policy/"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    for file in [
        "certs/callers.jwks.json:1:",
        "certs/data-use-signing.pem:1:",
    ] {
        assert!(
            stderr.contains(file) && stderr.contains("a DEMO key"),
            "{file}: {stderr}"
        );
    }
}

#[test]
fn bad_fixtures_print_exactly_the_expected_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    for case in cases {
        let case = case.to_string_lossy();
        let dir = format!("tests/fixtures/policies/{case}");
        let expected = std::fs::read_to_string(root.join(&*case).join("expected.txt")).unwrap();
        let (code, out) = check(&dir);
        assert_eq!(code, 1, "{case}: {out}");
        assert_eq!(out.trim_end(), expected.trim_end(), "{case}");
    }
}
