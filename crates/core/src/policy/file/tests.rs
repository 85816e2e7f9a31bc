use super::*;

fn partner_err(text: &str) -> YamlError {
    parse_partner(text).expect_err(text)
}

const HEAD: &str = "kind: contractor\npurpose: shipping\nupstream: http://127.0.0.1:9001\n";

#[test]
fn wire_errors_are_one_line_with_the_field_named() {
    let cases: &[(&str, u64, &str)] = &[
        ("routes:\n  - path: /a\n    alow: [a]\n", 6, "unknown field `alow`, expected one of path, methods, records, subject, allow, transform, query, headers, json_types, response_headers, decode, categories, stream"),
        ("routes:\n  - path: /a\n    allow: [a]\n    allow: [b]\n", 7, "duplicate key `allow`"),
        ("routes: []\nroutes: []\n", 5, "duplicate key `routes`"),
        ("routes:\n  - path: /a\n    transform:\n      a: mask\n      a: last4\n", 8, "duplicate key `a`"),
        ("routes:\n  - path: /a\n    methods: GET\n", 6, "invalid value for `methods`: expected a list, found `GET`"),
        ("routes:\n  - path: [x]\n", 5, "invalid value for `path`: expected a string (found a list)"),
        ("routes:\n  - path: /a\n    allow: [a, {b: c}]\n", 6, "invalid value: expected a string (found a mapping)"),
        ("routes: []\nupstream_auth: {header: authorization, env: [x]}\n", 5, "invalid value for `env`: expected a string (found a list)"),
        ("routes: []\nupstream_auth: {header: authorization}\n", 5, "missing field `env`"),
        // A credential written where a mapping or a variable name belongs is never quoted.
        ("routes: []\nupstream_auth: Bearer sk_live_S3CRET\n", 5, "invalid value for `upstream_auth`: expected a mapping (the value is not shown: it may be a secret)"),
        ("routes: 'x\n", 4, "invalid YAML: unclosed quote"),
        ("routes:\n  - path: /a\n    methods: [POST]]\n", 6, "invalid YAML: misplaced bracket"),
        ("routes:\n  - path: /a\n    methods: [POST\nallowed_callers: []\n", 7, "invalid YAML: illegal placement of ':' indicator (is the `[` on line 6 closed?)"),
        ("routes:\n  - path: /a\n     methods: [POST]\n", 6, "invalid YAML: mapping values are not allowed in this context"),
        // A tab is reported on its own line, not on the value before it.
        ("routes:\n  - path: /a\n    allow:\n      - a\n\t- b\n", 8, "invalid YAML: while scanning a plain scalar, found a tab"),
    ];
    for (tail, line, message) in cases {
        let text = format!("{HEAD}{tail}");
        let err = partner_err(&text);
        assert_eq!(
            (err.line, err.message.as_str()),
            (*line, *message),
            "{text}"
        );
    }
}

#[test]
fn gateway_type_errors_quote_the_value() {
    let err = parse_gateway("limits: {max_body_bytes: -3}\n").unwrap_err();
    assert_eq!(err.line, 1);
    assert_eq!(
        err.message,
        "invalid value for `max_body_bytes`: expected a whole number of at least 0, found `-3`"
    );
    let err = parse_gateway("callers:\n  allow_unauthenticated: yes\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert_eq!(
        err.message,
        "invalid value for `allow_unauthenticated`: expected true or false, found `yes`"
    );
    let err = parse_gateway("listen: 127.0.0.1:8080\nlisten: 127.0.0.1:8081\n").unwrap_err();
    assert_eq!(
        (err.line, err.message.as_str()),
        (2, "duplicate key `listen`")
    );
}

#[test]
fn star_paths_in_flow_lists_get_a_hint() {
    let text = format!("{HEAD}routes:\n  - path: /a\n    allow: [contacts[*].name]\n");
    let err = partner_err(&text);
    assert_eq!(err.line, 6);
    assert!(
        err.message.ends_with(
            "(inside `[...]`, quote paths that use `[*]`, or write one per line as `- a[*].b`)"
        ),
        "{}",
        err.message
    );
    let quoted =
        format!("{HEAD}routes:\n  - path: /a\n    allow: [\"contacts[*].name\", '[*].x']\n");
    let file = parse_partner(&quoted).unwrap();
    let allow = &file.routes.value[0].value.allow.as_ref().unwrap().value;
    assert_eq!(allow[0].value, "contacts[*].name");
    assert_eq!(allow[1].value, "[*].x");
}

#[test]
fn empty_file_says_so() {
    for text in ["", "\n", "# nothing yet\n"] {
        let err = parse_partner(text).unwrap_err();
        assert_eq!(
            (err.line, err.message.as_str()),
            (1, "the file is empty (expected a mapping of settings)")
        );
    }
}

#[test]
fn unquoted_null_transform_survives_parsing_as_none() {
    let text = format!("{HEAD}routes:\n  - path: /a\n    transform:\n      a: null\n      b: \"null\"\n      c: ~\n");
    let file = parse_partner(&text).unwrap();
    let route = &file.routes.value[0].value;
    let entries = &route.transform.as_ref().unwrap().value.0;
    let got: Vec<(&str, Option<&str>, u64)> = entries
        .iter()
        .map(|(k, v)| (k.value.as_str(), v.value.as_deref(), v.referenced.line()))
        .collect();
    assert_eq!(
        got,
        vec![("a", None, 7), ("b", Some("null"), 8), ("c", None, 9)]
    );
}

#[test]
fn lines_are_recorded() {
    let text = format!("{HEAD}routes:\n  - path: /a\n    methods: [POST]\n  - path: /b\n");
    let file = parse_partner(&text).unwrap();
    assert_eq!(file.upstream.referenced.line(), 3);
    assert_eq!(file.routes.value[0].referenced.line(), 5);
    assert_eq!(file.routes.value[1].value.path.referenced.line(), 7);
    let methods = file.routes.value[0].value.methods.as_ref().unwrap();
    assert_eq!(methods.value[0].referenced.line(), 6);
}

#[test]
fn every_wrong_key_of_a_file_is_reported() {
    let text = format!(
        "{HEAD}purpose: again\nroutes:\n  - path: /a\n    methods: GET\n    alow: [a]\n    query: {{x: 1}}\nallowed_callers: 7\n"
    );
    let (errors, rest) = all_errors::<PartnerFile>(&text, partner_err(&text));
    let got: Vec<(u64, &str)> = errors
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert_eq!(got.len(), 5, "{got:#?}");
    assert_eq!(got[0], (4, "duplicate key `purpose`"));
    assert!(
        got[1].1.starts_with("invalid value for `methods`"),
        "{got:#?}"
    );
    assert!(got[2].1.starts_with("unknown field `alow`"), "{got:#?}");
    assert!(
        got[3].1.starts_with("invalid value for `query`"),
        "{got:#?}"
    );
    assert!(
        got[4].1.starts_with("invalid value for `allowed_callers`"),
        "{got:#?}"
    );
    // Checked without settings it has, the file would say more than is true: no parse back.
    assert!(rest.is_none());

    // A required key of the wrong type is not reported again as missing.
    let text = "kind: contractor\npurpose: [x]\nupstream: http://127.0.0.1:9001\nroutes: []\n";
    let (errors, _) = all_errors::<PartnerFile>(text, partner_err(text));
    assert_eq!(errors.len(), 1, "{errors:?}");

    // Unknown keys only: the rest comes back to be checked.
    let text = format!("{HEAD}routes: []\nfoo: 1\nbar: 2\n");
    let (errors, rest) = all_errors::<PartnerFile>(&text, partner_err(&text));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(rest.is_some());
}

/// Every error `check` lists for a partner file ending in `tail`, as `LINE: message`.
fn listed(tail: &str) -> Vec<String> {
    let text = format!("{HEAD}{tail}");
    let (errors, _) = all_errors::<PartnerFile>(&text, partner_err(&text));
    errors
        .iter()
        .map(|e| format!("{}: {}", e.line, e.message))
        .collect()
}

#[test]
fn only_blocks_that_can_go_are_cut_when_listing_errors() {
    // A block sequence at its key's indent is the key's value: cut with it.
    let got = listed("routes: []\nallowed_callers: [a]\nallowed_callers:\n- x\nfoo: 1\n");
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].starts_with("6: duplicate key"), "{got:#?}");
    assert!(got[1].starts_with("8: unknown field `foo`"), "{got:#?}");
    // A key inside a flow mapping over several lines, or one holding an anchor: not cut, and
    // the listing stops rather than report what the cut would break.
    let got =
        listed("routes: []\nupstream_auth: { header: authorization,\n  header: x, env: A }\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    let got = listed("routes:\n  - path: /a\n    methods: [GET]\n    methods: &m [POST]\n  - path: /b\n    methods: *m\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    // An entry of a flow mapping on one line is cut out of it, and the listing goes on.
    let got = listed(
        "routes: []\nupstream_auth: { hedaer: x, header: authorization, env: A }\nlegal_basis_headr: x\n",
    );
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].starts_with("5: unknown field `hedaer`"), "{got:#?}");
    assert!(
        got[1].starts_with("6: unknown field `legal_basis_headr`"),
        "{got:#?}"
    );
    // A line with quotes is read the way only a YAML parser reads it: the listing ends there.
    let got = listed(
        "routes: []\nupstream_auth: {header: authorization, env: A, \"typo\": '{,}'}\nfoo: 1\n",
    );
    assert_eq!(got.len(), 1, "{got:#?}");
    // So does a key on a line of a flow collection written over several lines.
    let got = listed("routes: []\nupstream_auth: {\n  typo: 1, header: x,\n  env: A }\nfoo: 1\n");
    assert_eq!(got.len(), 1, "{got:#?}");
}

#[test]
fn a_flow_entry_is_cut_with_its_comma() {
    let cut = |line: &str, key: &str| super::without_flow_entry(line, key, None);
    assert_eq!(
        cut("a: { x: 1, y: 2 }", "x").as_deref(),
        Some("a: { y: 2 }")
    );
    assert_eq!(cut("a: { x: 1, y: 2 }", "y").as_deref(), Some("a: { x: 1}"));
    assert_eq!(cut("a: {y: [1, 2]}", "y").as_deref(), Some("a: {}"));
    // Quotes, tags, anchors and aliases: nothing is cut.
    assert_eq!(cut("a: { x: 'y: 1', y: 2 }", "y"), None);
    assert_eq!(cut("a: { x: it's, y: 2 }", "y"), None);
    assert_eq!(cut("a: { x: !!str b, y: 2 }", "y"), None);
    assert_eq!(cut("a: { y: &h v, x: *h }", "y"), None);
    assert_eq!(cut("a: &l { x: 1, y: 2 }", "y"), None);
    assert_eq!(
        cut("a: { x: 1, y: 2 } # it's", "y").as_deref(),
        Some("a: { x: 1} # it's")
    );
    assert_eq!(
        cut("a: { x: { y: 1 }, z: 2 }", "y").as_deref(),
        Some("a: { x: {}, z: 2 }")
    );
    assert_eq!(cut("a: [y, { y: 1 }]", "y").as_deref(), Some("a: [y, {}]"));
    // Not on this line, or brackets that close on another line: nothing to cut.
    assert_eq!(cut("a: { x: 1, yy: 2 }", "y"), None);
    assert_eq!(cut("a: { x: 1,", "x"), None);
    assert_eq!(cut("y: 1", "y"), None);
    assert_eq!(cut("a: { x: 1 } # { y: 2 }", "y"), None);
    // The entries of a mapping on one line inside a collection over several lines.
    assert_eq!(
        cut("  - { path: /a, y: [GET] },", "y").as_deref(),
        Some("  - { path: /a},")
    );
    // Where the parser points picks the entry among those of that name.
    let at = |line: &str, key: &str, col: usize| super::without_flow_entry(line, key, Some(col));
    let line = "callers: { a: 1, callers: 1 }";
    assert_eq!(at(line, "callers", 17).as_deref(), Some("callers: { a: 1}"));
    let line = "- { y: 1, t: { y: 2 } }";
    assert_eq!(at(line, "y", 14).as_deref(), Some("- { y: 1, t: {} }"));
    assert_eq!(at(line, "y", 4).as_deref(), Some("- { t: { y: 2 } }"));
    assert_eq!(at(line, "y", 9), None);
    // Nested entries of one name: the inner one the parser points at.
    let line = "o: { p: { p: 1, u: x } }";
    assert_eq!(at(line, "p", 10).as_deref(), Some("o: { p: { u: x } }"));
}

#[test]
fn a_key_named_like_its_line_is_never_taken_for_it() {
    // The parser points inside the line: its own key stays, the listing ends.
    let got =
        listed("routes: []\nupstream_auth: { header: \"x\", env: A, upstream_auth: 1 }\nfoo: 1\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("5: unknown field `upstream_auth`"),
        "{got:#?}"
    );
    // Comments at the start of a line or after a tab are comments.
    let got =
        listed("routes: []\nupstream_auth: {\n# c\n  typo: 1, header: x,\n  env: A }\nfoo: 1\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    let got =
        listed("routes: []\nupstream_auth: { header: x, typo: 3\t# }\n  , env: A }\nfoo: 1\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with("5: unknown field `typo`"), "{got:#?}");
}

#[test]
fn listing_errors_never_invents_one() {
    let only = |tail: &str, first: &str| {
        let got = listed(tail);
        assert!(got[0].starts_with(first), "{tail}: {got:#?}");
        assert_eq!(got.len(), 1, "{tail}: {got:#?}");
    };
    only(
        "routes: []\nupstream_auth: { typo: &h authorization, header: *h, env: A }\n",
        "5: unknown field `typo`",
    );
    only(
        "routes: []\nupstream_auth: { header: x, typo: it's, env: A, prefix: Bearer's }\n",
        "5: unknown field `typo`",
    );
    // The same unknown key twice, and a nested key named like the one that starts the line.
    let got =
        listed("routes: []\nupstream_auth: { typo: 3, typo: 4, header: x, env: A }\nfoo: 1\n");
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[2].starts_with("6: unknown field `foo`"), "{got:#?}");
    let got = listed("routes: [\n  { path: /v1/x, methods: [POST], alow: [a], transform: { alow: mask } },\n  { path: /v1/y, mthods: [GET] } ]\nfoo: 1\n");
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[0].starts_with("5: unknown field `alow`"), "{got:#?}");
    assert!(got[1].starts_with("6: unknown field `mthods`"), "{got:#?}");
    assert!(got[2].starts_with("7: unknown field `foo`"), "{got:#?}");
}

#[test]
fn every_missing_top_level_key_is_named_at_once() {
    let text = "kind: contractor\nroutes: []\n";
    let (errors, rest) = all_errors::<PartnerFile>(text, partner_err(text));
    let got: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.line, e.message))
        .collect();
    assert_eq!(
        got,
        ["2: missing field `purpose`", "2: missing field `upstream`"],
        "{got:#?}"
    );
    assert!(rest.is_none());

    // A key missing in a nested mapping is the only one named: the top level is complete.
    let text = format!("{HEAD}routes: []\nupstream_auth: {{header: authorization}}\n");
    let (errors, _) = all_errors::<PartnerFile>(&text, partner_err(&text));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.starts_with("missing field `env`"));
}
