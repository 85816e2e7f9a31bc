/*!
Times the filter engine on the body of `benches/filter.rs` without criterion and without
building the gateway (core only, so a change to the engine rebuilds in a minute or two):

    cargo run --release -p partner-gateway-core --example filter_speed -- [SECONDS] [filter]

It prints the best time of one 1 MiB filter call (and GB/s), of `validate` and of serde_json
skipping the same body (`IgnoredAny`, a yardstick for the machine's state), and the best 1 KiB
call; `filter` as the second argument times only the 1 MiB filter (for `perf record`). Best
times, not means: on a shared machine the minimum is the stable figure. To compare two
versions, build this example at each and run the binaries in alternation. The body and the
policy are those of `benches/filter.rs` (kept in step by hand).
*/
use gateway_core::filter::FieldPath;
use gateway_core::filter::{
    self, FilterOptions, FilterProgram, FilterSpec, OptOutLookup, Transform,
};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::hint::black_box;
const KEY: &[u8] = b"bench-pseudonym-key";
const ALLOW: &[&str] = &[
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
const TRANSFORMS: &[(&str, Transform)] = &[
    ("shipments[*].customer_id", Transform::Pseudonymize),
    ("shipments[*].card_number", Transform::Last4),
    ("shipments[*].email", Transform::Mask),
];

struct OptOuts(HashSet<String>);

impl OptOutLookup for OptOuts {
    fn is_opted_out(&self, subject: &str) -> bool {
        self.0.contains(subject)
    }
}

/// A tiny deterministic PRNG so the bodies are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn shipment(rng: &mut Rng, i: u64) -> Value {
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
fn body(target: usize) -> Vec<u8> {
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

fn spec() -> FilterSpec {
    let path = |p: &str| FieldPath::parse(p).expect("valid path");
    FilterSpec {
        removes: Vec::new(),
        allow: ALLOW.iter().map(|p| path(p)).collect(),
        transforms: TRANSFORMS.iter().map(|(p, t)| (path(p), *t)).collect(),
        records: Some(path("shipments[*]")),
        subject: Some("customer_id".into()),
    }
}

fn main() {
    let program = FilterProgram::compile(&spec()).expect("bench policy compiles");
    let optouts = OptOuts(
        (100_000..100_000 + 5000)
            .step_by(7)
            .map(|id: u64| id.to_string())
            .collect(),
    );
    let options = FilterOptions {
        max_depth: 64,
        pseudonymize_key: Some(KEY),
        optouts: Some(&optouts),
        detail: false,
        subjects: false,
    };
    let body = body(1024 * 1024);
    let out = filter::filter(&program, &body, &options).expect("ok");
    println!("in {} out {}", body.len(), out.body.len());
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let mut best = f64::MAX;
    let t0 = std::time::Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        let t = std::time::Instant::now();
        let n = filter::filter(&program, black_box(&body), &options)
            .map(|f| f.body.len())
            .unwrap();
        black_box(n);
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "best {:.3} ms = {:.2} GB/s",
        best * 1e3,
        body.len() as f64 / best / 1e9
    );
    if std::env::args().nth(2).as_deref() == Some("filter") {
        return;
    }
    let mut best = f64::MAX;
    let t0 = std::time::Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        let t = std::time::Instant::now();
        assert!(black_box(filter::validate(black_box(&body), 64).is_ok()));
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("validate best {:.3} ms", best * 1e3);
    let mut best = f64::MAX;
    let t0 = std::time::Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        let t = std::time::Instant::now();
        black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).unwrap());
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("serde IgnoredAny best {:.3} ms", best * 1e3);
    let small = self::body(1024);
    let mut best = f64::MAX;
    let t0 = std::time::Instant::now();
    for _ in 0..20000 {
        let t = std::time::Instant::now();
        black_box(filter::filter(&program, black_box(&small), &options).unwrap());
        best = best.min(t.elapsed().as_secs_f64());
    }
    let mean = t0.elapsed().as_secs_f64() / 20000.0;
    println!("1KiB best {:.2} us mean {:.2} us", best * 1e6, mean * 1e6);
}
