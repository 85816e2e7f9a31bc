//! Throughput with the disclosure ledger on vs off, in one run: two gateways with the same
//! policy in front of one mock partner, one of them writing a ledger (a record and an outcome
//! line per request, fdatasync every 100 ms). Rounds alternate between them so both see the
//! same machine; the ratios are what matter, not the absolute numbers. Printed per round and
//! over all rounds:
//! - requests per second, on / off (per round, over all rounds, and the median round's ratio);
//! - CPU per request of each gateway process, from the kernel's per-thread run time
//!   (`schedstat` of every thread), and of it the ledger's sync thread: what a CPU-bound
//!   machine's throughput follows. The clients and the mock partner share the machine's cores,
//!   so requests per second move with everything else running; CPU per request much less.
//!
//! `cargo bench --bench ledger` (env `LOAD_REQUESTS` per round, default 1000; `LOAD_THREADS`,
//! default 4; `LOAD_ROUNDS`, default 3).
#[path = "support/procs.rs"]
mod procs;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use partner_gateway::http1;
use procs::{cpu_ns, free_addr, wait_for, Killed, BIN};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn body(i: usize) -> Vec<u8> {
    format!(
        r#"{{"order_id":"o-{i}","shipments":[{{"customer_id":"c-{i}","name":"Ana Lima","email":"ana@example.com","card_number":"4111 1111 1111 1111","address":{{"street":"Rua das Flores 12","city":"Porto"}},"items":[{{"sku":"OHS-1","qty":1}}]}},{{"customer_id":{i},"name":"Bo","items":[{{"sku":"OHS-2","qty":2}}]}}]}}"#
    )
    .into_bytes()
}

/// Requests per second for `total` requests from `threads` threads.
fn run(addr: SocketAddr, total: usize, threads: usize) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for i in 0..total / threads {
                    let r = http1::send(
                        &addr.to_string(),
                        "POST",
                        "/acme-ship/v1/shipments",
                        &[("content-type", "application/json")],
                        Some(&body(t * total + i)),
                    )
                    .unwrap();
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                }
            });
        }
    });
    (total / threads * threads) as f64 / started.elapsed().as_secs_f64()
}

fn gateway(dir: &Path, mock: SocketAddr, ledger: bool) -> (Killed, SocketAddr) {
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::create_dir_all(dir.join("policy/partners")).unwrap();
    let (listen, admin) = (free_addr(), free_addr());
    let ledger = if ledger {
        "ledger: { path: data/ledger, subject_key_env: BENCH_LEDGER_KEY }\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("policy/gateway.yaml"),
        format!(
            "listen: {listen}\nadmin_listen: {admin}\ncallers: {{ allow_unauthenticated: true }}\nsigning: {{ issuer: https://partner-gateway.ohsoft.example, key: {root}/certs/data-use-signing.pem, kid: data-use-1 }}\n{ledger}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("policy/partners/acme-ship.yaml"),
        format!(
            "kind: contractor\npurpose: shipping\nupstream: http://{mock}\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    records: shipments[*]\n    subject: customer_id\n    allow: [order_id, \"shipments[*].customer_id\", \"shipments[*].name\", \"shipments[*].address.**\", \"shipments[*].items[*].sku\"]\n    transform: {{ \"shipments[*].card_number\": last4 }}\n    categories: {{ \"shipments[*].name\": user.name, \"shipments[*].address.**\": user.contact.address, \"shipments[*].card_number\": user.financial.credit_card }}\n"
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--policy"])
        .arg(dir.join("policy"))
        .current_dir(dir)
        .env("BENCH_LEDGER_KEY", "bench-ledger-key")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(listen);
    (Killed(child), listen)
}

/// One gateway's measurements over the rounds.
#[derive(Default)]
struct Measured {
    rps: Vec<f64>,
    requests: u64,
    cpu_ns: u64,
    sync_ns: u64,
}

impl Measured {
    /// One round of `total` requests against `addr`, served by process `pid`; its rps.
    fn round(&mut self, pid: u32, addr: SocketAddr, total: usize, threads: usize) -> f64 {
        let before = cpu_ns(pid, "ledger-sync");
        let rps = run(addr, total, threads);
        let after = cpu_ns(pid, "ledger-sync");
        self.rps.push(rps);
        self.requests += (total / threads * threads) as u64;
        self.cpu_ns += after.0 - before.0;
        self.sync_ns += after.1 - before.1;
        rps
    }

    /// Microseconds of CPU per request: the whole process, and the ledger's sync thread.
    fn cpu_us(&self) -> (f64, f64) {
        let per = |ns: u64| ns as f64 / 1e3 / self.requests.max(1) as f64;
        (per(self.cpu_ns), per(self.sync_ns))
    }
}

fn main() {
    let total = env_or("LOAD_REQUESTS", 1000);
    let threads = env_or("LOAD_THREADS", 4);
    let rounds = env_or("LOAD_ROUNDS", 3);
    let dir = std::env::temp_dir().join(format!("pg-ledger-bench-{}", std::process::id()));
    let mock = free_addr();
    let _mock = Killed(
        Command::new(BIN)
            .args(["mock-partner", "--listen", &mock.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(mock);
    let (off_child, off_addr) = gateway(&dir.join("off"), mock, false);
    let (on_child, on_addr) = gateway(&dir.join("on"), mock, true);
    let (off_pid, on_pid) = (off_child.0.id(), on_child.0.id());
    run(off_addr, 200, threads);
    run(on_addr, 200, threads);
    let (mut off, mut on) = (Measured::default(), Measured::default());
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let a = off.round(off_pid, off_addr, total, threads);
        let b = on.round(on_pid, on_addr, total, threads);
        println!(
            "round {round}: ledger off {a:8.0} req/s, on {b:8.0} req/s, on/off {:.3}",
            b / a
        );
        ratios.push(b / a);
    }
    ratios.sort_by(f64::total_cmp);
    let sum = |m: &Measured| m.rps.iter().sum::<f64>();
    println!(
        "{rounds} rounds of {total} requests, {threads} client threads: ledger on / off throughput = {:.3} (median round {:.3})",
        sum(&on) / sum(&off),
        ratios[ratios.len() / 2]
    );
    let ((off_cpu, _), (on_cpu, on_sync)) = (off.cpu_us(), on.cpu_us());
    println!(
        "CPU per request: ledger off {off_cpu:.1} us, on {on_cpu:.1} us (of which the sync thread {on_sync:.2} us): on / off = {:.3}, off / on = {:.3}",
        on_cpu / off_cpu,
        off_cpu / on_cpu
    );
    let ledger = dir.join("on/data/ledger");
    let bytes: u64 = std::fs::read_dir(&ledger)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!("ledger written: {bytes} bytes");
    let _ = std::fs::remove_dir_all(&dir);
}
