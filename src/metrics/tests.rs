use super::*;

#[test]
fn every_family_is_declared_before_any_policy_or_request() {
    let text = String::from_utf8(Metrics::new().render()).unwrap();
    for name in NAMES {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}\n{text}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name}\n{text}");
        assert_eq!(
            text.matches(&format!("# TYPE {name} ")).count(),
            1,
            "{name} declared twice\n{text}"
        );
    }
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    assert!(text.contains("process_open_fds"), "{text}");
    assert!(text.contains(&format!(
        "partner_gateway_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
}

#[test]
fn buckets_span_100_microseconds_to_30_seconds() {
    let m = Metrics::new();
    m.request(Series::named("p", "/r"), 200, Duration::from_micros(50));
    let text = String::from_utf8(m.render()).unwrap();
    assert!(text.contains(r#"le="0.0001"} 1"#), "{text}");
    assert!(text.contains(r#"le="30"} 1"#), "{text}");
    assert!(
        text.contains(r#"partner_gateway_requests_total{partner="p",route="/r",status="200"} 1"#)
    );
}

const GATEWAY: &str = "optouts: { path: data/optouts }\ncallers: { issuer: i, audience: a, keys: k.json }\nsigning: { issuer: i, key: k.pem, kid: k }\n";

const ACME: &str = "kind: contractor\npurpose: shipping\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    allow: [order_id, \"shipments[*].name\", \"shipments[*].city\", \"shipments[*].note\"]\n    transform: {\"shipments[*].card\": last4}\n    categories:\n      shipments[*].name: user.name\n      shipments[*].city: user.contact.address\n      shipments[*].card: user.financial.credit_card\n  - path: /v1/returns\n    methods: [POST]\n    allow: [order_id]\nallowed_callers: [orders]\n";

fn policy() -> gateway_core::policy::Policy {
    use gateway_core::policy::{load, PolicySource, SourceFile};
    let source = PolicySource {
        dir: "policy".into(),
        gateway: SourceFile {
            path: "policy/gateway.yaml".into(),
            text: GATEWAY.into(),
        },
        partners: vec![SourceFile {
            path: "policy/partners/acme.yaml".into(),
            text: ACME.into(),
        }],
    };
    load(&source, None)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .policy
}

/// Everything one forwarded and one refused request of each route count, `series[i]` being
/// the series of `routes[i]`.
fn count_traffic(m: &Metrics, series: &[Series], routes: &[Route]) {
    let took = Duration::from_micros(700);
    for (&s, route) in series.iter().zip(routes) {
        let report = Report {
            fields_removed: 3,
            transformed: [0, 2, 0, 0],
            records_forwarded: 2,
            records_dropped: 1,
            matched: vec![1; route.fields.len()],
            unknown_fields: 4,
            ..Report::default()
        };
        for status in [200, 418, 200, 502] {
            m.request(s, status, took);
        }
        m.filter_time(s, took);
        m.refused(s, RefusalKind::SubjectOptedOut);
        m.upstream_error(s, UpstreamErrorKind::Timeout);
        m.forwarded(s, &report);
        m.fields_disclosed(s, route, &report.matched);
        m.unknown_fields(s, report.unknown_fields);
    }
}

/// The `partner_gateway_*` sample lines of `m` (without the duration sums, which differ).
fn samples(m: &Metrics) -> Vec<String> {
    let text = String::from_utf8(m.render()).unwrap();
    text.lines()
        .filter(|l| l.starts_with("partner_gateway_") && !l.contains("duration_seconds_sum"))
        .map(str::to_string)
        .collect()
}

#[test]
fn handles_count_in_exactly_the_series_lookups_count_in() {
    let policy = policy();
    let partner = &policy.partners["acme"];
    let routes = &partner.routes;

    let looked_up = Metrics::new();
    looked_up.register_policy(&policy);
    let named: Vec<Series> = routes
        .iter()
        .map(|r| Series::named("acme", &r.template))
        .collect();
    count_traffic(&looked_up, &named, routes);

    let handled = Metrics::new();
    let handles = handled.register_policy(&policy).partner("acme").unwrap();
    let resolved: Vec<Series> = (0..routes.len())
        .map(|i| Series::of(partner, Some(i), Some(&handles)))
        .collect();
    count_traffic(&handled, &resolved, routes);

    let expected = samples(&looked_up);
    assert_eq!(samples(&handled), expected);
    let expected = expected.join("\n");
    for line in [
        r#"partner_gateway_requests_total{partner="acme",route="/v1/shipments",status="200"} 2"#,
        r#"partner_gateway_requests_total{partner="acme",route="/v1/returns",status="418"} 1"#,
        r#"partner_gateway_fields_disclosed_total{category="user.name",partner="acme",route="/v1/shipments"} 1"#,
        r#"partner_gateway_fields_disclosed_total{category="uncategorized",partner="acme",route="/v1/shipments"} 2"#,
        r#"partner_gateway_fields_transformed_total{partner="acme",route="/v1/shipments",transform="last4"} 2"#,
        r#"partner_gateway_records_dropped_total{partner="acme",reason="opted_out",route="/v1/returns"} 1"#,
    ] {
        assert!(expected.contains(line), "{line}\n{expected}");
    }
}

#[test]
fn a_handle_and_a_lookup_of_the_same_labels_share_one_series() {
    let policy = policy();
    let partner = &policy.partners["acme"];
    let m = Metrics::new();
    let handles = m.register_policy(&policy).partner("acme").unwrap();
    m.request(
        Series::of(partner, Some(0), Some(&handles)),
        200,
        Duration::ZERO,
    );
    m.request(Series::named("acme", "/v1/shipments"), 200, Duration::ZERO);
    // A reload resolves the same series again: the count goes on, it does not restart.
    let again = m.register_policy(&policy).partner("acme").unwrap();
    m.request(
        Series::of(partner, Some(0), Some(&again)),
        200,
        Duration::ZERO,
    );
    let text = String::from_utf8(m.render()).unwrap();
    let line =
        r#"partner_gateway_requests_total{partner="acme",route="/v1/shipments",status="200"} 3"#;
    assert!(text.contains(line), "{text}");
}
