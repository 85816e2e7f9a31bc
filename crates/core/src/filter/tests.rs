mod fold;
mod matched;
mod predict;
mod predicted_keys;
mod prediction_tricks;
mod remove;
mod skipped;
mod subtree;
mod unknown;

use std::collections::HashSet;

use hmac::Mac;

use super::*;
use crate::filter::Segment;
use crate::RefusalKind;

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

fn records(mut spec: FilterSpec, records: &str, subject: &str) -> FilterSpec {
    spec.records = Some(path(records));
    spec.subject = Some(subject.to_string());
    spec
}

fn compile(spec: &FilterSpec) -> FilterProgram {
    FilterProgram::compile(spec).unwrap_or_else(|e| panic!("{e:?}"))
}

struct OptOuts(HashSet<String>);

impl OptOutLookup for OptOuts {
    fn is_opted_out(&self, subject: &str) -> bool {
        self.0.contains(subject)
    }
}

fn optouts(ids: &[&str]) -> OptOuts {
    OptOuts(ids.iter().map(|s| s.to_string()).collect())
}

const KEY: &[u8] = b"k";

fn options<'a>(optouts: Option<&'a dyn OptOutLookup>, detail: bool) -> FilterOptions<'a> {
    FilterOptions {
        max_depth: 64,
        pseudonymize_key: Some(KEY),
        optouts,
        detail,
        subjects: false,
    }
}

fn run(program: &FilterProgram, body: &str) -> Result<String, Refusal> {
    run_with(program, body.as_bytes(), &options(None, false)).map(|f| body_text(&f))
}

fn run_with(
    program: &FilterProgram,
    body: &[u8],
    options: &FilterOptions<'_>,
) -> Result<Filtered, Refusal> {
    let filtered = filter(program, body, options)?;
    // Whatever the filter emits must be valid JSON.
    serde_json::from_slice::<serde_json::Value>(&filtered.body).unwrap_or_else(|e| {
        panic!(
            "invalid output {:?}: {e}",
            String::from_utf8_lossy(&filtered.body)
        )
    });
    Ok(filtered)
}

fn body_text(filtered: &Filtered) -> String {
    String::from_utf8(filtered.body.clone()).expect("utf-8 output")
}

fn hmac_hex(text: &str) -> String {
    let mut mac = transform::Hmac256::new_from_slice(KEY).expect("key");
    mac.update(text.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn bad_request(result: Result<String, Refusal>) -> String {
    match result {
        Err(Refusal {
            kind: RefusalKind::BadRequest,
            message,
        }) => message,
        other => panic!("expected a bad request, got {other:?}"),
    }
}

#[test]
fn path_forms() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["a"], r#"{"a":1,"b":2}"#, r#"{"a":1}"#),
        (&["$.a"], r#"{"a":1,"b":2}"#, r#"{"a":1}"#),
        (&["a.b"], r#"{"a":{"b":1,"c":2},"d":3}"#, r#"{"a":{"b":1}}"#),
        (
            &["a[*].b"],
            r#"{"a":[{"b":1,"c":2},{"c":3}]}"#,
            r#"{"a":[{"b":1},{}]}"#,
        ),
        (
            &["a.*"],
            r#"{"a":{"x":1,"y":"s"},"b":1}"#,
            r#"{"a":{"x":1,"y":"s"}}"#,
        ),
        (
            &["a.**"],
            r#"{ "a" : { "x" : [ 1 , { "y" : null } ] } , "b" : 1 }"#,
            r#"{"a":{"x":[1,{"y":null}]}}"#,
        ),
        (&["a.**"], r#"{"a":{}}"#, r#"{"a":{}}"#),
        (&["a.**"], r#"{"a":[]}"#, r#"{"a":[]}"#),
        (&["a.**"], r#"{"a":"scalar"}"#, r#"{"a":"scalar"}"#),
        (
            &["[*].a"],
            r#"[{"a":1,"b":2},{"a":3}]"#,
            r#"[{"a":1},{"a":3}]"#,
        ),
        (&["$[*]"], r#"[1, "x", null, true]"#, r#"[1,"x",null,true]"#),
        (
            &["a[*][*]"],
            r#"{"a":[[1,2],[],[3]]}"#,
            r#"{"a":[[1,2],[],[3]]}"#,
        ),
        (&["a[*]"], r#"{"a":[]}"#, r#"{"a":[]}"#),
        (&["a.b"], r#"{"a":{}}"#, r#"{"a":{}}"#),
        (&["b", "a"], r#"{"a":1,"c":0,"b":2}"#, r#"{"a":1,"b":2}"#),
        (&["a"], r#"{}"#, r#"{}"#),
        (&["a"], r#"{"b":{"c":[1,{"d":2}]}}"#, r#"{}"#),
        (&["a"], " \n\t{\"a\" :\r\n \"x\" } \n", r#"{"a":"x"}"#),
        (
            &["s"],
            r#"{"s":"a\"b\\c\u00e9\n"}"#,
            r#"{"s":"a\"b\\c\u00e9\n"}"#,
        ),
        (&["s"], r#"{"s":"naïve ☃ 😀"}"#, r#"{"s":"naïve ☃ 😀"}"#),
        (
            &["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"],
            r#"{"j":1,"z":2,"a":3}"#,
            r#"{"j":1,"a":3}"#,
        ),
    ];
    for (allow, input, expected) in cases {
        let program = compile(&spec(allow, &[]));
        assert_eq!(
            run(&program, input).as_deref(),
            Ok(*expected),
            "{allow:?} {input}"
        );
    }
}

#[test]
fn wildcards_combine_with_named_paths() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, Transform)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &["a.x", "*.e"],
            &[],
            r#"{"a":{"x":1,"e":2,"z":3},"b":{"x":1,"e":2},"c":null}"#,
            r#"{"a":{"x":1,"e":2},"b":{"e":2},"c":null}"#,
        ),
        (
            &["*"],
            &[],
            r#"{"a":1,"b":"s","a.b":1,"*":2,"[x]":3,"c]":4}"#,
            r#"{"a":1,"b":"s"}"#,
        ),
        (
            &["a"],
            &[("a", Transform::Mask)],
            r#"{"a":"secret"}"#,
            r#"{"a":"***"}"#,
        ),
        (
            &["a.x"],
            &[("*.x", Transform::Mask)],
            r#"{"a":{"x":"s"},"b":{"x":"t"}}"#,
            r#"{"a":{"x":"***"},"b":{"x":"***"}}"#,
        ),
        (
            &["*"],
            &[("secret", Transform::Null)],
            r#"{"a":1,"secret":"s","b":2}"#,
            r#"{"a":1,"secret":null,"b":2}"#,
        ),
        (&["*.*"], &[], r#"{"a":{"x":1},"b":{"y":[]}}"#, ""),
        (
            &["a.**", "*.e"],
            &[],
            r#"{"a":{"z":{"q":1}},"b":{"e":1,"f":2}}"#,
            r#"{"a":{"z":{"q":1}},"b":{"e":1}}"#,
        ),
    ];
    for (allow, transforms, input, expected) in cases {
        let program = compile(&spec(allow, transforms));
        let result = run(&program, input);
        if expected.is_empty() {
            assert!(bad_request(result).contains("`b.y`"), "{allow:?} {input}");
        } else {
            assert_eq!(result.as_deref(), Ok(*expected), "{allow:?} {input}");
        }
    }
}

#[test]
fn shapes_are_part_of_the_policy() {
    // (allow, input, Ok(output) or Err(substring of the 400 message))
    let cases: &[(&[&str], &str, Result<&str, &str>)] = &[
        (&["a"], r#"{"a":{"b":1}}"#, Err("`a` holds an object")),
        (&["a"], r#"{"a":[1]}"#, Err("`a` holds an array")),
        (
            &["a[*]"],
            r#"{"a":[1,{"x":1}]}"#,
            Err("`a[1]` holds an object"),
        ),
        (
            &["a.b"],
            r#"{"a":"s"}"#,
            Err("`a` is a string, but the policy expects an object"),
        ),
        (
            &["a.b"],
            r#"{"a":[]}"#,
            Err("`a` is an array, but the policy expects an object"),
        ),
        (
            &["a[*]"],
            r#"{"a":1}"#,
            Err("`a` is a number, but the policy expects an array"),
        ),
        (
            &["a[*]"],
            r#"{"a":{}}"#,
            Err("`a` is an object, but the policy expects an array"),
        ),
        (&["a.*"], r#"{"a":true}"#, Err("`a` is a boolean")),
        (&["a.b"], r#"{"a":null}"#, Ok(r#"{"a":null}"#)),
        (&["a[*]"], r#"{"a":null}"#, Ok(r#"{"a":null}"#)),
        (&["a.*"], r#"{"a":null}"#, Ok(r#"{"a":null}"#)),
        (&["a"], r#"{"a":null}"#, Ok(r#"{"a":null}"#)),
        (
            &["a"],
            r#"[{"a":1}]"#,
            Err("`$` is an array, but the policy expects an object"),
        ),
        (&["a"], r#""text""#, Err("`$` is a string")),
        (&["a"], "42", Err("`$` is a number")),
        (
            &["[*].a"],
            r#"{"a":1}"#,
            Err("`$` is an object, but the policy expects an array"),
        ),
        (
            &["a.b.c"],
            r#"{"a":{"b":{"c":{}}}}"#,
            Err("`a.b.c` holds an object"),
        ),
        (
            &["x[*].y"],
            r#"{"x":[{"y":1},{"y":[2]}]}"#,
            Err("`x[1].y` holds an array"),
        ),
    ];
    for (allow, input, expected) in cases {
        let program = compile(&spec(allow, &[]));
        match expected {
            Ok(out) => assert_eq!(
                run(&program, input).as_deref(),
                Ok(*out),
                "{allow:?} {input}"
            ),
            Err(needle) => {
                let message = bad_request(run(&program, input));
                assert!(message.contains(needle), "{allow:?} {input}: {message}");
            }
        }
    }
}

/// Inputs every strict reader must refuse, with a fragment of the message.
const MALFORMED: &[(&[u8], &str)] = &[
    (b"\xEF\xBB\xBF{\"a\":1}", "byte order mark"),
    (b"{\"a\":\"\xFF\"}", "not valid UTF-8 (at byte 6)"),
    (b"{\"a\":\"\xC3\"}", "not valid UTF-8"),
    (b"{\"a\":\"\xED\xA0\x80\"}", "not valid UTF-8"),
    (b"", "empty"),
    (b" \n\t ", "only whitespace"),
    (b"{\"a\":01}", "leading zeros"),
    (b"{\"a\":-01}", "leading zeros"),
    (b"{\"a\":1.}", "after `.`"),
    (b"{\"a\":.5}", "unexpected `.`"),
    (b"{\"a\":+1}", "unexpected `+`"),
    (b"{\"a\":-}", "expected a digit"),
    (b"{\"a\":1e}", "exponent"),
    (b"{\"a\":1e+}", "exponent"),
    (b"{\"a\":NaN}", "unexpected `N`"),
    (b"{\"a\":Infinity}", "unexpected `I`"),
    (b"{\"a\":0x10}", "unexpected `x`"),
    (b"{\"a\":\"x\ny\"}", "control character 0x0a"),
    (b"{\"a\":\"x\ty\"}", "control character 0x09"),
    (b"{\"a\":\"x\x00\"}", "control character 0x00"),
    (b"{\"a\":\"\\x\"}", "invalid escape `\\x`"),
    (b"{\"a\":\"\\'\"}", "invalid escape"),
    (b"{\"a\":\"\\u12\"}", "4 hex digits"),
    (b"{\"a\":\"\\u12g4\"}", "4 hex digits"),
    (b"{\"a\":\"\\ud800\"}", "lone surrogate `\\ud800`"),
    (b"{\"a\":\"\\ud800x\"}", "lone surrogate"),
    (b"{\"a\":\"\\ud800\\u0041\"}", "lone surrogate"),
    (b"{\"a\":\"\\ud800\\ud800\"}", "lone surrogate"),
    (b"{\"a\":\"\\udc00\"}", "lone surrogate `\\udc00`"),
    (b"{\"a\":\"\\uDFFF\\uD800\"}", "lone surrogate"),
    (b"{\"\\ud800\":1}", "lone surrogate"),
    (b"{\"a\":1,\"a\":2}", "duplicate key \"a\""),
    (b"{\"a\":1,\"\\u0061\":2}", "duplicate key \"a\""),
    (b"{\"\\u0061\":1,\"\\u0061\":2}", "duplicate key"),
    (
        b"{\"a\":1,\"b\":{\"c\":1,\"c\":2}}",
        "duplicate key \"c\" at byte 18 in the object at `b`",
    ),
    (
        b"{\"a\":1,\"r\":[{\"x\":{\"y\":1,\"y\":1}}]}",
        "in the object at `r[0].x`",
    ),
    (b"{\"a\":1}x", "unexpected data after the JSON value"),
    (b"{\"a\":1}{}", "after the JSON value"),
    (b"{\"a\":1} 1", "after the JSON value"),
    (b"{\"a\":1", "unexpected end of body"),
    (b"{\"a\":1,}", "expected a member name"),
    (b"{\"a\" 1}", "`:` after a member name"),
    (b"{a:1}", "expected a member name"),
    (b"{'a':1}", "expected a member name"),
    (b"{\"a\":tru}", "unexpected `t`"),
    (b"{\"a\":nul}", "unexpected `n`"),
    (b"{\"a\":true1}", "expected `,` or `}`"),
    (b"{\"a\":\"x}", "unterminated string"),
    (b"{\"a\":1]", "expected `,` or `}`"),
    (b"{\"a\":[1}", "expected `,` or `]`"),
    (b"{\"a\":[1,]}", "unexpected `]`"),
    (b"{\"a\":[,1]}", "unexpected `,`"),
    (b"{\"a\":\xC2\xA0 1}", "unexpected '\\u{a0}'"),
    (b"{\"a\":1,\"b\":[1 2]}", "expected `,` or `]`"),
    (b"{\"a\":1,\"b\":{\"c\" 2}}", "`:` after a member name"),
];

#[test]
fn strict_input_is_refused_everywhere() {
    // A kept member, a removed subtree, a subtree passed whole, and plain validation must all
    // refuse the same inputs.
    let programs = [
        compile(&spec(&["a", "b.c", "r[*].x.y"], &[])),
        compile(&spec(&["zz"], &[])),
        compile(&spec(&["a.**", "b.**", "r.**"], &[])),
    ];
    for (input, needle) in MALFORMED {
        let shown = String::from_utf8_lossy(input);
        let message = match validate(input, 64) {
            Err(Refusal {
                kind: RefusalKind::BadRequest,
                message: m,
            }) => m,
            other => panic!("validate({shown:?}) = {other:?}"),
        };
        assert!(message.contains(needle), "validate({shown:?}): {message}");
        for (i, program) in programs.iter().enumerate() {
            match filter(program, input, &options(None, false)) {
                // Where the policy keeps a member, a shape refusal may come first; where it
                // removes everything, the message is the validator's.
                Err(Refusal {
                    kind: RefusalKind::BadRequest,
                    message: m,
                }) => {
                    assert!(i != 1 || m.contains(needle), "filter({shown:?}): {m}")
                }
                other => panic!("filter({shown:?}) = {other:?}"),
            }
        }
    }
}

#[test]
fn duplicate_keys_are_found_at_any_depth() {
    let cases: &[(&[&str], &str)] = &[
        // Inside a removed member.
        (&["a"], r#"{"a":1,"gone":{"x":{"y":[{"k":1,"k":2}]}}}"#),
        // Inside a subtree passed whole.
        (&["a.**"], r#"{"a":{"x":[{"k":1,"\u006b":2}]}}"#),
        // Inside a record passed through the trie.
        (&["r[*].x"], r#"{"r":[{"x":1},{"x":1,"y":0,"x":2}]}"#),
        // Between a kept and a removed member.
        (&["a"], r#"{"a":1,"b":2,"a":3}"#),
        // In a big object (hash-set path).
        (&["k0"], &big_object_with_duplicate()),
    ];
    for (allow, input) in cases {
        let program = compile(&spec(allow, &[]));
        let message = bad_request(run(&program, input));
        assert!(message.contains("duplicate key"), "{input}: {message}");
    }
    let unique: String = {
        let members: Vec<String> = (0..200).map(|i| format!("\"k{i}\":{i}")).collect();
        format!("{{{}}}", members.join(","))
    };
    let program = compile(&spec(&["k0", "k199"], &[]));
    assert_eq!(
        run(&program, &unique).as_deref(),
        Ok(r#"{"k0":0,"k199":199}"#)
    );
}

fn big_object_with_duplicate() -> String {
    let mut members: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
    members.push("\"k\\u0035\":5".to_string());
    format!("{{\"k0\":0,\"inner\":{{{}}}}}", members.join(","))
}

#[test]
fn accepted_edge_cases() {
    for input in [
        "{\"a\":\"\\ud83d\\ude00\"}",
        "{\"a\":\"\\u00e9\\/\\b\\f\\n\\r\\t\\\"\\\\\"}",
        "{\"a\":\"\u{7f}\"}",
        "{\"a\":-0}",
        "{\"a\":0.5e-7}",
        "{\"a\":1E+2}",
        "{\"\":1}",
        "{\"a\":1} \n\r\t",
        "[]",
        "null",
        "\"\"",
    ] {
        assert_eq!(validate(input.as_bytes(), 64), Ok(()), "{input}");
    }
}

#[test]
fn depth_limit_holds_everywhere() {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    for limit in [1, 2, 5, 64] {
        assert_eq!(
            validate(nested(limit).as_bytes(), limit),
            Ok(()),
            "at the limit {limit}"
        );
        let message =
            bad_request(validate(nested(limit + 1).as_bytes(), limit).map(|()| String::new()));
        assert!(
            message.contains(&format!("nesting deeper than {limit} levels")),
            "{message}"
        );
    }
    assert_eq!(validate(b"1", 0), Ok(()));
    assert!(validate(b"{}", 0).is_err());

    let depth3 = r#"{"x":1,"r":[[1]]}"#;
    let depth4 = r#"{"x":1,"r":[[[1]]]}"#;
    let deep_kept = r#"{"x":1,"a":{"b":{"c":{}}}}"#;
    let ok_kept = r#"{"x":1,"a":{"b":{"c":1}}}"#;
    let limited = |allow: &[&str], body: &str| {
        let program = compile(&spec(allow, &[]));
        let opts = FilterOptions {
            max_depth: 3,
            ..options(None, false)
        };
        filter(&program, body.as_bytes(), &opts).map(|f| body_text(&f))
    };
    // Removed subtrees count too.
    assert_eq!(limited(&["x"], depth3).as_deref(), Ok(r#"{"x":1}"#));
    let message = bad_request(limited(&["x"], depth4));
    assert!(
        message.contains("nesting deeper than 3 levels at byte 13 in `r[0][0]`"),
        "{message}"
    );
    // Subtrees passed whole and paths followed through the trie.
    assert_eq!(
        limited(&["a.**"], ok_kept).as_deref(),
        Ok(r#"{"a":{"b":{"c":1}}}"#)
    );
    assert!(bad_request(limited(&["a.**"], deep_kept)).contains("nesting deeper than 3"));
    assert!(bad_request(limited(&["a.b.c.**"], deep_kept)).contains("nesting deeper than 3"));

    // Input nesting far beyond the policy's paths never recurses: a deep document is refused
    // (or accepted with a high limit) without exhausting the stack.
    let very_deep = format!("{{\"x\":1,\"r\":{}}}", nested(200_000));
    let program = compile(&spec(&["x"], &[]));
    let opts = FilterOptions {
        max_depth: 300_000,
        ..options(None, false)
    };
    assert_eq!(
        filter(&program, very_deep.as_bytes(), &opts)
            .map(|f| body_text(&f))
            .as_deref(),
        Ok(r#"{"x":1}"#)
    );
    assert!(validate(very_deep.as_bytes(), 64).is_err());
}

#[test]
fn keys_match_after_unescaping_exactly() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["email"],
            r#"{"em\u0061il":"x","other":1}"#,
            r#"{"em\u0061il":"x"}"#,
        ),
        (&["Email"], r#"{"email":1}"#, r#"{}"#),
        (&["email"], r#"{"EMAIL":1,"email ":2}"#, r#"{}"#),
        (&["a.b"], r#"{"a":{"\u0062":1}}"#, r#"{"a":{"\u0062":1}}"#),
        (&["*"], r#"{"a\u002eb":1,"\u002a":2,"ok":3}"#, r#"{"ok":3}"#),
        (
            &["a.*"],
            r#"{"a":{"x.y":1,"x[0]":2,"x":3}}"#,
            r#"{"a":{"x":3}}"#,
        ),
        (&["é"], r#"{"\u00e9":1}"#, r#"{"\u00e9":1}"#),
        (&["😀"], r#"{"\ud83d\ude00":1}"#, r#"{"\ud83d\ude00":1}"#),
    ];
    for (allow, input, expected) in cases {
        let program = compile(&spec(allow, &[]));
        assert_eq!(
            run(&program, input).as_deref(),
            Ok(*expected),
            "{allow:?} {input}"
        );
    }
    // Keys that a path cannot name are removed even inside a subtree passed whole (the rule:
    // "always removed"), wherever they stand, whatever they hold; the rest keeps its order.
    let program = compile(&spec(&["a.**"], &[]));
    let cases = [
        (r#"{"a":{"x.y":1}}"#, r#"{"a":{}}"#),
        (r#"{"a":{"x.y":1,"k":2}}"#, r#"{"a":{"k":2}}"#),
        (
            r#"{"a":{"k":2,"x*":[1,{"b":2}],"m":[3]}}"#,
            r#"{"a":{"k":2,"m":[3]}}"#,
        ),
        (
            r#"{"a":{"k":{"[0]":{"c":1},"d":[{"e]":1,"f":2}]}}}"#,
            r#"{"a":{"k":{"d":[{"f":2}]}}}"#,
        ),
        (
            r#"{"a":[{".":1},{"ok":true}]}"#,
            r#"{"a":[{},{"ok":true}]}"#,
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(run(&program, input).as_deref(), Ok(expected), "{input}");
    }
    let filtered = run_with(
        &program,
        br#"{"a":{"k":{"[0]":{"c":1},"d":[{"e]":1,"f":2}]}}}"#,
        &FilterOptions {
            max_depth: 64,
            pseudonymize_key: None,
            optouts: None,
            detail: true,
            subjects: false,
        },
    )
    .expect("filtered");
    assert_eq!(filtered.report.fields_removed, 2);
    assert_eq!(
        filtered.report.changes,
        vec![
            Change::Removed {
                path: r#"a.k["[0]"]"#.into()
            },
            Change::Removed {
                path: r#"a.k.d[0]["e]"]"#.into()
            },
        ]
    );
    // Validation still covers what is dropped: a duplicate key inside is refused.
    assert!(run(&program, r#"{"a":{"x.y":{"b":1,"b":2}}}"#).is_err());
}

#[test]
fn numbers_pass_byte_identical() {
    let program = compile(&spec(&["n[*]", "m.**"], &[]));
    let numbers =
        "[1.0,1e5,-0,12345678901234567890123,1E+2,0.000001,-0.0e-0,1e400,9007199254740993]";
    let input = format!(r#"{{"n":{numbers},"m":{{"x":{numbers}}}}}"#);
    let expected = format!(r#"{{"n":{numbers},"m":{{"x":{numbers}}}}}"#);
    assert_eq!(
        filter(&program, input.as_bytes(), &options(None, false)).map(|f| body_text(&f)),
        Ok(expected)
    );
}

#[test]
fn transforms() {
    use Transform::*;
    let h42 = hmac_hex("42");
    assert_eq!(
        h42,
        "7955074f51169f1f64053d8b2c403d7f41ee7ca4f3f9fe1c7b84f91083f2c50a"
    );
    let quoted = |s: &str| format!("\"{s}\"");
    let cases: Vec<(Transform, &str, Result<String, &str>)> = vec![
        (Mask, r#""abc""#, Ok(quoted("***"))),
        (Mask, "123", Ok(quoted("***"))),
        (Mask, r#""""#, Ok(quoted("***"))),
        (Mask, "null", Ok("null".into())),
        (Last4, r#""4111 1111 1111 1111""#, Ok(quoted("***1111"))),
        (Last4, r#""4111-1111-1111-4242""#, Ok(quoted("***4242"))),
        (Last4, "4111111111114242", Ok(quoted("***4242"))),
        (Last4, r#""12345678""#, Ok(quoted("***5678"))),
        (Last4, r#""1234567""#, Ok(quoted("***"))),
        (Last4, "1234567", Ok(quoted("***"))),
        (Last4, r#""abcdefgh""#, Ok(quoted("***"))),
        (Last4, r#""\u0031\u00322345678""#, Ok(quoted("***5678"))),
        (Last4, r#""1234 5678 ab""#, Ok(quoted("***5678"))),
        (Last4, "null", Ok("null".into())),
        (Pseudonymize, r#""42""#, Ok(quoted(&h42))),
        (Pseudonymize, "42", Ok(quoted(&h42))),
        (Pseudonymize, r#""4\u0032""#, Ok(quoted(&h42))),
        (
            Pseudonymize,
            r#""a\"b""#,
            Ok(quoted(
                "25965bc5b47077b0d75fec0df0dcbb2e6b93f1d62caf3311c7738c2c52c9c3cd",
            )),
        ),
        (Pseudonymize, "4.20", Ok(quoted(&hmac_hex("4.20")))),
        (Pseudonymize, "null", Ok("null".into())),
        (Null, r#""x""#, Ok("null".into())),
        (Null, "5", Ok("null".into())),
        (Null, "null", Ok("null".into())),
        (
            Mask,
            "true",
            Err("`v` holds a boolean, but transform mask accepts only a string, number or null"),
        ),
        (Last4, "{}", Err("`v` holds an object, but transform last4")),
        (
            Pseudonymize,
            "[1]",
            Err("`v` holds an array, but transform pseudonymize"),
        ),
        (Null, "false", Err("holds a boolean")),
    ];
    for (transform, value, expected) in cases {
        let program = compile(&spec(&["id"], &[("v", transform)]));
        let input = format!(r#"{{"id":1,"v":{value}}}"#);
        let result = run_with(&program, input.as_bytes(), &options(None, true));
        match expected {
            Ok(out) => {
                let filtered = result.unwrap_or_else(|e| panic!("{transform:?} {value}: {e:?}"));
                assert_eq!(
                    body_text(&filtered),
                    format!(r#"{{"id":1,"v":{out}}}"#),
                    "{transform:?} {value}"
                );
                let counted = u64::from(value != "null");
                let mut transformed = [0; 4];
                transformed[transform as usize] = counted;
                assert_eq!(
                    filtered.report.transformed, transformed,
                    "{transform:?} {value}"
                );
                let changes = if counted == 1 {
                    vec![Change::Transformed {
                        path: "v".into(),
                        transform,
                    }]
                } else {
                    vec![]
                };
                assert_eq!(filtered.report.changes, changes);
            }
            Err(needle) => match result {
                Err(Refusal {
                    kind: RefusalKind::BadRequest,
                    message: m,
                }) => {
                    assert!(m.contains(needle), "{transform:?} {value}: {m}")
                }
                other => panic!("{transform:?} {value}: {other:?}"),
            },
        }
    }
}

#[test]
fn pseudonymize_without_a_key_fails_closed() {
    let program = compile(&spec(&["a"], &[("id", Transform::Pseudonymize)]));
    assert!(program.uses_pseudonymize());
    let opts = FilterOptions {
        pseudonymize_key: None,
        ..options(None, false)
    };
    // Refused whether or not the field is present: the outcome never depends on the body.
    for body in [r#"{"id":"42"}"#, r#"{"a":1}"#] {
        match filter(&program, body.as_bytes(), &opts) {
            Err(Refusal {
                kind: RefusalKind::NotReady,
                message: m,
            }) => assert!(m.contains("no pseudonymization key"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    let program = compile(&spec(&["a"], &[("id", Transform::Mask)]));
    assert!(!program.uses_pseudonymize());
    assert!(filter(&program, br#"{"id":"42"}"#, &opts).is_ok());
}

fn shipments_program() -> FilterProgram {
    compile(&records(
        spec(
            &["order_id", "shipments[*].name", "shipments[*].customer_id"],
            &[("shipments[*].card", Transform::Last4)],
        ),
        "shipments[*]",
        "customer_id",
    ))
}

fn shipments(records: &[&str]) -> String {
    format!(r#"{{"order_id":7,"shipments":[{}]}}"#, records.join(","))
}

#[test]
fn opted_out_records_are_dropped() {
    let program = shipments_program();
    assert!(program.has_subjects());
    assert!(!program.single_record());
    let one = r#"{"customer_id":"1","name":"Ann","card":"4111111111111111","email":"a@x"}"#;
    let two = r#"{"name":"Bob","email":"b@x","customer_id":2}"#;
    let three = r#"{"customer_id":"3","name":"Cy"}"#;
    let body = shipments(&[one, two, three]);
    let kept1 = r#"{"customer_id":"1","name":"Ann","card":"***1111"}"#;
    let kept2 = r#"{"name":"Bob","customer_id":2}"#;
    let kept3 = r#"{"customer_id":"3","name":"Cy"}"#;
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &[kept1, kept2, kept3]),
        (&["1"], &[kept2, kept3]),
        (&["2"], &[kept1, kept3]),
        (&["3"], &[kept1, kept2]),
        (&["1", "3"], &[kept2]),
        (&["1", "2", "3"], &[]),
        (&["4", "01", "2.0"], &[kept1, kept2, kept3]),
    ];
    for (opted_out, kept) in cases {
        let set = optouts(opted_out);
        let filtered =
            run_with(&program, body.as_bytes(), &options(Some(&set), false)).expect("filtered");
        assert_eq!(
            body_text(&filtered),
            shipments(kept),
            "opted out {opted_out:?}"
        );
        assert_eq!(filtered.report.records_forwarded, kept.len() as u64);
        assert_eq!(filtered.report.records_dropped, 3 - kept.len() as u64);
    }
}

#[test]
fn subject_ids_are_canonical() {
    let program = shipments_program();
    let set = optouts(&["123", "é", "-5"]);
    for subject in [
        r#""123""#,
        "123",
        r#""\u0031\u00323""#,
        r#""\u00e9""#,
        r#""é""#,
        "-5",
    ] {
        let body = shipments(&[&format!(r#"{{"name":"x","customer_id":{subject}}}"#)]);
        let filtered =
            run_with(&program, body.as_bytes(), &options(Some(&set), false)).expect("filtered");
        assert_eq!(body_text(&filtered), shipments(&[]), "{subject}");
        assert_eq!(filtered.report.records_dropped, 1);
    }
    // Not the same customer.
    for subject in [r#""1234""#, "1234", r#""c-123""#] {
        let body = shipments(&[&format!(r#"{{"customer_id":{subject}}}"#)]);
        let filtered =
            run_with(&program, body.as_bytes(), &options(Some(&set), false)).expect("filtered");
        assert_eq!(filtered.report.records_forwarded, 1, "{subject}");
    }
}

#[test]
fn records_without_a_valid_subject_are_refused() {
    let program = shipments_program();
    let set = optouts(&[]);
    let cases: &[(&str, &str)] = &[
        (
            r#"{"name":"x"}"#,
            "record `shipments[1]` has no subject id: member `customer_id` is missing",
        ),
        (r#"{"customer_id":null}"#, "is null"),
        (r#"{"customer_id":""}"#, "is an empty string"),
        (
            r#"{"customer_id":1e2}"#,
            "a number with a fraction or exponent",
        ),
        (
            r#"{"customer_id":100.0}"#,
            "a number with a fraction or exponent",
        ),
        (r#"{"customer_id":true}"#, "a boolean"),
        // Forms a partner could read as another (opted-out) customer.
        (r#"{"customer_id":"0123"}"#, "not in canonical integer form"),
        (r#"{"customer_id":"+123"}"#, "not in canonical integer form"),
        (
            r#"{"customer_id":"123.0"}"#,
            "not in canonical integer form",
        ),
        (r#"{"customer_id":" 123"}"#, "surrounding whitespace"),
        (r#"{"customer_id":"c-200\u0000"}"#, "control character"),
        (r#"{"customer_id":9007199254740993}"#, "beyond ±(2^53−1)"),
        (r#"{"customer_id":-9007199254740992}"#, "beyond ±(2^53−1)"),
        (r#"{"customer_id":"\uff43-200"}"#, "NFKC"),
        (r#"{"customer_id":[1]}"#, "is an object or array"),
        (r#"{"customer_id":{"id":1}}"#, "is an object or array"),
    ];
    for (record, needle) in cases {
        let body = shipments(&[r#"{"customer_id":"ok"}"#, record]);
        match filter(&program, body.as_bytes(), &options(Some(&set), false)) {
            Err(Refusal {
                kind: RefusalKind::SubjectMissing,
                message: m,
            }) => assert!(m.contains(needle), "{record}: {m}"),
            other => panic!("{record}: {other:?}"),
        }
    }
    // When the subject is not allowed, its shape does not matter, but it is still no id.
    let removed = compile(&records(
        spec(&["shipments[*].name"], &[]),
        "shipments[*]",
        "customer_id",
    ));
    for record in [r#"{"customer_id":{"id":1}}"#, r#"{"customer_id":[]}"#] {
        let body = shipments(&[record]);
        match filter(&removed, body.as_bytes(), &options(Some(&set), false)) {
            Err(Refusal {
                kind: RefusalKind::SubjectMissing,
                message: m,
            }) => assert!(m.contains("`customer_id` is an"), "{m}"),
            other => panic!("{record}: {other:?}"),
        }
    }
    // A subject given twice is a duplicate key.
    let body = shipments(&[r#"{"customer_id":"1","customer_id":"2"}"#]);
    assert!(bad_request(run(&program, &body)).contains("duplicate key \"customer_id\""));
    // Without opt-outs, subjects are neither required nor checked.
    let body = shipments(&[r#"{"name":"x"}"#, r#"{"customer_id":null,"name":"y"}"#]);
    let filtered = run_with(&program, body.as_bytes(), &options(None, false)).expect("filtered");
    assert_eq!(filtered.report.records_forwarded, 2);
}

#[test]
fn records_must_be_objects() {
    let program = shipments_program();
    for (element, what) in [
        ("1", "a number"),
        ("null", "null"),
        ("[]", "an array"),
        (r#""x""#, "a string"),
    ] {
        let body = shipments(&[r#"{"customer_id":"1"}"#, element]);
        let message = bad_request(run(&program, &body));
        assert!(
            message.contains(&format!(
                "record `shipments[1]` is {what}, but records must be objects"
            )),
            "{message}"
        );
    }
    // The array holding the records may itself be null.
    assert_eq!(
        run(&program, r#"{"shipments":null}"#).as_deref(),
        Ok(r#"{"shipments":null}"#)
    );
}

#[test]
fn single_record_bodies() {
    let program = compile(&records(
        spec(&["name", "customer_id"], &[]),
        "$",
        "customer_id",
    ));
    assert!(program.single_record());
    let set = optouts(&["9"]);
    let opts = options(Some(&set), false);
    match filter(
        &program,
        br#"{"name":"x","customer_id":9,"email":"e"}"#,
        &opts,
    ) {
        Err(Refusal {
            kind: RefusalKind::SubjectOptedOut,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let filtered = run_with(
        &program,
        br#"{"customer_id":"8","name":"x","email":"e"}"#,
        &opts,
    )
    .expect("filtered");
    assert_eq!(body_text(&filtered), r#"{"customer_id":"8","name":"x"}"#);
    assert_eq!(filtered.report.records_forwarded, 1);
    assert!(matches!(
        filter(&program, br#"{"name":"x"}"#, &opts),
        Err(Refusal {
            kind: RefusalKind::SubjectMissing,
            ..
        })
    ));
    assert!(bad_request(run(&program, "[]")).contains("record `$` is an array"));
    assert!(bad_request(run(&program, "null")).contains("record `$` is null"));
    // A subject that is an object or array names the record, as any other bad subject does.
    for body in [r#"{"customer_id":[1]}"#, r#"{"customer_id":{"a":1}}"#] {
        let refused = filter(&program, body.as_bytes(), &opts).expect_err(body);
        assert_eq!(refused.kind, RefusalKind::SubjectMissing);
        assert!(
            refused
                .message
                .starts_with("record `$` has no valid subject id"),
            "{refused:?}"
        );
    }
}

#[test]
fn records_passed_whole_still_honour_opt_outs() {
    let program = compile(&records(
        spec(&["shipments[*].**"], &[]),
        "shipments[*]",
        "id",
    ));
    let set = optouts(&["2"]);
    let body = r#"{"shipments":[{"id":1,"x":{"y":[1]}},{"z":0,"id":"2"}, {"id":3}],"other":1}"#;
    let filtered =
        run_with(&program, body.as_bytes(), &options(Some(&set), false)).expect("filtered");
    assert_eq!(
        body_text(&filtered),
        r#"{"shipments":[{"id":1,"x":{"y":[1]}},{"id":3}]}"#
    );
    assert_eq!(filtered.report.records_dropped, 1);
    assert!(bad_request(run(&program, r#"{"shipments":[1]}"#)).contains("records must be objects"));
    let dup = r#"{"shipments":[{"id":1,"x":{"y":1,"y":2}}]}"#;
    assert!(bad_request(run(&program, dup)).contains("duplicate key"));
}

#[test]
fn opt_outs_need_a_subject_in_the_policy() {
    let program = compile(&spec(&["a"], &[]));
    assert!(!program.has_subjects());
    let set = optouts(&[]);
    assert!(matches!(
        filter(&program, br#"{"a":1}"#, &options(Some(&set), false)),
        Err(Refusal {
            kind: RefusalKind::SubjectMissing,
            ..
        })
    ));
}

#[test]
fn a_route_without_paths_takes_no_body() {
    let program = compile(&FilterSpec::default());
    assert!(!program.takes_body());
    assert!(bad_request(run(&program, "{}")).contains("takes no body"));
}

#[test]
fn report_counts_and_detail_paths() {
    let program = shipments_program();
    let set = optouts(&["2"]);
    let body = shipments(&[
        r#"{"customer_id":"1","name":"Ann","card":"4111111111111111","email":"a@x","ip":"10.0.0.1"}"#,
        r#"{"customer_id":"2","card":"4111111111111111","email":"b@x"}"#,
        r#"{"customer_id":"3","x":{"deep":[1,2]},"card":null}"#,
    ]);
    let body = body.replace(r#""order_id":7,"#, r#""order_id":7,"trace":{"a":1},"#);
    let filtered =
        run_with(&program, body.as_bytes(), &options(Some(&set), true)).expect("filtered");
    assert_eq!(
        body_text(&filtered),
        r#"{"order_id":7,"shipments":[{"customer_id":"1","name":"Ann","card":"***1111"},{"customer_id":"3","card":null}]}"#
    );
    let report = &filtered.report;
    assert_eq!(
        report.fields_removed, 4,
        "trace, email, ip, x (not those of the dropped record)"
    );
    assert_eq!(report.transformed, [0, 1, 0, 0]);
    assert_eq!(report.records_forwarded, 2);
    assert_eq!(report.records_dropped, 1);
    assert_eq!(
        report.changes,
        vec![
            Change::Removed {
                path: "trace".into()
            },
            Change::Transformed {
                path: "shipments[0].card".into(),
                transform: Transform::Last4
            },
            Change::Removed {
                path: "shipments[0].email".into()
            },
            Change::Removed {
                path: "shipments[0].ip".into()
            },
            Change::RecordDropped {
                path: "shipments[1]".into(),
                subject: "2".into()
            },
            Change::Removed {
                path: "shipments[2].x".into()
            },
        ]
    );

    // Counts are the same without detail; only the changes are left out.
    let plain = run_with(&program, body.as_bytes(), &options(Some(&set), false)).expect("filtered");
    assert_eq!(plain.body, filtered.body);
    assert_eq!(
        Report {
            changes: Vec::new(),
            ..report.clone()
        },
        plain.report
    );

    // Keys a path cannot spell are shown unambiguously.
    let program = compile(&spec(&["a"], &[]));
    let filtered = run_with(
        &program,
        br#"{"a.b":1,"":2," x":3,"q\"":4}"#,
        &options(None, true),
    )
    .expect("filtered");
    let paths: Vec<String> = filtered
        .report
        .changes
        .iter()
        .map(|c| match c {
            Change::Removed { path } => path.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(paths, [r#"["a.b"]"#, r#"[""]"#, r#"[" x"]"#, r#"["q\""]"#]);
}

#[test]
fn compile_errors() {
    use Transform::*;
    type Case<'a> = (FilterSpec, &'a [(&'a str, &'a str)]);
    let root_subtree = FilterSpec {
        removes: Vec::new(),
        allow: vec![FieldPath {
            segments: vec![],
            subtree: true,
        }],
        ..FilterSpec::default()
    };
    let dotted_member = FilterSpec {
        removes: Vec::new(),
        allow: vec![FieldPath {
            segments: vec![Segment::Member("a.b".into())],
            subtree: false,
        }],
        ..FilterSpec::default()
    };
    let cases: Vec<Case> = vec![
        (root_subtree, &[("**", "`**` on the body root")]),
        (spec(&["$"], &[]), &[("$", "names the whole body")]),
        (
            spec(&["a"], &[("$", Mask)]),
            &[("$", "cannot apply to the whole body")],
        ),
        (dotted_member, &[("a.b", "can never match a key")]),
        (
            spec(&["a.**"], &[("a.b", Mask)]),
            &[("a.b", "transform mask sits beneath `a.**`")],
        ),
        (
            spec(&["a.**"], &[("a.b[*].c", Null)]),
            &[("a.b[*].c", "sits beneath `a.**`")],
        ),
        (
            spec(&["a.**"], &[("a", Mask)]),
            &[("a", "transform mask conflicts with `a.**`")],
        ),
        (
            spec(&["*.**"], &[("a.b", Mask)]),
            &[("a.b", "sits beneath `*.**`")],
        ),
        (
            spec(&[], &[("a.**", Mask)]),
            &[("a.**", "not to a subtree")],
        ),
        (
            spec(&[], &[("a", Mask), ("a", Last4)]),
            &[(
                "a",
                "conflicting transforms: mask (from `a`) and last4 (from `a`)",
            )],
        ),
        (
            spec(&[], &[("a.x", Mask), ("*.x", Last4)]),
            &[(
                "a.x",
                "conflicting transforms: mask (from `a.x`) and last4 (from `*.x`)",
            )],
        ),
        (
            spec(&["a", "a.b"], &[]),
            &[("a.b", "can never match: `a` is allowed as a scalar")],
        ),
        (
            spec(&["a[*].b"], &[("a", Mask)]),
            &[("a[*].b", "can never match: `a` is transformed (mask)")],
        ),
        (
            spec(&["*", "a.b"], &[]),
            &[("a.b", "can never match: `*` is allowed as a scalar")],
        ),
        (
            spec(&["a.b", "a[*]"], &[]),
            &[("a[*]", "`a.b` expects an object at `a`")],
        ),
        (
            records(spec(&["s"], &[]), "s", "id"),
            &[(
                "s",
                "records must be `$` (the body is one record) or a path ending in `[*]`",
            )],
        ),
        (
            records(spec(&["s.**"], &[]), "s.**", "id"),
            &[("s.**", "records cannot end in `.**`")],
        ),
        (
            records(spec(&["s[*]"], &[]), "s[*]", "id"),
            &[("s[*]", "records must be objects, but `s[*]` passes only")],
        ),
        (
            records(spec(&["s.**"], &[]), "s.x[*]", "id"),
            &[("s.x[*]", "records lie beneath `s.**`")],
        ),
        (
            records(spec(&["[*].a"], &[]), "$", "id"),
            &[("[*].a", "`$` expects an object at `$`")],
        ),
        (
            records(spec(&["s[*].a"], &[]), "s[*]", "a.b"),
            &[("a.b", "subject contains")],
        ),
        (
            records(spec(&["s[*].a"], &[]), "s[*]", ""),
            &[("", "subject is empty")],
        ),
        (
            FilterSpec {
                removes: Vec::new(),
                records: Some(path("s[*]")),
                ..spec(&["s[*].a"], &[])
            },
            &[("s[*]", "records given without subject")],
        ),
        (
            FilterSpec {
                removes: Vec::new(),
                subject: Some("id".into()),
                ..spec(&["s[*].a"], &[])
            },
            &[("id", "subject given without records")],
        ),
        // Records beneath which nothing is forwarded: opt-outs could never drop any data.
        (
            records(spec(&["r[*].id", "r[*].n"], &[]), "q[*]", "id"),
            &[(
                "q[*]",
                "no allow or transform path lies at or beneath the records",
            )],
        ),
        (
            records(spec(&["r[*].n"], &[]), "r[*].s[*]", "id"),
            &[(
                "r[*].s[*]",
                "no allow or transform path lies at or beneath the records",
            )],
        ),
        // Every mistake is reported, not just the first.
        (
            FilterSpec {
                removes: Vec::new(),
                subject: Some("id".into()),
                ..spec(&["$", "a", "a.b", "c.**"], &[("c.d", Mask), ("e.**", Null)])
            },
            &[
                ("$", "names the whole body"),
                ("e.**", "not to a subtree"),
                ("id", "subject given without records"),
                ("c.d", "sits beneath `c.**`"),
                ("a.b", "can never match"),
            ],
        ),
    ];
    for (spec, expected) in cases {
        let errors = match FilterProgram::compile(&spec) {
            Err(errors) => errors,
            Ok(_) => panic!("{spec:?} should not compile"),
        };
        assert_eq!(errors.len(), expected.len(), "{spec:?}: {errors:#?}");
        for (path, needle) in expected.iter() {
            assert!(
                errors
                    .iter()
                    .any(|e| e.path == *path && e.message.contains(needle)),
                "{spec:?}: no error ({path:?}, {needle:?}) in {errors:#?}"
            );
        }
    }
}

#[test]
fn policies_that_compile() {
    use Transform::*;
    let ok = [
        spec(&["a.**", "a.b"], &[]),
        spec(&["a"], &[("a", Mask)]),
        spec(&["a.x", "*.e"], &[("*.f", Null)]),
        spec(&[], &[("a.x", Mask), ("*.x", Mask)]),
        spec(&["a[*][*].b"], &[("a[*][*].c", Pseudonymize)]),
        records(spec(&["name"], &[]), "$", "customer_id"),
        records(spec(&["s[*].**"], &[]), "s[*]", "id"),
        records(spec(&["a[*].s[*].x"], &[]), "a[*].s[*]", "id"),
        records(spec(&["order_id", "s[*].a"], &[]), "s[*]", "id"),
        records(spec(&["order_id"], &[("s[*].card", Mask)]), "s[*]", "id"),
        records(spec(&["s[*].*"], &[]), "s[*]", "id"),
        FilterSpec::default(),
    ];
    for spec in ok {
        if let Err(errors) = FilterProgram::compile(&spec) {
            panic!("{spec:?}: {errors:#?}");
        }
    }
}

/// A tiny deterministic PRNG (xorshift64*), so the differential test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "a", "b", "c", "name", "email", "\\u0061x", "k\\n", "x.y", "",
];
const STRINGS: &[&str] = &[
    "",
    "x",
    "naïve",
    "\\\"q\\\"",
    "\\u00e9",
    "\\ud83d\\ude00",
    "tab\\t",
    "\\/",
    "\u{7f}",
];
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-12",
    "3.25",
    "1e5",
    "1E-3",
    "2.5e+10",
    "12345678901234567890123",
    "0.0",
];

fn gen_value(rng: &mut Rng, depth: usize, out: &mut String) {
    let choice = if depth > 4 {
        rng.below(4)
    } else {
        rng.below(7)
    };
    match choice {
        0 => out.push_str(rng.pick(NUMBERS)),
        1 => {
            out.push('"');
            out.push_str(rng.pick(STRINGS));
            out.push('"');
        }
        2 => out.push_str(rng.pick(&["true", "false", "null"])),
        3 => out.push_str(rng.pick(&["{}", "[]", "[ ]", "{ }"])),
        4 | 5 => {
            out.push('{');
            let n = rng.below(4);
            let mut used = HashSet::new();
            for i in 0..n {
                let key = rng.pick(KEYS);
                // Keys that unescape alike (`a`/`\u0061`) would be duplicates; keep them apart here.
                let canonical = key.replace("\\u0061", "a");
                if !used.insert(canonical) {
                    continue;
                }
                if i > 0 && !out.ends_with('{') {
                    out.push(',');
                }
                out.push_str(rng.pick(&["", " ", "\n"]));
                out.push('"');
                out.push_str(key);
                out.push_str("\":");
                gen_value(rng, depth + 1, out);
            }
            out.push('}');
        }
        _ => {
            out.push('[');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push_str(rng.pick(&[",", ", ", " ,"]));
                }
                gen_value(rng, depth + 1, out);
            }
            out.push(']');
        }
    }
}

/// Small edits that turn valid JSON into (usually) invalid JSON at a random place.
fn mutate(rng: &mut Rng, input: &str) -> Vec<u8> {
    let mut bytes = input.as_bytes().to_vec();
    let at = rng.below(bytes.len() + 1);
    const INSERTS: &[&[u8]] = &[
        b",",
        b"}",
        b"]",
        b"{",
        b"[",
        b"\"",
        b"\\",
        b"0",
        b"-",
        b".",
        b"e",
        b"+",
        b"01",
        b"\\u",
        b"\\ud800",
        b"\\udc00",
        b"\n",
        b"\x01",
        b"\xFF",
        b"\xC3",
        b"\xEF\xBB\xBF",
        b"t",
        b"nul",
        b"NaN",
        b" ",
        b":",
        b"x",
    ];
    match rng.below(4) {
        0 => {
            let insert = rng.pick(INSERTS);
            bytes.splice(at..at, insert.iter().copied());
        }
        1 if at < bytes.len() => {
            bytes.remove(at);
        }
        2 if at < bytes.len() => {
            bytes[at] = rng.pick(&[b'"', b'\\', b',', b':', b'0', b'a', b' ', b'}', b']', 0x1f]);
        }
        _ => bytes.truncate(at),
    }
    bytes
}

#[test]
fn validator_agrees_with_serde_json() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut checked = 0;
    let mut accepted = 0;
    // Each accepted input is also run through a filter program; the output must be valid JSON.
    let program = compile(&spec(
        &["a", "b.**", "name", "c[*]", "d.*"],
        &[("email", Transform::Mask)],
    ));
    for round in 0..3000 {
        let mut valid = String::new();
        gen_value(&mut rng, 0, &mut valid);
        let input = if round % 3 == 0 {
            valid.into_bytes()
        } else {
            mutate(&mut rng, &valid)
        };
        let ours = validate(&input, 1000);
        let theirs = serde_json::from_slice::<serde_json::Value>(&input);
        if let Err(Refusal {
            kind: RefusalKind::BadRequest,
            message: m,
        }) = &ours
        {
            // serde_json keeps the last of duplicate keys; the gateway refuses them.
            if m.contains("duplicate key") {
                continue;
            }
        }
        if let Err(e) = &theirs {
            // RFC 8259 numbers have no range; the gateway passes them as written.
            if e.to_string().contains("number out of range") {
                continue;
            }
        }
        checked += 1;
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "input {:?}: ours {ours:?}, serde_json {theirs:?}",
            String::from_utf8_lossy(&input)
        );
        if ours.is_ok() {
            accepted += 1;
            if let Ok(filtered) = filter(&program, &input, &options(None, false)) {
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&filtered.body).is_ok(),
                    "{:?} → {:?}",
                    String::from_utf8_lossy(&input),
                    String::from_utf8_lossy(&filtered.body)
                );
            }
        }
    }
    assert!(
        checked > 2500 && accepted > 1000 && accepted < checked - 500,
        "{checked} checked, {accepted} accepted"
    );
}

#[test]
fn unescape_decodes_every_escape() {
    let mut out = Vec::new();
    scan::unescape(br#"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z"#, &mut out);
    assert_eq!(out, "a\"\\/\u{8}\u{c}\n\r\té😀z".as_bytes());
}

#[test]
fn strings_are_checked_alike_at_every_offset_of_the_block_scan() {
    // Strings are scanned 16 bytes at a time: each special (closing quote, escape, control
    // character) at every offset of the first blocks, in a kept value, a removed value, a key
    // and at the end of the body, is accepted or refused as serde_json does, with its position.
    let programs = [
        compile(&spec(&["a", "n.**"], &[])),
        compile(&spec(&["zz"], &[])),
        compile(&spec(&["a.**", "n.**"], &[])),
    ];
    let specials: &[(&str, Option<&str>)] = &[
        ("", None),
        ("\\n", None),
        ("\\\"", None),
        ("\\u00e9", None),
        ("\\ud83d\\ude00", None),
        ("é", None),
        ("\u{7f}", None),
        ("\\ud800", Some("lone surrogate")),
        ("\\ude00", Some("lone surrogate")),
        ("\\ud800\\u0041", Some("lone surrogate")),
        ("\\x", Some("invalid escape")),
        ("\\u12g4", Some("4 hex digits")),
        ("\u{1}", Some("control character 0x01")),
        ("\u{1f}", Some("control character 0x1f")),
        ("\n", Some("control character 0x0a")),
    ];
    for offset in 0..=40 {
        for &(special, refused) in specials {
            let text = format!("{}{special}tail", "x".repeat(offset));
            for (body, at) in [
                (format!(r#"{{"a":"{text}","b":1}}"#), 6),
                (format!(r#"{{"b":1,"a":"{text}"}}"#), 12),
                (format!(r#"{{"{text}":1,"a":2}}"#), 2),
                (format!(r#"{{"n":{{"k":"{text}"}}}}"#), 11),
            ] {
                let theirs = serde_json::from_str::<serde_json::Value>(&body).is_ok();
                assert_eq!(theirs, refused.is_none(), "{body:?}");
                let position = format!("at byte {}", at + offset);
                for result in std::iter::once(validate(body.as_bytes(), 64).map(|()| String::new()))
                    .chain(programs.iter().map(|p| run(p, &body)))
                {
                    match (refused, result) {
                        (None, Ok(_)) => {}
                        (Some(needle), Err(Refusal { message, .. })) => assert!(
                            message.contains(needle) && message.contains(&position),
                            "{body:?}: {message}"
                        ),
                        (_, other) => panic!("{body:?}: {other:?}"),
                    }
                }
            }
            // Cut off inside the string, at and after the special.
            let body = format!(r#"{{"a":"{text}"#);
            for cut in 7 + offset..=body.len() {
                let cut_body = &body.as_bytes()[..cut];
                if std::str::from_utf8(cut_body).is_err() {
                    continue;
                }
                assert!(validate(cut_body, 64).is_err());
                for program in &programs {
                    assert!(filter(program, cut_body, &options(None, false)).is_err());
                }
            }
        }
    }
}
