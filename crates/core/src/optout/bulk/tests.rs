use super::*;

fn entries(set: &OptOutSet) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<(String, Vec<String>)> = set
        .iter()
        .map(|(id, scopes)| {
            (
                id.to_string(),
                scopes.sorted().into_iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect();
    v.sort();
    v
}

fn e(id: &str, scopes: &[&str]) -> (String, Vec<String>) {
    (
        id.to_string(),
        scopes.iter().map(|s| s.to_string()).collect(),
    )
}

fn errors(result: Result<OptOutSet, BulkErrors>) -> Vec<String> {
    match result {
        Ok(set) => panic!("expected errors, parsed {set:?}"),
        Err(errs) => errs.errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn detect_format() {
    let cases: &[(&str, &[u8], Format)] = &[
        ("optouts.csv", b"{", Format::Csv),
        ("OPTOUTS.CSV", b"", Format::Csv),
        ("optouts.ndjson", b"customer_id,scope", Format::Ndjson),
        ("optouts.jsonl", b"", Format::Ndjson),
        ("optouts.json", b"", Format::Ndjson),
        ("-", b"  \n{\"customer_id\": 1}", Format::Ndjson),
        ("-", b"\xEF\xBB\xBF{", Format::Ndjson),
        ("data.txt", b"customer_id,scope\n", Format::Csv),
        ("data", b"", Format::Csv),
    ];
    for (name, content, want) in cases {
        assert_eq!(
            Format::detect(name, content),
            *want,
            "{name} {:?}",
            String::from_utf8_lossy(content)
        );
    }
    assert_eq!(Format::from_name("ndjson"), Ok(Format::Ndjson));
    assert_eq!(Format::from_name("csv"), Ok(Format::Csv));
    assert!(Format::from_name("xml").is_err());
}

#[test]
fn csv_valid() {
    let input = "customer_id,scope\r\n\
                 123,partner_sharing\r\n\
                 123,partner:acme-ship\r\n\
                 \"12,3\",partner_sharing\n\
                 \"say \"\"hi\"\"\",research\n\
                 123,partner_sharing\n\
                 \n";
    let set = parse(input.as_bytes(), Format::Csv).unwrap();
    assert_eq!(
        entries(&set),
        [
            e("12,3", &["partner_sharing"]),
            e("123", &["partner:acme-ship", "partner_sharing"]),
            e("say \"hi\"", &["research"]),
        ]
    );
    assert_eq!(set.opt_out_count(), 4);
}

#[test]
fn csv_with_bom_and_only_a_header() {
    let set = parse(b"\xEF\xBB\xBFcustomer_id,scope\n", Format::Csv).unwrap();
    assert!(set.is_empty());
}

#[test]
fn csv_errors_carry_line_numbers() {
    let input = "customer_id,scope\n\
                 1,partner_sharing\n\
                 2,partner sharing\n\
                 ,partner_sharing\n\
                 \"multi\nline\",partner_sharing\n\
                 4,partner_sharing,extra\n\
                 5\n\
                 6,partner_sharing\n";
    assert_eq!(
        errors(parse(input.as_bytes(), Format::Csv)),
        [
            "3: invalid opt-out scope \"partner sharing\" (expected partner_sharing, partner:<id>, or a name of letters, digits, `_`, `-`, `.`, `:` that starts with a letter or digit and does not end in `:`)",
            "4: invalid customer_id: customer id is empty",
            "5: invalid customer_id: customer id contains a control character",
            "7: expected 2 fields (customer_id,scope), found 3",
            "8: expected 2 fields (customer_id,scope), found 1",
        ]
    );
}

#[test]
fn csv_header_must_be_exact() {
    let cases: &[(&str, &str)] = &[
        (
            "id,scope\n1,partner_sharing\n",
            "1: expected the header row customer_id,scope, found \"id,scope\"",
        ),
        (
            "customer_id,scope,x\n",
            "1: expected the header row customer_id,scope, found \"customer_id,scope,x\"",
        ),
        (
            "1,partner_sharing\n",
            "1: expected the header row customer_id,scope, found \"1,partner_sharing\"",
        ),
        (
            "",
            "1: empty file: expected the header row customer_id,scope",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            errors(parse(input.as_bytes(), Format::Csv)),
            [*want],
            "{input:?}"
        );
    }
}

#[test]
fn ndjson_valid() {
    let input = br#"{"customer_id": "123", "scopes": ["partner_sharing"]}
{"customer_id": 123, "scopes": ["partner:acme"]}

{"scopes": ["research"], "customer_id": "c\u0041t"}
{"customer_id": -7, "scopes": ["partner_sharing", "partner_sharing"]}
{"customer_id": 0, "scopes": ["partner_sharing"]}
{"customer_id": 9007199254740991, "scopes": ["partner_sharing"]}
"#;
    let set = parse(input, Format::Ndjson).unwrap();
    assert_eq!(
        entries(&set),
        [
            e("-7", &["partner_sharing"]),
            e("0", &["partner_sharing"]),
            e("123", &["partner:acme", "partner_sharing"]),
            e("9007199254740991", &["partner_sharing"]),
            e("cAt", &["research"]),
        ]
    );
}

#[test]
fn ndjson_empty_file_is_nothing_to_import() {
    assert!(parse(b"", Format::Ndjson).unwrap().is_empty());
    assert!(parse(b"\n \n", Format::Ndjson).unwrap().is_empty());
}

#[test]
fn ndjson_errors_carry_line_numbers() {
    let input = br#"{"customer_id": "1", "scopes": ["partner_sharing"]}
{"customer_id": 1.5, "scopes": ["partner_sharing"]}
{"customer_id": 1e2, "scopes": ["partner_sharing"]}
{"customer_id": true, "scopes": ["partner_sharing"]}
{"customer_id": null, "scopes": ["partner_sharing"]}
{"customer_id": "", "scopes": ["partner_sharing"]}
{"customer_id": "2", "scopes": []}
{"customer_id": "3", "scopes": ["BAD!"]}
{"customer_id": "4", "scopes": ["partner_sharing"], "note": "x"}
{"customer_id": "5", "customer_id": "6", "scopes": ["partner_sharing"]}
{"customer_id": "7"}
[1, 2]
{"customer_id": "8", "scopes": "partner_sharing"}
not json
{"customer_id": "a\u0000b", "scopes": ["partner_sharing"]}
"#;
    assert_eq!(
        errors(parse(input, Format::Ndjson)),
        [
            "2: customer_id must be a string or an integer, found 1.5",
            "3: customer_id must be a string or an integer, found 1e2",
            "4: customer_id must be a string or an integer, found true",
            "5: customer_id must be a string or an integer, found null",
            "6: invalid customer_id: customer id is empty",
            "7: scopes is empty: list at least one scope",
            "8: invalid opt-out scope \"BAD!\" (expected partner_sharing, partner:<id>, or a name of letters, digits, `_`, `-`, `.`, `:` that starts with a letter or digit and does not end in `:`)",
            "9: unknown field `note`, expected `customer_id` or `scopes` (column 58)",
            "10: duplicate field `customer_id` (column 34)",
            "11: missing field `scopes` (column 20)",
            "12: expected an object {\"customer_id\": .., \"scopes\": [..]}",
            "13: invalid type: string \"partner_sharing\", expected a sequence (column 48)",
            "14: expected an object {\"customer_id\": .., \"scopes\": [..]}",
            "15: invalid customer_id: customer id contains a control character",
        ]
    );
}

#[test]
fn errors_are_capped_and_counted() {
    let mut input = String::from("customer_id,scope\n");
    for _ in 0..(MAX_ERRORS + 5) {
        input.push_str(",partner_sharing\n");
    }
    let errs = parse(input.as_bytes(), Format::Csv).unwrap_err();
    assert_eq!(errs.errors.len(), MAX_ERRORS);
    assert_eq!(errs.omitted, 5);
    assert_eq!(errs.total(), MAX_ERRORS as u64 + 5);
    assert!(errs.to_string().ends_with("\n... and 5 more errors"));
    assert!(errs.to_string().starts_with("2: invalid customer_id"));
}

#[test]
fn exports_parse_back() {
    let mut set = OptOutSet::new();
    let s = |n: &str| Scope::parse(n).unwrap();
    set.insert("123", &[s("partner_sharing"), s("partner:acme")])
        .unwrap();
    set.insert("with,comma", &[s("research")]).unwrap();
    set.insert("quote\"d", &[s("partner_sharing")]).unwrap();
    set.insert("in side", &[s("partner_sharing")]).unwrap();
    set.insert("back\\slash/ü", &[s("partner_sharing")])
        .unwrap();
    for format in [Format::Csv, Format::Ndjson] {
        let mut out = export_header(format).to_vec();
        for (id, scopes) in set.iter() {
            export_record(format, id, scopes.sorted(), &mut out);
        }
        let back = parse(&out, format)
            .unwrap_or_else(|e| panic!("{format:?}: {e}\n{}", String::from_utf8_lossy(&out)));
        assert_eq!(back, set, "{format:?}");
    }
}

#[test]
fn export_shapes() {
    let scopes = [
        Scope::parse("partner:acme").unwrap(),
        Scope::parse("partner_sharing").unwrap(),
    ];
    let mut out = Vec::new();
    export_record(Format::Ndjson, "a\"b", &scopes, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"customer_id\":\"a\\\"b\",\"scopes\":[\"partner:acme\",\"partner_sharing\"]}\n"
    );
    let mut out = export_header(Format::Csv).to_vec();
    export_record(Format::Csv, "1,2", &scopes, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "customer_id,scope\n\"1,2\",partner:acme\n\"1,2\",partner_sharing\n"
    );
}

#[test]
fn ids_and_scopes_no_request_could_match_are_refused() {
    let csv = b"customer_id,scope\n n-5 ,partner_sharing\n0456,partner_sharing\nc-1\xe2\x80\x8b,partner_sharing\nq-6,Partner_Sharing\nok-1,partner_sharing\n";
    let errors = parse(csv, Format::Csv).unwrap_err().to_string();
    for line in ["2:", "3:", "4:", "5:"] {
        assert!(errors.contains(line), "{line} in {errors}");
    }
    assert!(!errors.contains("6:"), "{errors}");
}

#[test]
fn csv_errors_name_the_line_blank_lines_and_quoted_newlines_included() {
    let csv = b"customer_id,scope\n\n\nbad-1,bad scope\n";
    let errors = parse(csv, Format::Csv).unwrap_err().to_string();
    assert!(errors.starts_with("4:"), "{errors}");
    let csv = b"customer_id,scope\r\n\"multi\r\nline\",partner_sharing\r\nbad-2,bad scope\r\n";
    let errors = parse(csv, Format::Csv).unwrap_err().to_string();
    assert!(errors.contains("2:") && errors.contains("4:"), "{errors}");
    let errors = parse(b"customer_id,scope,extra\n", Format::Csv)
        .unwrap_err()
        .to_string();
    assert!(errors.contains("customer_id,scope,extra"), "{errors}");
}

#[test]
fn csv_lines_ending_in_a_lone_cr_are_counted() {
    let errors = parse(
        b"customer_id,scope\rok-1,partner_sharing\rbad-1,bad scope\r",
        Format::Csv,
    )
    .unwrap_err()
    .to_string();
    assert!(errors.starts_with("3:"), "{errors}");
}

#[test]
fn csv_text_after_a_closing_quote_is_refused_not_glued_on() {
    let csv = b"customer_id,scope\nb-23,\"partner_sharing\"x\n\"b-32\"x,partner_sharing\n\"ok-1\",\"partner_sharing\"\r\n\"q\"\"2\",partner_sharing\n\"b-4\" ,partner_sharing\n";
    let errors = parse(csv, Format::Csv).unwrap_err().to_string();
    for line in ["2:", "3:", "6:"] {
        assert!(errors.contains(line), "{line} in {errors}");
    }
    assert!(errors.contains("after its closing quote"), "{errors}");
    assert!(!errors.contains("4:") && !errors.contains("5:"), "{errors}");
    // After CRLF line ends and blank lines alike; and a valid quoted field with `,"` in it
    // passes there too.
    for csv in [
        &b"customer_id,scope\r\n\"ok\",partner_sharing\r\n\"b-32\"x,partner_sharing\r\n"[..],
        b"customer_id,scope\n\n\"b-32\"x,partner_sharing\n",
        b"customer_id,scope\r\n\r\n\"b-32\"x,partner_sharing\r\n",
    ] {
        let errors = parse(csv, Format::Csv).unwrap_err().to_string();
        assert!(errors.contains("after its closing quote"), "{errors}");
    }
    let set = parse(
        b"customer_id,scope\r\n\"a,\"\"b\",partner_sharing\r\n\r\n\"c\",\"partner_sharing\"\r\n",
        Format::Csv,
    )
    .unwrap();
    assert_eq!(
        entries(&set),
        [
            e("a,\"b", &["partner_sharing"]),
            e("c", &["partner_sharing"])
        ]
    );
    // A header with it is refused the same way.
    let errors = parse(b"\"customer_id\"x,scope\n", Format::Csv)
        .unwrap_err()
        .to_string();
    assert!(errors.contains("1: a quoted field"), "{errors}");
}

#[test]
fn ndjson_integers_beyond_what_json_readers_keep_are_refused() {
    let nd = b"{\"customer_id\":9007199254740991,\"scopes\":[\"partner_sharing\"]}\n{\"customer_id\":9007199254740995,\"scopes\":[\"partner_sharing\"]}\n{\"customer_id\":-123456789012345678901234567890,\"scopes\":[\"partner_sharing\"]}\n{\"customer_id\":\"9007199254740995\",\"scopes\":[\"partner_sharing\"]}\n";
    let errors = parse(nd, Format::Ndjson).unwrap_err().to_string();
    assert!(errors.contains("2:") && errors.contains("3:"), "{errors}");
    assert!(!errors.contains("1:") && !errors.contains("4:"), "{errors}");
}
