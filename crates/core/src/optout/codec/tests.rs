use super::journal::{self, Change, Op};
use super::snapshot;
use super::CodecError;
use crate::optout::{OptOutSet, Scope};

fn sc(list: &[&str]) -> Vec<Scope> {
    list.iter().map(|s| Scope::parse(s).unwrap()).collect()
}

fn journal_of(changes: &[(Op, &str, &[&str])]) -> Vec<u8> {
    let mut bytes = journal::header(7).to_vec();
    for (op, id, scopes) in changes {
        let payload = journal::encode_change(*op, id, &sc(scopes)).unwrap();
        bytes.extend(journal::frame(&payload));
    }
    bytes
}

#[test]
fn changes_round_trip() {
    let cases: &[(Op, &str, &[&str])] = &[
        (Op::Add, "1", &["partner_sharing", "partner:acme"]),
        (Op::Remove, "cust-ü", &["research"]),
        (Op::RemoveAll, "x", &[]),
    ];
    for (op, id, scopes) in cases {
        let payload = journal::encode_change(*op, id, &sc(scopes)).unwrap();
        let change = journal::decode_change(&payload).unwrap();
        assert_eq!(
            change,
            Change {
                op: *op,
                id,
                scopes: sc(scopes)
            }
        );
    }
}

#[test]
fn bad_changes_are_refused() {
    let good = journal::encode_change(Op::Add, "1", &sc(&["research"])).unwrap();
    let mut unknown_op = good.clone();
    unknown_op[0] = 9;
    let mut trailing = good.clone();
    trailing.push(0);
    let no_scopes = journal::encode_change(Op::Add, "1", &[]).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("unknown op", unknown_op, "unknown operation 9"),
        ("trailing", trailing, "1 unexpected bytes after the change"),
        (
            "truncated",
            good[..good.len() - 1].to_vec(),
            "truncated at byte",
        ),
        ("no scopes", no_scopes, "a change with no scopes"),
        (
            "control char",
            b"\x01\x01\x00\x07\x00\x00".to_vec(),
            "control character",
        ),
    ];
    for (what, payload, want) in cases {
        let err = journal::decode_change(&payload).expect_err(what);
        assert!(err.to_string().contains(want), "{what}: {err}");
    }
    assert!(journal::encode_change(Op::Add, "", &sc(&["research"])).is_err());
}

#[test]
fn header_round_trips_and_damage_is_caught() {
    let header = journal::header(42);
    assert_eq!(journal::read_header(&header), Ok(42));
    let mut bad = header;
    bad[13] ^= 1;
    assert_eq!(journal::read_header(&bad), Err(CodecError::BadHeader));
    assert!(matches!(
        journal::read_header(&header[..10]),
        Err(CodecError::Truncated { .. })
    ));
}

#[test]
fn replay_applies_changes_in_order() {
    let bytes = journal_of(&[
        (Op::Add, "1", &["partner_sharing", "research"]),
        (Op::Add, "2", &["research"]),
        (Op::Remove, "1", &["research"]),
        (Op::RemoveAll, "2", &[]),
    ]);
    let mut set = OptOutSet::new();
    assert_eq!(journal::replay(&bytes, &mut set), Ok(bytes.len()));
    assert_eq!(set.get("1"), Some(sc(&["partner_sharing"])));
    assert_eq!(set.get("2"), None);
}

#[test]
fn a_torn_tail_ends_replay_but_a_damaged_middle_is_corruption() {
    let bytes = journal_of(&[(Op::Add, "1", &["research"]), (Op::Add, "2", &["research"])]);
    let second = journal::frame_at(&bytes, journal::HEADER_LEN).unwrap().1;

    let mut torn = bytes.clone();
    torn.truncate(bytes.len() - 2);
    let mut set = OptOutSet::new();
    assert_eq!(journal::replay(&torn, &mut set), Ok(second));
    assert!(set.contains("1") && !set.contains("2"));

    let mut damaged = bytes.clone();
    damaged[journal::HEADER_LEN + journal::FRAME_HEADER_LEN + 1] ^= 1;
    let err = journal::replay(&damaged, &mut OptOutSet::new()).unwrap_err();
    assert_eq!(
        err,
        CodecError::DamagedRecord {
            at: journal::HEADER_LEN,
            next: second
        }
    );
}

/// A last record that is whole but fails its checksum was changed after it was written, and
/// the opt-out it held may have been acknowledged: corruption, not a torn tail. One with a
/// sector's share of zeros is what a power loss leaves of an append: torn.
#[test]
fn a_whole_damaged_last_record_is_corruption_a_zeroed_sector_is_torn() {
    let bytes = journal_of(&[(Op::Add, "1", &["research"]), (Op::RemoveAll, "2", &[])]);
    let second = journal::frame_at(&bytes, journal::HEADER_LEN).unwrap().1;
    let n = bytes.len();
    let damaged = |at: usize| Err(CodecError::DamagedLastRecord { at });

    // One bit anywhere in it: the payload (a RemoveAll ends in zeros as written), the
    // length word, the check word, the checksum.
    for at in [n - 4, n - 1, second, second + 4, second + 8] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 1;
        assert_eq!(
            journal::replay(&flipped, &mut OptOutSet::new()),
            damaged(second),
            "{at}"
        );
    }

    // Zeroed, whole or cut short: torn.
    let mut zeroed = bytes.clone();
    zeroed[second..].fill(0);
    assert_eq!(journal::replay(&zeroed, &mut OptOutSet::new()), Ok(second));
    assert_eq!(
        journal::replay(&bytes[..second + 7], &mut OptOutSet::new()),
        Ok(second)
    );
}

/// A last record across a sector boundary of which one side did not reach the disk (zeros up
/// to or from the boundary): torn, whichever side it is, even with the header intact.
#[test]
fn a_last_record_with_one_sector_unwritten_is_torn() {
    let long = "x".repeat(200);
    let mut ids: Vec<String> = (0..2).map(|i| format!("{i}{long}")).collect();
    ids.push(format!("last{long}"));
    let changes: Vec<(Op, &str, &[&str])> = ids
        .iter()
        .map(|id| (Op::Add, id.as_str(), &["research"][..]))
        .collect();
    let bytes = journal_of(&changes);
    let starts: Vec<usize> = {
        let mut starts = Vec::new();
        let mut pos = journal::HEADER_LEN;
        while let Some((_, end)) = journal::frame_at(&bytes, pos) {
            starts.push(pos);
            pos = end;
        }
        starts
    };
    let last = *starts.last().unwrap();
    let boundary = (last / 512 + 1) * 512;
    assert!(
        boundary < bytes.len(),
        "the last record must cross a sector boundary"
    );
    for (from, to) in [(last, boundary), (boundary, bytes.len()), (last, last + 3)] {
        let mut torn = bytes.clone();
        torn[from..to].fill(0);
        let result = journal::replay(&torn, &mut OptOutSet::new());
        if to == last + 3 && last + 3 < boundary {
            // Three zero bytes inside a sector that holds more of it: not a lost sector.
            assert_eq!(result, Err(CodecError::DamagedLastRecord { at: last }));
        } else {
            assert_eq!(result, Ok(last), "zeros {from}..{to}");
        }
    }
}

fn set_of(entries: &[(&str, &[&str])]) -> OptOutSet {
    let mut set = OptOutSet::new();
    for (id, scopes) in entries {
        set.insert(id, &sc(scopes)).unwrap();
    }
    set
}

fn encoded(generation: u64, set: &OptOutSet, extra: Option<&OptOutSet>) -> Vec<u8> {
    let mut out = Vec::new();
    let len = snapshot::encode::<CodecError>(generation, set, extra, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    assert_eq!(len, out.len() as u64);
    out
}

#[test]
fn snapshots_round_trip_and_merge() {
    let set = set_of(&[
        ("1", &["partner_sharing"]),
        ("2", &["research", "partner:a"]),
    ]);
    let extra = set_of(&[("2", &["news"]), ("3", &["partner_sharing", "news"])]);
    let (back, generation) = snapshot::decode(&encoded(3, &set, None)).unwrap();
    assert_eq!(generation, 3);
    assert_eq!(back.len(), 2);
    assert_eq!(back.get("2"), set.get("2"));

    let (merged, _) = snapshot::decode(&encoded(4, &set, Some(&extra))).unwrap();
    assert_eq!(merged.len(), 3);
    assert_eq!(merged.get("1"), Some(sc(&["partner_sharing"])));
    let mut two = merged.get("2").unwrap();
    two.sort();
    assert_eq!(two, sc(&["news", "partner:a", "research"]));
    let mut three = merged.get("3").unwrap();
    three.sort();
    assert_eq!(three, sc(&["news", "partner_sharing"]));
}

#[test]
fn damaged_snapshots_are_refused() {
    let bytes = encoded(1, &set_of(&[("1", &["partner_sharing"])]), None);
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 1;
    let cases: Vec<(&str, Vec<u8>, CodecError)> = vec![
        ("flipped", flipped, CodecError::Checksum),
        (
            "truncated",
            bytes[..bytes.len() - 1].to_vec(),
            CodecError::TruncatedSnapshot,
        ),
        ("empty", Vec::new(), CodecError::TruncatedSnapshot),
    ];
    for (what, bytes, want) in cases {
        assert_eq!(snapshot::decode(&bytes).err(), Some(want), "{what}");
    }
}
