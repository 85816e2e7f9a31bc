use super::*;

#[test]
fn every_family_is_exported_before_any_traffic_except_per_certificate() {
    let text = String::from_utf8(Metrics::new().render()).unwrap();
    for name in NAMES {
        let exported = text.contains(&format!("# TYPE {name} "));
        let expected = name != "partner_gateway_certificate_expiry_timestamp_seconds"
            && !name.contains("duration")
            && !matches!(
                name,
                "partner_gateway_requests_total"
                    | "partner_gateway_fields_removed_total"
                    | "partner_gateway_fields_transformed_total"
                    | "partner_gateway_records_forwarded_total"
                    | "partner_gateway_records_dropped_total"
                    | "partner_gateway_upstream_errors_total"
                    | "partner_gateway_optouts"
                    | "partner_gateway_policy_info"
                    | "partner_gateway_fields_disclosed_total"
                    | "partner_gateway_shadow_differences_total"
                    | "partner_gateway_unknown_fields_total"
            );
        assert_eq!(exported, expected, "{name}\n{text}");
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
    m.request("p", "/r", 200, Duration::from_micros(50));
    let text = String::from_utf8(m.render()).unwrap();
    assert!(text.contains(r#"le="0.0001"} 1"#), "{text}");
    assert!(text.contains(r#"le="30"} 1"#), "{text}");
    assert!(
        text.contains(r#"partner_gateway_requests_total{partner="p",route="/r",status="200"} 1"#)
    );
}
