/*!
Times the filter engine without criterion and without building the gateway (core only, so a
change to the engine rebuilds in a minute or two), on two workloads:

- `bench`: the body and policy of `benches/filter.rs` (`benches/support/filter_workload.rs`);
- `load`: the body and route policy of the load benchmark, `benches/load` (mirrored in
  `benches/support/load_workload.rs`).

```text
cargo run --release -p partner-gateway-core --example filter_speed -- [SECONDS] [bench|load] [filter|small]
cargo run --release -p partner-gateway-core --example filter_speed -- dump DIR
```

For each workload (both unless one is named) it prints the best time of one 1 MiB filter call
(and GB/s), of `validate` and of serde_json skipping the same body (`IgnoredAny`, a yardstick
for the machine's state), and the best 1 KiB call; `filter` times only the 1 MiB filter and
`small` only the 1 KiB one (for `perf record`). Best times, not means: on a shared machine the
minimum is the stable figure. To compare two versions, build this example at each and run the
binaries in alternation.
*/
use std::hint::black_box;
use std::time::Instant;

use gateway_core::filter::{self, FilterOptions, FilterProgram};

#[path = "../../../benches/support/filter_workload.rs"]
mod workload;

#[path = "../../../benches/support/load_workload.rs"]
mod load_workload;

/// The best time of `run` over `secs` seconds.
fn best_of(secs: f64, mut run: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        run();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn time(
    name: &str,
    program: &FilterProgram,
    options: &FilterOptions<'_>,
    body: impl Fn(usize) -> Vec<u8>,
    secs: f64,
    (only_filter, only_small): (bool, bool),
) {
    if only_small {
        let small = body(1024);
        let best = best_of(secs, || {
            black_box(filter::filter(program, black_box(&small), options).unwrap());
        });
        println!("{name}: 1KiB filter best {:.2} us", best * 1e6);
        return;
    }
    let big = body(1024 * 1024);
    let out = filter::filter(program, &big, options).expect("the workload passes the filter");
    println!("{name}: in {} out {}", big.len(), out.body.len());
    let once = || {
        let n = filter::filter(program, black_box(&big), options).map(|f| f.body.len());
        black_box(n.expect("ok"));
    };
    let best = best_of(secs, once);
    println!(
        "{name}: 1MiB filter best {:.3} ms = {:.2} GB/s",
        best * 1e3,
        big.len() as f64 / best / 1e9
    );
    if only_filter {
        return;
    }
    let best = best_of(secs, || {
        assert!(black_box(filter::validate(black_box(&big), 64).is_ok()));
    });
    println!("{name}: validate best {:.3} ms", best * 1e3);
    let best = best_of(secs, || {
        black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&big)).unwrap());
    });
    println!("{name}: serde IgnoredAny best {:.3} ms", best * 1e3);
    let small = body(1024);
    let mut best = f64::MAX;
    let t0 = Instant::now();
    for _ in 0..20000 {
        let t = Instant::now();
        black_box(filter::filter(program, black_box(&small), options).unwrap());
        best = best.min(t.elapsed().as_secs_f64());
    }
    let mean = t0.elapsed().as_secs_f64() / 20000.0;
    println!(
        "{name}: 1KiB best {:.2} us mean {:.2} us",
        best * 1e6,
        mean * 1e6
    );
}

/// Writes the `bench` workload to `dir` (see the module docs).
fn dump(dir: &std::path::Path) -> std::io::Result<()> {
    let spec = workload::spec();
    let mut policy = String::new();
    for path in &spec.allow {
        policy += &format!("allow {path}\n");
    }
    for (path, t) in &spec.transforms {
        policy += &format!("transform {path} {}\n", t.name());
    }
    if let (Some(records), Some(subject)) = (&spec.records, &spec.subject) {
        policy += &format!("records {records}\nsubject {subject}\n");
    }
    policy += &format!("key {}\n", String::from_utf8_lossy(workload::KEY));
    let optouts = workload::optouts();
    for id in &optouts.0 {
        policy += &format!("optout {id}\n");
    }
    let program = FilterProgram::compile(&spec).expect("bench policy compiles");
    let body = workload::body(1024 * 1024);
    let options = workload::options(&optouts);
    let filtered = filter::filter(&program, &body, &options).expect("the workload passes");
    std::fs::write(dir.join("body.json"), &body)?;
    std::fs::write(dir.join("filtered.json"), &filtered.body)?;
    std::fs::write(dir.join("policy.txt"), policy)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [first, dir] = args.as_slice() {
        if first == "dump" {
            dump(std::path::Path::new(dir)).expect("the workload is written");
            return;
        }
    }
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let has = |word: &str| args.iter().any(|a| a == word);
    let only_filter = has("filter");
    let only_small = has("small");
    let both = !has("bench") && !has("load");
    if both || has("bench") {
        let program = FilterProgram::compile(&workload::spec()).expect("bench policy compiles");
        let optouts = workload::optouts();
        let options = workload::options(&optouts);
        time(
            "bench",
            &program,
            &options,
            workload::body,
            secs,
            (only_filter, only_small),
        );
    }
    if both || has("load") {
        let program = FilterProgram::compile(&load_workload::spec()).expect("load policy compiles");
        let optouts = load_workload::NoOptOuts;
        let options = load_workload::options(&optouts);
        time(
            "load",
            &program,
            &options,
            load_workload::body,
            secs,
            (only_filter, only_small),
        );
    }
}
