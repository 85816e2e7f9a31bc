use super::*;

fn sc(list: &[&str]) -> Vec<Scope> {
    list.iter()
        .map(|s| Scope::parse(s).expect("test scope"))
        .collect()
}

fn names(scopes: &[Scope]) -> Vec<&str> {
    scopes.iter().map(Scope::as_str).collect()
}

#[test]
fn validate_customer_id_table() {
    let long = "x".repeat(MAX_ID_LEN + 1);
    let max = "x".repeat(MAX_ID_LEN);
    let cases: &[(&str, Result<(), InvalidCustomerId>)] = &[
        ("123", Ok(())),
        ("cust-42", Ok(())),
        ("ünïcödé", Ok(())),
        ("a b", Ok(())),
        (&max, Ok(())),
        ("", Err(InvalidCustomerId::Empty)),
        (&long, Err(InvalidCustomerId::TooLong)),
        ("a\nb", Err(InvalidCustomerId::ControlCharacter)),
        ("a\u{7f}", Err(InvalidCustomerId::ControlCharacter)),
        ("a\u{85}", Err(InvalidCustomerId::ControlCharacter)),
    ];
    for (id, want) in cases {
        assert_eq!(&validate_customer_id(id), want, "{id:?}");
    }
}

#[test]
fn insert_get_remove() {
    let mut set = OptOutSet::new();
    assert_eq!(set.get("1"), None);
    assert!(set.insert("1", &sc(&["partner_sharing"])).unwrap());
    assert!(
        !set.insert("1", &sc(&["partner_sharing"])).unwrap(),
        "no change"
    );
    assert!(set
        .insert(
            "1",
            &sc(&["partner:acme", "partner_sharing", "partner:acme"])
        )
        .unwrap());
    assert_eq!(
        names(&set.get("1").unwrap()),
        ["partner:acme", "partner_sharing"]
    );
    assert_eq!(set.len(), 1);
    assert_eq!(set.opt_out_count(), 2);

    // removing a scope the customer lacks (or one never interned) changes nothing
    assert_eq!(
        names(&set.remove("1", Some(&sc(&["research"]))).unwrap()),
        ["partner:acme", "partner_sharing"]
    );
    assert_eq!(
        names(&set.remove("1", Some(&sc(&["partner:acme"]))).unwrap()),
        ["partner_sharing"]
    );
    assert_eq!(set.opt_out_count(), 1);
    assert_eq!(set.remove("1", None).unwrap(), Vec::<Scope>::new());
    assert_eq!(set.get("1"), None);
    assert_eq!(set.remove("1", None), None, "nothing left to remove");
    assert!(set.is_empty());
    assert_eq!(set.opt_out_count(), 0);
}

#[test]
fn removing_the_last_scope_removes_the_customer() {
    let mut set = OptOutSet::new();
    set.insert("7", &sc(&["partner_sharing"])).unwrap();
    assert_eq!(
        set.remove("7", Some(&sc(&["partner_sharing"]))).unwrap(),
        Vec::<Scope>::new()
    );
    assert!(!set.contains("7"));
    assert_eq!(set.len(), 0);
}

#[test]
fn insert_rejects_bad_ids_and_ignores_empty_scopes() {
    let mut set = OptOutSet::new();
    assert!(matches!(
        set.insert("", &sc(&["partner_sharing"])),
        Err(OptOutError::InvalidId(InvalidCustomerId::Empty))
    ));
    assert!(!set.insert("1", &[]).unwrap());
    assert!(set.is_empty());
}

#[test]
fn lookups_by_honoured_scopes() {
    let mut set = OptOutSet::new();
    set.insert("123", &sc(&["partner_sharing"])).unwrap();
    set.insert("cust-9", &sc(&["partner:acme"])).unwrap();
    set.insert("both", &sc(&["partner:acme", "research"]))
        .unwrap();
    // (id, honoured, expected)
    let cases: &[(&str, &[&str], bool)] = &[
        ("123", &["partner_sharing"], true),
        ("123", &["partner_sharing", "partner:acme"], true),
        ("123", &["partner:acme"], false),
        ("123", &[], false),
        ("cust-9", &["partner_sharing", "partner:acme"], true),
        ("cust-9", &["partner_sharing", "partner:other"], false),
        ("both", &["research"], true),
        ("both", &["never_interned"], false),
        ("unknown", &["partner_sharing"], false),
        ("12", &["partner_sharing"], false),
        ("1234", &["partner_sharing"], false),
    ];
    for (id, honoured, want) in cases {
        let honoured = sc(honoured);
        assert_eq!(
            set.is_opted_out(id, &honoured),
            *want,
            "is_opted_out({id:?}, {honoured:?})"
        );
        let lookup = set.honouring(&honoured);
        assert_eq!(
            lookup.is_opted_out(id),
            *want,
            "honouring({honoured:?}).is_opted_out({id:?})"
        );
        let dynamic: &dyn OptOutLookup = &lookup;
        assert_eq!(dynamic.is_opted_out(id), *want);
    }
}

#[test]
fn more_than_64_scopes_still_match() {
    let mut set = OptOutSet::new();
    for i in 0..100 {
        set.insert(&format!("c{i}"), &[Scope::partner(&format!("p{i}"))])
            .unwrap();
    }
    set.insert("multi", &[Scope::partner("p3"), Scope::partner("p90")])
        .unwrap();
    for i in 0..100 {
        let honoured = [Scope::partner(&format!("p{i}"))];
        let lookup = set.honouring(&honoured);
        assert!(lookup.is_opted_out(&format!("c{i}")), "c{i}");
        assert!(
            !lookup.is_opted_out(&format!("c{}", (i + 1) % 100)),
            "c{} vs p{i}",
            i + 1
        );
        assert_eq!(
            lookup.is_opted_out("multi"),
            i == 3 || i == 90,
            "multi vs p{i}"
        );
        assert_eq!(set.is_opted_out("multi", &honoured), i == 3 || i == 90);
    }
    assert!(set
        .honouring(&[Scope::partner("p90"), Scope::partner("p91")])
        .is_opted_out("c91"));
}

#[test]
fn counts_by_scope_follow_every_change() {
    let mut set = OptOutSet::new();
    set.insert("a", &sc(&["partner_sharing", "partner:acme"]))
        .unwrap();
    set.insert("b", &sc(&["partner_sharing"])).unwrap();
    set.insert("b", &sc(&["partner_sharing"])).unwrap();
    let counts = |set: &OptOutSet| -> Vec<(String, u64)> {
        set.count_by_scope()
            .into_iter()
            .map(|(s, n)| (s.to_string(), n))
            .collect()
    };
    assert_eq!(
        counts(&set),
        [
            ("partner:acme".to_string(), 1),
            ("partner_sharing".to_string(), 2)
        ]
    );
    set.remove("a", None);
    assert_eq!(
        counts(&set),
        [
            ("partner:acme".to_string(), 0),
            ("partner_sharing".to_string(), 1)
        ]
    );
    set.remove("b", Some(&sc(&["partner_sharing"])));
    assert_eq!(
        counts(&set),
        [
            ("partner:acme".to_string(), 0),
            ("partner_sharing".to_string(), 0)
        ]
    );
    assert_eq!(set.opt_out_count(), 0);
}

#[test]
fn combinations_are_shared_and_recycled() {
    let mut set = OptOutSet::new();
    for i in 0..1000 {
        set.insert(&i.to_string(), &sc(&["partner_sharing", "partner:acme"]))
            .unwrap();
    }
    assert_eq!(set.combos.len(), 1, "one combination for 1000 customers");
    for i in 0..1000 {
        set.remove(&i.to_string(), Some(&sc(&["partner:acme"])));
    }
    set.insert("x", &sc(&["research"])).unwrap();
    assert!(
        set.combos.len() <= 3,
        "freed combinations are reused: {}",
        set.combos.len()
    );
    assert!(set.is_opted_out("999", &sc(&["partner_sharing"])));
    assert!(!set.is_opted_out("999", &sc(&["partner:acme"])));
}

#[test]
fn arena_compaction_keeps_every_id() {
    let mut set = OptOutSet::new();
    let scopes = sc(&["partner_sharing"]);
    let n = 40_000;
    for i in 0..n {
        set.insert(&format!("customer-{i:040}"), &scopes).unwrap();
    }
    for i in (0..n).filter(|i| i % 4 != 0) {
        set.remove(&format!("customer-{i:040}"), None);
    }
    assert!(
        set.arena.len() < n * 40,
        "arena was compacted: {} bytes",
        set.arena.len()
    );
    for i in 0..n {
        assert_eq!(
            set.contains(&format!("customer-{i:040}")),
            i % 4 == 0,
            "{i}"
        );
    }
    assert_eq!(set.len(), n / 4);
}

#[test]
fn iter_merge_and_eq() {
    let mut a = OptOutSet::new();
    a.insert("1", &sc(&["partner_sharing"])).unwrap();
    a.insert("2", &sc(&["partner:acme"])).unwrap();
    let mut b = OptOutSet::new();
    b.insert("2", &sc(&["research", "partner_sharing"]))
        .unwrap();
    b.insert("3", &sc(&["partner:acme"])).unwrap();
    a.merge(&b).unwrap();
    let mut got: Vec<(String, Vec<String>)> = a
        .iter()
        .map(|(id, s)| {
            (
                id.to_string(),
                s.sorted().into_iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("1".to_string(), vec!["partner_sharing".to_string()]),
            (
                "2".to_string(),
                vec![
                    "partner:acme".into(),
                    "partner_sharing".into(),
                    "research".into()
                ]
            ),
            ("3".to_string(), vec!["partner:acme".to_string()]),
        ]
    );
    let mut c = OptOutSet::new();
    c.insert("3", &sc(&["partner:acme"])).unwrap();
    c.insert("2", &sc(&["research", "partner:acme", "partner_sharing"]))
        .unwrap();
    c.insert("1", &sc(&["partner_sharing"])).unwrap();
    assert_eq!(a, c);
    c.remove("1", None);
    assert_ne!(a, c);
}

#[test]
fn slot_stays_small() {
    assert_eq!(std::mem::size_of::<Slot>(), 12);
}

#[test]
fn builder_matches_one_by_one_inserts() {
    let scopes = sc(&["partner_sharing", "partner:acme", "research"]);
    let ids = |i: usize| -> Vec<ScopeId> {
        match i % 4 {
            0 => vec![ScopeId(0)],
            1 => vec![ScopeId(2), ScopeId(0)],
            2 => vec![ScopeId(1), ScopeId(1)],
            _ => vec![ScopeId(0), ScopeId(1), ScopeId(2)],
        }
    };
    for n in [0usize, 1, 5, 14, 15, 1000, 100_000] {
        let mut builder = SetBuilder::new(&scopes, n, n * 8).unwrap();
        let mut one_by_one = OptOutSet::new();
        for s in &scopes {
            one_by_one.intern(s).unwrap();
        }
        for i in 0..n {
            let id = format!("{}", i * 7 + 3);
            builder.push(&id, &ids(i)).unwrap();
            one_by_one.insert_ids(&id, &ids(i)).unwrap();
        }
        let built = builder.finish().unwrap();
        assert_eq!(built, one_by_one, "n = {n}");
        assert_eq!(
            built.count_by_scope(),
            one_by_one.count_by_scope(),
            "n = {n}"
        );
        for i in 0..n.min(2000) {
            let id = format!("{}", i * 7 + 3);
            assert_eq!(
                built.is_opted_out(&id, &scopes[1..2]),
                matches!(i % 4, 2 | 3),
                "{id}"
            );
            assert!(!built.contains(&format!("{}", i * 7 + 4)));
        }
    }
}

#[test]
fn builder_refuses_duplicates_and_empty_scopes() {
    let scopes = sc(&["partner_sharing"]);
    let mut builder = SetBuilder::new(&scopes, 2, 2).unwrap();
    builder.push("1", &[ScopeId(0)]).unwrap();
    builder.push("1", &[ScopeId(0)]).unwrap();
    assert_eq!(builder.finish().unwrap_err(), OptOutError::Duplicate);
    let mut builder = SetBuilder::new(&scopes, 1, 1).unwrap();
    assert_eq!(builder.push("1", &[]).unwrap_err(), OptOutError::NoScopes);
    assert_eq!(
        builder.push("1", &[ScopeId(1)]).unwrap_err(),
        OptOutError::UnknownScopeId(1)
    );
    assert!(SetBuilder::new(&sc(&["a", "a"]), 0, 0).is_err());
}

/// These errors reach log lines (a damaged store, a change from the shared database the set
/// cannot hold), and a log line never names a customer: no error text quotes the id.
#[test]
fn errors_never_quote_the_customer_id() {
    let id = "c-SECRET-7\n";
    let invalid = validate_customer_id(id).unwrap_err();
    let mut set = OptOutSet::new();
    let refused = set.insert(id, &sc(&["partner_sharing"])).unwrap_err();
    let scopes = sc(&["partner_sharing"]);
    let mut builder = SetBuilder::new(&scopes, 2, 40).unwrap();
    builder.push("c-SECRET-8", &[ScopeId(0)]).unwrap();
    builder.push("c-SECRET-8", &[ScopeId(0)]).unwrap();
    let duplicate = builder.finish().unwrap_err();
    let mut builder = SetBuilder::new(&scopes, 1, 40).unwrap();
    let no_scopes = builder.push("c-SECRET-9", &[]).unwrap_err();
    for text in [
        invalid.to_string(),
        refused.to_string(),
        duplicate.to_string(),
        no_scopes.to_string(),
        crate::optout::codec::CodecError::Unwritable.to_string(),
    ] {
        assert!(!text.contains("SECRET"), "{text}");
    }
}

/// What the request path asks: `id::is_opted_out` (the id, its lowercase and its uppercase)
/// against one route's honoured scopes.
fn judged(set: &OptOutSet, id: &str, honoured: &[Scope]) -> bool {
    crate::optout::id::is_opted_out(&set.honouring(honoured), id)
}

#[test]
fn an_id_stored_in_mixed_case_is_found_for_every_case_of_it() {
    let sharing = sc(&["partner_sharing"]);
    let acme = sc(&["partner:acme"]);
    let mut set = OptOutSet::new();
    set.insert("Mixed-Case", &sharing).unwrap();
    set.insert("Ärger-7", &sharing).unwrap();
    for id in ["Mixed-Case", "mixed-case", "MIXED-CASE", "mIxEd-cAsE"] {
        assert!(judged(&set, id, &sharing), "{id}");
        assert!(set.is_opted_out(&id.to_lowercase(), &sharing), "{id}");
        assert!(!judged(&set, id, &acme), "{id}: another scope");
    }
    for id in ["ärger-7", "ÄRGER-7", "Ärger-7"] {
        assert!(judged(&set, id, &sharing), "{id}");
    }
    assert!(!judged(&set, "mixed-cases", &sharing));

    // Two spellings of one customer: each keeps its own scopes, a lookup sees both.
    set.insert("MIXED-case", &acme).unwrap();
    assert!(judged(&set, "mixed-case", &acme));
    assert!(judged(&set, "mixed-case", &sharing));
    assert_eq!(set.remove("Mixed-Case", None), Some(Vec::new()));
    assert!(
        !judged(&set, "mixed-case", &sharing),
        "its spelling is gone"
    );
    assert!(
        judged(&set, "Mixed-Case", &acme),
        "the other spelling stays"
    );
    assert_eq!(set.remove("MIXED-case", Some(&acme)), Some(Vec::new()));
    assert!(!judged(&set, "mixed-case", &acme));
    assert!(set.folded.get("mixed-case").is_none(), "{:?}", set.folded);

    // Beyond ASCII: sharp s, final sigma, dotless i, a mixed Greek id.
    for (stored, asked) in [
        ("straße", "STRASSE"),
        ("σασ", "ΣΑΣ"),
        ("ılık", "ILIK"),
        ("Σας-ΟΔΟΣ", "σασ-οδοσ"),
    ] {
        set.insert(stored, &sharing).unwrap();
        assert!(judged(&set, asked, &sharing), "{stored} asked as {asked}");
        assert!(judged(&set, stored, &sharing), "{stored}");
        set.remove(stored, None);
        assert!(!judged(&set, asked, &sharing), "{stored} removed");
    }
    // An id in one case is not indexed: the lowercase or uppercase probe reaches it.
    for one_case in ["cust-7", "CUST-7", "12345", "ärger"] {
        assert!(folded_keys(one_case).is_empty(), "{one_case}");
    }

    // A set built in bulk indexes the same way, and a merge carries the index over.
    let scopes = sc(&["partner_sharing"]);
    let mut builder = SetBuilder::new(&scopes, 2, 32).unwrap();
    builder.push("Bulk-Id", &[ScopeId(0)]).unwrap();
    builder.push("plain-id", &[ScopeId(0)]).unwrap();
    let built = builder.finish().unwrap();
    assert!(judged(&built, "BULK-ID", &sharing));
    assert!(judged(&built, "PLAIN-ID", &sharing));
    let mut merged = OptOutSet::new();
    merged.merge(&built).unwrap();
    assert!(judged(&merged, "bulk-id", &sharing));
    assert_eq!(
        merged.folded.len(),
        1,
        "only ids with uppercase letters are indexed"
    );
}

/// Every casing of a stored id, letter by letter, that an incoming id may take (it passes
/// `check_string_id`) is judged as that customer.
#[test]
fn every_casing_of_a_stored_id_is_found() {
    let sharing = sc(&["partner_sharing"]);
    let stored = [
        "ılık",
        "Ilık",
        "ıI",
        "straße",
        "STRAẞE",
        "Σας",
        "σας",
        "ΣΑΣ",
        "İstanbul",
        "ᾳx",
        "Ꭰꭰ",
        "ꭰ",
        "Აა",
        "ა",
        "Ǆ-x",
        "Åb",
        "Mixed-Case",
        "Kelvin",
        "ärger",
        "ÄRGER",
    ];
    let mut failures = Vec::new();
    for s in stored {
        if crate::optout::id::check_string_id(s).is_err() {
            continue;
        }
        let mut set = OptOutSet::new();
        set.insert(s, &sharing).unwrap();
        let mut casings = vec![String::new()];
        for ch in s.chars() {
            let mut options: Vec<String> = vec![
                ch.to_string(),
                ch.to_lowercase().collect(),
                ch.to_uppercase().collect(),
            ];
            options.sort();
            options.dedup();
            casings = casings
                .iter()
                .flat_map(|p| options.iter().map(move |o| format!("{p}{o}")))
                .collect();
        }
        for casing in casings {
            if crate::optout::id::check_string_id(&casing).is_ok()
                && !judged(&set, &casing, &sharing)
            {
                failures.push(format!("stored {s:?} asked as {casing:?}"));
            }
        }
        set.remove(s, None);
        assert!(set.folded.is_empty(), "{s}: {:?}", set.folded);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
