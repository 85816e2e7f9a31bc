//! Changing a policy safely, run as a user would: `test` (policy tests beside the policy) and
//! `diff` (what a change starts or stops disclosing).
mod util;

use std::process::Command;

use util::BIN;

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn policy_tests_pass_on_the_bundled_policy() {
    let (code, out, err) = run(&["test", "--policy", "policy/"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn a_wrong_expectation_fails_with_file_line_and_a_diff() {
    let dir = "tests/fixtures/policytests/wrong-expectation";
    let (code, out, _) = run(&["test", "--policy", dir]);
    assert_eq!(code, 1, "{out}");
    let file = format!("{dir}/tests/shipments.yaml");
    assert!(
        out.contains(&format!(
            "{file}:15: FAIL the email is expected in clear (wrong): the partner would receive a different body"
        )),
        "{out}"
    );
    assert!(
        out.contains("-       \"email\": \"ana@example.com\","),
        "{out}"
    );
    assert!(out.contains("+       \"email\": \"***\","), "{out}");
    assert!(
        out.contains(&format!(
            "{file}:22: FAIL expected a refusal that does not happen (wrong): expected refusal 400 bad_request"
        )),
        "{out}"
    );
    assert!(out.trim_end().ends_with("1 passed, 2 failed"), "{out}");
}

#[test]
fn an_invalid_policy_fails_the_tests() {
    let (code, out, _) = run(&["test", "--policy", "tests/fixtures/policies/misspelt-key"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("partners/acme-ship.yaml:"), "{out}");
}
