//! Intake hardening through the real binary: the data-use signing key is required (or disabled on
//! purpose, visibly), RSA signing keys stay refused, slow or greedy clients are cut off, and
//! framing the HTTP layer refuses never hangs.
mod util;

use std::path::Path;
use std::process::Command;

use util::*;

const RSA_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crates/core/src/callers/testdata/rsa.pem"
);

fn contractor(upstream: &str) -> String {
    format!(
        "kind: contractor\npurpose: shipping\nupstream: {upstream}\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    allow: [order_id]\nallowed_callers: [unauthenticated]\n"
    )
}

/// `check` on a policy directory: (exit code, stdout).
fn check(policy: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["check", "--policy"])
        .arg(policy)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const BASE: &str =
    "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:1\ncallers: { allow_unauthenticated: true }\n";

#[test]
fn a_policy_without_signing_does_not_pass_check() {
    let dir = PolicyDir::new(BASE, &[("acme-ship", &contractor("http://127.0.0.1:9"))]);
    let (code, out) = check(&dir.policy());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "gateway.yaml:1: no `signing` section: partners would receive no signed data-use token"
        ),
        "{out}"
    );

    let dir = PolicyDir::new(
        &format!("{BASE}signing: {{ disabled: true }}\n"),
        &[("acme-ship", &contractor("http://127.0.0.1:9"))],
    );
    let (code, out) = check(&dir.policy());
    assert_eq!(code, 0, "{out}");
}

#[test]
fn disabled_signing_shows_in_readyz_and_a_gauge() {
    let mock = Mock::start();
    let gw = Gateway::start("", &[("acme-ship", &contractor(&mock.url()))], &[]);
    let ready = gw.admin_get("/readyz");
    assert_eq!(ready.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(body["signing"], "disabled", "{body}");
    assert_eq!(
        metric(&gw.metrics(), "partner_gateway_signing_disabled"),
        1.0
    );
    let r = gw.post_json("/acme-ship/v1/shipments", r#"{"order_id":"A-1"}"#);
    assert_eq!(r.status, 200);
    assert!(mock
        .only_headers()
        .iter()
        .all(|(n, _)| n != "ohsoft-data-use-token"));

    let signing = signing_yaml();
    let gw = Gateway::start(&signing, &[("acme-ship", &contractor(&mock.url()))], &[]);
    let body: serde_json::Value = serde_json::from_slice(&gw.admin_get("/readyz").body).unwrap();
    assert_eq!(body, serde_json::json!({"status": "ready"}));
    assert_eq!(
        metric(&gw.metrics(), "partner_gateway_signing_disabled"),
        0.0
    );
}

/// The `rsa` crate behind jsonwebtoken has an unfixed timing side channel when it signs
/// (RUSTSEC-2023-0071): the gateway's own signing key must be Ed25519 or P-256.
#[test]
fn rsa_signing_keys_are_refused() {
    let yaml = format!(
        "{BASE}signing:\n  issuer: https://partner-gateway.ohsoft.example\n  key: {RSA_KEY}\n  kid: data-use-1\n"
    );
    let dir = PolicyDir::new(&yaml, &[("acme-ship", &contractor("http://127.0.0.1:9"))]);
    let (code, out) = check(&dir.policy());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Ed25519 (EdDSA) or P-256 (ES256)"), "{out}");
    let serve = Command::new(BIN)
        .args(["serve", "--policy"])
        .arg(dir.policy())
        .output()
        .unwrap();
    assert!(!serve.status.success());
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(
        stderr.contains("Ed25519 (EdDSA) or P-256 (ES256)"),
        "{stderr}"
    );
}
