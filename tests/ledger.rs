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

const KEY: &str = "ledger-test-key";
const ENV: &[(&str, &str)] = &[("SHIP_TOKEN", "partner-secret"), ("LEDGER_KEY", KEY)];

fn ledger_yaml(extra: &str) -> String {
    format!(
        "{}ledger:\n  path: data/ledger\n  subject_key_env: LEDGER_KEY\n{extra}",
        signing_yaml()
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

/// `audit <args> --policy POLICY` with the ledger's key: its stdout, which it must succeed to give.
fn audit_policy(policy: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("audit")
        .args(args)
        .arg("--policy")
        .arg(policy)
        .env("LEDGER_KEY", KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
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
    // (markers long enough that no hash, uuid or digest holds them by chance)
    let mut markers = vec![
        "MARK-".to_string(),
        "4111111111111111".to_string(),
        "partner-secret".to_string(),
    ];
    for at_partner in &received {
        let token = headers_of(at_partner)
            .into_iter()
            .find(|(n, _)| n == "ohsoft-data-use-token")
            .unwrap()
            .1;
        markers.push(token.split('.').nth(2).unwrap().to_string());
    }
    for marker in &markers {
        assert!(
            !text.contains(marker.as_str()),
            "{marker} in the ledger:\n{text}"
        );
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
    assert!(out.contains("signed: every line"), "{out}");
    // without its shutdown checkpoint the chain still verifies (lines cut from the end are
    // what a chain cannot show), and the report says no signature covers any of it
    let cut = gateway.policy.root().join("ledger-cut");
    std::fs::create_dir_all(&cut).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("\"checkpoint\""))
            .collect();
        std::fs::write(cut.join(path.file_name().unwrap()), kept.join("\n") + "\n").unwrap();
    }
    let (code, out) = verify(&cut, Some(jwks_file.to_str().unwrap()));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("signed: no line yet") && out.contains("only hash-chained"),
        "{out}"
    );
    // a key set that cannot be had is no verdict on the chain: exit 2, not 1
    let (code, out) = verify(&dir, Some(&jwks_url));
    assert_eq!(code, 2, "the gateway is gone: {out}");
    assert!(out.contains("JWKS"), "{out}");
    let (code, out) = verify(&dir, Some("/nonexistent/jwks.json"));
    assert_eq!(code, 2, "{out}");
    // a FIFO in the key set's place is refused, not waited on
    let fifo = gateway.policy.root().join("jwks.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (code, out) = verify(&dir, Some(fifo.to_str().unwrap()));
    assert_eq!(code, 2, "{out}");
    // a ledger file's name that cannot be read is no gap to report, nor one to skip
    let dangling = dir.join("ledger-2099-01-01-1.jsonl");
    std::os::unix::fs::symlink("/nonexistent/ledger", &dangling).unwrap();
    let (code, out) = verify(&dir, None);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("ledger-2099-01-01-1.jsonl"), "{out}");
    std::fs::remove_file(&dangling).unwrap();
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

fn shipment(customer: &str) -> String {
    format!(r#"{{"order_id": 1, "shipments": [{{"customer_id": "{customer}", "name": "N"}}]}}"#)
}

#[test]
fn tampering_is_caught_at_the_line_it_touched_across_rotated_files() {
    let mock = Mock::start();
    let mut gateway = start(&mock, "  rotate_bytes: 4096\n");
    let dir = ledger_dir(&gateway);
    for i in 0..24 {
        let r = gateway.post_json("/acme-ship/v1/shipments", &shipment(&format!("c-{i}")));
        assert_eq!(r.status, 200);
    }
    terminate(&mut gateway);
    let files = files(&dir);
    assert!(files.len() >= 3, "{files:?}");
    // each rotated file ends with a checkpoint; the chain continues across files
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert!(last.get("checkpoint").is_some(), "{f:?} ends with {last}");
    }
    let (code, out) = verify(&dir, None);
    assert_eq!(code, 0, "{out}");
    // a shell glob of the files verifies too (put back in chain order)
    let paths: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let mut args = vec!["verify"];
    args.extend(paths.iter().map(String::as_str));
    assert_eq!(audit(&args).0, 0);
    // a directory and a file in it, or a file named twice: each file is read once
    let (whole, first) = (dir.display().to_string(), files[0].display().to_string());
    assert_eq!(audit(&["verify", &whole, &first]).0, 0);
    assert_eq!(audit(&["verify", &first, &first]).0, 0);

    let second = &files[1];
    let second_name = second.display().to_string();
    let original = std::fs::read_to_string(second).unwrap();
    let tampered = |text: String| -> String {
        std::fs::write(second, text).unwrap();
        let (code, out) = verify(&dir, None);
        std::fs::write(second, &original).unwrap();
        assert_eq!(code, 1, "{out}");
        out
    };
    let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
    let join = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();

    // editing a field of line 3
    let mut edited = lines.clone();
    edited[2] = edited[2]
        .replace("\"acme-ship\"", "\"acme-shiq\"")
        .replace("\"outcome_of\":", "\"outcome_of\": ");
    assert!(tampered(join(&edited)).starts_with(&format!("{second_name}:3: ")));
    // deleting line 2
    let mut deleted = lines.clone();
    deleted.remove(1);
    assert!(tampered(join(&deleted)).starts_with(&format!("{second_name}:2: ")));
    // swapping lines 2 and 3
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    assert!(tampered(join(&swapped)).starts_with(&format!("{second_name}:2: ")));
    // truncating the file in the middle of line 3
    let cut: usize = lines[..2].iter().map(|l| l.len() + 1).sum::<usize>() + 10;
    let out = tampered(original[..cut].to_string());
    assert!(
        out.starts_with(&format!("{second_name}:3: incomplete line")),
        "{out}"
    );
    // deleting a whole rotated file: the next file's first line is named
    std::fs::remove_file(second).unwrap();
    let (code, out) = verify(&dir, None);
    assert_eq!(code, 1);
    assert!(
        out.starts_with(&format!("{}:1: seq", files[2].display())),
        "{out}"
    );
    lines.clear();
}

#[test]
fn a_ledger_that_cannot_be_written_refuses_and_nothing_reaches_the_partner() {
    let mock = Mock::start();
    // the ledger path is a regular file (gateway.yaml itself): no directory can be made there
    let gateway = Gateway::start(
        &ledger_yaml("").replace("path: data/ledger", "path: policy/gateway.yaml"),
        &[("acme-ship", &partner(&mock.url()))],
        ENV,
    );
    let r = gateway.post_json("/acme-ship/v1/shipments", &shipment("c-1"));
    assert_refused(&r, 503, "not_ready");
    assert!(mock.received().is_empty());
    let metrics = gateway.metrics();
    // The refused record, and the failed reopens (one a second) since the start.
    let errors = metric(&metrics, "partner_gateway_ledger_errors_total");
    assert!(errors >= 1.0, "{metrics}");
    assert_eq!(
        metric(
            &metrics,
            "partner_gateway_requests_refused_total{partner=\"acme-ship\",reason=\"not_ready\"}"
        ),
        1.0,
        "{metrics}"
    );
    // nothing was disclosed
    assert_eq!(
        metric(
            &metrics,
            "partner_gateway_fields_disclosed_total{category=\"uncategorized\",partner=\"acme-ship\",route=\"/v1/shipments\"}"
        ),
        0.0
    );
    assert_eq!(gateway.admin_get("/readyz").status, 503);
    // a refusal that never needed the ledger is still answered as before
    assert_eq!(gateway.post_json("/acme-ship/v1/nothing", "{}").status, 403);
    // With no traffic the count keeps rising while the ledger cannot be written (each failed
    // reopen counts), so the alert on it does not clear while the gateway is not ready.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let later = metric(&gateway.metrics(), "partner_gateway_ledger_errors_total");
    assert!(later >= errors + 1.0, "{errors} then {later}");
}

/// Posts until the gateway forwards again (the ledger is retried in the background).
fn until_forwarded(gateway: &Gateway, customer: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gateway
        .post_json("/acme-ship/v1/shipments", &shipment(customer))
        .status
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "ledger never recovered"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_ledger_deleted_while_open_refuses_instead_of_writing_into_nothing() {
    let mock = Mock::start();
    let mut gateway = start(&mock, "");
    let dir = ledger_dir(&gateway);
    let r = gateway.post_json("/acme-ship/v1/shipments", &shipment("c-1"));
    assert_eq!(r.status, 200);
    // the open file loses its last name: whatever is appended to it now is lost at exit
    std::fs::remove_dir_all(&dir).unwrap();
    let r = gateway.post_json("/acme-ship/v1/shipments", &shipment("c-2"));
    assert_refused(&r, 503, "not_ready");
    assert_eq!(
        mock.received().len(),
        1,
        "forwarded with its record deleted"
    );
    let metrics = gateway.metrics();
    assert!(metric(&metrics, "partner_gateway_ledger_errors_total") >= 1.0);
    // a new ledger file takes the next records
    until_forwarded(&gateway, "c-3");
    terminate(&mut gateway);
    assert_eq!(records(&dir).len(), mock.received().len() - 1);
    let (code, out) = verify(&dir, None);
    assert_eq!(code, 0, "{out}");
}

/// The ledger file loses its name while the gateway runs (`lose`, given the file's path):
/// noticed within 0.1 s or at the next append, the chain in the directory goes on after every
/// line written before, never reusing a seq, and `audit verify` reports the gap.
fn a_lost_ledger_file_leaves_a_gap(lose: impl FnOnce(&Path)) {
    let mock = Mock::start();
    let mut gateway = start(&mock, "");
    let dir = ledger_dir(&gateway);
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", &shipment("c-1"))
            .status,
        200
    );
    let last = lines(&dir).last().unwrap()["seq"].as_u64().unwrap();
    lose(&files(&dir)[0]);
    // Refused, whether its record went into the lost file or the loss was noticed first.
    let r = gateway.post_json("/acme-ship/v1/shipments", &shipment("c-2"));
    assert_refused(&r, 503, "not_ready");
    until_forwarded(&gateway, "c-3");
    terminate(&mut gateway);
    let first = lines(&dir).first().unwrap()["seq"].as_u64().unwrap();
    assert!(first > last, "{first} after {last}: {:?}", lines(&dir));
    assert_eq!(records(&dir).len() + 1, mock.received().len());
    let (code, out) = verify(&dir, None);
    assert_ne!(code, 0, "the gap is reported: {out}");
}

#[test]
fn a_ledger_file_deleted_while_open_leaves_a_gap() {
    a_lost_ledger_file_leaves_a_gap(|file| std::fs::remove_file(file).unwrap());
}

#[test]
fn a_ledger_file_moved_away_leaves_a_gap() {
    // A log rotation that renames the file out of the directory: its lines stay there.
    let archive = tempfile::tempdir().unwrap();
    let moved = archive.path().join("ledger.jsonl");
    a_lost_ledger_file_leaves_a_gap(|file| {
        std::fs::rename(file, &moved).unwrap();
        // Noticed within 0.1 s (an append meanwhile still goes into the moved file).
        std::thread::sleep(std::time::Duration::from_millis(300));
    });
    let kept = std::fs::read_to_string(&moved).unwrap();
    assert!(kept.lines().count() >= 2, "{kept}");
}

#[test]
fn a_second_gateway_on_the_same_ledger_refuses_rather_than_fork_its_chain() {
    let mock = Mock::start();
    let mut first = start(&mock, "");
    let dir = ledger_dir(&first);
    let shared = format!("path: {}", dir.display());
    let mut second = Gateway::start(
        &ledger_yaml("").replace("path: data/ledger", &shared),
        &[("acme-ship", &partner(&mock.url()))],
        ENV,
    );
    let r = second.post_json("/acme-ship/v1/shipments", &shipment("c-1"));
    assert_refused(&r, 503, "not_ready");
    let message = r.json()["message"].to_string();
    assert!(message.contains("in use by another process"), "{message}");
    assert!(mock.received().is_empty());
    assert_eq!(second.admin_get("/readyz").status, 503);
    assert_eq!(
        first
            .post_json("/acme-ship/v1/shipments", &shipment("c-2"))
            .status,
        200
    );
    // A passing failure of the first (its current file deleted) does not hand the directory over:
    // the first recovers, the second still refuses. Nor does removing a file from the directory.
    for file in files(&dir) {
        std::fs::remove_file(file).unwrap();
    }
    let r = first.post_json("/acme-ship/v1/shipments", &shipment("c-lost"));
    assert_refused(&r, 503, "not_ready");
    until_forwarded(&first, "c-4");
    let r = second.post_json("/acme-ship/v1/shipments", &shipment("c-5"));
    assert_refused(&r, 503, "not_ready");
    // once the first has stopped, the second takes the ledger over and continues its chain
    terminate(&mut first);
    until_forwarded(&second, "c-3");
    terminate(&mut second);
    // The deleted file's record (c-2's) is gone with it, and the chain went on after it
    // without reusing its seq: `verify` reports the gap at the first line left.
    assert_eq!(records(&dir).len(), mock.received().len() - 1);
    let (code, out) = verify(&dir, None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(":1: seq ") && out.contains("where 1 was expected"),
        "{out}"
    );
}

#[test]
fn a_ledger_directory_moved_away_is_never_shared_with_the_next_gateway() {
    let mock = Mock::start();
    let mut first = start(&mock, "");
    let dir = ledger_dir(&first);
    assert_eq!(
        first
            .post_json("/acme-ship/v1/shipments", &shipment("c-1"))
            .status,
        200
    );
    // Archived while the gateway writes: within 0.1 s it stops writing there (503), then locks
    // what the path names now and starts a new chain in it.
    let archived = dir.with_file_name("ledger-archived");
    std::fs::rename(&dir, &archived).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = first.post_json("/acme-ship/v1/shipments", &shipment("c-2"));
        if r.status == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still writing into the moved directory"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    until_forwarded(&first, "c-3");
    // A second gateway on the path finds it held.
    let shared = format!("path: {}", dir.display());
    let mut second = Gateway::start(
        &ledger_yaml("").replace("path: data/ledger", &shared),
        &[("acme-ship", &partner(&mock.url()))],
        ENV,
    );
    let r = second.post_json("/acme-ship/v1/shipments", &shipment("c-4"));
    assert_refused(&r, 503, "not_ready");
    terminate(&mut second);
    terminate(&mut first);
    for ledger in [&dir, &archived] {
        let (code, out) = verify(ledger, None);
        assert_eq!(code, 0, "{}: {out}", ledger.display());
    }
    let recorded = records(&dir).len() + records(&archived).len();
    assert_eq!(recorded, mock.received().len());
}

#[test]
fn a_failure_at_rotation_refuses_from_then_on_and_recovers() {
    let mock = Mock::start();
    let mut gateway = start(&mock, "  rotate_bytes: 4096\n");
    let dir = ledger_dir(&gateway);
    // the next file's name is taken by a directory: rotation cannot create it
    let first = files(&dir)[0].clone();
    let name = first.file_name().unwrap().to_str().unwrap().to_string();
    let blocker = dir.join(name.replace("-1.jsonl", "-2.jsonl"));
    std::fs::create_dir(&blocker).unwrap();
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(
            gateway
                .post_json("/acme-ship/v1/shipments", &shipment(&format!("c-{i}")))
                .status,
        );
    }
    let forwarded = statuses.iter().filter(|s| **s == 200).count();
    assert!(forwarded > 0 && statuses.contains(&503), "{statuses:?}");
    let first_503 = statuses.iter().position(|s| *s == 503).unwrap();
    assert!(
        statuses[first_503..].iter().all(|s| *s == 503),
        "{statuses:?}"
    );
    assert_eq!(mock.received().len(), forwarded);
    assert_eq!(records(&dir).len(), forwarded);
    // once the way is clear the gateway writes again (retried in the background)
    std::fs::remove_dir(&blocker).unwrap();
    until_forwarded(&gateway, "c-x");
    terminate(&mut gateway);
    let (code, out) = verify(&dir, None);
    assert_eq!(code, 0, "{out}");
    assert_eq!(records(&dir).len(), mock.received().len());
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_record_and_restarts_clean() {
    let mock = Mock::start();
    let mut gateway = start(&mock, "  rotate_bytes: 8192\n");
    let dir = ledger_dir(&gateway);
    let addr = gateway.addr.to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut ok = 0;
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let body = shipment(&format!("w{w}-{i}"));
                    match http1::send(
                        &addr,
                        "POST",
                        "/acme-ship/v1/shipments",
                        &[("content-type", "application/json")],
                        Some(body.as_bytes()),
                    ) {
                        Ok(r) if r.status == 200 => ok += 1,
                        _ => {}
                    }
                }
                ok
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    gateway.kill(); // SIGKILL mid-load
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(acknowledged > 5, "only {acknowledged} requests got through");
    // every request that reached the partner, even one cut off by the kill, has its record
    // (by its data-use token's jti), and every complete body its digest
    let records = records(&dir);
    let jtis: std::collections::HashSet<&str> = records
        .iter()
        .map(|r| r["token_jti"].as_str().unwrap())
        .collect();
    let digests: std::collections::HashSet<&str> = records
        .iter()
        .map(|r| r["body_sha256"].as_str().unwrap())
        .collect();
    let received = mock.received();
    assert!(received.len() >= acknowledged);
    for at_partner in &received {
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
        assert!(
            jtis.contains(claims["jti"].as_str().unwrap()),
            "no record for a request the partner received"
        );
        if !at_partner["json"].is_null() {
            let body = at_partner["body"].as_str().unwrap();
            let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(body.as_bytes()));
            assert!(
                digests.contains(digest.as_str()),
                "no record for a body the partner received"
            );
        }
    }
    let (code, out) = verify(&dir, None);
    assert_eq!(code, 0, "{out}");
    // restart: the chain continues and still verifies
    gateway.spawn();
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", &shipment("after"))
            .status,
        200
    );
    terminate(&mut gateway);
    let (code, out) = verify(&dir, None);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn who_received_finds_exactly_the_disclosures_of_a_customer() {
    const TOKEN: &str = "admin-secret";
    let mock = Mock::start();
    let bp = Mock::start();
    let offers = ship_partner(&bp.url())
        .replace("kind: contractor", "kind: business_partner")
        .replace("purpose: shipping", "purpose: offers")
        .replace(
            "allowed_callers:",
            "  - path: /v1/people/{cid:subject}\n    methods: [GET, DELETE]\n    query: [also:subject]\nallowed_callers:",
        );
    let people = partner(&mock.url()).replace(
        "allowed_callers:",
        "  - path: /v1/people/{cid:subject}\n    methods: [GET]\n  - path: /v1/notes/{cid:subject}\n    methods: [POST]\n    allow: [city]\nallowed_callers:",
    );
    let mut env = ENV.to_vec();
    env.push(("ADMIN_TOKEN", TOKEN));
    let mut gateway = Gateway::start(
        &ledger_yaml("optouts: { path: data/optouts }\nadmin_token_env: ADMIN_TOKEN\n"),
        &[("acme-ship", &people), ("offers", &offers)],
        &env,
    );
    let opt_out = http1::send(
        &gateway.admin.to_string(),
        "PUT",
        "/optouts/c-out",
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("content-type", "application/json"),
        ],
        Some(br#"{"scopes": ["partner_sharing"]}"#),
    )
    .unwrap();
    assert_eq!(opt_out.status, 200);
    let two = r#"{"order_id": 1, "shipments": [{"customer_id": "c-out", "name": "A"}, {"customer_id": 123, "name": "B"}]}"#;
    assert_eq!(
        gateway.post_json("/acme-ship/v1/shipments", two).status,
        200
    );
    assert_eq!(gateway.post_json("/offers/v1/shipments", two).status, 200);
    // customer ids the route types in its URL: a GET and a DELETE without any body
    let url_ids = gateway.send("GET", "/offers/v1/people/c-url?also=c%2Dquery", &[], None);
    assert_eq!(url_ids.status, 200);
    let delete = gateway.send("DELETE", "/offers/v1/people/c-url", &[], None);
    assert_eq!(delete.status, 200);
    let out = gateway.send("GET", "/offers/v1/people/c-out", &[], None);
    assert_eq!(out.status, 451);
    // a contractor honours no opt-outs and gets URL values as sent: keyed as a partner reads them
    let list = gateway.send("GET", "/acme-ship/v1/people/c-l1,c-l2.json", &[], None);
    assert_eq!(list.status, 200);
    // a body whose records name no one: anyone's data, the URL's customer's included
    let note = gateway.post_json("/acme-ship/v1/notes/c-note", r#"{"city": "Ulm"}"#);
    assert_eq!(note.status, 200);
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", &shipment("c-other"))
            .status,
        200
    );
    terminate(&mut gateway);

    let policy = gateway.policy.policy();
    let who = |customer: &str| -> Value {
        let args = ["who-received", "--customer", customer, "--format", "json"];
        serde_json::from_str(&audit_policy(&policy, &args)).unwrap()
    };
    let partners = |v: &Value| -> Vec<String> {
        v["disclosures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["partner"].as_str().unwrap().to_string())
            .collect()
    };
    // 123 went to both partners (given as a number in the body, asked as text)
    let both = who("123");
    assert_eq!(partners(&both), ["acme-ship", "offers"]);
    assert_eq!(both["disclosures"][1]["kind"], "business_partner");
    assert_eq!(both["disclosures"][1]["status"], 200);
    // only the asked customer among each disclosure's subjects, never the others in it
    assert_eq!(
        both["disclosures"][0]["subjects"],
        serde_json::json!([hmac_hex("123")])
    );
    // the opted-out customer reached the contractor only: the partner never got the record
    assert_eq!(partners(&who("c-out")), ["acme-ship"]);
    // an id is one customer in any case, as opt-outs read it
    assert_eq!(partners(&who("C-OUT")), ["acme-ship"]);
    assert_eq!(partners(&who("c-other")), ["acme-ship"]);
    // a customer named in the URL was disclosed to that partner, body or not
    let url = who("c-url");
    assert_eq!(partners(&url), ["offers", "offers"]);
    assert_eq!(url["disclosures"][0]["method"], "GET");
    assert_eq!(url["disclosures"][1]["method"], "DELETE");
    assert_eq!(partners(&who("c-query")), ["offers"]);
    assert_eq!(partners(&who("c-l1")), ["acme-ship"]);
    assert_eq!(partners(&who("c-l2")), ["acme-ship"]);
    let note = who("c-note");
    assert!(partners(&note).is_empty(), "{note}");
    let unattributed = note["unattributed"].to_string();
    assert!(unattributed.contains("/v1/notes/{cid:subject}"), "{note}");
    assert!(who("c-other")["unattributed"]
        .to_string()
        .contains("/v1/notes/"));
    assert!(partners(&who("nobody")).is_empty());
    // without the key it refuses to guess
    let out = Command::new(BIN)
        .args(["audit", "who-received", "--policy"])
        .arg(&policy)
        .args(["--customer", "123"])
        .env_remove("LEDGER_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    // a period that selects nothing, and an empty id, are usage errors
    for args in [
        &[
            "who-received",
            "--customer",
            "123",
            "--since",
            "2026-02-01",
            "--until",
            "2026-01-31",
        ][..],
        &[
            "report",
            "--since",
            "2026-01-01T10:00:00Z",
            "--until",
            "2026-01-01T09:00:00Z",
        ][..],
        &["who-received", "--customer", ""][..],
    ] {
        let out = Command::new(BIN)
            .arg("audit")
            .args(args)
            .arg("--policy")
            .arg(&policy)
            .env("LEDGER_KEY", KEY)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // the report counts what the ledger holds
    let report: Value =
        serde_json::from_str(&audit_policy(&policy, &["report", "--format", "json"])).unwrap();
    let offers_row = report["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partner"] == "offers")
        .unwrap();
    // the POST, and the GET and DELETE naming a customer in the URL
    assert_eq!(offers_row["requests"], 3);
    assert_eq!(offers_row["records_forwarded"], 1);
    assert_eq!(offers_row["records_dropped"], 1);
    let shipments = offers_row["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/v1/shipments")
        .unwrap();
    assert_eq!(
        shipments["records_dropped"], 1,
        "per route too: {shipments}"
    );
    assert_eq!(report["requests"], 7);
    let acme = report["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partner"] == "acme-ship")
        .unwrap();
    let disclosed: Vec<&str> = acme["disclosed_categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["category"].as_str().unwrap())
        .collect();
    // Fields without a category (`order_id`, the items' `sku`) are `uncategorized`, as in the
    // metrics: the records of processing show them as disclosed and not declared.
    assert_eq!(disclosed, ["uncategorized", "user.name"]);
    assert_eq!(
        acme["declared_unused"],
        serde_json::json!(["user.contact.address", "user.financial.credit_card"])
    );
    assert_eq!(
        acme["disclosed_undeclared"],
        serde_json::json!(["uncategorized"])
    );

    // the HTML page: self-contained, and its data map shows every partner and category
    let html = audit_policy(&policy, &["report", "--format", "html"]);
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    // per route too: the offers route with its dropped record
    assert!(
        html.contains("<tr><td>offers</td><td>/v1/shipments</td><td class=\"num\">1</td><td class=\"num\">1</td><td class=\"num\">1</td></tr>"),
        "{html}"
    );
    let svg = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap()];
    let texts = |class: &str| -> Vec<String> {
        let open = format!("<text class=\"{class}\"");
        svg.match_indices(&open)
            .map(|(i, _)| {
                let rest = &svg[i..];
                let start = rest.find('>').unwrap() + 1;
                let end = rest.find("</text>").unwrap();
                rest[start..end].to_string()
            })
            .collect()
    };
    let partners_drawn = texts("partner");
    for row in report["recipients"].as_array().unwrap() {
        let id = row["partner"].as_str().unwrap();
        assert!(
            partners_drawn
                .iter()
                .any(|t| t.starts_with(&format!("<tspan class=\"name\">{id}</tspan> ("))),
            "{id} not drawn"
        );
        // Every category of the report is on the map, declared ones without traffic too.
        for c in row["declared_categories"].as_array().unwrap() {
            let c = c.as_str().unwrap();
            assert!(texts("category").iter().any(|t| t == c), "{c} not drawn");
        }
        for c in row["disclosed_categories"].as_array().unwrap() {
            let c = c["category"].as_str().unwrap();
            assert!(texts("category").iter().any(|t| t == c), "{c} not drawn");
            assert!(
                svg.contains(&format!("data-category=\"{c}\" data-partner=\"{id}\"")),
                "no band {c} -> {id}"
            );
        }
    }
    let md = audit_policy(&policy, &["report"]);
    assert!(
        md.contains("| offers | business_partner | offers | partner-sharing | 3 | 1 | 1 |"),
        "{md}"
    );

    // a partner the policy no longer has: marked as such in every format, and what it received
    // still shown
    std::fs::remove_file(policy.join("partners/offers.yaml")).unwrap();
    let report = |format: &str| audit_policy(&policy, &["report", "--format", format]);
    let json: Value = serde_json::from_str(&report("json")).unwrap();
    let gone = json["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partner"] == "offers")
        .unwrap();
    assert_eq!(gone["in_policy"], false, "{gone}");
    // its records name fields and no category: uncategorized disclosures, still counted
    assert_eq!(
        gone["disclosed_undeclared"],
        serde_json::json!(["uncategorized"]),
        "{gone}"
    );
    assert!(report("md").contains("**Not in the current policy**"));
    let html = report("html");
    assert!(
        html.contains("<tr><td>offers <span class=\"flag\">(not in the current policy"),
        "{html}"
    );
}

#[test]
fn sigterm_lets_requests_under_way_finish_and_refuses_new_ones() {
    // Within the test gateways' upstream timeout (1.5 s).
    let mock = Mock::start_with_delay(1000);
    let mut gateway = start(&mock, "");
    let pid = gateway.pid().to_string();
    std::thread::scope(|s| {
        let slow = s.spawn(|| gateway.post_json("/acme-ship/v1/shipments", SHIPMENT));
        std::thread::sleep(std::time::Duration::from_millis(500));
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        // Draining: new requests are refused before anything is read, and /readyz says so.
        let late = gateway.post_json("/acme-ship/v1/shipments", SHIPMENT);
        assert_refused(&late, 503, "not_ready");
        assert_eq!(gateway.admin_get("/readyz").status, 503);
        // Counted on the partner asked for, so alerts by partner name it.
        let refused =
            r#"partner_gateway_requests_refused_total{partner="acme-ship",reason="not_ready"}"#;
        assert_eq!(metric(&gateway.metrics(), refused), 1.0);
        // The request under way gets the partner's answer.
        let answered = slow.join().unwrap();
        assert_eq!(
            answered.status,
            200,
            "{}",
            String::from_utf8_lossy(&answered.body)
        );
    });
    gateway.wait();
    assert_eq!(mock.received().len(), 1);
    let lines = lines(&ledger_dir(&gateway));
    let record = &lines[0];
    let outcome = lines
        .iter()
        .find(|l| l["outcome_of"] == record["seq"])
        .expect("the outcome of the drained request is recorded");
    assert_eq!(outcome["status"], 200);
    assert!(
        lines.last().unwrap().get("checkpoint").is_some(),
        "{lines:#?}"
    );
    let (code, text) = verify(&ledger_dir(&gateway), None);
    assert_eq!(code, 0, "{text}");
}

/// A small tmpfs mounted at a directory, unmounted when dropped; `None` where this process may
/// not mount (not root, or a container without the capability).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_keeps_readyz_at_503_until_there_is_room_again() {
    let mock = Mock::start();
    let mut disk = None;
    let mut gateway = Gateway::start_prepared(
        |addr, admin| gateway_yaml(addr, admin, &ledger_yaml("")),
        &[("acme-ship", &partner(&mock.url()))],
        ENV,
        |root| disk = SmallDisk::mount(&root.join("data/ledger")),
    );
    if disk.is_none() {
        eprintln!("skipped: cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)");
        return;
    }
    let dir = ledger_dir(&gateway);
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", SHIPMENT)
            .status,
        200
    );
    // Fill the disk.
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut f, &[0u8; 4096]).is_ok() {}
    drop(f);
    // The ledger file's last block may still take a few lines.
    let mut forwarded = 1;
    loop {
        let r = gateway.post_json("/acme-ship/v1/shipments", SHIPMENT);
        if r.status != 200 {
            assert_refused(&r, 503, "not_ready");
            break;
        }
        forwarded += 1;
        assert!(forwarded < 20, "a full disk took 20 records");
    }
    // Reopening the file succeeds on a full disk; readiness must not follow it.
    for _ in 0..15 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(gateway.admin_get("/readyz").status, 503);
    }
    std::fs::remove_file(&filler).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gateway.admin_get("/readyz").status != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready again");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", SHIPMENT)
            .status,
        200
    );
    terminate(&mut gateway);
    assert_eq!(records(&dir).len(), forwarded + 1);
    assert_eq!(mock.received().len(), forwarded + 1);
    let (code, out) = verify(&dir, None);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_restart_repairs_what_a_crash_left_at_the_end_of_the_chain() {
    let mock = Mock::start();
    let mut gateway = start(&mock, "");
    for i in 0..3 {
        let r = gateway.post_json("/acme-ship/v1/shipments", &shipment(&format!("c-{i}")));
        assert_eq!(r.status, 200);
    }
    gateway.kill();
    let dir = ledger_dir(&gateway);
    let first = files(&dir)[0].clone();
    let whole = std::fs::read(&first).unwrap();
    let count = |dir: &Path| lines(dir).len();
    let before = count(&dir);

    // 1. A whole last line that lost only its newline is kept.
    std::fs::write(&first, &whole[..whole.len() - 1]).unwrap();
    gateway.spawn();
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", &shipment("c-3"))
            .status,
        200
    );
    gateway.kill();
    assert_eq!(
        count(&dir),
        before + 2,
        "the line is kept, a record and outcome follow"
    );
    let (code, out) = verify(&dir, None);
    assert_eq!(code, 0, "{out}");

    // 2. A crash at rotation: the next file exists but is empty, and this one ends in a cut
    // line. The cut line goes, the chain continues.
    let whole = std::fs::read(&first).unwrap();
    let cut = whole.len() - 20;
    std::fs::write(&first, &whole[..cut]).unwrap();
    let name = first.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::write(dir.join(name.replace("-1.jsonl", "-2.jsonl")), b"").unwrap();
    let lines_left = count_complete(&whole[..cut]);
    gateway.spawn();
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", &shipment("c-4"))
            .status,
        200
    );
    terminate(&mut gateway);
    assert_eq!(
        count(&dir),
        lines_left + 3,
        "a record, its outcome and the checkpoint"
    );
    let (code, out) = verify(&dir, None);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_first_line_that_lost_only_its_newline_is_kept() {
    let mock = Mock::start();
    let mut gateway = start(&mock, "");
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", &shipment("c-1"))
            .status,
        200
    );
    gateway.kill();
    let dir = ledger_dir(&gateway);
    let file = files(&dir)[0].clone();
    let bytes = std::fs::read(&file).unwrap();
    let first = &bytes[..bytes.iter().position(|b| *b == b'\n').unwrap()];
    std::fs::write(&file, first).unwrap();
    gateway.spawn();
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", &shipment("c-2"))
            .status,
        200
    );
    terminate(&mut gateway);
    let text = std::fs::read(&file).unwrap();
    assert!(text.starts_with(first), "the first record is kept");
    assert_eq!(records(&dir).len(), 2);
    let (code, out) = verify(&dir, None);
    assert_eq!(code, 0, "{out}");
}

fn count_complete(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

#[test]
fn a_second_gateway_on_the_same_addresses_exits_at_once() {
    let mock = Mock::start();
    let gateway = start(&mock, "");
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .args(["serve", "--policy"])
        .arg(gateway.policy.policy())
        .envs(ENV.iter().copied())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    // The running one serves on, its ledger untouched by the second.
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", SHIPMENT)
            .status,
        200
    );
}

/// The ledger-open line of a `serve` started on `gateway`'s policy (its first gateway stopped)
/// and the line after it, if one comes within a few seconds; the process is killed after.
fn ledger_open_lines(gateway: &Gateway) -> (String, Option<String>) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .args(["serve", "--policy"])
        .arg(gateway.policy.policy())
        .envs(ENV.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait = std::time::Duration::from_secs(30);
    let open = std::iter::from_fn(|| rx.recv_timeout(wait).ok())
        .find(|l| l.contains("open at seq"))
        .expect("no ledger-open line");
    let next = rx.recv_timeout(std::time::Duration::from_secs(3)).ok();
    let _ = child.kill();
    let _ = child.wait();
    (open, next)
}

#[test]
fn a_start_after_a_crash_says_the_next_checkpoint_signs_lines_it_did_not_write() {
    let mock = Mock::start();
    let mut gateway = start(&mock, "");
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", SHIPMENT)
            .status,
        200
    );
    gateway.kill(); // no shutdown checkpoint
    let (open, next) = ledger_open_lines(&gateway);
    let next = next.unwrap_or_default();
    assert!(next.contains("is no checkpoint"), "{open}\n{next}");
    assert!(next.contains("audit verify"), "{next}");

    // After a clean shutdown the ledger ends with its checkpoint: nothing to say.
    gateway.spawn();
    terminate(&mut gateway);
    let (open, next) = ledger_open_lines(&gateway);
    let next = next.unwrap_or_default();
    assert!(!next.contains("is no checkpoint"), "{open}\n{next}");
}
