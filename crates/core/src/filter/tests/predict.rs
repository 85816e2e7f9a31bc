//! Key-order prediction: records that repeat, diverge half-way, hold duplicates, escaped or
//! subject-folding keys, or more keys than prediction covers give exactly what reading every
//! key anew gives — body, report, refusal — in walked objects, in subtrees passed whole and in
//! removed members.
use super::*;

/// Filters `body` with and without key-order prediction; they must agree in everything. So
/// must filtering while noting every forwarded value (which copies members piece by piece),
/// but for the notes.
pub(super) fn both(
    predicting: &FilterProgram,
    reading: &FilterProgram,
    body: &[u8],
    options: &FilterOptions<'_>,
) -> bool {
    let a = filter(predicting, body, options);
    assert_eq!(
        a,
        filter(reading, body, options),
        "{:?}",
        String::from_utf8_lossy(body)
    );
    let mut noted = filter_forwarded(predicting, body, options);
    assert_eq!(
        noted,
        filter_forwarded(reading, body, options),
        "{:?}",
        String::from_utf8_lossy(body)
    );
    if let Ok(filtered) = noted.as_mut() {
        filtered.report.forwarded = Default::default();
    }
    assert_eq!(a, noted, "{:?}", String::from_utf8_lossy(body));
    a.is_ok()
}

/// Record member names: policy names, unknown ones, an escaped spelling of `name`, one that
/// case-insensitive readers take for the subject `id`, an unnameable one, filler.
const NAMES: &[&str] = &[
    "id",
    "name",
    "a",
    "meta",
    "client",
    "card",
    "email",
    "phone",
    "n\\u0061me",
    "ID",
    "x.y",
    "",
    "k0",
    "k1",
    "k2",
    "k3",
    "k4",
    "k5",
    "k6",
    "k7",
    "k8",
    "k9",
    "k10",
    "k11",
    "k12",
    "k13",
    "k14",
    "k15",
];
/// Names inside `a`, `meta` and `client` (`p.q`: no path can name it).
const INNER: &[&str] = &["name", "b", "c", "b\\u0061", "x", "p.q"];

/// A record value for member `name`.
fn gen_member_value(rng: &mut Rng, name: &str, out: &mut String) {
    match name {
        "id" if rng.below(40) == 0 => out.push_str(rng.pick(&["{}", "1.5", "\"\""])),
        "id" => out.push_str(rng.pick(&["1", "2", "3", "\"c-1\"", "\"C-2\"", "4"])),
        // Objects under `a` and `meta` are walked, passed whole or removed (by policy); those
        // under `client` are removed: their keys are predicted from earlier ones too.
        // Now and then an array of such objects, whose key orders depend on their position
        // (the objects of an array passed whole or removed are predicted too).
        "meta" | "client" if rng.below(4) == 0 => {
            out.push('[');
            for i in 0..rng.below(6) {
                if i > 0 {
                    out.push(',');
                }
                if rng.below(10) == 0 {
                    gen_member_value(rng, "", out);
                } else {
                    gen_inner_object(rng, i, out);
                }
            }
            out.push(']');
        }
        "a" | "meta" | "client" if rng.below(8) != 0 => gen_inner_object(rng, 0, out),
        "card" => out.push_str(rng.pick(&["\"4111 1111 1111 1234\"", "12345678", "null"])),
        // Mostly scalars, as in real records (containers where a scalar is allowed are refused).
        _ if rng.below(12) != 0 => out.push_str(rng.pick(&["1", "\"x\"", "null", "\"\\u00e9\""])),
        _ => gen_value(rng, 3, out),
    }
}

/// An object of [`INNER`] names in their usual order for position `at` of an array.
fn gen_inner_object(rng: &mut Rng, at: usize, out: &mut String) {
    out.push('{');
    let n = rng.below(5);
    let order: Vec<&str> = (0..n).map(|i| INNER[(i + at) % INNER.len()]).collect();
    for (i, key) in order.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Now and then a duplicate (also one that only unescapes alike) or a new name.
        let key = match rng.below(12) {
            0 => rng.pick(INNER),
            _ => key,
        };
        out.push_str(&format!("\"{key}\":"));
        gen_member_value(rng, "", out);
    }
    out.push('}');
}

/// A name `keys` does not hold yet (one time in 16, any name).
fn other_name(rng: &mut Rng, keys: &[&str]) -> &'static str {
    loop {
        let name = rng.pick(NAMES);
        if !keys.contains(&name) || rng.below(16) == 0 {
            return name;
        }
    }
}

/// A record whose keys follow `base`, with the edits bodies really have now and then: another
/// order from some point on, a key left out, a repeated key, a random order.
fn gen_record(rng: &mut Rng, base: &[&str], out: &mut String) {
    let mut keys: Vec<&str> = base.to_vec();
    match rng.below(10) {
        0 | 1 => {
            let from = rng.below(keys.len() + 1);
            keys.truncate(from);
            for _ in 0..rng.below(6) {
                keys.push(other_name(rng, &keys));
            }
        }
        2 if !keys.is_empty() => {
            keys.remove(rng.below(keys.len()));
        }
        3 if !keys.is_empty() => {
            let dup = keys[rng.below(keys.len())];
            keys.insert(rng.below(keys.len() + 1), dup);
        }
        4 => {
            keys = vec!["id"];
            for _ in 0..rng.below(20) {
                keys.push(other_name(rng, &keys));
            }
        }
        _ => {}
    }
    out.push('{');
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            out.push_str(rng.pick(&[",", ",", ",", ", "]));
        }
        out.push_str(&format!("\"{key}\":"));
        gen_member_value(rng, key, out);
    }
    out.push('}');
}

fn gen_body(rng: &mut Rng) -> String {
    // Each body has its own usual key order, sometimes longer than prediction covers.
    let longest = if rng.below(4) == 0 { 27 } else { 8 };
    let len = 1 + rng.below(longest);
    let mut base: Vec<&str> = vec!["id"];
    while base.len() < len {
        let name = rng.pick(NAMES);
        // The usual order has no duplicates (a rare edit above adds them).
        let unescapes_alike = match name {
            "name" => base.contains(&"n\\u0061me"),
            "n\\u0061me" => base.contains(&"name"),
            _ => false,
        };
        if !base.contains(&name) && !unescapes_alike {
            base.push(name);
        }
        if base.len() == NAMES.len() - 1 {
            break;
        }
    }
    // The subject member first, last or anywhere.
    let id = base.remove(0);
    let at = rng.below(base.len() + 1);
    base.insert(at, id);
    let mut body = String::from("{\"r\":[");
    for i in 0..rng.below(7) {
        if i > 0 {
            body.push(',');
        }
        gen_record(rng, &base, &mut body);
    }
    body.push_str("],\"top\":");
    body.push_str(rng.pick(&["{\"name\":1,\"b\":[]}", "null", "{}", "{\"x\":{}}"]));
    body.push('}');
    body
}

#[test]
fn predicted_keys_give_what_reading_every_key_gives() {
    let specs = [
        records(
            spec(
                &[
                    "r[*].id",
                    "r[*].name",
                    "r[*].a.name",
                    "r[*].a.b",
                    "r[*].meta.**",
                    "top.name",
                ],
                &[("r[*].card", Transform::Last4)],
            ),
            "r[*]",
            "id",
        ),
        records(
            spec(&["r[*].id", "r[*].a.*", "r[*].meta.*"], &[]),
            "r[*]",
            "id",
        ),
        FilterSpec {
            removes: vec![path("r[*].phone"), path("r[*].a.c")],
            ..records(
                spec(&["r[*].id", "r[*].name", "r[*].a.*"], &[]),
                "r[*]",
                "id",
            )
        },
        spec(
            &["r[*].name", "r[*].a.b", "top.*"],
            &[("r[*].id", Transform::Mask)],
        ),
    ];
    let programs: Vec<(FilterProgram, FilterProgram)> = specs
        .iter()
        .map(|s| (compile(s), compile(s).without_key_prediction()))
        .collect();
    let optouts = optouts(&["2", "c-1"]);
    let mut rng = Rng(0x5EED_0F0D_E5E5_0001);
    let (mut passed, mut refused) = (0, 0);
    for round in 0..6000 {
        let (predicting, reading) = &programs[round % programs.len()];
        let body = gen_body(&mut rng);
        let body = if round % 7 == 0 {
            mutate(&mut rng, &body)
        } else {
            body.into_bytes()
        };
        let lookup: Option<&dyn OptOutLookup> =
            (predicting.has_subjects() && round % 2 == 0).then_some(&optouts);
        let options = FilterOptions {
            subjects: round % 3 == 0,
            ..options(lookup, round % 5 == 0)
        };
        if both(predicting, reading, &body, &options) {
            passed += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        passed > 1800 && refused > 500,
        "{passed} passed, {refused} refused"
    );
}

#[test]
fn keys_past_what_prediction_covers_are_still_checked_for_duplicates() {
    let names: Vec<String> = (0..20).map(|i| format!("\"k{i}\":{i}")).collect();
    let record = format!("{{\"id\":1,{}}}", names.join(","));
    let spec = records(spec(&["r[*].id", "r[*].k3", "r[*].k19"], &[]), "r[*]", "id");
    let (predicting, reading) = (compile(&spec), compile(&spec).without_key_prediction());
    for extra in [
        "",
        ",\"k0\":0",
        ",\"k17\":0",
        ",\"id\":2",
        ",\"k\\u0031\":0",
        ",\"Id\":1",
    ] {
        let again = format!("{}{extra}}}", &record[..record.len() - 1]);
        let body = format!("{{\"r\":[{record},{again},{record}]}}");
        for lookup in [None, Some(&optouts(&["1"]) as &dyn OptOutLookup)] {
            let ok = both(
                &predicting,
                &reading,
                body.as_bytes(),
                &options(lookup, true),
            );
            assert_eq!(
                ok,
                extra.is_empty() || (extra == ",\"Id\":1" && lookup.is_none())
            );
        }
    }
}

#[test]
fn a_repeated_order_with_a_duplicate_or_a_folded_subject_is_refused() {
    let spec = records(
        spec(&["r[*].id", "r[*].name", "r[*].meta.**"], &[]),
        "r[*]",
        "id",
    );
    let (predicting, reading) = (compile(&spec), compile(&spec).without_key_prediction());
    let lookup = optouts(&[]);
    for body in [
        r#"{"r":[{"id":1,"name":"a"},{"id":2,"name":"b","name":"c"}]}"#,
        r#"{"r":[{"id":1,"name":"a"},{"id":2,"id":3}]}"#,
        r#"{"r":[{"id":1,"name":"a"},{"id":2,"n\u0061me":"b","name":"c"}]}"#,
        r#"{"r":[{"id":1,"name":"a"},{"id":2,"name":"b","ID":2}]}"#,
        r#"{"r":[{"id":1,"name":"a"},{"id":2,"name":"b"},{"Id":3,"id":3}]}"#,
        r#"{"r":[{"id":1,"name":"a"},{"id":2,"name":"b"},{"id":3,"name"}]}"#,
        r#"{"r":[{"id":1,"name":"a"},{"id":2,"name":"b"},{"id":3,"nam"#,
        // Removed members' objects (`client`) and subtrees passed whole (`meta`).
        r#"{"r":[{"id":1,"client":{"a":1,"b":2}},{"id":2,"client":{"a":1,"b":2,"a":3}}]}"#,
        r#"{"r":[{"id":1,"client":{"a":1,"b":2}},{"id":2,"client":{"a":1,"\u0061":3}}]}"#,
        r#"{"r":[{"id":1,"meta":{"a":1,"b":2}},{"id":2,"meta":{"a":1,"b":2,"b":3}}]}"#,
        r#"{"r":[{"id":1,"meta":{"a":1,"b":2}},{"id":2,"meta":{"a":1,"b":{"b":1,"b":2}}}]}"#,
        r#"{"r":[{"id":1,"meta":{"a":1,"b":2}},{"id":2,"meta":{"a":1,"b":2"#,
    ] {
        let options = options(Some(&lookup), false);
        assert!(
            !both(&predicting, &reading, body.as_bytes(), &options),
            "{body}"
        );
    }
    // Arrays of objects removed (`client`) or passed whole (`meta`): after three records that
    // teach each position its key order, a duplicate, an escaped twin or a cut in any element.
    let primed = |member: &str| {
        let elements = r#"[{"a":1,"b":2},{"c":3,"d":[4]},{"e":5},{"e":6,"f":7},{"e":8}]"#;
        let records: Vec<String> = (1..=3)
            .map(|i| format!(r#"{{"id":{i},"{member}":{elements}}}"#))
            .collect();
        records.join(",")
    };
    for member in ["client", "meta"] {
        for last in [
            r#"[{"a":1,"b":2,"a":3}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":[4],"c":5}]"#,
            r#"[{"a":1,"b":2},{"c":3,"\u0063":5}]"#,
            r#"[{"a":1,"b":2},{"c":3},{"e":5,"e":6}]"#,
            // Each element starts again: the keys of the elements before it are not its own.
            r#"[{"a":1,"b":2},{"c":3,"d":[4]},{"e":5,"e":6}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":[4]},{"e":5},{"e":6,"f":7,"e":8}]"#,
            r#"[{"a":1,"b":2},{"c":3},{"e":5},{"e":6,"f":7,"e":8}]"#,
            r#"[{"a":1,"b":2},{"c":3},{"e":5},{"e":6},{"e":8,"e":9}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":[4]},{"e":5},{"e":6,"f":7},{"e":8},{"e":1,"e":2}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":[4]},{"e":5},{"e":6,"f"}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":[4]},{"e":5},{"e":6,"f":07}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":{"x":1,"x":2}}]"#,
            // Every other kind of invalid input, in an element whose keys are predicted.
            r#"[{"a":1,"b":2},{"c":3,"d":["\ud800"]}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":["\udc00\ud800"]}]"#,
            "[{\"a\":1,\"b\":2},{\"c\":3,\"d\":[\"\u{1}\"]}]",
            r#"[{"a":1,"b":2},{"c":3,"d":["\x"]}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":[tru]}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":[1.]}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":[-]}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":[4,]}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":[4]},]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":[4]}{"e":5}]"#,
            r#"[{"a":1,"b":2},{"c":3 "d":[4]}]"#,
            r#"[{"a":1,"b":2},{"c":3,"d":[4]},{"e":5},{"e":6,"f"7}]"#,
        ] {
            let body = format!(
                r#"{{"r":[{},{{"id":4,"{member}":{last}}}]}}"#,
                primed(member)
            );
            let options = options(Some(&lookup), false);
            assert!(
                !both(&predicting, &reading, body.as_bytes(), &options),
                "{body}"
            );
        }
        // Nesting deeper than allowed inside a predicted element.
        let deep = format!(
            r#"[{{"a":1,"b":2}},{{"c":{}1{}}}]"#,
            "[".repeat(64),
            "]".repeat(64)
        );
        let body = format!(
            r#"{{"r":[{},{{"id":4,"{member}":{deep}}}]}}"#,
            primed(member)
        );
        assert!(!both(
            &predicting,
            &reading,
            body.as_bytes(),
            &options(Some(&lookup), false)
        ));
        let body = format!(r#"{{"r":[{}]}}"#, primed(member));
        assert!(both(
            &predicting,
            &reading,
            body.as_bytes(),
            &options(Some(&lookup), false)
        ));
    }
}

#[test]
fn keys_around_the_one_word_compare_are_told_apart() {
    // A key and its closing quote fit the one-word compare up to 16 bytes: names on both sides
    // of that, repeated, changed in their last byte, one byte longer or shorter, repeated
    // within the record, escaped, or cut short by the end of the body (where fewer than 16
    // bytes follow the quote, the compare falls back to slices).
    let lookup = optouts(&[]);
    for len in 12..=18 {
        let key: String = (0..len).map(|i| char::from(b'a' + i % 26)).collect();
        let spec = records(
            spec(&["r[*].id", &format!("r[*].{key}")], &[]),
            "r[*]",
            "id",
        );
        let (predicting, reading) = (compile(&spec), compile(&spec).without_key_prediction());
        let options = options(Some(&lookup), false);
        let shorter = &key[..key.len() - 1];
        let mut changed = key.clone();
        changed.pop();
        changed.push('Z');
        let escaped = format!("{shorter}\\u{:04x}", key.as_bytes()[key.len() - 1]);
        let last = format!(r#"{{"id":1,"{key}":2}}"#);
        for (second, ok, kept) in [
            (format!(r#"{{"id":2,"{key}":3}}"#), true, true),
            (format!(r#"{{"id":2,"{changed}":3}}"#), true, false),
            (format!(r#"{{"id":2,"{key}a":3}}"#), true, false),
            (format!(r#"{{"id":2,"{shorter}":3}}"#), true, false),
            (format!(r#"{{"id":2,"{key}":3,"{key}":4}}"#), false, false),
            (
                format!(r#"{{"id":2,"{key}":3,"{escaped}":4}}"#),
                false,
                false,
            ),
            (format!(r#"{{"id":2,"{key}":3}},{last}"#), true, true),
        ] {
            let body = format!(r#"{{"r":[{last},{second}]}}"#);
            assert_eq!(
                both(&predicting, &reading, body.as_bytes(), &options),
                ok,
                "{body}"
            );
            if let (true, Ok(out)) = (ok, filter(&predicting, body.as_bytes(), &options)) {
                let text = body_text(&out);
                assert_eq!(
                    text.matches(&format!("\"{key}\":3")).count(),
                    usize::from(kept)
                );
            }
            for cut in 1..body.len() {
                assert!(!both(
                    &predicting,
                    &reading,
                    &body.as_bytes()[..cut],
                    &options
                ));
            }
        }
    }
}

#[test]
fn colons_and_commas_are_checked_alike_compact_or_spaced() {
    // A compact `":` and `,` are stepped over in one compare; whitespace, a missing or doubled
    // one, or a bracket right after it take the full check, refused at the same byte. Each
    // case comes after a record that primed key-order prediction, in walked objects, removed
    // members, subtrees passed whole and arrays.
    let spec = records(
        spec(&["r[*].id", "r[*].a", "r[*].m.**", "r[*].l[*]"], &[]),
        "r[*]",
        "id",
    );
    let (predicting, reading) = (compile(&spec), compile(&spec).without_key_prediction());
    let first = r#"{"id":1,"a":2,"z":{"p":1,"q":2},"m":{"p":1,"q":2},"l":[1,2]}"#;
    let cases: &[(&str, Option<&str>)] = &[
        (r#"{"id":2,"a":3}"#, None),
        (r#"{"id" :2, "a":3}"#, None),
        (r#"{"id": 2 ,"a":3}"#, None),
        ("{\"id\":\t2,\n\"a\":3}", None),
        (
            r#"{"id":2,"z":{"p" : 1 , "q":2},"m":{"p":1, "q" :2},"l":[1 , 2]}"#,
            None,
        ),
        (
            r#"{"id":2,"a":3,"z":{"p":1,"q":2},"m":{"p":1,"q":2},"l":[1,2]}"#,
            None,
        ),
        (r#"{"id":2,,"a":3}"#, Some(",,")),
        (r#"{"id":2,}"#, Some(",}")),
        (r#"{"id"::2}"#, Some("::")),
        (r#"{"id":}"#, Some(":}")),
        (r#"{"id":2,"a":]"#, Some(":]")),
        (r#"{"id":2,"a"3}"#, Some("\"3")),
        (r#"{"id":2,"z":{"p":1,}}"#, Some(",}")),
        (r#"{"id":2,"z":{"p"::1}}"#, Some("::")),
        (r#"{"id":2,"m":{"p":1,,"q":2}}"#, Some(",,")),
        (r#"{"id":2,"m":{"p":}}"#, Some(":}")),
        (r#"{"id":2,"l":[1,]}"#, Some(",]")),
        (r#"{"id":2,"l":[1,,2]}"#, Some(",,")),
        (r#"{"id":2,"l":[1 2]}"#, Some(" 2")),
    ];
    let lookup = optouts(&[]);
    let options = options(Some(&lookup), false);
    for &(second, refused) in cases {
        for body in [
            format!(r#"{{"r":[{first},{second}]}}"#),
            format!(r#"{{"r":[{first},{first},{second}]}}"#),
        ] {
            let ok = both(&predicting, &reading, body.as_bytes(), &options);
            assert_eq!(ok, refused.is_none(), "{body}");
            assert_eq!(ok, validate(body.as_bytes(), 64).is_ok(), "{body}");
            if let Some(marker) = refused {
                // The byte after the first of the marker's two, or the space's value.
                let at = body.rfind(marker).expect("marker") + 1;
                let message = bad_request(run(&predicting, &body));
                assert!(
                    message.contains(&format!("at byte {at}")),
                    "{body}: {message}"
                );
            }
        }
    }
}

/// Prediction counts the keys it takes over without recording them: a later key it did not
/// foresee is still checked against them, and paths in refusals name them. (A slot's first
/// object is read without prediction, its second teaches it, its third is predicted.)
#[test]
fn keys_taken_over_by_prediction_are_checked_and_named() {
    let spec = records(
        spec(&["r[*].id", "r[*].name", "r[*].a.b", "r[*].a.c"], &[]),
        "r[*]",
        "id",
    );
    let (predicting, reading) = (compile(&spec), compile(&spec).without_key_prediction());
    let first = r#"{"id":1,"name":"a","a":{"b":1,"c":2},"x":1}"#;
    for (second, message) in [
        // A duplicate of the first or second predicted key, also spelled with an escape.
        (r#"{"id":2,"name":"b","id":3}"#, r#"duplicate key "id""#),
        (
            r#"{"id":2,"name":"b","n\u0061me":"c"}"#,
            r#"duplicate key "name""#,
        ),
        (
            r#"{"id":2,"name":"b","a":{"b":1,"b":2}}"#,
            r#"duplicate key "b""#,
        ),
        (
            r#"{"id":2,"name":"b","a":{"b":1,"c":2,"c":3}}"#,
            r#"duplicate key "c""#,
        ),
        // Bad values inside predicted members: the path names the predicted keys.
        (r#"{"id":2,"name":"b","a":{"b":1,"c":tru}}"#, "`r[2].a.c`"),
        (r#"{"id":2,"name":"b\u12"}"#, "`r[2].name`"),
        (r#"{"id":2,"name":"b","a":{"b":[1,}}"#, "`r[2].a.b"),
        (
            r#"{"id":2,"name":"b","a":{"b":1,"c":2},"x":01}"#,
            "`r[2].x`",
        ),
    ] {
        let body = format!(r#"{{"r":[{first},{first},{second}]}}"#);
        for lookup in [None, Some(&optouts(&["9"]) as &dyn OptOutLookup)] {
            let options = options(lookup, true);
            assert!(!both(&predicting, &reading, body.as_bytes(), &options));
            let refusal = filter(&predicting, body.as_bytes(), &options).unwrap_err();
            assert!(refusal.message.contains(message), "{second}: {refusal:?}");
        }
    }
}
