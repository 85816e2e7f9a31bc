//! `stream:` on routes: the one valid value, and every setting a streaming route cannot have,
//! each reported at its own line.
use super::*;

const GATEWAY: &str = "\
optouts: { path: data/optouts }
callers:
  allow_unauthenticated: true
signing: { disabled: true }
";

/// A business partner (honours opt-outs) with one streaming route; `{extra}` goes at line 9.
fn partner(extra: &str) -> String {
    format!(
        "kind: business_partner\npurpose: marketing\nupstream: http://127.0.0.1:9001\nallowed_callers: [marketing]\nroutes:\n  - path: /v1/contacts\n    methods: [POST]\n    stream: ndjson\n{extra}"
    )
}

fn check(text: &str) -> Result<Policy, Vec<String>> {
    load(&source(GATEWAY, &[("p.yaml", text)]), None)
        .map(|l| l.policy)
        .map_err(|d| d.iter().map(ToString::to_string).collect())
}

#[test]
fn a_streaming_route_loads_with_subject_and_implied_records() {
    let policy = check(&partner(
        "    subject: customer_id\n    allow: [customer_id, city]\n",
    ))
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let route = &policy.partners["p"].routes[0];
    assert_eq!(route.stream, Some(crate::policy::StreamFormat::Ndjson));
    let program = route.filter.as_ref().unwrap();
    assert!(program.single_record() && program.has_subjects());
}

#[test]
fn records_dollar_on_a_streaming_route_says_what_is_implied() {
    let policy = check(&partner(
        "    records: $\n    subject: customer_id\n    allow: [customer_id, city]\n",
    ))
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let route = &policy.partners["p"].routes[0];
    let program = route.filter.as_ref().unwrap();
    assert!(program.single_record() && program.has_subjects());
}

#[test]
fn invalid_stream_settings_name_their_line() {
    let f = "policy/partners/p.yaml";
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            partner("    subject: customer_id\n    allow: [customer_id]\n").replace("ndjson", "csv"),
            vec![format!("{f}:8: unknown stream format \"csv\" (expected ndjson)")],
        ),
        (
            partner("    records: \"items[*]\"\n    subject: customer_id\n    allow: [customer_id]\n"),
            vec![format!("{f}:9: a streaming route's records are its lines: write `records: $` or name only its subject")],
        ),
        (
            partner("    subject: customer_id\n    allow: [customer_id]\n")
                .replace("[POST]", "[GET, POST, DELETE]"),
            vec![
                format!("{f}:7: method \"GET\" carries no body: a streaming route takes POST, PUT or PATCH"),
                format!("{f}:7: method \"DELETE\" carries no body: a streaming route takes POST, PUT or PATCH"),
            ],
        ),
        (
            partner("    subject: customer_id\n    allow: [customer_id]\n    decode: [gzip]\n    json_types: [application/x+json]\n"),
            vec![
                format!("{f}:11: a streaming route cannot decode: content codings are refused on it (415)"),
                format!("{f}:12: a streaming route takes application/x-ndjson only: json_types do not apply"),
            ],
        ),
        (
            partner("    query: [a]\n"),
            vec![
                format!("{f}:6: a streaming route needs allow or transform: it takes a body"),
            ],
        ),
        (
            partner("    allow: [a]\n"),
            vec![format!("{f}:6: route \"/v1/contacts\" must name records and subject: this partner honours opt-outs, and without them the records of customers who opted out could never be dropped")],
        ),
        (
            partner("    subject: customer_id\n    allow: [customer_id, '[*].x']\n"),
            vec![
                format!("{f}:10: \"[*].x\" starts at an array, but each line of a stream is one record (an object)"),
                format!("{f}:10: \"[*].x\": can never match: `$` expects an object at `$`, but this path expects an array there"),
            ],
        ),
    ];
    for (text, want) in cases {
        let got = check(&text).err().unwrap_or_default();
        assert_eq!(got, want, "\n{text}");
    }
}
