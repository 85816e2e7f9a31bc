//! Every fail-closed check holds deep inside members the policy removes, where the filter only
//! skips: the refusal is exactly the validator's, at the top level and inside records.
use super::*;

/// Values that are wrong in one way each, and a word of the refusal they must get.
const BAD_VALUES: &[(&[u8], &str)] = &[
    // Invalid JSON.
    (b"tru", "unexpected `t`"),
    (b"nul", "unexpected `n`"),
    (b"[1,]", "unexpected `]`"),
    (b"[1 2]", "expected `,` or `]`"),
    (b"{\"a\" 1}", "`:` after a member name"),
    (b"{\"a\":1,}", "expected a member name"),
    (b"{,}", "expected a member name"),
    (b"{\"a\":1]", "expected `,` or `}`"),
    (b"01", "leading zeros"),
    (b"1.", "after `.`"),
    (b"-", "expected a digit"),
    (b"1e+", "exponent"),
    (b"NaN", "unexpected `N`"),
    (b"'x'", "unexpected `'`"),
    // Escapes and surrogates, in values and in member names.
    (b"\"\\x\"", "invalid escape `\\x`"),
    (b"\"\\u12g4\"", "4 hex digits"),
    (b"\"ok\\ud800\"", "lone surrogate `\\ud800`"),
    (b"\"\\udc00\"", "lone surrogate `\\udc00`"),
    (b"\"\\ud800\\u0041\"", "lone surrogate"),
    (b"{\"\\ud800\":1}", "lone surrogate"),
    (b"{\"\\q\":1}", "invalid escape"),
    // Invalid UTF-8 and control characters.
    (b"\"a\xFFb\"", "not valid UTF-8"),
    (b"\"\xED\xA0\x80\"", "not valid UTF-8"),
    (b"\"a\nb\"", "control character 0x0a"),
    (
        b"\"long text before the control character \x01\"",
        "control character 0x01",
    ),
    (b"{\"k\x1f\":1}", "control character 0x1f"),
    // Duplicate keys, plain, escaped, and in an object big enough for the hash set.
    (b"{\"k\":1,\"k\":2}", "duplicate key \"k\""),
    (b"{\"k\":1,\"\\u006b\":2}", "duplicate key \"k\""),
    (b"[{\"a\":{\"b\":1,\"b\":[]}}]", "duplicate key \"b\""),
];

fn big_object_with_duplicate() -> Vec<u8> {
    let mut members: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{{\"v\":{i}}}")).collect();
    members.push("\"k3\\u0039\":0".to_string());
    format!("{{{}}}", members.join(",")).into_bytes()
}

fn deep(levels: usize) -> Vec<u8> {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels)).into_bytes()
}

/// `bad` placed inside a removed member at the top level and inside a removed member of a
/// record, several levels down.
fn bodies(bad: &[u8]) -> Vec<Vec<u8>> {
    let wrap = |before: &str, after: &str| {
        let mut body = before.as_bytes().to_vec();
        body.extend_from_slice(bad);
        body.extend_from_slice(after.as_bytes());
        body
    };
    vec![
        wrap(r#"{"keep":1,"gone":"#, r#","more":2}"#),
        wrap(r#"{"keep":1,"gone":{"x":[1,{"y":"#, r#"}]},"more":2}"#),
        wrap(r#"{"keep":1,"r":[{"id":1,"gone":[{"deep":"#, r#"}]}]}"#),
        wrap(
            r#"{"keep":1,"r":[{"id":2},{"gone":{"a":[[["#,
            r#"]]]},"id":3}]}"#,
        ),
    ]
}

fn programs() -> Vec<FilterProgram> {
    vec![
        compile(&spec(&["keep", "r[*].id"], &[])),
        compile(&records(spec(&["keep", "r[*].id"], &[]), "r[*]", "id")),
        compile(&FilterSpec {
            removes: vec![path("gone"), path("r[*].gone")],
            ..spec(&["keep", "r[*].id"], &[])
        }),
    ]
}

fn refused_like_the_validator(body: &[u8], needle: &str, max_depth: usize) {
    let shown = String::from_utf8_lossy(body);
    let expected = match validate(body, max_depth) {
        Err(refusal) => refusal,
        Ok(()) => panic!("the validator accepts {shown:?}"),
    };
    assert_eq!(expected.kind, RefusalKind::BadRequest, "{shown:?}");
    assert!(
        expected.message.contains(needle),
        "{shown:?}: {}",
        expected.message
    );
    let lookup = optouts(&["2"]);
    for program in programs() {
        for lookup in [None, Some(&lookup as &dyn OptOutLookup)] {
            if lookup.is_some() && !program.has_subjects() {
                continue;
            }
            for detail in [false, true] {
                let opts = FilterOptions {
                    max_depth,
                    ..options(lookup, detail)
                };
                assert_eq!(
                    filter(&program, body, &opts),
                    Err(expected.clone()),
                    "{shown:?}"
                );
            }
        }
    }
}

#[test]
fn every_check_holds_inside_removed_members() {
    for (bad, needle) in BAD_VALUES {
        for body in bodies(bad) {
            refused_like_the_validator(&body, needle, 64);
        }
    }
    for body in bodies(&big_object_with_duplicate()) {
        refused_like_the_validator(&body, "duplicate key \"k39\"", 64);
    }
}

#[test]
fn the_depth_limit_holds_inside_removed_members() {
    for body in bodies(&deep(20)) {
        refused_like_the_validator(&body, "nesting deeper than 16 levels", 16);
    }
    // Just within the limit passes, with the removed member gone.
    let program = compile(&spec(&["keep", "r[*].id"], &[]));
    let opts = FilterOptions {
        max_depth: 16,
        ..options(None, false)
    };
    let body = bodies(&deep(14)).swap_remove(0);
    assert_eq!(
        filter(&program, &body, &opts).map(|f| body_text(&f)),
        Ok(r#"{"keep":1}"#.to_string())
    );
}

#[test]
fn valid_removed_members_leave_no_trace() {
    let good: &[&[u8]] = &[
        b"\"text with \\\"quotes\\\", \\\\ and \\u00e9 \\ud83d\\ude00\"",
        b"{\"a\":[1,-2.5e+3,true,false,null,{}],\"b\":{\"c\":\"}]\\\"\"}}",
        b"[\"[\",\"]\",\"{\",\"}\",\",\",\":\"]",
        b"\"caf\xC3\xA9 \xE2\x80\x94 \xF0\x9F\x98\x80\"",
    ];
    let program = compile(&spec(&["keep", "more"], &[]));
    for bad in good {
        let body = bodies(bad).swap_remove(0);
        assert_eq!(
            filter(&program, &body, &options(None, false)).map(|f| body_text(&f)),
            Ok(r#"{"keep":1,"more":2}"#.to_string()),
            "{:?}",
            String::from_utf8_lossy(&body)
        );
    }
}
