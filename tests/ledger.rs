//! The disclosure ledger through the real gateway: one record per forwarded request (none for
//! a refusal), outcomes, signed checkpoints, `audit verify` on intact and tampered ledgers,
//! 503 when the ledger cannot be written, and `kill -9` under load.
mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use util::*;

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
const KEY: &str = "ledger-test-key";
const ENV: &[(&str, &str)] = &[("SHIP_TOKEN", "partner-secret"), ("LEDGER_KEY", KEY)];

fn ledger_yaml(extra: &str) -> String {
    format!(
        "signing:\n  issuer: https://partner-gateway.ohsoft.example\n  key: {CERTS}/data-use-signing.pem\n  kid: data-use-1\nledger:\n  path: data/ledger\n  subject_key_env: LEDGER_KEY\n{extra}"
    )
}

fn partner(upstream: &str) -> String {
    ship_partner(upstream).replace(
        "    query: [page]\n",
        "    categories:\n      shipments[*].name: user.name\n      shipments[*].address.**: user.contact.address\n      shipments[*].card_number: user.financial.credit_card\n    query: [page]\n",
    )
}

fn start(mock: &Mock, extra: &str) -> Gateway {
    Gateway::start(
        &ledger_yaml(extra),
        &[("acme-ship", &partner(&mock.url()))],
        ENV,
    )
}

fn ledger_dir(gateway: &Gateway) -> PathBuf {
    gateway.policy.root().join("data/ledger")
}

/// Every line of every ledger file, in chain order.
fn lines(dir: &Path) -> Vec<Value> {
    files(dir)
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let names = partner_gateway::ledger::ledger_files(dir).unwrap();
    names.into_iter().map(|n| dir.join(n)).collect()
}

fn records(dir: &Path) -> Vec<Value> {
    lines(dir)
        .into_iter()
        .filter(|l| l.get("partner").is_some())
        .collect()
}

fn audit(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).arg("audit").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn verify(dir: &Path, jwks: Option<&str>) -> (i32, String) {
    let dir = dir.to_str().unwrap();
    match jwks {
        Some(j) => audit(&["verify", dir, "--jwks", j]),
        None => audit(&["verify", dir]),
    }
}

fn hmac_hex(id: &str) -> String {
    gateway_core::ledger::subject_hash(KEY.as_bytes(), id)
}

/// SIGTERM, then wait for the process to exit (the shutdown checkpoint is written).
fn terminate(gateway: &mut Gateway) {
    let pid = gateway.pid();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    gateway.wait();
}

const SHIPMENT: &str = r#"{"order_id": 7, "shipments": [
 {"customer_id": "MARK-c1", "name": "MARK-Ada", "address": {"city": "MARK-X"}, "card_number": "4111111111111111", "email": "MARK-a@x"},
 {"customer_id": 2, "name": "MARK-Bo", "items": [{"sku": "MARK-s"}]}]}"#;

#[test]
fn every_forwarded_request_has_one_record_and_nothing_else() {
    let mock = Mock::start();
    let mut gateway = start(&mock, "");
    let dir = ledger_dir(&gateway);
    for _ in 0..3 {
        let r = gateway.post_json("/acme-ship/v1/shipments?page=2", SHIPMENT);
        assert_eq!(r.status, 200);
    }
    let r = gateway.send("GET", "/acme-ship/v1/shipments/9", &[], None);
    assert_eq!(r.status, 200);
    // refusals write no record
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", r#"{"shipments": [1]}"#)
            .status,
        400
    );
    assert_eq!(gateway.post_json("/acme-ship/v1/nothing", "{}").status, 403);
    assert_eq!(gateway.post_json("/nobody/v1/shipments", "{}").status, 404);

    let received = mock.received();
    let records = records(&dir);
    assert_eq!(records.len(), received.len());
    assert_eq!(records.len(), 4);
    for (record, at_partner) in records.iter().zip(&received) {
        assert_eq!(record["partner"], "acme-ship");
        assert_eq!(record["kind"], "contractor");
        assert_eq!(record["use"], "on-behalf-of-ohsoft");
        assert_eq!(record["purpose"], "shipping");
        assert_eq!(record["caller"], "unauthenticated");
        let body = at_partner["body"].as_str().unwrap();
        let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(body.as_bytes()));
        assert_eq!(record["body_sha256"], digest.as_str());
        let token = headers_of(at_partner)
            .into_iter()
            .find(|(n, _)| n == "ohsoft-data-use-token")
            .unwrap()
            .1;
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(record["body_sha256"], claims["body_sha256"]);
        assert_eq!(record["token_jti"], claims["jti"]);
    }
    let first = &records[0];
    assert_eq!(first["route"], "/v1/shipments");
    assert_eq!(first["method"], "POST");
    assert_eq!(first["records_forwarded"], 2);
    assert_eq!(
        first["fields"],
        serde_json::json!([
            "order_id",
            "shipments[*].address.**",
            "shipments[*].card_number",
            "shipments[*].customer_id",
            "shipments[*].items[*].sku",
            "shipments[*].name"
        ])
    );
    assert_eq!(
        first["categories"],
        serde_json::json!([
            "user.contact.address",
            "user.financial.credit_card",
            "user.name"
        ])
    );
    let mut subjects = vec![hmac_hex("MARK-c1"), hmac_hex("2")];
    subjects.sort();
    assert_eq!(first["subjects"], serde_json::json!(subjects));
    assert_eq!(records[3]["route"], "/v1/shipments/{id}");
    assert_eq!(records[3]["subjects"], serde_json::json!([]));
    // outcomes carry the partner's status
    let all = lines(&dir);
    let outcomes: Vec<&Value> = all
        .iter()
        .filter(|l| l.get("outcome_of").is_some())
        .collect();
    assert_eq!(outcomes.len(), 4);
    assert!(outcomes.iter().all(|o| o["status"] == 200));

    // never a payload, a raw id or a token
    let text: String = files(&dir)
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for marker in ["MARK", "4111", "1111", "partner-secret", "eyJ"] {
        assert!(!text.contains(marker), "{marker} in the ledger:\n{text}");
    }
    let metrics = gateway.metrics();
    assert_eq!(
        metric(&metrics, "partner_gateway_ledger_records_total"),
        4.0
    );

    // the live key set verifies; another key does not
    let jwks_url = format!("http://{}/.well-known/jwks.json", gateway.admin);
    let jwks_file = gateway.policy.root().join("jwks.json");
    std::fs::write(&jwks_file, gateway.admin_get("/.well-known/jwks.json").body).unwrap();
    terminate(&mut gateway);
    let last = lines(&dir).pop().unwrap();
    assert_eq!(
        last["checkpoint"]["through"].as_u64().unwrap() + 1,
        last["seq"].as_u64().unwrap()
    );
    let (code, out) = verify(&dir, Some(jwks_file.to_str().unwrap()));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 checkpoint signatures verified"), "{out}");
    let _ = jwks_url;
    let other = other_jwks(gateway.policy.root());
    let (code, out) = verify(&dir, Some(other.to_str().unwrap()));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(":9: checkpoint signature does not verify"),
        "{out}"
    );
}

/// A JWKS with another key under the gateway's kid.
fn other_jwks(dir: &Path) -> PathBuf {
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/core/src/callers/testdata/ed25519-other.pem"
    ))
    .unwrap();
    let signer = gateway_core::tagging::TokenSigner::from_pkcs8_pem(
        &pem,
        "data-use-1",
        "https://partner-gateway.ohsoft.example",
    )
    .unwrap();
    let path = dir.join("other-jwks.json");
    std::fs::write(&path, gateway_core::tagging::Jwks::new(&signer).to_json()).unwrap();
    path
}
