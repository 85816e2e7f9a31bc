//! An explicit `remove` wins over `allow` and `*`, and paths it makes dead are compile errors.
use super::*;

fn path(text: &str) -> FieldPath {
    FieldPath::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn spec(allow: &[&str], removes: &[&str]) -> FilterSpec {
    FilterSpec {
        allow: allow.iter().map(|p| path(p)).collect(),
        transforms: Vec::new(),
        removes: removes.iter().map(|p| path(p)).collect(),
        records: None,
        subject: None,
    }
}

fn run(spec: &FilterSpec, body: &str) -> String {
    let program = FilterProgram::compile(spec).unwrap_or_else(|e| panic!("{e:?}"));
    let options = FilterOptions {
        max_depth: 64,
        pseudonymize_key: None,
        optouts: None,
        detail: false,
        subjects: false,
    };
    let out = filter(&program, body.as_bytes(), &options).unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(out.body).unwrap()
}

#[test]
fn explicit_remove_wins_over_allow() {
    let body = r#"{"Email":"a@b","name":"n","sl":{"x":1,"y":2}}"#;
    let objects = r#"{"sl":{"x":1,"y":2},"o":{"x":1,"y":2}}"#;
    let cases: &[(&[&str], &[&str], &str, &str)] = &[
        (&["Email", "name"], &["Email"], body, r#"{"name":"n"}"#),
        (
            &["sl.x", "name"],
            &["sl.*"],
            body,
            r#"{"name":"n","sl":{}}"#,
        ),
        (&["sl.*"], &["sl.x"], body, r#"{"sl":{"y":2}}"#),
        (&["name"], &["sl"], body, r#"{"name":"n"}"#),
        (&["name"], &["nowhere"], body, r#"{"name":"n"}"#),
        // A member only `remove` paths lead to is removed, not passed as an empty shell.
        (&["name"], &["sl.x"], body, r#"{"name":"n"}"#),
        (
            &["name"],
            &["sl.*"],
            r#"{"name":"n","sl":null}"#,
            r#"{"name":"n"}"#,
        ),
        (&["*.x"], &["o.x"], objects, r#"{"sl":{"x":1},"o":{}}"#),
        (&["*.x"], &["*.x"], objects, r#"{"sl":{},"o":{}}"#),
    ];
    for (allow, removes, body, want) in cases {
        assert_eq!(
            run(&spec(allow, removes), body),
            *want,
            "{allow:?} {removes:?}"
        );
    }
}

#[test]
fn paths_a_remove_makes_dead_are_errors() {
    let cases: &[(&[&str], &[&str], &str)] = &[
        (
            &["sl.x.y"],
            &["sl.x"],
            "can never match: `sl.x` removes `sl.x` whole",
        ),
        (
            &["sl.**"],
            &["sl.x"],
            "transform remove sits beneath `sl.**`",
        ),
        (&[], &["a[*]"], "remove applies to object members"),
        (&[], &["a.**"], "remove applies to object members"),
    ];
    for (allow, removes, want) in cases {
        let errors = FilterProgram::compile(&spec(allow, removes)).expect_err(want);
        assert!(
            errors.iter().any(|e| e.to_string().contains(want)),
            "{allow:?} {removes:?}: {errors:?}"
        );
    }
    let mut with_records = spec(&["r[*].name"], &["r"]);
    with_records.records = Some(path("r[*]"));
    with_records.subject = Some("id".into());
    assert!(FilterProgram::compile(&with_records).is_err());
}

#[test]
fn paths_ending_at_a_removed_member_are_warnings() {
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (
            &["x"],
            &["x"],
            &["x: never passes anything: `x` removes `x`"],
        ),
        (
            &["x.**"],
            &["x"],
            &["x.**: never passes anything: `x` removes `x`"],
        ),
        (
            &["other"],
            &["*"],
            &["other: never passes anything: `*` removes `other`"],
        ),
        (
            &["x.**", "y"],
            &["*"],
            &["x.**: never passes", "y: never passes"],
        ),
        (
            &["sl.x", "name"],
            &["sl.*"],
            &["sl.x: never passes anything: `sl.*`"],
        ),
    ];
    for (allow, removes, want) in cases {
        let program =
            FilterProgram::compile(&spec(allow, removes)).unwrap_or_else(|e| panic!("{e:?}"));
        let warnings: Vec<String> = program.warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings.len(),
            want.len(),
            "{allow:?} {removes:?}: {warnings:?}"
        );
        for want in *want {
            assert!(
                warnings.iter().any(|w| w.starts_with(want)),
                "{allow:?} {removes:?}: {warnings:?}"
            );
        }
    }
    let quiet = FilterProgram::compile(&spec(&["name", "sl.y"], &["sl.x"])).unwrap();
    assert!(quiet.warnings().is_empty(), "{:?}", quiet.warnings());
}

/// A path through `*` also matches the other members: one member that stops it (removed, or
/// holding a single value) is no mistake, while the `*` position itself being dead still is.
#[test]
fn a_wildcard_path_stopped_at_one_member_is_no_mistake() {
    let teams = r#"{"teams":{"alpha":{"name":"A","k":1},"internal":{"name":"I","k":2}}}"#;
    let counted = r#"{"teams":{"alpha":{"name":"A","k":1},"count":2}}"#;
    let nested = r#"{"x":{"a":{"y":{"z":1}},"b":{"y":{"z":2}}}}"#;
    let cases: &[(&[&str], &[&str], &str, &str)] = &[
        (
            &["teams.*.name"],
            &["teams.internal"],
            teams,
            r#"{"teams":{"alpha":{"name":"A"}}}"#,
        ),
        (
            &["teams.*.name", "teams.count"],
            &[],
            counted,
            r#"{"teams":{"alpha":{"name":"A"},"count":2}}"#,
        ),
        (
            &["x.*.y.z"],
            &["x.a.y"],
            nested,
            r#"{"x":{"a":{},"b":{"y":{"z":2}}}}"#,
        ),
    ];
    for (allow, removes, body, want) in cases {
        let spec = spec(allow, removes);
        let program = FilterProgram::compile(&spec).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(program.warnings().is_empty(), "{:?}", program.warnings());
        assert_eq!(run(&spec, body), *want, "{allow:?} {removes:?}");
    }
    // `*` removed whole: the path beneath it is dead, and reported once, at the `*`.
    let errors = FilterProgram::compile(&spec(&["*.e", "a"], &["*"])).unwrap_err();
    let dead: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(dead, ["*.e: can never match: `*` removes `*` whole"]);
    // An object and an array expected at one member stay a mistake, through `*` too.
    assert!(FilterProgram::compile(&spec(&["x.*.y", "x.a[*]"], &[])).is_err());
    assert!(FilterProgram::compile(&spec(&["x.*[*]", "x.a.y"], &[])).is_err());
}

/// Keys are matched exactly, but a member passed as it stands beside another spelling of it
/// that the policy transforms is worth a reviewer's look.
#[test]
fn a_case_variant_passed_beside_a_transformed_member_is_a_warning() {
    let mut with_transform = spec(&["meta.Card", "meta.city"], &[]);
    with_transform
        .transforms
        .push((path("meta.card"), Transform::Last4));
    let program = FilterProgram::compile(&with_transform).unwrap();
    let warnings: Vec<String> = program.warnings().iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("meta.Card: passes `Card`"),
        "{warnings:?}"
    );
    let quiet = FilterProgram::compile(&spec(&["meta.Card", "meta.card"], &[])).unwrap();
    assert!(quiet.warnings().is_empty(), "{:?}", quiet.warnings());
}
