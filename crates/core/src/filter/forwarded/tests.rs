use super::*;

/// Notes appended one after another read as one note, in order; an append past the
/// budget makes the note incomplete.
#[test]
fn appended_notes_read_as_one_in_order() {
    let note = |name: &str, subtree: Option<&str>| {
        let mut n = Forwarded::for_body(64);
        let quoted = format!("\"{name}\"");
        let depth = n.enter_member(quoted.as_bytes());
        match subtree {
            Some(json) => n.subtree(json.as_bytes()),
            None => n.value(Some(Transform::Mask)),
        }
        n.leave(depth);
        n
    };
    let mut all = Forwarded::for_body(1024);
    all.append(&note("a", Some("{\"x\":1}")));
    all.append(&note("b", None));
    all.append(&note("c", Some("[2]")));
    let mut seen = Vec::new();
    all.each(&mut |raw, v| {
        let name = String::from_utf8_lossy(&raw[6..raw.len() - 1]).into_owned();
        seen.push((name, v.map_err(|j| String::from_utf8_lossy(j).into_owned())));
    });
    assert_eq!(
        seen,
        vec![
            ("a".to_string(), Err("{\"x\":1}".to_string())),
            ("b".to_string(), Ok(Some(Transform::Mask))),
            ("c".to_string(), Err("[2]".to_string())),
        ]
    );
    let mut small = Forwarded::for_body(0);
    small.budget = 8;
    small.append(&note("a", None));
    assert!(!small.complete());
}

/// A note that ran out of room is never read: it gives its memory back at once instead of
/// travelling to the shadow thread (an array of one-digit numbers under a long name noted
/// about 24 times its body's size before).
#[test]
fn an_overflowed_note_holds_no_memory() {
    let body_len = 1 << 20;
    let mut note = Forwarded::for_body(body_len);
    let name = format!("\"{}\"", "a".repeat(64));
    let depth = note.enter_member(name.as_bytes());
    for _ in 0..body_len / 2 {
        let element = note.enter_element();
        note.value(None);
        note.leave(element);
    }
    note.subtree(b"{\"x\":1}");
    note.leave(depth);
    assert!(!note.complete());
    assert!(note.heap_bytes() < 4096, "{} bytes held", note.heap_bytes());
}

/// Many one-digit values in a top-level array copy tiny paths, but each has an entry record:
/// those count too, so the note never holds more than its budget (plus one doubling).
#[test]
fn entry_records_count_against_the_budget() {
    let body_len = 1 << 20;
    let mut note = Forwarded::for_body(body_len);
    let budget = body_len * BUDGET_PER_BODY_BYTE + BUDGET_SLACK;
    let mut most = 0;
    for _ in 0..body_len / 2 {
        let element = note.enter_element();
        note.value(None);
        note.leave(element);
        most = most.max(note.heap_bytes());
    }
    assert!(!note.complete());
    assert!(
        most <= 2 * budget,
        "{most} bytes held for a budget of {budget}"
    );
}
