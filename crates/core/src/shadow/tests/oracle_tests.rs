//! The forwarded values the filter notes give the same [`Decision`] as reading the forwarded
//! body back (the way decisions were first made: parse the body the partner receives, list its
//! leaves, take the forms from the per-field changes). That reading is kept here as the oracle.
use std::collections::BTreeMap;

use super::super::*;
use crate::drift::{push_element, push_member};
use crate::filter::Change;
use crate::optout::{OptOutSet, Scope};
use crate::plan::{self, Incoming, OptOuts};
use crate::policy::Policy;

/// The decision read back from a [`plan::plan`] outcome made with `detail`.
fn by_parsing(outcome: &Result<Outgoing, Refusal>) -> Decision {
    let Ok(outgoing) = outcome else {
        return Decision::of(outcome).unwrap();
    };
    let mut fields = BTreeMap::new();
    if !outgoing.body.is_empty() {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&outgoing.body) {
            leaves(&value, &mut String::new(), &mut fields);
        }
    }
    for change in &outgoing.report.changes {
        if let Change::Transformed { path, transform } = change {
            fields.insert(collapse(path), Form::Transformed(*transform));
        }
    }
    Decision::Forwarded(fields.into_iter().collect())
}

fn leaves(value: &serde_json::Value, path: &mut String, out: &mut BTreeMap<String, Form>) {
    let len = path.len();
    match value {
        serde_json::Value::Object(members) if !members.is_empty() => {
            for (name, member) in members {
                push_member(path, name.as_bytes());
                leaves(member, path, out);
                path.truncate(len);
            }
        }
        serde_json::Value::Array(elements) if !elements.is_empty() => {
            for element in elements {
                push_element(path);
                leaves(element, path, out);
                path.truncate(len);
            }
        }
        _ => {
            let key = if path.is_empty() { "$" } else { path.as_str() };
            out.insert(key.to_string(), Form::Clear);
        }
    }
}

/// A concrete filter path (`shipments[0].card_number`, `a["odd key"]`) in drift syntax.
fn collapse(concrete: &str) -> String {
    let mut out = String::new();
    let mut rest = concrete;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("[\"") {
            let bytes = after.as_bytes();
            let mut i = 0;
            let mut end = after.len();
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' if bytes.get(i + 1) == Some(&b']') => {
                        end = i;
                        break;
                    }
                    _ => i += 1,
                }
            }
            push_member(&mut out, b"\0"); // never a field name: written `*`
            rest = after.get(end + 2..).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix('[') {
            push_element(&mut out);
            rest = after.split_once(']').map_or("", |(_, r)| r);
        } else {
            let trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = trimmed.find(['.', '[']).unwrap_or(trimmed.len());
            push_member(&mut out, &trimmed.as_bytes()[..end]);
            rest = &trimmed[end..];
        }
    }
    out
}

#[test]
fn concrete_paths_collapse_to_drift_syntax() {
    assert_eq!(collapse("shipments[12].card"), "shipments[*].card");
    assert_eq!(collapse("a[\"odd key\"].b"), "a.*.b");
    assert_eq!(collapse("by_customer.c-104233"), "by_customer.*");
    assert_eq!(collapse("a[0][1]"), "a[*][*]");
}

const GATEWAY: &str = "optouts: { path: data/optouts }\ncallers: { allow_unauthenticated: true }\nsigning: { disabled: true }\n";

fn policy(route: &str) -> Policy {
    let partner = format!(
        "kind: business_partner\npurpose: advertising\nupstream: http://127.0.0.1:9001\nallowed_callers: [orders]\npseudonymize_key_env: K\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n{route}"
    );
    let env: BTreeMap<String, String> = [("K".to_string(), "k".repeat(32))].into_iter().collect();
    crate::policy::load::one_partner(GATEWAY, partner, Some(&env))
}

/// Records with subjects, `.**` subtrees, wildcards, transforms, arrays and scalars.
const WIDE: &str = r#"    records: "shipments[*]"
    subject: customer_id
    allow: [order_id, notes, "shipments[*].name", "shipments[*].address.**", "shipments[*].tags[*]", "shipments[*].meta", "shipments[*].by_day.*", "shipments[*].empty_obj.x", "shipments[*].items[*].sku", "shipments[*].items[*].qty", "shipments[*].customer_id"]
    transform: { "shipments[*].customer_id": pseudonymize, "shipments[*].card": last4, "shipments[*].phone": mask, "shipments[*].extra.*": mask, "shipments[*].items[*].price": "null" }
"#;

/// Fewer fields, other forms, the whole of each record's `address` by name.
const NARROW: &str = r#"    records: "shipments[*]"
    subject: customer_id
    allow: [order_id, "shipments[*].card", "shipments[*].address.street", "shipments[*].address.lines[*]", "shipments[*].items[*].**"]
    transform: { "shipments[*].customer_id": mask, "shipments[*].name": last4 }
"#;

/// Between the two: some fields of each, other forms.
const MIDDLE: &str = r#"    records: "shipments[*]"
    subject: customer_id
    allow: [notes, "shipments[*].address.street", "shipments[*].address.geo.**", "shipments[*].tags[*]", "shipments[*].items[*].sku", "shipments[*].customer_id"]
    transform: { "shipments[*].name": mask, "shipments[*].card": last4, "shipments[*].items[*].price": "null" }
"#;

const BODIES: &[&str] = &[
    r#"{"order_id":"o-1","notes":"n","shipments":[{"customer_id":"c-1","name":"Ana","card":"4111 1111 1111 1111",
        "address":{"street":"s","geo":{"lat":1,"lng":2}},"tags":["a"],"items":[{"sku":"x","price":3,"qty":1}]},
        {"customer_id":"c-2","name":null,"address":{"city":"c"},"items":[]}]}"#,
    r#"{"order_id":"o-1","notes":null,"shipments":[
        {"customer_id":"c-1","na\u006de":"Ana","card":"4111 1111 1111 1111","phone":null,
         "address":{"st\u0072eet":"x","geo":{"lat":1.5,"lng":-2e3},"lines":["a","b",[]],"empty":{},"none":[],
                    "we\"ird":1,"a.b":2,"c-104233":{"deep":[{}]},"t":true,"n":null},
         "tags":["t1",2,null],"meta":null,"by_day":{"2024-01-01":5,"monday":"6"},"empty_obj":{"y":1},
         "items":[],"extra":{"code":"z","n":7,"gone":null}},
        {"customer_id":"c-out","name":"Out","address":{"street":"hidden"},"tags":["x"]},
        {"customer_id":"c-2","address":{},"tags":[],"items":[{"sku":"s","qty":1,"price":9.5},{"price":null}],
         "empty_obj":{},"unknown":{"deep":1},"card":"12"}
    ]}"#,
    r#"{"shipments":[{"customer_id":"c-out","name":"x","card":"4111 1111 1111 1111"}]}"#,
    r#"{"shipments":[]}"#,
    r#"{}"#,
    r#"{"order_id":7,"shipments":null}"#,
    r#"{"shipments":[{"customer_id":"c-3","address":null,"items":null,"tags":null,"extra":null}]}"#,
    r#"{"shipments":[{"customer_id":"c-4","address":"flat","items":[{"sku":{"a":1}}]}]}"#,
    r#"{"shipments":[{"customer_id":"c-5"}],"shipments":[]}"#,
    r#"{"order_id":"o","shipments":[{"customer_id":"c-1","name":"Ana Lima 12345678","card":"4111",
        "address":{"street":"s","lines":["a",null],"zip":"1"},"items":[{"sku":"s","n":{"x":[1,{}]}},{}]},
        {"customer_id":"c-out","card":"1"}]}"#,
    r#"{"order_id":"#,
];

#[test]
fn forwarded_values_decide_like_the_forwarded_body_read_back() {
    let set = opted_out();
    let headers = [("content-type", "application/json")];
    let mut forwarded_bodies = 0;
    for route in [WIDE, NARROW, MIDDLE] {
        let policy = policy(route);
        let target = plan::resolve(&policy.partners, "POST", "/acme/v1/shipments").unwrap();
        let limits = &policy.gateway.limits;
        for body in BODIES {
            let incoming = Incoming {
                query: None,
                headers: &headers,
                body: body.as_bytes(),
            };
            let optouts = OptOuts::Loaded(&set);
            let noted = plan::plan_forwarded(&target, &incoming, limits, optouts);
            let detailed = plan::plan(&target, &incoming, limits, optouts, true);
            assert_eq!(
                Decision::of(&noted).unwrap(),
                by_parsing(&detailed),
                "{route}\n{body}"
            );
            let plain = plan::plan(&target, &incoming, limits, optouts, false);
            match (&noted, &plain) {
                (Ok(noted), Ok(plain)) => {
                    forwarded_bodies += 1;
                    assert_eq!(noted.body, plain.body, "{body}");
                    assert!(plain.report.forwarded.is_empty());
                }
                (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
                _ => panic!("{body}: {noted:?} vs {plain:?}"),
            }
        }
    }
    assert_eq!(forwarded_bodies, 23);
}

fn opted_out() -> OptOutSet {
    let mut set = OptOutSet::new();
    let scope = Scope::parse(Scope::PARTNER_SHARING).unwrap();
    set.insert("c-out", std::slice::from_ref(&scope)).unwrap();
    set
}

/// Comparing notes on the paths as received gives what comparing the decisions read in full
/// gives, for every pair of policies on every body (escaped and data-like names included).
#[test]
fn noted_decisions_compare_like_decisions_read_in_full() {
    let set = opted_out();
    let headers = [("content-type", "application/json")];
    let policies: Vec<Policy> = [WIDE, NARROW, MIDDLE].into_iter().map(policy).collect();
    let mut differing = 0;
    for body in BODIES {
        let incoming = Incoming {
            query: None,
            headers: &headers,
            body: body.as_bytes(),
        };
        let outcomes: Vec<Result<Outgoing, Refusal>> = policies
            .iter()
            .map(|p| {
                let target = plan::resolve(&p.partners, "POST", "/acme/v1/shipments").unwrap();
                plan::plan_forwarded(&target, &incoming, &p.gateway.limits, OptOuts::Loaded(&set))
            })
            .collect();
        for a in &outcomes {
            for s in &outcomes {
                let full = compare(&Decision::of(a).unwrap(), &Decision::of(s).unwrap());
                let (mut a, mut s) = (a.clone(), s.clone());
                let quick = compare_noted(&Noted::take(&mut a), &Noted::take(&mut s)).unwrap();
                assert_eq!(quick, full, "{body}");
                differing += usize::from(!full.is_empty());
            }
        }
    }
    assert!(differing >= 12, "{differing}");
}

#[test]
fn subtree_leaves_unescape_names_and_list_empty_containers() {
    let mut listed = Vec::new();
    let json = br#"{"a":{"b\u0031":[1,{},[]],"x\"y":"s","c":null},"d":[]}"#;
    let mut raw = Vec::new();
    let mut rendered = forwarded::Rendered::default();
    forwarded::subtree_leaves(json, &mut raw, &mut |leaf| {
        listed.push(rendered.render(leaf).to_string())
    });
    assert_eq!(listed, ["a.b1[*]", "a.b1[*]", "a.b1[*]", "a.*", "a.c", "d"]);
    assert!(raw.is_empty());
}

/// Every value copies its whole path: a long name above many values would make a note (or its
/// reading) take many times the body. Such notes stop growing, and are not compared.
#[test]
fn notes_too_large_to_read_are_not_compared() {
    let set = opted_out();
    let headers = [("content-type", "application/json")];
    let name = "n".repeat(5000);
    let ones = vec!["1"; 20_000].join(",");
    let cases = [
        // On the request path: `m.*[*]` notes the long name with every element.
        (
            policy(
                "    records: \"shipments[*]\"\n    subject: customer_id\n    allow: [\"shipments[*].m.*[*]\"]\n",
            ),
            format!(r#"{{"shipments":[{{"customer_id":"c-1","m":{{"{name}":[{ones}]}}}}]}}"#),
            false,
        ),
        // On reading: the subtree is noted as its bytes, its leaves would repeat the name.
        (
            policy(WIDE),
            format!(r#"{{"shipments":[{{"customer_id":"c-1","address":{{"{name}":[{ones}]}}}}]}}"#),
            true,
        ),
    ];
    let middle = policy(MIDDLE);
    for (policy, body, complete) in cases {
        let target = plan::resolve(&policy.partners, "POST", "/acme/v1/shipments").unwrap();
        let incoming = Incoming {
            query: None,
            headers: &headers,
            body: body.as_bytes(),
        };
        let (limits, optouts) = (&policy.gateway.limits, OptOuts::Loaded(&set));
        let mut noted = plan::plan_forwarded(&target, &incoming, limits, optouts);
        let plain = plan::plan(&target, &incoming, limits, optouts, false).unwrap();
        let outgoing = noted.as_ref().unwrap();
        assert_eq!(outgoing.body, plain.body);
        let note = &outgoing.report.forwarded;
        assert_eq!(note.complete(), complete);
        assert!(note.read_budget() < 8 * body.len() + (1 << 20));
        assert!(Decision::of(&noted).is_none());
        let other = plan::resolve(&middle.partners, "POST", "/acme/v1/shipments").unwrap();
        let mut other = plan::plan_forwarded(&other, &incoming, &middle.gateway.limits, optouts);
        let (a, s) = (Noted::take(&mut noted), Noted::take(&mut other));
        assert_eq!(compare_noted(&a, &s), None);
        assert_eq!(compare_noted(&s, &a), None);
    }
}
