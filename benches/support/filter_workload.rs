/*!
The filter benchmark's workload, shared by `benches/filter.rs` (criterion, against a
`serde_json::Value` baseline) and the core's `filter_speed` example (best-of timing without
building the gateway): the shipping-partner policy (allow list, `last4`, `pseudonymize`, opt-out
dropping), its opted-out customers, and deterministic bodies of a given size.
*/
use std::collections::HashSet;

use gateway_core::filter::{FieldPath, FilterOptions, FilterSpec, OptOutLookup, Transform};
use serde_json::{json, Value};

pub const KEY: &[u8] = b"bench-pseudonym-key";
pub const ALLOW: &[&str] = &[
    "order_id",
    "partner_ref",
    "shipments[*].customer_id",
    "shipments[*].name",
    "shipments[*].address.**",
    "shipments[*].items[*].sku",
    "shipments[*].items[*].qty",
    "shipments[*].hardware.model",
    "shipments[*].hardware.serial",
    "shipments[*].problem",
];
pub const TRANSFORMS: &[(&str, Transform)] = &[
    ("shipments[*].customer_id", Transform::Pseudonymize),
    ("shipments[*].card_number", Transform::Last4),
    ("shipments[*].email", Transform::Mask),
];

pub struct OptOuts(pub HashSet<String>);

impl OptOutLookup for OptOuts {
    fn is_opted_out(&self, subject: &str) -> bool {
        self.0.contains(subject)
    }
}

/// A tiny deterministic PRNG so the bodies are the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

pub fn shipment(rng: &mut Rng, i: u64) -> Value {
    let first = rng.pick(&[
        "Ann", "Bob", "Chloé", "Dmitri", "Eve", "Fatima", "Günther", "Hiro",
    ]);
    let last = rng.pick(&[
        "Smith", "O'Brien", "Müller", "Nakamura", "García", "Kowalski",
    ]);
    let items: Vec<Value> = (0..1 + rng.next() % 3)
        .map(|j| {
            json!({
                "sku": format!("SKU-{:05}", rng.next() % 100_000),
                "qty": 1 + j,
                "price": format!("{}.{:02}", rng.next() % 500, rng.next() % 100).parse::<f64>().unwrap_or(1.5),
                "description": rng.pick(&["USB-C cable, 2 m", "Laptop \"Pro\" 14\"", "Mouse\twireless", "Docking station"]),
            })
        })
        .collect();
    json!({
        "customer_id": 100_000 + i,
        "name": format!("{first} {last}"),
        "email": format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase()),
        "phone": "+44 20 7946 0958",
        "address": {
            "street": format!("{} High Street", rng.next() % 300),
            "city": rng.pick(&["London", "Zürich", "Kraków", "Lyon"]),
            "zip": format!("{:05}", rng.next() % 100_000),
            "country": rng.pick(&["GB", "CH", "PL", "FR"]),
        },
        "card_number": format!("4111 1111 1111 {:04}", rng.next() % 10_000),
        "items": items,
        "hardware": { "model": "OhBook 14", "serial": format!("OB14-{:08X}", rng.next() % 0xFFFF_FFFF), "ram_gb": 16, "cpu": "M3" },
        "software": [
            { "name": "OhOffice", "version": "12.4.1", "license": format!("LIC-{}", rng.next()) },
            { "name": "OhSync", "version": "3.0.0-beta.2" }
        ],
        "problem": rng.pick(&[
            "Screen flickers after waking from sleep.\nHappens on battery only; logs attached: \"dmesg | tail\".",
            "Keyboard backlight stays off — tried Fn+F5, no change. Customer says: \"it worked yesterday\".",
            "Sync fails with error 0x80070005 \\ access denied on C:\\Users\\ann\\Documents.",
        ]),
        "ip": format!("203.0.113.{}", rng.next() % 255),
        "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15",
    })
}

/// A shipments body of about `target` bytes (at least one shipment).
pub fn body(target: usize) -> Vec<u8> {
    const ENVELOPE: usize = 120;
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut shipments = Vec::new();
    let mut size = ENVELOPE;
    for i in 0.. {
        let s = shipment(&mut rng, i);
        size += serde_json::to_vec(&s).map(|v| v.len()).unwrap_or(0) + 1;
        if size > target && !shipments.is_empty() {
            break;
        }
        shipments.push(s);
    }
    let body = json!({ "order_id": 98_765, "partner_ref": "acme-ship", "trace": { "span": "abc", "sampled": true }, "shipments": shipments });
    serde_json::to_vec(&body).expect("serializable")
}

pub fn spec() -> FilterSpec {
    shipments_spec(ALLOW, TRANSFORMS)
}

/// A policy with `allow` and `transforms` over `shipments[*]` records whose subject is
/// `customer_id` (this workload's, and the load benchmark's in `load_workload`).
pub fn shipments_spec(allow: &[&str], transforms: &[(&str, Transform)]) -> FilterSpec {
    let path = |p: &str| FieldPath::parse(p).expect("valid path");
    FilterSpec {
        removes: Vec::new(),
        allow: allow.iter().map(|p| path(p)).collect(),
        transforms: transforms.iter().map(|(p, t)| (path(p), *t)).collect(),
        records: Some(path("shipments[*]")),
        subject: Some("customer_id".into()),
    }
}

/// How the workload is filtered: pseudonymized with [`KEY`], opt-outs checked against
/// `optouts`, no detail and no subject ids collected.
pub fn options(optouts: &OptOuts) -> FilterOptions<'_> {
    FilterOptions {
        max_depth: 64,
        pseudonymize_key: Some(KEY),
        optouts: Some(optouts),
        detail: false,
        subjects: false,
    }
}

/// The opted-out customers: every 7th id of the 5,000 the bodies use.
pub fn optouts() -> OptOuts {
    OptOuts(
        (100_000..100_000 + 5000)
            .step_by(7)
            .map(|id: u64| id.to_string())
            .collect(),
    )
}
