use super::*;

#[test]
fn gives_back_at_the_first_quiet_tick_after_requests() {
    let t0 = Instant::now();
    let mut due = Due::new(0, t0);
    assert!(!due.tick(0, t0 + TICK), "nothing served yet");
    assert!(!due.tick(50, t0 + 2 * TICK), "still busy");
    assert!(due.tick(50, t0 + 3 * TICK), "quiet after requests");
    assert!(!due.tick(50, t0 + 4 * TICK), "nothing new since");
    assert!(!due.tick(50, t0 + 30 * TICK), "idle stays idle");
}

#[test]
fn gives_back_every_max_interval_under_steady_load() {
    let t0 = Instant::now();
    let mut due = Due::new(0, t0);
    let mut given = Vec::new();
    for s in 1..=25u32 {
        if due.tick(u64::from(s) * 100, t0 + TICK * s) {
            given.push(s);
        }
    }
    assert_eq!(given, [10, 20]);
}
