use super::*;

fn spec(allow: &[&str], transforms: &[(&str, Transform)]) -> FilterSpec {
    FilterSpec {
        removes: Vec::new(),
        allow: allow.iter().map(|p| FieldPath::parse(p).unwrap()).collect(),
        transforms: transforms
            .iter()
            .map(|(p, t)| (FieldPath::parse(p).unwrap(), *t))
            .collect(),
        records: None,
        subject: None,
    }
}

fn at(s: &FilterSpec, p: &str) -> Disclosure {
    disclosure(Some(s), &FieldPath::parse(p).unwrap())
}

#[test]
fn paths_are_read_semantically() {
    let s = spec(
        &["a.**", "b.*", "c[*].x", "d.e"],
        &[("b.secret", Transform::Mask), ("d.*", Transform::Null)],
    );
    assert_eq!(at(&s, "a.b"), Disclosure::Subtree);
    assert_eq!(at(&s, "a.b[*].c"), Disclosure::Subtree);
    assert_eq!(at(&s, "b.name"), Disclosure::Clear);
    assert_eq!(at(&s, "b.*"), Disclosure::Clear);
    assert_eq!(at(&s, "b.secret"), Disclosure::Transformed(Transform::Mask));
    assert_eq!(
        at(&s, "d.e"),
        Disclosure::Transformed(Transform::Null),
        "transform wins"
    );
    assert_eq!(at(&s, "c[*].y"), Disclosure::None);
    assert_eq!(at(&s, "c.**"), Disclosure::Partial(vec!["c[*].x".into()]));
    assert_eq!(at(&s, "x"), Disclosure::None);
    assert_eq!(
        disclosure(None, &FieldPath::parse("a").unwrap()),
        Disclosure::None
    );
}

#[test]
fn comparing_routes_finds_what_starts_stops_and_changes() {
    let old = spec(
        &["id", "addr.street", "addr.city"],
        &[("name", Transform::Mask)],
    );
    let new = spec(&["id", "addr.**", "name", "email"], &[]);
    let changes = compare(Some(&old), Some(&new));
    let summary: Vec<(String, &str, &str)> = changes
        .iter()
        .map(|c| (c.path.to_string(), c.old.name(), c.new.name()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("name".to_string(), "mask", "clear"),
            ("addr.**".to_string(), "partial", "subtree"),
            ("email".to_string(), "none", "clear"),
        ]
    );
    assert!(changes.iter().all(|c| c.old.more(&c.new)));
    let back = compare(Some(&new), Some(&old));
    assert!(back.iter().all(|c| !c.old.more(&c.new)), "{back:?}");
}

#[test]
fn a_wildcard_covers_named_members() {
    let old = spec(&["a.x"], &[]);
    let new = spec(&["a.*"], &[]);
    let changes = compare(Some(&old), Some(&new));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].path.to_string(), "a.*");
    assert_eq!(changes[0].old, Disclosure::None);
    assert!(compare(Some(&new), Some(&spec(&["a.*", "a.x"], &[]))).is_empty());
}

#[test]
fn last4_to_pseudonymize_counts_as_more() {
    let l = Disclosure::Transformed(Transform::Last4);
    let p = Disclosure::Transformed(Transform::Pseudonymize);
    assert!(l.more(&p) && p.more(&l));
    assert!(!Disclosure::Clear.more(&Disclosure::Transformed(Transform::Mask)));
}

#[test]
fn an_explicit_remove_wins_over_allow_in_what_is_sent() {
    let mut s = spec(
        &[
            "s[*].name",
            "s[*].address.street",
            "s[*].address.city",
            "o.**",
        ],
        &[("s[*].card", Transform::Last4)],
    );
    s.removes = ["s[*].name", "s[*].address.*", "s[*].card"]
        .iter()
        .map(|p| FieldPath::parse(p).unwrap())
        .collect();
    for gone in [
        "s[*].name",
        "s[*].address.street",
        "s[*].address.city",
        "s[*].card",
    ] {
        assert_eq!(at(&s, gone), Disclosure::None, "{gone}");
    }
    assert_eq!(at(&s, "s.**"), Disclosure::None);
    assert_eq!(at(&s, "o.x"), Disclosure::Subtree);

    // Taking the remove out makes the fields start being sent: `compare` says so both ways.
    let without = spec(
        &[
            "s[*].name",
            "s[*].address.street",
            "s[*].address.city",
            "o.**",
        ],
        &[("s[*].card", Transform::Last4)],
    );
    let more = compare(Some(&s), Some(&without));
    let paths: Vec<String> = more.iter().map(|c| c.path.to_string()).collect();
    assert_eq!(
        paths,
        [
            "s[*].name",
            "s[*].address.street",
            "s[*].address.city",
            "s[*].card"
        ],
        "{more:?}"
    );
    assert!(more.iter().all(|c| c.old.more(&c.new)), "{more:?}");
    let fewer = compare(Some(&without), Some(&s));
    assert_eq!(fewer.len(), 4, "{fewer:?}");
    assert!(fewer.iter().all(|c| !c.old.more(&c.new)), "{fewer:?}");
}

fn with_removes(mut s: FilterSpec, removes: &[&str]) -> FilterSpec {
    s.removes = removes
        .iter()
        .map(|p| FieldPath::parse(p).unwrap())
        .collect();
    s
}

fn summary(changes: &[FieldChange]) -> Vec<(String, &'static str, &'static str, bool)> {
    changes
        .iter()
        .map(|c| {
            (
                c.path.to_string(),
                c.old.name(),
                c.new.name(),
                c.old.more(&c.new),
            )
        })
        .collect()
}

#[test]
fn taking_out_a_remove_beside_a_wildcard_is_a_change() {
    let allowed = spec(&["card.*"], &[("card.number", Transform::Last4)]);
    let guarded = with_removes(allowed.clone(), &["card.cvc"]);
    assert_eq!(
        summary(&compare(Some(&guarded), Some(&allowed))),
        vec![("card.cvc".to_string(), "none", "clear", true)]
    );
    assert_eq!(
        summary(&compare(Some(&allowed), Some(&guarded))),
        vec![("card.cvc".to_string(), "clear", "none", false)]
    );
    // A removed object whose members a `*` above it allows: no written path but the remove's
    // own subtree names what changes.
    let members = spec(&["card.*.x"], &[]);
    let whole = with_removes(members.clone(), &["card.billing"]);
    let changes = compare(Some(&whole), Some(&members));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].path.to_string(), "card.billing.**");
    assert!(changes[0].old.more(&changes[0].new), "{changes:?}");
    // An unchanged `remove` is no change.
    assert!(compare(Some(&whole), Some(&whole)).is_empty());
}
