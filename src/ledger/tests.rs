use super::*;
use gateway_core::ledger::verify::ChainVerifier;

fn disclosure(time: &str) -> Disclosure {
    Disclosure {
        time: time.into(),
        request_id: "req".into(),
        caller: "orders-service".into(),
        partner: "acme-ship".into(),
        kind: "contractor".into(),
        route: "/v1/shipments".into(),
        method: "POST".into(),
        use_: "on-behalf-of-ohsoft".into(),
        purpose: "shipping".into(),
        legal_basis: None,
        policy_version: "abc".into(),
        token_jti: None,
        body_sha256: None,
        records_forwarded: 1,
        records_dropped: 0,
        fields: vec![],
        categories: vec![],
        subjects: vec![],
        stream: false,
    }
}

/// A ledger in `dir` (files of 1 MiB).
fn start(dir: &std::path::Path) -> Arc<Ledger> {
    Ledger::start(
        &LedgerConfig {
            path: dir.to_path_buf(),
            subject_key_env: "K".into(),
            subject_key: Some(b"k".to_vec()),
            rotate_bytes: 1 << 20,
        },
        Box::new(|| {}),
    )
}

/// The ledger in `dir`, verified file by file in chain order.
fn verified(dir: &std::path::Path) -> gateway_core::ledger::verify::Summary {
    let mut verifier = ChainVerifier::new(None).unwrap();
    for file in ledger_files(dir).unwrap() {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for (i, line) in text.lines().enumerate() {
            verifier.line("f", i as u64 + 1, line.as_bytes()).unwrap();
        }
    }
    verifier.finish().unwrap()
}

/// A line timed before the current file's date (requests straddling midnight, or the clock
/// stepped back) stays in the current file: the files' names keep the chain's order, and
/// the ledger verifies. The first line of a later day goes to a file of that day, also when
/// the current file is still empty (which is then removed: it holds no part of the chain).
#[test]
fn a_line_from_an_earlier_day_never_rotates_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    let ledger = start(&dir);
    // The ledger opens a file of today's date; the lines are timed on later days.
    assert_eq!(ledger_files(&dir).unwrap().len(), 1);
    let day = |n: i64, clock: &str| {
        let date = (Utc::now() + chrono::Duration::days(n)).format("%Y-%m-%d");
        format!("{date}T{clock}Z")
    };
    for time in [
        day(1, "12:00:00.000"),
        day(2, "00:00:02.000"),
        day(1, "23:59:57.000"),
        day(2, "00:00:03.000"),
    ] {
        ledger.record(&disclosure(&time), None).unwrap();
    }
    ledger.close(None);
    let files = ledger_files(&dir).unwrap();
    let named = |n: i64| format!("ledger-{}-1.jsonl", &day(n, "")[..10]);
    assert_eq!(files, [named(1), named(2)]);
    let summary = verified(&dir);
    assert_eq!(summary.records, 4);
}

/// A directory moved away while a request was under way (archived, say): the gateway starts a
/// new chain in the directory now at the path, and the old record's outcome joins neither, so
/// the new chain verifies (it never holds an outcome of a record it does not hold).
#[test]
fn an_outcome_never_joins_a_chain_other_than_its_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    let ledger = start(&dir);
    let now = now_text().0;
    let old = ledger.record(&disclosure(&now), None).unwrap();
    std::fs::rename(&dir, tmp.path().join("archived")).unwrap();
    std::fs::create_dir(&dir).unwrap();
    ledger.check_place();
    ledger.retry();
    let new = ledger.record(&disclosure(&now), None).unwrap();
    assert_eq!(new.seq, old.seq, "a new chain starts at seq 1 again");
    // A stream recorded in the old chain forwards no more customers.
    assert!(!ledger.holds(old));
    assert!(ledger.holds(new));
    assert!(matches!(
        ledger.outcome(old, 200, None, None),
        Err(LedgerError::OtherChain)
    ));
    ledger.outcome(new, 200, None, None).unwrap();
    ledger.close(None);
    let summary = verified(&dir);
    assert_eq!((summary.records, summary.outcomes), (1, 1));
}
