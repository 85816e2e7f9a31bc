use super::*;
use crate::plan::{self, Incoming, OptOuts};
use crate::policy::Policy;

mod oracle_tests;

const GATEWAY: &str = "callers: { issuer: i, audience: a, keys: k.json }\nsigning: { issuer: i, key: k.pem, kid: k }\n";

fn policy(allow: &str, transform: &str) -> Policy {
    let partner = format!(
        "kind: contractor\npurpose: shipping\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    allow: [{allow}]\n    transform: {{{transform}}}\nallowed_callers: [orders]\n"
    );
    loaded(GATEWAY.into(), partner)
}

/// The policy of `gateway` (its gateway.yaml) and one partner `acme` (its file).
fn loaded(gateway: String, partner: String) -> Policy {
    crate::policy::load::one_partner(&gateway, partner, None)
}

fn decide(policy: &Policy, body: &str) -> Decision {
    let headers = [("content-type", "application/json")];
    let incoming = Incoming {
        query: None,
        headers: &headers,
        body: body.as_bytes(),
    };
    let outcome =
        plan::resolve(&policy.partners, "POST", "/acme/v1/shipments").and_then(|target| {
            plan::plan_forwarded(
                &target,
                &incoming,
                &policy.gateway.limits,
                OptOuts::NotLoaded,
            )
        });
    Decision::of(&outcome).expect("a small body is read")
}

const BODY: &str = r#"{"order_id":"o-1","shipments":[{"name":"Ana Lima","email":"ana@example.com","card":"4111 1111 1111 1111"},{"name":"B","email":"b@example.com","card":"4000 0000 0000 0002"}]}"#;

/// An empty object the active policy sends, which the candidate sends with a member: the
/// object goes either way, only the member is added (and back the other way, only removed).
#[test]
fn an_emptied_object_still_sent_is_no_removed_field() {
    let active = policy("order_id, device.model", "");
    let shadow = policy("order_id, \"device.*\"", "");
    let body = r#"{"order_id":"o-1","device":{"f1":1}}"#;
    let listed = |a: &Policy, s: &Policy| -> Vec<(ShadowChange, String)> {
        compare(&decide(a, body), &decide(s, body))
            .into_iter()
            .map(|d| (d.change, d.path.unwrap_or_default()))
            .collect()
    };
    assert_eq!(
        listed(&active, &shadow),
        [(ShadowChange::FieldAdded, "device.f1".to_string())]
    );
    assert_eq!(
        listed(&shadow, &active),
        [(ShadowChange::FieldRemoved, "device.f1".to_string())]
    );
}

#[test]
fn field_differences_are_listed_once_per_path_without_values() {
    let active = policy(
        "order_id, \"shipments[*].name\"",
        "\"shipments[*].card\": last4",
    );
    let shadow = policy(
        "\"shipments[*].email\", \"shipments[*].name\"",
        "\"shipments[*].card\": mask",
    );
    let diffs = compare(&decide(&active, BODY), &decide(&shadow, BODY));
    let listed: Vec<(ShadowChange, &str, &str, &str)> = diffs
        .iter()
        .map(|d| {
            (
                d.change,
                d.path.as_deref().unwrap(),
                d.active.as_str(),
                d.shadow.as_str(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (ShadowChange::FieldRemoved, "order_id", "clear", "removed"),
            (
                ShadowChange::TransformChanged,
                "shipments[*].card",
                "last4",
                "mask"
            ),
            (
                ShadowChange::FieldAdded,
                "shipments[*].email",
                "removed",
                "clear"
            ),
        ]
    );
    let text = format!("{diffs:?}");
    for value in ["Ana", "ana@", "4111", "o-1", "1111"] {
        assert!(!text.contains(value), "{value} in {text}");
    }
    assert!(compare(&decide(&active, BODY), &decide(&active, BODY)).is_empty());
}

#[test]
fn outcome_differences_name_status_and_code_only() {
    let active = policy("order_id", "");
    let shadow = policy("order_id", "");
    let forwarded = decide(&active, r#"{"order_id":"o-1"}"#);
    let refused = decide(&shadow, r#"{"order_id":{"nested":"Ana"}}"#);
    assert_eq!(
        compare(&forwarded, &refused),
        [Difference {
            change: ShadowChange::NewlyRefused,
            path: None,
            active: "forwarded".into(),
            shadow: "400 bad_request".into(),
        }]
    );
    assert_eq!(
        compare(&refused, &forwarded)[0].change,
        ShadowChange::NewlyForwarded
    );
    assert!(compare(&refused, &refused).is_empty());
}

#[test]
fn a_head_the_candidate_admits_is_newly_forwarded_and_nothing_else() {
    let refused = Decision::Refused {
        status: 404,
        code: "route_not_allowed",
    };
    let listed = compare(&refused, &Decision::Admitted);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].change, ShadowChange::NewlyForwarded);
    assert_eq!(listed[0].active, "404 route_not_allowed");
    assert_eq!(listed[0].shadow, ADMITTED);
    let forwarded = Decision::Forwarded(Fields::default());
    for (a, s) in [
        (&Decision::Admitted, &refused),
        (&Decision::Admitted, &Decision::Admitted),
        (&forwarded, &Decision::Admitted),
        (&Decision::Admitted, &forwarded),
    ] {
        assert!(compare(a, s).is_empty(), "{a:?} {s:?}");
    }
}

#[test]
fn the_recent_list_is_bounded_newest_first_and_counts_everything() {
    let active = policy("order_id", "");
    let shadow = policy("order_id, \"shipments[*].name\"", "");
    let diffs = compare(&decide(&active, BODY), &decide(&shadow, BODY));
    assert_eq!(diffs.len(), 1);
    let mut recent = Recent::new(3);
    for time in 0..5 {
        recent.push(("acme", "/v1/shipments", "POST"), &diffs, time);
    }
    assert_eq!(recent.total, 5);
    assert_eq!(recent.len(), 3);
    let times: Vec<i64> = recent.newest_first().map(|e| e.time).collect();
    assert_eq!(times, [4, 3, 2]);
    let entry = recent.newest_first().next().unwrap();
    assert_eq!(entry.path.as_deref(), Some("shipments[*].name"));
    assert_eq!(entry.change, ShadowChange::FieldAdded);
    let text = format!("{:?}", recent.newest_first().collect::<Vec<_>>());
    for value in ["Ana", "Lima", "o-1"] {
        assert!(!text.contains(value), "{value} in {text}");
    }
    let mut none = Recent::new(0);
    none.push(("acme", "/v1/shipments", "POST"), &diffs, 1);
    assert_eq!((none.total, none.len()), (1, 0));
}

/// Customers who opted out of everything.
struct OptedOut(Vec<&'static str>);

impl crate::optout::OptOutSource for OptedOut {
    fn is_opted_out(&self, customer_id: &str, _scopes: &[crate::optout::Scope]) -> bool {
        self.0.contains(&customer_id)
    }
}

/// A business partner with `contacts[*]` records whose subject is `customer_id`; `extra` is
/// added to its file.
fn business(extra: &str) -> Policy {
    let partner = format!(
        "kind: business_partner\npurpose: marketing\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/contacts\n    methods: [POST]\n    records: contacts[*]\n    subject: customer_id\n    allow: [\"contacts[*].customer_id\", \"contacts[*].name\"]\nallowed_callers: [orders]\n{extra}"
    );
    loaded(
        format!("optouts: {{ path: data/optouts }}\n{GATEWAY}"),
        partner,
    )
}

fn noted(policy: &Policy, body: &str, optouts: &dyn crate::optout::OptOutSource) -> Noted {
    let headers = [("content-type", "application/json")];
    let incoming = Incoming {
        query: None,
        headers: &headers,
        body: body.as_bytes(),
    };
    let mut outcome =
        plan::resolve(&policy.partners, "POST", "/acme/v1/contacts").and_then(|target| {
            plan::plan_forwarded(
                &target,
                &incoming,
                &policy.gateway.limits,
                OptOuts::Loaded(optouts),
            )
        });
    Noted::take(&mut outcome)
}

#[test]
fn a_candidate_that_stops_honouring_opt_outs_forwards_records_newly() {
    let (honouring, not) = (business(""), business("honor_optouts: []\n"));
    let body =
        r#"{"contacts":[{"customer_id":"c-1","name":"A"},{"customer_id":"c-2","name":"B"}]}"#;
    let opted = OptedOut(vec!["c-2"]);
    let (active, shadow) = (noted(&honouring, body, &opted), noted(&not, body, &opted));
    let more = compare_noted(&active, &shadow).expect("comparable");
    assert_eq!(
        more,
        vec![Difference {
            change: ShadowChange::NewlyForwarded,
            path: None,
            active: "1 records dropped".into(),
            shadow: "0 records dropped (1 forwarded that the active policy drops)".into(),
        }]
    );
    let fewer = compare_noted(&shadow, &active).expect("comparable");
    assert_eq!(fewer.len(), 1, "{fewer:?}");
    assert_eq!(fewer[0].change, ShadowChange::NewlyRefused);
    // Nobody opted out: both forward the same.
    let none = OptedOut(Vec::new());
    let same = compare_noted(&noted(&honouring, body, &none), &noted(&not, body, &none));
    assert_eq!(same, Some(Vec::new()));
}

#[test]
fn a_candidate_that_drops_as_many_records_but_other_customers_is_seen() {
    // The active policy honours partner_sharing only; the candidate honours another scope
    // only. c-2 opted out of the first, c-3 of the second: each drops one record, not the same.
    let active = business("honor_optouts: [partner_sharing]\n");
    let candidate = business("honor_optouts: [\"partner:acme\"]\n");
    struct ByScope;
    impl crate::optout::OptOutSource for ByScope {
        fn is_opted_out(&self, id: &str, scopes: &[crate::optout::Scope]) -> bool {
            let scope = |s: &str| scopes.iter().any(|x| x.as_str() == s);
            (id == "c-2" && scope("partner_sharing")) || (id == "c-3" && scope("partner:acme"))
        }
    }
    let body =
        r#"{"contacts":[{"customer_id":"c-1"},{"customer_id":"c-2"},{"customer_id":"c-3"}]}"#;
    let decide = |policy: &Policy| noted(policy, body, &ByScope);
    let d = compare_noted(&decide(&active), &decide(&candidate)).expect("comparable");
    let kinds: Vec<ShadowChange> = d.iter().map(|d| d.change).collect();
    assert_eq!(
        kinds,
        [ShadowChange::NewlyForwarded, ShadowChange::NewlyRefused],
        "{d:?}"
    );
    assert!(d.iter().all(|d| d.path.is_none()), "{d:?}");
    assert_eq!(
        d[0].shadow,
        "1 records dropped (1 forwarded that the active policy drops)"
    );
}

/// A candidate that forwards another query parameter or header: listed by name (never value)
/// as `?name` and `header:name`, like a field.
#[test]
fn query_parameters_and_headers_the_candidate_sends_or_drops_are_differences() {
    let route = |query: &str, headers: &str| {
        loaded(
            GATEWAY.into(),
            format!(
                "kind: contractor\npurpose: support\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/tickets/{{id}}\n    methods: [GET]\n    query: [{query}]\n    headers: [{headers}]\nallowed_callers: [orders]\n"
            ),
        )
    };
    let decide = |policy: &Policy| {
        let headers = [("x-request-id", "secret-id"), ("x-trace", "secret-trace")];
        let incoming = Incoming {
            query: Some("include=h&reporter_email=ana%40example.com"),
            headers: &headers,
            body: b"",
        };
        let mut outcome =
            plan::resolve(&policy.partners, "GET", "/acme/v1/tickets/t-1").and_then(|target| {
                plan::plan_forwarded(
                    &target,
                    &incoming,
                    &policy.gateway.limits,
                    OptOuts::NotLoaded,
                )
            });
        Noted::take(&mut outcome)
    };
    let active = decide(&route("include", "x-request-id"));
    let candidate = decide(&route("include, reporter_email", "x-trace"));
    let d = compare_noted(&active, &candidate).expect("comparable");
    let listed: Vec<(ShadowChange, &str)> = d
        .iter()
        .map(|d| (d.change, d.path.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(
        listed,
        [
            (ShadowChange::FieldAdded, "?reporter_email"),
            (ShadowChange::FieldRemoved, "header:x-request-id"),
            (ShadowChange::FieldAdded, "header:x-trace"),
        ],
        "{d:?}"
    );
    let text = format!("{d:?}");
    assert!(
        !text.contains("secret") && !text.contains("ana%40"),
        "{text}"
    );
    assert_eq!(compare_noted(&active, &active), Some(Vec::new()));
}
