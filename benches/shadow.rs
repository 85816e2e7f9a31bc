/*!
What a shadow policy costs in throughput, as a ratio against shadow off in the same run: the same
load against one gateway without `shadow` and one with a candidate that differs in 3 paths on
every request, both in front of one mock partner, measured alternately (off, on, off, on) so
drift of the machine hits both alike. The CPU the shadow thread spends per request is measured
in process by `cargo bench -p partner-gateway-core --bench shadow_decide`.

`cargo bench --bench shadow` (env `LOAD_REQUESTS`, default 2000; `LOAD_THREADS`, default 4;
`SHADOW_ROUNDS`, default 3). Nothing is asserted: the numbers are printed.
*/
#[path = "support/procs.rs"]
mod procs;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use partner_gateway::http1;
use procs::{body, free_addr, wait_for, Killed, BIN};

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

/// A gateway in `dir` in front of `upstream`, with a shadow policy when `shadow`.
fn gateway(dir: &Path, upstream: &str, shadow: bool) -> (Killed, SocketAddr, SocketAddr) {
    let (listen, admin) = (free_addr(), free_addr());
    let minimal = "callers: { allow_unauthenticated: true }\nsigning: { disabled: true }\n";
    for (name, route) in [("policy", ACTIVE_ROUTE), ("policy-next", CANDIDATE_ROUTE)] {
        std::fs::create_dir_all(dir.join(name).join("partners")).unwrap();
        std::fs::write(
            dir.join(name).join("partners/acme-ship.yaml"),
            partner(upstream, route),
        )
        .unwrap();
        std::fs::write(dir.join(name).join("gateway.yaml"), minimal).unwrap();
    }
    let shadow = if shadow {
        "shadow: { policy: policy-next }\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("policy/gateway.yaml"),
        format!("listen: {listen}\nadmin_listen: {admin}\nadmin_token_env: BENCH_ADMIN_TOKEN\n{shadow}{minimal}"),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--policy"])
        .arg(dir.join("policy"))
        .env("LOAD_PSEUDONYM_KEY", KEY)
        .env("BENCH_ADMIN_TOKEN", "bench")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(listen);
    wait_for(admin);
    (Killed(child), listen, admin)
}

/// Sends `total` requests from `threads` threads; returns requests per second.
fn drive(addr: SocketAddr, total: usize, threads: usize) -> f64 {
    let body = body();
    let headers = [("content-type", "application/json")];
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..total / threads {
                    let r = http1::send(
                        &addr.to_string(),
                        "POST",
                        "/acme-ship/v1/shipments",
                        &headers,
                        Some(&body),
                    )
                    .unwrap();
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                }
            });
        }
    });
    (total / threads * threads) as f64 / started.elapsed().as_secs_f64()
}

fn shadow_report(admin: SocketAddr) -> serde_json::Value {
    let r = http1::send(
        &admin.to_string(),
        "GET",
        "/shadow",
        &[("authorization", "Bearer bench")],
        None,
    )
    .unwrap();
    serde_json::from_slice(&r.body).unwrap_or_default()
}

fn through_the_gateway(rounds: usize) {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (total, threads) = (env("LOAD_REQUESTS", 2000), env("LOAD_THREADS", 4));
    let root = std::env::temp_dir().join(format!("pg-shadow-bench-{}", std::process::id()));
    let mock_addr = free_addr();
    let _mock = Killed(
        Command::new(BIN)
            .args(["mock-partner", "--listen", &mock_addr.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(mock_addr);
    let upstream = format!("http://{mock_addr}");
    let (_off, off_addr, _) = gateway(&root.join("off"), &upstream, false);
    let (_on, on_addr, on_admin) = gateway(&root.join("on"), &upstream, true);
    drive(off_addr, 200, threads);
    drive(on_addr, 200, threads);
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        off.push(drive(off_addr, total, threads));
        on.push(drive(on_addr, total, threads));
    }
    off.sort_by(f64::total_cmp);
    on.sort_by(f64::total_cmp);
    let (off, on) = (off[rounds / 2], on[rounds / 2]);
    let report = shadow_report(on_admin);
    println!(
        "through the gateway, {total} requests x {rounds} rounds, {threads} client threads, a new connection per request:"
    );
    println!("  shadow off                  : {off:8.0} req/s (median)");
    println!("  shadow on                   : {on:8.0} req/s (median)");
    println!("  throughput ratio (on / off) : {:.3}", on / off);
    println!(
        "  shadow thread: {} decided, {} skipped (queue full), {} differences",
        report["evaluated"], report["skipped"], report["differences_total"]
    );
    let _ = std::fs::remove_dir_all(&root);
}

fn main() {
    let rounds = std::env::var("SHADOW_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    through_the_gateway(rounds);
}
