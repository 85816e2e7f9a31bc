use super::*;
use Segment::*;

fn m(s: &str) -> Segment {
    Member(s.to_string())
}

#[test]
fn parses_the_policy_language() {
    let cases: Vec<(&str, Vec<Segment>, bool)> = vec![
        ("order_id", vec![m("order_id")], false),
        (
            "shipments[*].name",
            vec![m("shipments"), Elements, m("name")],
            false,
        ),
        (
            "shipments[*].address.**",
            vec![m("shipments"), Elements, m("address")],
            true,
        ),
        ("a.*.b", vec![m("a"), AnyMember, m("b")], false),
        ("[*].id", vec![Elements, m("id")], false),
        ("a[*][*]", vec![m("a"), Elements, Elements], false),
        ("$.a", vec![m("a")], false),
        ("$[*]", vec![Elements], false),
        ("$", vec![], false),
    ];
    for (text, segments, subtree) in cases {
        let p = FieldPath::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(p, FieldPath { segments, subtree }, "{text}");
    }
}

#[test]
fn rejects_malformed_paths() {
    for bad in [
        "", " a", "a.", ".a", "a..b", "a.**.b", "a[0]", "a[", "a*", "a]", "**", "$a", "a.[*]",
        "a.b c[", "x[*]y",
    ] {
        assert!(FieldPath::parse(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn display_round_trips() {
    for text in [
        "a",
        "a.b",
        "a[*].b",
        "a.*",
        "a.b.**",
        "[*].a",
        "$",
        "a[*][*].c",
    ] {
        assert_eq!(FieldPath::parse(text).unwrap().to_string(), text);
    }
}
