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

/// `check` reports its warnings once each, as `FILE:LINE: warning: message`, and nothing else
/// on stderr (no log lines from loading the keys a second time).
#[test]
fn check_warnings_are_file_line_lines_only() {
    let gateway = format!("{BASE}signing: {{ disabled: true }}\n");
    let dir = PolicyDir::new(
        &gateway,
        &[("acme-ship", &contractor("http://127.0.0.1:9"))],
    );
    let out = Command::new(BIN)
        .args(["check", "--policy"])
        .arg(dir.policy())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines() {
        let (_, rest) = line.split_once(".yaml:").unwrap_or_default();
        let number = rest.split(':').next().unwrap_or_default();
        assert!(
            number.parse::<u32>().is_ok() && rest.contains(": warning: "),
            "not a FILE:LINE warning: {line}\n{stderr}"
        );
    }
    for warning in ["allow_unauthenticated is true", "signing.disabled is true"] {
        assert_eq!(stderr.matches(warning).count(), 1, "{warning}:\n{stderr}");
    }
}

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

/// A P-256 data-use key signs ES256 tokens (through ring in the shell) that `verify-token`
/// accepts against the live JWKS and the exact body the partner received; two requests get
/// two different signatures (ES256 signatures are randomized).
#[test]
fn es256_data_use_tokens_verify_with_verify_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("p256.pem");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(&key, pair.serialize_pem()).unwrap();
    let signing = format!(
        "signing:\n  issuer: https://partner-gateway.ohsoft.example\n  key: {}\n  kid: es-1\n",
        key.display()
    );
    let mock = Mock::start();
    let gw = Gateway::start(&signing, &[("acme-ship", &contractor(&mock.url()))], &[]);
    let mut signatures = Vec::new();
    for id in ["A-1", "A-2"] {
        let r = gw.post_json(
            "/acme-ship/v1/shipments",
            &format!(r#"{{"order_id":"{id}","email":"x@example.com"}}"#),
        );
        assert_eq!(r.status, 200);
        let received = mock.received();
        let last = received.last().unwrap();
        let body = last["body"].as_str().unwrap();
        assert_eq!(body, format!(r#"{{"order_id":"{id}"}}"#));
        let token = headers_of(last)
            .into_iter()
            .find(|(n, _)| n == "ohsoft-data-use-token")
            .map(|(_, v)| v)
            .expect("a data-use token");
        let body_file = dir.path().join("body.json");
        std::fs::write(&body_file, body).unwrap();
        let out = Command::new(BIN)
            .args(["verify-token", "--jwks"])
            .arg(format!("http://{}/.well-known/jwks.json", gw.admin))
            .arg("--body")
            .arg(&body_file)
            .arg(&token)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "verify-token refused: {stderr}");
        assert!(stderr.contains("body_sha256 matches"), "{stderr}");
        let header = token.split('.').next().unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (&header["alg"], &header["kid"]),
            (&"ES256".into(), &"es-1".into())
        );
        signatures.push(token.rsplit('.').next().unwrap().to_string());
    }
    assert_ne!(signatures[0], signatures[1]);
}
