/*!
Times the filter engine on the body of `benches/filter.rs` without criterion and without
building the gateway (core only, so a change to the engine rebuilds in a minute or two):

    cargo run --release -p partner-gateway-core --example filter_speed -- [SECONDS] [filter]

It prints the best time of one 1 MiB filter call (and GB/s), of `validate` and of serde_json
skipping the same body (`IgnoredAny`, a yardstick for the machine's state), and the best 1 KiB
call; `filter` as the second argument times only the 1 MiB filter (for `perf record`). Best
times, not means: on a shared machine the minimum is the stable figure. To compare two
versions, build this example at each and run the binaries in alternation. The body and the
policy are those of `benches/filter.rs`: both take them from `benches/support/filter_workload.rs`.
*/
use std::hint::black_box;

use gateway_core::filter::{self, FilterOptions, FilterProgram};

#[path = "../../../benches/support/filter_workload.rs"]
mod workload;

use workload::{body, optouts, spec, KEY};

fn main() {
    let program = FilterProgram::compile(&spec()).expect("bench policy compiles");
    let optouts = optouts();
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
