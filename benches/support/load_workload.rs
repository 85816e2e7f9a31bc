/*!
The load benchmark's filtering workload in Rust, so the filter engine can be timed on it alone:
the body `benches/load/load.py` posts (`record()` and `body()` there, mirrored byte for byte
here) and the route policy it writes (`write_policy()` there): allow `order_id`, each record's
`customer_id`, `name`, `address.**` and its items' `sku` and `qty`; `last4` on `card_number`;
records `shipments[*]` with subject `customer_id`, opt-outs honoured against an empty store, as
the gateway runs it (the load bench configures no ledger, so no subject ids are collected). `email`, `phone`, `client` and
`unit_price` are unknown to the policy: removed, and counted as drift.

Shared by `benches/filter.rs` (criterion, against a `serde_json::Value` baseline) and the core's
`filter_speed` example, which both include it next to `filter_workload.rs` as `workload`.
*/
use gateway_core::filter::{FilterOptions, FilterSpec, OptOutLookup, Transform};

pub const ALLOW: &[&str] = &[
    "order_id",
    "shipments[*].customer_id",
    "shipments[*].name",
    "shipments[*].address.**",
    "shipments[*].items[*].sku",
    "shipments[*].items[*].qty",
];
pub const TRANSFORMS: &[(&str, Transform)] = &[("shipments[*].card_number", Transform::Last4)];

/// The load bench's opt-out store: loaded, and empty.
pub struct NoOptOuts;

impl OptOutLookup for NoOptOuts {
    fn is_opted_out(&self, _subject: &str) -> bool {
        false
    }
}

pub fn spec() -> FilterSpec {
    super::workload::shipments_spec(ALLOW, TRANSFORMS)
}

/// The options the gateway filters the load bench's requests with.
pub fn options(optouts: &NoOptOuts) -> FilterOptions<'_> {
    FilterOptions {
        max_depth: 64,
        pseudonymize_key: None,
        optouts: Some(optouts),
        detail: false,
        subjects: false,
    }
}

/// Record `i`, as `json.dumps(record(i), separators=(",", ":"))` writes it.
pub fn record(i: usize) -> String {
    format!(
        concat!(
            r#"{{"customer_id":"c-{id}","name":"Ana Lima","email":"ana{i}@example.com","#,
            r#""phone":"+351 912 345 678","card_number":"4111 1111 1111 1111","#,
            r#""address":{{"street":"Rua das Flores 12","city":"Porto","postal_code":"4050-262","country":"PT"}},"#,
            r#""items":[{{"sku":"OHS-LAPTOP-14","qty":1,"unit_price":1299.5}},"#,
            r#"{{"sku":"OHS-SLEEVE-14","qty":1,"unit_price":39.9}}],"#,
            r#""client":{{"ip_address":"203.0.113.7","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0"}}}}"#
        ),
        id = 1000 + i,
        i = i,
    )
}

fn text(n: usize) -> String {
    let records: Vec<String> = (0..n).map(record).collect();
    format!(
        r#"{{"order_id":"o-20260815-0042","shipments":[{}]}}"#,
        records.join(",")
    )
}

/// A shipment batch of about `size` bytes (at least two records): `body(size)` of load.py.
pub fn body(size: usize) -> Vec<u8> {
    let per_record = text(2).len() - text(1).len();
    let mut n = (size / per_record).max(2);
    loop {
        let len = text(n).len();
        if len >= size {
            break;
        }
        n += ((size - len) / per_record).max(1);
    }
    text(n).into_bytes()
}
