//! The `check` command on the bundled policy and on bad fixtures, run as a user would.
mod util;

use std::path::Path;
use std::process::Command;

use util::{output_with_stdin, BIN};

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
    // `certs` (a link to the repository's) holds the key files the fixtures name.
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("expected.txt").exists())
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

#[test]
fn output_that_cannot_be_written_is_an_error_not_a_panic() {
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/policy");
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/policy/examples");
    let commands: [&[&str]; 3] = [
        &["check", "--policy", policy],
        &["test", "--policy", policy],
        &[
            "diff",
            "--policy",
            policy,
            "--against",
            policy,
            "--samples",
            samples,
        ],
    ];
    for args in commands {
        // A full disk: the output is incomplete, so exit 1 with the reason on stderr.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(BIN).args(args).stdout(full).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot write the output"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        // A reader that went away (`| head -0`): the verdict stands.
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        // A stderr whose reader went away (the warnings cannot be written): the verdict stands.
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stderr.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?} with a broken stderr");
    }
    // Commands whose output is the result: a full disk is exit 1, never 0 with nothing written.
    let key = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/callers-demo.pem");
    let explain: &[&str] = &["explain", "--policy", policy, "--partner", "fixit-support"];
    let commands: [(&[&str], &str); 2] = [
        (&["token", "--key", key, "--sub", "orders-service"], ""),
        (
            &[explain, &["--path", "/v1/tickets"]].concat(),
            r#"{"ticket_id":"t-1"}"#,
        ),
    ];
    for (args, stdin) in commands {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("FIXIT_SUPPORT_PSEUDONYM_KEY", "k")
            .stdout(full)
            .stderr(std::process::Stdio::piped());
        let out = output_with_stdin(&mut command, stdin.as_bytes());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("No space left"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// `mock-partner` on an address it cannot listen on says so and exits instead of running on
/// without listening: 2 (a usage error) for one that is no address, 1 for one that is taken,
/// as `serve` does.
#[test]
fn mock_partner_exits_on_an_address_it_cannot_listen_on() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    for (listen, says, code) in [
        ("nonsense", "is not an IP:PORT address", 2),
        (busy.as_str(), "cannot listen on", 1),
    ] {
        let out = std::process::Command::new(BIN)
            .args(["mock-partner", "--listen", listen])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{listen}: {stderr}");
        assert!(stderr.contains(says), "{listen}: {stderr}");
    }
}

/// `token` without `--issuer`/`--audience` takes them from the policy: a policy that does not
/// load says so, with its `FILE:LINE` errors, instead of claiming it has no `callers` section.
#[test]
fn token_names_the_errors_of_a_policy_that_does_not_load() {
    let tmp = bundled_copy(&["policy", "certs"]);
    let partner = tmp.path().join("policy/partners/acme-ship.yaml");
    let yaml = std::fs::read_to_string(&partner).unwrap();
    std::fs::write(&partner, yaml.replacen("methods:", "methodz:", 1)).unwrap();
    let out = Command::new(BIN)
        .args(["token", "--sub", "orders-service", "--key"])
        .arg(tmp.path().join("certs/callers-demo.pem"))
        .arg("--policy")
        .arg(tmp.path().join("policy"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not load"), "{stderr}");
    assert!(stderr.contains("acme-ship.yaml:"), "{stderr}");
    assert!(!stderr.contains("no `callers` section"), "{stderr}");
}

/// A temporary directory holding copies of the repository's `dirs` (`policy`, `certs`).
fn bundled_copy(dirs: &[&str]) -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    for dir in dirs {
        let status = Command::new("cp")
            .arg("-r")
            .arg(root.join(dir))
            .arg(tmp.path())
            .status()
            .unwrap();
        assert!(status.success(), "cp {dir}");
    }
    tmp
}

/// `check` lists the problem of every file the gateway section names, not only the first
/// (here the callers' key set, the signing key and the listener's certificate and key, all
/// missing), each on its own line.
#[test]
fn check_lists_every_unreadable_key_file() {
    let tmp = bundled_copy(&["policy", "certs"]);
    let gateway = tmp.path().join("policy/gateway.yaml");
    let text = std::fs::read_to_string(&gateway).unwrap();
    let text = text
        .replace("certs/callers.jwks.json", "certs/missing.jwks")
        .replace("key: certs/data-use", "key: certs/missing")
        + "tls:\n  cert: certs/missing-cert.pem\n  key: certs/missing-key.pem\n";
    std::fs::write(&gateway, text).unwrap();
    let (code, out) = check(tmp.path().join("policy").to_str().unwrap());
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("missing")).collect();
    assert_eq!(lines.len(), 4, "{out}");
    for key in ["callers.keys", "signing.key", "tls.cert", "tls.key"] {
        let line = lines.iter().find(|l| l.contains(key));
        assert!(
            line.is_some_and(|l| l.contains("gateway.yaml:")),
            "{key}: {out}"
        );
    }
}

/// An error in one policy file hides no problem of the key files another names: the files
/// named by what validated are loaded too.
#[test]
fn a_yaml_error_elsewhere_hides_no_key_file_problem() {
    let tmp = bundled_copy(&["policy", "certs"]);
    let gateway = tmp.path().join("policy/gateway.yaml");
    let text = std::fs::read_to_string(&gateway).unwrap();
    std::fs::write(
        &gateway,
        text.replace("certs/callers.jwks.json", "certs/missing.jwks"),
    )
    .unwrap();
    let payflow = tmp.path().join("policy/partners/payflow.yaml");
    let text = std::fs::read_to_string(&payflow).unwrap();
    std::fs::write(&payflow, text.replacen("purpose:", "purpos:", 1)).unwrap();
    let (code, out) = check(tmp.path().join("policy").to_str().unwrap());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("payflow.yaml:") && out.contains("purpos"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("gateway.yaml:") && l.contains("callers.keys")),
        "{out}"
    );
}

/// A partner file's own mistake hides no problem of the certificate files its `tls` section
/// names, nor does a mistake in gateway.yaml hide those of the key files it names or of a
/// partner file that validated.
#[test]
fn a_mistake_in_a_partner_file_hides_no_problem_of_its_certificates() {
    let tmp = bundled_copy(&["policy", "certs"]);
    let partners = tmp.path().join("policy/partners");
    let text = "kind: contractor\npurpose: shipping\nupstream: https://127.0.0.1:29999\n\
                tls: { ca: certs/nope.pem }\n\
                routes: [{ path: /v1/a, methods: [POST], allow: [b], categories: {b: user.nmae} }]\n\
                allowed_callers: [orders-service]\n";
    std::fs::write(partners.join("zz.yaml"), text).unwrap();
    let policy = tmp.path().join("policy");
    let (code, out) = check(policy.to_str().unwrap());
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("zz.yaml:")).collect();
    assert!(
        lines[0].contains("zz.yaml:4: tls.ca ") && lines[0].contains("nope.pem"),
        "{out}"
    );
    assert!(
        lines[1].contains("zz.yaml:5: unknown data category"),
        "{out}"
    );

    let fixed = text.replace("user.nmae", "user.name");
    std::fs::write(partners.join("zz.yaml"), fixed).unwrap();
    let gateway = policy.join("gateway.yaml");
    let text = std::fs::read_to_string(&gateway).unwrap();
    let text = text
        .replacen("listen:", "listn:", 1)
        .replace("key: certs/data-use-signing.pem", "key: certs/missing.pem");
    std::fs::write(&gateway, text).unwrap();
    let (code, out) = check(policy.to_str().unwrap());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("listn"), "{out}");
    assert!(out.contains("zz.yaml:4: tls.ca "), "{out}");
    assert!(
        out.contains(": signing.key ") && out.contains("missing.pem"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");
}

/// A key file's problem is reported on the line of the key that names it: not on a comment
/// that mentions the file, nor on another key naming the same file.
#[test]
fn a_key_files_problem_is_on_the_line_of_its_key() {
    let tmp = bundled_copy(&["policy", "certs"]);
    let gateway = tmp.path().join("policy/gateway.yaml");
    let text = std::fs::read_to_string(&gateway).unwrap();
    let text = format!("# rotate certs/callers.jwks.json every year\n{text}").replace(
        "key: certs/data-use-signing.pem",
        "key: certs/callers.jwks.json",
    );
    std::fs::write(&gateway, &text).unwrap();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let (code, out) = check(tmp.path().join("policy").to_str().unwrap());
    assert_eq!(code, 1, "{out}");
    let key_line = line_of("  key: certs/callers.jwks.json");
    assert!(
        out.contains(&format!("gateway.yaml:{key_line}: signing.key ")),
        "{out}"
    );
    assert_eq!(out.matches(": signing.key ").count(), 1, "{out}");
}

/// A partner file that is not UTF-8 is reported at the line of its first bad byte, and the
/// other files' errors are still listed.
#[test]
fn a_file_that_is_not_utf8_hides_no_other_error() {
    let tmp = bundled_copy(&["policy"]);
    let partners = tmp.path().join("policy/partners");
    std::fs::write(
        partners.join("zeta.yaml"),
        b"kind: contractor\npurpose: x\xff\n",
    )
    .unwrap();
    let payflow = partners.join("payflow.yaml");
    let text = std::fs::read_to_string(&payflow).unwrap();
    std::fs::write(
        &payflow,
        text.replacen("kind: contractor", "kind: contractr", 1),
    )
    .unwrap();
    let (code, out) = check(tmp.path().join("policy").to_str().unwrap());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("zeta.yaml:2: cannot read file: invalid utf-8"),
        "{out}"
    );
    assert!(
        out.contains("payflow.yaml:") && out.contains("contractr"),
        "{out}"
    );
}

/// Callers verified with an HS256 secret only: `check` reads no secrets, so it judges the rest
/// of the section and passes; `serve` reads the secret (and refuses a short one).
#[test]
fn an_hs256_only_callers_section_passes_check() {
    let tmp = bundled_copy(&["policy", "certs"]);
    let gateway = tmp.path().join("policy/gateway.yaml");
    let text = std::fs::read_to_string(&gateway).unwrap();
    let text = text.replace(
        "  keys: certs/callers.jwks.json                # DEMO key (see certs/README.md)\n",
        "  hs256_secret_env: CLI_TEST_HS256_SECRET\n",
    );
    assert!(text.contains("hs256_secret_env"));
    std::fs::write(&gateway, text).unwrap();
    let (code, out) = check(tmp.path().join("policy").to_str().unwrap());
    assert_eq!(code, 0, "{out}");
}
