/*!
What the shadow thread costs in CPU per request, as a ratio against the live decision in the
same run: the live decision alone (`plan::plan`, what the proxy runs on the request path),
against the live decision plus everything the shadow thread does for the same request (the live
and the candidate decision again with detail, both read into `shadow::Decision`, and `compare`),
on a realistic ~1 KiB shipment batch whose candidate differs in 3 paths. The gateway does this
work on its shadow thread, off the request path; `benches/shadow.rs` at the workspace root
measures the throughput of a gateway with and without a shadow policy.

`cargo bench -p partner-gateway-core --bench shadow_decide` (env `SHADOW_ROUNDS`, default 9).
Nothing is asserted: the numbers are printed.
*/
use std::hint::black_box;
use std::time::{Duration, Instant};

use gateway_core::plan::{self, Incoming, OptOuts};
use gateway_core::policy::{load, Policy, PolicySource, SourceFile};
use gateway_core::shadow::{compare, Decision};

const ACTIVE_ROUTE: &str = r#"    allow: [order_id, "shipments[*].name", "shipments[*].address.**", "shipments[*].items[*].sku", "shipments[*].items[*].qty"]
    transform: { "shipments[*].customer_id": pseudonymize, "shipments[*].card_number": last4 }
"#;
/// Sends `email` and `phone` too, masks the card instead: three differences per record.
const CANDIDATE_ROUTE: &str = r#"    allow: [order_id, "shipments[*].name", "shipments[*].email", "shipments[*].phone", "shipments[*].address.**", "shipments[*].items[*].sku", "shipments[*].items[*].qty"]
    transform: { "shipments[*].customer_id": pseudonymize, "shipments[*].card_number": mask }
"#;

fn partner(upstream: &str, route: &str) -> String {
    format!(
        "kind: contractor\npurpose: shipping\nupstream: {upstream}\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    records: shipments[*]\n    subject: customer_id\n{route}allowed_callers: [orders-service]\npseudonymize_key_env: LOAD_PSEUDONYM_KEY\n"
    )
}

const KEY: &str = "load-test-key-0123456789abcdef0123456789";

/// A realistic ~1 KiB shipment batch: two customers with the personal data the policy names
/// (the same body as the workspace's load benchmarks).
fn body() -> Vec<u8> {
    let record = |id: u32| {
        format!(
            r#"{{"customer_id":"c-{id}","name":"Ana Lima","email":"ana{id}@example.com","phone":"+351 912 345 678","card_number":"4111 1111 1111 1111","address":{{"street":"Rua das Flores 12","city":"Porto","postal_code":"4050-262","country":"PT"}},"items":[{{"sku":"OHS-LAPTOP-14","qty":1,"unit_price":1299.00}},{{"sku":"OHS-SLEEVE-14","qty":1,"unit_price":39.90}}],"client":{{"ip_address":"203.0.113.7","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0"}}}}"#
        )
    };
    format!(
        r#"{{"order_id":"o-20260815-0042","shipments":[{},{}]}}"#,
        record(1001),
        record(1002)
    )
    .into_bytes()
}

fn in_process_policy(route: &str) -> Policy {
    let env: std::collections::BTreeMap<String, String> =
        [("LOAD_PSEUDONYM_KEY".to_string(), KEY.to_string())].into();
    let source = PolicySource {
        dir: "policy".into(),
        gateway: SourceFile {
            path: "policy/gateway.yaml".into(),
            text: "callers: { allow_unauthenticated: true }\nsigning: { disabled: true }\n".into(),
        },
        partners: vec![SourceFile {
            path: "policy/partners/acme-ship.yaml".into(),
            text: partner("http://127.0.0.1:9", route),
        }],
    };
    load(&source, Some(&env)).expect("bench policy").policy
}

fn decide(
    policy: &Policy,
    body: &[u8],
    detail: bool,
) -> Result<plan::Outgoing, gateway_core::Refusal> {
    let headers = vec![("content-type".to_string(), "application/json".to_string())];
    let incoming = Incoming {
        query: None,
        headers: &headers,
        body,
    };
    let target = plan::resolve(&policy.partners, "POST", "/acme-ship/v1/shipments")?;
    plan::plan(
        &target,
        &incoming,
        &policy.gateway.limits,
        OptOuts::NotLoaded,
        detail,
    )
}

/// Nanoseconds per iteration of `f`, the median of `rounds` rounds of about 300 ms.
fn time(rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut per_round = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            for _ in 0..64 {
                f();
            }
            n += 64;
        }
        per_round.push(started.elapsed().as_nanos() as f64 / n as f64);
    }
    per_round.sort_by(f64::total_cmp);
    per_round[per_round.len() / 2]
}

fn in_process(rounds: usize) {
    let active = in_process_policy(ACTIVE_ROUTE);
    let candidate = in_process_policy(CANDIDATE_ROUTE);
    let body = body();
    let differences = compare(
        &Decision::of(&decide(&active, &body, true)),
        &Decision::of(&decide(&candidate, &body, true)),
    );
    let live = || {
        black_box(decide(&active, black_box(&body), false).is_ok());
    };
    let shadow_work = || {
        let a = Decision::of(&decide(&active, &body, true));
        let s = Decision::of(&decide(&candidate, &body, true));
        black_box(compare(&a, &s));
    };
    let mut live_ns = Vec::new();
    let mut both_ns = Vec::new();
    // Interleaved, so both see the same machine.
    for _ in 0..rounds {
        live_ns.push(time(1, live));
        both_ns.push(time(1, || {
            live();
            shadow_work();
        }));
    }
    live_ns.sort_by(f64::total_cmp);
    both_ns.sort_by(f64::total_cmp);
    let (l, b) = (live_ns[rounds / 2], both_ns[rounds / 2]);
    println!(
        "in process, {} byte body, {} differences per request:",
        body.len(),
        differences.len()
    );
    println!("  live decision alone             : {:8.2} µs", l / 1e3);
    println!("  live + shadow decision + compare: {:8.2} µs", b / 1e3);
    println!("  CPU ratio (shadow on / off)     : {:.2}", b / l);
}

fn main() {
    let rounds = std::env::var("SHADOW_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9usize)
        .max(1);
    in_process(rounds);
}
