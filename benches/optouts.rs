/*!
Opt-out store benchmark (plain `main`, `harness = false`): for N opted-out customers,

- import: writing the store (one snapshot) from an in-memory set;
- load: opening the store from disk into memory, in a fresh child process;
- memory per id: the child's RSS growth over the load (`VmRSS`), and the set's own heap count;
- lookups: ns per `is_opted_out`, hit and miss, through a route's precomputed `honouring`
  lookup and through the store's per-call `OptOutSource` path (read lock + scope resolution).

`cargo bench --bench optouts` runs 1 M ids (`cargo test --benches` only 10 000); `OPTOUT_BENCH_SIZES=1000000,10000000` picks sizes
(10 M takes about a minute and ~1.5 GB of memory while generating).
*/

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use gateway_core::optout::{OptOutSet, Scope};
use partner_gateway::optout::OptOutStore;

/// Customer id number `i`: 9–10 digit numeric text, like a real customer number.
fn id(i: u64) -> String {
    (100_000_000 + i.wrapping_mul(2_654_435_761) % 9_000_000_000).to_string()
}

fn scopes_for(i: u64, scopes: &[Scope]) -> &[Scope] {
    match i % 20 {
        0..=15 => &scopes[0..1],  // partner_sharing
        16..=18 => &scopes[1..2], // partner:acme-ship
        _ => &scopes[0..3],       // all three
    }
}

fn all_scopes() -> Vec<Scope> {
    ["partner_sharing", "partner:acme-ship", "research"]
        .iter()
        .map(|s| Scope::parse(s).expect("bench scope"))
        .collect()
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Child process: load the store, report load time, memory and lookup costs on one line.
fn child(dir: &Path, n: u64) {
    let scopes = all_scopes();
    let honoured = vec![scopes[0].clone(), scopes[1].clone()];
    let before = rss_bytes();
    let start = Instant::now();
    let store = OptOutStore::open_read_only(dir).expect("open store");
    let load = start.elapsed().as_secs_f64();
    let after = rss_bytes();
    let heap = store.read().expect("set").heap_bytes() as u64;
    assert_eq!(store.customer_count().expect("count") as u64, n);

    const Q: u64 = 1_000_000;
    let hits: Vec<String> = (0..Q).map(|k| id(k.wrapping_mul(7_919) % n)).collect();
    let misses: Vec<String> = (0..Q).map(|k| format!("x{}", id(k))).collect();
    let set = store.read().expect("set");
    let lookup = set.honouring(&honoured);
    let time = |queries: &[String], f: &dyn Fn(&str) -> bool| {
        let start = Instant::now();
        let mut found = 0u64;
        for q in queries {
            found += u64::from(f(black_box(q)));
        }
        (
            start.elapsed().as_nanos() as f64 / queries.len() as f64,
            found,
        )
    };
    let (hit_ns, found) = time(&hits, &|q| lookup.is_opted_out(q));
    let (miss_ns, _) = time(&misses, &|q| lookup.is_opted_out(q));
    drop(set);
    let source = store.in_memory();
    let (store_hit_ns, _) = time(&hits, &|q| source.is_opted_out(q, &honoured));
    let (store_miss_ns, _) = time(&misses, &|q| source.is_opted_out(q, &honoured));
    // Every generated customer holds partner_sharing or partner:acme-ship.
    assert_eq!(found, Q, "every hit query names an opted-out customer");
    println!(
        "{load} {rss} {heap} {hit_ns} {miss_ns} {store_hit_ns} {store_miss_ns}",
        rss = after.saturating_sub(before)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--load-child") {
        let dir = Path::new(&args[pos + 1]);
        let n: u64 = args[pos + 2].parse().expect("n");
        child(dir, n);
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only a smoke run.
    let default = if args.iter().any(|a| a == "--bench") {
        "1000000"
    } else {
        "10000"
    };
    let sizes: Vec<u64> = std::env::var("OPTOUT_BENCH_SIZES")
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("OPTOUT_BENCH_SIZES: comma-separated counts")
        })
        .collect();
    let scopes = all_scopes();
    println!(
        "{:>10} {:>9} {:>8} {:>10} {:>9} {:>9} {:>11} {:>8} {:>8} {:>12} {:>13}",
        "ids",
        "gen s",
        "import s",
        "snapshot",
        "load s",
        "RSS B/id",
        "heap B/id",
        "hit ns",
        "miss ns",
        "store hit ns",
        "store miss ns"
    );
    for n in sizes {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("optouts");
        let start = Instant::now();
        let mut set = OptOutSet::new();
        for i in 0..n {
            set.insert(&id(i), scopes_for(i, &scopes)).expect("insert");
        }
        assert_eq!(set.len() as u64, n, "ids are distinct");
        let generate = start.elapsed().as_secs_f64();
        let start = Instant::now();
        {
            let store = OptOutStore::open(&dir).expect("open store");
            store.import(&set).expect("import");
        }
        let import = start.elapsed().as_secs_f64();
        drop(set);
        let snapshot = std::fs::metadata(dir.join("snapshot")).map_or(0, |m| m.len());

        let exe = std::env::current_exe().expect("current exe");
        let output = Command::new(exe)
            .arg("--load-child")
            .arg(&dir)
            .arg(n.to_string())
            .output()
            .expect("run child");
        assert!(
            output.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = String::from_utf8_lossy(&output.stdout);
        let v: Vec<f64> = line
            .split_whitespace()
            .map(|x| x.parse().expect("child number"))
            .collect();
        let per_id = |bytes: f64| bytes / n as f64;
        println!(
            "{:>10} {:>9.2} {:>8.2} {:>8} MB {:>9.2} {:>9.1} {:>11.1} {:>8.1} {:>8.1} {:>12.1} {:>13.1}",
            n,
            generate,
            import,
            snapshot >> 20,
            v[0],
            per_id(v[1]),
            per_id(v[2]),
            v[3],
            v[4],
            v[5],
            v[6]
        );
    }
}
