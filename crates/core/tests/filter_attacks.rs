//! Adversarial inputs against the strict one-pass filter: every test tries to get a field the
//! policy does not allow, an opted-out customer's record, or anything at all for a body that
//! must be refused, past `filter`. A passing test documents a defence.
use std::collections::HashSet;

use gateway_core::filter::FieldPath;
use gateway_core::filter::{filter, FilterOptions, FilterProgram, FilterSpec, OptOutLookup};
use gateway_core::filter::{Filtered, Transform};
use gateway_core::{Refusal, RefusalKind};

fn path(text: &str) -> FieldPath {
    FieldPath::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn spec(allow: &[&str], transforms: &[(&str, Transform)]) -> FilterSpec {
    FilterSpec {
        removes: Vec::new(),
        allow: allow.iter().map(|p| path(p)).collect(),
        transforms: transforms.iter().map(|(p, t)| (path(p), *t)).collect(),
        records: None,
        subject: None,
    }
}

fn with_records(mut spec: FilterSpec, records: &str, subject: &str) -> FilterSpec {
    spec.records = Some(path(records));
    spec.subject = Some(subject.to_string());
    spec
}

fn compile(spec: &FilterSpec) -> FilterProgram {
    FilterProgram::compile(spec).unwrap_or_else(|e| panic!("{e:?}"))
}

struct OptedOut(HashSet<String>);

impl OptOutLookup for OptedOut {
    fn is_opted_out(&self, subject: &str) -> bool {
        self.0.contains(subject)
    }
}

fn opted_out(ids: &[&str]) -> OptedOut {
    OptedOut(ids.iter().map(|s| s.to_string()).collect())
}

const MAX_DEPTH: usize = 8;

fn options(optouts: Option<&dyn OptOutLookup>) -> FilterOptions<'_> {
    FilterOptions {
        max_depth: MAX_DEPTH,
        pseudonymize_key: Some(b"k"),
        optouts,
        detail: false,
        subjects: false,
    }
}

fn run_bytes(program: &FilterProgram, body: &[u8]) -> Result<String, Refusal> {
    run_opts(program, body, &options(None))
}

fn run(program: &FilterProgram, body: &str) -> Result<String, Refusal> {
    run_bytes(program, body.as_bytes())
}

fn run_opts(
    program: &FilterProgram,
    body: &[u8],
    options: &FilterOptions<'_>,
) -> Result<String, Refusal> {
    let Filtered { body, .. } = filter(program, body, options)?;
    let text = String::from_utf8(body).expect("the filter emits UTF-8");
    // Whatever passes must be one strict JSON value, so a partner cannot parse it differently.
    // (serde_json cannot hold `1e400`, which is valid JSON.)
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
        assert!(
            e.to_string().contains("out of range"),
            "the filter emitted invalid JSON {text:?}: {e}"
        );
    }
    Ok(text)
}

#[track_caller]
fn assert_bad(result: Result<String, Refusal>, what: &str) {
    match result {
        Err(Refusal {
            kind: RefusalKind::BadRequest,
            ..
        }) => {}
        other => panic!("{what}: expected 400 bad_request, got {other:?}"),
    }
}

#[track_caller]
fn assert_no_secret(result: &Result<String, Refusal>, secret: &str, what: &str) {
    if let Ok(out) = result {
        assert!(!out.contains(secret), "{what}: {secret:?} leaked in {out}");
    }
}

fn email_policy() -> FilterProgram {
    compile(&spec(&["name", "meta.*", "blob.**"], &[]))
}

#[test]
fn escaped_and_syntax_keys_never_match_an_allowed_name() {
    let program = email_policy();
    for body in [
        r#"{"name":"Ada","em\u0061il":"SECRET"}"#,
        r#"{"name":"Ada","\u0065mail":"SECRET"}"#,
        r#"{"name ":"SECRET"}"#,
        r#"{"Name":"SECRET"}"#,
        r#"{"name\u0000":"SECRET"}"#,
        r#"{"nam\u0065\u200b":"SECRET"}"#,
        r#"{"ｎａｍｅ":"SECRET"}"#,
        r#"{"__proto__":{"name":"SECRET"}}"#,
        r#"{"constructor":{"prototype":{"x":"SECRET"}}}"#,
        r#"{"meta.x":"SECRET"}"#,
        r#"{"meta":{"a.b":"SECRET","c[0]":"SECRET","*":"SECRET","**":"SECRET","]":"SECRET","x\u002ey":"SECRET","\u002a\u002a\u002a":"SECRET"}}"#,
        r#"{"blob.**":"SECRET","*":"SECRET","[*]":"SECRET","$":"SECRET"}"#,
        r#"{"meta[*]":"SECRET","meta.*":"SECRET"}"#,
    ] {
        let result = run(&program, body);
        assert!(result.is_ok(), "{body}: {result:?}");
        assert_no_secret(&result, "SECRET", body);
    }
    // An allowed key spelled with escapes is still the allowed key (and passes as written).
    assert_eq!(
        run(&program, r#"{"n\u0061me":"Ada"}"#).unwrap(),
        r#"{"n\u0061me":"Ada"}"#
    );
}

#[test]
fn duplicate_keys_are_refused_at_any_depth_and_in_any_subtree() {
    let program = email_policy();
    for body in [
        r#"{"name":"a","name":"b"}"#,
        r#"{"name":"a","n\u0061me":"b"}"#,
        r#"{"name":"a","\u006e\u0061\u006d\u0065":"b"}"#,
        // Inside a removed subtree.
        r#"{"x":{"y":{"z":1,"z":2}}}"#,
        r#"{"x":[{"a":1,"\u0061":2}]}"#,
        r#"{"x":{"\ud83d\ude00":1,"😀":2}}"#,
        r#"{"x":{"\/":1,"/":2}}"#,
        // Inside a subtree that passes whole.
        r#"{"blob":{"k":1,"k":2}}"#,
        r#"{"blob":[[{"k":1,"\u006b":2}]]}"#,
        // Under a wildcard.
        r#"{"meta":{"a":1,"a":2}}"#,
        r#"{"meta":{"a.b":1,"a\u002eb":2}}"#,
        // The removed member is the duplicate of a kept one, and vice versa.
        r#"{"blob":{},"blob":{"secret":1}}"#,
    ] {
        assert_bad(run(&program, body), body);
    }
}

/// Objects large enough to switch the duplicate check to a hash set, nested and as siblings.
#[test]
fn duplicate_keys_in_large_objects() {
    let program = email_policy();
    let keys = |prefix: &str, n: usize| {
        (0..n)
            .map(|i| format!("\"{prefix}{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let big = keys("k", 40);
    // Last key duplicates the first, well past the switch.
    assert_bad(
        run(&program, &format!("{{\"x\":{{{big},\"k0\":1}}}}")),
        "late dup",
    );
    // Escaped duplicate in the set phase.
    assert_bad(
        run(&program, &format!("{{\"x\":{{{big},\"\\u006b3\":1}}}}")),
        "escaped late dup",
    );
    // Dup right at the switch: the 17th key repeats the 17th... the 16th.
    assert_bad(
        run(
            &program,
            &format!("{{\"x\":{{{},\"k15\":0}}}}", keys("k", 16)),
        ),
        "dup at the switch",
    );
    // A large inner object closes; the outer large object still sees its own keys.
    let inner = keys("i", 30);
    assert_bad(
        run(
            &program,
            &format!("{{\"x\":{{{big},\"in\":{{{inner}}},\"k7\":1}}}}"),
        ),
        "outer dup after a large inner object",
    );
    // Siblings reuse the set: the second sibling must not inherit or lose keys.
    let ok = format!("{{\"x\":[{{{big}}},{{{big}}}]}}");
    assert!(
        run(&program, &ok).is_ok(),
        "siblings with the same keys are fine"
    );
    assert_bad(
        run(
            &program,
            &format!("{{\"x\":[{{{big}}},{{{big},\"k39\":0}}]}}"),
        ),
        "dup in the second sibling",
    );
    // Kept objects with many members (the hash-map member lookup), duplicate among them.
    let wide = compile(&spec(
        &["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"],
        &[],
    ));
    let members: String = "abcdefghijkl"
        .chars()
        .map(|c| format!("\"{c}\":1,"))
        .collect();
    assert_bad(
        run(&wide, &format!("{{{members}\"zz\":1,\"\\u0061\":2}}")),
        "dup with named index",
    );
    assert_eq!(
        run(&wide, &format!("{{{members}\"email\":\"SECRET\"}}")).unwrap(),
        format!("{{{}}}", members.trim_end_matches(','))
    );
}

#[test]
fn invalid_text_is_refused_even_in_removed_subtrees() {
    let program = email_policy();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("lone high surrogate", br#"{"x":"\ud800"}"#.to_vec()),
        ("lone low surrogate", br#"{"x":"\udc00"}"#.to_vec()),
        ("high then letter", br#"{"x":"\ud800\u0041"}"#.to_vec()),
        (
            "high then escaped backslash",
            br#"{"x":"\ud800\\udc00"}"#.to_vec(),
        ),
        ("reversed pair", br#"{"x":"\udc00\ud800"}"#.to_vec()),
        ("two highs", br#"{"x":"\ud800\ud800"}"#.to_vec()),
        ("lone surrogate in a key", br#"{"\ud800":1}"#.to_vec()),
        (
            "lone surrogate in a kept subtree",
            br#"{"blob":{"a":"\udfff"}}"#.to_vec(),
        ),
        ("short \\u", br#"{"x":"\u12"}"#.to_vec()),
        ("bad hex", br#"{"x":"\u12g4"}"#.to_vec()),
        ("unknown escape", br#"{"x":"\x41"}"#.to_vec()),
        ("escaped quote at end", br#"{"x":"\"}"#.to_vec()),
        ("overlong slash", b"{\"x\":\"\xc0\xaf\"}".to_vec()),
        ("overlong NUL", b"{\"x\":\"\xc0\x80\"}".to_vec()),
        ("UTF-8 surrogate", b"{\"x\":\"\xed\xa0\x80\"}".to_vec()),
        ("above U+10FFFF", b"{\"x\":\"\xf4\x90\x80\x80\"}".to_vec()),
        ("truncated sequence", b"{\"x\":\"\xe2\x82\"}".to_vec()),
        ("Latin-1", b"{\"x\":\"caf\xe9\"}".to_vec()),
        ("BOM", b"\xef\xbb\xbf{\"name\":\"a\"}".to_vec()),
        (
            "BOM after whitespace",
            b" \xef\xbb\xbf{\"name\":\"a\"}".to_vec(),
        ),
        ("raw NUL in a string", b"{\"x\":\"a\x00b\"}".to_vec()),
        ("raw NUL outside", b"{\"name\":\"a\"\x00}".to_vec()),
        ("raw newline in a string", b"{\"x\":\"a\nb\"}".to_vec()),
        ("raw tab in a key", b"{\"a\tb\":1}".to_vec()),
        (
            "UTF-16LE",
            b"{\x00\"\x00n\x00\"\x00:\x001\x00}\x00".to_vec(),
        ),
        ("UTF-16 BOM", b"\xff\xfe{\x00}\x00".to_vec()),
    ];
    for (what, body) in cases {
        assert_bad(run_bytes(&program, &body), what);
    }
    // DEL and non-ASCII need no escape: a valid body.
    assert!(run_bytes(&program, b"{\"x\":\"\x7f\",\"name\":\"\xc3\xa9\"}").is_ok());
}

#[test]
fn numbers_pass_byte_identical_and_malformed_ones_are_refused() {
    let program = compile(&spec(&["n"], &[]));
    for n in [
        "-0",
        "0",
        "1e400",
        "-1E-400",
        "123456789012345678901234567890",
        "0.000000000000000000000000001",
        "1.0",
        "1E+2",
    ] {
        assert_eq!(
            run(&program, &format!("{{\"n\":{n}}}")).unwrap(),
            format!("{{\"n\":{n}}}")
        );
    }
    for n in [
        "01",
        "-",
        "--1",
        "+1",
        "1.",
        ".5",
        "1e",
        "1e+",
        "0x10",
        "NaN",
        "Infinity",
        "-Infinity",
        "1_000",
        "1.5.5",
        "١",
        "1 2",
        "tru",
        "nul",
        "True",
        "NULL",
        "'a'",
        "undefined",
    ] {
        assert_bad(run(&program, &format!("{{\"n\":{n}}}")), n);
        // And where the member is removed.
        assert_bad(run(&program, &format!("{{\"x\":{n}}}")), n);
    }
}

#[test]
fn depth_limit_holds_in_removed_and_whole_subtrees() {
    let program = email_policy();
    let nest = |depth: usize, key: &str| {
        // `depth` containers in total, the root included.
        let inner = depth - 1;
        format!("{{\"{key}\":{}1{}}}", "[".repeat(inner), "]".repeat(inner))
    };
    assert!(run(&program, &nest(MAX_DEPTH, "x")).is_ok());
    assert!(run(&program, &nest(MAX_DEPTH, "blob")).is_ok());
    assert_bad(
        run(&program, &nest(MAX_DEPTH + 1, "x")),
        "removed, one too deep",
    );
    assert_bad(
        run(&program, &nest(MAX_DEPTH + 1, "blob")),
        "whole, one too deep",
    );
    // Very deep input must neither overflow the stack nor pass.
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(200_000), "]".repeat(200_000));
    assert_bad(run(&program, &deep), "200k deep");
    let deep_objects = format!(
        "{{\"x\":{}1{}}}",
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    assert_bad(run(&program, &deep_objects), "50k deep objects");
    // Unterminated deep input.
    assert_bad(run(&program, &"[".repeat(100)), "unterminated");
}

#[test]
fn whitespace_variants_and_trailing_data() {
    let program = email_policy();
    assert_eq!(
        run(&program, " \t\r\n{ \"name\" \r\n:\t\"a\" } \n").unwrap(),
        r#"{"name":"a"}"#
    );
    for body in [
        "{\"name\":\"a\"}\u{a0}",
        "\u{a0}{\"name\":\"a\"}",
        "{\u{2028}\"name\":\"a\"}",
        "{\u{feff}\"name\":\"a\"}",
        "{\x0b\"name\":\"a\"}",
        "{\x0c\"name\":\"a\"}",
        "{\"name\":\"a\"} {}",
        "{\"name\":\"a\"}{\"email\":\"SECRET\"}",
        "{\"name\":\"a\"},",
        "{\"name\":\"a\"}]",
        "{\"name\":\"a\"}\0",
        "{\"name\":\"a\",}",
        "{,\"name\":\"a\"}",
        "{\"name\" \"a\"}",
        "{\"name\"::\"a\"}",
        "{name:\"a\"}",
        "{'name':'a'}",
        "{\"name\":\"a\" /* c */}",
        "{\"name\":\"a\"} // c",
        "",
        "   ",
    ] {
        assert_bad(run(&program, body), &format!("{body:?}"));
    }
}

#[test]
fn top_level_types_must_fit_the_paths() {
    let program = email_policy();
    for body in [r#"[{"name":"a"}]"#, r#""name""#, "1", "true", r#"[]"#] {
        assert_bad(run(&program, body), body);
    }
    // `null` where an object is expected passes as `null` (null passes there as null).
    assert_eq!(run(&program, "null").unwrap(), "null");
    // A root-array policy refuses an object.
    let array = compile(&spec(&["[*].name"], &[]));
    assert_eq!(
        run(&array, r#"[{"name":"a","email":"SECRET"}]"#).unwrap(),
        r#"[{"name":"a"}]"#
    );
    assert_bad(run(&array, r#"{"name":"a"}"#), "object for an array root");
    assert_bad(
        run(&array, r#"["SECRET"]"#),
        "scalar element where objects are expected",
    );
}

#[test]
fn containers_never_ride_through_scalar_paths_or_transforms() {
    let program = compile(&spec(
        &["id", "list[*]", "grid[*][*]"],
        &[
            ("card", Transform::Last4),
            ("cid", Transform::Pseudonymize),
            ("note", Transform::Mask),
            ("gone", Transform::Null),
        ],
    ));
    for body in [
        r#"{"id":{"email":"SECRET"}}"#,
        r#"{"id":["SECRET"]}"#,
        r#"{"list":[{"email":"SECRET"}]}"#,
        r#"{"list":[["SECRET"]]}"#,
        r#"{"list":{"0":"SECRET"}}"#,
        r#"{"list":"SECRET"}"#,
        r#"{"grid":[[{"email":"SECRET"}]]}"#,
        r#"{"grid":[["a"],"SECRET"]}"#,
        r#"{"grid":[[["SECRET"]]]}"#,
        r#"{"card":["4111111111111111"]}"#,
        r#"{"card":{"n":"4111111111111111"}}"#,
        r#"{"card":true}"#,
        r#"{"cid":false}"#,
        r#"{"cid":{"id":1}}"#,
        r#"{"cid":[1]}"#,
        r#"{"note":[1]}"#,
        r#"{"note":true}"#,
        r#"{"gone":{"a":"SECRET"}}"#,
        r#"{"gone":[1]}"#,
    ] {
        assert_bad(run(&program, body), body);
    }
    assert_eq!(
        run(
            &program,
            r#"{"grid":[[1,"a",null,true],[]],"list":null,"card":null,"cid":null}"#
        )
        .unwrap(),
        r#"{"grid":[[1,"a",null,true],[]],"list":null,"card":null,"cid":null}"#
    );
}

#[test]
fn transforms_never_leak_the_value() {
    let program = compile(&spec(
        &[],
        &[
            ("card", Transform::Last4),
            ("cid", Transform::Pseudonymize),
            ("note", Transform::Mask),
            ("gone", Transform::Null),
        ],
    ));
    let out = run(
        &program,
        r#"{"card":"4111-1111-1111-1234","cid":"SECRET-ID","note":"SECRET","gone":"SECRET"}"#,
    )
    .unwrap();
    assert!(!out.contains("SECRET"), "{out}");
    assert!(out.contains(r#""card":"***1234""#), "{out}");
    // Escaped digits are digits after unescaping; escaped quotes cannot break out.
    let out = run(
        &program,
        r#"{"card":"\u0034111111111111\u0039\u0039\u0039\u0039","note":"\"},\"email\":\"SECRET","cid":"\"SECRET"}"#,
    )
    .unwrap();
    assert!(!out.contains("SECRET"), "{out}");
    assert!(out.contains(r#""card":"***9999""#), "{out}");
    // Short values are masked entirely; non-ASCII digits do not count and never pass.
    let out = run(&program, r#"{"card":"1234567","note":1}"#).unwrap();
    assert_eq!(out, r#"{"card":"***","note":"***"}"#);
    let out = run(&program, r#"{"card":"١٢٣٤٥٦٧٨٩٠١٢"}"#).unwrap();
    assert_eq!(out, r#"{"card":"***"}"#);
    // Numbers: the literal text, never reformatted, still masked.
    let out = run(&program, r#"{"card":41111111111111111234,"cid":123}"#).unwrap();
    assert!(out.contains(r#""card":"***1234""#), "{out}");
    let out_str = run(&program, r#"{"cid":"123"}"#).unwrap();
    let out_num = run(&program, r#"{"cid":123}"#).unwrap();
    assert_eq!(out_str, out_num, "123 and \"123\" pseudonymize alike");
    // Transformed members inside arrays of records.
    let records = compile(&spec(&["r[*].id"], &[("r[*].card", Transform::Last4)]));
    assert_bad(
        run(&records, r#"{"r":[{"card":["4111111111111111"]}]}"#),
        "array under a transform in an array",
    );
}

#[test]
fn records_must_be_objects() {
    let program = compile(&with_records(
        spec(&["r[*].id", "r[*].name"], &[]),
        "r[*]",
        "id",
    ));
    let optouts = opted_out(&[]);
    for body in [
        r#"{"r":[1]}"#,
        r#"{"r":["SECRET"]}"#,
        r#"{"r":[null]}"#,
        r#"{"r":[["SECRET"]]}"#,
        r#"{"r":[true]}"#,
        r#"{"r":{"id":1,"name":"SECRET"}}"#,
        r#"{"r":"SECRET"}"#,
    ] {
        let result = run_opts(&program, body.as_bytes(), &options(Some(&optouts)));
        assert_bad(result, body);
    }
}

#[test]
fn subject_id_forms() {
    let program = compile(&with_records(
        spec(&["r[*].id", "r[*].name"], &[]),
        "r[*]",
        "id",
    ));
    let optouts = opted_out(&["123", "ab\"c", "😀", "-7"]);
    let opts = options(Some(&optouts));
    // Every spelling of an opted-out id drops the record.
    for id in [
        "123",
        r#""123""#,
        r#""\u0031\u0032\u0033""#,
        r#""1\u00323""#,
        r#""ab\"c""#,
        r#""ab\u0022c""#,
        r#""\ud83d\ude00""#,
        r#""😀""#,
        "-7",
        r#""-7""#,
    ] {
        let body = format!(r#"{{"r":[{{"id":{id},"name":"SECRET"}},{{"id":9,"name":"ok"}}]}}"#);
        let out =
            run_opts(&program, body.as_bytes(), &opts).unwrap_or_else(|e| panic!("{id}: {e:?}"));
        assert_eq!(out, r#"{"r":[{"id":9,"name":"ok"}]}"#, "{id}");
        // The subject key spelled with escapes is still the subject.
        let body =
            format!(r#"{{"r":[{{"name":"SECRET","\u0069d":{id}}},{{"id":9,"name":"ok"}}]}}"#);
        let out =
            run_opts(&program, body.as_bytes(), &opts).unwrap_or_else(|e| panic!("{id}: {e:?}"));
        assert_eq!(out, r#"{"r":[{"id":9,"name":"ok"}]}"#, "escaped key, {id}");
    }
    // Not an id at all: 422.
    for id in [
        "123.0",
        "1.23e2",
        "1e2",
        "1E2",
        "123e0",
        "-0.0",
        "true",
        "false",
        "null",
        r#""""#,
        "[123]",
        r#"["123"]"#,
        r#"{"id":123}"#,
        "{}",
    ] {
        let body = format!(r#"{{"r":[{{"id":{id},"name":"SECRET"}}]}}"#);
        match run_opts(&program, body.as_bytes(), &opts) {
            Err(Refusal {
                kind: RefusalKind::SubjectMissing,
                ..
            }) => {}
            Err(Refusal {
                kind: RefusalKind::BadRequest,
                ..
            }) if id.starts_with(['[', '{']) => {
                // `id` is allowed as a scalar, so a container there is a shape refusal.
            }
            other => panic!("{id}: expected 422, got {other:?}"),
        }
    }
    // Malformed ids are malformed JSON.
    for id in ["0123", "+123", "0x7b", "123n", "'123'"] {
        let body = format!(r#"{{"r":[{{"id":{id},"name":"SECRET"}}]}}"#);
        assert_bad(run_opts(&program, body.as_bytes(), &opts), id);
    }
    // Missing subject, or under a near-miss key.
    for body in [
        r#"{"r":[{"name":"SECRET"}]}"#,
        r#"{"r":[{"Id":123,"name":"SECRET"}]}"#,
        r#"{"r":[{"id ":123,"name":"SECRET"}]}"#,
        r#"{"r":[{"name":"SECRET","nested":{"id":123}}]}"#,
    ] {
        match run_opts(&program, body.as_bytes(), &opts) {
            Err(Refusal {
                kind: RefusalKind::SubjectMissing,
                ..
            }) => {}
            other => panic!("{body}: expected 422, got {other:?}"),
        }
    }
    // Subject given twice (also with different spellings and values): 400, never forwarded.
    for body in [
        r#"{"r":[{"id":9,"id":123,"name":"SECRET"}]}"#,
        r#"{"r":[{"id":123,"id":9,"name":"SECRET"}]}"#,
        r#"{"r":[{"id":9,"\u0069d":123,"name":"SECRET"}]}"#,
        r#"{"r":[{"id":9,"name":"SECRET","i\u0064":"123"}]}"#,
    ] {
        assert_bad(run_opts(&program, body.as_bytes(), &opts), body);
    }
}

#[test]
fn opted_out_single_record_is_refused() {
    let program = compile(&with_records(spec(&["id", "name"], &[]), "$", "id"));
    let optouts = opted_out(&["123"]);
    for body in [
        r#"{"id":123,"name":"SECRET"}"#,
        r#"{"name":"SECRET","id":"\u0031\u0032\u0033"}"#,
    ] {
        match run_opts(&program, body.as_bytes(), &options(Some(&optouts))) {
            Err(Refusal {
                kind: RefusalKind::SubjectOptedOut,
                ..
            }) => {}
            other => panic!("{body}: expected 451, got {other:?}"),
        }
    }
    // Root records must be objects.
    for body in ["null", "[]", r#"[{"id":123}]"#, "123"] {
        assert_bad(
            run_opts(&program, body.as_bytes(), &options(Some(&optouts))),
            body,
        );
    }
}

/// A record passed whole (`r[*].**`) is still an object whose subject is read.
#[test]
fn records_passed_whole_still_honour_opt_outs() {
    let program = compile(&with_records(spec(&["r[*].**"], &[]), "r[*]", "id"));
    let optouts = opted_out(&["123"]);
    let opts = options(Some(&optouts));
    let out = run_opts(
        &program,
        br#"{"r":[{"id":123,"x":{"email":"SECRET"}},{"id":1,"x":2}]}"#,
        &opts,
    )
    .unwrap();
    assert_eq!(out, r#"{"r":[{"id":1,"x":2}]}"#);
    assert_bad(
        run_opts(&program, br#"{"r":[{"id":1,"x":{"a":1,"a":2}}]}"#, &opts),
        "dup inside a whole record",
    );
    assert_bad(
        run_opts(&program, br#"{"r":[["SECRET"]]}"#, &opts),
        "array as a whole record",
    );
    // Records in arrays of arrays.
    let grid = compile(&with_records(spec(&["g[*][*].id"], &[]), "g[*][*]", "id"));
    let out = run_opts(
        &grid,
        br#"{"g":[[{"id":123,"n":"SECRET"},{"id":2}],[{"id":"123"}]]}"#,
        &opts,
    )
    .unwrap();
    assert_eq!(out, r#"{"g":[[{"id":2}],[]]}"#);
}

/// Wildcards combined with named paths, `.**` against transforms, arrays of arrays.
#[test]
fn policy_combinations() {
    // `a.x` and `*.e` allow `a.x` and `a.e`, and only `e` elsewhere.
    let program = compile(&spec(&["a.x", "*.e"], &[]));
    assert_eq!(
        run(
            &program,
            r#"{"a":{"x":1,"e":2,"s":"SECRET"},"b":{"x":"SECRET","e":3}}"#
        )
        .unwrap(),
        r#"{"a":{"x":1,"e":2},"b":{"e":3}}"#
    );
    // The wildcard's transform applies to the named member too (fail closed).
    let program = compile(&spec(&["a.x"], &[("*.x", Transform::Mask)]));
    assert_eq!(
        run(&program, r#"{"a":{"x":"SECRET"},"b":{"x":"SECRET"}}"#).unwrap(),
        r#"{"a":{"x":"***"},"b":{"x":"***"}}"#
    );
    // Conflicts that would let a transform be bypassed are compile errors.
    for (allow, transforms) in [
        (vec!["a.**"], vec![("*.x", Transform::Mask)]),
        (vec!["*.**"], vec![("a.x", Transform::Mask)]),
        (vec!["a.**"], vec![("a.x", Transform::Mask)]),
        (vec!["*"], vec![("a.x", Transform::Mask)]),
        (vec!["a"], vec![("a.x", Transform::Mask)]),
        (
            vec![],
            vec![("a.x", Transform::Mask), ("*.x", Transform::Last4)],
        ),
        (vec!["a[*].**"], vec![("a[*].c", Transform::Last4)]),
        (vec!["a[*]"], vec![("a[*][*]", Transform::Last4)]),
    ] {
        let spec = spec(&allow, &transforms);
        assert!(
            FilterProgram::compile(&spec).is_err(),
            "{allow:?} {transforms:?} should not compile"
        );
    }
    // Paths that can never match a key with path syntax are refused at compile time.
    let raw = FilterSpec {
        removes: Vec::new(),
        allow: vec![FieldPath {
            segments: vec![gateway_core::filter::Segment::Member("a.b".into())],
            subtree: false,
        }],
        ..FilterSpec::default()
    };
    assert!(FilterProgram::compile(&raw).is_err());
    // Records under a whole subtree cannot be honoured: compile error.
    let spec_ = with_records(spec(&["r.**"], &[]), "r[*]", "id");
    assert!(FilterProgram::compile(&spec_).is_err());
    let spec_ = with_records(spec(&["*.**"], &[]), "r[*]", "id");
    assert!(FilterProgram::compile(&spec_).is_err());
}

#[test]
fn a_body_on_a_route_without_paths_is_refused() {
    let program = compile(&FilterSpec::default());
    assert_bad(run(&program, r#"{"email":"SECRET"}"#), "no paths");
    assert_bad(run(&program, "{}"), "no paths, empty object");
}

#[test]
fn huge_strings_and_keys_pass_or_are_removed_exactly() {
    let program = email_policy();
    let big = "A".repeat(1 << 20);
    let out = run(&program, &format!("{{\"name\":\"{big}\",\"x\":\"{big}\"}}")).unwrap();
    assert_eq!(out.len(), big.len() + 11);
    let out = run(&program, &format!("{{\"{big}\":1,\"name\":1}}")).unwrap();
    assert_eq!(out, r#"{"name":1}"#);
}

// ---------------------------------------------------------------------------------------
// Second review: opt-outs, record dropping, and unnameable keys inside `.**` subtrees.
// ---------------------------------------------------------------------------------------

fn run_report(
    program: &FilterProgram,
    body: &str,
    optouts: Option<&dyn OptOutLookup>,
) -> Result<(String, gateway_core::filter::Report), Refusal> {
    let opts = FilterOptions {
        detail: true,
        ..options(optouts)
    };
    let Filtered { body: out, report } = filter(program, body.as_bytes(), &opts)?;
    let text = String::from_utf8(out).expect("the filter emits UTF-8");
    serde_json::from_str::<serde_json::Value>(&text)
        .unwrap_or_else(|e| panic!("invalid JSON {text:?} from {body:?}: {e}"));
    Ok((text, report))
}

/// Inside a `.**` subtree, members whose (unescaped) key holds `.`, `[`, `]` or `*` are
/// dropped: first, last, only, several in a row, holding containers, at several depths,
/// spelled with escapes, between whitespace. The output is the input minus those members,
/// compact, with commas and braces right.
#[test]
fn unnameable_keys_leave_a_subtree_with_valid_commas() {
    let program = compile(&spec(&["blob.**", "n"], &[]));
    let cases: &[(&str, &str)] = &[
        (r#"{"blob":{"a.b":1}}"#, r#"{"blob":{}}"#),
        (r#"{"blob":{"a.b":1,"c":2}}"#, r#"{"blob":{"c":2}}"#),
        (r#"{"blob":{"c":2,"a.b":1}}"#, r#"{"blob":{"c":2}}"#),
        (r#"{"blob":{"c":2,"a.b":1,"d":3}}"#, r#"{"blob":{"c":2,"d":3}}"#),
        (
            r#"{"blob":{"a.":1,".b":2,"[":3,"c":4,"]":5,"*":6}}"#,
            r#"{"blob":{"c":4}}"#,
        ),
        (
            r#"{"blob":{"a.b":{"x":[1,{"y.z":2}],"q":[]},"c":[{"[":1},{"]":2,"k":3},{}]}}"#,
            r#"{"blob":{"c":[{},{"k":3},{}]}}"#,
        ),
        (
            r#"{"blob":[{"*":1},{"*":[[],{}]},{"ok":{"a\u002eb":1,"b":[{"c*":{}}]}}],"n":1}"#,
            r#"{"blob":[{},{},{"ok":{"b":[{}]}}],"n":1}"#,
        ),
        // Escaped spellings of the four characters, upper- and lowercase hex.
        (
            r#"{"blob":{"a\u002Eb":1,"\u005b0\u005d":2,"\u002a":3,"a\\.b":4,"k":"a.b"}}"#,
            r#"{"blob":{"k":"a.b"}}"#,
        ),
        // A kept key spelled with escapes stays as written.
        (
            r#"{"blob":{"x.y":0,"\u0061":[],"z*":{}}}"#,
            r#"{"blob":{"\u0061":[]}}"#,
        ),
        // Whitespace everywhere, hidden member last, first, with empty containers around.
        (
            "{ \"blob\" : { \"a.b\" : [ 1 , [ ] , { } ] , \"c\" : { } , \"d\" : [ ] , \"e.\" : { \"f\" : 1 } } , \"n\" : 2 }",
            r#"{"blob":{"c":{},"d":[]},"n":2}"#,
        ),
        // Hidden keys at several depths, nested inside each other.
        (
            r#"{"blob":{"a":{"b":{"c.d":{"e.f":{"g":1}},"h":[{"i.j":[{"k":1}],"l":2}]}}}}"#,
            r#"{"blob":{"a":{"b":{"h":[{"l":2}]}}}}"#,
        ),
        // Values and array elements that merely contain the characters are kept.
        (
            r#"{"blob":{"c":"a.b","d":["x.y","[*]"],"e":{"*":"*"}}}"#,
            r#"{"blob":{"c":"a.b","d":["x.y","[*]"],"e":{}}}"#,
        ),
        // The subtree root itself a scalar, null or an empty container.
        (r#"{"blob":"a.b"}"#, r#"{"blob":"a.b"}"#),
        (r#"{"blob":null,"n":1}"#, r#"{"blob":null,"n":1}"#),
        (r#"{"blob":[]}"#, r#"{"blob":[]}"#),
        (r#"{"blob":{}}"#, r#"{"blob":{}}"#),
        (r#"{"n":1,"blob":[[{"a.b":[[]]}],{}]}"#, r#"{"n":1,"blob":[[{}],{}]}"#),
    ];
    for (body, expected) in cases {
        let (out, _) = run_report(&program, body, None).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        assert_eq!(&out, expected, "{body}");
    }
    // Each dropped member counts once (its contents are not counted again) and is reported.
    let (_, report) = run_report(
        &program,
        r#"{"blob":{"a.b":{"c.d":1},"x":[{"*":1},{"]":2}]}}"#,
        None,
    )
    .unwrap();
    assert_eq!(report.fields_removed, 3, "{report:?}");
    let removed: Vec<String> = report
        .changes
        .iter()
        .map(|c| match c {
            gateway_core::filter::Change::Removed { path } => path.clone(),
            other => panic!("unexpected change {other:?}"),
        })
        .collect();
    assert_eq!(removed.len(), 3, "{removed:?}");
    // A dropped member is still validated strictly: nothing malformed passes by being hidden.
    for body in [
        r#"{"blob":{"a.b":[1,]}}"#,
        r#"{"blob":{"a.b":{"x":1,}}}"#,
        r#"{"blob":{"a.b":"\ud800"}}"#,
        r#"{"blob":{"a.b":{"x":1,"x":2}}}"#,
        r#"{"blob":{"a.b":1,"a.b":2}}"#,
        r#"{"blob":{"a.b":1,"a\u002eb":2}}"#,
        r#"{"blob":{"c":1,"a.b":2,}}"#,
        r#"{"blob":{"a.b":2,,"c":1}}"#,
        r#"{"blob":{"a.b":[[[[[[[[1]]]]]]]]}}"#,
        r#"{"blob":{"a.b" 1}}"#,
        r#"{"blob":{"a.b":tru}}"#,
        r#"{"blob":{"a.b":01}}"#,
    ] {
        assert_bad(run(&program, body), body);
    }
}

/// A tiny deterministic generator (xorshift) for the oracle test below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Writes a random value to `input` and, when `emit`, what the partner must receive to
/// `expected`. Returns how many members the filter must report as removed.
fn gen_value(
    rng: &mut Rng,
    depth: usize,
    input: &mut String,
    expected: &mut String,
    emit: bool,
) -> u64 {
    // Keys as written; each has a distinct unescaped form. The second half are unnameable.
    const PLAIN: [&str; 5] = ["a", "b", "c\\u0064", "\\u00e9", "s p"];
    const HIDDEN: [&str; 7] = [
        "a.b",
        "[0]",
        "]",
        "*",
        "x\\u002ey",
        "\\u005b",
        "\\u002A\\u002a",
    ];
    const SCALARS: [&str; 9] = [
        "1",
        "-0",
        "1.5e3",
        "true",
        "false",
        "null",
        "\"s.t\"",
        "\"\\u002e\"",
        "\"[*]\"",
    ];
    const WS: [&str; 4] = ["", " ", "\n\t", "\r\n "];
    let mut removed = 0;
    let kind = if depth == 0 { 2 } else { rng.below(3) };
    match kind {
        0 => {
            input.push('{');
            if emit {
                expected.push('{');
            }
            let mut keys: Vec<(&str, bool)> = PLAIN
                .iter()
                .map(|k| (*k, false))
                .chain(HIDDEN.iter().map(|k| (*k, true)))
                .collect();
            let n = rng.below(5);
            let mut wrote = false;
            for i in 0..n {
                let (key, hidden) = keys.remove(rng.below(keys.len()));
                if i > 0 {
                    input.push(',');
                }
                input.push_str(rng.pick(&WS));
                input.push_str(&format!("\"{key}\""));
                input.push_str(rng.pick(&WS));
                input.push(':');
                input.push_str(rng.pick(&WS));
                let keep = emit && !hidden;
                if keep {
                    if wrote {
                        expected.push(',');
                    }
                    wrote = true;
                    expected.push_str(&format!("\"{key}\":"));
                } else if emit {
                    removed += 1;
                }
                removed += gen_value(rng, depth - 1, input, expected, keep);
                input.push_str(rng.pick(&WS));
            }
            input.push('}');
            if emit {
                expected.push('}');
            }
        }
        1 => {
            input.push('[');
            if emit {
                expected.push('[');
            }
            let n = rng.below(4);
            for i in 0..n {
                if i > 0 {
                    input.push(',');
                    if emit {
                        expected.push(',');
                    }
                }
                input.push_str(rng.pick(&WS));
                removed += gen_value(rng, depth - 1, input, expected, emit);
                input.push_str(rng.pick(&WS));
            }
            input.push(']');
            if emit {
                expected.push(']');
            }
        }
        _ => {
            let s = rng.pick(&SCALARS);
            input.push_str(s);
            if emit {
                expected.push_str(s);
            }
        }
    }
    removed
}

/// Oracle test: thousands of random subtrees mixing nameable and unnameable keys, containers,
/// whitespace and escapes; the filter's output must be exactly the input minus the unnameable
/// members (compact), and its count exactly the members dropped.
#[test]
fn unnameable_keys_in_random_subtrees_match_the_oracle() {
    let program = compile(&spec(&["blob.**", "n"], &[]));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..5000 {
        let mut input = String::from("{\"blob\":");
        let mut expected = String::from("{\"blob\":");
        let removed = gen_value(&mut rng, 5, &mut input, &mut expected, true);
        if round % 2 == 0 {
            input.push_str(",\"n\":1");
            expected.push_str(",\"n\":1");
        }
        input.push('}');
        expected.push('}');
        let (out, report) =
            run_report(&program, &input, None).unwrap_or_else(|e| panic!("{input}: {e:?}"));
        assert_eq!(out, expected, "round {round}: {input}");
        assert_eq!(report.fields_removed, removed, "round {round}: {input}");
    }
}

/// Records at several levels (`a[*].b[*]`, `[*]`): the first, last, only and every record
/// dropped, next to `null` and empty arrays, always leave valid JSON with the other records
/// in order.
#[test]
fn dropped_records_leave_valid_json_at_every_position() {
    let optouts = opted_out(&["x"]);
    let opts = options(Some(&optouts));
    let nested = compile(&with_records(
        spec(&["a[*].n", "a[*].b[*].id", "a[*].b[*].v"], &[]),
        "a[*].b[*]",
        "id",
    ));
    for (body, expected) in [
        (
            r#"{"a":[{"n":1,"b":[{"id":"x","v":"SECRET"}]}]}"#,
            r#"{"a":[{"n":1,"b":[]}]}"#,
        ),
        (
            r#"{"a":[{"b":[{"id":"x","v":"SECRET"},{"id":"y"},{"id":"x","v":"SECRET"}]},{"b":[{"id":"x"}]},{"b":null},{"b":[]}]}"#,
            r#"{"a":[{"b":[{"id":"y"}]},{"b":[]},{"b":null},{"b":[]}]}"#,
        ),
        (
            r#"{"a":[{"b":[{"id":"y"},{"id":"x","v":"SECRET"},{"id":"z"}]}]}"#,
            r#"{"a":[{"b":[{"id":"y"},{"id":"z"}]}]}"#,
        ),
        (
            r#"{"a":[{"b":[{"id":"x"},{"id":"x"},{"id":"x"}],"n":2},{"n":3,"b":[{"id":"x"},{"id":"w"}]}]}"#,
            r#"{"a":[{"b":[],"n":2},{"n":3,"b":[{"id":"w"}]}]}"#,
        ),
        (
            "{ \"a\" : [ { \"b\" : [ { \"id\" : \"x\" } , { \"id\" : 5 } ] } ] }",
            r#"{"a":[{"b":[{"id":5}]}]}"#,
        ),
    ] {
        let out =
            run_opts(&nested, body.as_bytes(), &opts).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        assert_eq!(out, expected, "{body}");
    }
    // Records at the root of an array body.
    let root = compile(&with_records(spec(&["[*].id", "[*].v"], &[]), "[*]", "id"));
    for (body, expected) in [
        (r#"[{"id":"x","v":"SECRET"}]"#, "[]"),
        (r#"[{"id":"x","v":"SECRET"},{"id":"y"}]"#, r#"[{"id":"y"}]"#),
        (r#"[{"id":"y"},{"id":"x","v":"SECRET"}]"#, r#"[{"id":"y"}]"#),
        (
            r#"[{"id":"x"},{"id":"y"},{"id":"x"},{"id":"z"},{"id":"x"}]"#,
            r#"[{"id":"y"},{"id":"z"}]"#,
        ),
    ] {
        let out =
            run_opts(&root, body.as_bytes(), &opts).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        assert_eq!(out, expected, "{body}");
    }
    // A record passed whole whose nested members hold unnameable keys: dropped or trimmed alike.
    let whole = compile(&with_records(spec(&["r[*].**"], &[]), "r[*]", "id"));
    let out = run_opts(
        &whole,
        br#"{"r":[{"id":"x","a.b":"SECRET"},{"a.b":"gone","id":"y","m":{"c*":1,"d":2}},{"id":"x"}]}"#,
        &opts,
    )
    .unwrap();
    assert_eq!(out, r#"{"r":[{"id":"y","m":{"d":2}}]}"#);
}

/// `-0` is the integer 0 to any JSON reader: it must not pass as a customer distinct from `0`.
/// (Before the fix it was compared as the text "-0", so customer 0's opt-out was bypassed.)
#[test]
fn negative_zero_is_not_a_subject_id() {
    let program = compile(&with_records(
        spec(&["r[*].id", "r[*].name"], &[]),
        "r[*]",
        "id",
    ));
    let optouts = opted_out(&["0"]);
    let opts = options(Some(&optouts));
    let body = br#"{"r":[{"id":-0,"name":"SECRET"}]}"#;
    let result = run_opts(&program, body, &opts);
    assert_no_secret(&result, SECRET_MARK, "-0");
    match result {
        Err(Refusal {
            kind: RefusalKind::SubjectMissing,
            ..
        }) => {}
        other => panic!("-0: expected 422, got {other:?}"),
    }
    // 0 itself, as an integer or a string, is customer "0".
    for id in ["0", r#""0""#, r#""\u0030""#] {
        let body = format!(r#"{{"r":[{{"id":{id},"name":"SECRET"}},{{"id":1}}]}}"#);
        let out = run_opts(&program, body.as_bytes(), &opts).unwrap();
        assert_eq!(out, r#"{"r":[{"id":1}]}"#, "{id}");
    }
    // A single record with -0 is refused too, never forwarded.
    let single = compile(&with_records(spec(&["id", "name"], &[]), "$", "id"));
    match run_opts(&single, br#"{"id":-0,"name":"SECRET"}"#, &opts) {
        Err(Refusal {
            kind: RefusalKind::SubjectMissing,
            ..
        }) => {}
        other => panic!("single -0: expected 422, got {other:?}"),
    }
}

const SECRET_MARK: &str = "SECRET";

/// Ids are compared after unescaping, exactly and in lowercase/uppercase: huge integers match
/// their own text only as strings (a JSON integer beyond ±(2^53−1) is refused, since
/// JavaScript readers round it), and forms a reader may take for another id — surrounding
/// whitespace, control characters, invisible format characters, text NFKC changes — are refused,
/// never compared.
#[test]
fn subject_ids_compare_exactly() {
    let program = compile(&with_records(
        spec(&["r[*].id", "r[*].name"], &[]),
        "r[*]",
        "id",
    ));
    let huge = "123456789012345678901234567890";
    let optouts = opted_out(&[huge, "9007199254740991", "c-9", "-42"]);
    let opts = options(Some(&optouts));
    for id in [
        format!("\"{huge}\""),
        "9007199254740991".to_string(),
        "\"c-9\"".into(),
        "\"C-9\"".into(),
        "\"c\\u002d9\"".into(),
        "-42".into(),
        "\"-42\"".into(),
    ] {
        let body = format!(r#"{{"r":[{{"id":{id},"name":"SECRET"}}]}}"#);
        let out = run_opts(&program, body.as_bytes(), &opts).unwrap();
        assert_eq!(out, r#"{"r":[]}"#, "{id}");
    }
    // Not the same text: not the same customer.
    for id in ["9007199254740990", "\"c-90\""] {
        let body = format!(r#"{{"r":[{{"id":{id},"name":"ok"}}]}}"#);
        let out = run_opts(&program, body.as_bytes(), &opts).unwrap();
        assert!(out.contains("ok"), "{id}: {out}");
    }
    // Forms a partner may read as another customer: refused.
    for id in [
        huge.to_string(),
        "9007199254740993".to_string(),
        "\" c-9\"".into(),
        "\"c-9 \"".into(),
        "\"c-9\\n\"".into(),
        "\"c\u{2011}9\"".into(),
        "\"-042\"".into(),
        // Invisible to readers that strip format characters: `c-9` to them.
        "\"c\\u00ad-9\"".into(),
        "\"c-9\\u200b\"".into(),
    ] {
        let body = format!(r#"{{"r":[{{"id":{id},"name":"SECRET"}}]}}"#);
        match run_opts(&program, body.as_bytes(), &opts) {
            Err(Refusal {
                kind: RefusalKind::SubjectMissing,
                ..
            }) => {}
            other => panic!("{id}: expected 422, got {other:?}"),
        }
    }
    // Fractions and exponents of an opted-out integer are refused, never compared.
    for id in [
        format!("{huge}.0"),
        format!("{huge}e0"),
        "-42.0".into(),
        "-4.2e1".into(),
    ] {
        let body = format!(r#"{{"r":[{{"id":{id},"name":"SECRET"}}]}}"#);
        match run_opts(&program, body.as_bytes(), &opts) {
            Err(Refusal {
                kind: RefusalKind::SubjectMissing,
                ..
            }) => {}
            other => panic!("{id}: expected 422, got {other:?}"),
        }
    }
}
