//! Which policy paths matched forwarded values, and whose records were forwarded: what the
//! disclosure ledger and the data-category metric are built from.
use std::collections::HashSet;

use super::*;

fn path(text: &str) -> FieldPath {
    FieldPath::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn program(
    allow: &[&str],
    transforms: &[(&str, Transform)],
    records: Option<(&str, &str)>,
) -> FilterProgram {
    let spec = FilterSpec {
        removes: Vec::new(),
        allow: allow.iter().map(|p| path(p)).collect(),
        transforms: transforms.iter().map(|(p, t)| (path(p), *t)).collect(),
        records: records.map(|(r, _)| path(r)),
        subject: records.map(|(_, s)| s.to_string()),
    };
    FilterProgram::compile(&spec).unwrap_or_else(|e| panic!("{e:?}"))
}

struct Out(HashSet<&'static str>);

impl OptOutLookup for Out {
    fn is_opted_out(&self, subject: &str) -> bool {
        self.0.contains(subject)
    }
}

fn report(program: &FilterProgram, body: &str, optouts: Option<&dyn OptOutLookup>) -> Report {
    let options = FilterOptions {
        max_depth: 64,
        pseudonymize_key: Some(b"k"),
        optouts,
        detail: false,
        subjects: true,
    };
    filter(program, body.as_bytes(), &options)
        .unwrap_or_else(|e| panic!("{body}: {e:?}"))
        .report
}

#[test]
fn matched_counts_values_per_path_in_spec_order() {
    let p = program(
        &["a", "b.**", "c[*].x", "o.*.e", "never"],
        &[("d", Transform::Mask), ("c[*].y", Transform::Null)],
        None,
    );
    let cases: &[(&str, [u64; 7])] = &[
        (r#"{"a":1}"#, [1, 0, 0, 0, 0, 0, 0]),
        // a subtree counts once; every element counts
        (
            r#"{"b":{"q":[1,2]},"c":[{"x":1},{"x":2,"y":"s"}]}"#,
            [0, 1, 2, 0, 0, 0, 1],
        ),
        // null is a value that passed; removed members match nothing
        (r#"{"a":null,"d":"secret","zz":1}"#, [1, 0, 0, 0, 0, 1, 0]),
        // `o.*.e` matches through any member
        (r#"{"o":{"k":{"e":1},"m":{"e":2}}}"#, [0, 0, 0, 2, 0, 0, 0]),
        (r#"{}"#, [0; 7]),
    ];
    for (body, want) in cases {
        assert_eq!(report(&p, body, None).matched, want, "{body}");
    }
}

#[test]
fn dropped_records_match_nothing_and_name_no_subject() {
    let p = program(
        &["list[*].id", "list[*].name", "list[*].extra.**", "tag"],
        &[],
        Some(("list[*]", "id")),
    );
    let out = Out(["2"].into_iter().collect());
    let body = r#"{"tag":"t","list":[{"id":1,"name":"a"},{"id":"2","name":"b","extra":{"x":1}},{"id":"x\u0033"}]}"#;
    let r = report(&p, body, Some(&out));
    assert_eq!(r.matched, [2, 1, 0, 1]);
    assert_eq!(r.subjects, ["1", "x3"]);
    assert_eq!((r.records_forwarded, r.records_dropped), (2, 1));
}

#[test]
fn subjects_are_collected_without_optouts_and_never_refuse() {
    let p = program(&["list[*].name"], &[], Some(("list[*]", "id")));
    // no opt-outs asked: a record without a usable id is forwarded and names no one
    let body = r#"{"list":[{"id":7,"name":"a"},{"name":"b"},{"id":{"x":1}},{"id":"s"}]}"#;
    let r = report(&p, body, None);
    assert_eq!(r.subjects, ["7", "s"]);
    assert_eq!(r.records_forwarded, 4);
    assert_eq!(r.matched, [2]);
}

/// Without opt-outs, a record whose id an opt-out could not be judged by (leading zeros,
/// surrounding space, `-0`, an unsafe integer) is still forwarded, and the ledger keys it by its
/// text as written, so `audit who-received` finds it; a value that is no id names no one.
#[test]
fn ids_opt_outs_refuse_are_kept_as_written_for_the_ledger() {
    let p = program(&["list[*].name"], &[], Some(("list[*]", "id")));
    let body = r#"{"list":[{"id":"0123"},{"id":" c-55"},{"id":-0},{"id":12345678901234567890123},{"id":"\u0030300"},{"id":1.5},{"id":""},{"id":true}]}"#;
    let r = report(&p, body, None);
    assert_eq!(
        r.subjects,
        ["0123", " c-55", "-0", "12345678901234567890123", "0300"]
    );
    assert_eq!(r.records_forwarded, 8);
}

#[test]
fn a_record_passed_whole_is_one_match() {
    let p = program(&["list[*].**"], &[], Some(("list[*]", "id")));
    let r = report(&p, r#"{"list":[{"id":1,"a":{"b":2}},{"id":2}]}"#, None);
    assert_eq!(r.matched, [2]);
    assert_eq!(r.subjects, ["1", "2"]);
}
