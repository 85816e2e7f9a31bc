//! Subtrees passed whole (`.**`): copied in one piece when they stand as written, piece by
//! piece when whitespace or a key no path can name must go — in any order within a body.
use super::*;

#[test]
fn subtrees_are_copied_compactly_whichever_comes_first() {
    let program = compile(&spec(&["r[*].a.**"], &[]));
    let compact = r#"{"a":{"x":1,"y":[1,{"z":"s p"}],"e":{}}}"#;
    let spaced = r#"{"a":{ "x":1,"y":[1, {"z":"s p"}],"e":{ } }}"#;
    let hidden = r#"{"a":{"x":1,"k.j":{"q":1},"y":[1,{"z":"s p"}],"e":{}}}"#;
    let expected = r#"{"a":{"x":1,"y":[1,{"z":"s p"}],"e":{}}}"#;
    for order in [
        [compact, spaced, hidden],
        [spaced, compact, hidden],
        [hidden, compact, spaced],
        [compact, hidden, compact],
    ] {
        let body = format!("{{\"r\":[{}]}}", order.join(","));
        for detail in [false, true] {
            let filtered =
                run_with(&program, body.as_bytes(), &options(None, detail)).expect("passes");
            assert_eq!(
                body_text(&filtered),
                format!("{{\"r\":[{}]}}", [expected; 3].join(","))
            );
            let hidden_count = order.iter().filter(|r| **r == hidden).count() as u64;
            assert_eq!(filtered.report.fields_removed, hidden_count);
            if detail {
                assert_eq!(filtered.report.changes.len() as u64, hidden_count);
            }
        }
    }
}

#[test]
fn a_subtree_checked_before_it_is_copied_is_refused_alike() {
    let program = compile(&spec(&["r[*].a.**"], &[]));
    for bad in [
        r#"{"x":1,"x":2}"#,
        r#"{"x":"\q"}"#,
        r#"[1,]"#,
        r#"{"x":"\ud800"}"#,
    ] {
        for first in [r#"{"a":{"x":1}}"#, r#"{"a":{ "x":1}}"#] {
            let body = format!(r#"{{"r":[{first},{{"a":{bad}}}]}}"#);
            let refusal = run(&program, &body).expect_err("refused");
            assert_eq!(refusal, validate(body.as_bytes(), 64).expect_err("invalid"));
        }
    }
}
