use super::*;

#[test]
fn suggestions_are_yaml_lines_with_data_like_names_held_back() {
    let report = serde_json::json!({"routes": [{
    "partner": "acme-ship", "route": "/v1/shipments", "not_listed": 0,
    "paths": [
        {"path": "shipments[*].phone", "count": 3, "first_seen": "2026-08-15T10:00:00Z", "last_seen": "2026-08-15T10:05:00Z", "shapes": ["scalar"]},
        {"path": "shipments[*].meta", "count": 1, "first_seen": "2026-08-15T10:00:00Z", "last_seen": "2026-08-15T10:00:00Z", "shapes": ["object"]},
        {"path": "by_customer.*", "count": 9, "first_seen": "2026-08-15T10:00:00Z", "last_seen": "2026-08-15T10:00:00Z", "shapes": ["scalar"]}
    ]}]});
    let mut out = Vec::new();
    write_suggestions(&report, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("# partners/acme-ship.yaml, route /v1/shipments"),
        "{text}"
    );
    assert!(text.contains("      - shipments[*].phone "), "{text}");
    assert!(text.contains("      - shipments[*].meta.** "), "{text}");
    assert!(
        text.contains("      # not suggested: by_customer.*"),
        "{text}"
    );
    assert!(!text.contains("      - by_customer"), "{text}");
}
