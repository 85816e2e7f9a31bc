/*!
What a shadow policy costs, as ratios against shadow off in the same run: the same load against
one gateway without `shadow` and one with a candidate that differs in 3 paths on every request,
both in front of one mock partner, measured alternately (off, on, off, on) so drift of the
machine hits both alike. Printed per gateway:
- requests per second (median of the rounds);
- CPU per request, from the kernel's per-thread run time (`schedstat` of every thread in `/proc/PID/task`): the
  whole process, and of it the shadow thread (`shadow-policy`). CPU per request is what a
  CPU-bound machine's throughput follows, and other processes on a busy machine change it
  little, unlike requests per second;
- from `GET {admin}/shadow`: requests the shadow thread decided and skipped (queue full).

The CPU the decisions take in process is measured by
`cargo bench -p partner-gateway-core --bench shadow_decide`.

`cargo bench --bench shadow` (env `LOAD_REQUESTS`, default 2000; `LOAD_THREADS`, default 4;
`SHADOW_ROUNDS`, default 3). Nothing is asserted: the numbers are printed.
*/
#[path = "support/procs.rs"]
mod procs;
#[path = "support/shadow_workload.rs"]
mod shadow_workload;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use partner_gateway::http1;
use procs::{body, cpu_ns, free_addr, wait_for, Killed, BIN};
use shadow_workload::{partner, ACTIVE_ROUTE, CANDIDATE_ROUTE, KEY};

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

/// One gateway's measurements over the rounds.
#[derive(Default)]
struct Measured {
    rps: Vec<f64>,
    requests: u64,
    cpu_ns: u64,
    shadow_ns: u64,
}

impl Measured {
    /// One round of `total` requests against `addr`, served by process `pid`.
    fn round(&mut self, pid: u32, addr: SocketAddr, total: usize, threads: usize) {
        let before = cpu_ns(pid, "shadow-policy");
        self.rps.push(drive(addr, total, threads));
        let after = cpu_ns(pid, "shadow-policy");
        self.requests += (total / threads * threads) as u64;
        self.cpu_ns += after.0 - before.0;
        self.shadow_ns += after.1 - before.1;
    }

    fn median_rps(&mut self) -> f64 {
        self.rps.sort_by(f64::total_cmp);
        self.rps[self.rps.len() / 2]
    }

    /// Microseconds of CPU per request: the whole process, and the shadow thread.
    fn cpu_us(&self) -> (f64, f64) {
        let per = |ns: u64| ns as f64 / 1e3 / self.requests.max(1) as f64;
        (per(self.cpu_ns), per(self.shadow_ns))
    }
}

fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
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
    let (off_child, off_addr, _) = gateway(&root.join("off"), &upstream, false);
    let (on_child, on_addr, on_admin) = gateway(&root.join("on"), &upstream, true);
    let (off_pid, on_pid) = (off_child.0.id(), on_child.0.id());
    drive(off_addr, 200, threads);
    drive(on_addr, 200, threads);
    let before = shadow_report(on_admin);
    let load_before = load_average();
    let (mut off, mut on) = (Measured::default(), Measured::default());
    for _ in 0..rounds {
        off.round(off_pid, off_addr, total, threads);
        on.round(on_pid, on_addr, total, threads);
    }
    // Let the shadow thread finish its queue before reading its counts.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let report = shadow_report(on_admin);
    let count =
        |name: &str| report[name].as_u64().unwrap_or(0) - before[name].as_u64().unwrap_or(0);
    let (off_rps, on_rps) = (off.median_rps(), on.median_rps());
    let ((off_cpu, _), (on_cpu, on_shadow)) = (off.cpu_us(), on.cpu_us());
    println!(
        "through the gateway, {total} requests x {rounds} rounds, {threads} client threads, a new connection per request"
    );
    println!(
        "  load average before / after : {load_before} / {}",
        load_average()
    );
    println!("  shadow off                  : {off_rps:8.0} req/s (median), {off_cpu:6.1} µs CPU per request");
    println!(
        "  shadow on                   : {on_rps:8.0} req/s (median), {on_cpu:6.1} µs CPU per request ({on_shadow:.1} on the shadow thread)"
    );
    println!("  throughput ratio (on / off) : {:.3}", on_rps / off_rps);
    println!("  CPU per request (on / off)  : {:.3}", on_cpu / off_cpu);
    println!(
        "  shadow thread: {} of {} requests decided, {} skipped (queue full), {} differences",
        count("evaluated"),
        on.requests,
        count("skipped"),
        count("differences_total"),
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
