use super::verify::ChainVerifier;
use super::*;
use crate::tagging::{Jwks, TokenSigner};

const ED: &[u8] = include_bytes!("../callers/testdata/ed25519.pem");
const ED_OTHER: &[u8] = include_bytes!("../callers/testdata/ed25519-other.pem");
const ISS: &str = "https://partner-gateway.ohsoft.example";

fn disclosure(n: u64) -> Disclosure {
    Disclosure {
        time: format!("2026-11-29T03:00:{:02}.000Z", n % 60),
        request_id: format!("req-{n}"),
        caller: "orders-service".into(),
        partner: "acme-ship".into(),
        kind: "contractor".into(),
        route: "/v1/shipments".into(),
        method: "POST".into(),
        use_: "on-behalf-of-ohsoft".into(),
        purpose: "shipping".into(),
        legal_basis: None,
        policy_version: "abc".into(),
        token_jti: Some(format!("jti-{n}")),
        body_sha256: Some("x".into()),
        records_forwarded: 1,
        records_dropped: 0,
        fields: vec!["a".into()],
        categories: vec!["user.name".into()],
        subjects: vec![subject_hash(b"k", &n.to_string())],
        stream: false,
    }
}

/// A ledger of `n` records, each followed by its outcome, then a signed checkpoint.
fn ledger(n: u64, signer: Option<&TokenSigner>) -> Vec<Vec<u8>> {
    let mut chain = Chain::new();
    let mut lines = Vec::new();
    for i in 1..=n {
        let record = chain.record(&disclosure(i));
        chain.commit(&record);
        let outcome = chain.outcome(record.seq, 200, "2026-11-29T03:00:00.000Z", None);
        chain.commit(&outcome);
        lines.push(record.bytes);
        lines.push(outcome.bytes);
    }
    let cp = chain.checkpoint(signer, 1_800_000_000).unwrap();
    chain.commit(&cp);
    lines.push(cp.bytes);
    lines
}

fn verify(lines: &[Vec<u8>], jwks: Option<&str>) -> Result<verify::Summary, verify::Break> {
    let mut v = ChainVerifier::new(jwks).unwrap();
    for (i, line) in lines.iter().enumerate() {
        match line.strip_suffix(b"\n") {
            Some(bytes) => v.line("f.jsonl", i as u64 + 1, bytes)?,
            None => return Err(v.torn("f.jsonl", i as u64 + 1)),
        }
    }
    v.finish()
}

fn signer() -> TokenSigner {
    TokenSigner::from_pkcs8_pem(ED, "data-use-1", ISS).unwrap()
}

#[test]
fn record_line_is_exactly_the_documented_format() {
    let chain = Chain::new();
    let line = chain.record(&disclosure(1));
    let text = String::from_utf8(line.bytes.clone()).unwrap();
    let expected = format!(
        "{{\"seq\":1,\"time\":\"2026-11-29T03:00:01.000Z\",\"request_id\":\"req-1\",\"caller\":\"orders-service\",\"partner\":\"acme-ship\",\"kind\":\"contractor\",\"route\":\"/v1/shipments\",\"method\":\"POST\",\"use\":\"on-behalf-of-ohsoft\",\"purpose\":\"shipping\",\"legal_basis\":null,\"policy_version\":\"abc\",\"token_jti\":\"jti-1\",\"body_sha256\":\"x\",\"records_forwarded\":1,\"records_dropped\":0,\"fields\":[\"a\"],\"categories\":[\"user.name\"],\"subjects\":[\"{}\"],\"prev\":\"{ZERO_HASH}\"}}\n",
        subject_hash(b"k", "1")
    );
    assert_eq!(text, expected);
    match LedgerLine::parse(text.trim_end().as_bytes()).unwrap() {
        LedgerLine::Record(r) => assert_eq!(r.disclosure, disclosure(1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn outcome_and_checkpoint_lines_chain_to_the_line_before() {
    let lines = ledger(1, Some(&signer()));
    let first_hash = line_hash(lines[0].strip_suffix(b"\n").unwrap());
    let outcome = String::from_utf8(lines[1].clone()).unwrap();
    assert_eq!(
        outcome,
        format!("{{\"seq\":2,\"outcome_of\":1,\"status\":200,\"time\":\"2026-11-29T03:00:00.000Z\",\"prev\":\"{first_hash}\"}}\n")
    );
    let second_hash = line_hash(lines[1].strip_suffix(b"\n").unwrap());
    let cp: serde_json::Value = serde_json::from_slice(&lines[2]).unwrap();
    assert_eq!(cp["seq"], 3);
    assert_eq!(cp["checkpoint"]["through"], 2);
    assert_eq!(cp["checkpoint"]["hash"], second_hash.as_str());
    assert_eq!(cp["prev"], second_hash.as_str());
    let keys: Vec<&str> = cp.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4);
}

#[test]
fn an_intact_ledger_verifies_with_and_without_the_key_set() {
    let signer = signer();
    let lines = ledger(5, Some(&signer));
    let summary = verify(&lines, None).unwrap();
    assert_eq!(
        (summary.records, summary.outcomes, summary.checkpoints),
        (5, 5, 1)
    );
    assert!(summary.ends_with_checkpoint);
    let jwks = Jwks::new(&signer).to_json();
    assert_eq!(verify(&lines, Some(&jwks)).unwrap().signatures_verified, 1);
}

#[test]
fn another_key_fails_the_signature() {
    let lines = ledger(2, Some(&signer()));
    let other = TokenSigner::from_pkcs8_pem(ED_OTHER, "data-use-1", ISS).unwrap();
    let jwks = Jwks::new(&other).to_json();
    let err = verify(&lines, Some(&jwks)).unwrap_err();
    assert_eq!(err.line, 5);
    assert!(err.reason.contains("does not verify"), "{err}");
}

#[test]
fn tampering_is_reported_at_the_line_it_touched() {
    let lines = ledger(4, Some(&signer()));
    // Edited field in line 3.
    let mut edited = lines.clone();
    edited[2] = String::from_utf8(edited[2].clone())
        .unwrap()
        .replace("acme-ship", "acme-shiq")
        .into_bytes();
    assert_eq!(verify(&edited, None).unwrap_err().line, 3);
    // Edited last record (a checkpoint follows it).
    let mut last = lines.clone();
    last[7] = String::from_utf8(last[7].clone())
        .unwrap()
        .replace("200", "201")
        .into_bytes();
    assert_eq!(verify(&last, None).unwrap_err().line, 8);
    // Line 4 deleted.
    let mut deleted = lines.clone();
    deleted.remove(3);
    assert_eq!(verify(&deleted, None).unwrap_err().line, 4);
    // Lines 5 and 6 swapped.
    let mut swapped = lines.clone();
    swapped.swap(4, 5);
    assert_eq!(verify(&swapped, None).unwrap_err().line, 5);
    // Cut in the middle of line 6.
    let mut cut = lines[..6].to_vec();
    cut[5].truncate(20);
    assert_eq!(verify(&cut, None).unwrap_err().line, 6);
    // A line inserted.
    let mut inserted = lines.clone();
    inserted.insert(3, lines[1].clone());
    assert_eq!(verify(&inserted, None).unwrap_err().line, 4);
    // The whole file converted to CRLF line ends: its first line.
    let crlf: Vec<Vec<u8>> = lines
        .iter()
        .map(|l| [&l[..l.len() - 1], b"\r\n"].concat())
        .collect();
    let err = verify(&crlf, None).unwrap_err();
    assert_eq!(err.line, 1, "{err}");
    assert!(err.reason.contains("carriage return"), "{err}");
    // The first line removed: the chain does not start.
    assert_eq!(verify(&lines[1..], None).unwrap_err().line, 1);
    // Both seq and prev rewritten in line 3 (a forged line): blamed, not line 2.
    let mut forged = lines.clone();
    let mut fake = Chain::new();
    for l in &lines[..1] {
        fake = Chain::resume(l.strip_suffix(b"\n").unwrap()).unwrap();
    }
    let mut d = disclosure(9);
    d.partner = "evil".into();
    forged[2] = fake.record(&d).bytes; // seq 2 where 3 expected
    assert_eq!(verify(&forged, None).unwrap_err().line, 3);
}

/// Lines of another chain signed by the same key, spliced in after a signed checkpoint: the
/// first foreign line is named, not the checkpoint whose signature just verified (without the
/// key set nothing vouches for the checkpoint, and the earlier line is named as before).
#[test]
fn a_splice_after_a_signed_checkpoint_names_the_first_foreign_line() {
    let signer = signer();
    let jwks = Jwks::new(&signer).to_json();
    let ours = ledger(2, Some(&signer));
    // Another chain whose sixth line is a record (two requests under way at once).
    let mut chain = Chain::new();
    let mut theirs = Vec::new();
    let mut seal = |line: SealedLine, chain: &mut Chain| {
        chain.commit(&line);
        theirs.push(line.bytes);
    };
    for i in 1..=4 {
        let record = chain.record(&disclosure(i));
        let seq = record.seq;
        seal(record, &mut chain);
        if i <= 2 {
            seal(
                chain.outcome(seq, 200, "2026-11-29T03:00:00.000Z", None),
                &mut chain,
            );
        }
    }
    seal(
        chain.outcome(5, 200, "2026-11-29T03:00:00.000Z", None),
        &mut chain,
    );
    let mut spliced = ours.clone();
    spliced.extend_from_slice(&theirs[ours.len()..]);
    let err = verify(&spliced, Some(&jwks)).unwrap_err();
    assert_eq!(err.line, 6, "{err}");
    assert!(err.reason.contains("a signed checkpoint"), "{err}");
    assert_eq!(verify(&spliced, None).unwrap_err().line, 5);
    // A checkpoint not written as the gateway writes it (a space added) may have been edited:
    // it is the one named.
    let mut edited = spliced.clone();
    edited[4] = String::from_utf8(edited[4].clone())
        .unwrap()
        .replacen(",", ", ", 1)
        .into_bytes();
    let err = verify(&edited, Some(&jwks)).unwrap_err();
    assert_eq!(err.line, 5, "{err}");
}

/// The line before a signed checkpoint edited, and the `prev` of the line after it too: the
/// checkpoint records the true hash of the line before it, so that line is named (the first
/// break), not the checkpoint.
#[test]
fn a_signed_checkpoint_names_the_edited_line_before_it() {
    let signer = signer();
    let jwks = Jwks::new(&signer).to_json();
    let mut chain = Chain::new();
    let mut lines = Vec::new();
    for i in 1..=2 {
        let record = chain.record(&disclosure(i));
        chain.commit(&record);
        let outcome = chain.outcome(record.seq, 200, "2026-11-29T03:00:00.000Z", None);
        chain.commit(&outcome);
        lines.push(record.bytes);
        lines.push(outcome.bytes);
    }
    let cp = chain.checkpoint(Some(&signer), 1_800_000_000).unwrap();
    chain.commit(&cp);
    lines.push(cp.bytes);
    let next = chain.record(&disclosure(3));
    lines.push(next.bytes);
    assert!(verify(&lines, Some(&jwks)).is_ok());
    let edit = |line: &[u8], from: &str, to: &str| {
        String::from_utf8(line.to_vec())
            .unwrap()
            .replacen(from, to, 1)
            .into_bytes()
    };
    lines[3] = edit(&lines[3], "200", "201");
    lines[5] = edit(&lines[5], "\"prev\":\"", "\"prev\":\"0");
    let err = verify(&lines, Some(&jwks)).unwrap_err();
    assert_eq!(err.line, 4, "{err}");
    assert!(err.reason.contains("the signed checkpoint"), "{err}");
}

#[test]
fn a_forged_checkpoint_payload_is_caught() {
    let lines = ledger(1, Some(&signer()));
    let mut cp: serde_json::Value = serde_json::from_slice(&lines[2]).unwrap();
    cp["checkpoint"]["through"] = 1.into();
    let mut bad = lines.clone();
    bad[2] = format!("{cp}\n").into_bytes();
    assert_eq!(verify(&bad, None).unwrap_err().line, 3);
    // Unsigned with a key set: refused.
    let unsigned = ledger(1, None);
    let jwks = Jwks::new(&signer()).to_json();
    assert!(verify(&unsigned, None).is_ok());
    assert!(verify(&unsigned, Some(&jwks))
        .unwrap_err()
        .reason
        .contains("not signed"));
}

#[test]
fn resume_continues_the_chain() {
    let lines = ledger(2, None);
    let chain = Chain::resume(lines[4].strip_suffix(b"\n").unwrap()).unwrap();
    assert_eq!(chain.next_seq(), 6);
    assert!(!chain.needs_checkpoint());
    assert_eq!(
        chain.head(),
        line_hash(lines[4].strip_suffix(b"\n").unwrap())
    );
    assert!(Chain::resume(b"{\"seq\":1").is_err());
}

#[test]
fn a_whole_line_without_its_newline_continues_the_chain_and_a_cut_one_does_not() {
    let lines = ledger(2, None);
    let head: Vec<u8> = lines[..3].concat();
    let chain = Chain::resume_file(&head).unwrap().unwrap();
    let next = lines[3].strip_suffix(b"\n").unwrap();
    assert!(chain.continues_with(next));
    assert!(!chain.continues_with(&next[..next.len() - 1]));
    // A whole line, but not the next one.
    assert!(!chain.continues_with(lines[4].strip_suffix(b"\n").unwrap()));
    assert!(!chain.continues_with(lines[2].strip_suffix(b"\n").unwrap()));
    assert!(!chain.continues_with(b""));
}

#[test]
fn resuming_a_file_cut_short_counts_its_records_since_the_last_checkpoint() {
    // 2 records + outcomes + a checkpoint, then 3 more records (one without an outcome).
    let mut chain = Chain::new();
    let mut file = Vec::new();
    let mut write = |chain: &mut Chain, line: SealedLine| {
        chain.commit(&line);
        file.extend_from_slice(&line.bytes);
    };
    for i in 1..=5 {
        let record = chain.record(&disclosure(i));
        let seq = record.seq;
        write(&mut chain, record);
        if i != 5 {
            let outcome = chain.outcome(seq, 200, "2026-11-29T03:00:00.000Z", None);
            write(&mut chain, outcome);
        }
        if i == 2 {
            let cp = chain.checkpoint(None, 0).unwrap();
            write(&mut chain, cp);
        }
    }
    let mut resumed = Chain::resume_file(&file).unwrap().unwrap();
    assert_eq!(resumed, chain);
    // The next checkpoint is due after 1000 records in all, 3 of them before the restart.
    for i in 4..=CHECKPOINT_EVERY {
        assert!(!resumed.checkpoint_due(), "due after {} records", i - 1);
        let record = resumed.record(&disclosure(i));
        resumed.commit(&record);
    }
    assert!(resumed.checkpoint_due());
    assert_eq!(Chain::resume_file(b"").unwrap(), None);
}

#[test]
fn file_names_sort_in_chain_order() {
    assert_eq!(file_name("2026-11-29", 3), "ledger-2026-11-29-3.jsonl");
    assert_eq!(
        parse_file_name("ledger-2026-11-29-12.jsonl"),
        Some(("2026-11-29".into(), 12))
    );
    for bad in [
        "ledger-2026-11-29.jsonl",
        "ledger-2026-1-29-1.jsonl",
        "x.jsonl",
        "ledger-2026-11-29-1.json",
    ] {
        assert_eq!(parse_file_name(bad), None, "{bad}");
    }
    let names = [
        "ledger-2026-11-30-1.jsonl",
        "ledger-2026-11-29-10.jsonl",
        "notes.txt",
        "ledger-2026-11-29-2.jsonl",
    ];
    assert_eq!(
        chain_order(names.iter().map(|s| s.to_string()).collect()),
        [
            "ledger-2026-11-29-2.jsonl",
            "ledger-2026-11-29-10.jsonl",
            "ledger-2026-11-30-1.jsonl"
        ]
    );
}

#[test]
fn subjects_are_keyed_sorted_and_distinct() {
    let ids = vec!["123".to_string(), "c-9".to_string(), "123".to_string()];
    let hashes = subject_hashes(b"key", &ids);
    assert_eq!(hashes.len(), 2);
    assert!(hashes.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        hashes
            .iter()
            .filter(|h| **h == subject_hash(b"key", "123"))
            .count(),
        1
    );
    assert_ne!(subject_hash(b"key", "123"), subject_hash(b"other", "123"));
    assert_eq!(subject_hash(b"key", "123").len(), 64);
    assert_eq!(canonical_customer("\"123\""), "123");
    assert_eq!(canonical_customer(" c-9 "), "c-9");
}

/// A stream's record as the gateway writes it before the first byte leaves.
fn stream_disclosure() -> Disclosure {
    Disclosure {
        stream: true,
        body_sha256: None,
        records_forwarded: 0,
        fields: Vec::new(),
        categories: Vec::new(),
        subjects: Vec::new(),
        ..disclosure(1)
    }
}

/// Appends the outcome line of stream record `seq` with `forwarded`.
fn stream_outcome(chain: &mut Chain, seq: u64, forwarded: &StreamForwarded) -> SealedLine {
    let outcome = chain.outcome(seq, 200, "2026-11-29T03:00:02.000Z", Some(forwarded));
    chain.commit(&outcome);
    outcome
}

#[test]
fn a_streams_outcome_completes_its_record_for_audits() {
    let mut chain = Chain::new();
    let d = stream_disclosure();
    let record = chain.record(&d);
    chain.commit(&record);
    let text = String::from_utf8(record.bytes.clone()).unwrap();
    assert!(
        text.contains("\"body_sha256\":null") && text.contains("\"stream\":true"),
        "{text}"
    );
    let forwarded = StreamForwarded {
        body_sha256: "digest".into(),
        records_forwarded: 3,
        records_dropped: 1,
        fields: vec!["a".into()],
        categories: vec!["user.name".into()],
        subjects: vec![subject_hash(b"k", "7")],
    };
    let outcome = stream_outcome(&mut chain, record.seq, &forwarded);
    let line = &outcome.bytes[..outcome.bytes.len() - 1];
    let LedgerLine::Outcome(o) = LedgerLine::parse(line).unwrap() else {
        panic!("not an outcome");
    };
    assert_eq!(o.stream.as_ref(), Some(&forwarded));
    // A plain outcome has no stream part, and parses back without one.
    let plain = chain.outcome(record.seq, 200, "2026-11-29T03:00:02.000Z", None);
    let LedgerLine::Outcome(p) = LedgerLine::parse(&plain.bytes[..plain.bytes.len() - 1]).unwrap()
    else {
        panic!("not an outcome");
    };
    assert_eq!(p.stream, None);

    let mut who = who::WhoReceived::new(&[subject_hash(b"k", "7")], None, None);
    who.line(&record.bytes[..record.bytes.len() - 1]);
    who.line(line);
    let (found, _) = who.finish();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].disclosure.records_forwarded, 3);
    assert_eq!(found[0].disclosure.body_sha256.as_deref(), Some("digest"));
    assert_eq!(found[0].status, Some(200));
}

/// A long stream writes its customers in subjects lines as it goes: they chain and verify
/// like any line, and `who-received` finds a customer named only there, with or without the
/// stream's outcome line (the gateway may have been killed mid-stream).
#[test]
fn a_streams_subjects_lines_count_for_audits() {
    let mut chain = Chain::new();
    let d = stream_disclosure();
    let record = chain.record(&d);
    chain.commit(&record);
    let early = vec![subject_hash(b"k", "1"), subject_hash(b"k", "2")];
    let subjects = chain.subjects(record.seq, &early);
    chain.commit(&subjects);
    let text = String::from_utf8(subjects.bytes.clone()).unwrap();
    assert_eq!(
        text,
        format!(
            "{{\"seq\":2,\"subjects_of\":1,\"subjects\":[\"{}\",\"{}\"],\"prev\":\"{}\"}}\n",
            early[0],
            early[1],
            line_hash(&record.bytes[..record.bytes.len() - 1])
        )
    );
    let forwarded = StreamForwarded {
        body_sha256: "digest".into(),
        records_forwarded: 3,
        subjects: vec![subject_hash(b"k", "3")],
        ..StreamForwarded::default()
    };
    let outcome = stream_outcome(&mut chain, record.seq, &forwarded);
    let lines = [record.bytes, subjects.bytes, outcome.bytes];
    let summary = verify(&lines, None).unwrap();
    assert_eq!(summary.subject_lines, 1);
    let strip = |l: &Vec<u8>| l[..l.len() - 1].to_vec();
    let who = |id: &str, lines: &[Vec<u8>]| {
        let mut who = who::WhoReceived::new(&[subject_hash(b"k", id)], None, None);
        for line in lines {
            who.line(&strip(line));
        }
        who.finish()
    };
    for (id, found) in [("1", true), ("3", true), ("4", false)] {
        let (got, unattributed) = who(id, &lines);
        assert_eq!(got.len(), usize::from(found), "customer {id}: {got:?}");
        assert!(
            unattributed.is_empty(),
            "it names customers: {unattributed:?}"
        );
        if found {
            assert_eq!(got[0].status, Some(200));
            assert_eq!(got[0].disclosure.subjects, [subject_hash(b"k", id)]);
        }
    }
    // Named in a subjects line, the outcome never written; anyone else may have been in the
    // rest of such a stream.
    let (got, unattributed) = who("2", &lines[..2]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].seq, 1);
    assert_eq!(got[0].status, None);
    assert!(unattributed.is_empty());
    let (got, unattributed) = who("4", &lines[..2]);
    assert!(got.is_empty());
    assert_eq!(unattributed.len(), 1);
    assert_eq!(unattributed[0].disclosures, 1);
    // The outcome's own list empty: still a stream that names its customers.
    let mut chain2 = Chain::new();
    let record2 = chain2.record(&d);
    chain2.commit(&record2);
    let subjects2 = chain2.subjects(record2.seq, &early);
    chain2.commit(&subjects2);
    let empty = StreamForwarded::default();
    let outcome2 = stream_outcome(&mut chain2, record2.seq, &empty);
    let (got, unattributed) = who("9", &[record2.bytes, subjects2.bytes, outcome2.bytes]);
    assert!(
        got.is_empty() && unattributed.is_empty(),
        "{got:?} {unattributed:?}"
    );
    // A subjects line must name a stream under way, and list keyed ids sorted, each once.
    let bad = Chain::new().subjects(5, &early);
    assert!(verify(&[bad.bytes], None).is_err());
    let after_outcome = chain.subjects(record.seq, &early);
    let mut with = lines.to_vec();
    with.push(after_outcome.bytes);
    let err = verify(&with, None).unwrap_err();
    assert!(err.reason.contains("not a stream under way"), "{err:?}");
    let mut plain_chain = Chain::new();
    let plain = plain_chain.record(&disclosure(1));
    plain_chain.commit(&plain);
    let of_plain = plain_chain.subjects(plain.seq, &early);
    assert!(verify(&[plain.bytes.clone(), of_plain.bytes], None).is_err());
    for list in [
        vec![early[1].clone(), early[0].clone()],
        vec![early[0].clone(), early[0].clone()],
        vec![],
        vec!["not-a-keyed-id".to_string()],
    ] {
        let mut c = Chain::new();
        let r = c.record(&d);
        c.commit(&r);
        let l = c.subjects(r.seq, &list);
        assert!(verify(&[r.bytes, l.bytes], None).is_err(), "{list:?}");
    }
}

#[test]
fn who_received_finds_any_listed_form_and_lists_routes_that_name_nobody() {
    let mut chain = Chain::new();
    let mut lines = Vec::new();
    let mut push = |chain: &mut Chain, d: Disclosure| {
        let record = chain.record(&d);
        chain.commit(&record);
        lines.push(record.bytes);
    };
    let mut upper = disclosure(1);
    upper.subjects = vec![subject_hash(b"k", "C-7")];
    push(&mut chain, upper);
    let mut nobody = disclosure(2);
    nobody.subjects = Vec::new();
    nobody.partner = "payflow".into();
    nobody.route = "/v1/charges".into();
    push(&mut chain, nobody.clone());
    push(&mut chain, nobody);
    push(&mut chain, disclosure(3));
    // Every record dropped: still counted (a URL parameter or a field beside the records may
    // have carried someone's data).
    let mut all_dropped = disclosure(4);
    all_dropped.subjects = Vec::new();
    all_dropped.records_forwarded = 0;
    all_dropped.records_dropped = 1;
    push(&mut chain, all_dropped);

    let forms = [subject_hash(b"k", "c-7"), subject_hash(b"k", "C-7")];
    let mut who = who::WhoReceived::new(&forms, None, None);
    for line in &lines {
        who.line(&line[..line.len() - 1]);
    }
    let (found, unattributed) = who.finish();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].disclosure.subjects,
        vec![subject_hash(b"k", "C-7")]
    );
    assert_eq!(
        unattributed,
        vec![
            who::Unattributed {
                partner: "acme-ship".into(),
                route: "/v1/shipments".into(),
                disclosures: 1
            },
            who::Unattributed {
                partner: "payflow".into(),
                route: "/v1/charges".into(),
                disclosures: 2
            }
        ]
    );
}

#[test]
fn records_without_an_outcome_are_counted() {
    let mut chain = Chain::new();
    let mut lines = Vec::new();
    let mut records = Vec::new();
    for i in 1..=3 {
        let record = chain.record(&disclosure(i));
        chain.commit(&record);
        records.push(record.seq);
        lines.push(record.bytes);
    }
    // Only the second record's outcome was written.
    let outcome = chain.outcome(records[1], 200, "2026-11-29T03:00:09.000Z", None);
    chain.commit(&outcome);
    lines.push(outcome.bytes);
    let summary = verify(&lines, None).unwrap();
    assert_eq!(summary.without_outcome, 2);
    assert_eq!(verify(&ledger(3, None), None).unwrap().without_outcome, 0);
}

/// An outcome line must complete a record still waiting for one: a second outcome for the same
/// record, or one naming a line that is not a record, is a break even when signed into the chain.
#[test]
fn a_second_outcome_or_one_of_a_non_record_is_a_break() {
    let outcome_of = |target: fn(&[u64]) -> u64| {
        let mut chain = Chain::new();
        let record = chain.record(&disclosure(1));
        chain.commit(&record);
        let first = chain.outcome(record.seq, 200, "2026-11-29T03:00:00.000Z", None);
        chain.commit(&first);
        let extra = chain.outcome(
            target(&[record.seq, first.seq]),
            502,
            "2026-11-29T03:00:01.000Z",
            None,
        );
        chain.commit(&extra);
        verify(&[record.bytes, first.bytes, extra.bytes], None)
    };
    for target in [(|s: &[u64]| s[0]) as fn(&[u64]) -> u64, |s: &[u64]| s[1]] {
        let err = outcome_of(target).unwrap_err().to_string();
        assert!(err.starts_with("f.jsonl:3: "), "{err}");
        assert!(err.contains("no record awaiting its outcome"), "{err}");
    }
}

/// With the key set, the checkpoints the gateway always writes are required: a ledger whose
/// checkpoints were stripped and whose chain was recomputed (which needs no key) does not pass.
/// The gateway writes one every `CHECKPOINT_EVERY` records and ends every rotated file with
/// one. Without the key set only the chain is checked.
#[test]
fn with_the_key_set_stripped_checkpoints_are_a_break() {
    let signer = signer();
    let jwks = Jwks::new(&signer).to_json();
    // One record more than a checkpoint may cover, each with its outcome, then a checkpoint.
    let long = ledger(CHECKPOINT_EVERY + 1, Some(&signer));
    let err = verify(&long, Some(&jwks)).unwrap_err();
    assert_eq!(err.line, 2 * CHECKPOINT_EVERY + 1, "{err}");
    assert!(err.reason.contains("since the last checkpoint"), "{err}");
    assert!(verify(&long, None).is_ok());
    assert!(verify(&ledger(CHECKPOINT_EVERY, Some(&signer)), Some(&jwks)).is_ok());

    // Two files, the first without its closing checkpoint.
    let lines = ledger(3, Some(&signer));
    let mut chain = Chain::new();
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    for i in 1..=3 {
        let record = chain.record(&disclosure(i));
        chain.commit(&record);
        files.push((if i < 3 { "a.jsonl" } else { "b.jsonl" }, record.bytes));
    }
    let cp = chain.checkpoint(Some(&signer), 1_800_000_000).unwrap();
    files.push(("b.jsonl", cp.bytes));
    let run = |jwks: Option<&str>| {
        let mut v = ChainVerifier::new(jwks).unwrap();
        let mut numbers = std::collections::HashMap::new();
        for (file, line) in &files {
            let n = numbers.entry(*file).or_insert(0);
            *n += 1;
            v.line(file, *n, line.strip_suffix(b"\n").unwrap())?;
        }
        v.finish()
    };
    let err = run(Some(&jwks)).unwrap_err().to_string();
    assert!(
        err.starts_with("a.jsonl:2: the file ends without a checkpoint"),
        "{err}"
    );
    assert!(run(None).is_ok());
    assert!(verify(&lines, Some(&jwks)).is_ok());
}
