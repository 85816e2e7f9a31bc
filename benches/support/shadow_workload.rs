//! The shadow benchmarks' policies (`benches/shadow.rs` through real gateways and the core's
//! `shadow_decide` in process): an active shipping route and a candidate that differs from it
//! in three paths on every record.

pub const ACTIVE_ROUTE: &str = r#"    allow: [order_id, "shipments[*].name", "shipments[*].address.**", "shipments[*].items[*].sku", "shipments[*].items[*].qty"]
    transform: { "shipments[*].customer_id": pseudonymize, "shipments[*].card_number": last4 }
"#;
/// Sends `email` and `phone` too, masks the card instead: three differences per record.
pub const CANDIDATE_ROUTE: &str = r#"    allow: [order_id, "shipments[*].name", "shipments[*].email", "shipments[*].phone", "shipments[*].address.**", "shipments[*].items[*].sku", "shipments[*].items[*].qty"]
    transform: { "shipments[*].customer_id": pseudonymize, "shipments[*].card_number": mask }
"#;

pub fn partner(upstream: &str, route: &str) -> String {
    format!(
        "kind: contractor\npurpose: shipping\nupstream: {upstream}\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    records: shipments[*]\n    subject: customer_id\n{route}allowed_callers: [orders-service]\npseudonymize_key_env: LOAD_PSEUDONYM_KEY\n"
    )
}

pub const KEY: &str = "load-test-key-0123456789abcdef0123456789";
