use super::*;
use crate::ledger::{Chain, Disclosure};

const GATEWAY: &str = "callers: { issuer: i, audience: a, keys: k.json }\nsigning: { issuer: i, key: k.pem, kid: k }\n";

/// One partner `acme` with one route `/v1/notes` that allows `allow`, with `categories`.
fn policy(allow: &str, categories: &str) -> Policy {
    let partner = format!(
        "kind: contractor\npurpose: support\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/notes\n    methods: [POST]\n    allow: [{allow}]\n    categories: {{{categories}}}\nallowed_callers: [orders]\n"
    );
    crate::policy::load::one_partner(GATEWAY, partner, None)
}

fn note(fields: &[&str], categories: &[&str]) -> Disclosure {
    Disclosure {
        time: "2026-11-29T03:00:00.000Z".into(),
        request_id: "req-1".into(),
        caller: "orders".into(),
        partner: "acme".into(),
        kind: "contractor".into(),
        route: "/v1/notes".into(),
        method: "POST".into(),
        use_: "on-behalf-of-ohsoft".into(),
        purpose: "support".into(),
        legal_basis: None,
        policy_version: "v".into(),
        token_jti: None,
        body_sha256: Some("x".into()),
        records_forwarded: 0,
        records_dropped: 0,
        fields: fields.iter().map(|f| f.to_string()).collect(),
        categories: categories.iter().map(|c| c.to_string()).collect(),
        subjects: Vec::new(),
        stream: false,
    }
}

/// The categories `policy`'s report shows `acme` received, from `records`.
fn disclosed(policy: &Policy, records: &[Disclosure]) -> Vec<(String, u64)> {
    let chain = Chain::new();
    let mut builder = ReportBuilder::new(policy, None, None);
    for d in records {
        let line = chain.record(d).bytes;
        builder.line(line.strip_suffix(b"\n").unwrap_or(&line));
    }
    let report = builder.finish(policy);
    report.recipients[0]
        .disclosed_categories
        .iter()
        .map(|c| (c.category.clone(), c.requests))
        .collect()
}

#[test]
fn a_record_of_fields_without_categories_is_uncategorized_under_any_policy() {
    let records = [
        note(&["note"], &[]),
        note(&["memo"], &["system.operations"]),
    ];
    let uncategorized = || (categories::UNCATEGORIZED.to_string(), 1);
    let operations = || ("system.operations".to_string(), 1);
    // The policy it was disclosed under: `note` has no category.
    let then = policy("note, memo", "memo: system.operations");
    assert_eq!(disclosed(&then, &records), [operations(), uncategorized()]);
    // The route now names other fields: the record still disclosed an uncategorized one.
    let now = policy("memo", "memo: system.operations");
    assert_eq!(disclosed(&now, &records), [operations(), uncategorized()]);
    // A field the route still leaves uncategorized counts beside categorized ones.
    let records = [note(&["memo", "note"], &["system.operations"])];
    assert_eq!(disclosed(&then, &records), [operations(), uncategorized()]);
    assert_eq!(disclosed(&now, &records), [operations()]);
}
