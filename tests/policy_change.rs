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
    // Bodies that differ only in layout say so, and show both as written.
    assert!(
        out.contains(&format!(
            "{file}:31: FAIL a block string ends in a newline (wrong): the partner would receive a different body: it differs only in layout"
        )),
        "{out}"
    );
    assert!(out.contains(r#"- "{\"order_id\":\"o-1\"}\n""#), "{out}");
    assert!(out.contains(r#"+ "{\"order_id\":\"o-1\"}""#), "{out}");
    assert!(out.trim_end().ends_with("1 passed, 3 failed"), "{out}");
}

#[test]
fn an_invalid_policy_fails_the_tests() {
    let (code, out, _) = run(&["test", "--policy", "tests/fixtures/policies/misspelt-key"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("partners/acme-ship.yaml:"), "{out}");
}

/// A copy of the bundled policy (partners, tests and examples) with `edit` applied to one
/// partner file: `ROOT/policy`, beside `ROOT/certs`, a link to the bundled certificates and keys
/// (policies name them relative to the directory that holds `policy/`).
struct Edited {
    root: tempfile::TempDir,
}

impl Edited {
    /// The policy directory.
    fn dir(&self) -> String {
        self.root
            .path()
            .join("policy")
            .to_str()
            .unwrap()
            .to_string()
    }
}

/// A copy of the bundled policy directory at `ROOT/policy`, without `ROOT/certs`.
fn copied_policy() -> tempfile::TempDir {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("policy");
    for sub in ["", "partners", "examples", "tests"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for entry in std::fs::read_dir(repo.join("policy").join(sub))
            .unwrap()
            .flatten()
        {
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    root
}

fn edited_policy(partner: &str, edit: impl Fn(String) -> String) -> Edited {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = copied_policy();
    let dir = root.path().join("policy");
    std::os::unix::fs::symlink(repo.join("certs"), root.path().join("certs")).unwrap();
    let file = dir.join(format!("partners/{partner}.yaml"));
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(&file, edited).unwrap();
    Edited { root }
}

#[test]
fn diff_reports_a_newly_sent_field_in_words_and_exits_4() {
    let new = edited_policy("acme-ship", |t| {
        t.replace(
            "      shipments[*].email: remove          # written out for the reader: not allowed anyway\n",
            "",
        )
        .replace("      - shipments[*].name\n", "      - shipments[*].name\n      - shipments[*].email\n")
        .replace(
            "      shipments[*].name: user.name\n",
            "      shipments[*].name: user.name\n      shipments[*].email: user.contact.email\n",
        )
    });
    let new_dir = &new.dir();
    let (code, out, err) = run(&["diff", "--policy", "policy/", "--against", new_dir]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        out.contains(
            "+ acme-ship will START receiving shipments[*].email (user.contact.email) in clear on POST /v1/shipments"
        ),
        "{out}"
    );
    assert!(out.contains("DISCLOSES MORE"), "{out}");

    // the sample bodies show the new bytes
    let (code, out, _) = run(&[
        "diff",
        "--policy",
        "policy/",
        "--against",
        new_dir,
        "--samples",
        "policy/examples",
    ]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("policy/examples/requests.yaml:7: a shipment: changed"),
        "{out}"
    );
    assert!(
        out.contains("+       \"email\": \"ana.lima@example.com\","),
        "{out}"
    );
    assert!(out.contains(": a tax filing: same"), "{out}");

    // the machine-readable form says the same
    let (code, out, _) = run(&[
        "diff",
        "--policy",
        "policy/",
        "--against",
        new_dir,
        "--format",
        "json",
    ]);
    assert_eq!(code, 4);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["discloses_more"], true);
    assert_eq!(doc["changes"][0]["change"], "field_started");
    assert_eq!(doc["changes"][0]["subject"], "shipments[*].email");
    assert_eq!(doc["changes"][0]["route"], "POST /v1/shipments");
    // Every key is there, null where it does not apply.
    let keys: Vec<&String> = doc["changes"][0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "after",
            "before",
            "category",
            "change",
            "discloses_more",
            "partner",
            "route",
            "subject",
            "text"
        ]
    );
}

#[test]
fn diff_of_a_removed_route_exits_0_and_the_way_back_exits_4() {
    let new = edited_policy("fixit-support", |t| {
        let start = t.find("  - path: /v1/tickets/{id}").unwrap();
        let end = t.find("allowed_callers").unwrap();
        format!("{}{}", &t[..start], &t[end..])
    });
    let new_dir = &new.dir();
    let (code, out, _) = run(&["diff", "--policy", "policy/", "--against", new_dir]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "- fixit-support will STOP receiving anything on GET /v1/tickets/{id} (route removed)"
        ),
        "{out}"
    );
    let (code, out, _) = run(&["diff", "--policy", new_dir, "--against", "policy/"]);
    assert_eq!(code, 4, "{out}");
}

/// A `shadow` policy directory that is not there makes the policy invalid (exit 1), as `check`
/// and `serve` say: a CI gate on `diff` passes nothing the gateway would refuse to run.
#[test]
fn diff_refuses_a_policy_whose_shadow_directory_is_missing() {
    let new = edited_policy("acme-ship", |t| t + "\n");
    let gateway = std::path::Path::new(&new.dir()).join("gateway.yaml");
    let text = std::fs::read_to_string(&gateway).unwrap();
    std::fs::write(&gateway, text + "shadow: { policy: nonexistent/ }\n").unwrap();
    for args in [
        ["diff", "--policy", "policy/", "--against", &new.dir()],
        ["diff", "--policy", &new.dir(), "--against", "policy/"],
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, 1, "{out}{err}");
        assert!(format!("{out}{err}").contains("nonexistent"), "{out}{err}");
    }
}

#[test]
fn diff_of_a_dropped_opt_out_scope_exits_4_and_of_no_change_exits_0() {
    let new = edited_policy("brightmail-offers", |t| {
        t.replace(
            "allowed_callers:",
            "honor_optouts: [partner_sharing]\nallowed_callers:",
        )
    });
    let (code, out, _) = run(&["diff", "--policy", "policy/", "--against", &new.dir()]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("NO LONGER honour the opt-out scope partner:brightmail-offers"),
        "{out}"
    );
    let (code, out, _) = run(&["diff", "--policy", "policy/", "--against", "policy/"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no change"), "{out}");
}

#[test]
fn diff_against_an_invalid_policy_exits_1() {
    let (code, out, _) = run(&[
        "diff",
        "--policy",
        "policy/",
        "--against",
        "tests/fixtures/policies/misspelt-key",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("partners/acme-ship.yaml:"), "{out}");
}

/// `check` and `serve` refuse a policy whose signing key is no key; so does `diff` (exit 1, the
/// file named at its `gateway.yaml` line), not "no change".
#[test]
fn diff_against_a_policy_with_an_unusable_key_file_exits_1() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = copied_policy();
    std::fs::create_dir(root.path().join("certs")).unwrap();
    for entry in std::fs::read_dir(repo.join("certs")).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(
                entry.path(),
                root.path().join("certs").join(entry.file_name()),
            )
            .unwrap();
        }
    }
    std::fs::write(root.path().join("certs/data-use-signing.pem"), "garbage\n").unwrap();
    let new = root.path().join("policy");
    let (code, out, err) = run(&[
        "diff",
        "--policy",
        "policy/",
        "--against",
        new.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("gateway.yaml:") && out.contains("signing.key"),
        "{out}"
    );
    assert!(!out.contains("no change"), "{out}");
}

/// A copy of the bundled policy ([`edited_policy`]) whose acme-ship is reached over https,
/// trusting `ROOT/ca/acme-ca.pem`, which holds `ca`.
fn https_policy_with_ca(ca: &str) -> Edited {
    let policy = edited_policy("acme-ship", |t| {
        t.replace(
            "upstream: http://127.0.0.1:9001",
            "upstream: https://api.acme-ship.example\ntls: { ca: ca/acme-ca.pem }",
        )
    });
    std::fs::create_dir_all(policy.root.path().join("ca")).unwrap();
    std::fs::write(policy.root.path().join("ca/acme-ca.pem"), ca).unwrap();
    policy
}

#[test]
fn diff_compares_a_partner_ca_by_what_it_holds_not_where_it_is() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let pem = |name: &str| std::fs::read_to_string(repo.join("certs").join(name)).unwrap();
    let ca = &pem("demo-ca.pem");
    let (old, same) = (https_policy_with_ca(ca), https_policy_with_ca(ca));
    let dir = Edited::dir;
    // The same CA in another checkout, even with other line endings: no change.
    let (code, out, err) = run(&["diff", "--policy", &dir(&old), "--against", &dir(&same)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("verified with"), "{out}");
    let crlf = https_policy_with_ca(&ca.replace('\n', "\r\n"));
    let (code, out, err) = run(&["diff", "--policy", &dir(&old), "--against", &dir(&crlf)]);
    assert_eq!(code, 0, "{out}{err}");
    // The same file name holding another CA: another endpoint may be taken for the partner.
    let other = https_policy_with_ca(&pem("partner.pem"));
    let (code, out, err) = run(&["diff", "--policy", &dir(&old), "--against", &dir(&other)]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        out.contains("+ acme-ship's endpoint will be verified with CA"),
        "{out}"
    );
}

/// payflow with `card.*` allowed, and with `card.cvc: remove` beside it when `guarded`.
fn payflow_card_wildcard(guarded: bool) -> Edited {
    edited_policy("payflow", |t| {
        let t = t
            .replace("      - card.expiry\n", "      - card.*\n")
            .replace(
                "      card.expiry: user.financial.credit_card\n",
                "      card.*: user.financial.credit_card\n",
            );
        if guarded {
            t.replace(
                "      card.number: last4\n",
                "      card.number: last4\n      card.cvc: remove\n",
            )
        } else {
            t
        }
    })
}

#[test]
fn diff_sees_a_remove_taken_out_beside_a_wildcard_and_a_sample_that_gains_a_field() {
    let (old, new) = (payflow_card_wildcard(true), payflow_card_wildcard(false));
    let (old_dir, new_dir) = (&old.dir(), &new.dir());
    let (code, out, err) = run(&["diff", "--policy", old_dir, "--against", new_dir]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(out.contains("card.cvc"), "{out}");
    let (code, out, _) = run(&["diff", "--policy", new_dir, "--against", old_dir]);
    assert_eq!(
        code, 0,
        "putting the remove back discloses nothing more: {out}"
    );
    assert!(out.contains("card.cvc"), "{out}");

    // The sample's body gains the field: the sample says the partner would receive more.
    let samples = tempfile::tempdir().unwrap();
    std::fs::write(
        samples.path().join("orders.yaml"),
        r#"- name: an order with its card
  partner: payflow
  method: POST
  path: /v1/orders
  caller: orders-service
  body: {"order_id": "o-1", "card": {"number": "4111111111111111", "cvc": "123", "expiry": "09/28"}}
"#,
    )
    .unwrap();
    let samples_dir = samples.path().to_str().unwrap();
    let sample_diff = |from: &str, to: &str| {
        let (code, out, _) = run(&[
            "diff",
            "--policy",
            from,
            "--against",
            to,
            "--samples",
            samples_dir,
            "--format",
            "json",
        ]);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        (code, doc)
    };
    let (code, doc) = sample_diff(old_dir, new_dir);
    assert_eq!(code, 4, "{doc}");
    assert_eq!(doc["samples"][0]["outcome"], "changed", "{doc}");
    assert_eq!(doc["samples"][0]["discloses_more"], true, "{doc}");
    let (code, doc) = sample_diff(new_dir, old_dir);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["samples"][0]["discloses_more"], false, "{doc}");
}

#[test]
fn an_editors_lock_file_beside_the_partners_is_not_a_partner() {
    let policy = edited_policy("payflow", |t| format!("{t}\n"));
    let dir = policy.dir();
    // Emacs's lock while payflow.yaml has unsaved changes: a symlink to nowhere.
    std::os::unix::fs::symlink(
        "root@host.1234:1700000000",
        std::path::Path::new(&dir).join("partners/.#payflow.yaml"),
    )
    .unwrap();
    let (code, out, err) = run(&["check", "--policy", &dir]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_copy_of_the_policy_without_its_certificates_is_no_change() {
    // Two copies that both lack `certs/`: the same files, unread alike.
    let (one, two) = (copied_policy(), copied_policy());
    let dir = |root: &tempfile::TempDir| root.path().join("policy").to_str().unwrap().to_string();
    let (code, out, err) = run(&["diff", "--policy", &dir(&one), "--against", &dir(&two)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no change"), "{out}");
}
