//! End-to-end load: the same requests sent straight to a mock partner (the baseline) and through
//! the gateway in front of it, in one run, with the ratio printed. Measures what the gateway adds
//! per request (routing, reading the whole body, filtering, signing the data-use token, a second
//! hop), not absolute numbers: both sides share the machine.
//!
//! `cargo bench --bench proxy_load` (env `LOAD_REQUESTS`, default 2000; `LOAD_THREADS`, default 2).
#[path = "support/procs.rs"]
mod procs;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use partner_gateway::http1;
use procs::{body, free_addr, wait_for, Killed, BIN};

/// Sends `total` requests from `threads` threads; returns (requests per second, p50, p99).
fn run(
    addr: SocketAddr,
    target: &str,
    total: usize,
    threads: usize,
    headers: &[(&str, &str)],
) -> (f64, Duration, Duration) {
    let body = body();
    let started = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let body = body.clone();
                scope.spawn(move || {
                    let mut own = Vec::new();
                    for _ in 0..total / threads {
                        let t = Instant::now();
                        let r =
                            http1::send(&addr.to_string(), "POST", target, headers, Some(&body))
                                .unwrap();
                        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                        own.push(t.elapsed());
                    }
                    own
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    (
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
    )
}

fn main() {
    let total: usize = std::env::var("LOAD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let threads: usize = std::env::var("LOAD_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = std::env::temp_dir().join(format!("pg-load-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("policy/partners")).unwrap();

    let mock_addr = free_addr();
    let _mock = Killed(
        Command::new(BIN)
            .args(["mock-partner", "--listen", &mock_addr.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (listen, admin) = (free_addr(), free_addr());
    std::fs::write(
        dir.join("policy/gateway.yaml"),
        format!(
            "listen: {listen}\nadmin_listen: {admin}\ncallers: {{ issuer: https://auth.ohsoft.example, audience: partner-gateway, keys: {root}/certs/callers.jwks.json }}\nsigning: {{ issuer: https://partner-gateway.ohsoft.example, key: {root}/certs/data-use-signing.pem, kid: data-use-1 }}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("policy/partners/acme-ship.yaml"),
        format!(
            "kind: contractor\npurpose: shipping\nupstream: http://{mock_addr}\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    records: shipments[*]\n    subject: customer_id\n    allow: [order_id, \"shipments[*].name\", \"shipments[*].address.**\", \"shipments[*].items[*].sku\", \"shipments[*].items[*].qty\"]\n    transform: {{ \"shipments[*].customer_id\": pseudonymize, \"shipments[*].card_number\": last4 }}\nallowed_callers: [orders-service]\npseudonymize_key_env: LOAD_PSEUDONYM_KEY\n"
        ),
    )
    .unwrap();
    let _gateway = Killed(
        Command::new(BIN)
            .args(["serve", "--policy"])
            .arg(dir.join("policy"))
            .env(
                "LOAD_PSEUDONYM_KEY",
                "load-test-key-0123456789abcdef0123456789",
            )
            .spawn()
            .unwrap(),
    );
    wait_for(mock_addr);
    wait_for(listen);
    let token = partner_gateway::cli::token::mint(
        std::path::Path::new(&format!("{root}/certs/callers-demo.pem")),
        "orders-service",
        Duration::from_secs(3600),
        "https://auth.ohsoft.example",
        "partner-gateway",
        Some("callers-demo-1"),
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    let headers = [
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
    ];

    // Warm both paths, then measure.
    run(mock_addr, "/v1/shipments", 200, threads, &headers);
    run(listen, "/acme-ship/v1/shipments", 200, threads, &headers);
    let (direct_rps, direct_p50, direct_p99) =
        run(mock_addr, "/v1/shipments", total, threads, &headers);
    let (gw_rps, gw_p50, gw_p99) = run(listen, "/acme-ship/v1/shipments", total, threads, &headers);
    println!(
        "{total} requests of {} bytes, {threads} client threads, a new connection per request",
        body().len()
    );
    println!("direct to the mock partner : {direct_rps:8.0} req/s  p50 {direct_p50:?}  p99 {direct_p99:?}");
    println!("through the gateway        : {gw_rps:8.0} req/s  p50 {gw_p50:?}  p99 {gw_p99:?}");
    println!("gateway / direct throughput: {:.2}", gw_rps / direct_rps);
    println!(
        "added p50 latency          : {:?}",
        gw_p50.saturating_sub(direct_p50)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
