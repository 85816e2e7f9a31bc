//! Drift bookkeeping: the remembered (node, name) answers give exactly the report that building
//! every unknown member's path anew gives — counts, shapes, order, the per-request bound.
use super::*;
use crate::drift::MAX_PATHS_PER_REQUEST;

/// Filters `body` with and without the remembered answers; they must agree in everything.
fn both(program_spec: &FilterSpec, body: &[u8], options: &FilterOptions<'_>) -> Option<Report> {
    let memo = compile(program_spec);
    let fresh = compile(program_spec).without_drift_memo();
    let a = filter(&memo, body, options);
    let b = filter(&fresh, body, options);
    assert_eq!(a, b, "{:?}", String::from_utf8_lossy(body));
    assert_eq!(
        filter_forwarded(&memo, body, options),
        filter_forwarded(&fresh, body, options),
        "{:?}",
        String::from_utf8_lossy(body)
    );
    a.ok().map(|f| f.report)
}

/// Member names: field-like, escaped, data-like, unnameable.
const NAMES: &[&str] = &[
    "id",
    "a",
    "b",
    "name",
    "phone",
    "ph\\u006fne",
    "c-100001",
    "c-100002",
    "x.y",
    "meta",
    "email",
    "",
];

/// A record: `id` first, then distinct names; nested objects hold scalars only when `objects`
/// (every value an object), random values otherwise.
fn gen_record(rng: &mut Rng, objects: bool, out: &mut String) {
    out.push_str(&format!("{{\"id\":{}", rng.below(5)));
    let mut used = HashSet::from(["id".to_string()]);
    for _ in 0..rng.below(8) {
        let name = rng.pick(NAMES);
        if !used.insert(name.replace("\\u006f", "o")) {
            continue;
        }
        out.push_str(&format!(",\"{name}\":"));
        if objects || matches!(name, "a" | "meta") {
            out.push('{');
            let mut inner = HashSet::new();
            for i in 0..rng.below(4) {
                let name = rng.pick(NAMES);
                if !inner.insert(name.replace("\\u006f", "o")) {
                    continue;
                }
                if i > 0 && !out.ends_with('{') {
                    out.push(',');
                }
                out.push_str(&format!("\"{name}\":"));
                gen_value(rng, 5, out);
            }
            out.push('}');
        } else {
            gen_value(rng, 2, out);
        }
    }
    out.push('}');
}

#[test]
fn remembered_drift_paths_match_fresh_ones_on_random_bodies() {
    // (spec, whether every record member must be an object)
    let specs = [
        (
            records(spec(&["r[*].id", "r[*].a.name"], &[]), "r[*]", "id"),
            false,
        ),
        (
            records(spec(&["r[*].id", "r[*].meta.**"], &[]), "r[*]", "id"),
            false,
        ),
        (
            spec(
                &["r[*].*.name", "top.*"],
                &[("r[*].*.email", Transform::Mask)],
            ),
            true,
        ),
        (records(spec(&["r[*].*.name"], &[]), "r[*]", "id"), true),
        (
            FilterSpec {
                removes: vec![path("r[*].phone"), path("r[*].a.b")],
                ..records(spec(&["r[*].id", "r[*].a.*"], &[]), "r[*]", "id")
            },
            false,
        ),
    ];
    let optouts = optouts(&["1", "3"]);
    let mut rng = Rng(0x00C0_FFEE_1234_5678);
    let mut passed = 0;
    for round in 0..3000 {
        let (spec, objects) = &specs[round % specs.len()];
        let mut body = String::from("{\"r\":[");
        for i in 0..1 + rng.below(5) {
            if i > 0 {
                body.push(',');
            }
            gen_record(&mut rng, *objects && i % 2 == 0, &mut body);
        }
        body.push_str("],\"top\":{\"k\":1,\"c-100001\":2},\"more\":");
        gen_value(&mut rng, 1, &mut body);
        body.push('}');
        let lookup: Option<&dyn OptOutLookup> = if spec.records.is_some() && round % 2 == 0 {
            Some(&optouts)
        } else {
            None
        };
        if both(spec, body.as_bytes(), &options(lookup, round % 3 == 0)).is_some() {
            passed += 1;
        }
    }
    assert!(passed > 1500, "only {passed} bodies passed");
}

#[test]
fn the_per_request_bound_holds_with_remembered_paths() {
    // 300 distinct names, twice each in two records: the first 256 paths are listed (count
    // 2 each), the rest are only counted, also when they come again.
    let names: Vec<String> = (0..300).map(|i| format!("\"f{i:03}x\":{i}")).collect();
    let record = format!("{{\"id\":1,{}}}", names.join(","));
    let body = format!("{{\"r\":[{record},{record}]}}");
    let spec = records(spec(&["r[*].id"], &[]), "r[*]", "id");
    let report = both(&spec, body.as_bytes(), &options(None, false)).expect("passes");
    assert_eq!(report.unknown_fields, 600);
    assert_eq!(report.unknown.len(), MAX_PATHS_PER_REQUEST);
    assert!(report.unknown.iter().all(|f| f.count == 2));
    assert_eq!(report.unknown[0].path, "r[*].f000x");
}

#[test]
fn data_like_names_beyond_what_is_remembered_are_still_counted_exactly() {
    // 3000 distinct data-like names (more than are remembered) collapse into one `*` path;
    // the named ones next to them keep their own paths.
    let members: Vec<String> = (0..3000)
        .map(|i| format!("\"c-{}\":{{\"x\":{i}}},\"note\":{i}", 100_000 + i))
        .map(|m| format!("{{{m}}}"))
        .collect();
    let body = format!("{{\"keep\":1,\"r\":[{}]}}", members.join(","));
    let spec = spec(&["keep", "r[*].id"], &[]);
    let report = both(&spec, body.as_bytes(), &options(None, false)).expect("passes");
    assert_eq!(report.unknown_fields, 6000);
    let listed: Vec<(&str, u64)> = report
        .unknown
        .iter()
        .map(|f| (f.path.as_str(), f.count))
        .collect();
    assert_eq!(listed, [("r[*].*", 3000), ("r[*].note", 3000)]);
}

#[test]
fn names_that_unescape_alike_share_a_path() {
    let body = br#"{"r":[{"id":1,"ph\u006fne":1},{"id":2,"phone":{"a":1}},{"id":3,"phone":[]}]}"#;
    let spec = records(spec(&["r[*].id"], &[]), "r[*]", "id");
    let report = both(&spec, body, &options(None, false)).expect("passes");
    assert_eq!(report.unknown.len(), 1);
    assert_eq!(report.unknown[0].path, "r[*].phone");
    assert_eq!(report.unknown[0].count, 3);
    assert_eq!(
        report.unknown[0].shapes.names(),
        ["scalar", "object", "array"]
    );
}

#[test]
fn predicted_unknown_members_go_where_their_first_went() {
    // Records repeat their unknown members, so from the second on key-order prediction carries
    // where each one's occurrences go. Their shapes change from record to record; with `top`'s
    // 256 names first, the list is full and theirs are counted but never listed.
    let filler: Vec<String> = (0..MAX_PATHS_PER_REQUEST)
        .map(|i| format!("\"f{i:03}x\":{i}"))
        .collect();
    let members: Vec<String> = (0..8)
        .map(|i| {
            let v = ["1", "{\"a\":1}", "[2]", "\"s\""][i % 4];
            format!("{{\"id\":{i},\"phone\":{v},\"name\":1,\"email\":{v}}}")
        })
        .collect();
    let spec = records(
        spec(&["r[*].id", "r[*].name", "top.keep"], &[]),
        "r[*]",
        "id",
    );
    let unpredicted = compile(&spec).without_key_prediction();
    for top in [String::new(), format!("\"top\":{{{}}},", filler.join(","))] {
        let body = format!("{{{top}\"r\":[{}]}}", members.join(","));
        for lookup in [None, Some(&optouts(&["1", "4"]) as &dyn OptOutLookup)] {
            let options = options(lookup, lookup.is_some());
            let report = both(&spec, body.as_bytes(), &options).expect("passes");
            let plain = filter(&unpredicted, body.as_bytes(), &options).expect("passes");
            assert_eq!(report, plain.report);
            if lookup.is_some() {
                continue;
            }
            let listed: Vec<(&str, u64, Vec<&str>)> = report
                .unknown
                .iter()
                .filter(|f| f.path.starts_with("r["))
                .map(|f| (f.path.as_str(), f.count, f.shapes.names()))
                .collect();
            if top.is_empty() {
                assert_eq!(report.unknown_fields, 16);
                let shapes = vec!["scalar", "object", "array"];
                assert_eq!(
                    listed,
                    [("r[*].phone", 8, shapes.clone()), ("r[*].email", 8, shapes)]
                );
            } else {
                assert_eq!(report.unknown_fields, 16 + MAX_PATHS_PER_REQUEST as u64);
                assert_eq!(report.unknown.len(), MAX_PATHS_PER_REQUEST);
                assert!(listed.is_empty());
            }
        }
    }
}

/// A record's subject member, named by the route's `subject` but not allowed, is removed but
/// no drift: `drift --suggest` must never propose sending the raw customer id. The same name
/// outside a record, or an object's other unknown members, are drift as before.
#[test]
fn a_records_subject_member_is_no_drift() {
    let program = compile(&records(spec(&["c[*].name"], &[]), "c[*]", "customer_id"));
    let body = br#"{"customer_id":9,"c":[{"customer_id":"a","name":"A","extra":1},{"customer_id":"b","name":"B","extra":2},{"customer_id":"c","name":"C","extra":3}]}"#;
    for optouts_on in [false, true] {
        let none = optouts(&[]);
        let lookup: Option<&dyn OptOutLookup> = optouts_on.then_some(&none as &dyn OptOutLookup);
        let report = both(&program.spec, body, &options(lookup, false)).unwrap();
        let paths: Vec<&str> = report.unknown.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(paths, ["customer_id", "c[*].extra"], "{:?}", report.unknown);
        assert_eq!(report.fields_removed, 7);
    }
}
