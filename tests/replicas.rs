//! Several gateway replicas sharing opt-outs through a real PostgreSQL (started by the test):
//! propagation of PUT and DELETE across replicas within the promised bound, a database
//! restart while serving, lost notifications caught by reconciliation, concurrent writes with
//! a replica killed by SIGKILL (no acknowledged opt-out lost), and fail-closed staleness
//! while the database is down (contractors keep working), then recovery.
mod util;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::json;
use util::pg::Postgres;
use util::*;

const TOKEN_ENV: &str = "PG_REPLICAS_TEST_ADMIN_TOKEN";
const URL_ENV: &str = "PG_REPLICAS_TEST_DATABASE_URL";
const TOKEN: &str = "replica-admin-token";
const AUTH: &str = "Bearer replica-admin-token";
/// What the README promises: an acknowledged change is enforced by every healthy replica
/// within this time.
const BOUND: Duration = Duration::from_secs(1);

/// The test that measures propagation against [`BOUND`] runs alone: its bound is about the
/// replicas, not about a 2-core machine shared with the other tests' clusters, which share it
/// with each other.
static MACHINE: RwLock<()> = RwLock::new(());

fn alone() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(PoisonError::into_inner)
}

fn shared() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(PoisonError::into_inner)
}

fn partners(bp: &Mock, ctr: &Mock) -> Vec<(&'static str, String)> {
    vec![
        (
            "bp",
            format!(
                "kind: business_partner\npurpose: marketing\nupstream: {}\nroutes:\n  - path: /v1/contact\n    methods: [POST]\n    records: $\n    subject: customer_id\n    allow: [customer_id, name]\nallowed_callers: [orders-service]\n",
                bp.url()
            ),
        ),
        (
            "ctr",
            format!(
                "kind: contractor\npurpose: shipping\nupstream: {}\nroutes:\n  - path: /v1/contact\n    methods: [POST]\n    records: $\n    subject: customer_id\n    allow: [customer_id, name]\nallowed_callers: [orders-service]\n",
                ctr.url()
            ),
        ),
    ]
}

/// `gateway.yaml`'s lines for opt-outs in PostgreSQL table `table`.
fn optouts_yaml(table: &str, max_staleness_s: u64) -> String {
    format!(
        "admin_token_env: {TOKEN_ENV}\noptouts: {{ postgres: {{ url_env: {URL_ENV}, table: {table}, max_staleness_s: {max_staleness_s} }} }}\n"
    )
}

/// A replica sending to `bp` and `ctr`, with its opt-outs in `table` of the database at `url`.
fn replica(url: &str, (bp, ctr): (&Mock, &Mock), table: &str, max_staleness_s: u64) -> Gateway {
    let owned = partners(bp, ctr);
    let files: Vec<(&str, &str)> = owned.iter().map(|(n, y)| (*n, y.as_str())).collect();
    Gateway::start(
        &optouts_yaml(table, max_staleness_s),
        &files,
        &[(TOKEN_ENV, TOKEN), (URL_ENV, url)],
    )
}

struct Cluster {
    pg: Postgres,
    bp: Mock,
    ctr: Mock,
    replicas: Vec<Gateway>,
}

fn cluster(replicas: usize, max_staleness_s: u64) -> Cluster {
    let pg = Postgres::start();
    let (bp, ctr) = (Mock::start(), Mock::start());
    let url = pg.url();
    let replicas: Vec<Gateway> = (0..replicas)
        .map(|_| replica(&url, (&bp, &ctr), "optouts", max_staleness_s))
        .collect();
    for gw in &replicas {
        wait_ready(gw);
    }
    Cluster {
        pg,
        bp,
        ctr,
        replicas,
    }
}

fn wait_ready(gw: &Gateway) {
    eventually(
        "the replica loaded its opt-outs",
        Duration::from_secs(20),
        || gw.admin_get("/readyz").status == 200,
    );
}

fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out after {within:?} waiting until {what}");
}

fn admin(gw: &Gateway, method: &str, id: &str, body: Option<&str>) -> Response {
    let mut headers = vec![("authorization", AUTH)];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    http1::send(
        &gw.admin.to_string(),
        method,
        &format!("/optouts/{id}"),
        &headers,
        body.map(str::as_bytes),
    )
    .unwrap()
}

fn put(gw: &Gateway, id: &str) -> Response {
    admin(gw, "PUT", id, Some(r#"{"scopes":["partner_sharing"]}"#))
}

fn contact(gw: &Gateway, partner: &str, id: &str) -> Response {
    gw.post_json(
        &format!("/{partner}/v1/contact"),
        &json!({"customer_id": id, "name": "N"}).to_string(),
    )
}

/// PUT through `from`, then how long until `to` refuses the customer (451).
fn propagation(from: &Gateway, to: &Gateway, id: &str) -> Duration {
    assert_eq!(
        contact(to, "bp", id).status,
        200,
        "{id} is not opted out yet"
    );
    let r = put(from, id);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let acked = Instant::now();
    eventually(
        &format!("{id} is enforced"),
        Duration::from_secs(10),
        || contact(to, "bp", id).status == 451,
    );
    acked.elapsed()
}

#[test]
fn put_and_delete_reach_every_replica_within_the_bound_across_restarts_and_lost_notifications() {
    let _machine = alone();
    let c = cluster(3, 30);
    let [a, b, d] = [&c.replicas[0], &c.replicas[1], &c.replicas[2]];

    // PUT via A: A enforces it on the very next request, B and C within the bound.
    let r = put(a, "c-1");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"customer_id": "c-1", "scopes": ["partner_sharing"]})
    );
    assert_eq!(contact(a, "bp", "c-1").status, 451);
    let mut took = Vec::new();
    for (i, to) in [b, d].into_iter().enumerate() {
        took.push(eventually("B and C enforce c-1", BOUND, || {
            contact(to, "bp", "c-1").status == 451
        }));
        assert_eq!(
            contact(to, "ctr", "c-1").status,
            200,
            "contractors ignore opt-outs ({i})"
        );
    }
    for i in 0..20 {
        took.push(propagation(
            &c.replicas[i % 3],
            &c.replicas[(i + 1) % 3],
            &format!("p-{i}"),
        ));
    }
    took.sort();
    eprintln!(
        "propagation over {} changes: p50 {:?}, max {:?}",
        took.len(),
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert!(took[took.len() - 1] < BOUND, "{took:?}");

    // DELETE via B reaches A and C.
    let r = admin(b, "DELETE", "c-1", None);
    assert_eq!(r.json(), json!({"customer_id": "c-1", "scopes": []}));
    for gw in [a, b, d] {
        eventually("everyone forwards c-1 again", BOUND, || {
            contact(gw, "bp", "c-1").status == 200
        });
    }
    assert_eq!(admin(a, "GET", "c-1", None).status, 404);

    // Notifications lost: kill every replica's listening connection, write at once.
    let killed = c.pg.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'partner-gateway-listen'",
    );
    assert_eq!(killed, "3", "one LISTEN connection per replica");
    let t = propagation(a, d, "lost-1");
    assert!(
        t < BOUND * 3,
        "reconciliation after a lost connection took {t:?}"
    );
    eventually("B reconciles lost-1 too", BOUND * 3, || {
        contact(b, "bp", "lost-1").status == 451
    });

    // The server ends the writers' pooled connections: the next write gets a fresh one.
    let ended = c.pg.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'partner-gateway'",
    );
    assert_ne!(ended, "0", "no pooled writer connection to end");
    for i in 0..3 {
        let r = put(a, &format!("after-terminate-{i}"));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }

    // Database restart while serving: lookups go on from memory, writes come back.
    c.pg.stop();
    assert_eq!(contact(b, "bp", "lost-1").status, 451);
    assert_eq!(contact(b, "bp", "c-9").status, 200);
    let down = put(a, "during-restart");
    assert_refused(&down, 503, "not_ready");
    c.pg.start_again();
    eventually("writes work again", Duration::from_secs(10), || {
        put(a, "after-restart").status == 200
    });
    for gw in [b, d] {
        eventually(
            "after-restart is enforced everywhere",
            Duration::from_secs(5),
            || contact(gw, "bp", "after-restart").status == 451,
        );
    }
    assert_eq!(
        contact(d, "bp", "during-restart").status,
        200,
        "a 503 write is not applied"
    );
    let m = b.metrics();
    assert!(
        metric(&m, "partner_gateway_optouts_staleness_seconds") < 3.0,
        "{m}"
    );
}

#[test]
fn concurrent_puts_with_a_replica_killed_lose_no_acknowledged_opt_out() {
    let _machine = shared();
    let mut c = cluster(3, 30);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let admins: Vec<String> = c.replicas.iter().map(|g| g.admin.to_string()).collect();
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (acked, next, admins) = (acked.clone(), next.clone(), admins.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= 1000 {
                    return;
                }
                let id = format!("k-{i}");
                let addr = &admins[(i + w) % admins.len()];
                let r = http1::send(
                    addr,
                    "PUT",
                    &format!("/optouts/{id}"),
                    &[
                        ("authorization", AUTH),
                        ("content-type", "application/json"),
                    ],
                    Some(br#"{"scopes":["partner_sharing"]}"#),
                );
                if let Ok(r) = r {
                    if r.status == 200 {
                        acked.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    eventually(
        "a third of the writes are done",
        Duration::from_secs(30),
        || next.load(Ordering::SeqCst) >= 330,
    );
    c.replicas[2].kill();
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 600,
        "only {} writes acknowledged",
        acked.len()
    );
    let in_db: std::collections::HashSet<String> =
        c.pg.psql("SELECT customer_id FROM optouts WHERE scope = 'partner_sharing'")
            .lines()
            .map(str::to_string)
            .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !in_db.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged but not committed: {lost:?}");
    for gw in &c.replicas[..2] {
        eventually(
            "every committed opt-out is in memory",
            Duration::from_secs(5),
            || {
                metric(
                    &gw.metrics(),
                    "partner_gateway_optouts{scope=\"partner_sharing\"}",
                ) == in_db.len() as f64
            },
        );
        for id in acked.iter().step_by(25) {
            assert_eq!(contact(gw, "bp", id).status, 451, "{id}");
        }
    }
    // The killed replica comes back with everything.
    c.replicas[2].spawn();
    wait_ready(&c.replicas[2]);
    for id in acked.iter().step_by(25) {
        assert_eq!(contact(&c.replicas[2], "bp", id).status, 451, "{id}");
    }
}

#[test]
fn database_down_past_the_bound_fails_closed_on_opt_out_routes_only_then_recovers() {
    let _machine = shared();
    let c = cluster(1, 2);
    let gw = &c.replicas[0];
    assert_eq!(put(gw, "x-1").status, 200);
    let ready = gw.admin_get("/readyz");
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (200, json!("ready"))
    );
    assert!(metric(&gw.metrics(), "partner_gateway_optouts_staleness_seconds") < 2.0);

    c.pg.stop();
    // Within the bound: the last known set is enforced.
    assert_eq!(contact(gw, "bp", "x-1").status, 451);
    assert_eq!(contact(gw, "bp", "x-2").status, 200);
    assert_refused(&put(gw, "x-3"), 503, "not_ready");
    // Past it: opt-out routes fail closed, contractors keep working, /readyz stays 200.
    eventually("opt-out routes refuse", Duration::from_secs(10), || {
        contact(gw, "bp", "x-2").status == 503
    });
    assert_refused(&contact(gw, "bp", "x-2"), 503, "not_ready");
    assert_eq!(contact(gw, "ctr", "x-1").status, 200);
    let ready = gw.admin_get("/readyz");
    assert_eq!(ready.status, 200);
    let body = ready.json();
    assert_eq!(
        (body["status"].clone(), body["optouts"].clone()),
        (json!("degraded"), json!("stale"))
    );
    assert!(metric(&gw.metrics(), "partner_gateway_optouts_staleness_seconds") > 2.0);
    let before = c.bp.received().len();

    c.pg.start_again();
    eventually(
        "opt-out routes serve again",
        Duration::from_secs(10),
        || contact(gw, "bp", "x-2").status == 200,
    );
    assert_eq!(contact(gw, "bp", "x-1").status, 451);
    assert_eq!(gw.admin_get("/readyz").json()["status"], "ready");
    assert_eq!(
        c.bp.received().len(),
        before + 1,
        "nothing was forwarded while stale"
    );
    assert!(!c.ctr.received().is_empty(), "contractor traffic went on");
}

#[test]
fn a_replica_started_while_the_database_is_down_is_not_ready_until_its_first_load() {
    let _machine = shared();
    let pg = Postgres::start();
    let (bp, ctr) = (Mock::start(), Mock::start());
    pg.stop();
    // A table name of the operator's choosing.
    let gw = replica(&pg.url(), (&bp, &ctr), "customer_optouts", 30);
    std::thread::sleep(Duration::from_millis(500));
    let ready = gw.admin_get("/readyz");
    assert_eq!(
        ready.status,
        503,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    assert_refused(&contact(&gw, "bp", "y-1"), 503, "not_ready");
    assert_refused(&put(&gw, "y-1"), 503, "not_ready");
    assert!(bp.received().is_empty(), "nothing reaches the partner");

    pg.start_again();
    wait_ready(&gw);
    assert_eq!(gw.admin_get("/readyz").json()["status"], "ready");
    assert_eq!(put(&gw, "y-1").status, 200);
    assert_eq!(contact(&gw, "bp", "y-1").status, 451);
    assert_eq!(contact(&gw, "bp", "y-2").status, 200);
    let rows = pg.psql("SELECT count(*) FROM customer_optouts");
    assert!(rows.trim().parse::<u64>().unwrap() >= 1, "{rows}");
}

/// The change log can be pruned at any time, and a database can come back from a backup or a
/// standby that was behind. A replica compares the change counter with what it applied: one
/// that cannot read the newest changes (pruned before it saw them), or finds the counter behind
/// what it applied (its next changes would reuse ids it already has), reads the set again.
#[test]
fn a_replica_reads_the_set_again_when_the_change_counter_disagrees_with_what_it_applied() {
    let _machine = shared();
    let c = cluster(2, 30);
    let (a, b) = (&c.replicas[0], &c.replicas[1]);
    assert_eq!(put(a, "seen-1").status, 200);
    eventually(
        "both replicas enforce seen-1",
        Duration::from_secs(5),
        || contact(b, "bp", "seen-1").status == 451,
    );

    // Written and counted, but its change row gone before any replica read it (no
    // notification either): only the counter tells.
    as_gateway(
        &c.pg,
        "INSERT INTO optouts (customer_id, scope) VALUES ('pruned-1', 'partner_sharing'); \
         UPDATE optouts_seq SET last = last + 1;",
    );
    for gw in [a, b] {
        eventually("pruned-1 is enforced", Duration::from_secs(5), || {
            contact(gw, "bp", "pruned-1").status == 451
        });
    }

    // Restored from an older state: the log and the counter went back. The next opt-out gets
    // an id both replicas have applied already.
    c.pg.psql("BEGIN; DELETE FROM optouts_changes; UPDATE optouts_seq SET last = 0; COMMIT;");
    assert_eq!(put(a, "after-restore-1").status, 200);
    assert_eq!(
        contact(a, "bp", "after-restore-1").status,
        451,
        "the replica that acknowledged it enforces it at once"
    );
    eventually(
        "the other replica enforces it",
        Duration::from_secs(5),
        || contact(b, "bp", "after-restore-1").status == 451,
    );
    for gw in [a, b] {
        assert_eq!(contact(gw, "bp", "seen-1").status, 451);
        assert_eq!(contact(gw, "bp", "pruned-1").status, 451);
        assert_eq!(contact(gw, "bp", "someone-else").status, 200);
    }

    // A failover to a standby that lost exactly the last change: the counter is one behind,
    // and the next change takes the very id both replicas applied last. Only the change
    // itself (its time) tells.
    as_gateway(
        &c.pg,
        "DELETE FROM optouts WHERE customer_id = 'after-restore-1'; \
         DELETE FROM optouts_changes WHERE id = 1; UPDATE optouts_seq SET last = 0;",
    );
    assert_eq!(put(a, "lost-one-1").status, 200);
    assert_eq!(contact(a, "bp", "lost-one-1").status, 451);
    eventually(
        "the other replica enforces it",
        Duration::from_secs(5),
        || contact(b, "bp", "lost-one-1").status == 451,
    );
    for gw in [a, b] {
        eventually(
            "the lost opt-out is gone, as in the database",
            Duration::from_secs(5),
            || contact(gw, "bp", "after-restore-1").status == 200,
        );
        assert_eq!(contact(gw, "bp", "seen-1").status, 451);
    }
}

/// Commits what `optouts import` commits for `{prefix}-1` … `{prefix}-{n}`: the rows, one
/// `reload` change, a notification.
fn import(pg: &Postgres, prefix: &str, n: u32) {
    as_gateway(
        pg,
        &format!(
            "INSERT INTO optouts (customer_id, scope) \
               SELECT '{prefix}-' || g, 'partner_sharing' FROM generate_series(1, {n}) g; \
             INSERT INTO optouts_changes (id, op) SELECT last + 1, 'reload' FROM optouts_seq; \
             UPDATE optouts_seq SET last = last + 1; \
             SELECT pg_notify('optouts_changes', '0');"
        ),
    );
}

/// Runs `sql` in one transaction marked as the gateway's own, as the gateway's writes are: the
/// trigger that logs writes made by others leaves it alone.
fn as_gateway(pg: &Postgres, sql: &str) {
    pg.psql(&format!(
        "BEGIN; SELECT set_config('partner_gateway.writer', 'optouts', true); {sql} COMMIT;"
    ));
}

/// Opt-outs written into the table by SQL (by hand, by a CRM sync), not through the gateway,
/// are enforced by every running replica: a trigger logs them as a change that makes the
/// replicas read the table again. Rows deleted by SQL likewise stop being enforced.
#[test]
fn opt_outs_written_by_sql_reach_every_running_replica() {
    let _machine = shared();
    let c = cluster(2, 30);
    for gw in &c.replicas {
        assert_eq!(contact(gw, "bp", "sql-1").status, 200);
    }
    c.pg.psql("INSERT INTO optouts (customer_id, scope) VALUES ('sql-1', 'partner_sharing');");
    for gw in &c.replicas {
        eventually("sql-1 is enforced", Duration::from_secs(5), || {
            contact(gw, "bp", "sql-1").status == 451
        });
    }
    // As logical replication applies rows (row triggers only, `replica` role): one change
    // logged for the whole transaction.
    let reloads = || {
        c.pg.psql("SELECT count(*) FROM optouts_changes WHERE op = 'reload'")
    };
    let before = reloads();
    c.pg.psql(
        "BEGIN; SET LOCAL session_replication_role = replica; \
         INSERT INTO optouts (customer_id, scope) VALUES ('sql-2', 'partner_sharing'), ('sql-3', 'partner_sharing'); \
         UPDATE optouts SET customer_id = 'sql-4' WHERE customer_id = 'sql-3'; COMMIT;",
    );
    let logged: i64 =
        reloads().trim().parse::<i64>().unwrap() - before.trim().parse::<i64>().unwrap();
    assert_eq!(logged, 1);
    for gw in &c.replicas {
        for id in ["sql-2", "sql-4"] {
            eventually(
                "a replicated opt-out is enforced",
                Duration::from_secs(5),
                || contact(gw, "bp", id).status == 451,
            );
        }
    }
    // A scope no partner could honour as written is refused by the table itself, so a
    // hand-written opt-out is never kept and then skipped unenforced.
    // Nor is one spelt with capitals partners never honour it by.
    for scope in [
        "partner_sharing ",
        "",
        "partner:",
        "partner sharing",
        "Partner_Sharing",
        "PARTNER:bp",
        "partner:BP",
    ] {
        let said = c.pg.psql_refused(&format!(
            "INSERT INTO optouts (customer_id, scope) VALUES ('sql-5', '{scope}');"
        ));
        assert!(said.contains("check constraint"), "{said}");
    }
    // Other names are scopes a policy may honour as written, capitals included.
    c.pg.psql("INSERT INTO optouts (customer_id, scope) VALUES ('sql-5', 'Research.V2');");
    // The gateway's own writes go on as before, after and beside the foreign one.
    assert_eq!(put(&c.replicas[0], "api-1").status, 200);
    c.pg.psql("DELETE FROM optouts WHERE customer_id = 'sql-1';");
    for gw in &c.replicas {
        eventually(
            "sql-1 is no longer enforced",
            Duration::from_secs(5),
            || contact(gw, "bp", "sql-1").status == 200,
        );
        eventually("api-1 is enforced", Duration::from_secs(5), || {
            contact(gw, "bp", "api-1").status == 451
        });
    }
}

/// A bulk import makes every replica read the whole table again. That read takes seconds for
/// a large table, and opt-outs acknowledged meanwhile are still enforced at once by the replica
/// that acknowledged them and by the others within the bound; the imported ones once the read
/// is done, and the ones acknowledged meanwhile stay enforced after it.
#[test]
fn opt_outs_acknowledged_while_replicas_read_an_import_are_enforced_at_once() {
    let _machine = shared();
    let c = cluster(2, 30);
    let (a, b) = (&c.replicas[0], &c.replicas[1]);
    import(&c.pg, "bulk", 400_000);
    let imported = Instant::now();
    for k in 0..3 {
        let id = format!("during-import-{k}");
        assert_eq!(put(a, &id).status, 200);
        assert_eq!(
            contact(a, "bp", &id).status,
            451,
            "the replica that acknowledged {id} enforces it on its next request"
        );
        let took = eventually(&format!("{id} reaches b"), Duration::from_secs(10), || {
            contact(b, "bp", &id).status == 451
        });
        assert!(took <= BOUND, "{id} took {took:?} to reach b");
    }
    let during = imported.elapsed();
    for gw in [a, b] {
        let read = eventually("the import is enforced", Duration::from_secs(60), || {
            contact(gw, "bp", "bulk-400000").status == 451
        });
        eprintln!("import enforced {read:?} after the checks (which took {during:?})");
        for k in 0..3 {
            assert_eq!(contact(gw, "bp", &format!("during-import-{k}")).status, 451);
        }
        assert_eq!(contact(gw, "bp", "bulk-1").status, 451);
        assert_eq!(contact(gw, "bp", "someone-else").status, 200);
    }
}

/// While a replica has not read an import in yet, the import counts toward its staleness:
/// past `max_staleness_s` its opt-out routes refuse (503) rather than forward a customer the
/// import opted out.
#[test]
fn an_import_not_read_in_within_the_bound_fails_closed() {
    let _machine = shared();
    let c = cluster(1, 1);
    let gw = &c.replicas[0];
    import(&c.pg, "slow", 400_000);
    let committed = Instant::now();
    // The bound, plus the time a catch-up takes to see the import.
    let bound = Duration::from_secs(1) + Duration::from_millis(600);
    let mut refused = 0;
    loop {
        let status = contact(gw, "bp", "slow-400000").status;
        match status {
            451 => break,
            503 => refused += 1,
            200 => assert!(
                committed.elapsed() < bound,
                "an imported opt-out forwarded {:?} after the import",
                committed.elapsed()
            ),
            other => panic!("unexpected status {other}"),
        }
        assert!(
            committed.elapsed() < Duration::from_secs(60),
            "never read in"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "import read in after {:?}; {refused} requests refused meanwhile",
        committed.elapsed()
    );
    // Contractors never wait for opt-outs.
    assert_eq!(contact(gw, "ctr", "slow-1").status, 200);
}

/// The replica that acknowledges an opt-out enforces it on its next request even while its
/// follower reads the whole table again (here after a change row went missing), which takes
/// longer than the write waits for it.
#[test]
fn the_acknowledging_replica_enforces_its_write_while_its_follower_reads_the_table() {
    let _machine = shared();
    let c = cluster(1, 30);
    let gw = &c.replicas[0];
    import(&c.pg, "big", 400_000);
    eventually("the import is read in", Duration::from_secs(60), || {
        contact(gw, "bp", "big-400000").status == 451
    });
    for k in 0..3 {
        // Counted, but its change row gone: the follower reads the table again.
        c.pg.psql("UPDATE optouts_seq SET last = last + 1;");
        std::thread::sleep(Duration::from_millis(100));
        let id = format!("during-reread-{k}");
        assert_eq!(put(gw, &id).status, 200);
        assert_eq!(
            contact(gw, "bp", &id).status,
            451,
            "{id} was acknowledged, and forwarded on the next request"
        );
    }
    for k in 0..3 {
        eventually("it stays enforced", Duration::from_secs(30), || {
            contact(gw, "bp", &format!("during-reread-{k}")).status == 451
                && contact(gw, "bp", "big-1").status == 451
        });
    }
}

#[test]
fn serve_refuses_to_start_with_a_database_url_it_cannot_use() {
    let _alone = shared();
    let (bp, ctr) = (Mock::start(), Mock::start());
    let owned = partners(&bp, &ctr);
    let files: Vec<(&str, &str)> = owned.iter().map(|(n, y)| (*n, y.as_str())).collect();
    let yaml = optouts_yaml("optouts", 5);
    let dir = PolicyDir::new(&gateway_yaml(free_addr(), free_addr(), &yaml), &files);
    let secret = "PGSECRETPW";
    let url = format!("postgres://postgres:{secret}@127.0.0.1:1/gw?sslmode=bogus");
    let mut child = Command::new(BIN)
        .args(["serve", "--policy"])
        .arg(dir.policy())
        .env(URL_ENV, &url)
        .env(TOKEN_ENV, TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running with a database URL it cannot use");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains(URL_ENV), "{err}");
    assert!(!err.contains(secret), "the password leaked: {err}");
}

/// An opt-out table made beforehand by someone else, with integer ids: `CREATE TABLE IF NOT
/// EXISTS` leaves it as it is, and read as text its rows would be other customers (or a client
/// library's panic). The replica refuses it: not ready, opt-out routes 503, the reason named by
/// `optouts migrate`; once the column is converted it loads and enforces the rows.
#[test]
fn an_opt_out_table_with_columns_the_gateway_would_misread_is_refused_until_fixed() {
    let _machine = shared();
    let pg = Postgres::start();
    let (bp, ctr) = (Mock::start(), Mock::start());
    pg.psql(
        "CREATE TABLE optouts (customer_id bigint NOT NULL, scope text NOT NULL, \
         PRIMARY KEY (customer_id, scope)); INSERT INTO optouts VALUES (4242, 'partner_sharing')",
    );
    let gw = replica(&pg.url(), (&bp, &ctr), "optouts", 30);
    std::thread::sleep(Duration::from_millis(800));
    let ready = gw.admin_get("/readyz");
    assert_eq!(
        ready.status,
        503,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    assert_refused(&contact(&gw, "bp", "4242"), 503, "not_ready");
    assert!(bp.received().is_empty(), "nothing reaches the partner");
    let migrate = Command::new(BIN)
        .args(["optouts", "migrate", "--policy"])
        .arg(gw.policy.policy())
        .env(URL_ENV, pg.url())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&migrate.stderr);
    assert!(!migrate.status.success(), "{err}");
    assert!(err.contains("column customer_id is bigint"), "{err}");

    pg.psql("ALTER TABLE optouts ALTER COLUMN customer_id TYPE text COLLATE \"C\"");
    wait_ready(&gw);
    assert_refused(&contact(&gw, "bp", "4242"), 451, "subject_opted_out");
    assert_eq!(contact(&gw, "bp", "4243").status, 200);
}

/// `optouts migrate` (as every replica at start) refuses each table it would misread, naming
/// the column and why, and accepts the ones it reads right.
#[test]
fn tables_the_gateway_would_misread_are_named_by_migrate() {
    let _machine = shared();
    let pg = Postgres::start();
    let dir = PolicyDir::new(
        &gateway_yaml(free_addr(), free_addr(), &optouts_yaml("optouts", 30)),
        &[],
    );
    let migrate = || {
        let out = Command::new(BIN)
            .args(["optouts", "migrate", "--policy"])
            .arg(dir.policy())
            .env(URL_ENV, pg.url())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let reset = "DROP TABLE IF EXISTS optouts, optouts_changes, optouts_seq CASCADE; \
                 DROP COLLATION IF EXISTS ci;";
    pg.psql(
        "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
    );
    for (ddl, named) in [
        (
            "customer_id varchar(64)[] NOT NULL, scope text NOT NULL",
            "column customer_id is character varying(64)[]",
        ),
        (
            "customer_id text, scope text",
            "column customer_id allows NULL",
        ),
        (
            "customer_id text COLLATE ci NOT NULL, scope text NOT NULL",
            "column customer_id has a collation",
        ),
    ] {
        pg.psql(&format!("DROP TABLE IF EXISTS optouts, optouts_changes, optouts_seq CASCADE; CREATE TABLE optouts ({ddl})"));
        let (ok, err) = migrate();
        assert!(!ok && err.contains(named), "{ddl}: {err}");
    }
    // Read as they are: varchar ids, a domain over text, the gateway's own table.
    pg.psql("CREATE DOMAIN cust_id AS text");
    for ddl in [
        "customer_id varchar(64) NOT NULL, scope text NOT NULL, PRIMARY KEY (customer_id, scope)",
        "customer_id cust_id NOT NULL, scope text NOT NULL, PRIMARY KEY (customer_id, scope)",
    ] {
        pg.psql(&format!("DROP TABLE IF EXISTS optouts, optouts_changes, optouts_seq CASCADE; CREATE TABLE optouts ({ddl})"));
        let (ok, err) = migrate();
        assert!(ok, "{ddl}: {err}");
    }
    pg.psql(reset);
    let (ok, err) = migrate();
    assert!(ok, "{err}");

    // Opt-outs written by SQL that the replicas would not hear of: the logging triggers
    // disabled, a child table.
    pg.psql("ALTER TABLE optouts DISABLE TRIGGER USER");
    let (ok, err) = migrate();
    assert!(!ok && err.contains("missing or not enabled"), "{err}");
    pg.psql(reset);
    let (ok, err) = migrate();
    assert!(ok, "{err}");
    pg.psql("CREATE TABLE optouts_crm () INHERITS (optouts)");
    let (ok, err) = migrate();
    assert!(!ok && err.contains("has child tables"), "{err}");
    pg.psql("DROP TABLE optouts_crm");
    let (ok, err) = migrate();
    assert!(ok, "{err}");

    // A database that does not store text as UTF-8 is named too.
    pg.psql(
        "CREATE DATABASE bytes ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    );
    let out = Command::new(BIN)
        .args(["optouts", "migrate", "--policy"])
        .arg(dir.policy())
        .env(URL_ENV, pg.url().replace("/postgres?", "/bytes?"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("encoding is SQL_ASCII"), "{err}");
}

/// A column changed while a replica serves stops its reads of the table: it keeps enforcing the
/// copy it has, then fails closed once that is stale; it never loads the table as empty. Fixed,
/// it reads the table again.
#[test]
fn a_column_changed_under_a_serving_replica_never_unenforces_its_opt_outs() {
    let _machine = shared();
    let c = cluster(1, 3);
    let gw = &c.replicas[0];
    assert_eq!(put(gw, "1111").status, 200);
    assert_eq!(contact(gw, "bp", "1111").status, 451);
    c.pg.psql(
        "ALTER TABLE optouts ALTER COLUMN customer_id TYPE bigint USING customer_id::bigint; \
         INSERT INTO optouts VALUES (3333, 'partner_sharing')",
    );
    // The new row is logged as a change that makes the replica read the table again, which it
    // cannot: past max_staleness_s it refuses. Until then it keeps enforcing what it holds.
    // (Waited for, not timed: a loaded machine may see the change later than the poll says.)
    let start = Instant::now();
    loop {
        let status = contact(gw, "bp", "1111").status;
        assert!(status == 451 || status == 503, "forwarded: {status}");
        if status == 503 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never went stale"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_refused(&contact(gw, "bp", "3333"), 503, "not_ready");
    c.pg.psql("ALTER TABLE optouts ALTER COLUMN customer_id TYPE text COLLATE \"C\"");
    eventually(
        "the replica reads the fixed table",
        Duration::from_secs(20),
        || contact(gw, "bp", "3333").status == 451,
    );
    assert_eq!(contact(gw, "bp", "1111").status, 451);
    assert!(c.bp.received().is_empty(), "{:?}", c.bp.received());
}

/// `synchronous_commit = off` (a common tuning of a database or role) makes `COMMIT` return
/// before the change is in the WAL: a crash then loses it. The gateway's writes turn it back on
/// for their own transactions, so an acknowledged opt-out survives the database crashing.
#[test]
fn an_opt_out_acknowledged_on_a_database_tuned_for_async_commit_survives_its_crash() {
    let _machine = shared();
    let pg = Postgres::start();
    let (bp, ctr) = (Mock::start(), Mock::start());
    pg.psql("ALTER DATABASE postgres SET synchronous_commit = off");
    // The WAL writer would flush a lost commit within this delay: long enough for the test.
    pg.psql("ALTER SYSTEM SET wal_writer_delay = '10s'");
    pg.psql("SELECT pg_reload_conf()");
    let gw = replica(&pg.url(), (&bp, &ctr), "optouts", 30);
    wait_ready(&gw);
    // The tables the replica created at its start survive too.
    pg.crash();
    pg.start_again();
    assert_eq!(pg.psql("SELECT to_regclass('optouts') IS NOT NULL"), "t");
    for i in 0..5 {
        let r = put(&gw, &format!("async-{i}"));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    pg.crash();
    pg.start_again();
    let kept = pg.psql("SELECT count(*) FROM optouts WHERE customer_id LIKE 'async-%'");
    assert_eq!(
        kept, "5",
        "acknowledged opt-outs lost in the database's crash"
    );
    eventually(
        "the replica reads the database again",
        Duration::from_secs(30),
        || contact(&gw, "bp", "async-4").status == 451,
    );
    assert!(
        bp.received().is_empty(),
        "an opted-out customer reached the partner"
    );
}

/// Between a replica and its database: forwards connections while `silent` is clear; while it
/// is set, accepts them and then says nothing (as a pooler or balancer in front of a dead
/// server does, or a path whose flow a firewall dropped). When `cut` is not 0, the next
/// connection goes silent that way after the server sent it `cut` bytes (`cut` is then reset).
/// Returns its port.
fn silent_relay(to: u16, silent: Arc<std::sync::atomic::AtomicBool>, cut: Arc<AtomicUsize>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for caller in listener.incoming().flatten() {
            if silent.load(Ordering::SeqCst) {
                held.push(caller);
                continue;
            }
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            let limit = match cut.swap(0, Ordering::SeqCst) {
                0 => usize::MAX,
                n => n,
            };
            let went_silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
            for (from, into, limit) in [
                (
                    caller.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    usize::MAX,
                ),
                (server, caller, limit),
            ] {
                let went_silent = went_silent.clone();
                std::thread::spawn(move || relay_one_way(from, into, limit, &went_silent));
            }
        }
    });
    port
}

/// Copies `from` to `into` until either ends, or until `limit` bytes went through: then both
/// directions stop (`went_silent`) and the sockets are held open, saying nothing.
fn relay_one_way(
    mut from: std::net::TcpStream,
    mut into: std::net::TcpStream,
    limit: usize,
    went_silent: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    let mut sent = 0;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let Ok(n @ 1..) = from.read(&mut buf) else {
            let _ = into.shutdown(std::net::Shutdown::Both);
            return;
        };
        let n = n.min(limit - sent);
        if went_silent.load(Ordering::SeqCst) || into.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
        if sent >= limit {
            went_silent.store(true, Ordering::SeqCst);
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(3600)); // held open, silent
}

/// The driver's connect timeout bounds only the TCP connect: a database path that accepts the
/// connection and then stays silent held the follower's startup exchange forever, so the
/// replica stayed not ready (or stale) after the path came back.
#[test]
fn a_replica_whose_database_path_went_silent_connects_again_once_it_answers() {
    let _machine = shared();
    let pg = Postgres::start();
    let (bp, ctr) = (Mock::start(), Mock::start());
    let silent = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let relay = silent_relay(pg.port, silent.clone(), Arc::default());
    let url = pg
        .url()
        .replace(&format!(":{}/", pg.port), &format!(":{relay}/"));
    let gw = replica(&url, (&bp, &ctr), "optouts", 30);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(gw.admin_get("/readyz").status, 503, "nothing loaded yet");
    assert_refused(&contact(&gw, "bp", "s-1"), 503, "not_ready");

    silent.store(false, Ordering::SeqCst);
    eventually(
        "the replica connected again and loaded its opt-outs",
        Duration::from_secs(20),
        || gw.admin_get("/readyz").status == 200,
    );
    assert_eq!(put(&gw, "s-1").status, 200);
    assert_eq!(contact(&gw, "bp", "s-1").status, 451);
    assert_eq!(contact(&gw, "bp", "s-2").status, 200);
}

/// A table made before its check refused them may hold `Partner_Sharing` or `partner:BP`
/// written by SQL: replicas enforce them as the scopes they spell, not as scopes no partner
/// honours.
#[test]
fn scopes_spelt_with_capitals_in_an_older_table_are_enforced_as_what_they_spell() {
    let _machine = shared();
    let c = cluster(1, 30);
    let gw = &c.replicas[0];
    // As the table was before its check refused such scopes.
    let check = c.pg.psql(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'optouts'::regclass AND contype = 'c'",
    );
    c.pg.psql(&format!(
        "ALTER TABLE optouts DROP CONSTRAINT {};",
        check.trim()
    ));
    for (id, scope) in [("cap-1", "Partner_Sharing"), ("cap-2", "PARTNER:BP")] {
        assert_eq!(contact(gw, "bp", id).status, 200);
        c.pg.psql(&format!(
            "INSERT INTO optouts (customer_id, scope) VALUES ('{id}', '{scope}');"
        ));
        eventually(&format!("{id} is enforced"), Duration::from_secs(5), || {
            contact(gw, "bp", id).status == 451
        });
    }
    // The contractor honours no opt-out scope: unchanged.
    assert_eq!(contact(gw, "ctr", "cap-1").status, 200);
    c.pg.psql("DELETE FROM optouts WHERE customer_id = 'cap-1';");
    eventually(
        "cap-1 is no longer enforced",
        Duration::from_secs(5),
        || contact(gw, "bp", "cap-1").status == 200,
    );
    assert_eq!(contact(gw, "bp", "cap-2").status, 451);
}

/// A connection that goes silent in the middle of a whole-table read (here the read after a
/// bulk import) is given up after 30 s without a row (and its transaction's end is bounded
/// too), then read again on a new one: not after the read's whole 10-minute bound.
#[test]
fn a_whole_table_read_cut_off_mid_stream_is_read_again_on_a_new_connection() {
    let _machine = shared();
    let pg = Postgres::start();
    let (bp, ctr) = (Mock::start(), Mock::start());
    let cut = Arc::new(AtomicUsize::new(0));
    let relay = silent_relay(pg.port, Arc::default(), cut.clone());
    let url = pg
        .url()
        .replace(&format!(":{}/", pg.port), &format!(":{relay}/"));
    let gw = replica(&url, (&bp, &ctr), "optouts", 600);
    wait_ready(&gw);
    assert_eq!(contact(&gw, "bp", "cut-1").status, 200);
    // The next connection, the read's, stops after 256 KiB of a table that takes megabytes.
    cut.store(256 * 1024, Ordering::SeqCst);
    import(&pg, "cut", 200_000);
    let took = eventually(
        "the imported opt-outs are enforced",
        Duration::from_secs(120),
        || contact(&gw, "bp", "cut-1").status == 451,
    );
    assert!(
        took > Duration::from_secs(25),
        "the first read was cut off: {took:?}"
    );
    assert_eq!(cut.load(Ordering::SeqCst), 0, "the cut connection was used");
    assert_eq!(contact(&gw, "bp", "other").status, 200);
}
