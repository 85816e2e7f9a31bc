/*!
What shadow mode costs in CPU per request, as ratios against the live decision in the same run,
on a realistic ~1 KiB shipment batch whose candidate differs in 3 paths:
- the live decision with shadow off (`plan::plan`, what the proxy runs on the request path);
- the live decision with shadow on (`plan::plan_forwarded`: the filter also notes what it
  forwards, for the shadow thread);
- that plus everything the shadow thread does for the request: the live decision read from the
  note, the candidate's `plan_forwarded`, and `compare`.

The gateway does the last part on its shadow thread, off the request path; `benches/shadow.rs`
at the workspace root measures the throughput of a gateway with and without a shadow policy.

`cargo bench -p partner-gateway-core --bench shadow_decide` (env `SHADOW_ROUNDS`, default 9).
Times are this thread's CPU time (not wall time), so other processes on a busy machine change
them little. Nothing is asserted: the numbers are printed.
*/
use std::hint::black_box;

use gateway_core::plan::{self, Incoming, OptOuts};
use gateway_core::policy::{load, Policy, PolicySource, SourceFile};
use gateway_core::shadow::{compare_noted, Noted};
use gateway_core::Refusal;

#[path = "../../../benches/support/sample.rs"]
mod sample;
#[path = "../../../benches/support/shadow_workload.rs"]
mod shadow_workload;

use sample::body;
use shadow_workload::{partner, ACTIVE_ROUTE, CANDIDATE_ROUTE, KEY};

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

fn decide(policy: &Policy, body: &[u8], noting: bool) -> Result<plan::Outgoing, Refusal> {
    let headers = [("content-type", "application/json")];
    let incoming = Incoming {
        query: None,
        headers: &headers,
        body,
    };
    let target = plan::resolve(&policy.partners, "POST", "/acme-ship/v1/shipments")?;
    let limits = &policy.gateway.limits;
    if noting {
        plan::plan_forwarded(&target, &incoming, limits, OptOuts::NotLoaded)
    } else {
        plan::plan(&target, &incoming, limits, OptOuts::NotLoaded, false)
    }
}

/// This thread's CPU time so far, in nanoseconds: unlike wall time, it does not grow while
/// other processes (builds, other benchmarks) hold the CPU.
fn cpu_ns() -> u128 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

/// CPU nanoseconds per iteration of `f`, the median of `rounds` rounds of about 300 ms of CPU.
fn time(rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut per_round = Vec::new();
    for _ in 0..rounds {
        let started = cpu_ns();
        let mut n = 0u64;
        while cpu_ns() - started < 300_000_000 {
            for _ in 0..64 {
                f();
            }
            n += 64;
        }
        per_round.push((cpu_ns() - started) as f64 / n as f64);
    }
    per_round.sort_by(f64::total_cmp);
    per_round[per_round.len() / 2]
}

/// What the shadow thread does with one request: the live decision read from what the request
/// path noted, the candidate's decision, and the comparison.
fn shadow_work(live: &Noted, candidate: &Policy, body: &[u8]) -> usize {
    let shadow = Noted::take(&mut decide(candidate, body, true));
    compare_noted(live, &shadow).map_or(0, |d| d.len())
}

/// A measured case: its name, and one iteration.
type Case<'a> = (&'static str, Box<dyn FnMut() + 'a>);

fn in_process(rounds: usize) {
    let active = in_process_policy(ACTIVE_ROUTE);
    let candidate = in_process_policy(CANDIDATE_ROUTE);
    let body = body();
    let live = Noted::take(&mut decide(&active, &body, true));
    let shadow = Noted::take(&mut decide(&candidate, &body, true));
    let differences = shadow_work(&live, &candidate, &body);
    let mut cases: Vec<Case<'_>> = vec![
        (
            "live decision, shadow off (plan)",
            Box::new(|| {
                black_box(decide(&active, black_box(&body), false).is_ok());
            }),
        ),
        (
            "live decision, shadow on (plan_forwarded)",
            Box::new(|| {
                black_box(decide(&active, black_box(&body), true).is_ok());
            }),
        ),
        (
            "live decision + shadow thread's work",
            Box::new(|| {
                let live = Noted::take(&mut decide(&active, black_box(&body), true));
                black_box(shadow_work(&live, &candidate, &body));
            }),
        ),
        (
            "  of which reading both decisions + compare",
            Box::new(|| {
                black_box(compare_noted(&live, &shadow));
            }),
        ),
    ];
    let mut ns = vec![Vec::new(); cases.len()];
    // Interleaved, so all see the same machine.
    for _ in 0..rounds {
        for (i, (_, f)) in cases.iter_mut().enumerate() {
            ns[i].push(time(1, f));
        }
    }
    let median: Vec<f64> = ns
        .iter_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    println!(
        "in process, {} byte body, {differences} differences per request, median of {rounds} rounds (thread CPU time):",
        body.len(),
    );
    for ((name, _), t) in cases.iter().zip(&median) {
        println!("  {name:<46}: {:8.2} µs", t / 1e3);
    }
    let (off, on, both) = (median[0], median[1], median[2]);
    let name = "shadow thread's work per request";
    println!("  {name:<46}: {:8.2} µs", (both - on) / 1e3);
    println!("  {:<46}: {:.3}", "request path on / off", on / off);
    println!(
        "  {:<46}: {:.3}",
        "decision CPU on / off (both threads)",
        both / off
    );
}

fn main() {
    let rounds = std::env::var("SHADOW_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9usize)
        .max(1);
    in_process(rounds);
}
