//! Several replicas on PostgreSQL: start-up load time and memory for N opt-outs, and how long an
//! acknowledged opt-out takes to be enforced by another replica (p50/p99).
//!
//! `cargo bench --bench replicas` (N = 1 000 000); `REPLICA_BENCH_OPTOUTS=10000000 cargo bench
//! --bench replicas` for 10 M (about 2 GB of disk for the throwaway cluster and ~1 GB of RAM per
//! replica while loading). Baselines in the same run: the load is compared with `psql` reading
//! the same rows with the same `COPY` to /dev/null (the database's own speed), and the memory
//! with a replica of an empty table; propagation is compared with the admin PUT's own round trip.
//! Starts its own PostgreSQL cluster like the tests (`scripts/setup.sh` installs it).
#[path = "../tests/util/mod.rs"]
#[allow(unused_imports)]
mod util;

use std::time::{Duration, Instant};

use util::pg::Postgres;
use util::*;

const TOKEN_ENV: &str = "PG_BENCH_ADMIN_TOKEN";
const URL_ENV: &str = "PG_BENCH_DATABASE_URL";
const AUTH: &str = "Bearer bench-token";

fn partner(upstream: &str) -> String {
    format!("kind: business_partner\npurpose: marketing\nupstream: {upstream}\nroutes:\n  - path: /v1/contact\n    methods: [POST]\n    records: $\n    subject: customer_id\n    allow: [customer_id]\nallowed_callers: [orders-service]\n")
}

fn replica(pg: &Postgres, mock: &Mock) -> (Gateway, Duration) {
    let yaml = format!(
        "admin_token_env: {TOKEN_ENV}\noptouts: {{ postgres: {{ url_env: {URL_ENV} }} }}\n"
    );
    let started = Instant::now();
    let gw = Gateway::start(
        &yaml,
        &[("bp", &partner(&mock.url()))],
        &[(TOKEN_ENV, "bench-token"), (URL_ENV, &pg.url())],
    );
    while gw.admin_get("/readyz").status != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "replica never became ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (gw, started.elapsed())
}

fn rss(gw: &Gateway) -> f64 {
    metric(&gw.metrics(), "process_resident_memory_bytes")
}

fn put(gw: &Gateway, id: &str) {
    let r = http1::send(
        &gw.admin.to_string(),
        "PUT",
        &format!("/optouts/{id}"),
        &[
            ("authorization", AUTH),
            ("content-type", "application/json"),
        ],
        Some(br#"{"scopes":["partner_sharing"]}"#),
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

fn opted_out(gw: &Gateway, id: &str) -> bool {
    let body = format!(r#"{{"customer_id":"{id}"}}"#);
    gw.post_json("/bp/v1/contact", &body).status == 451
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let n: u64 = std::env::var("REPLICA_BENCH_OPTOUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let pg = Postgres::start();
    let mock = Mock::start();

    // Empty table: the tables are created by the first replica; its memory is the baseline.
    let (empty, _) = replica(&pg, &mock);
    let base_rss = rss(&empty);
    drop(empty);

    let t = Instant::now();
    pg.psql(&format!(
        "INSERT INTO optouts (customer_id, scope) SELECT 'customer-' || g, 'partner_sharing' FROM generate_series(1, {n}) g; \
         INSERT INTO optouts (customer_id, scope) SELECT 'customer-' || g, 'partner:bp' FROM generate_series(1, {n}, 10) g; ANALYZE optouts"
    ));
    eprintln!("filled the table with {n} customers in {:.1?}", t.elapsed());
    let t = Instant::now();
    pg.psql("COPY (SELECT customer_id, scope FROM optouts ORDER BY customer_id, scope) TO '/dev/null' (FORMAT binary)");
    let copy = t.elapsed();

    let (a, load) = replica(&pg, &mock);
    let mem = rss(&a) - base_rss;
    println!(
        "load of {n} customers: {:.2} s to ready (database COPY alone {:.2} s, ratio {:.1}x); memory +{:.0} MB ({:.0} B/customer)",
        load.as_secs_f64(),
        copy.as_secs_f64(),
        load.as_secs_f64() / copy.as_secs_f64(),
        mem / 1e6,
        mem / n as f64
    );

    let (b, _) = replica(&pg, &mock);
    let (mut acks, mut seen) = (Vec::new(), Vec::new());
    for i in 0..300 {
        let id = format!("new-{i}");
        let t = Instant::now();
        put(&a, &id);
        acks.push(t.elapsed());
        let acked = Instant::now();
        while !opted_out(&b, &id) {
            assert!(
                acked.elapsed() < Duration::from_secs(10),
                "{id} never arrived"
            );
        }
        seen.push(acked.elapsed());
    }
    acks.sort();
    seen.sort();
    println!(
        "propagation A→B over {} opt-outs: p50 {:.2?}, p99 {:.2?}, max {:.2?} (the PUT's own round trip: p50 {:.2?}, p99 {:.2?})",
        seen.len(),
        percentile(&seen, 0.5),
        percentile(&seen, 0.99),
        seen[seen.len() - 1],
        percentile(&acks, 0.5),
        percentile(&acks, 0.99)
    );
}
