use super::files::{JOURNAL, SNAPSHOT, SNAPSHOT_TMP};
use super::*;
use gateway_core::optout::codec::journal::{
    frame_at, FRAME_HEADER_LEN, HEADER_LEN as JOURNAL_HEADER_LEN,
};

fn sc(list: &[&str]) -> Vec<Scope> {
    list.iter()
        .map(|s| Scope::parse(s).expect("test scope"))
        .collect()
}

fn names(scopes: &[Scope]) -> Vec<String> {
    scopes.iter().map(|s| s.to_string()).collect()
}

fn journal_bytes(dir: &Path) -> Vec<u8> {
    fs::read(dir.join(JOURNAL)).unwrap()
}

/// Start offsets of the journal's frames.
fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut pos = JOURNAL_HEADER_LEN;
    while let Some((_, end)) = frame_at(bytes, pos) {
        starts.push(pos);
        pos = end;
    }
    starts
}

#[test]
fn put_get_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    assert_eq!(store.get("1").unwrap(), None);
    assert_eq!(
        names(&store.put("1", &sc(&["partner_sharing"])).unwrap()),
        ["partner_sharing"]
    );
    assert_eq!(
        names(&store.put("1", &sc(&["partner:acme"])).unwrap()),
        ["partner:acme", "partner_sharing"]
    );
    assert!(store.is_opted_out("1", &sc(&["partner:acme"])));
    assert!(!store.is_opted_out("2", &sc(&["partner:acme"])));
    let source = store.in_memory();
    assert!(source.is_opted_out("1", &sc(&["partner_sharing"])));

    assert_eq!(
        names(
            &store
                .delete("1", Some(&sc(&["partner:acme"])))
                .unwrap()
                .unwrap()
        ),
        ["partner_sharing"]
    );
    assert_eq!(
        names(
            &store
                .delete("1", Some(&sc(&["research"])))
                .unwrap()
                .unwrap()
        ),
        ["partner_sharing"]
    );
    assert_eq!(store.delete("1", None).unwrap(), Some(vec![]));
    assert_eq!(store.delete("1", None).unwrap(), None);
    assert_eq!(store.get("1").unwrap(), None);
    assert!(!store.is_opted_out("1", &sc(&["partner_sharing"])));
    assert!(store.put("", &sc(&["partner_sharing"])).is_err());
    assert!(store.put("1", &[]).is_err());
}

#[test]
fn unchanged_puts_and_deletes_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    store.put("1", &sc(&["partner_sharing"])).unwrap();
    let before = journal_bytes(tmp.path()).len();
    store.put("1", &sc(&["partner_sharing"])).unwrap();
    store.delete("1", Some(&sc(&["research"]))).unwrap();
    store.delete("2", None).unwrap();
    assert_eq!(journal_bytes(tmp.path()).len(), before);
}

#[test]
fn reopen_keeps_every_change() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = OptOutStore::open(tmp.path()).unwrap();
        store
            .put("1", &sc(&["partner_sharing", "partner:acme"]))
            .unwrap();
        store.put("2", &sc(&["partner_sharing"])).unwrap();
        store.put("3", &sc(&["research"])).unwrap();
        store.delete("2", None).unwrap();
        store.delete("1", Some(&sc(&["partner:acme"]))).unwrap();
    }
    let store = OptOutStore::open(tmp.path()).unwrap();
    assert_eq!(
        names(&store.get("1").unwrap().unwrap()),
        ["partner_sharing"]
    );
    assert_eq!(store.get("2").unwrap(), None);
    assert_eq!(names(&store.get("3").unwrap().unwrap()), ["research"]);
    assert_eq!(store.customer_count().unwrap(), 2);
    let counts: Vec<(String, u64)> = store
        .count_by_scope()
        .unwrap()
        .into_iter()
        .map(|(s, n)| (s.to_string(), n))
        .collect();
    assert_eq!(
        counts,
        [
            ("partner:acme".to_string(), 0),
            ("partner_sharing".to_string(), 1),
            ("research".to_string(), 1)
        ]
    );
}

#[test]
fn a_second_writer_is_refused_but_readers_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    store.put("1", &sc(&["partner_sharing"])).unwrap();
    let err = OptOutStore::open(tmp.path()).unwrap_err();
    assert!(
        format!("{err:#}").contains("in use by another process"),
        "{err:#}"
    );
    let reader = OptOutStore::open_read_only(tmp.path()).unwrap();
    assert_eq!(
        names(&reader.get("1").unwrap().unwrap()),
        ["partner_sharing"]
    );
    assert!(reader.put("2", &sc(&["partner_sharing"])).is_err());
    drop(store);
    OptOutStore::open(tmp.path()).unwrap();
}

#[test]
fn read_only_needs_an_existing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let err = OptOutStore::open_read_only(&tmp.path().join("nope")).unwrap_err();
    assert!(err.to_string().contains("no opt-out store at"), "{err}");
    assert!(
        OptOutStore::open_read_only(tmp.path())
            .unwrap()
            .customer_count()
            .unwrap()
            == 0
    );
}

#[test]
fn import_is_one_snapshot_and_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let mut incoming = OptOutSet::new();
    incoming.insert("1", &sc(&["partner:acme"])).unwrap();
    incoming
        .insert("9", &sc(&["research", "partner_sharing"]))
        .unwrap();
    {
        let store = OptOutStore::open(tmp.path()).unwrap();
        store.put("1", &sc(&["partner_sharing"])).unwrap();
        store.put("2", &sc(&["partner_sharing"])).unwrap();
        let summary = store.import(&incoming).unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                customers: 2,
                opt_outs: 3,
                total_customers: 3,
                total_opt_outs: 5
            }
        );
        assert_eq!(
            names(&store.get("1").unwrap().unwrap()),
            ["partner:acme", "partner_sharing"]
        );
        assert_eq!(
            journal_bytes(tmp.path()).len(),
            JOURNAL_HEADER_LEN,
            "journal folded into the snapshot"
        );
        store.put("3", &sc(&["partner_sharing"])).unwrap();
    }
    let store = OptOutStore::open(tmp.path()).unwrap();
    let mut want = OptOutSet::new();
    want.insert("1", &sc(&["partner_sharing", "partner:acme"]))
        .unwrap();
    want.insert("2", &sc(&["partner_sharing"])).unwrap();
    want.insert("3", &sc(&["partner_sharing"])).unwrap();
    want.insert("9", &sc(&["research", "partner_sharing"]))
        .unwrap();
    assert_eq!(*store.read().unwrap(), want);
}

#[test]
fn a_crash_during_import_leaves_the_store_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = OptOutStore::open(tmp.path()).unwrap();
        store.put("1", &sc(&["partner_sharing"])).unwrap();
    }
    // A half-written snapshot.tmp is what an import killed before its rename leaves behind.
    fs::write(
        tmp.path().join(SNAPSHOT_TMP),
        b"PGOPTSNP\x01\x00\x00\x00garbage",
    )
    .unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    assert_eq!(store.customer_count().unwrap(), 1);
    assert!(!tmp.path().join(SNAPSHOT_TMP).exists());
}

#[test]
fn a_crash_between_snapshot_and_new_journal_discards_the_old_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let old_journal;
    {
        let store = OptOutStore::open(tmp.path()).unwrap();
        store.put("1", &sc(&["partner_sharing"])).unwrap();
        store.delete("1", None).unwrap();
        store.put("2", &sc(&["partner_sharing"])).unwrap();
        old_journal = journal_bytes(tmp.path());
        store.compact().unwrap();
        store.put("1", &sc(&["research"])).unwrap();
    }
    // Put the generation-0 journal back, as if the crash came between the snapshot's rename and
    // the new journal's: its changes are already in the snapshot and must not be replayed.
    let new_journal = journal_bytes(tmp.path());
    fs::write(tmp.path().join(JOURNAL), &old_journal).unwrap();
    {
        let store = OptOutStore::open(tmp.path()).unwrap();
        assert_eq!(
            store.get("1").unwrap(),
            None,
            "old journal not replayed over the snapshot"
        );
        assert_eq!(
            names(&store.get("2").unwrap().unwrap()),
            ["partner_sharing"]
        );
        assert_eq!(journal_bytes(tmp.path()).len(), JOURNAL_HEADER_LEN);
    }
    fs::write(tmp.path().join(JOURNAL), &new_journal).unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    assert_eq!(names(&store.get("1").unwrap().unwrap()), ["research"]);
}

#[test]
fn torn_tails_are_cut_off() {
    // Each case damages the last record the way a crash mid-append can.
    type Damage = fn(&mut Vec<u8>, usize);
    let cases: &[(&str, Damage)] = &[
        ("partial header", |b, last| b.truncate(last + 5)),
        ("partial payload", |b, _| b.truncate(b.len() - 3)),
        // What a power loss did not get to disk reads back as a sector of zeros.
        ("zeroed record", |b, last| b[last..].fill(0)),
        ("zeros past the end", |b, _| {
            b.extend_from_slice(&[0u8; 4096])
        }),
        ("garbage past the end", |b, _| {
            b.extend_from_slice(b"\x07\x00\x00\x00garbage")
        }),
    ];
    for (what, damage) in cases {
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = OptOutStore::open(tmp.path()).unwrap();
            store.put("1", &sc(&["partner_sharing"])).unwrap();
            store.put("2", &sc(&["partner_sharing"])).unwrap();
            store.put("3", &sc(&["partner_sharing"])).unwrap();
        }
        let mut bytes = journal_bytes(tmp.path());
        let last = *frame_starts(&bytes).last().unwrap();
        damage(&mut bytes, last);
        fs::write(tmp.path().join(JOURNAL), &bytes).unwrap();

        let reader =
            OptOutStore::open_read_only(tmp.path()).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert!(reader.get("2").unwrap().is_some(), "{what}");
        assert_eq!(
            journal_bytes(tmp.path()),
            bytes,
            "{what}: read-only open changes nothing"
        );

        let store = OptOutStore::open(tmp.path()).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert!(
            store.get("1").unwrap().is_some() && store.get("2").unwrap().is_some(),
            "{what}"
        );
        let lost_third = store.get("3").unwrap().is_none();
        assert_eq!(lost_third, !what.contains("past the end"), "{what}");
        // Appending after the repair must leave a clean journal.
        store.put("4", &sc(&["research"])).unwrap();
        drop(store);
        let store =
            OptOutStore::open(tmp.path()).unwrap_or_else(|e| panic!("{what} after repair: {e:#}"));
        assert_eq!(
            names(&store.get("4").unwrap().unwrap()),
            ["research"],
            "{what}"
        );
    }
}

#[test]
fn corruption_refuses_to_load() {
    type Damage = fn(&Path);
    let cases: &[(&str, Damage, &str)] = &[
        (
            "damaged middle record",
            |dir| {
                let path = dir.join(JOURNAL);
                let mut bytes = fs::read(&path).unwrap();
                let second = frame_starts(&bytes)[1];
                bytes[second + FRAME_HEADER_LEN + 2] ^= 0x01;
                fs::write(path, bytes).unwrap();
            },
            "a damaged record is followed by valid ones",
        ),
        (
            "damaged middle length",
            |dir| {
                let path = dir.join(JOURNAL);
                let mut bytes = fs::read(&path).unwrap();
                let second = frame_starts(&bytes)[1];
                bytes[second + 1] ^= 0x40;
                fs::write(path, bytes).unwrap();
            },
            "a damaged record is followed by valid ones",
        ),
        (
            // Whole, ending as written, only the checksum fails: changed after it was written,
            // and the opt-out it held may have been acknowledged.
            "damaged last record",
            |dir| {
                let path = dir.join(JOURNAL);
                let mut bytes = fs::read(&path).unwrap();
                let n = bytes.len();
                bytes[n - 3] ^= 0x01;
                fs::write(path, bytes).unwrap();
            },
            "the last record is whole but does not check out",
        ),
        (
            "damaged last record, garbage after it",
            |dir| {
                let path = dir.join(JOURNAL);
                let mut bytes = fs::read(&path).unwrap();
                let last = *frame_starts(&bytes).last().unwrap();
                bytes[last + FRAME_HEADER_LEN] ^= 0x01;
                bytes.extend_from_slice(b"\x07\x00\x00\x00garbage");
                fs::write(path, bytes).unwrap();
            },
            "the last record is whole but does not check out",
        ),
        (
            "damaged journal header",
            |dir| {
                let path = dir.join(JOURNAL);
                let mut bytes = fs::read(&path).unwrap();
                bytes[13] ^= 0x01;
                fs::write(path, bytes).unwrap();
            },
            "bad header",
        ),
        (
            "damaged snapshot",
            |dir| {
                let path = dir.join(SNAPSHOT);
                let mut bytes = fs::read(&path).unwrap();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x01;
                fs::write(path, bytes).unwrap();
            },
            "checksum mismatch",
        ),
        (
            "truncated snapshot",
            |dir| {
                let path = dir.join(SNAPSHOT);
                let bytes = fs::read(&path).unwrap();
                fs::write(path, &bytes[..bytes.len() - 1]).unwrap();
            },
            "truncated or not an opt-out snapshot",
        ),
        (
            "journal deleted",
            |dir| fs::remove_file(dir.join(JOURNAL)).unwrap(),
            "is missing next to",
        ),
        (
            "snapshot deleted",
            |dir| fs::remove_file(dir.join(SNAPSHOT)).unwrap(),
            "is newer than",
        ),
    ];
    for (what, damage, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = OptOutStore::open(tmp.path()).unwrap();
            store.put("0", &sc(&["partner_sharing"])).unwrap();
            store.compact().unwrap();
            store.put("1", &sc(&["partner_sharing"])).unwrap();
            store.put("2", &sc(&["partner_sharing"])).unwrap();
            store.put("3", &sc(&["partner_sharing"])).unwrap();
        }
        damage(tmp.path());
        let err = OptOutStore::open(tmp.path()).expect_err(what);
        let text = format!("{err:#}");
        assert!(text.contains(want), "{what}: {text}");
        assert!(
            OptOutStore::open_read_only(tmp.path()).is_err(),
            "{what}: read-only too"
        );
    }
}

#[test]
fn compaction_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut want = OptOutSet::new();
    {
        let store = OptOutStore::open(tmp.path()).unwrap();
        for i in 0..500 {
            let scopes = if i % 3 == 0 {
                sc(&["partner_sharing", "partner:acme"])
            } else {
                sc(&["research"])
            };
            store.put(&format!("c{i}"), &scopes).unwrap();
            want.insert(&format!("c{i}"), &scopes).unwrap();
        }
        for i in (0..500).step_by(7) {
            store.delete(&format!("c{i}"), None).unwrap();
            want.remove(&format!("c{i}"), None);
        }
        store.compact().unwrap();
        store.put("after", &sc(&["partner_sharing"])).unwrap();
        want.insert("after", &sc(&["partner_sharing"])).unwrap();
        store.compact().unwrap();
        assert_eq!(*store.read().unwrap(), want);
    }
    let store = OptOutStore::open(tmp.path()).unwrap();
    assert_eq!(*store.read().unwrap(), want);
}

#[test]
fn export_is_sorted_and_parses_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    store
        .put("b", &sc(&["partner_sharing", "partner:acme"]))
        .unwrap();
    store.put("a,1", &sc(&["research"])).unwrap();
    let mut out = Vec::new();
    assert_eq!(store.export(Format::Csv, &mut out).unwrap(), 2);
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "customer_id,scope\n\"a,1\",research\nb,partner:acme\nb,partner_sharing\n"
    );
    assert_eq!(
        bulk::parse(&out, Format::Csv).unwrap(),
        *store.read().unwrap()
    );
    let mut out = Vec::new();
    store.export(Format::Ndjson, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"customer_id\":\"a,1\",\"scopes\":[\"research\"]}\n{\"customer_id\":\"b\",\"scopes\":[\"partner:acme\",\"partner_sharing\"]}\n"
    );
}

#[test]
fn a_change_is_visible_to_other_threads_as_soon_as_put_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(OptOutStore::open(tmp.path()).unwrap());
    let honoured = sc(&["partner_sharing"]);
    let reader = {
        let store = store.clone();
        let honoured = honoured.clone();
        std::thread::spawn(move || {
            // Once "done" is seen, every earlier put must be visible.
            loop {
                if store.is_opted_out("done", &honoured) {
                    return (0..50).all(|i| store.is_opted_out(&i.to_string(), &honoured));
                }
                std::thread::yield_now();
            }
        })
    };
    for i in 0..50 {
        store.put(&i.to_string(), &honoured).unwrap();
    }
    store.put("done", &honoured).unwrap();
    assert!(reader.join().unwrap());
}

/// Runs `put` in a child process (this test binary again), kills it with SIGKILL after it
/// acknowledged some changes, and checks that every acknowledged change is there on reopen.
#[test]
fn kill_9_keeps_every_acknowledged_change() {
    use std::io::{BufRead, BufReader};
    const CHILD: &str = "PARTNER_GATEWAY_OPTOUT_KILL_CHILD";
    let scopes = sc(&["partner_sharing"]);
    if let Ok(dir) = std::env::var(CHILD) {
        let store = OptOutStore::open(Path::new(&dir)).unwrap();
        for i in 0u64.. {
            store.put(&format!("c{i}"), &scopes).unwrap();
            println!("ack {i}");
        }
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &format!("{module}::kill_9_keeps_every_acknowledged_change"),
            "--nocapture",
        ])
        .env(CHILD, tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut last = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ack ") {
            last = Some(n.parse::<u64>().unwrap());
            if last >= Some(200) {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let last = last.expect("the child acknowledged changes");
    let store = OptOutStore::open(tmp.path()).unwrap();
    for i in 0..=last {
        assert!(
            store.is_opted_out(&format!("c{i}"), &scopes),
            "acknowledged c{i} lost"
        );
    }
}

/// A failed write whose torn frame could not be cut off at once (a file system that refused
/// even that) does not stop the store for good: the next change cuts it off first, and every
/// acknowledged change survives a reopen.
#[test]
fn the_next_change_repairs_what_a_failed_write_left() {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let store = OptOutStore::open(tmp.path()).unwrap();
    store.put("1", &sc(&["partner_sharing"])).unwrap();
    // What the failed write left: part of a frame nobody acknowledged, and the writer's note.
    let mut journal = fs::OpenOptions::new()
        .append(true)
        .open(tmp.path().join(JOURNAL))
        .unwrap();
    journal.write_all(b"\x00\x00\x01part of a frame").unwrap();
    let writer = store.writer.as_ref().unwrap();
    writer.lock().unwrap().damage = Some(super::files::Damage::Tail);
    store.put("2", &sc(&["partner_sharing"])).unwrap();
    assert!(writer.lock().unwrap().damage.is_none());
    drop(store);
    let store = OptOutStore::open(tmp.path()).unwrap();
    assert_eq!(store.customer_count().unwrap(), 2);
    assert_eq!(frame_starts(&journal_bytes(tmp.path())).len(), 2);
}
