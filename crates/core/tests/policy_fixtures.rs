//! Each bad policy under `tests/fixtures/policies/<case>/` fails to load with exactly the
//! diagnostics in its `expected.txt` (what `partner-gateway check --policy
//! tests/fixtures/policies/<case>` prints, one `FILE:LINE: message` per line).
mod util;

use gateway_core::policy;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/policies");

fn cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(ROOT)
        .expect("fixture directory")
        .flatten()
        // `certs` (a link to the repository's) holds the key files the fixtures name.
        .filter(|e| e.path().join("expected.txt").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    cases
}

fn diagnostics(case: &str) -> Vec<String> {
    let source = util::read_policy(&format!("tests/fixtures/policies/{case}"));
    match policy::load(&source, None) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn every_fixture_fails_with_exactly_its_expected_diagnostics() {
    let cases = cases();
    assert!(cases.len() >= 9, "{cases:?}");
    let mut mismatches = Vec::new();
    for case in &cases {
        let expected = std::fs::read_to_string(format!("{ROOT}/{case}/expected.txt"))
            .unwrap_or_else(|e| panic!("{case}/expected.txt: {e}"));
        let expected: Vec<&str> = expected.lines().filter(|l| !l.is_empty()).collect();
        let got = diagnostics(case);
        assert!(
            !got.is_empty(),
            "{case}: the policy loaded, but it should fail"
        );
        if got != expected {
            mismatches.push(format!(
                "{case}:\n  expected: {expected:#?}\n  got: {got:#?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The same fixtures also fail in serve mode, with the same diagnostics plus any unset secrets.
#[test]
fn serve_mode_reports_at_least_the_check_mode_diagnostics() {
    let env: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for case in cases() {
        let source = util::read_policy(&format!("tests/fixtures/policies/{case}"));
        let serve: Vec<String> = match policy::load(&source, Some(&env)) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        };
        for line in diagnostics(&case) {
            assert!(serve.contains(&line), "{case}: serve mode lost {line:?}");
        }
    }
}
